//! WebSocket exec/attach/port-forward against the fake backend, with our own client.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use husk_streaming::ws::frame::Opcode;
use husk_streaming::{AttachRequest, Config, PortForwardRequest};
use sha2::{Digest, Sha256};

#[tokio::test]
async fn v4_exec_streams_output_and_non_zero_exit() {
    let (server, fake) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "3"], false, true, true, false))
        .unwrap();
    assert!(
        url.as_str()
            .starts_with(&format!("http://{}/exec/", server.addr()))
    );
    let mut c = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(c.protocol.as_deref(), Some("v4.channel.k8s.io"));
    let got = c.rx.collect().await;
    assert_eq!(&got.frames[0][..], &[1u8], "first an empty stdout message");
    assert_eq!(got.channel(1), b"out");
    assert_eq!(got.channel(2), b"err");
    let status = got.status();
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(got.close, Some(1000));
    assert_eq!(fake.seen.lock().unwrap().execs[0].cmd, vec!["exit", "3"]);
}

#[tokio::test]
async fn v5_exec_echoes_stdin_until_the_client_closes_it() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(c.protocol.as_deref(), Some("v5.channel.k8s.io"));
    c.tx.channel(0, b"hello ").await;
    c.tx.channel(0, b"world").await;
    c.tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
    let got = c.rx.collect().await;
    assert_eq!(got.channel(1), b"hello world");
    assert_eq!(
        got.status(),
        serde_json::json!({"metadata": {}, "status": "Success"})
    );
    assert_eq!(got.close, Some(1000));
}

#[tokio::test]
async fn base64_protocol_uses_text_frames() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, true, false))
        .unwrap();
    let mut c = ws_connect(&url, &["v4.base64.channel.k8s.io"])
        .await
        .unwrap();
    let mut texts = Vec::new();
    while let Some(f) = c.rx.frame().await {
        match f.opcode {
            Opcode::Text => texts.push(String::from_utf8(f.payload.to_vec()).unwrap()),
            Opcode::Close => break,
            o => panic!("unexpected {o:?}"),
        }
    }
    let b64 = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(texts[0], "1");
    assert!(texts.contains(&format!("1{}", b64(b"out"))), "{texts:?}");
    assert!(texts.contains(&format!("2{}", b64(b"err"))), "{texts:?}");
    assert_eq!(
        texts.last().unwrap(),
        &format!("3{}", b64(br#"{"metadata":{},"status":"Success"}"#))
    );
}

#[tokio::test]
async fn legacy_protocol_reports_errors_as_text() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "2"], false, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &["channel.k8s.io"]).await.unwrap();
    let got = c.rx.collect().await;
    let text = String::from_utf8(got.channel(3).to_vec()).unwrap();
    assert!(
        text.contains("non-zero exit code") && text.contains('2'),
        "{text}"
    );
    // No protocol named: still channel.k8s.io, and success writes nothing on the error channel.
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &[]).await.unwrap();
    assert_eq!(c.protocol, None);
    let got = c.rx.collect().await;
    assert_eq!(got.channel(1), b"out");
    assert!(got.channel(3).is_empty());
}

