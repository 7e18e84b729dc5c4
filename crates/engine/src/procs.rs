//! The process table as recovery and the sweep read it: processes found by their working
//! directory, command line or environment (`/proc/<pid>/{cwd,cmdline,environ}`), killed through
//! a pidfd opened after a second look, so that a recycled pid is never hit. Blocking: call from
//! a blocking thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// One live (not zombie) process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: i32,
    /// `/proc/<pid>/comm` (a thread name such as `husk-pause`).
    pub comm: String,
    pub cwd: Option<PathBuf>,
    pub argv: Vec<String>,
    /// `/proc/<pid>/ns/mnt` (`mnt:[inode]`): tells a runtime call (in our mount namespace)
    /// from a container's init (in its own, even while it waits in `created`).
    pub mnt_ns: Option<PathBuf>,
}

impl Proc {
    /// Whether this is one of our `husk-monitor` processes (a container monitor, a pod's
    /// `pause` init, a `userns` helper): by its argv\[0\] or its thread name.
    pub fn is_monitor(&self) -> bool {
        self.comm == "husk-pause"
            || self.argv.first().is_some_and(|a| {
                Path::new(a)
                    .file_name()
                    .is_some_and(|n| n == "husk-monitor")
            })
    }

    /// Whether the command line mentions `needle`.
    pub fn mentions(&self, needle: &str) -> bool {
        self.argv.iter().any(|a| a.contains(needle))
    }

    /// Whether the working directory is `dir` or lies below it.
    pub fn works_in(&self, dir: &Path) -> bool {
        self.cwd.as_deref().is_some_and(|c| c.starts_with(dir))
    }

    /// Whether it lives in our mount namespace (not a container's).
    pub fn in_our_mount_ns(&self) -> bool {
        let ours = std::fs::read_link("/proc/self/ns/mnt").ok();
        ours.is_some() && self.mnt_ns == ours
    }
}

fn read(pid: i32) -> Option<Proc> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(base.join("stat")).ok()?;
    // `pid (comm) S ...`: the state follows the last ')'.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let comm = std::fs::read_to_string(base.join("comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default();
    let argv = std::fs::read(base.join("cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let cwd = std::fs::read_link(base.join("cwd")).ok().map(|p| {
        // A removed working directory reads as "<path> (deleted)".
        let s = p.to_string_lossy();
        PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s))
    });
    let mnt_ns = std::fs::read_link(base.join("ns/mnt")).ok();
    Some(Proc {
        pid,
        comm,
        cwd,
        argv,
        mnt_ns,
    })
}

/// Every live process but this one.
pub(crate) fn scan() -> Vec<Proc> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(read)
        .collect()
}

/// Whether `pid`'s environment holds exactly `var` (`KEY=value`).
pub(crate) fn environ_has(pid: i32, var: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == var.as_bytes()))
}

/// Whether `pid` still names a live process.
fn alive(pid: i32) -> bool {
    read(pid).is_some()
}

/// SIGKILLs `p` if `pid` still is the same process (same argv and working directory). Returns
/// whether a signal was sent.
pub(crate) fn kill(p: &Proc) -> bool {
    let Some(pid) = Pid::from_raw(p.pid) else {
        return false;
    };
    let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
        return false;
    };
    // The pidfd now pins this pid: a second look tells whether it is still the process seen.
    match read(p.pid) {
        Some(now) if now.argv == p.argv && now.cwd == p.cwd => {
            pidfd_send_signal(&fd, Signal::KILL).is_ok()
        }
        _ => false,
    }
}

/// Waits until none of `pids` is alive (zombies count as gone); false after `timeout`.
pub(crate) fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs every process `pick` selects and waits (≤ 5 s) for them to be gone; returns the
/// processes killed.
pub(crate) fn kill_matching(pick: impl Fn(&Proc) -> bool) -> Vec<Proc> {
    let victims: Vec<Proc> = scan().into_iter().filter(|p| pick(p)).collect();
    let killed: Vec<Proc> = victims.into_iter().filter(kill).collect();
    let pids: Vec<i32> = killed.iter().map(|p| p.pid).collect();
    if !wait_gone(&pids, Duration::from_secs(5)) {
        tracing::warn!(pids = ?pids, "killed processes still present after 5s");
    }
    killed
}

/// Waits (≤ `timeout`) until no process `pick` selects is left: work an earlier huskd started
/// (a CNI plugin, a runtime call) that outlived it must end before it is undone. Returns
/// whether they all ended.
pub(crate) fn wait_quiet(pick: impl Fn(&Proc) -> bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let busy: Vec<i32> = scan()
            .into_iter()
            .filter(|p| pick(p))
            .map(|p| p.pid)
            .collect();
        if busy.is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            tracing::warn!(pids = ?busy, "processes of an earlier huskd still running");
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_kills_a_process_by_cwd_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .current_dir(dir.path())
            .env("HUSK_PROCS_TEST", "yes")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        // Until it has exec'd, the child still shows our command line.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !read(pid).is_some_and(|p| p.mentions("1000")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let found: Vec<Proc> = scan()
            .into_iter()
            .filter(|p| p.works_in(dir.path()))
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let p = &found[0];
        assert_eq!(p.pid, pid);
        assert!(p.mentions("1000"));
        assert!(!p.is_monitor());
        assert!(p.in_our_mount_ns());
        assert!(environ_has(pid, "HUSK_PROCS_TEST=yes"));
        assert!(!environ_has(pid, "HUSK_PROCS_TEST=no"));
        // A stale view (another argv) is not killed.
        let mut other = p.clone();
        other.argv.push("x".into());
        assert!(!kill(&other));
        assert!(kill(p));
        child.wait().unwrap();
        assert!(wait_gone(&[pid], Duration::from_secs(1)));
        assert!(wait_quiet(|q| q.pid == pid, Duration::from_millis(10)));
    }

    #[test]
    fn monitors_are_known_by_name() {
        let p = |comm: &str, argv0: &str| Proc {
            pid: 1,
            comm: comm.into(),
            cwd: None,
            argv: vec![argv0.into()],
            mnt_ns: None,
        };
        assert!(p("husk-pause", "/x/husk-monitor").is_monitor());
        assert!(p("husk-monitor", "/usr/bin/husk-monitor").is_monitor());
        assert!(p("husk-pause", "husk-monitor").is_monitor());
        assert!(!p("runc", "runc").is_monitor());
    }
}
