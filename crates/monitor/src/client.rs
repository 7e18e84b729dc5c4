//! The async client huskd uses (feature `client`): spawn a monitor and read its one-line start
//! report, ask it for status / wait / log reopen over its control socket, attach to the
//! container's stdio with binary frames.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Chain};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command};

use crate::protocol::{Ack, ExitRecord, Request, StartReply, StatusReply, frame};

pub use crate::protocol::read_exit_file;

/// How long a monitor may take to report the result of `create`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong talking to a monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("failed to spawn monitor {bin:?}")]
    Spawn { bin: PathBuf, source: io::Error },
    #[error("monitor did not report within {0:?}")]
    StartTimeout(Duration),
    #[error("monitor exited without a report ({status})")]
    NoReport { status: String },
    #[error("failed to read the monitor's report")]
    ReadReport(#[source] io::Error),
    #[error("malformed report from the monitor: {line:?}")]
    BadReport {
        line: String,
        source: Option<serde_json::Error>,
    },
    /// The runtime's `create` failed; `message` is the runtime's own explanation.
    #[error("container create failed: {message}")]
    Create { message: String },
    #[error("failed to connect to monitor socket {path:?}")]
    Connect { path: PathBuf, source: io::Error },
    #[error("monitor connection failed")]
    Io(#[from] io::Error),
    /// The monitor has exited (its exit file holds the record, see
    /// [`MonitorClient::with_exit_file`]).
    #[error("monitor on {path:?} is gone")]
    Gone { path: PathBuf },
    #[error("malformed reply from the monitor: {line:?}")]
    BadReply {
        line: String,
        source: serde_json::Error,
    },
    #[error("monitor refused the request: {message}")]
    Refused { message: String },
    #[error("attach frame of {len} bytes exceeds the limit")]
    FrameTooLarge { len: u32 },
}

/// Spawns `monitor_bin --config config_path` and waits (at most [`START_TIMEOUT`]) for its
/// report: the container's pid once it is CREATED, or the runtime's error. The monitor is not
/// killed when the returned `Child` is dropped: it must outlive huskd.
pub async fn spawn_monitor(
    monitor_bin: &Path,
    config_path: &Path,
) -> Result<(Child, i32), MonitorError> {
    let mut child = Command::new(monitor_bin)
        .arg("--config")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| MonitorError::Spawn {
            bin: monitor_bin.to_path_buf(),
            source,
        })?;
    let report = read_report(&mut child).await;
    match report {
        Ok(StartReply {
            ok: true,
            pid: Some(pid),
            ..
        }) => Ok((child, pid)),
        Ok(reply) => {
            let _ = child.wait().await;
            match reply {
                StartReply {
                    ok: false, error, ..
                } => Err(MonitorError::Create {
                    message: error.unwrap_or_default(),
                }),
                _ => Err(MonitorError::BadReport {
                    line: format!("{reply:?}"),
                    source: None,
                }),
            }
        }
        Err(e) => {
            // A monitor that cannot report is of no use; do not leave it behind.
            let _ = child.start_kill();
            let _ = child.wait().await;
            Err(e)
        }
    }
}

async fn read_report(child: &mut Child) -> Result<StartReply, MonitorError> {
    let Some(stdout) = child.stdout.take() else {
        return Err(MonitorError::ReadReport(io::Error::other("no stdout pipe")));
    };
    let mut line = String::new();
    let mut reader = BufReader::new(stdout);
    match tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut line)).await {
        Err(_) => Err(MonitorError::StartTimeout(START_TIMEOUT)),
        Ok(Err(e)) => Err(MonitorError::ReadReport(e)),
        Ok(Ok(0)) => {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            Err(MonitorError::NoReport { status })
        }
        Ok(Ok(_)) => serde_json::from_str(line.trim()).map_err(|e| MonitorError::BadReport {
            line: line.clone(),
            source: Some(e),
        }),
    }
}

