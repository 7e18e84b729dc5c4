//! SPDY/3.1 exec/attach/port-forward against the fake backend, with our own client.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::spdy::connect;
use common::*;
use husk_streaming::spdy::frame::{FLAG_FIN, Frame, rst};
use husk_streaming::{Config, PortForwardRequest};
use sha2::{Digest, Sha256};

const ERROR: (&str, &str) = ("streamType", "error");
const STDIN: (&str, &str) = ("streamType", "stdin");
const STDOUT: (&str, &str) = ("streamType", "stdout");
const STDERR: (&str, &str) = ("streamType", "stderr");
const RESIZE: (&str, &str) = ("streamType", "resize");

#[tokio::test]
async fn v4_exec_streams_output_and_non_zero_exit() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "3"], false, true, true, false))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io", "v3.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(c.protocol, "v4.channel.k8s.io");
    let err = c.tx.open(&[ERROR]).await;
    let out = c.tx.open(&[STDOUT]).await;
    let errout = c.tx.open(&[STDERR]).await;
    let got = c.rx.collect().await;
    assert_eq!(got.replies, [err, out, errout].into());
    assert_eq!(got.text(out), "out");
    assert_eq!(got.text(errout), "err");
    let status: serde_json::Value = serde_json::from_slice(got.stream(err)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert!(got.fins.contains(&out) && got.fins.contains(&errout) && got.fins.contains(&err));
    assert_eq!(got.goaway, Some((errout, 0)));
}

#[tokio::test]
async fn v4_exec_echoes_stdin_until_fin() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let err = c.tx.open(&[ERROR]).await;
    let stdin = c.tx.open(&[STDIN]).await;
    let out = c.tx.open(&[STDOUT]).await;
    c.tx.data(stdin, b"hello ", false).await;
    c.tx.data(stdin, b"spdy", true).await;
    let got = c.rx.collect().await;
    assert_eq!(got.text(out), "hello spdy");
    assert_eq!(got.text(err), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn older_protocols_report_errors_as_text() {
    let (server, _) = start(Config::default()).await;
    for protocol in ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] {
        let url = server
            .get_exec(exec_req(&["exit", "4"], false, true, false, false))
            .unwrap();
        let mut c = connect(&url, &[protocol]).await.unwrap();
        assert_eq!(c.protocol, protocol);
        let err = c.tx.open(&[ERROR]).await;
        let out = c.tx.open(&[STDOUT]).await;
        let got = c.rx.collect().await;
        assert_eq!(got.text(out), "out");
        assert!(
            got.text(err).contains("exit code 4"),
            "{protocol}: {}",
            got.text(err)
        );
    }
}

#[tokio::test]
async fn tty_resizes_reach_the_backend() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["resize"], true, true, false, true))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let _err = c.tx.open(&[ERROR]).await;
    let stdin = c.tx.open(&[STDIN]).await;
    let out = c.tx.open(&[STDOUT]).await;
    let resize = c.tx.open(&[RESIZE]).await;
    c.tx.data(resize, br#"{"Width":80,"Height":24}"#, false)
        .await;
    c.tx.data(resize, br#"{"Width":81,"#, false).await;
    c.tx.data(resize, br#""Height":25}"#, false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    c.tx.data(stdin, b"", true).await;
    let got = c.rx.collect().await;
    assert_eq!(got.text(out), "80x24,81x25");
}

#[tokio::test]
async fn negotiation_failures() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let (status, _) = connect(&url, &[]).await.err().unwrap();
    assert_eq!(status, 400);
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let (status, head) = connect(&url, &["v99.channel.k8s.io"]).await.err().unwrap();
    assert_eq!(status, 403);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v5.channel.k8s.io")
    );
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let mut s = request(
        &url,
        "POST",
        &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")],
    )
    .await;
    assert_eq!(read_head(&mut s).await.0, 400);
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let wrong = url
        .join(&url.path().replace("/exec/", "/portforward/"))
        .unwrap();
    assert_eq!(
        connect(&wrong, &["portforward.k8s.io"])
            .await
            .err()
            .unwrap()
            .0,
        404
    );
}

#[tokio::test]
async fn pings_are_echoed_and_data_is_acknowledged() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let _err = c.tx.open(&[ERROR]).await;
    let stdin = c.tx.open(&[STDIN]).await;
    let _out = c.tx.open(&[STDOUT]).await;
    c.tx.send(&Frame::Ping { id: 7 }).await;
    c.tx.data(stdin, &vec![1u8; 100_000], false).await;
    c.tx.data(stdin, b"", true).await;
    let got = c.rx.collect().await;
    assert_eq!(got.pings, vec![7]);
    let acked = |id| {
        got.window_updates
            .iter()
            .filter(|(s, _)| *s == id)
            .map(|(_, d)| d)
            .sum::<u32>()
    };
    assert!(acked(0) >= 64 * 1024, "{:?}", got.window_updates);
    assert!(acked(stdin) >= 64 * 1024, "{:?}", got.window_updates);
}

