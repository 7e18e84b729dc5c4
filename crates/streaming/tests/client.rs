//! `husk_streaming::client` against the real server with the fake backend of `common`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use husk_streaming::client::{
    self, ClientError, ExecOptions, PortForwardOptions, Protocol, Session,
};
use husk_streaming::ws::frame::{self, Opcode};
use husk_streaming::{AttachRequest, Config, PortForwardRequest, Server};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn open(server: &Server, cmd: &[&str], stdin: bool, tty: bool) -> Session {
    let url = server
        .get_exec(exec_req(cmd, stdin, true, !tty, tty))
        .unwrap();
    client::exec(url.as_str(), &ExecOptions::default())
        .await
        .unwrap()
}

/// Runs a session with `input` as stdin: (exit code, stdout, stderr).
async fn run(session: Session, input: &'static [u8]) -> (Result<i32, ClientError>, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = session.run(input, &mut out, &mut err).await;
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

#[tokio::test]
async fn exit_codes_and_separate_output_streams() {
    let (server, fake) = start(Config::default()).await;
    for code in [0, 7] {
        let session = open(&server, &["exit", &code.to_string()], false, false).await;
        assert_eq!(session.protocol(), Protocol::V5);
        let (got, out, err) = run(session, b"").await;
        assert_eq!(got.unwrap(), code);
        assert_eq!(out, "out");
        assert_eq!(err, "err");
    }
    let execs = fake.seen.lock().unwrap().execs.clone();
    assert_eq!(execs.len(), 2);
    assert!(execs[0].stdout && execs[0].stderr && !execs[0].tty);
}

#[tokio::test]
async fn stdin_is_piped_through_and_closed() {
    let (server, _) = start(Config::default()).await;
    let session = open(&server, &["echo"], true, false).await;
    let (got, out, err) = run(session, b"hello from stdin\n").await;
    assert_eq!(got.unwrap(), 0);
    assert_eq!(out, "hello from stdin\n");
    assert_eq!(err, "");

    // The same by hand: write, shut down (the v5 close signal), read, wait.
    let mut session = open(&server, &["echo"], true, false).await;
    let mut stdin = session.take_stdin().unwrap();
    let mut stdout = session.take_stdout().unwrap();
    assert!(session.take_stdin().is_none());
    stdin.write_all(b"one ").await.unwrap();
    stdin.write_all(b"two").await.unwrap();
    stdin.shutdown().await.unwrap();
    assert!(stdin.write_all(b"late").await.is_err());
    let mut out = String::new();
    stdout.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "one two");
    assert_eq!(session.wait().await.unwrap(), 0);
}

#[tokio::test]
async fn resizes_reach_the_backend() {
    let (server, fake) = start(Config::default()).await;
    let mut session = open(&server, &["resize"], true, true).await;
    let resizer = session.resizer();
    resizer.resize(80, 24).await.unwrap();
    resizer.resize(100, 50).await.unwrap();
    let mut stdin = session.take_stdin().unwrap();
    stdin.shutdown().await.unwrap();
    let (got, out, err) = run(session, b"").await;
    assert_eq!(got.unwrap(), 0);
    assert_eq!(out, "80x24,100x50");
    assert_eq!(err, "", "a tty has no stderr");
    {
        let seen = fake.seen.lock().unwrap();
        assert_eq!(seen.resizes.len(), 2);
        assert!(seen.execs[0].tty && !seen.execs[0].stderr);
    }
    // The session is over: resizing now fails.
    assert!(matches!(
        resizer.resize(1, 1).await,
        Err(ClientError::Disconnected)
    ));
}

#[tokio::test]
async fn v4_can_be_chosen() {
    let (server, _) = start(Config::default()).await;
    let opts = ExecOptions {
        protocols: vec![Protocol::V4],
        ..ExecOptions::default()
    };
    let url = server
        .get_exec(exec_req(&["exit", "7"], false, true, true, false))
        .unwrap();
    let session = client::exec(url.as_str(), &opts).await.unwrap();
    assert_eq!(session.protocol(), Protocol::V4);
    let (got, out, err) = run(session, b"").await;
    assert_eq!(got.unwrap(), 7);
    assert_eq!((out.as_str(), err.as_str()), ("out", "err"));

    // v4 cannot close stdin alone: the echo ends when the client drops the session.
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let mut session = client::exec(url.as_str(), &opts).await.unwrap();
    let mut stdin = session.take_stdin().unwrap();
    let mut stdout = session.take_stdout().unwrap();
    stdin.write_all(b"v4 data").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut buf = [0u8; 7];
    stdout.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"v4 data");
    let still_running = tokio::time::timeout(Duration::from_millis(200), session.wait()).await;
    assert!(
        still_running.is_err(),
        "v4 stdin shutdown must not end the echo"
    );
}

