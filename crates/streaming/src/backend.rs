//! What the streaming server asks of the runtime: the `StreamBackend` trait and its request types.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// An `exec` into a running container, as the CRI `ExecRequest` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    /// The container to run the command in.
    pub container_id: String,
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Whether the command runs in a terminal (stderr is then merged into stdout).
    pub tty: bool,
    /// Whether the client streams stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr (never together with `tty`).
    pub stderr: bool,
}

/// An `attach` to a running container's main process, as the CRI `AttachRequest` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttachRequest {
    /// The container to attach to.
    pub container_id: String,
    /// Whether the container has a terminal.
    pub tty: bool,
    /// Whether the client streams stdin.
    pub stdin: bool,
    /// Whether the client wants stdout.
    pub stdout: bool,
    /// Whether the client wants stderr (never together with `tty`).
    pub stderr: bool,
}

/// A port-forward into a pod's network namespace, as the CRI `PortForwardRequest` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortForwardRequest {
    /// The pod sandbox whose ports are forwarded.
    pub pod_id: String,
    /// The ports a WebSocket client gets (one channel pair each); SPDY clients name their
    /// ports per stream, and a non-empty list limits which ports they may name.
    pub ports: Vec<u16>,
}

/// A terminal size: `width` columns by `height` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// How a command or attach session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; 0 is success. A signal-killed process reports 128 + signal.
    pub code: i32,
}

impl ExitStatus {
    /// The status of a process that exited with `code`.
    pub fn new(code: i32) -> Self {
        Self { code }
    }

    /// Whether the process exited with 0.
    pub fn success(self) -> bool {
        self.code == 0
    }
}

/// A backend failure: reported to the client as an `InternalError` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    message: String,
}

impl BackendError {
    /// A failure described by `message`.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            message: message.to_string(),
        }
    }

    /// The description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The reading end of a client's stream (stdin).
pub type StreamReader = Box<dyn AsyncRead + Send + Unpin>;
/// The writing end of a client's stream (stdout, stderr).
pub type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The client's streams for one exec or attach session.
///
/// `stdin` reaches EOF when the client closes it (or goes away); writes to `stdout`/`stderr`
/// fail with `BrokenPipe` once the client is gone. Drop (or shut down) the writers before
/// returning: the exit status is sent after everything written has been delivered.
pub struct StreamIo {
    /// The client's stdin, when requested.
    pub stdin: Option<StreamReader>,
    /// The client's stdout, when requested.
    pub stdout: Option<StreamWriter>,
    /// The client's stderr, when requested (never with a tty).
    pub stderr: Option<StreamWriter>,
    /// Terminal resizes from the client, when there is a tty.
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Cancelled when the client's connection ends before the session does.
    pub cancel: CancellationToken,
}

impl fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// One forwarded connection: bytes from the client are read, bytes written go to the client.
/// Shutting down the write side half-closes the client's stream; reading ends at the client's
/// half-close.
#[derive(Debug)]
pub struct PortStream {
    incoming: DuplexStream,
    outgoing: DuplexStream,
}

impl PortStream {
    pub(crate) fn new(incoming: DuplexStream, outgoing: DuplexStream) -> Self {
        Self { incoming, outgoing }
    }
}

impl AsyncRead for PortStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().incoming).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().outgoing).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().outgoing).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().outgoing).poll_shutdown(cx)
    }
}

/// The runtime side of streaming: husk's server crate implements it over the engine.
#[async_trait]
pub trait StreamBackend: Send + Sync + 'static {
    /// Runs `req.cmd` in the container with the client's streams, returning its exit status.
    async fn exec(&self, req: ExecRequest, io: StreamIo) -> Result<ExitStatus, BackendError>;

    /// Attaches the client's streams to the container's main process until it exits (its exit
    /// status) or the client goes away.
    async fn attach(&self, req: AttachRequest, io: StreamIo) -> Result<ExitStatus, BackendError>;

    /// Connects `stream` to `port` inside the pod's network namespace until either side ends.
    async fn port_forward(
        &self,
        pod_id: &str,
        port: u16,
        stream: PortStream,
    ) -> Result<(), BackendError>;
}
