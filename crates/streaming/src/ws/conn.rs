//! A channel-multiplexed WebSocket connection: the writer task and the event reader.

use std::io;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::frame::{self, Assembler, Decoder, FrameError, Message, Opcode, Role, close_code};

/// The largest message accepted from a client.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// Messages queued for the writer.
pub(crate) const OUT_QUEUE: usize = 32;
/// kubelet's v5 "close this channel" signal.
const STREAM_CLOSE: u8 = 255;
/// The writer flushes at least this often while messages keep coming.
const BATCH: usize = 256 * 1024;

/// How channel data is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    /// Binary messages: channel byte, then data.
    Binary,
    /// Text messages: channel as an ASCII digit, then base64 data.
    Base64,
    /// Binary messages carrying a byte stream, no channels (a tunnel; events are channel 0).
    Raw,
}

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum WsOut {
    /// Data on a channel.
    Data { channel: u8, data: Bytes },
    /// The answer to a ping.
    Pong(Bytes),
    /// The close frame; the writer then stops.
    Close { code: u16, reason: String },
}

fn encode(msg: &WsOut, codec: Codec, out: &mut BytesMut) -> bool {
    match msg {
        WsOut::Data { channel, data } => match codec {
            Codec::Binary => {
                frame::encode_parts(true, Opcode::Binary, &[&[*channel], data], None, out)
            }
            Codec::Base64 => {
                let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
                text.push(char::from(b'0'.wrapping_add(*channel)));
                base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
                frame::encode(true, Opcode::Text, text.as_bytes(), None, out);
            }
            Codec::Raw => frame::encode(true, Opcode::Binary, data, None, out),
        },
        WsOut::Pong(p) => frame::encode(true, Opcode::Pong, p, None, out),
        WsOut::Close { code, reason } => {
            frame::encode(
                true,
                Opcode::Close,
                &frame::close_payload(*code, reason),
                None,
                out,
            );
            return true;
        }
    }
    false
}

/// Writes `rx`'s messages to `w` until a close (or every sender is gone).
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<WsOut>,
    codec: Codec,
) {
    let mut buf = BytesMut::new();
    while let Some(msg) = rx.recv().await {
        let mut closing = encode(&msg, codec, &mut buf);
        while !closing && buf.len() < BATCH {
            match rx.try_recv() {
                Ok(msg) => closing = encode(&msg, codec, &mut buf),
                Err(_) => break,
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            return;
        }
        buf.clear();
        if closing {
            // The client answers the close and closes the connection (or the linger does).
            return;
        }
    }
}

/// What the client did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WsEvent {
    /// Data for a channel.
    Data { channel: u8, data: Bytes },
    /// v5: the client closed a channel (its stdin).
    CloseChannel(u8),
    /// The client closed the connection (close frame or EOF).
    Closed,
}

/// Why a connection is torn down.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WsError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("reading the websocket: {0}")]
    Io(#[from] io::Error),
    #[error("a stream close signal must name exactly one channel")]
    BadCloseSignal,
    #[error("invalid base64 channel data")]
    BadBase64,
    #[error("close signal for unknown channel {0}")]
    BadChannel(u8),
    #[error("a tunnel carries binary messages only")]
    TextInTunnel,
}

impl WsError {
    /// The close code answering this error.
    pub(crate) fn close_code(&self) -> u16 {
        match self {
            Self::Frame(e) => e.close_code(),
            Self::Io(_) => close_code::INTERNAL_ERROR,
            Self::BadCloseSignal | Self::BadChannel(_) | Self::TextInTunnel => {
                close_code::PROTOCOL_ERROR
            }
            Self::BadBase64 => close_code::INVALID_DATA,
        }
    }
}

/// Reads a client's messages as channel events, answering pings and closes on the way.
pub(crate) struct WsReader<R> {
    r: R,
    buf: BytesMut,
    decoder: Decoder,
    assembler: Assembler,
    codec: Codec,
    close_signal: bool,
    tx: mpsc::Sender<WsOut>,
}

impl<R: AsyncRead + Unpin> WsReader<R> {
    /// A reader of `r`; `close_signal` enables v5's channel close; answers go to `tx`.
    pub(crate) fn new(r: R, codec: Codec, close_signal: bool, tx: mpsc::Sender<WsOut>) -> Self {
        Self {
            r,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(Role::Server, MAX_MESSAGE),
            assembler: Assembler::new(MAX_MESSAGE),
            codec,
            close_signal,
            tx,
        }
    }

    /// The next channel event.
    pub(crate) async fn next(&mut self) -> Result<WsEvent, WsError> {
        loop {
            let Some(frame) = self.decoder.decode(&mut self.buf)? else {
                self.buf.reserve(64 * 1024);
                if self.r.read_buf(&mut self.buf).await? == 0 {
                    return Ok(WsEvent::Closed);
                }
                continue;
            };
            let Some(msg) = self.assembler.push(frame)? else {
                continue;
            };
            match msg {
                Message::Ping(p) => {
                    let _ = self.tx.send(WsOut::Pong(p)).await;
                }
                Message::Pong(_) => {}
                Message::Close(_) => {
                    let close = WsOut::Close {
                        code: close_code::NORMAL,
                        reason: String::new(),
                    };
                    let _ = self.tx.send(close).await;
                    return Ok(WsEvent::Closed);
                }
                Message::Text(_) if self.codec == Codec::Raw => {
                    return Err(WsError::TextInTunnel);
                }
                Message::Text(d) | Message::Binary(d) => {
                    if let Some(ev) = self.channel_event(d)? {
                        return Ok(ev);
                    }
                }
            }
        }
    }

    fn channel_event(&self, d: Bytes) -> Result<Option<WsEvent>, WsError> {
        let Some(&first) = d.first() else {
            return Ok(None);
        };
        if self.close_signal && first == STREAM_CLOSE {
            return match d[..] {
                [_, channel] => Ok(Some(WsEvent::CloseChannel(channel))),
                _ => Err(WsError::BadCloseSignal),
            };
        }
        Ok(Some(match self.codec {
            Codec::Raw => WsEvent::Data {
                channel: 0,
                data: d,
            },
            Codec::Binary => WsEvent::Data {
                channel: first,
                data: d.slice(1..),
            },
            Codec::Base64 => WsEvent::Data {
                channel: first.wrapping_sub(b'0'),
                data: base64::engine::general_purpose::STANDARD
                    .decode(&d[1..])
                    .map_err(|_| WsError::BadBase64)?
                    .into(),
            },
        }))
    }
}

/// Ends a session: a normal close after everything queued, then the reader gets a moment to
/// see the client's close before it is stopped.
pub(crate) async fn close_normally(
    tx: mpsc::Sender<WsOut>,
    writer: tokio::task::JoinHandle<()>,
    mut read_task: tokio::task::JoinHandle<()>,
) {
    let _ = tx
        .send(WsOut::Close {
            code: close_code::NORMAL,
            reason: String::new(),
        })
        .await;
    drop(tx);
    let _ = writer.await;
    if tokio::time::timeout(crate::pipe::LINGER, &mut read_task)
        .await
        .is_err()
    {
        read_task.abort();
    }
}

/// Sends a close frame for `err` (best effort).
pub(crate) async fn close_with_error(tx: &mpsc::Sender<WsOut>, err: &WsError) {
    tracing::debug!(error = %err, "closing websocket stream connection");
    let close = WsOut::Close {
        code: err.close_code(),
        reason: err.to_string(),
    };
    let _ = tx.send(close).await;
}
