//! The runtime side of the streaming server: an interactive exec (pipes, or a pty for tty
//! sessions), an attach to a container's monitor, and a TCP connection dialled inside a pod's
//! network namespace.
//!
//! An exec runs like ExecSync, through a `husk-monitor exec-sync` subreaper that runs
//! `<runtime> exec --detach` and reaps the process: the session ends when the process exits,
//! even if a background child holds its output open. Its stdio is the monitor's (pipes from
//! huskd), or, with a tty, a pty whose master the runtime sends to a console socket huskd
//! listens on.

use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::exec::ExecFiles;
use super::{ContainerRecord, ContainerState};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use husk_monitor::client::{AttachOptions, AttachReader, AttachWriter, MonitorClient};

/// How long the runtime may take to hand over the pty.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to dial a port inside a pod.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// What an interactive exec needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStreamRequest {
    pub cmd: Vec<String>,
    pub tty: bool,
    /// The process reads stdin from the client (else /dev/null).
    pub stdin: bool,
}

pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A running interactive exec. Dropping it kills the process.
pub struct ExecSession {
    /// The process's stdin (None when not requested). Shutting it down closes a pipe; with a
    /// tty it does nothing (a terminal has no end of input but the one its program reads).
    pub stdin: Option<Writer>,
    /// The process's stdout (with a tty: the terminal's output).
    pub stdout: Option<Reader>,
    /// The process's stderr (never with a tty).
    pub stderr: Option<Reader>,
    pty: Option<Arc<AsyncFd<OwnedFd>>>,
    child: tokio::process::Child,
    files: ExecFiles,
    exited: bool,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("tty", &self.pty.is_some())
            .field("exited", &self.exited)
            .finish_non_exhaustive()
    }
}

impl ExecSession {
    /// Resizes the terminal (no-op without one).
    pub fn resize(&self, cols: u16, rows: u16) -> io::Result<()> {
        match &self.pty {
            Some(pty) => husk_sys::pty::set_size(pty.get_ref(), cols, rows),
            None => Ok(()),
        }
    }

    /// Waits for the process to exit: its exit code (128 + signal when killed).
    pub async fn wait(&mut self) -> Result<i32> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| EngineError::io("wait", "runtime exec", e))?;
        self.exited = true;
        self.files.exit_code(status).await
    }

    /// Kills the process (and with it the session), then reaps the monitor.
    pub async fn kill(&mut self) {
        if self.exited {
            return;
        }
        self.files.kill_process();
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.exited = true;
    }
}

impl Drop for ExecSession {
    fn drop(&mut self) {
        if !self.exited {
            self.files.kill_process();
            let _ = self.child.start_kill();
        }
        self.files.remove_now();
    }
}

impl Engine {
    /// Starts `req.cmd` in running container `id` with streams for the caller to wire.
    pub async fn exec_stream(&self, id: &str, req: ExecStreamRequest) -> Result<ExecSession> {
        let (files, mut std_cmd) = self.prepare_exec(id, &req.cmd, req.tty).await?;
        let (console, listener) = if req.tty {
            let path = files.console_socket();
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path)
                .map_err(|e| EngineError::io("bind", &path, e))?;
            std_cmd.arg("--console-socket").arg(&path);
            (Some(path), Some(l))
        } else {
            (None, None)
        };
        let mut c = tokio::process::Command::from(std_cmd);
        c.kill_on_drop(true);
        if req.tty {
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            c.stdin(if req.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        }
        let child = c
            .spawn()
            .map_err(|e| EngineError::io("spawn", "runtime exec", e))?;
        let mut session = ExecSession {
            stdin: None,
            stdout: None,
            stderr: None,
            pty: None,
            child,
            files,
            exited: false,
        };
        if let (Some(path), Some(listener)) = (console, listener) {
            // The runtime connects once it created the pty; if it fails first, its exit says why.
            let got = tokio::select! {
                r = tokio::time::timeout(CONSOLE_TIMEOUT, receive_pty(&listener)) => r,
                _ = session.child.wait() => {
                    let _ = std::fs::remove_file(&path);
                    // The runtime's own failure, when it left one.
                    session.wait().await?;
                    return Err(EngineError::ExecFailed(
                        "the runtime exited before handing over the terminal".into(),
                    ));
                }
            };
            let _ = std::fs::remove_file(&path);
            let fd = match got {
                Ok(Ok(fd)) => fd,
                Ok(Err(e)) => {
                    session.kill().await;
                    return Err(EngineError::io("receive the pty from", path, e));
                }
                Err(_) => {
                    session.kill().await;
                    return Err(EngineError::ExecFailed(
                        "the runtime did not hand over the terminal in time".into(),
                    ));
                }
            };
            rustix::fs::fcntl_setfl(&fd, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| EngineError::io("set non-blocking", "pty", e.into()))?;
            let pty = Arc::new(
                husk_sys::asyncfd::register(fd)
                    .map_err(|e| EngineError::io("register", "pty", e))?,
            );
            session.stdout = Some(Box::new(Pty(pty.clone())));
            if req.stdin {
                session.stdin = Some(Box::new(Pty(pty.clone())));
            }
            session.pty = Some(pty);
        } else {
            session.stdin = session.child.stdin.take().map(|s| Box::new(s) as Writer);
            session.stdout = session.child.stdout.take().map(|s| Box::new(s) as Reader);
            session.stderr = session.child.stderr.take().map(|s| Box::new(s) as Reader);
        }
        Ok(session)
    }

