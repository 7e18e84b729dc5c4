//! The client's connection machinery: the writer task (masked frames) and the frame reader.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::ClientError;
use crate::ws::frame::{self, Assembler, Decoder, Message, Opcode, Role, close_code};

/// The largest message accepted from the server.
pub(crate) const MAX_MESSAGE: usize = 16 << 20;
/// The most bytes one data frame carries.
pub(crate) const MAX_FRAME: usize = 64 * 1024;
/// Queued control messages (resizes, pongs).
pub(crate) const CTL_QUEUE: usize = 64;
/// Queued chunks of outgoing data (stdin, a forwarded connection's bytes).
pub(crate) const DATA_QUEUE: usize = 16;
/// Queued chunks of incoming data per stream.
pub(crate) const IN_QUEUE: usize = 16;
/// After our close frame, how long the server has to answer before the connection is dropped.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// kubelet's v5 "close this channel" signal byte.
const STREAM_CLOSE: u8 = 255;
/// The writer flushes at least this often while messages keep coming.
const BATCH: usize = 256 * 1024;

/// What the writer sends besides the data stream.
#[derive(Debug)]
pub(crate) enum Ctl {
    /// Data on a channel (resize events).
    Data { channel: u8, data: Bytes },
    /// The answer to a ping.
    Pong(Bytes),
}

/// What the writer does when the data stream's senders are all gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnEof {
    /// v5: send the close signal for the channel.
    CloseChannel,
    /// The protocol cannot say it (v4 exec): send nothing.
    Nothing,
    /// Close the WebSocket (port-forward).
    CloseConnection,
}

/// The writer's inputs.
pub(crate) struct Writer {
    pub(crate) w: OwnedWriteHalf,
    pub(crate) ctl: mpsc::Receiver<Ctl>,
    /// Outgoing data for `channel`; `None` once ended.
    pub(crate) data: Option<mpsc::Receiver<Bytes>>,
    pub(crate) channel: u8,
    pub(crate) on_eof: OnEof,
    /// From the reader: stop, answering the server's close with this code first.
    pub(crate) stop: oneshot::Receiver<Option<u16>>,
    /// Cancelled once our close frame is out (the reader then waits [`CLOSE_TIMEOUT`] at most).
    pub(crate) closing: CancellationToken,
}

enum Item {
    Ctl(Ctl),
    Data(Bytes),
    DataEnd,
    /// Every handle of the session is gone: close.
    Abandoned,
    Stop(Option<u16>),
}

fn mask() -> [u8; 4] {
    rand::random()
}

fn encode_data(channel: u8, data: &[u8], out: &mut BytesMut) {
    frame::encode_parts(true, Opcode::Binary, &[&[channel], data], Some(mask()), out);
}

fn encode_close(code: u16, out: &mut BytesMut) {
    frame::encode(
        true,
        Opcode::Close,
        &frame::close_payload(code, ""),
        Some(mask()),
        out,
    );
}

async fn recv_data(data: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match data {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Writer {
    /// Writes until a close (ours or the answer to the server's) or a write error.
    pub(crate) async fn run(mut self) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            let item = tokio::select! {
                biased;
                s = &mut self.stop => Item::Stop(s.unwrap_or(None)),
                c = self.ctl.recv() => c.map_or(Item::Abandoned, Item::Ctl),
                d = recv_data(&mut self.data) => d.map_or(Item::DataEnd, Item::Data),
            };
            let mut done = self.encode(item, &mut buf);
            while !done && buf.len() < BATCH {
                let next = match self.ctl.try_recv() {
                    Ok(c) => Item::Ctl(c),
                    Err(_) => match self.data.as_mut().map(|d| d.try_recv()) {
                        Some(Ok(d)) => Item::Data(d),
                        _ => break,
                    },
                };
                done = self.encode(next, &mut buf);
            }
            if !buf.is_empty() && self.w.write_all(&buf).await.is_err() {
                break;
            }
            buf.clear();
            if done {
                break;
            }
        }
        self.closing.cancel();
        let _ = self.w.shutdown().await;
    }

    /// Encodes `item`; true when the writer is done after it.
    fn encode(&mut self, item: Item, out: &mut BytesMut) -> bool {
        match item {
            Item::Ctl(Ctl::Data { channel, data }) => encode_data(channel, &data, out),
            Item::Ctl(Ctl::Pong(p)) => frame::encode(true, Opcode::Pong, &p, Some(mask()), out),
            Item::Data(d) => encode_data(self.channel, &d, out),
            Item::DataEnd => {
                self.data = None;
                match self.on_eof {
                    OnEof::CloseChannel => encode_data(STREAM_CLOSE, &[self.channel], out),
                    OnEof::Nothing => {}
                    OnEof::CloseConnection => {
                        encode_close(close_code::NORMAL, out);
                        return true;
                    }
                }
            }
            Item::Abandoned => {
                encode_close(close_code::NORMAL, out);
                return true;
            }
            Item::Stop(code) => {
                if let Some(code) = code {
                    encode_close(code, out);
                }
                return true;
            }
        }
        false
    }
}

