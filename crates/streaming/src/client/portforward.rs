//! One forwarded connection over WebSocket (`v4.channel.k8s.io` port-forward): the port's data
//! channel as a byte stream, its error channel as a message.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, PollSender};

use super::conn::{
    CTL_QUEUE, Ctl, DATA_QUEUE, Ended, IN_QUEUE, Incoming, OnEof, Reader, Writer, close_reply,
};
use super::exec::{poll_chunks, poll_send};
use super::handshake;
use super::{ClientError, PortForwardOptions};

/// The subprotocol of WebSocket port-forward.
const PROTOCOL: &str = "v4.channel.k8s.io";
/// The longest error message kept.
const MAX_ERROR: usize = 64 * 1024;

/// Opens one forwarded connection to `port` through a `PortForward` URL
/// (`http://host:port/portforward/<token>`; the port goes in its `port` query parameter, which
/// the server uses unless the token names ports itself).
///
/// Returns once the server has opened the port's channels.
pub async fn port_forward(
    url: &str,
    port: u16,
    opts: &PortForwardOptions,
) -> Result<PortForwardStream, ClientError> {
    let mut parsed = handshake::parse_url(url)?;
    if port == 0 {
        return Err(ClientError::InvalidUrl {
            url: url.to_owned(),
            reason: "port 0 cannot be forwarded".into(),
        });
    }
    let others: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != "port")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(others)
        .append_pair("port", &port.to_string());
    let deadline = Instant::now() + opts.connect_timeout;
    let up = handshake::connect(&parsed, &[PROTOCOL], opts.connect_timeout).await?;
    let (r, w) = up.stream.into_split();
    let (ctl_tx, ctl_rx) = mpsc::channel(CTL_QUEUE);
    let closing = CancellationToken::new();
    let mut reader = Reader::new(r, up.leftover, ctl_tx.downgrade(), closing.clone());

    // Each channel's first message names its port: find our data channel.
    let mut seen = [false; 256];
    let finding = async {
        loop {
            match reader.next().await {
                Incoming::Binary(d) => {
                    let Some(&channel) = d.first() else {
                        continue;
                    };
                    let first = !std::mem::replace(&mut seen[usize::from(channel)], true);
                    if first && channel % 2 == 0 && d.len() >= 3 && d[1..3] == port.to_le_bytes() {
                        return Ok(channel);
                    }
                }
                Incoming::End(ended) => {
                    let why = match ended {
                        Ended::Error(e) => e,
                        _ => ClientError::Protocol(format!(
                            "the server closed the connection without forwarding port {port}"
                        )),
                    };
                    return Err(why);
                }
            }
        }
    };
    let data_channel = match tokio::time::timeout_at(deadline, finding).await {
        Ok(found) => found?,
        Err(_) => {
            return Err(ClientError::Timeout {
                addr: parsed.host_str().unwrap_or_default().to_owned(),
                after: opts.connect_timeout,
            });
        }
    };

    let (out_tx, out_rx) = mpsc::channel(DATA_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let writer = Writer {
        w,
        ctl: ctl_rx,
        data: Some(out_rx),
        channel: data_channel,
        on_eof: OnEof::CloseConnection,
        stop: stop_rx,
        closing,
    };
    tokio::spawn(writer.run());
    let (in_tx, in_rx) = mpsc::channel(IN_QUEUE);
    let (err_tx, err_rx) = watch::channel(ErrorState::default());
    tokio::spawn(read_loop(
        reader,
        data_channel,
        seen,
        in_tx,
        err_tx,
        stop_tx,
    ));
    Ok(PortForwardStream {
        port,
        rx: in_rx,
        chunk: Bytes::new(),
        tx: Some(PollSender::new(out_tx)),
        errors: ErrorChannel { rx: err_rx },
        _keep: ctl_tx,
    })
}

async fn read_loop(
    mut reader: Reader,
    data_channel: u8,
    mut seen: [bool; 256],
    tx: mpsc::Sender<io::Result<Bytes>>,
    errors: watch::Sender<ErrorState>,
    stop: oneshot::Sender<Option<u16>>,
) {
    let error_channel = data_channel.wrapping_add(1);
    let mut tx = Some(tx);
    let ended = loop {
        match reader.next().await {
            Incoming::Binary(d) => {
                let Some(&channel) = d.first() else {
                    continue;
                };
                if !std::mem::replace(&mut seen[usize::from(channel)], true) || d.len() == 1 {
                    // The channel's port prefix, or an empty message.
                    continue;
                }
                if channel == data_channel {
                    if let Some(sender) = &tx
                        && sender.send(Ok(d.slice(1..))).await.is_err()
                    {
                        tx = None;
                    }
                } else if channel == error_channel {
                    errors.send_modify(|s| {
                        let room = MAX_ERROR.saturating_sub(s.message.len());
                        let text = String::from_utf8_lossy(&d[1..]);
                        s.message.extend(text.chars().take(room));
                    });
                }
            }
            Incoming::End(e) => break e,
        }
    };
    let _ = stop.send(close_reply(&ended));
    let failure = match ended {
        Ended::Closed(_) => None,
        Ended::Eof => Some(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the streaming connection closed without a close frame",
        )),
        Ended::Error(e) => Some(io::Error::other(e)),
    };
    if let (Some(sender), Some(failure)) = (tx, failure) {
        let _ = sender.send(Err(failure)).await;
    }
    errors.send_modify(|s| s.ended = true);
}

#[derive(Debug, Default)]
struct ErrorState {
    message: String,
    ended: bool,
}

/// A forwarded connection: reads what the pod's port sends, writes go to it.
///
/// Reading ends (EOF) when the server closes the connection, after its backend finished or
/// failed (then see [`PortForwardStream::error_channel`]). The protocol has no half-close:
/// shutting down the write side closes the WebSocket, after which the server stops
/// forwarding. Dropping the stream closes the connection.
pub struct PortForwardStream {
    port: u16,
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    tx: Option<PollSender<Bytes>>,
    errors: ErrorChannel,
    _keep: mpsc::Sender<Ctl>,
}

impl fmt::Debug for PortForwardStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortForwardStream")
            .field("port", &self.port)
            .field("writable", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

impl PortForwardStream {
    /// The forwarded port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port's error channel (usable after the stream is gone).
    pub fn error_channel(&self) -> ErrorChannel {
        self.errors.clone()
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_chunks(&mut this.rx, &mut this.chunk, cx, buf, |r| r)
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_send(&mut self.get_mut().tx, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx = None;
        Poll::Ready(Ok(()))
    }
}

/// The error channel of a forwarded port: the server's message when forwarding failed
/// (e.g. `error forwarding port 80 to pod …: connection refused`).
#[derive(Clone)]
pub struct ErrorChannel {
    rx: watch::Receiver<ErrorState>,
}

impl fmt::Debug for ErrorChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorChannel").finish_non_exhaustive()
    }
}

impl ErrorChannel {
    /// Waits for the connection's end, then returns the error message if the server sent one.
    pub async fn message(mut self) -> Option<String> {
        let _ = self.rx.wait_for(|s| s.ended).await;
        self.current()
    }

    /// The message received so far, without waiting.
    pub fn current(&self) -> Option<String> {
        let state = self.rx.borrow();
        (!state.message.is_empty()).then(|| state.message.clone())
    }
}
