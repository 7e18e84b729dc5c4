//! Being a child subreaper: orphaned descendants are re-parented to us, so we reap them
//! ourselves instead of leaving zombies for a slow PID 1. Children we spawned and wait for
//! ourselves are left to their waiters: they share our session, orphans (from containers, or
//! processes that called `setsid`) don't; `skip` names `setsid` children we wait for too.

use std::io;

use rustix::process::{Pid, WaitOptions, getpid, set_child_subreaper, waitpid};

/// Makes the calling process a child subreaper.
pub fn become_subreaper() -> io::Result<()> {
    set_child_subreaper(Some(getpid())).map_err(Into::into)
}

/// Reaps zombie children from other sessions whose command name is not in `skip`; returns
/// how many.
pub fn reap_orphans(skip: &[&str]) -> usize {
    let me = getpid().as_raw_nonzero().get();
    // Read from /proc, not getsid(2): the session id is 0 when the session leader lives in an
    // ancestor PID namespace (as in some CI sandboxes), which rustix's `Pid` cannot represent.
    let Some(my_sid) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_fields(&s).and_then(|(_, f)| f.get(3).and_then(|x| x.parse().ok())))
    else {
        return 0;
    };
    let mut reaped = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{me}/task")) else {
        return 0;
    };
    for t in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(t.path().join("children")) else {
            continue;
        };
        for pid in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let Some((comm, fields)) = stat_fields(&stat) else {
                continue;
            };
            let state = fields.first().and_then(|s| s.chars().next());
            let sid = fields.get(3).and_then(|s| s.parse::<i32>().ok());
            if state != Some('Z') || skip.contains(&comm) || sid == Some(my_sid) {
                continue;
            }
            if let Some(p) = Pid::from_raw(pid)
                && matches!(waitpid(Some(p), WaitOptions::NOHANG), Ok(Some(_)))
            {
                reaped += 1;
            }
        }
    }
    reaped
}

/// Splits a `/proc/<pid>/stat` line into the command name and the fields after it (state,
/// ppid, pgrp, session, ...); the name may contain spaces and parentheses.
fn stat_fields(stat: &str) -> Option<(&str, Vec<&str>)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    Some((
        &stat[open + 1..close],
        stat[close + 1..].split_whitespace().collect(),
    ))
}

/// Creates a new PID namespace and forks its init: returns `Some(child pid)` in the parent and
/// `None` in the child, which is PID 1 of the new namespace.
///
/// Only for single-threaded programs (the `husk-monitor pause` mode calls it first thing).
#[allow(unsafe_code)]
pub fn fork_pid_namespace_init() -> io::Result<Option<Pid>> {
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES; we pass CLONE_NEWPID, which
    // affects only children created after this call.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWPID) }?;
    // SAFETY: fork is sound in a single-threaded process (the documented precondition of this
    // function): the child gets a copy of the only thread, and no lock can be held by another.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        p => Ok(Pid::from_raw(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaps_other_sessions_zombies_but_not_ours_or_skipped_ones() {
        // Ours (same session): left to its waiter.
        let mut own = std::process::Command::new("/bin/true").spawn().unwrap();
        // Another session (like an orphan from a container): reaped unless skipped.
        let other = std::process::Command::new("setsid")
            .arg("/bin/true")
            .spawn()
            .unwrap();
        let (own_pid, other_pid) = (own.id() as i32, other.id() as i32);
        std::thread::sleep(std::time::Duration::from_millis(300));
        let zombie = |pid: i32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
        };
        assert_eq!(reap_orphans(&["true"]), 0);
        assert!(zombie(other_pid));
        assert!(reap_orphans(&[]) >= 1);
        assert!(std::fs::metadata(format!("/proc/{other_pid}")).is_err());
        assert!(zombie(own_pid), "our own child is not stolen");
        assert!(own.wait().unwrap().success());
        drop(other);
    }

    #[test]
    fn stat_lines_split_around_odd_names() {
        let (comm, f) = stat_fields("42 (a) b (c)) S 1 42 0 0").unwrap();
        assert_eq!(comm, "a) b (c)");
        assert_eq!(f, ["S", "1", "42", "0", "0"]);
        assert_eq!(
            f[3], "0",
            "session 0 (leader outside our PID namespace) parses"
        );
        assert!(stat_fields("garbage").is_none());
    }
}
