//! OOM-kill detection after the container exited: `oom_kill N` in cgroup v1
//! `memory.oom_control` or cgroup v2 `memory.events`.

use std::path::{Path, PathBuf};

/// Whether any of `paths` (files, or cgroup directories searched for either file) records an
/// OOM kill. Missing or unreadable files count as none.
pub fn oom_killed(paths: &[PathBuf]) -> bool {
    paths.iter().any(|p| {
        if p.is_dir() {
            file_shows_kill(&p.join("memory.oom_control"))
                || file_shows_kill(&p.join("memory.events"))
        } else {
            file_shows_kill(p)
        }
    })
}

fn file_shows_kill(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| content_shows_kill(&s))
}

/// `oom_kill N` with N > 0 on some line.
fn content_shows_kill(content: &str) -> bool {
    content.lines().any(|line| {
        let mut words = line.split_whitespace();
        words.next() == Some("oom_kill")
            && words
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2_counters() {
        assert!(!content_shows_kill(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
        ));
        assert!(content_shows_kill(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
        ));
        assert!(content_shows_kill(
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"
        ));
        assert!(!content_shows_kill("oom 1\noom_kill_disable 1\n"));
    }

    #[test]
    fn checks_files_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("v1");
        std::fs::create_dir(&v1).unwrap();
        std::fs::write(v1.join("memory.oom_control"), "oom_kill 0\n").unwrap();
        let v2 = d.path().join("memory.events");
        std::fs::write(&v2, "oom_kill 3\n").unwrap();
        assert!(!oom_killed(&[v1.clone(), d.path().join("missing")]));
        assert!(oom_killed(&[v1.clone(), v2]));
        std::fs::write(v1.join("memory.oom_control"), "oom_kill 1\n").unwrap();
        assert!(oom_killed(&[v1]));
    }
}
