//! Being a child subreaper: orphaned descendants are re-parented to us, so we reap them
//! ourselves instead of leaving zombies for a slow PID 1. Children we spawned and wait for
//! ourselves (named in `skip`) are left to their waiters.

use std::io;

use rustix::process::{Pid, WaitOptions, getpid, set_child_subreaper, waitpid};

/// Makes the calling process a child subreaper.
pub fn become_subreaper() -> io::Result<()> {
    set_child_subreaper(Some(getpid())).map_err(Into::into)
}

/// Reaps zombie children whose command name is not in `skip`; returns how many.
pub fn reap_orphans(skip: &[&str]) -> usize {
    let me = getpid().as_raw_nonzero().get();
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
            // pid (comm) state ...; comm may contain spaces and parentheses.
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let comm = &stat[open + 1..close];
            let state = stat[close + 1..].trim_start().chars().next();
            if state != Some('Z') || skip.contains(&comm) {
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
    fn reaps_unwaited_zombies_but_not_skipped_ones() {
        let child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(200));
        // "true" is skipped: still a zombie.
        assert_eq!(reap_orphans(&["true"]), 0);
        assert!(
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") Z")
        );
        assert!(reap_orphans(&[]) >= 1);
        assert!(std::fs::metadata(format!("/proc/{pid}")).is_err());
        drop(child);
    }
}
