//! The CRI streaming server: kubelet's exec/attach/port-forward hop, over WebSocket and SPDY/3.1.
//!
//! [`Server`] hands out one-time URLs (`get_exec`, `get_attach`, `get_port_forward`:
//! `http://<addr>/exec/<token>`, 32 random bytes in base64url, single use, expiring after
//! [`Config::token_ttl`]; anything else is a 404) and serves the sessions they name, calling a
//! [`StreamBackend`] for the work itself: this crate knows nothing of containers.
//!
//! Protocols, as kubelet's `cri/streaming` speaks them:
//! - WebSocket exec/attach: `v5.channel.k8s.io` (v4 + channel close), `v4.channel.k8s.io`,
//!   `v4.base64.channel.k8s.io`, `channel.k8s.io`, `base64.channel.k8s.io`. Channels 0 stdin,
//!   1 stdout, 2 stderr, 3 error (a `metav1.Status` JSON from v4 on; text before), 4 resize.
//! - SPDY/3.1 exec/attach (`X-Stream-Protocol-Version`: `v5`…`v2.channel.k8s.io`,
//!   `channel.k8s.io`): client-opened streams named by `streamType`.
//! - Port-forward: `portforward.k8s.io` over SPDY (data + error stream pairs by `requestID`,
//!   port in `port`), the same SPDY session tunnelled through a WebSocket
//!   (`SPDY/3.1+portforward.k8s.io`: binary messages carry the SPDY byte stream; kubectl and
//!   crictl ≥ 1.30), and `v4.channel.k8s.io` over WebSocket (two channels per port, each
//!   opened by the port number, little-endian).
//!
//! With the `client` feature, the `client` module connects to those URLs (WebSocket
//! exec/attach and port-forward).
//!
//! A malformed frame ends its own connection (WebSocket close 1002/1007/1009, SPDY GOAWAY
//! PROTOCOL_ERROR); other sessions are unaffected.
#![forbid(unsafe_code)]

mod backend;
#[cfg(feature = "client")]
pub mod client;
mod error;
mod pipe;
mod portforward;
mod remotecommand;
mod resize;
mod server;

pub mod spdy;
mod status;
mod tls;
mod token;
pub mod ws;

pub use backend::{
    AttachRequest, BackendError, ExecRequest, ExitStatus, PortForwardRequest, PortStream,
    StreamBackend, StreamIo, StreamReader, StreamWriter, TerminalSize,
};
pub use error::Error;
pub use server::{Config, Server};
pub use tls::tls_config;
