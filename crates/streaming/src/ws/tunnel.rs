//! SPDY/3.1 tunnelled through a WebSocket, as kubectl and crictl ≥ 1.30 port-forward
//! (`--transport websocket`): the client offers `SPDY/3.1+portforward.k8s.io`, and the binary
//! messages in both directions carry the raw SPDY byte stream (message boundaries mean nothing),
//! so the session is a plain `portforward.k8s.io` SPDY session with the ports in its streams'
//! headers. A normal close frame is the end of the stream (client-go's `TunnelingConnection`).

use std::sync::Arc;
use std::time::Duration;

use hyper::header::{self, HeaderMap};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;

use super::conn::{
    Codec, OUT_QUEUE, WsEvent, WsOut, WsReader, close_normally, close_with_error, write_loop,
};
use crate::backend::StreamBackend;
use crate::pipe::{PIPE_CAPACITY, pump};

/// What a tunnelling client prefixes to the SPDY protocol it wants.
pub(crate) const PREFIX: &str = "SPDY/3.1+";
/// Port-forward's SPDY protocol, tunnelled.
pub(crate) const PORT_FORWARD: &str = "SPDY/3.1+portforward.k8s.io";
/// What a tunnelled port-forward accepts.
pub(crate) const PROTOCOLS: &[&str] = &[PORT_FORWARD];

/// Whether a WebSocket request offers a tunnelled SPDY protocol (as apimachinery's
/// `IsWebSocketRequestWithTunnelingProtocol`).
pub(crate) fn offers_tunnel(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().starts_with(PREFIX))
}

/// Serves a `portforward.k8s.io` SPDY session over an upgraded WebSocket connection whose
/// subprotocol is [`PORT_FORWARD`]; a non-empty `allowed` limits the ports.
pub(crate) async fn serve_port_forward<S>(
    stream: S,
    pod_id: String,
    allowed: Vec<u16>,
    backend: Arc<dyn StreamBackend>,
    creation_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(PIPE_CAPACITY);
    let bridge = tokio::spawn(bridge(stream, ours));
    crate::spdy::serve_port_forward(theirs, pod_id, allowed, backend, creation_timeout).await;
    let _ = bridge.await;
}

/// Carries bytes between the WebSocket `stream` and the SPDY session's end of a pipe until the
/// session is over (then a normal close) or the client leaves (then the session sees EOF).
async fn bridge<S>(stream: S, spdy: DuplexStream)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (spdy_rd, spdy_wr) = tokio::io::split(spdy);
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let writer = tokio::spawn(write_loop(wr, rx, Codec::Raw));
    let reader = WsReader::new(rd, Codec::Raw, false, tx.clone());
    let inbound = tokio::spawn(inbound(reader, spdy_wr, tx.clone()));
    // What the SPDY session writes goes out as binary messages until it ends.
    pump(
        spdy_rd,
        tx.clone(),
        |data| WsOut::Data { channel: 0, data },
        None,
    )
    .await;
    close_normally(tx, writer, inbound).await;
}

/// Feeds the client's messages to the SPDY session; its close (or EOF, or a protocol error)
/// ends the session's input.
async fn inbound<R: AsyncRead + Unpin>(
    mut reader: WsReader<R>,
    mut spdy: WriteHalf<DuplexStream>,
    tx: mpsc::Sender<WsOut>,
) {
    let mut open = true;
    loop {
        match reader.next().await {
            Ok(WsEvent::Data { data, .. }) => {
                // Once the session is gone, the client's last messages are read and dropped.
                if open && spdy.write_all(&data).await.is_err() {
                    open = false;
                }
            }
            Ok(WsEvent::CloseChannel(_)) => {}
            Ok(WsEvent::Closed) => break,
            Err(e) => {
                close_with_error(&tx, &e).await;
                break;
            }
        }
    }
    let _ = spdy.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn tunnel_offers_are_recognised() {
        let mut h = HeaderMap::new();
        assert!(!offers_tunnel(&h));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v4.channel.k8s.io"),
        );
        assert!(!offers_tunnel(&h));
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("x, SPDY/3.1+portforward.k8s.io"),
        );
        assert!(offers_tunnel(&h));
        let mut h = HeaderMap::new();
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("SPDY/3.1+v9.portforward.k8s.io"),
        );
        // Offered, but not one we serve: the handshake refuses it.
        assert!(offers_tunnel(&h));
        assert!(!PROTOCOLS.contains(&"SPDY/3.1+v9.portforward.k8s.io"));
    }
}