/// A server that only speaks `v4.channel.k8s.io`: answers one exec with "hi" and exit code 3.
async fn v4_only_server() -> (String, tokio::task::JoinHandle<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/exec/token", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
                .unwrap()
        };
        let offered = header("sec-websocket-protocol");
        let accept = husk_streaming::ws::accept_key(&header("sec-websocket-key"));
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n"
        );
        let mut out = BytesMut::from(resp.as_bytes());
        frame::encode(true, Opcode::Binary, b"\x01hi", None, &mut out);
        let status = br#"{"metadata":{},"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        frame::encode_parts(true, Opcode::Binary, &[&[3], status], None, &mut out);
        frame::encode(
            true,
            Opcode::Close,
            &frame::close_payload(1000, ""),
            None,
            &mut out,
        );
        s.write_all(&out).await.unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
        offered
    });
    (url, task)
}

#[tokio::test]
async fn falls_back_to_v4() {
    let (url, server) = v4_only_server().await;
    let session = client::exec(&url, &ExecOptions::default()).await.unwrap();
    assert_eq!(session.protocol(), Protocol::V4);
    let (got, out, _) = run(session, b"").await;
    assert_eq!(got.unwrap(), 3);
    assert_eq!(out, "hi");
    assert_eq!(
        server.await.unwrap(),
        "v5.channel.k8s.io, v4.channel.k8s.io",
        "v5 is offered first"
    );
}

#[tokio::test]
async fn hundred_megabytes_pass_without_loss() {
    const TOTAL: usize = 100 << 20;
    let (server, _) = start(Config::default()).await;
    let mut session = open(&server, &["echo"], true, false).await;
    let mut stdin = session.take_stdin().unwrap();
    let mut stdout = session.take_stdout().unwrap();
    let sender = tokio::spawn(async move {
        let mut sha = Sha256::new();
        let mut chunk = vec![0u8; 48 * 1024 + 7];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut sent = 0;
        while sent < TOTAL {
            let n = chunk.len().min(TOTAL - sent);
            for b in chunk[..n].iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            sha.update(&chunk[..n]);
            stdin.write_all(&chunk[..n]).await.unwrap();
            sent += n;
        }
        stdin.shutdown().await.unwrap();
        sha.finalize()
    });
    let mut sha = Sha256::new();
    let mut received = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        received += n;
    }
    assert_eq!(received, TOTAL);
    assert_eq!(sha.finalize(), sender.await.unwrap());
    assert_eq!(session.wait().await.unwrap(), 0);
}

#[tokio::test]
async fn unknown_and_used_tokens_are_clear_errors() {
    let (server, _) = start(Config::default()).await;
    let bogus = format!("http://{}/exec/not-a-token", server.addr());
    let err = client::exec(&bogus, &ExecOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound), "{err:?}");
    assert_eq!(err.http_status(), Some(404));
    assert!(err.to_string().contains("404"), "{err}");
    assert!(err.to_string().contains("token"), "{err}");

    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let session = client::exec(url.as_str(), &ExecOptions::default())
        .await
        .unwrap();
    assert_eq!(session.wait().await.unwrap(), 0);
    let again = client::exec(url.as_str(), &ExecOptions::default()).await;
    assert!(matches!(again, Err(ClientError::NotFound)));

    // Not a usable URL, nothing listening, no protocol at all.
    assert!(matches!(
        client::exec("https://127.0.0.1:1/exec/x", &ExecOptions::default()).await,
        Err(ClientError::InvalidUrl { .. })
    ));
    let closed = closed_port().await;
    let err = client::exec(
        &format!("http://127.0.0.1:{closed}/exec/x"),
        &ExecOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let url = server
        .get_exec(exec_req(&["exit", "0"], false, true, false, false))
        .unwrap();
    let none = ExecOptions {
        protocols: vec![],
        ..ExecOptions::default()
    };
    assert!(client::exec(url.as_str(), &none).await.is_err());
}

