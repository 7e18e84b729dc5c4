//! A SPDY/3.1 server connection: the writer task, and the reader that accepts the client's
//! streams, routes their data and answers pings.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

use super::flow::{Flow, SETTINGS_INITIAL_WINDOW};
use super::frame::{Decoder, Encoder, FLAG_FIN, Frame, MAX_FRAME, SpdyError, goaway, rst};
use super::headers::Headers;
use crate::pipe::{feed, pipe};

/// Messages queued for the writer.
pub(crate) const OUT_QUEUE: usize = 32;
/// Received bytes are acknowledged (WINDOW_UPDATE) in steps of this size.
const WINDOW_ACK: u32 = 32 * 1024;
/// The writer flushes at least this often while messages keep coming.
const BATCH: usize = 256 * 1024;

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum SpdyOut {
    /// Accepts a client's stream.
    Reply(u32),
    /// Data on a stream.
    Data { stream_id: u32, data: Bytes },
    /// The server's half-close of a stream.
    Fin(u32),
    /// Aborts a stream.
    Rst { stream_id: u32, status: u32 },
    /// Echoes a client's ping.
    Pong(u32),
    /// Flow-control credit for the client.
    WindowUpdate { stream_id: u32, delta: u32 },
    /// Ends the session: GOAWAY, then the writer stops.
    GoAway { last_good: u32, status: u32 },
}

fn frame(msg: SpdyOut) -> Frame {
    match msg {
        // kubelet's replies carry no headers; SPDY/3's HTTP layering (and clients built on
        // it, like spdy-transport) want a status and version, which Go clients ignore.
        SpdyOut::Reply(stream_id) => Frame::SynReply {
            stream_id,
            flags: 0,
            headers: vec![
                (":status".into(), "200".into()),
                (":version".into(), "HTTP/1.1".into()),
            ],
        },
        SpdyOut::Data { stream_id, data } => Frame::Data {
            stream_id,
            flags: 0,
            data,
        },
        SpdyOut::Fin(stream_id) => Frame::Data {
            stream_id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        },
        SpdyOut::Rst { stream_id, status } => Frame::RstStream { stream_id, status },
        SpdyOut::Pong(id) => Frame::Ping { id },
        SpdyOut::WindowUpdate { stream_id, delta } => Frame::WindowUpdate { stream_id, delta },
        SpdyOut::GoAway { last_good, status } => Frame::GoAway { last_good, status },
    }
}

/// Writes `rx`'s messages to `w` until a GOAWAY (or every sender is gone).
/// Data waits for window when `flow` says the client enforces it.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<SpdyOut>,
    flow: Arc<Flow>,
) {
    let mut enc = match Encoder::new() {
        Ok(enc) => enc,
        Err(e) => {
            tracing::warn!(error = %e, "spdy header compressor failed");
            return;
        }
    };
    let mut buf = BytesMut::new();
    let mut next = rx.recv().await;
    while let Some(msg) = next.take() {
        let closing = matches!(msg, SpdyOut::GoAway { .. });
        match msg {
            SpdyOut::Data {
                stream_id,
                mut data,
            } => {
                while !data.is_empty() {
                    let changed = flow.changed();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    let n = flow.take(stream_id, data.len());
                    if n == 0 {
                        if !flush(&mut w, &mut buf).await {
                            return;
                        }
                        changed.await;
                        continue;
                    }
                    let chunk = data.split_to(n);
                    encode(
                        &mut enc,
                        SpdyOut::Data {
                            stream_id,
                            data: chunk,
                        },
                        &mut buf,
                    );
                }
            }
            msg => {
                if let SpdyOut::Fin(id) | SpdyOut::Rst { stream_id: id, .. } = msg {
                    flow.forget(id);
                }
                encode(&mut enc, msg, &mut buf);
            }
        }
        if closing {
            break;
        }
        if buf.len() < BATCH {
            next = rx.try_recv().ok();
        }
        if next.is_none() {
            if !flush(&mut w, &mut buf).await {
                return;
            }
            next = rx.recv().await;
        }
    }
    // No shutdown: like kubelet, the server leaves closing to the client (or the linger), so
    // a client never sees the connection end before it has processed the last frames.
    let _ = flush(&mut w, &mut buf).await;
}

