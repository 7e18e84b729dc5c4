//! Getting the container to CREATED: session and subreaper, the control socket, the log file,
//! the container's stdio (pipes, or a pty handed over on the console socket), the runtime's
//! `create`, the pid and its pidfd.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use husk_monitor::MonitorConfig;
use husk_sys::signalfd::SignalFd;
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, PidfdFlags};

use super::runtime;

/// How long the runtime may take to connect to the console socket after `create` returned.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the container could not be created; the `Display` text goes to huskd.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to become a session leader")]
    Setsid(#[source] io::Error),
    #[error("failed to become a child subreaper")]
    Subreaper(#[source] io::Error),
    #[error("failed to bind socket {path:?}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("failed to open log file {path:?}")]
    Log { path: PathBuf, source: io::Error },
    #[error("failed to set up the container's stdio")]
    Stdio(#[source] io::Error),
    #[error("failed to run runtime {path:?}")]
    Spawn { path: PathBuf, source: io::Error },
    /// The runtime's own message.
    #[error("{message}")]
    Create { message: String },
    #[error("the runtime handed over no pty master on {path:?}")]
    Console { path: PathBuf, source: io::Error },
    #[error("failed to read pid file {path:?}")]
    PidFile { path: PathBuf, source: io::Error },
    #[error("pid file {path:?} holds no pid: {content:?}")]
    BadPid { path: PathBuf, content: String },
    #[error("failed to open a pidfd for pid {pid}")]
    Pidfd { pid: i32, source: io::Error },
    #[error("failed to watch SIGCHLD")]
    Signals(#[source] io::Error),
}

/// What the event loop takes over.
pub struct Started {
    pub listener: UnixListener,
    pub log: Option<File>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub stdin: Option<OwnedFd>,
    pub pty: Option<OwnedFd>,
    pub pid: Pid,
    pub pidfd: OwnedFd,
    pub sigchld: SignalFd,
}

/// Opens (creating) a CRI log file for appending.
pub fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Everything up to CREATED. On error nothing of ours is left running.
pub fn start(cfg: &MonitorConfig) -> Result<Started, StartError> {
    rustix::process::setsid().map_err(|e| StartError::Setsid(e.into()))?;
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .map_err(|e| StartError::Subreaper(e.into()))?;

    let listener = bind(&cfg.socket)?;
    let log = match &cfg.log_path {
        Some(path) => {
            let open = || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                open_log(path)
            };
            Some(open().map_err(|source| StartError::Log {
                path: path.clone(),
                source,
            })?)
        }
        None => None,
    };

    let console = if cfg.tty {
        Some((cfg.console_socket(), bind(&cfg.console_socket())?))
    } else {
        None
    };
    let result = create(cfg, console.as_ref().map(|(p, l)| (p.as_path(), l)));
    if let Some((path, _)) = &console {
        let _ = std::fs::remove_file(path);
    }
    let io = result?;

    let finish = || -> Result<(Pid, OwnedFd, SignalFd), StartError> {
        let pid = read_pid(&cfg.pid_file)?;
        let pidfd = rustix::process::pidfd_open(pid, PidfdFlags::empty()).map_err(|e| {
            StartError::Pidfd {
                pid: pid.as_raw_pid(),
                source: e.into(),
            }
        })?;
        let sigchld = SignalFd::new(&[libc_sigchld()]).map_err(StartError::Signals)?;
        Ok((pid, pidfd, sigchld))
    };
    match finish() {
        Ok((pid, pidfd, sigchld)) => Ok(Started {
            listener,
            log,
            stdout: io.stdout,
            stderr: io.stderr,
            stdin: io.stdin,
            pty: io.pty,
            pid,
            pidfd,
            sigchld,
        }),
        Err(e) => {
            // The container exists but we cannot watch it: undo the create.
            let _ = runtime::from_config(cfg).delete(&cfg.id, true);
            Err(e)
        }
    }
}

fn libc_sigchld() -> i32 {
    rustix::process::Signal::CHILD.as_raw()
}

fn bind(path: &Path) -> Result<UnixListener, StartError> {
    let bind = || {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let l = UnixListener::bind(path)?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    bind().map_err(|source| StartError::Bind {
        path: path.to_path_buf(),
        source,
    })
}

/// The container's stdio as the monitor keeps it.
struct ContainerIo {
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    stdin: Option<OwnedFd>,
    pty: Option<OwnedFd>,
}

/// Runs `<runtime> create` with the container's stdio and waits for it.
fn create(
    cfg: &MonitorConfig,
    console: Option<(&Path, &UnixListener)>,
) -> Result<ContainerIo, StartError> {
    let stdio_err = StartError::Stdio;
    let pipe = || rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| stdio_err(e.into()));
    let null = || {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(stdio_err)
    };

    // (runtime's stdin, stdout, stderr), what we keep, and where the runtime's complaints land.
    let (r_in, r_out, r_err, mut io, err_read): (Stdio, Stdio, Stdio, ContainerIo, OwnedFd) =
        if console.is_some() {
            let (err_r, err_w) = pipe()?;
            let io = ContainerIo {
                stdout: None,
                stderr: None,
                stdin: None,
                pty: None,
            };
            (null()?.into(), null()?.into(), err_w.into(), io, err_r)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            let (r_in, stdin) = if cfg.stdin {
                let (in_r, in_w) = pipe()?;
                (Stdio::from(in_r), Some(in_w))
            } else {
                (null()?.into(), None)
            };
            let err_dup = rustix::io::dup(&err_r).map_err(|e| stdio_err(e.into()))?;
            let io = ContainerIo {
                stdout: Some(out_r),
                stderr: Some(err_r),
                stdin,
                pty: None,
            };
            (r_in, out_w.into(), err_w.into(), io, err_dup)
        };

    let rt = runtime::from_config(cfg);
    let argv = runtime::create_argv(&rt, cfg, console.map(|(p, _)| p));
    let Some((program, args)) = argv.split_first() else {
        return Err(StartError::Create {
            message: "empty runtime argv".into(),
        });
    };
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(r_in).stdout(r_out).stderr(r_err);
    let spawned = cmd.spawn();
    // The command holds our copies of the child's ends: drop them or we never see EOF.
    drop(cmd);
    let status = spawned
        .and_then(|mut child| child.wait())
        .map_err(|source| StartError::Spawn {
            path: cfg.runtime_path.clone(),
            source,
        })?;

    if !status.success() {
        let stderr = read_available(&err_read);
        return Err(StartError::Create {
            message: runtime::create_error(&rt, cfg, status, &stderr),
        });
    }
    drop(err_read);

    if let Some((path, listener)) = console {
        let master = receive_pty(listener).map_err(|source| StartError::Console {
            path: path.to_path_buf(),
            source,
        })?;
        let reader = rustix::io::dup(&master).map_err(|e| stdio_err(e.into()))?;
        io.stdout = Some(reader);
        io.pty = Some(master);
    }
    for fd in [&io.stdout, &io.stderr, &io.stdin, &io.pty]
        .into_iter()
        .flatten()
    {
        rustix::io::ioctl_fionbio(fd, true).map_err(|e| stdio_err(e.into()))?;
    }
    Ok(io)
}

/// Whatever the runtime wrote to a pipe, without waiting for more.
fn read_available(fd: &OwnedFd) -> Vec<u8> {
    let _ = rustix::io::ioctl_fionbio(fd, true);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < 64 * 1024 {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Accepts the runtime's connection on the console socket and takes the pty master from it.
fn receive_pty(listener: &UnixListener) -> io::Result<OwnedFd> {
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let timeout = Timespec {
        tv_sec: CONSOLE_TIMEOUT.as_secs() as i64,
        tv_nsec: 0,
    };
    if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "no connection from the runtime",
        ));
    }
    let (conn, _): (UnixStream, _) = listener.accept()?;
    conn.set_read_timeout(Some(CONSOLE_TIMEOUT))?;
    husk_sys::pty::recv_fd(&conn)
}

fn read_pid(path: &Path) -> Result<Pid, StartError> {
    let content = std::fs::read_to_string(path).map_err(|source| StartError::PidFile {
        path: path.to_path_buf(),
        source,
    })?;
    content
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| StartError::BadPid {
            path: path.to_path_buf(),
            content,
        })
}