#[tokio::test]
async fn backend_failures_carry_their_message() {
    let (server, _) = start(Config::default()).await;
    let session = open(&server, &["fail"], false, false).await;
    match session.wait().await.unwrap_err() {
        ClientError::Remote { reason, message } => {
            assert_eq!(reason, "InternalError");
            assert!(message.contains("no such container"), "{message}");
        }
        e => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn dropping_a_session_cancels_it() {
    let (server, fake) = start(Config::default()).await;
    let session = open(&server, &["hang"], true, false).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(session);
    for _ in 0..100 {
        if fake.seen.lock().unwrap().cancelled == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the backend was not cancelled");
}

#[tokio::test]
async fn attach_uses_the_same_session() {
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_attach(AttachRequest {
            container_id: "c1".into(),
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .unwrap();
    let session = client::attach(url.as_str(), &ExecOptions::default())
        .await
        .unwrap();
    let (got, out, _) = run(session, b"attached").await;
    assert_eq!(got.unwrap(), 0);
    assert_eq!(out, "attached");
}

fn pf_url(server: &Server, ports: Vec<u16>) -> String {
    server
        .get_port_forward(PortForwardRequest {
            pod_id: "pod1".into(),
            ports,
        })
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn port_forward_echoes() {
    let (server, fake) = start(Config::default()).await;
    let echo = echo_server().await;
    let mut s = client::port_forward(
        &pf_url(&server, vec![]),
        echo,
        &PortForwardOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.port(), echo);
    let errors = s.error_channel();
    s.write_all(b"through the tunnel").await.unwrap();
    let mut buf = [0u8; 18];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"through the tunnel");
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
    assert_eq!(errors.message().await, None);
    assert_eq!(
        fake.seen.lock().unwrap().forwards,
        vec![("pod1".into(), echo)]
    );
}

#[tokio::test]
async fn port_forward_finds_its_port_among_the_tokens() {
    // A token naming ports itself: the client finds its port's channels by their prefixes.
    let (server, _) = start(Config::default()).await;
    let (a, b) = (echo_server().await, echo_server().await);
    let mut s = client::port_forward(
        &pf_url(&server, vec![a, b]),
        b,
        &PortForwardOptions::default(),
    )
    .await
    .unwrap();
    s.write_all(b"second").await.unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"second");

    let closed = closed_port().await;
    let err = client::port_forward(
        &pf_url(&server, vec![a]),
        closed,
        &PortForwardOptions {
            connect_timeout: Duration::from_millis(500),
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { .. } | ClientError::Protocol(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn twenty_parallel_forwards() {
    let (server, _) = start(Config::default()).await;
    let echo = echo_server().await;
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let url = pf_url(&server, vec![]);
        tasks.push(tokio::spawn(async move {
            let s = client::port_forward(&url, echo, &PortForwardOptions::default())
                .await
                .unwrap();
            let payload: Vec<u8> = (0..256 * 1024)
                .map(|j: usize| (j as u8).wrapping_mul(i + 1))
                .collect();
            let (mut rd, mut wr) = tokio::io::split(s);
            let expected = payload.clone();
            let writer = tokio::spawn(async move {
                wr.write_all(&payload).await.unwrap();
                wr
            });
            let mut got = vec![0u8; expected.len()];
            rd.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "connection {i} corrupted");
            let mut wr = writer.await.unwrap();
            wr.shutdown().await.unwrap();
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test]
async fn port_forward_failures_arrive_on_the_error_channel() {
    let (server, _) = start(Config::default()).await;
    let closed = closed_port().await;
    let mut s = client::port_forward(
        &pf_url(&server, vec![]),
        closed,
        &PortForwardOptions::default(),
    )
    .await
    .unwrap();
    let errors = s.error_channel();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    let message = errors.message().await.unwrap();
    assert!(
        message.contains(&format!("error forwarding port {closed} to pod pod1")),
        "{message}"
    );
    // The connection is over: writes fail once the writer has stopped.
    let mut refused = false;
    for _ in 0..100 {
        if s.write_all(b"x").await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "writes after the end must fail");

    let bogus = format!("http://{}/portforward/nope", server.addr());
    let err = client::port_forward(&bogus, 80, &PortForwardOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotFound), "{err:?}");
}
