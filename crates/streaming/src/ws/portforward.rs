//! Port-forward over WebSocket: a data and an error channel per port, each opened by the port
//! number (2 bytes, little-endian).

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;

use super::conn::{
    Codec, OUT_QUEUE, WsEvent, WsOut, WsReader, close_normally, close_with_error, write_loop,
};
use super::exec::{V4, V4_BASE64};
use crate::backend::StreamBackend;
use crate::pipe::{feed, pipe};
use crate::portforward::forward;

/// What port-forward accepts, `""` being a client that names no protocol.
pub(crate) const PROTOCOLS: &[&str] = &[V4, V4_BASE64, ""];

/// At most this many ports fit in one connection's channel numbers.
pub(crate) const MAX_PORTS: usize = 127;

/// Forwards `ports` of `pod_id` over an upgraded WebSocket connection until all forwards end.
pub(crate) async fn serve<S>(
    stream: S,
    protocol: &'static str,
    pod_id: String,
    ports: Vec<u16>,
    backend: Arc<dyn StreamBackend>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let codec = if protocol == V4_BASE64 {
        Codec::Base64
    } else {
        Codec::Binary
    };
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_loop(wr, rx, codec));
    let mut incoming = Vec::with_capacity(ports.len());
    let mut forwards = Vec::with_capacity(ports.len());
    for (i, port) in ports.into_iter().take(MAX_PORTS).enumerate() {
        let data_channel = (i * 2) as u8;
        let error_channel = data_channel + 1;
        for channel in [data_channel, error_channel] {
            let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
            let _ = tx
                .send(WsOut::Data {
                    channel,
                    data: prefix,
                })
                .await;
        }
        let (in_ours, in_theirs) = pipe();
        incoming.push(Some(in_ours));
        let fwd = forward(
            backend.clone(),
            pod_id.clone(),
            port,
            in_theirs,
            tx.clone(),
            move |data| WsOut::Data {
                channel: data_channel,
                data,
            },
            None,
        );
        let tx = tx.clone();
        forwards.push(tokio::spawn(async move {
            if let Err(msg) = fwd.await {
                let data = msg.into();
                let _ = tx
                    .send(WsOut::Data {
                        channel: error_channel,
                        data,
                    })
                    .await;
            }
        }));
    }
    let reader = WsReader::new(rd, codec, false, tx.clone());
    let read_task = tokio::spawn(read_loop(reader, incoming, tx.clone()));
    for f in forwards {
        let _ = f.await;
    }
    close_normally(tx, writer, read_task).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: WsReader<R>,
    mut incoming: Vec<Option<DuplexStream>>,
    tx: mpsc::Sender<WsOut>,
) {
    loop {
        match reader.next().await {
            Ok(WsEvent::Data { channel, data }) if channel % 2 == 0 => {
                if let Some(pipe) = incoming.get_mut(usize::from(channel / 2)) {
                    feed(pipe, &data).await;
                }
            }
            Ok(WsEvent::Data { .. } | WsEvent::CloseChannel(_)) => {}
            Ok(WsEvent::Closed) => break,
            Err(e) => {
                close_with_error(&tx, &e).await;
                break;
            }
        }
    }
}
