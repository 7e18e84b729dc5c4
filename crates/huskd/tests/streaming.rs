//! Exec, Attach and PortForward through huskd's streaming server, against real containers on
//! runc and crun: a small independent WebSocket client (tests/common/ws.rs), and the
//! interop clients of husk-streaming's tests (Python `websockets`, npm `spdy-transport`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::ws::{Ws, http_status};
use common::*;
use k8s_cri::v1 as cri;
use tonic::Code;

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const LIMIT: Duration = Duration::from_secs(60);

async fn exec_url(env: &mut Env, c: &str, cmd: &[&str], tty: bool, stdin: bool) -> String {
    exec_url_streams(env, c, cmd, tty, stdin, !tty).await
}

/// SPDY clients open exactly the streams the request names.
async fn exec_url_streams(
    env: &mut Env,
    c: &str,
    cmd: &[&str],
    tty: bool,
    stdin: bool,
    stderr: bool,
) -> String {
    env.rt
        .exec(cri::ExecRequest {
            container_id: c.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty,
            stdin,
            stdout: true,
            stderr,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

async fn attach_url(env: &mut Env, c: &str, tty: bool, stdin: bool) -> String {
    env.rt
        .attach(cri::AttachRequest {
            container_id: c.into(),
            stdin,
            tty,
            stdout: true,
            stderr: !tty,
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

async fn pf_url(env: &mut Env, pod: &str, port: i32) -> String {
    env.rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.into(),
            port: vec![port],
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

/// Runs `cmd` through a v5 session, sending `input` then closing stdin.
async fn exec(env: &mut Env, c: &str, cmd: &[&str], input: Option<&[u8]>) -> common::ws::Outcome {
    let url = exec_url(env, c, cmd, false, input.is_some()).await;
    let mut ws = Ws::connect(&url, &[V5, V4]).await.unwrap();
    assert_eq!(ws.protocol, V5);
    if let Some(data) = input {
        ws.send(0, data).await;
        ws.close_stdin().await;
    }
    ws.finish(LIMIT).await
}

fn huskd_fds(env: &Env) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", env.h.pid().unwrap()))
        .unwrap()
        .count()
}

fn children_of(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(c.split_whitespace().map(str::to_string));
    }
    out
}

#[tokio::test]
async fn exec_streams_exit_codes_stdin_tty_and_big_output() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("ex-{rt}"), rt, &["sleep", "1000"]).await;

        // stdout and stderr apart, the exit code in the status
        let o = exec(
            &mut env,
            &c,
            &["sh", "-c", "echo out; echo err >&2; exit 7"],
            None,
        )
        .await;
        assert_eq!(o.stdout, b"out\n", "{rt}");
        assert_eq!(o.stderr, b"err\n", "{rt}");
        assert_eq!(o.exit_code(), 7, "{rt}: {:?}", o.status);
        let o = exec(&mut env, &c, &["true"], None).await;
        assert_eq!(o.exit_code(), 0, "{rt}");

        // stdin through cat, closed by the v5 close signal
        let o = exec(&mut env, &c, &["cat"], Some(b"piped through cat\n")).await;
        assert_eq!(o.stdout, b"piped through cat\n", "{rt}");
        assert_eq!(o.exit_code(), 0, "{rt}");

        // an unknown command: a clear failure, not a hang
        let o = exec(&mut env, &c, &["/no/such/binary"], None).await;
        let s = o.status.expect("status");
        assert_eq!(s["status"], "Failure", "{rt}: {s}");

        // tty: resizes reach the terminal (`stty size` prints rows and columns)
        let url = exec_url(&mut env, &c, &["sh", "-c", "read x; stty size"], true, true).await;
        let mut ws = Ws::connect(&url, &[V5]).await.unwrap();
        ws.resize(123, 45).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(0, b"go\r").await;
        let o = ws.finish(LIMIT).await;
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("45 123"), "{rt}: {text:?}");
        assert_eq!(o.exit_code(), 0, "{rt}");

        // 100 MB without loss
        let total = 100_000_000usize;
        let cmd = format!("yes 0123456789abcdef | head -c {total}");
        let o = exec(&mut env, &c, &["sh", "-c", &cmd], None).await;
        assert_eq!(o.stdout.len(), total, "{rt}");
        let pattern = b"0123456789abcdef\n";
        assert!(
            o.stdout
                .chunks(pattern.len())
                .all(|ch| ch == &pattern[..ch.len()]),
            "{rt}: corrupted stream"
        );
        assert_eq!(o.exit_code(), 0);
    }
    env.teardown().await;
}

#[tokio::test]
async fn a_client_going_away_kills_the_exec_and_nothing_leaks() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("gone-{rt}"), rt, &["sleep", "1000"]).await;
        let fds = huskd_fds(&env);
        let url = exec_url(&mut env, &c, &["sleep", "4243"], false, true).await;
        let ws = Ws::connect(&url, &[V5]).await.unwrap();
        // it runs...
        let mut seen = false;
        for _ in 0..50 {
            let r = env.exec(&c, &["ps"], 10).await.unwrap();
            if String::from_utf8_lossy(&r.stdout).contains("sleep 4243") {
                seen = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen, "{rt}: the exec'd process never ran");
        drop(ws);
        // ...until the client goes away
        let mut gone = false;
        for _ in 0..100 {
            let r = env.exec(&c, &["ps"], 10).await.unwrap();
            if !String::from_utf8_lossy(&r.stdout).contains("sleep 4243") {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(gone, "{rt}: the exec'd process outlived its client");

        // Many execs, then the same descriptors and no extra children in huskd.
        for i in 0..1000 {
            let o = exec(&mut env, &c, &["sh", "-c", &format!("echo {i}")], None).await;
            assert_eq!(o.stdout, format!("{i}\n").as_bytes(), "{rt}");
        }
        let url = exec_url(&mut env, &c, &["sh", "-c", "exec cat"], true, true).await;
        let ws = Ws::connect(&url, &[V5]).await.unwrap();
        drop(ws);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = huskd_fds(&env);
        assert!(after <= fds + 2, "{rt}: huskd had {fds} fds, now {after}");
        let monitors: Vec<String> = children_of(env.h.pid().unwrap())
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .unwrap_or_default()
                    .contains("exec-sync")
            })
            .collect();
        assert!(
            monitors.is_empty(),
            "{rt}: exec monitors left: {monitors:?}"
        );
    }
    env.teardown().await;
}