/// A handle on one monitor's control socket. Each call uses its own connection, so dropping a
/// pending call (e.g. [`MonitorClient::wait`]) cancels it cleanly.
#[derive(Debug, Clone)]
pub struct MonitorClient {
    socket: PathBuf,
    exit_file: Option<PathBuf>,
}

/// Which streams an attach connection carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Send stdin to the container.
    pub stdin: bool,
    /// Receive stdout (all output in tty mode).
    pub stdout: bool,
    /// Receive stderr.
    pub stderr: bool,
}

impl MonitorClient {
    /// Checks that the monitor answers on `socket`.
    pub async fn connect(socket: impl Into<PathBuf>) -> Result<Self, MonitorError> {
        let client = Self::new(socket);
        client.open().await?;
        Ok(client)
    }

    /// A client for `socket` without connecting yet.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            exit_file: None,
        }
    }

    /// Lets [`MonitorClient::status`] and [`MonitorClient::wait`] answer from the monitor's
    /// exit file once the monitor has exited (it writes the file before it stops listening).
    pub fn with_exit_file(mut self, exit_file: impl Into<PathBuf>) -> Self {
        self.exit_file = Some(exit_file.into());
        self
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The container's pid, whether it runs, and its exit record once it has one.
    pub async fn status(&self) -> Result<StatusReply, MonitorError> {
        match self.request(Request::Status).await {
            Ok((_, line)) => parse_reply(&line),
            Err(e) => self.exit_file_fallback(e).map(|exit| StatusReply {
                pid: exit.pid,
                running: false,
                exit: Some(exit),
            }),
        }
    }

    /// Resolves once the container has exited. Cancel-safe.
    pub async fn wait(&self) -> Result<ExitRecord, MonitorError> {
        match self.request(Request::Wait).await {
            Ok((_, line)) => parse_reply(&line),
            Err(e) => self.exit_file_fallback(e),
        }
    }

    /// The exit record from the exit file when the monitor is gone; `err` otherwise.
    fn exit_file_fallback(&self, err: MonitorError) -> Result<ExitRecord, MonitorError> {
        match (&err, &self.exit_file) {
            (MonitorError::Gone { .. }, Some(file)) => read_exit_file(file).ok_or(err),
            _ => Err(err),
        }
    }

    /// Has the monitor close and reopen the log file (after it was renamed).
    pub async fn reopen_log(&self) -> Result<(), MonitorError> {
        let (_, line) = self.request(Request::ReopenLog).await?;
        parse_reply::<Ack>(&line).map(|_| ())
    }

    /// Switches a new connection to attach frames.
    pub async fn attach(
        &self,
        opts: AttachOptions,
    ) -> Result<(AttachReader, AttachWriter), MonitorError> {
        let request = Request::Attach {
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        };
        let (reader, line) = self.request(request).await?;
        parse_reply::<Ack>(&line)?;
        // Frames may already sit in the line reader's buffer.
        let buffered = reader.buffer().to_vec();
        let (read, write) = reader.into_inner().into_split();
        let source = io::Cursor::new(buffered).chain(read);
        Ok((
            AttachReader {
                inner: BufReader::new(source),
            },
            AttachWriter { inner: write },
        ))
    }

    async fn open(&self) -> Result<UnixStream, MonitorError> {
        UnixStream::connect(&self.socket)
            .await
            .map_err(|source| match source.kind() {
                // Reset: the monitor was closing its socket as we connected (it is exiting).
                io::ErrorKind::NotFound
                | io::ErrorKind::ConnectionRefused
                | io::ErrorKind::ConnectionReset => self.gone(),
                _ => MonitorError::Connect {
                    path: self.socket.clone(),
                    source,
                },
            })
    }

    fn gone(&self) -> MonitorError {
        MonitorError::Gone {
            path: self.socket.clone(),
        }
    }

    async fn request(
        &self,
        request: Request,
    ) -> Result<(BufReader<UnixStream>, String), MonitorError> {
        let mut stream = self.open().await?;
        let mut json = serde_json::to_vec(&request).map_err(|source| MonitorError::BadReply {
            line: String::new(),
            source,
        })?;
        json.push(b'\n');
        // The monitor closes connections only when it exits (after writing its exit file).
        let gone = |e: io::Error| match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => self.gone(),
            _ => MonitorError::Io(e),
        };
        stream.write_all(&json).await.map_err(gone)?;
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).await.map_err(gone)? == 0 {
            return Err(self.gone());
        }
        Ok((reader, line))
    }
}

