//! The monitor's two short modes besides container monitoring:
//! - `exec-sync`: runs `<runtime> exec --detach` for ExecSync as a child subreaper, so the
//!   exec'd process is reaped here and the call ends when it exits, even if a background child
//!   it started keeps the output pipes open (which makes a foreground `runc exec` hang).
//! - `pause`: PID 1 of a pod-shared PID namespace; it only reaps, until killed.

use std::path::PathBuf;
use std::process::ExitCode;

use husk_oci::{ExecOpts, OciRuntime, RuntimeConfig};
// `wait` (any child), never `waitpid(None)`: that one means "my process group" (wait4(0)).
use rustix::process::{Pid, WaitOptions, wait, waitpid};

/// Exit code of `exec-sync` when the runtime itself failed (its message is in `<pid-file>.error`).
pub const RUNTIME_FAILED: u8 = 255;

struct ExecArgs {
    runtime: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
    id: String,
    process: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    /// For a tty exec: the runtime sends the pty master to this socket.
    console_socket: Option<PathBuf>,
}

fn parse(args: &[std::ffi::OsString]) -> Option<ExecArgs> {
    let mut it = args.iter();
    let (mut runtime, mut root, mut id, mut process, mut pid_file, mut log, mut console) =
        (None, None, None, None, None, None, None);
    let mut systemd_cgroup = false;
    while let Some(a) = it.next() {
        let a = a.to_str()?;
        if a == "--systemd-cgroup" {
            systemd_cgroup = true;
            continue;
        }
        let v = PathBuf::from(it.next()?);
        match a {
            "--runtime" => runtime = Some(v),
            "--root" => root = Some(v),
            "--id" => id = Some(v.to_string_lossy().into_owned()),
            "--process" => process = Some(v),
            "--pid-file" => pid_file = Some(v),
            "--log" => log = Some(v),
            "--console-socket" => console = Some(v),
            _ => return None,
        }
    }
    Some(ExecArgs {
        runtime: runtime?,
        root: root?,
        systemd_cgroup,
        id: id?,
        process: process?,
        pid_file: pid_file?,
        log: log?,
        console_socket: console,
    })
}

/// `husk-monitor exec-sync --runtime R --root D --id ID --process F --pid-file P --log L
/// [--console-socket S]` (also the streaming exec: with a console socket the process gets a pty
/// whose master the runtime sends to S).
/// Our stdout/stderr are the exec'd process's; our exit code is its exit code (128+signal).
pub fn exec_sync(args: &[std::ffi::OsString]) -> ExitCode {
    let Some(a) = parse(args) else {
        eprintln!(
            "usage: husk-monitor exec-sync --runtime R --root D --id ID --process F --pid-file P --log L [--console-socket S]"
        );
        return ExitCode::from(2);
    };
    let fail = |msg: String| {
        let _ = std::fs::write(a.pid_file.with_extension("error"), msg);
        // A runtime that failed half way may leave children re-parented to us: reap them, or
        // they become zombies of huskd, stuck in the container's cgroup.
        reap_children(std::time::Duration::from_secs(2));
        ExitCode::from(RUNTIME_FAILED)
    };
    if let Err(e) = husk_sys::process::become_subreaper() {
        return fail(format!("becoming a subreaper: {e}"));
    }
    let rt = OciRuntime::new(RuntimeConfig {
        systemd_cgroup: a.systemd_cgroup,
        ..RuntimeConfig::new("runtime", &a.runtime, &a.root)
    });
    let opts = ExecOpts {
        detach: true,
        log_file: Some(a.log.clone()),
        console_socket: a.console_socket.clone(),
    };
    let mut cmd = rt.exec_command(&a.id, &a.process, &a.pid_file, opts);
    // Our stdio is the process's (the caller passes null stdin when it has none).
    let status = match cmd.status() {
        Ok(s) => s,
        Err(e) => return fail(format!("running {}: {e}", a.runtime.display())),
    };
    if !status.success() {
        let msg = rt
            .exec_failure(&a.id, status, &a.log)
            .map(|e| e.to_string())
            .unwrap_or_else(|| format!("{} exec exited with {status}", a.runtime.display()));
        return fail(msg);
    }
    let pid = std::fs::read_to_string(&a.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .and_then(Pid::from_raw);
    let Some(pid) = pid else {
        return fail(format!("no pid in {}", a.pid_file.display()));
    };
    // The detached process was re-parented to us (the subreaper) when the runtime exited.
    loop {
        match waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                let code = if let Some(c) = st.exit_status() {
                    c
                } else if let Some(sig) = st.terminating_signal() {
                    128 + sig
                } else {
                    continue;
                };
                reap_children(std::time::Duration::from_millis(200));
                return ExitCode::from(code as u8);
            }
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return fail(format!("waiting for pid {pid:?}: {e}")),
        }
    }
}

/// Reaps every child (all re-parented to us, the subreaper) until none is left or `limit`
/// passed while some still live.
fn reap_children(limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match wait(WaitOptions::NOHANG) {
            Ok(Some(_)) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// `husk-monitor pause`: prints the pid of a new PID namespace's init and exits; the init reaps
/// orphans until it is killed.
pub fn pause() -> ExitCode {
    match husk_sys::process::fork_pid_namespace_init() {
        Ok(Some(child)) => {
            println!("{}", child.as_raw_nonzero());
            ExitCode::SUCCESS
        }
        Ok(None) => {
            let _ = rustix::thread::set_name(c"husk-pause");
            // Let go of the caller's pipes: it reads our parent's stdout to its end.
            if let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
            {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            let _ = rustix::process::setsid();
            // PID 1 ignores signals it has no handler for; SIGKILL from outside ends it.
            let sfd = match husk_sys::signalfd::SignalFd::new(&[libc_sigchld()]) {
                Ok(s) => s,
                Err(_) => loop {
                    let _ = wait(WaitOptions::empty());
                    std::thread::sleep(std::time::Duration::from_secs(1));
                },
            };
            loop {
                let _ = sfd.drain();
                while let Ok(Some(_)) = wait(WaitOptions::NOHANG) {}
                wait_readable(&sfd);
            }
        }
        Err(e) => {
            eprintln!("husk-monitor pause: {e}");
            ExitCode::from(1)
        }
    }
}

fn libc_sigchld() -> i32 {
    17
}

fn wait_readable(sfd: &husk_sys::signalfd::SignalFd) {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(sfd, PollFlags::IN)];
    let _ = poll(&mut fds, None);
}