    /// Attaches to running container `id` through its monitor.
    pub async fn attach(
        &self,
        id: &str,
        opts: AttachOptions,
    ) -> Result<(AttachReader, AttachWriter)> {
        let rec = self.check_attach(id, opts.stdin)?;
        MonitorClient::new(rec.monitor_socket())
            .attach(opts)
            .await
            .map_err(|e| EngineError::Monitor(format!("attach to container {id}: {e}")))
    }

    /// Container `id` (an id or unique prefix), which must be running for `what` (exec, attach).
    pub fn check_running(&self, id: &str, what: &str) -> Result<ContainerRecord> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Running {
            return Err(rec.wrong_state("container", &format!("{what} needs a running container")));
        }
        Ok(rec)
    }

    /// Container `id`, if it can be attached to: running, and created with stdin when the
    /// attach wants to send some.
    pub fn check_attach(&self, id: &str, stdin: bool) -> Result<ContainerRecord> {
        let rec = self.check_running(id, "attach")?;
        if stdin && !rec.config.stdin {
            return Err(EngineError::Invalid(format!(
                "container {} was not created with stdin: true; attach without stdin",
                rec.id
            )));
        }
        Ok(rec)
    }

    /// Pod `id`, which must be ready for a port-forward.
    pub fn check_port_forward(&self, id: &str) -> Result<crate::sandbox::SandboxRecord> {
        let pod = self.pod_sandbox(id)?;
        if pod.state != crate::sandbox::SandboxState::Ready {
            return Err(EngineError::WrongState {
                what: "pod sandbox",
                id: pod.id.clone(),
                state: "NOTREADY".into(),
                message: "port-forward needs a ready pod".into(),
            });
        }
        Ok(pod)
    }

    /// Connects to `127.0.0.1:port` inside pod `id`'s network namespace (the host's for a
    /// host-network pod).
    pub async fn dial_pod_port(&self, id: &str, port: u16) -> Result<tokio::net::TcpStream> {
        let pod = self.check_port_forward(id)?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let std_stream = match pod.netns {
            Some(pin) => tokio::task::spawn_blocking(move || {
                husk_sys::ns::connect_in(&pin, addr, DIAL_TIMEOUT)
            })
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?,
            None => tokio::task::spawn_blocking(move || {
                std::net::TcpStream::connect_timeout(&addr, DIAL_TIMEOUT)
            })
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?,
        }
        .map_err(|e| {
            EngineError::PortForward(format!("connect to port {port} in pod {id}: {e}"))
        })?;
        std_stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(std_stream))
            .map_err(|e| EngineError::io("register", "port-forward socket", e))
    }
}

/// Accepts the runtime's connection on the console socket and takes the pty master from it.
async fn receive_pty(listener: &tokio::net::UnixListener) -> io::Result<OwnedFd> {
    let (conn, _) = listener.accept().await?;
    loop {
        conn.readable().await?;
        match conn.try_io(tokio::io::Interest::READABLE, || {
            husk_sys::pty::recv_fd(&conn)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// The pty master as an async stream. Reading ends (EOF) when the last process holding the
/// terminal closed it: the kernel answers EIO then.
struct Pty(Arc<AsyncFd<OwnedFd>>);

impl AsyncRead for Pty {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                rustix::io::read(fd.get_ref(), &mut *unfilled).map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => {
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Pty {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            match guard.try_io(|fd| rustix::io::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