#[tokio::test]
async fn attach_serves_several_clients_stdin_and_tty() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        // output to two clients at once
        let (_, c) = env
            .run(
                &format!("at-{rt}"),
                rt,
                &[
                    "sh",
                    "-c",
                    "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
                ],
            )
            .await;
        let u1 = attach_url(&mut env, &c, false, false).await;
        let u2 = attach_url(&mut env, &c, false, false).await;
        let mut a = Ws::connect(&u1, &[V5]).await.unwrap();
        let mut b = Ws::connect(&u2, &[V5]).await.unwrap();
        for ws in [&mut a, &mut b] {
            let (ch, data) = tokio::time::timeout(LIMIT, ws.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(ch, 1, "{rt}");
            assert!(
                String::from_utf8_lossy(&data).contains("tick"),
                "{rt}: {data:?}"
            );
        }
        drop((a, b));

        // stdin to `cat`; stdin_once: the container's stdin closes when the client detaches
        let pc = env.pod_config(&format!("at-in-{rt}"));
        let pod = env.run_pod(pc.clone(), rt).await.unwrap();
        let mut cc = container_config("cat", &["cat"]);
        cc.stdin = true;
        cc.stdin_once = true;
        let cat = env.create(&pod, cc, &pc).await.unwrap();
        env.start(&cat).await.unwrap();
        let url = attach_url(&mut env, &cat, false, true).await;
        let mut ws = Ws::connect(&url, &[V5]).await.unwrap();
        ws.send(0, b"hello attach\n").await;
        let (ch, data) = tokio::time::timeout(LIMIT, ws.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((ch, data.as_slice()), (1, &b"hello attach\n"[..]), "{rt}");
        ws.close_stdin().await;
        let o = ws.finish(LIMIT).await;
        assert_eq!(o.exit_code(), 0, "{rt}: cat ends at EOF: {:?}", o.status);
        let st = env.wait_exited(&cat).await;
        assert_eq!(st.exit_code, 0, "{rt}");
        // attach with stdin to a container without stdin is refused
        let (_, plain) = env.run(&format!("at-no-{rt}"), rt, &["sleep", "100"]).await;
        let err = env
            .rt
            .attach(cri::AttachRequest {
                container_id: plain.clone(),
                stdin: true,
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{rt}");

        // tty: resize through the monitor
        let pc = env.pod_config(&format!("at-tty-{rt}"));
        let pod = env.run_pod(pc.clone(), rt).await.unwrap();
        let mut cc = container_config("sh", &["sh"]);
        cc.stdin = true;
        cc.tty = true;
        let sh = env.create(&pod, cc, &pc).await.unwrap();
        env.start(&sh).await.unwrap();
        let url = attach_url(&mut env, &sh, true, true).await;
        let mut ws = Ws::connect(&url, &[V5]).await.unwrap();
        ws.resize(91, 37).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(0, b"stty size; exit 3\r").await;
        let o = ws.finish(LIMIT).await;
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("37 91"), "{rt}: {text:?}");
        assert_eq!(o.exit_code(), 3, "{rt}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn port_forward_reaches_httpd_in_the_pod() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (pod, _) = env
            .run(
                &format!("pf-{rt}"),
                rt,
                &[
                    "sh",
                    "-c",
                    "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www",
                ],
            )
            .await;
        // httpd listens inside the pod's network namespace only.
        let mut ready = false;
        for _ in 0..50 {
            let url = pf_url(&mut env, &pod, 8080).await;
            let mut ws = Ws::connect(&url, &[V4]).await.unwrap();
            ws.send(0, b"GET / HTTP/1.0\r\n\r\n").await;
            let mut body = Vec::new();
            while let Ok(Some((ch, data))) = tokio::time::timeout(LIMIT, ws.recv()).await {
                if ch == 0 {
                    body.extend_from_slice(&data);
                }
            }
            if String::from_utf8_lossy(&body).contains("hello from the pod") {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "{rt}: httpd never answered through port-forward");

        // 20 requests in parallel, each its own forwarded connection
        let mut urls = Vec::new();
        for _ in 0..20 {
            urls.push(pf_url(&mut env, &pod, 8080).await);
        }
        let tasks: Vec<_> = urls
            .into_iter()
            .map(|url| {
                tokio::spawn(async move {
                    let mut ws = Ws::connect(&url, &[V4]).await.unwrap();
                    let mut ports = 0;
                    ws.send(0, b"GET /index.html HTTP/1.0\r\n\r\n").await;
                    let mut body = Vec::new();
                    while let Ok(Some((ch, data))) = tokio::time::timeout(LIMIT, ws.recv()).await {
                        if body.is_empty() && ch == 0 && data.len() == 2 && ports < 2 {
                            // the port number opening each channel
                            ports += 1;
                            continue;
                        }
                        if ch == 0 {
                            body.extend_from_slice(&data);
                        }
                    }
                    String::from_utf8_lossy(&body).into_owned()
                })
            })
            .collect();
        for t in tasks {
            let body = t.await.unwrap();
            assert!(body.contains("200 OK"), "{rt}: {body}");
            assert!(body.contains("hello from the pod"), "{rt}: {body}");
        }

        // a closed port: the error channel says so
        let url = pf_url(&mut env, &pod, 9).await;
        let mut ws = Ws::connect(&url, &[V4]).await.unwrap();
        let mut err = Vec::new();
        while let Ok(Some((ch, data))) = tokio::time::timeout(LIMIT, ws.recv()).await {
            // The first frame of a channel is its port number (2 bytes); the message follows.
            if ch == 1 && (data.len() > 2 || !err.is_empty()) {
                err.extend_from_slice(&data);
            }
        }
        let err = String::from_utf8_lossy(&err);
        assert!(
            err.contains("port 9") && err.contains("refused"),
            "{rt}: {err}"
        );
    }
    env.teardown().await;
}

#[tokio::test]
async fn urls_are_single_use_and_bad_requests_are_refused() {
    let mut env = Env::new().await;
    let (pod, c) = env.run("tok", "runc", &["sleep", "1000"]).await;
    let url = exec_url(&mut env, &c, &["true"], false, false).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let ws = Ws::connect(&url, &[V5]).await.unwrap();
    assert_eq!(ws.finish(LIMIT).await.exit_code(), 0);
    // used
    assert_eq!(http_status(&url).await, 404);
    assert!(Ws::connect(&url, &[V5]).await.unwrap_err().contains("404"));
    // made up
    let base = url.rsplit_once('/').unwrap().0;
    assert_eq!(http_status(&format!("{base}/AAAAAAAAAAAAAAAA")).await, 404);

    // bad requests
    let err = env
        .rt
        .exec(cri::ExecRequest {
            container_id: c.clone(),
            cmd: vec![],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = env
        .rt
        .exec(cri::ExecRequest {
            container_id: "nosuchcontainer".into(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = env
        .rt
        .exec(cri::ExecRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = env
        .rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.clone(),
            port: vec![70000],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = env
        .rt
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: "nosuchpod".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // a stopped container: no exec, no attach
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: c.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let err = env
        .rt
        .exec(cri::ExecRequest {
            container_id: c.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = env
        .rt
        .attach(cri::AttachRequest {
            container_id: c.clone(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    env.teardown().await;
}

const WS_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../streaming/tests/interop/ws_client.py"
);
const SPDY_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../streaming/tests/interop/spdy_client.js"
);

/// Runs an interop client; its JSON report.
async fn interop(mut cmd: tokio::process::Command) -> serde_json::Value {
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?}: {e}: {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[tokio::test]
async fn independent_clients_exec_and_forward_over_websocket_and_spdy() {
    let python = husk_test_support::interop::python_websockets();
    let node = husk_test_support::interop::spdy_transport(std::path::Path::new(env!(
        "CARGO_TARGET_TMPDIR"
    )));
    if !python && node.is_none() {
        return;
    }
    let mut env = Env::new().await;
    let (pod, c) = env
        .run(
            "interop",
            "crun",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 8080 -h /www",
            ],
        )
        .await;
    if python {
        let url = exec_url(&mut env, &c, &["cat"], false, true).await;
        let mut cmd = tokio::process::Command::new("python3");
        cmd.arg(WS_CLIENT).arg("exec-v5-echo").arg(&url);
        let out = interop(cmd).await;
        assert_eq!(out["protocol"], V5);
        assert_eq!(out["channels"]["1"], "hello from python");
        let status: serde_json::Value =
            serde_json::from_str(out["channels"]["3"].as_str().unwrap())
                .unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(status["status"], "Success", "{status}");
    }
    if let Some(dir) = node {
        let spdy = |mode: &str, url: &str, args: &[&str]| {
            let mut cmd = tokio::process::Command::new("node");
            cmd.arg(SPDY_CLIENT).arg(mode).arg(url).args(args);
            cmd.env("SPDY_TRANSPORT", &dir);
            cmd
        };
        let url = exec_url_streams(&mut env, &c, &["cat"], false, true, false).await;
        let out = interop(spdy("exec-echo", &url, &["hello over spdy"])).await;
        assert_eq!(out["protocol"], V4);
        assert_eq!(out["stdout"], "hello over spdy");
        assert!(out["status"].as_str().unwrap().contains("Success"), "{out}");

        let url = exec_url(
            &mut env,
            &c,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        )
        .await;
        let out = interop(spdy("exec-exit", &url, &[])).await;
        assert_eq!(out["stdout"], "out\n");
        assert_eq!(out["stderr"], "err\n");
        assert_eq!(out["status"]["reason"], "NonZeroExitCode", "{out}");
        assert_eq!(out["status"]["details"]["causes"][0]["message"], "3");

        // 100 MiB through `cat` and back, over SPDY flow control
        let url = exec_url_streams(&mut env, &c, &["cat"], false, true, false).await;
        let out = interop(spdy("exec-big", &url, &["100"])).await;
        assert_eq!(out["bytes"], 100 << 20);
        assert_eq!(out["sent"], out["received"]);

        // port-forward to httpd, then a closed port, on SPDY
        let url = pf_url(&mut env, &pod, 8080).await;
        let out = interop(spdy(
            "portforward",
            &url,
            &["GET / HTTP/1.0\r\n\r\n", "8080"],
        ))
        .await;
        let data = out["data"].as_str().unwrap();
        assert!(data.contains("hello from the pod"), "{out}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn tls_streaming_with_a_self_signed_certificate() {
    if !husk_test_support::interop::python_websockets() {
        return;
    }
    let mut env = Env::with_config("[stream]\nenable_tls = true\n").await;
    let (_, c) = env.run("tls", "crun", &["sleep", "1000"]).await;
    let url = exec_url(&mut env, &c, &["cat"], false, true).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    // Plain HTTP to the TLS port goes nowhere.
    let plain = url.replacen("https://", "http://", 1);
    assert!(Ws::connect(&plain, &[V5]).await.is_err());
    let script = r#"
import json, ssl, sys
from websockets.sync.client import connect
url = sys.argv[1].replace("https://", "wss://", 1)
out = {}
with connect(url, ssl=ssl._create_unverified_context(), subprotocols=["v5.channel.k8s.io"]) as ws:
    ws.send(b"\x00over tls")
    ws.send(b"\xff\x00")
    for msg in ws:
        out.setdefault(str(msg[0]), "")
        out[str(msg[0])] += msg[1:].decode()
print(json.dumps(out))
"#;
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg("-c").arg(script).arg(&url);
    let out = interop(cmd).await;
    assert_eq!(out["1"], "over tls", "{out}");
    assert!(out["3"].as_str().unwrap().contains("Success"), "{out}");
    env.teardown().await;
}
