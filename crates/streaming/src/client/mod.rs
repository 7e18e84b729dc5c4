//! A WebSocket client for the URLs the CRI `Exec`, `Attach` and `PortForward` RPCs return
//! (feature `client`).
//!
//! - [`exec`] / [`attach`]: a remotecommand session over `v5.channel.k8s.io` (preferred) or
//!   `v4.channel.k8s.io`. The [`Session`] gives an [`AsyncWrite`](tokio::io::AsyncWrite) stdin
//!   (shutting it down closes the remote stdin with v5's close signal), `AsyncRead` stdout and
//!   stderr, a [`Resizer`], and the exit code from the error channel's `metav1.Status`
//!   ([`Session::wait`]); [`Session::run`] copies between given streams and the session, for
//!   CLIs and tests alike.
//! - [`port_forward`]: one forwarded connection over `v4.channel.k8s.io` (the port in the `port`
//!   query parameter; a data and an error channel per port, each opened by the port number),
//!   as an `AsyncRead + AsyncWrite` [`PortForwardStream`] whose [`ErrorChannel`] carries the
//!   server's error message. That protocol has no half-close: shutting down the write side
//!   closes the WebSocket, so the server stops forwarding once it has answered the close.
//!
//! Only plain `http://` (or `ws://`) URLs are supported: the streaming server speaks no TLS.
//! Client frames are masked (RFC 6455); the framing is the crate's own [`crate::ws::frame`].

mod conn;
mod exec;
mod handshake;
mod portforward;

use std::io;
use std::time::Duration;

pub use exec::{OutputStream, Resizer, Session, Stdin, attach, exec};
pub use portforward::{ErrorChannel, PortForwardStream, port_forward};

use crate::ws::frame::FrameError;

/// How long connecting and the WebSocket handshake may take, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A remotecommand (exec/attach) WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `v5.channel.k8s.io`: v4 plus the stream-close signal (closing stdin is seen remotely).
    V5,
    /// `v4.channel.k8s.io`: binary channels, a JSON `metav1.Status` on the error channel;
    /// stdin cannot be closed without closing the whole session.
    V4,
}

impl Protocol {
    /// The subprotocol's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V5 => "v5.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::V5, Self::V4]
            .into_iter()
            .find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Options of [`exec`] and [`attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// The subprotocols offered, most preferred first (default: v5, then v4).
    pub protocols: Vec<Protocol>,
    /// The limit on connecting plus the handshake (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            protocols: vec![Protocol::V5, Protocol::V4],
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Options of [`port_forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForwardOptions {
    /// The limit on connecting, the handshake and the server opening the port's channels
    /// (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
}

impl Default for PortForwardOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Why a streaming session could not be opened, or how it failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be used.
    #[error("invalid streaming url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TCP connection failed.
    #[error("connecting to the streaming server at {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// Connecting and the handshake took too long.
    #[error("no answer from the streaming server at {addr} within {after:?}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The limit.
        after: Duration,
    },
    /// The server does not know the URL's token (never issued, already used, or expired).
    #[error(
        "streaming session not found (HTTP 404): the URL's token is unknown, already used or expired"
    )]
    NotFound,
    /// The server refused the upgrade with another HTTP status.
    #[error("the streaming server refused the session: HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body (its first line or so).
        body: String,
    },
    /// The server's answer to the upgrade broke RFC 6455 or chose no offered subprotocol.
    #[error("websocket handshake failed: {0}")]
    Handshake(String),
    /// The server broke the WebSocket framing.
    #[error("invalid websocket frame from the streaming server: {0}")]
    Frame(#[from] FrameError),
    /// The server broke the channel protocol.
    #[error("streaming protocol error: {0}")]
    Protocol(String),
    /// Reading or writing the connection failed.
    #[error("streaming connection: {0}")]
    Io(#[from] io::Error),
    /// The connection ended before the session's status arrived.
    #[error("the streaming connection closed before the session ended")]
    Disconnected,
    /// The server closed the WebSocket with an error code.
    #[error("the streaming server closed the session with code {code}: {reason}")]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The session failed remotely (a `Failure` status other than a non-zero exit code).
    #[error("{message}")]
    Remote {
        /// The status' `reason` (e.g. `InternalError`).
        reason: String,
        /// The status' `message`.
        message: String,
    },
    /// Copying between the session and a local stream failed.
    #[error("copying {stream}: {source}")]
    Copy {
        /// Which stream (`stdout` or `stderr`).
        stream: &'static str,
        /// The cause.
        source: io::Error,
    },
}

impl ClientError {
    /// The HTTP status of a refused upgrade.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::NotFound => Some(404),
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}
