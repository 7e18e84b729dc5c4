//! SPDY port-forward tunnelled through a WebSocket (`SPDY/3.1+portforward.k8s.io`, kubectl and
//! crictl ≥ 1.30) at the frame level: SPDY frames cut across binary messages at arbitrary
//! points, fragmented messages, pings at both layers, closes, misuse.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use husk_streaming::spdy::frame::{self as spdy, FLAG_FIN, Frame};
use husk_streaming::spdy::headers::Headers;
use husk_streaming::ws::frame::Opcode;
use husk_streaming::{Config, PortForwardRequest, Server};
use tokio::io::AsyncReadExt;

const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// A SPDY client whose byte stream travels in WebSocket binary messages.
struct Tunnel {
    ws: WsClient,
    enc: spdy::Encoder,
    dec: spdy::Decoder,
    inbound: BytesMut,
    next_id: u32,
    /// Every server message was binary and non-empty.
    messages: usize,
}

impl Tunnel {
    async fn connect(server: &Server, ports: Vec<u16>) -> Tunnel {
        let url = pf_url(server, ports);
        let ws = ws_connect(&url, &["v4.channel.k8s.io", TUNNEL])
            .await
            .unwrap();
        assert_eq!(ws.protocol.as_deref(), Some(TUNNEL));
        Tunnel {
            ws,
            enc: spdy::Encoder::new().unwrap(),
            dec: spdy::Decoder::new(1 << 24),
            inbound: BytesMut::new(),
            next_id: 1,
            messages: 0,
        }
    }

    fn encode(&mut self, frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for f in frames {
            self.enc.encode(f, &mut out).unwrap();
        }
        out.to_vec()
    }

    fn syn(&mut self, headers: &[(&str, &str)]) -> (u32, Frame) {
        let stream_id = self.next_id;
        self.next_id += 2;
        let headers: Headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let f = Frame::SynStream {
            stream_id,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        };
        (stream_id, f)
    }

    /// Sends `bytes` as binary messages of at most `cut` bytes each.
    async fn send_cut(&mut self, bytes: &[u8], cut: usize) {
        for chunk in bytes.chunks(cut) {
            self.ws.tx.send_frame(true, Opcode::Binary, chunk).await;
        }
    }

    /// The next SPDY frame from the server; `None` once it closed (or at EOF).
    async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.inbound).unwrap() {
                return Some(f);
            }
            let f = tokio::time::timeout(Duration::from_secs(10), self.ws.rx.frame())
                .await
                .expect("server went quiet")?;
            match f.opcode {
                Opcode::Binary => {
                    assert!(!f.payload.is_empty());
                    self.messages += 1;
                    self.inbound.extend_from_slice(&f.payload);
                }
                Opcode::Close => return None,
                other => panic!("unexpected {other:?} in a tunnel"),
            }
        }
    }

    /// Frames until every stream in `fins` has ended.
    async fn until_fins(&mut self, fins: &[u32]) -> common::spdy::SpdyCollected {
        let mut got = common::spdy::SpdyCollected::default();
        while !fins.iter().all(|id| got.fins.contains(id)) {
            got.add(self.frame().await.expect("tunnel closed early"));
        }
        got
    }
}

fn pf_url(server: &Server, ports: Vec<u16>) -> url::Url {
    server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports,
        })
        .unwrap()
}

