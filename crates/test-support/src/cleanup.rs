//! Stopping children by PID and finding what a test left behind (processes, mounts) under a dir.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

/// SIGTERM `child`, wait up to `grace`, then SIGKILL and reap it.
pub(crate) fn terminate(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    if let Some(st) = child.try_wait()? {
        return Ok(st);
    }
    let _ = kill_process(Pid::from_child(child), Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait()
}

/// Undo the octal escapes (`\040` etc.) of `/proc/self/mountinfo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], oct) {
            out.push(
                d.iter()
                    .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points at or below `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Lazily unmounts everything below `dir`; returns what is still mounted afterwards.
pub(crate) fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..3 {
        let m = mounts_under(dir);
        if m.is_empty() {
            break;
        }
        for p in m {
            let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
        }
    }
    mounts_under(dir)
}

/// PIDs (other than ours) whose root, cwd or executable lies under `dir`, or whose command
/// line mentions it: containers and monitors a test's daemon left running.
pub(crate) fn processes_under(dir: &Path) -> Vec<u32> {
    let me = std::process::id();
    let needle = dir.to_string_lossy().into_owned();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let p = e.path();
        let linked = ["root", "cwd", "exe"]
            .iter()
            .filter_map(|l| std::fs::read_link(p.join(l)).ok())
            .any(|t| t.starts_with(dir));
        let cmdline = std::fs::read(p.join("cmdline")).unwrap_or_default();
        if linked || String::from_utf8_lossy(&cmdline).contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// PIDs whose cgroup path names one of `ids` (containers of a test's daemon: in a mount
/// namespace of their own, nothing links them to the daemon's dir), with those cgroup
/// directories (one per hierarchy) for [`remove_cgroups`].
pub(crate) fn processes_in_cgroups(ids: &[String]) -> (Vec<u32>, Vec<PathBuf>) {
    let (mut pids, mut dirs) = (Vec::new(), Vec::new());
    if ids.is_empty() {
        return (pids, dirs);
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return (pids, dirs);
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        let mut hit = false;
        for line in text.lines() {
            // hierarchy-id:controllers:path
            let mut it = line.splitn(3, ':');
            let (_, ctrls, path) = (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
            if !ids.iter().any(|id| path.split('/').any(|seg| seg == id)) {
                continue;
            }
            hit = true;
            let rel = path.trim_start_matches('/');
            let mounts: Vec<String> = match ctrls {
                "" => vec!["unified".into(), String::new()],
                "name=systemd" => vec!["systemd".into()],
                c => std::iter::once(c.to_string())
                    .chain(c.split(',').map(str::to_string))
                    .collect(),
            };
            for m in mounts {
                let d = Path::new("/sys/fs/cgroup").join(m).join(rel);
                if d.is_dir() && !dirs.contains(&d) {
                    dirs.push(d);
                }
            }
        }
        if hit {
            pids.push(pid);
        }
    }
    (pids, dirs)
}

/// Removes cgroup directories, deepest first, retrying for a while: killed processes stay in
/// their cgroup as zombies until reaped (by PID 1 here, which takes a few seconds).
pub(crate) fn remove_cgroups(dirs: &[PathBuf]) {
    let mut dirs = dirs.to_vec();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        dirs.retain(|d| std::fs::remove_dir(d).is_err() && d.exists());
        if dirs.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !dirs.is_empty() {
        eprintln!("husk-test-support: cgroups left: {dirs:?}");
    }
}

/// SIGKILLs `pids` and waits (≤ 2 s) for them to disappear.
pub(crate) fn kill_pids(pids: &[u32]) {
    for &pid in pids {
        if let Some(p) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            let _ = kill_process(p, Signal::KILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline
        && pids
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes `dir` unless something is still mounted below it (then it is left in place, as
/// deleting through a bind mount could delete host files).
pub(crate) fn remove_tree(dir: &Path) {
    let left = unmount_under(dir);
    if !left.is_empty() {
        eprintln!(
            "husk-test-support: not removing {}: still mounted: {left:?}",
            dir.display()
        );
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("husk-test-support: remove {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert!(mounts_under(Path::new("/nonexistent-husk")).is_empty());
    }
}