#[tokio::test]
async fn windows_are_honoured_once_the_client_uses_them() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (mut rx, mut tx) = (c.rx, c.tx);
    tx.send(&Frame::Settings {
        flags: 0,
        entries: vec![(0, 7, 1000)],
    })
    .await;
    let err = tx.open(&[ERROR]).await;
    let stdin = tx.open(&[STDIN]).await;
    let out = tx.open(&[STDOUT]).await;
    tx.data(stdin, &[b'x'; 5000], true).await;
    let mut got = common::spdy::SpdyCollected::default();
    // Only the initial window arrives...
    while got.stream(out).len() < 1000 {
        got.add(rx.frame().await.unwrap());
    }
    let more = tokio::time::timeout(Duration::from_millis(300), async {
        loop {
            if let Some(Frame::Data { stream_id, .. }) = rx.frame().await
                && stream_id == out
            {
                return;
            }
        }
    })
    .await;
    assert!(more.is_err(), "data beyond the stream window");
    // ...and the rest once the client grants more.
    tx.send(&Frame::WindowUpdate {
        stream_id: out,
        delta: 4000,
    })
    .await;
    while !got.fins.contains(&err) {
        got.add(rx.frame().await.unwrap());
    }
    assert_eq!(got.stream(out).len(), 5000);
    assert_eq!(got.text(err), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn malformed_frames_close_only_their_connection() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut good = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let err = good.tx.open(&[ERROR]).await;
    let stdin = good.tx.open(&[STDIN]).await;
    let out = good.tx.open(&[STDOUT]).await;
    good.tx.data(stdin, b"before ", false).await;

    let cases: Vec<&[u8]> = vec![
        &[0x80, 2, 0, 1, 0, 0, 0, 0],          // SPDY/2
        &[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 0], // short PING
        &[
            0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 9,
        ], // bad zlib
        &[0, 0, 0, 0, 0, 0, 0, 1, 0],          // data on stream 0
    ];
    for bytes in cases {
        let url = server
            .get_exec(exec_req(&["hang"], true, true, false, false))
            .unwrap();
        let mut bad = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
        bad.tx.send_raw(bytes).await;
        let got = bad.rx.collect().await;
        assert_eq!(got.goaway.map(|g| g.1), Some(1), "{bytes:?}");
    }
    good.tx.data(stdin, b"after", true).await;
    let got = good.rx.collect().await;
    assert_eq!(got.text(out), "before after");
    assert_eq!(got.text(err), r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn streams_not_created_in_time_end_the_connection() {
    let (server, fake) = start(Config {
        stream_creation_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let err = c.tx.open(&[ERROR]).await;
    let got = c.rx.collect().await;
    assert_eq!(got.goaway, Some((err, 0)));
    assert!(fake.seen.lock().unwrap().execs.is_empty());
}

#[tokio::test]
async fn misbehaving_stream_ids_are_reset() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let mut c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let syn = |stream_id| Frame::SynStream {
        stream_id,
        associated: 0,
        priority: 0,
        flags: 0,
        headers: vec![("streamtype".into(), "error".into())],
    };
    c.tx.send(&syn(5)).await;
    c.tx.send(&syn(3)).await; // goes backwards
    c.tx.send(&syn(8)).await; // even: server-initiated
    c.tx.send(&syn(7)).await; // stdout
    let got = c.rx.collect().await;
    assert!(
        got.rsts.contains(&(3, rst::PROTOCOL_ERROR)),
        "{:?}",
        got.rsts
    );
    assert!(
        got.rsts.contains(&(8, rst::PROTOCOL_ERROR)),
        "{:?}",
        got.rsts
    );
    assert_eq!(got.replies, [5, 7].into());
}

#[tokio::test]
async fn hundred_megabytes_through_exec_without_loss() {
    const TOTAL: usize = 100 << 20;
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let c = connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (mut rx, mut tx) = (c.rx, c.tx);
    let err = tx.open(&[ERROR]).await;
    let stdin = tx.open(&[STDIN]).await;
    let out = tx.open(&[STDOUT]).await;
    let sender = tokio::spawn(async move {
        let mut sha = Sha256::new();
        let mut chunk = vec![0u8; 32 * 1024];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut sent = 0;
        while sent < TOTAL {
            for b in chunk.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            sha.update(&chunk);
            tx.data(stdin, &chunk, false).await;
            sent += chunk.len();
        }
        tx.data(stdin, b"", true).await;
        (sha.finalize(), tx)
    });
    let mut sha = Sha256::new();
    let mut received = 0usize;
    let mut status = Vec::new();
    while let Some(f) = rx.frame().await {
        if let Frame::Data {
            stream_id,
            data,
            flags,
        } = f
        {
            if stream_id == out {
                sha.update(&data);
                received += data.len();
            } else if stream_id == err {
                status.extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    break;
                }
            }
        }
    }
    let (sent_sha, _tx) = sender.await.unwrap();
    assert_eq!(received, TOTAL);
    assert_eq!(sha.finalize(), sent_sha);
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn port_forward_pairs_by_request_id() {
    let (server, fake) = start(Config::default()).await;
    let echo = echo_server().await;
    let closed = closed_port().await;
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports: vec![],
        })
        .unwrap();
    let mut c = connect(&url, &["portforward.k8s.io"]).await.unwrap();
    assert_eq!(c.protocol, "portforward.k8s.io");
    let echo_s = echo.to_string();
    let closed_s = closed.to_string();
    // Request 0: echo; data before error is fine.
    let d0 =
        c.tx.open(&[
            ("streamType", "data"),
            ("port", &echo_s),
            ("requestID", "0"),
        ])
        .await;
    let e0 =
        c.tx.open(&[
            ("streamType", "error"),
            ("port", &echo_s),
            ("requestID", "0"),
        ])
        .await;
    // Request 1: nothing listens.
    let e1 =
        c.tx.open(&[
            ("streamType", "error"),
            ("port", &closed_s),
            ("requestID", "1"),
        ])
        .await;
    let d1 =
        c.tx.open(&[
            ("streamType", "data"),
            ("port", &closed_s),
            ("requestID", "1"),
        ])
        .await;
    // Request 2: an old client, no request id (error n, data n + 2).
    let e2 =
        c.tx.open(&[("streamType", "error"), ("port", &echo_s)])
            .await;
    let d2 =
        c.tx.open(&[("streamType", "data"), ("port", &echo_s)])
            .await;
    // Request 3: a bad port.
    let e3 =
        c.tx.open(&[
            ("streamType", "error"),
            ("port", "http"),
            ("requestID", "3"),
        ])
        .await;
    let d3 =
        c.tx.open(&[("streamType", "data"), ("port", "http"), ("requestID", "3")])
            .await;
    c.tx.data(d0, b"hello ", false).await;
    c.tx.data(d0, b"pod", true).await;
    c.tx.data(d2, b"legacy", true).await;
    let mut got = common::spdy::SpdyCollected::default();
    let done = |g: &common::spdy::SpdyCollected| {
        [e0, e1, e2, e3, d0, d2]
            .iter()
            .all(|id| g.fins.contains(id))
    };
    while !done(&got) {
        let f = tokio::time::timeout(Duration::from_secs(10), c.rx.frame())
            .await
            .unwrap()
            .unwrap();
        got.add(f);
    }
    assert_eq!(got.text(d0), "hello pod");
    assert_eq!(got.text(d2), "legacy");
    assert!(got.text(e0).is_empty());
    assert!(
        got.text(e1)
            .contains(&format!("error forwarding port {closed} to pod pod1")),
        "{}",
        got.text(e1)
    );
    assert!(got.text(e3).contains("invalid port"), "{}", got.text(e3));
    assert!(got.fins.contains(&d1) && got.fins.contains(&d3));
    let forwards = fake.seen.lock().unwrap().forwards.clone();
    assert_eq!(
        forwards
            .iter()
            .filter(|(p, port)| p == "pod1" && *port == echo)
            .count(),
        2
    );
    drop(c);
}

#[tokio::test]
async fn port_forward_duplicates_and_unpaired_streams() {
    let (server, _) = start(Config {
        stream_creation_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let echo = echo_server().await.to_string();
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports: vec![1],
        })
        .unwrap();
    let mut c = connect(&url, &["portforward.k8s.io"]).await.unwrap();
    let e0 =
        c.tx.open(&[("streamType", "error"), ("port", &echo), ("requestID", "0")])
            .await;
    let dup =
        c.tx.open(&[("streamType", "error"), ("port", &echo), ("requestID", "0")])
            .await;
    let odd =
        c.tx.open(&[("streamType", "weird"), ("requestID", "9")])
            .await;
    let mut got = common::spdy::SpdyCollected::default();
    while !got.fins.contains(&e0) {
        let f = tokio::time::timeout(Duration::from_secs(10), c.rx.frame())
            .await
            .unwrap()
            .unwrap();
        got.add(f);
    }
    let text = got.text(e0);
    assert!(text.contains("error stream already assigned"), "{text}");
    assert!(text.contains("timed out waiting for streams"), "{text}");
    assert!(got.rsts.contains(&(dup, rst::PROTOCOL_ERROR)));
    assert!(got.rsts.contains(&(odd, rst::PROTOCOL_ERROR)));
    // Port 1 is the only one this request allows.
    let e1 =
        c.tx.open(&[("streamType", "error"), ("port", &echo), ("requestID", "1")])
            .await;
    let _d1 =
        c.tx.open(&[("streamType", "data"), ("port", &echo), ("requestID", "1")])
            .await;
    while !got.fins.contains(&e1) {
        let f = tokio::time::timeout(Duration::from_secs(10), c.rx.frame())
            .await
            .unwrap()
            .unwrap();
        got.add(f);
    }
    assert!(
        got.text(e1).contains("is not forwarded by this request"),
        "{}",
        got.text(e1)
    );
}
