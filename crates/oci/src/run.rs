//! Runs one short-lived runtime command to completion: feeds stdin, collects stdout and stderr, and
//! enforces a deadline (killing the runtime's process group when it passes). std + rustix only.
//!
//! One `poll(2)` loop over stdin/stdout/stderr and a pidfd of the child: no helper threads, and a
//! grandchild that inherits the pipes (a hook, a container process) cannot make us wait for it,
//! because once the runtime itself has exited we only drain what is already buffered.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};
use std::os::unix::process::CommandExt;

/// How often we look at the child when the kernel has no pidfds (Linux < 5.3).
const FALLBACK_TICK: Duration = Duration::from_millis(5);
/// Writes of at most `PIPE_BUF` bytes never block once the pipe polls writable.
const PIPE_BUF: usize = 4096;

/// What a finished runtime command produced.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a runtime command produced no `Output`.
#[derive(Debug)]
pub(crate) enum RunError {
    Spawn(io::Error),
    Io(io::Error),
    Timeout,
}

/// Runs `cmd` with piped stdio (stdin gets `input`, then EOF) in its own process group.
pub(crate) fn run(mut cmd: Command, input: &[u8], timeout: Duration) -> Result<Output, RunError> {
    cmd.stdin(if input.is_empty() {
        Stdio::null()
    } else {
        Stdio::piped()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().map_err(RunError::Spawn)?;
    let result = drive(&mut child, input, timeout);
    if result.is_err() {
        // The runtime is its own process-group leader: take down whatever it forked too.
        let pgid = Pid::from_child(&child);
        if kill_process_group(pgid, Signal::KILL).is_err() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    result
}

/// Pipes still open towards the child.
struct Pipes {
    stdin: Option<std::process::ChildStdin>,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
}

/// Which descriptors `poll` reported ready in one round.
#[derive(Default)]
struct Ready {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    exited: bool,
}

impl Ready {
    fn any_output(&self) -> bool {
        self.stdout || self.stderr
    }
}

fn drive(child: &mut Child, input: &[u8], timeout: Duration) -> Result<Output, RunError> {
    let deadline = Instant::now() + timeout;
    // Without a pidfd we fall back to ticking `try_wait`.
    let pidfd: Option<OwnedFd> = pidfd_open(Pid::from_child(child), PidfdFlags::empty()).ok();
    let mut pipes = Pipes {
        stdin: child.stdin.take(),
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
    };
    let mut pending = input;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut exited: Option<ExitStatus> = None;

    loop {
        let wait = match exited {
            Some(_) => Duration::ZERO,
            None => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(RunError::Timeout);
                }
                if pidfd.is_some() {
                    left
                } else {
                    left.min(FALLBACK_TICK)
                }
            }
        };
        let watch_exit = exited.is_none().then_some(pidfd.as_ref()).flatten();
        let Some(ready) = poll_once(&pipes, watch_exit, wait)? else {
            break; // nothing left to watch
        };

        if ready.stdin {
            write_some(&mut pipes.stdin, &mut pending)?;
        }
        if ready.stdout {
            read_some(&mut pipes.stdout, &mut stdout)?;
        }
        if ready.stderr {
            read_some(&mut pipes.stderr, &mut stderr)?;
        }
        if exited.is_none()
            && (ready.exited || pidfd.is_none())
            && let Some(status) = child.try_wait().map_err(RunError::Io)?
        {
            exited = Some(status);
            pipes.stdin = None;
            continue; // drain what is already buffered
        }
        if exited.is_some() && !ready.any_output() {
            break;
        }
    }
    let status = match exited {
        Some(status) => status,
        None => child.wait().map_err(RunError::Io)?,
    };
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// One `poll` round; `None` when there is nothing left to watch.
fn poll_once(
    pipes: &Pipes,
    pidfd: Option<&OwnedFd>,
    wait: Duration,
) -> Result<Option<Ready>, RunError> {
    let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(4);
    let mut slot = [usize::MAX; 4];
    if let Some(p) = &pipes.stdin {
        slot[0] = fds.len();
        fds.push(PollFd::new(p, PollFlags::OUT));
    }
    if let Some(p) = &pipes.stdout {
        slot[1] = fds.len();
        fds.push(PollFd::new(p, PollFlags::IN));
    }
    if let Some(p) = &pipes.stderr {
        slot[2] = fds.len();
        fds.push(PollFd::new(p, PollFlags::IN));
    }
    if let Some(p) = pidfd {
        slot[3] = fds.len();
        fds.push(PollFd::new(p, PollFlags::IN));
    }
    if fds.is_empty() && wait.is_zero() {
        return Ok(None);
    }
    let timeout = Timespec::try_from(wait).unwrap_or(Timespec {
        tv_sec: i64::from(i32::MAX),
        tv_nsec: 0,
    });
    match poll(&mut fds, Some(&timeout)) {
        Ok(_) | Err(Errno::INTR) => {}
        Err(e) => return Err(RunError::Io(e.into())),
    }
    let is_ready = |i: usize| fds.get(i).is_some_and(|f| !f.revents().is_empty());
    Ok(Some(Ready {
        stdin: is_ready(slot[0]),
        stdout: is_ready(slot[1]),
        stderr: is_ready(slot[2]),
        exited: is_ready(slot[3]),
    }))
}

/// Writes at most `PIPE_BUF` bytes (never blocks after POLLOUT); closes stdin when done.
fn write_some(
    pipe: &mut Option<std::process::ChildStdin>,
    pending: &mut &[u8],
) -> Result<(), RunError> {
    let Some(p) = pipe else { return Ok(()) };
    let chunk = &pending[..pending.len().min(PIPE_BUF)];
    match p.write(chunk) {
        Ok(n) => *pending = &pending[n..],
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        // The runtime stopped reading; its exit status will say why.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => *pending = &[],
        Err(e) => return Err(RunError::Io(e)),
    }
    if pending.is_empty() {
        *pipe = None;
    }
    Ok(())
}

/// One `read` (never blocks after POLLIN/POLLHUP); closes the pipe at EOF.
fn read_some<R: Read>(pipe: &mut Option<R>, into: &mut Vec<u8>) -> Result<(), RunError> {
    let Some(p) = pipe else { return Ok(()) };
    let mut buf = [0u8; 8192];
    match p.read(&mut buf) {
        Ok(0) => *pipe = None,
        Ok(n) => into.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
        Err(e) => return Err(RunError::Io(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.arg("-c").arg(script);
        c
    }

    #[test]
    fn collects_stdout_stderr_and_status() {
        let out = run(
            sh("echo out; echo err >&2; exit 3"),
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn feeds_stdin_larger_than_a_pipe() {
        let input = vec![b'x'; 300 * 1024];
        let out = run(sh("wc -c"), &input, Duration::from_secs(10)).unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "307200");
    }

    #[test]
    fn output_larger_than_a_pipe_does_not_deadlock() {
        let out = run(
            sh("head -c 1000000 /dev/zero; head -c 200000 /dev/zero >&2"),
            b"",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 1_000_000);
        assert_eq!(out.stderr.len(), 200_000);
    }

    #[test]
    fn times_out_and_kills_the_process_group() {
        let start = Instant::now();
        let err = run(sh("sleep 30 & sleep 30"), b"", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, RunError::Timeout), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn grandchild_holding_the_pipes_does_not_block() {
        // Like a hook that daemonises: the runtime exits, a descendant keeps stdout open.
        let start = Instant::now();
        let out = run(sh("(sleep 5 &) ; echo done"), b"", Duration::from_secs(20)).unwrap();
        assert_eq!(out.stdout, b"done\n");
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn spawn_failure_is_reported() {
        let err = run(
            Command::new("/nonexistent/runtime"),
            b"",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)), "{err:?}");
    }
}