fn encode(enc: &mut Encoder, msg: SpdyOut, buf: &mut BytesMut) {
    if let Err(e) = enc.encode(&frame(msg), buf) {
        tracing::warn!(error = %e, "encoding a spdy frame");
    }
}

async fn flush<W: AsyncWrite + Unpin>(w: &mut W, buf: &mut BytesMut) -> bool {
    if buf.is_empty() {
        return true;
    }
    let ok = w.write_all(buf).await.is_ok() && w.flush().await.is_ok();
    buf.clear();
    ok
}

/// A stream the client opened: its headers, and the reading end of its data.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) id: u32,
    pub(crate) headers: Headers,
    pub(crate) data: DuplexStream,
}

struct Route {
    sink: Option<DuplexStream>,
    unacked: u32,
}

/// Reads the client's frames until EOF: new streams go to `streams` (replied to at once;
/// refused once `streams` is closed), their data into their pipes. A framing error sends
/// GOAWAY and is returned.
pub(crate) async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    tx: mpsc::Sender<SpdyOut>,
    streams: mpsc::Sender<Incoming>,
    flow: &Flow,
) -> Result<(), SpdyError> {
    let mut dec = Decoder::new(MAX_FRAME);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut routes: HashMap<u32, Route> = HashMap::new();
    let mut last_id = 0u32;
    let mut session_unacked = 0u32;
    let mut accepting = true;
    loop {
        let frame = match dec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                buf.reserve(64 * 1024);
                match r.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return Ok(()),
                    Ok(_) => continue,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "closing spdy stream connection");
                let bye = SpdyOut::GoAway {
                    last_good: last_id,
                    status: goaway::PROTOCOL_ERROR,
                };
                let _ = tx.send(bye).await;
                return Err(e);
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if stream_id % 2 == 0 || stream_id <= last_id {
                    let status = rst::PROTOCOL_ERROR;
                    let _ = tx.send(SpdyOut::Rst { stream_id, status }).await;
                    continue;
                }
                last_id = stream_id;
                if !accepting || streams.is_closed() {
                    let status = rst::REFUSED_STREAM;
                    let _ = tx.send(SpdyOut::Rst { stream_id, status }).await;
                    continue;
                }
                let (ours, theirs) = pipe();
                let _ = tx.send(SpdyOut::Reply(stream_id)).await;
                let new = Incoming {
                    id: stream_id,
                    headers,
                    data: theirs,
                };
                if streams.send(new).await.is_err() {
                    let status = rst::REFUSED_STREAM;
                    let _ = tx.send(SpdyOut::Rst { stream_id, status }).await;
                    continue;
                }
                let sink = (flags & FLAG_FIN == 0).then_some(ours);
                routes.insert(stream_id, Route { sink, unacked: 0 });
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let len = data.len() as u32;
                if let Some(route) = routes.get_mut(&stream_id) {
                    feed(&mut route.sink, &data).await;
                    route.unacked += len;
                    if flags & FLAG_FIN != 0 {
                        route.sink = None;
                    } else if route.unacked >= WINDOW_ACK {
                        let delta = std::mem::take(&mut route.unacked);
                        let _ = tx.send(SpdyOut::WindowUpdate { stream_id, delta }).await;
                    }
                }
                session_unacked += len;
                if session_unacked >= WINDOW_ACK {
                    let delta = std::mem::take(&mut session_unacked);
                    let update = SpdyOut::WindowUpdate {
                        stream_id: 0,
                        delta,
                    };
                    let _ = tx.send(update).await;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                routes.remove(&stream_id);
                flow.forget(stream_id);
            }
            Frame::WindowUpdate { stream_id, delta } => flow.credit(stream_id, delta),
            Frame::Settings { entries, .. } => {
                for (_, id, value) in entries {
                    if id == SETTINGS_INITIAL_WINDOW {
                        flow.set_initial(value);
                    }
                }
            }
            Frame::Ping { id } if id % 2 == 1 => {
                let _ = tx.send(SpdyOut::Pong(id)).await;
            }
            Frame::GoAway { .. } => accepting = false,
            Frame::Headers {
                stream_id, flags, ..
            } if flags & FLAG_FIN != 0 => {
                if let Some(route) = routes.get_mut(&stream_id) {
                    route.sink = None;
                }
            }
            _ => {}
        }
    }
}
