//! The crate's error type.

use std::io;

/// Errors of the streaming server's API (sessions' errors go to their clients instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be streamed as given.
    #[error("invalid streaming request: {0}")]
    InvalidRequest(String),
    /// Too many tokens are waiting to be used.
    #[error("too many pending streaming requests (at most {0})")]
    TooManyRequests(usize),
    /// The listen address could not be bound.
    #[error("binding the streaming server to {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: io::Error,
    },
    /// `serve` was called twice.
    #[error("the streaming server is already serving")]
    AlreadyServing,
    /// An I/O error of the listener.
    #[error("streaming server listener: {0}")]
    Io(#[from] io::Error),
    /// The TLS certificate or key is unusable.
    #[error("streaming server TLS: {0}")]
    Tls(String),
    /// The configured base URL cannot carry paths.
    #[error("invalid streaming base url {0}")]
    BaseUrl(String),
}