#[tokio::test]
async fn tty_resizes_reach_the_backend() {
    let (server, fake) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["resize"], true, true, false, true))
        .unwrap();
    let mut c = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    c.tx.channel(4, br#"{"Width":80,"Height":24}{"Width":100,"#)
        .await;
    c.tx.channel(4, br#""Height":50}"#).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
    let got = c.rx.collect().await;
    assert_eq!(String::from_utf8_lossy(got.channel(1)), "80x24,100x50");
    assert_eq!(fake.seen.lock().unwrap().resizes.len(), 2);
}

#[tokio::test]
async fn backend_errors_and_panics_become_internal_errors() {
    let (server, _) = start(Config::default()).await;
    for cmd in ["fail", "panic"] {
        let url = server
            .get_exec(exec_req(&[cmd], false, true, false, false))
            .unwrap();
        let mut c = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
        let got = c.rx.collect().await;
        let status = got.status();
        assert_eq!(status["reason"], "InternalError", "{status}");
        assert_eq!(status["code"], 500);
    }
}

#[tokio::test]
async fn attach_echoes() {
    let (server, _) = start(Config::default()).await;
    let req = AttachRequest {
        container_id: "c1".into(),
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let url = server.get_attach(req).unwrap();
    assert!(url.path().starts_with("/attach/"));
    let mut c = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    c.tx.channel(0, b"ping").await;
    c.tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
    let got = c.rx.collect().await;
    assert_eq!(got.channel(1), b"ping");
    assert_eq!(got.status()["status"], "Success");
}

#[tokio::test]
async fn bad_tokens_are_not_found() {
    let (server, _) = start(Config {
        token_ttl: Duration::from_millis(100),
        ..Config::default()
    })
    .await;
    let base = url::Url::parse(&format!("http://{}/", server.addr())).unwrap();
    for path in ["exec/nope", "attach/", "portforward/a/b", "other/x", ""] {
        let err = ws_connect(&base.join(path).unwrap(), &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap();
        assert_eq!(err.0, 404, "{path}");
    }
    // Used once: gone.
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    c.rx.collect().await;
    assert_eq!(
        ws_connect(&url, &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        404
    );
    // Expired.
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        ws_connect(&url, &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        404
    );
    // Another kind's URL.
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let wrong = base.join(&url.path().replace("/exec/", "attach/")).unwrap();
    assert_eq!(
        ws_connect(&wrong, &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        404
    );
    assert_eq!(
        ws_connect(&url, &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        404
    );
}

#[tokio::test]
async fn base_url_names_the_host() {
    let config = Config {
        base_url: Some(url::Url::parse("https://node-1.example:10250/ignored/path").unwrap()),
        ..Config::default()
    };
    let (server, _) = start(config).await;
    let url = server
        .get_attach(AttachRequest {
            container_id: "c".into(),
            stdout: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(url.host_str(), Some("node-1.example"));
    assert!(
        url.as_str()
            .starts_with("https://node-1.example:10250/attach/"),
        "{url}"
    );
}

#[tokio::test]
async fn invalid_requests_are_refused() {
    let (server, _) = start(Config::default()).await;
    assert!(
        server
            .get_exec(exec_req(&["x"], false, false, false, false))
            .is_err()
    );
    assert!(
        server
            .get_exec(exec_req(&["x"], false, true, true, true))
            .is_err()
    );
    assert!(
        server
            .get_exec(exec_req(&[], false, true, false, false))
            .is_err()
    );
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    assert_eq!(
        ws_connect(&url, &["v9.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        403
    );
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let mut s = request(&url, "GET", &[]).await;
    assert_eq!(read_head(&mut s).await.0, 400);
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let (server, _) = start(Config::default()).await;
    let good_url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut good = ws_connect(&good_url, &["v5.channel.k8s.io"]).await.unwrap();
    good.tx.channel(0, b"before ").await;

    let cases: Vec<(&[u8], u16)> = vec![
        (&[0x82, 0x01, 0x00], 1002),       // unmasked
        (&[0xf2, 0x80, 0, 0, 0, 0], 1002), // reserved bits
        (
            &[0x82, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4],
            1009,
        ), // huge
    ];
    for (bytes, code) in cases {
        let url = server
            .get_exec(exec_req(&["hang"], true, true, false, false))
            .unwrap();
        let mut bad = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
        bad.tx.send_raw(bytes).await;
        let got = bad.rx.collect().await;
        assert_eq!(got.close, Some(code), "{bytes:?}");
    }
    // A close signal naming no channel.
    let url = server
        .get_exec(exec_req(&["hang"], true, true, false, false))
        .unwrap();
    let mut bad = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    bad.tx.send_frame(true, Opcode::Binary, &[255]).await;
    assert_eq!(bad.rx.collect().await.close, Some(1002));

    good.tx.channel(0, b"after").await;
    good.tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
    let got = good.rx.collect().await;
    assert_eq!(got.channel(1), b"before after");
    assert_eq!(got.status()["status"], "Success");
}

#[tokio::test]
async fn client_going_away_cancels_the_session() {
    let (server, fake) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["hang"], true, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    c.rx.frame().await.unwrap();
    drop(c);
    for _ in 0..100 {
        if fake.seen.lock().unwrap().cancelled == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("backend was not cancelled");
}

#[tokio::test]
async fn pings_get_pongs() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut c = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    c.tx.send_frame(true, Opcode::Ping, b"are you there").await;
    loop {
        let f = c.rx.frame().await.unwrap();
        if f.opcode == Opcode::Pong {
            assert_eq!(&f.payload[..], b"are you there");
            break;
        }
    }
    // Fragmented stdin reassembles.
    c.tx.send_frame(false, Opcode::Binary, &[0, b'a']).await;
    c.tx.send_frame(false, Opcode::Continuation, b"b").await;
    c.tx.send_frame(true, Opcode::Continuation, b"c").await;
    c.tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
    assert_eq!(c.rx.collect().await.channel(1), b"abc");
}

#[tokio::test]
async fn hundred_megabytes_through_exec_without_loss() {
    const TOTAL: usize = 100 << 20;
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let c = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    let (mut rx, mut tx) = (c.rx, c.tx);
    let sender = tokio::spawn(async move {
        let mut sha = Sha256::new();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut sent = 0;
        while sent < TOTAL {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            sha.update(&chunk);
            tx.channel(0, &chunk).await;
            sent += chunk.len();
        }
        tx.send_frame(true, Opcode::Binary, &[255, 0]).await;
        (sha.finalize(), tx)
    });
    let mut sha = Sha256::new();
    let mut received = 0usize;
    let mut status = Vec::new();
    while let Some(f) = rx.frame().await {
        match (f.opcode, f.payload.first()) {
            (Opcode::Binary, Some(1)) => {
                sha.update(&f.payload[1..]);
                received += f.payload.len() - 1;
            }
            (Opcode::Binary, Some(3)) => status.extend_from_slice(&f.payload[1..]),
            (Opcode::Close, _) => break,
            _ => {}
        }
    }
    let (sent_sha, _tx) = sender.await.unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(sha.finalize(), sent_sha);
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn port_forward_over_websocket() {
    let (server, fake) = start(Config::default()).await;
    let echo = echo_server().await;
    let closed = closed_port().await;
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports: vec![echo, closed],
        })
        .unwrap();
    let mut c = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    c.tx.channel(0, b"through the tunnel").await;
    let mut data = Vec::new();
    let mut errors = String::new();
    let mut prefixes = Vec::new();
    while data.len() < 18 || errors.is_empty() {
        let f = tokio::time::timeout(Duration::from_secs(10), c.rx.frame())
            .await
            .unwrap()
            .unwrap();
        let ch = f.payload[0];
        let body = &f.payload[1..];
        if body.len() == 2 && prefixes.len() < 4 && !prefixes.iter().any(|(c, _)| *c == ch) {
            prefixes.push((ch, u16::from_le_bytes([body[0], body[1]])));
            continue;
        }
        match ch {
            0 => data.extend_from_slice(body),
            3 => errors.push_str(&String::from_utf8_lossy(body)),
            other => panic!("data on channel {other}"),
        }
    }
    prefixes.sort();
    assert_eq!(
        prefixes,
        vec![(0, echo), (1, echo), (2, closed), (3, closed)]
    );
    assert_eq!(data, b"through the tunnel");
    assert!(
        errors.contains(&format!("error forwarding port {closed}")),
        "{errors}"
    );
    c.tx.close().await;
    let got = c.rx.collect().await;
    assert_eq!(got.close, Some(1000));
    let forwards = fake.seen.lock().unwrap().forwards.clone();
    assert!(forwards.contains(&("pod1".into(), echo)));
}

#[tokio::test]
async fn port_forward_ports_from_the_query() {
    let (server, _) = start(Config::default()).await;
    let echo = echo_server().await;
    let mut url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports: vec![],
        })
        .unwrap();
    url.set_query(Some(&format!("port={echo}")));
    let mut c = ws_connect(&url, &["v4.base64.channel.k8s.io"])
        .await
        .unwrap();
    let first = c.rx.frame().await.unwrap();
    assert_eq!(first.opcode, Opcode::Text);
    let b64 = base64::engine::general_purpose::STANDARD;
    assert_eq!(
        String::from_utf8_lossy(&first.payload),
        format!("0{}", b64.encode(echo.to_le_bytes()))
    );
    c.tx.send_frame(
        true,
        Opcode::Text,
        format!("0{}", b64.encode(b"hi")).as_bytes(),
    )
    .await;
    loop {
        let f = c.rx.frame().await.unwrap();
        if f.payload == format!("0{}", b64.encode(b"hi")).as_bytes() {
            break;
        }
    }
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports: vec![],
        })
        .unwrap();
    assert_eq!(
        ws_connect(&url, &["v4.channel.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        400
    );
}