/// How the server's side of a connection ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// A close frame, with its code and reason when given.
    Closed(Option<(u16, String)>),
    /// EOF without a close frame, or our close went unanswered.
    Eof,
    /// Reading failed, or the server broke the framing.
    Error(ClientError),
}

/// Reads the server's messages, answering pings.
pub(crate) struct Reader {
    r: OwnedReadHalf,
    buf: BytesMut,
    decoder: Decoder,
    assembler: Assembler,
    ctl: mpsc::WeakSender<Ctl>,
    closing: CancellationToken,
}

/// What the reader hands on.
pub(crate) enum Incoming {
    /// A binary message: channel byte, then data.
    Binary(Bytes),
    /// The connection's end.
    End(Ended),
}

impl Reader {
    pub(crate) fn new(
        r: OwnedReadHalf,
        leftover: BytesMut,
        ctl: mpsc::WeakSender<Ctl>,
        closing: CancellationToken,
    ) -> Self {
        Self {
            r,
            buf: leftover,
            decoder: Decoder::new(Role::Client, MAX_MESSAGE),
            assembler: Assembler::new(MAX_MESSAGE),
            ctl,
            closing,
        }
    }

    /// The next binary message or the end; text messages are ignored (never sent by v4/v5).
    pub(crate) async fn next(&mut self) -> Incoming {
        loop {
            let msg = match self.next_message().await {
                Ok(Some(m)) => m,
                Ok(None) => return Incoming::End(Ended::Eof),
                Err(e) => return Incoming::End(Ended::Error(e)),
            };
            match msg {
                Message::Binary(d) => return Incoming::Binary(d),
                Message::Text(_) | Message::Pong(_) => {}
                Message::Ping(p) => {
                    if let Some(ctl) = self.ctl.upgrade() {
                        let _ = ctl.try_send(Ctl::Pong(p));
                    }
                }
                Message::Close(c) => return Incoming::End(Ended::Closed(c)),
            }
        }
    }

    async fn next_message(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            while let Some(frame) = self.decoder.decode(&mut self.buf)? {
                if let Some(msg) = self.assembler.push(frame)? {
                    return Ok(Some(msg));
                }
            }
            self.buf.reserve(64 * 1024);
            let closing = &self.closing;
            let timed_out = async {
                closing.cancelled().await;
                tokio::time::sleep(CLOSE_TIMEOUT).await;
            };
            tokio::select! {
                n = self.r.read_buf(&mut self.buf) => {
                    if n? == 0 {
                        return Ok(None);
                    }
                }
                () = timed_out => return Ok(None),
            }
        }
    }
}

/// The answer a reader's end calls for: the close code to send back, if any.
pub(crate) fn close_reply(ended: &Ended) -> Option<u16> {
    match ended {
        Ended::Closed(_) => Some(close_code::NORMAL),
        Ended::Eof => None,
        Ended::Error(ClientError::Frame(e)) => Some(e.close_code()),
        Ended::Error(ClientError::Io(_)) => None,
        Ended::Error(_) => Some(close_code::PROTOCOL_ERROR),
    }
}