#[tokio::test]
async fn spdy_frames_cut_across_binary_messages_forward_a_port() {
    let (server, fake) = start(Config::default()).await;
    let echo = echo_server().await;
    let closed = closed_port().await;
    let mut t = Tunnel::connect(&server, vec![]).await;
    let (echo_s, closed_s) = (echo.to_string(), closed.to_string());
    let (e0, syn_e0) = t.syn(&[
        ("streamType", "error"),
        ("port", &echo_s),
        ("requestID", "0"),
    ]);
    let (d0, syn_d0) = t.syn(&[
        ("streamType", "data"),
        ("port", &echo_s),
        ("requestID", "0"),
    ]);
    let data = |stream_id, data: &'static [u8], flags| Frame::Data {
        stream_id,
        flags,
        data: Bytes::from_static(data),
    };
    // Both SYN_STREAMs, a ping and the first data in one byte stream cut every 7 bytes.
    let bytes = t.encode(&[
        syn_e0,
        syn_d0,
        Frame::Ping { id: 1 },
        data(d0, b"hello ", 0),
    ]);
    t.send_cut(&bytes, 7).await;
    // The rest as one fragmented message with a WebSocket ping in between.
    let bytes = t.encode(&[data(d0, b"tunnel", FLAG_FIN), Frame::Ping { id: 3 }]);
    let (a, b) = bytes.split_at(5);
    t.ws.tx.send_frame(false, Opcode::Binary, a).await;
    t.ws.tx.send_frame(true, Opcode::Ping, b"hi").await;
    t.ws.tx.send_frame(true, Opcode::Continuation, b).await;
    let mut got = common::spdy::SpdyCollected::default();
    let mut pong = false;
    while !(got.fins.contains(&d0) && got.fins.contains(&e0) && got.pings.len() == 2) {
        if let Some(f) = t.dec.decode(&mut t.inbound).unwrap() {
            got.add(f);
            continue;
        }
        let f = tokio::time::timeout(Duration::from_secs(10), t.ws.rx.frame())
            .await
            .unwrap()
            .unwrap();
        match f.opcode {
            Opcode::Binary => t.inbound.extend_from_slice(&f.payload),
            Opcode::Pong => {
                assert_eq!(&f.payload[..], b"hi");
                pong = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(pong, "the websocket ping was not answered");
    assert_eq!(got.pings, [1, 3]);
    assert_eq!(got.replies, [e0, d0].into());
    assert_eq!(got.text(d0), "hello tunnel");
    assert!(got.text(e0).is_empty(), "{}", got.text(e0));

    // A second connection in the same tunnel, to a port nothing listens on.
    let (e1, syn_e1) = t.syn(&[
        ("streamType", "error"),
        ("port", &closed_s),
        ("requestID", "1"),
    ]);
    let (d1, syn_d1) = t.syn(&[
        ("streamType", "data"),
        ("port", &closed_s),
        ("requestID", "1"),
    ]);
    let bytes = t.encode(&[syn_e1, syn_d1]);
    t.send_cut(&bytes, 1 << 20).await;
    let got = t.until_fins(&[e1, d1]).await;
    assert!(
        got.text(e1)
            .contains(&format!("error forwarding port {closed} to pod pod1")),
        "{}",
        got.text(e1)
    );
    assert!(t.messages > 0);

    // The client's close ends the session: a close back, then the end of the connection.
    t.ws.tx.close().await;
    let mut closed_back = false;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), t.ws.rx.frame())
            .await
            .unwrap()
        {
            Some(f) if f.opcode == Opcode::Close => {
                assert_eq!(&f.payload[..2], &1000u16.to_be_bytes());
                closed_back = true;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert!(closed_back);
    let forwards = fake.seen.lock().unwrap().forwards.clone();
    assert_eq!(
        forwards,
        vec![("pod1".to_owned(), echo), ("pod1".to_owned(), closed)]
    );
}

#[tokio::test]
async fn tunnel_offers_we_do_not_serve_and_misuse_are_refused() {
    let (server, _) = start(Config::default()).await;
    // A tunnelled protocol other than port-forward's.
    let url = pf_url(&server, vec![]);
    let (status, _) = ws_connect(&url, &["SPDY/3.1+v9.portforward.k8s.io"])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 403);
    // Exec is never tunnelled.
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let (status, _) = ws_connect(&url, &[TUNNEL]).await.err().unwrap();
    assert_eq!(status, 403);

    // A port the request does not allow: the error stream says so.
    let echo = echo_server().await;
    let mut t = Tunnel::connect(&server, vec![echo]).await;
    let other = (echo + 1).to_string();
    let (e, syn_e) = t.syn(&[("streamType", "error"), ("port", &other)]);
    let (d, syn_d) = t.syn(&[("streamType", "data"), ("port", &other)]);
    let bytes = t.encode(&[syn_e, syn_d]);
    t.send_cut(&bytes, 3).await;
    let got = t.until_fins(&[e, d]).await;
    assert!(
        got.text(e).contains("is not forwarded by this request"),
        "{}",
        got.text(e)
    );

    // A text message is no part of a tunnel: protocol error.
    t.ws.tx.send_frame(true, Opcode::Text, b"hello").await;
    let c = t.ws.rx.collect().await;
    assert_eq!(c.close, Some(1002), "{}", c.close_reason);
}

#[tokio::test]
async fn a_vanished_client_ends_its_forwards() {
    let (server, _) = start(Config::default()).await;
    // A target that reports when its connection ends.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
        let _ = done_tx.send(sink);
    });
    let mut t = Tunnel::connect(&server, vec![]).await;
    let p = port.to_string();
    let (_e, syn_e) = t.syn(&[("streamType", "error"), ("port", &p), ("requestID", "0")]);
    let (d, syn_d) = t.syn(&[("streamType", "data"), ("port", &p), ("requestID", "0")]);
    let bytes = t.encode(&[
        syn_e,
        syn_d,
        Frame::Data {
            stream_id: d,
            flags: 0,
            data: Bytes::from_static(b"partial"),
        },
    ]);
    t.send_cut(&bytes, 64).await;
    // Both replies seen: the forward is up.
    let mut replies = 0;
    while replies < 2 {
        if let Frame::SynReply { .. } = t.frame().await.unwrap() {
            replies += 1;
        }
    }
    drop(t);
    let sink = tokio::time::timeout(Duration::from_secs(3), done_rx)
        .await
        .expect("the forwarded connection outlived its client")
        .unwrap();
    assert_eq!(sink, b"partial");
}
