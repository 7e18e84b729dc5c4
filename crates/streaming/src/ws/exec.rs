//! Exec and attach over WebSocket: kubelet's remotecommand channel protocols.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::conn::{
    Codec, OUT_QUEUE, WsError, WsEvent, WsOut, WsReader, close_normally, close_with_error,
    write_loop,
};
use crate::backend::StreamBackend;
use crate::pipe::feed;
use crate::remotecommand::{Output, Session, Wiring, wire};

/// `v5.channel.k8s.io`: v4 plus the stream-close signal.
pub(crate) const V5: &str = "v5.channel.k8s.io";
/// `v4.channel.k8s.io`: binary channels, JSON status on the error channel.
pub(crate) const V4: &str = "v4.channel.k8s.io";
/// `v4.base64.channel.k8s.io`: v4 in base64 text messages.
pub(crate) const V4_BASE64: &str = "v4.base64.channel.k8s.io";
/// `channel.k8s.io`: binary channels, plain-text errors.
pub(crate) const V1: &str = "channel.k8s.io";
/// `base64.channel.k8s.io`: `channel.k8s.io` in base64 text messages.
pub(crate) const V1_BASE64: &str = "base64.channel.k8s.io";

/// What exec/attach accept, `""` being a client that names no protocol.
pub(crate) const PROTOCOLS: &[&str] = &[V5, V4, V4_BASE64, V1, V1_BASE64, ""];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

struct Flavor {
    codec: Codec,
    v4_status: bool,
    close_signal: bool,
}

fn flavor(protocol: &str) -> Flavor {
    Flavor {
        codec: if protocol.contains("base64") {
            Codec::Base64
        } else {
            Codec::Binary
        },
        v4_status: matches!(protocol, V5 | V4 | V4_BASE64),
        close_signal: protocol == V5,
    }
}

/// Runs an exec/attach session over an upgraded WebSocket connection.
pub(crate) async fn serve<S>(
    stream: S,
    protocol: &'static str,
    session: Session,
    backend: Arc<dyn StreamBackend>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let flavor = flavor(protocol);
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_loop(wr, rx, flavor.codec));
    let streams = session.streams();
    // An empty message on the lowest writable channel tells the client the session is up.
    let hello = if streams.stdout {
        STDOUT
    } else if streams.stderr && !streams.tty {
        STDERR
    } else {
        ERROR
    };
    let _ = tx
        .send(WsOut::Data {
            channel: hello,
            data: Bytes::new(),
        })
        .await;
    let (wiring, run) = wire(
        streams,
        &tx,
        |o, data| WsOut::Data {
            channel: match o {
                Output::Stdout => STDOUT,
                Output::Stderr => STDERR,
            },
            data,
        },
        |_| None,
    );
    let reader = WsReader::new(rd, flavor.codec, flavor.close_signal, tx.clone());
    let read_task = tokio::spawn(read_loop(reader, wiring, tx.clone()));
    let outcome = run.run(backend, session).await;
    let status = if flavor.v4_status {
        outcome.v4_json()
    } else {
        outcome.v1_text()
    };
    if !status.is_empty() {
        let _ = tx
            .send(WsOut::Data {
                channel: ERROR,
                data: status.into(),
            })
            .await;
    }
    close_normally(tx, writer, read_task).await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: WsReader<R>,
    wiring: Wiring,
    tx: mpsc::Sender<WsOut>,
) {
    let Wiring {
        mut stdin,
        mut resize,
        cancel,
    } = wiring;
    loop {
        match reader.next().await {
            Ok(WsEvent::Data {
                channel: STDIN,
                data,
            }) => feed(&mut stdin, &data).await,
            Ok(WsEvent::Data {
                channel: RESIZE,
                data,
            }) => feed(&mut resize, &data).await,
            Ok(WsEvent::Data { .. }) => {}
            Ok(WsEvent::CloseChannel(STDIN)) => stdin = None,
            Ok(WsEvent::CloseChannel(RESIZE)) => resize = None,
            Ok(WsEvent::CloseChannel(c)) if c < RESIZE => {}
            Ok(WsEvent::CloseChannel(c)) => {
                close_with_error(&tx, &WsError::BadChannel(c)).await;
                break;
            }
            Ok(WsEvent::Closed) => break,
            Err(e) => {
                close_with_error(&tx, &e).await;
                break;
            }
        }
    }
    cancel.cancel();
}