/// `{"ok":false,...}` becomes [`MonitorError::Refused`], anything else must parse as `T`.
fn parse_reply<T: DeserializeOwned>(line: &str) -> Result<T, MonitorError> {
    if let Ok(Ack { ok: false, error }) = serde_json::from_str::<Ack>(line) {
        return Err(MonitorError::Refused {
            message: error.unwrap_or_default(),
        });
    }
    serde_json::from_str(line).map_err(|source| MonitorError::BadReply {
        line: line.to_string(),
        source,
    })
}

/// What an attach connection receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachEvent {
    /// Container stdout (all output in tty mode).
    Stdout(Vec<u8>),
    /// Container stderr.
    Stderr(Vec<u8>),
    /// The container exited; the last event.
    Exit(ExitRecord),
}

/// The receiving half of an attach connection.
pub struct AttachReader {
    inner: BufReader<Chain<io::Cursor<Vec<u8>>, OwnedReadHalf>>,
}

impl std::fmt::Debug for AttachReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachReader").finish_non_exhaustive()
    }
}

impl AttachReader {
    /// The next output or exit event; `None` once the monitor closed the connection (it also
    /// drops clients that fall more than 64 KiB behind). Not cancel-safe.
    pub async fn next(&mut self) -> Result<Option<AttachEvent>, MonitorError> {
        loop {
            let mut header = [0u8; frame::HEADER_LEN];
            match self.inner.read_exact(&mut header).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e.into()),
            }
            let (kind, len) = frame::parse_header(header);
            if len > frame::MAX_PAYLOAD {
                return Err(MonitorError::FrameTooLarge { len });
            }
            let mut payload = vec![0u8; len as usize];
            self.inner.read_exact(&mut payload).await?;
            return Ok(Some(match kind {
                frame::STDOUT => AttachEvent::Stdout(payload),
                frame::STDERR => AttachEvent::Stderr(payload),
                frame::EXIT => {
                    AttachEvent::Exit(serde_json::from_slice(&payload).map_err(|source| {
                        MonitorError::BadReply {
                            line: String::from_utf8_lossy(&payload).into_owned(),
                            source,
                        }
                    })?)
                }
                _ => continue,
            }));
        }
    }
}

/// The sending half of an attach connection. Dropping it half-closes the connection, which
/// counts as detaching stdin (see `stdin_once`).
#[derive(Debug)]
pub struct AttachWriter {
    inner: OwnedWriteHalf,
}

impl AttachWriter {
    /// Sends bytes to the container's stdin.
    pub async fn stdin(&mut self, data: &[u8]) -> Result<(), MonitorError> {
        for chunk in data.chunks(frame::MAX_PAYLOAD as usize) {
            self.frame(frame::STDIN, chunk).await?;
        }
        Ok(())
    }

    /// Resizes the container's terminal.
    pub async fn resize(&mut self, cols: u16, rows: u16) -> Result<(), MonitorError> {
        self.frame(frame::RESIZE, &frame::resize_payload(cols, rows))
            .await
    }

    /// Closes the container's stdin (after what was sent before).
    pub async fn close_stdin(&mut self) -> Result<(), MonitorError> {
        self.frame(frame::CLOSE_STDIN, &[]).await
    }

    async fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), MonitorError> {
        let mut buf = Vec::with_capacity(frame::HEADER_LEN + payload.len());
        buf.extend_from_slice(&frame::header(kind, payload.len() as u32));
        buf.extend_from_slice(payload);
        self.inner.write_all(&buf).await?;
        Ok(())
    }
}
