//! The real `crictl` (v1.32: the kubelet's client-go streaming clients) against a real huskd:
//! port-forward over SPDY and over SPDY tunnelled in a WebSocket, exec and attach over SPDY and
//! WebSocket, and attach sessions ending when crictl's stdin ends or crictl is terminated.
//!
//! crictl is `$CRICTL`, else `../shared/conformance/bin/crictl` from the workspace root; without
//! it the tests skip, unless `HUSK_REQUIRE_INTEROP=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::*;
use k8s_cri::v1 as cri;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];
/// How long any crictl command may take before the test calls it a hang.
const LIMIT: Duration = Duration::from_secs(20);

/// The crictl binary, or `None` (after a note) when it is absent and not required.
fn crictl_bin() -> Option<PathBuf> {
    let path = std::env::var_os("CRICTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/bin/crictl")
        });
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("HUSK_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "crictl is required (HUSK_REQUIRE_INTEROP=1) but {} does not exist; set CRICTL",
        path.display()
    );
    eprintln!(
        "skipping: crictl not found at {} (set CRICTL)",
        path.display()
    );
    None
}

/// crictl pointed at one huskd through its own config file.
struct Crictl {
    bin: PathBuf,
    config: PathBuf,
}

impl Crictl {
    fn new(bin: PathBuf, env: &Env) -> Crictl {
        let config = env.h.dir().join("crictl.yaml");
        let sock = env.h.socket_path();
        std::fs::write(
            &config,
            format!(
                "runtime-endpoint: unix://{s}\nimage-endpoint: unix://{s}\ntimeout: 10\n",
                s = sock.display()
            ),
        )
        .unwrap();
        Crictl { bin, config }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Runs crictl to the end with `input` on its stdin: (status, stdout, stderr).
    async fn run(&self, args: &[&str], input: Option<&[u8]>) -> (ExitStatus, Vec<u8>, String) {
        let mut c = self.command(args);
        if input.is_some() {
            c.stdin(Stdio::piped());
        }
        let mut child = c.spawn().expect("spawn crictl");
        if let Some(data) = input {
            let mut stdin = child.stdin.take().unwrap();
            let data = data.to_vec();
            tokio::spawn(async move {
                let _ = stdin.write_all(&data).await;
            });
        }
        let out = tokio::time::timeout(LIMIT, child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("crictl {args:?} hung"))
            .unwrap();
        (
            out.status,
            out.stdout,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Reads `out` line by line until a line contains `needle`.
async fn wait_line(out: &mut BufReader<ChildStdout>, needle: &str) {
    let found = tokio::time::timeout(LIMIT, async {
        let mut line = String::new();
        loop {
            line.clear();
            if out.read_line(&mut line).await.unwrap() == 0 {
                return false;
            }
            if line.contains(needle) {
                return true;
            }
        }
    })
    .await;
    assert_eq!(found, Ok(true), "crictl never printed {needle:?}");
}

async fn exited_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    tokio::time::timeout(limit, child.wait())
        .await
        .ok()
        .map(Result::unwrap)
}

fn sigterm(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

/// One HTTP/1.0 GET through `127.0.0.1:port`: the whole response, or `None`.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let req = format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&body).into_owned())
}

/// The port of huskd's streaming server (from a URL it hands out).
async fn stream_port(env: &mut Env, container: &str) -> u16 {
    let url = env
        .rt
        .attach(cri::AttachRequest {
            container_id: container.into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .url;
    url::Url::parse(&url).unwrap().port().unwrap()
}

/// Connections to local `port` that huskd has not closed (ESTABLISHED or CLOSE_WAIT).
fn open_connections(port: u16) -> usize {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() > 3 && cols[1].ends_with(&suffix) && matches!(cols[3], "01" | "08")
        })
        .count()
}

async fn running(env: &mut Env, id: &str) -> bool {
    env.status(id).await.state == cri::ContainerState::ContainerRunning as i32
}

#[tokio::test]
async fn port_forward_over_spdy_and_tunnelled_websocket_reaches_httpd() {
    let Some(bin) = crictl_bin() else { return };
    let mut env = Env::new().await;
    let crictl = Crictl::new(bin, &env);
    let (pod, _) = env
        .run(
            "crictl-pf",
            "runc",
            &[
                "sh",
                "-c",
                "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 80 -h /www",
            ],
        )
        .await;
    for transport in TRANSPORTS {
        let local = husk_test_support::free_port();
        let mapping = format!("{local}:80");
        let mut child = crictl
            .command(&["port-forward", "--transport", transport, &pod, &mapping])
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        wait_line(&mut out, &format!("Forwarding from 127.0.0.1:{local}")).await;
        // crictl prints a line per connection: keep its pipe drained.
        tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink).await;
        });
        // httpd may still be starting.
        let mut page = None;
        for _ in 0..50 {
            page = http_get(local, "/").await.filter(|p| p.contains("200 OK"));
            if page.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = page.unwrap_or_else(|| panic!("{transport}: no page through port-forward"));
        assert!(page.contains("hello from the pod"), "{transport}: {page}");
        // Several connections at once through the one session.
        let gets: Vec<_> = (0..8)
            .map(|_| tokio::spawn(http_get(local, "/index.html")))
            .collect();
        for g in gets {
            let page = g.await.unwrap().expect("a parallel GET failed");
            assert!(page.contains("hello from the pod"), "{transport}: {page}");
        }
        // A missing page is httpd's 404, through the same tunnel.
        let page = http_get(local, "/missing").await.unwrap();
        assert!(page.contains("404"), "{transport}: {page}");
        // SIGTERM stops port-forward (its stop channel is crictl's signal handler).
        sigterm(&child);
        let st = exited_within(&mut child, LIMIT)
            .await
            .unwrap_or_else(|| panic!("{transport}: port-forward ignored SIGTERM"));
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
        assert!(st.success(), "{transport}: {st}: {err}");
        assert!(!err.contains("bad handshake"), "{transport}: {err}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn exec_over_spdy_and_websocket_pipes_stdin_and_reports_exit_codes() {
    let Some(bin) = crictl_bin() else { return };
    let mut env = Env::new().await;
    let crictl = Crictl::new(bin, &env);
    let (_, c) = env.run("crictl-exec", "runc", &["sleep", "100000"]).await;
    for transport in TRANSPORTS {
        let t = ["--transport", transport];
        // stdin piped through cat, closed at its end
        let mut args = vec!["exec", "-i"];
        args.extend(t);
        args.extend([c.as_str(), "cat"]);
        let (st, out, err) = crictl.run(&args, Some(b"piped through cat\n")).await;
        assert!(st.success(), "{transport}: {st}: {err}");
        assert_eq!(out, b"piped through cat\n", "{transport}: {err}");
        // a megabyte of stdin, counted inside
        let big = vec![b'x'; 1 << 20];
        let mut args = vec!["exec", "-i"];
        args.extend(t);
        args.extend([c.as_str(), "wc", "-c"]);
        let (st, out, err) = crictl.run(&args, Some(&big)).await;
        assert!(st.success(), "{transport}: {st}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out).trim(),
            "1048576",
            "{transport}"
        );
        // stdout and stderr apart; a non-zero exit code fails crictl and is named
        let mut args = vec!["exec"];
        args.extend(t);
        args.extend([c.as_str(), "sh", "-c", "echo out; echo err >&2; exit 3"]);
        let (st, out, err) = crictl.run(&args, None).await;
        assert!(!st.success(), "{transport}");
        assert_eq!(out, b"out\n", "{transport}");
        assert!(err.contains("err\n"), "{transport}: {err}");
        assert!(err.contains("exit code 3"), "{transport}: {err}");
        // success without stdin
        let mut args = vec!["exec"];
        args.extend(t);
        args.extend([c.as_str(), "true"]);
        let (st, _, err) = crictl.run(&args, None).await;
        assert!(st.success(), "{transport}: {st}: {err}");
    }
    env.teardown().await;
}

/// A pod with a container reading stdin (kept open after a client detaches unless `once`).
async fn reader(env: &mut Env, name: &str, once: bool) -> String {
    let pc = env.pod_config(name);
    let pod = env.run_pod(pc.clone(), "runc").await.unwrap();
    let mut cc = container_config(
        "reader",
        &[
            "sh",
            "-c",
            "while read l; do echo got $l; done; echo eof; exit 0",
        ],
    );
    cc.stdin = true;
    cc.stdin_once = once;
    let c = env.create(&pod, cc, &pc).await.unwrap();
    env.start(&c).await.unwrap();
    c
}

/// `crictl attach -i` with its stdin held open; returns once `line` came back.
async fn attached(crictl: &Crictl, transport: &str, c: &str, line: &str) -> Child {
    let mut child = crictl
        .command(&["attach", "-i", "--transport", transport, c])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // The session may not be up yet when the first line is sent: send until it echoes.
    let mut got = String::new();
    let echoed = tokio::time::timeout(LIMIT, async {
        loop {
            stdin
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
            let read = tokio::time::timeout(Duration::from_millis(500), out.read_line(&mut got));
            match read.await {
                Ok(Ok(0)) => return false,
                _ if got.contains(line) => return true,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        echoed,
        Ok(true),
        "{transport}: attach never echoed {line}: {got:?}"
    );
    child.stdin = Some(stdin);
    child.stdout = Some(out.into_inner());
    child
}

#[tokio::test]
async fn attach_returns_when_crictl_stdin_ends_and_the_container_keeps_running() {
    let Some(bin) = crictl_bin() else { return };
    let mut env = Env::new().await;
    let crictl = Crictl::new(bin, &env);
    let c = reader(&mut env, "crictl-at-eof", false).await;
    for transport in TRANSPORTS {
        for round in 0..2 {
            let mut child = attached(&crictl, transport, &c, &format!("{transport}-{round}")).await;
            // Its stdin ends: without stdin_once the session detaches at once (containerd does
            // the same); the container's own stdin stays open.
            drop(child.stdin.take());
            let st = exited_within(&mut child, LIMIT)
                .await
                .unwrap_or_else(|| panic!("{transport}: attach hung after its stdin ended"));
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err).await;
            assert!(st.success(), "{transport}: {st}: {err}");
            assert!(
                running(&mut env, &c).await,
                "{transport}: the container stopped"
            );
        }
    }
    // With stdin_once the container's stdin closes: `read` ends, the container exits 0, and
    // the session ends with it.
    for transport in TRANSPORTS {
        let c = reader(&mut env, &format!("crictl-at-once-{transport}"), true).await;
        let mut child = attached(&crictl, transport, &c, "only").await;
        drop(child.stdin.take());
        let st = exited_within(&mut child, LIMIT)
            .await
            .unwrap_or_else(|| panic!("{transport}: stdin_once attach hung"));
        assert!(st.success(), "{transport}: {st}");
        let mut rest = String::new();
        let _ = child.stdout.take().unwrap().read_to_string(&mut rest).await;
        assert!(rest.contains("eof"), "{transport}: {rest:?}");
        assert_eq!(env.wait_exited(&c).await.exit_code, 0, "{transport}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn attach_ends_when_crictl_is_terminated_and_the_container_keeps_running() {
    let Some(bin) = crictl_bin() else { return };
    let mut env = Env::new().await;
    let crictl = Crictl::new(bin, &env);
    let c = reader(&mut env, "crictl-at-term", false).await;
    let port = stream_port(&mut env, &c).await;
    for transport in TRANSPORTS {
        let mut child = attached(&crictl, transport, &c, &format!("{transport}-term")).await;
        assert!(open_connections(port) > 0, "{transport}: no session seen");
        // crictl v1.32 swallows the first SIGTERM of an attach (its interrupt handler closes a
        // channel nothing watches while streaming) and exits on the second.
        sigterm(&child);
        let mut st = exited_within(&mut child, Duration::from_secs(1)).await;
        if st.is_none() {
            sigterm(&child);
            st = exited_within(&mut child, LIMIT).await;
        }
        assert!(st.is_some(), "{transport}: crictl survived SIGTERM");
        // huskd notices the connection is gone and ends the session (closing its side).
        let mut left = open_connections(port);
        for _ in 0..50 {
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = open_connections(port);
        }
        assert_eq!(
            left, 0,
            "{transport}: huskd kept the session of a dead client"
        );
        assert!(
            running(&mut env, &c).await,
            "{transport}: the container stopped"
        );
        // The container still answers a new attach, which ends with its stdin.
        let mut again = attached(&crictl, transport, &c, &format!("{transport}-again")).await;
        drop(again.stdin.take());
        let st = exited_within(&mut again, LIMIT).await;
        assert!(st.is_some_and(|s| s.success()), "{transport}: {st:?}");
    }
    assert!(running(&mut env, &c).await);
    env.teardown().await;
}
