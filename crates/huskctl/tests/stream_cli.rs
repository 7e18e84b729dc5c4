//! The built binary's streaming verbs (`exec -i/-t`, `attach`, `port-forward`) against an
//! in-process fake huskd whose Exec/Attach/PortForward hand out URLs of a real
//! `husk_streaming::Server` with a fake backend.
#![forbid(unsafe_code)]

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Reply, text};
use husk_streaming::{
    AttachRequest as StreamAttach, BackendError, ExecRequest as StreamExec, ExitStatus,
    PortForwardRequest as StreamPortForward, PortStream, StreamBackend, StreamIo,
};
use k8s_cri::v1::*;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

/// The streaming backend: `cat` echoes stdin, `exit N` writes "out"/"err" and exits N,
/// `raw` says "ready", reads stdin up to a `q` and reports it and the terminal size, exiting 3;
/// `fail` fails; attach echoes; port-forward dials 127.0.0.1:port.
struct Backend;

#[tonic::async_trait]
impl StreamBackend for Backend {
    async fn exec(&self, req: StreamExec, mut io: StreamIo) -> Result<ExitStatus, BackendError> {
        match req.cmd[0].as_str() {
            "cat" => {
                if let (Some(i), Some(o)) = (io.stdin.as_mut(), io.stdout.as_mut()) {
                    let _ = tokio::io::copy(i, o).await;
                }
                Ok(ExitStatus::new(0))
            }
            "exit" => {
                if let Some(o) = io.stdout.as_mut() {
                    let _ = o.write_all(b"out").await;
                }
                if let Some(e) = io.stderr.as_mut() {
                    let _ = e.write_all(b"err").await;
                }
                Ok(ExitStatus::new(req.cmd[1].parse().expect("exit code")))
            }
            "raw" => {
                let (Some(mut stdin), Some(mut out)) = (io.stdin.take(), io.stdout.take()) else {
                    return Err(BackendError::new("raw needs stdin and stdout"));
                };
                let _ = out.write_all(b"ready\n").await;
                let mut got = Vec::new();
                let mut b = [0u8; 1];
                while stdin.read(&mut b).await.unwrap_or(0) == 1 && b[0] != b'q' {
                    got.push(b[0]);
                }
                // The sizes sent so far, and any more within a moment.
                let mut sizes = Vec::new();
                if let Some(rx) = io.resize.as_mut() {
                    while let Ok(Some(s)) =
                        tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
                    {
                        sizes.push(format!("{}x{}", s.width, s.height));
                    }
                }
                let report = format!("got:{got:?} size:{}\n", sizes.join(","));
                let _ = out.write_all(report.as_bytes()).await;
                Ok(ExitStatus::new(3))
            }
            _ => Err(BackendError::new("no such container")),
        }
    }

    async fn attach(&self, _: StreamAttach, mut io: StreamIo) -> Result<ExitStatus, BackendError> {
        if let (Some(i), Some(o)) = (io.stdin.as_mut(), io.stdout.as_mut()) {
            let _ = tokio::io::copy(i, o).await;
        }
        Ok(ExitStatus::new(0))
    }

    async fn port_forward(
        &self,
        _pod: &str,
        port: u16,
        mut stream: PortStream,
    ) -> Result<(), BackendError> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| BackendError::new(format!("dial {port}: {e}")))?;
        let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        Ok(())
    }
}

#[derive(Default)]
struct State {
    execs: Vec<ExecRequest>,
    attaches: Vec<AttachRequest>,
    port_forwards: Vec<PortForwardRequest>,
}

#[derive(Clone)]
struct Fake {
    streaming: husk_streaming::Server,
    state: Arc<Mutex<State>>,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }
}

fn invalid(e: husk_streaming::Error) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl common::FakeRuntime for Fake {
    async fn exec(&self, r: Request<ExecRequest>) -> Reply<ExecResponse> {
        let r = r.into_inner();
        self.state().execs.push(r.clone());
        let url = self
            .streaming
            .get_exec(StreamExec {
                container_id: r.container_id,
                cmd: r.cmd,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(invalid)?;
        Ok(Response::new(ExecResponse {
            url: url.to_string(),
        }))
    }

    async fn attach(&self, r: Request<AttachRequest>) -> Reply<AttachResponse> {
        let r = r.into_inner();
        self.state().attaches.push(r.clone());
        let url = self
            .streaming
            .get_attach(StreamAttach {
                container_id: r.container_id,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(invalid)?;
        Ok(Response::new(AttachResponse {
            url: url.to_string(),
        }))
    }

    async fn port_forward(&self, r: Request<PortForwardRequest>) -> Reply<PortForwardResponse> {
        let r = r.into_inner();
        self.state().port_forwards.push(r.clone());
        if r.pod_sandbox_id != "pod1" {
            return Err(Status::not_found(format!(
                "pod sandbox {:?} not found",
                r.pod_sandbox_id
            )));
        }
        let ports = r
            .port
            .iter()
            .map(|p| u16::try_from(*p).map_err(|_| Status::invalid_argument("bad port")))
            .collect::<Result<Vec<_>, _>>()?;
        let url = self
            .streaming
            .get_port_forward(StreamPortForward {
                pod_id: r.pod_sandbox_id,
                ports,
            })
            .map_err(invalid)?;
        Ok(Response::new(PortForwardResponse {
            url: url.to_string(),
        }))
    }
}

type Daemon = common::Daemon<Fake>;

/// A fake huskd plus its streaming server, until dropped.
async fn start() -> Daemon {
    let streaming = husk_streaming::Server::new(husk_streaming::Config::default(), Backend)
        .expect("streaming server");
    let serving = streaming.clone();
    let streaming_task = tokio::spawn(async move {
        let _ = serving.serve().await;
    });
    let fake = Fake {
        streaming,
        state: Arc::default(),
    };
    let routes = Routes::new(common::runtime_service(fake.clone()));
    let mut d = Daemon::start(fake, routes);
    d.keep(streaming_task);
    d
}

#[tokio::test]
async fn exec_interactive_pipes_stdin_until_eof() {
    let d = start().await;
    let input = b"hello\nworld\n".repeat(10_000);
    let out = d
        .huskctl_with_input(&["exec", "-i", "c1", "cat"], &input)
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, input);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let r = d.fake.state().execs[0].clone();
    assert_eq!(r.container_id, "c1");
    assert_eq!(r.cmd, ["cat"]);
    assert!(r.stdin && r.stdout && r.stderr && !r.tty);
}

#[tokio::test]
async fn exec_passes_on_exit_code_and_streams() {
    let d = start().await;
    let out = d
        .huskctl_with_input(&["exec", "-i", "c1", "exit", "7"], b"")
        .await;
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out");
    assert_eq!(text(&out.stderr), "err");

    // -t without a terminal: a tty is still requested (no stderr), no raw mode.
    let out = d
        .huskctl_with_input(&["exec", "-t", "c1", "exit", "0"], b"")
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out");
    let r = d.fake.state().execs[1].clone();
    assert!(r.tty && !r.stdin && r.stdout && !r.stderr);

    let out = d
        .huskctl_with_input(&["exec", "-i", "c1", "fail"], b"")
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("huskctl: ") && err.contains("no such container"),
        "{err}"
    );
}

#[tokio::test]
async fn attach_streams_both_ways() {
    let d = start().await;
    let out = d.huskctl_with_input(&["attach", "-i", "c1"], b"ping").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ping");
    let r = d.fake.state().attaches[0].clone();
    assert_eq!(r.container_id, "c1");
    assert!(r.stdin && r.stdout && r.stderr && !r.tty);
}

/// A TCP echo server on loopback; returns its port.
async fn echo_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

async fn echo_through(port: u16, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect to the forwarded port");
    let (mut r, mut w) = s.split();
    let (_, got) = tokio::join!(
        async {
            w.write_all(payload).await.expect("write");
        },
        async {
            let mut got = vec![0u8; payload.len()];
            r.read_exact(&mut got).await.expect("read back");
            got
        }
    );
    got
}

#[tokio::test]
async fn port_forward_until_terminated() {
    let d = start().await;
    let echo = echo_server().await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = d
        .command(&[
            "port-forward",
            "pod1",
            &format!("0:{echo}"),
            &format!(":{closed}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut locals = Vec::new();
    for remote in [echo, closed] {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("no Forwarding line")
            .expect("read")
            .expect("stdout ended");
        let (from, to) = line
            .strip_prefix("Forwarding from 127.0.0.1:")
            .and_then(|l| l.split_once(" -> "))
            .unwrap_or_else(|| panic!("unexpected line {line:?}"));
        assert_eq!(to, remote.to_string());
        locals.push(from.parse::<u16>().expect("local port"));
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // Parallel connections, each with its own URL.
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (port, payload) = (locals[0], payload.clone());
        tasks.push(tokio::spawn(async move {
            echo_through(port, &payload).await == payload
        }));
    }
    for t in tasks {
        assert!(t.await.expect("task"), "echo corrupted");
    }

    // A failing forward closes its connection; the listener carries on.
    let mut s = TcpStream::connect(("127.0.0.1", locals[1]))
        .await
        .expect("connect");
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest))
        .await
        .expect("the failed forward was not closed")
        .expect("read");
    drop(s);
    assert_eq!(echo_through(locals[0], b"still here").await, b"still here");

    let pid = child.id().expect("pid");
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("kill");
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("port-forward did not stop")
        .expect("wait");
    assert!(out.status.success(), "{:?}", out.status);
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("error forwarding port {closed} to pod pod1")),
        "{err}"
    );
    let forwards = d.fake.state().port_forwards.clone();
    // One check up front, then one fresh URL per connection.
    assert_eq!(forwards.len(), 1 + 8 + 1 + 1, "{forwards:?}");
    assert!(forwards.iter().all(|f| f.port.len() == 1));
}

#[tokio::test]
async fn port_forward_to_an_unknown_pod_fails_at_once() {
    let d = start().await;
    let out = d
        .huskctl_with_input(&["port-forward", "nopod", "0:80"], b"")
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "huskctl: pod sandbox \"nopod\" not found\n"
    );
    assert!(out.stdout.is_empty());
}

/// `exec -it` on a real terminal (a pty from util-linux `script`): raw mode while the session
/// runs (keystrokes go through unbuffered and unechoed), the window size sent at start and on
/// SIGWINCH, and the terminal restored afterwards.
#[tokio::test]
async fn exec_tty_uses_raw_mode_and_restores_the_terminal() {
    // util-linux `script`: a skip note without it, a failure under HUSK_REQUIRE_SYSTEM=1.
    if !husk_test_support::require_system("script") {
        return;
    }
    let d = start().await;
    let line = format!(
        "stty cols 100 rows 30; {} -r {} exec -it c1 raw </dev/tty & echo pid=$!; wait $!; \
         echo exit=$?; stty -a",
        env!("CARGO_BIN_EXE_huskctl"),
        d.sock.display()
    );
    let mut child = tokio::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env_remove("HUSK_ENDPOINT")
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn script");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let wait_for =
        async |seen: &mut Vec<u8>, stdout: &mut tokio::process::ChildStdout, what: &str| {
            let mut buf = [0u8; 4096];
            while !text(seen).contains(what) {
                let n = stdout.read(&mut buf).await.expect("read");
                assert!(n > 0, "script ended before {what:?}: {}", text(seen));
                seen.extend_from_slice(&buf[..n]);
            }
        };
    tokio::time::timeout(
        Duration::from_secs(20),
        wait_for(&mut seen, &mut stdout, "ready"),
    )
    .await
    .expect("no ready");
    let pid = text(&seen)
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
        .expect("huskctl's pid");
    rustix::process::kill_process(pid, rustix::process::Signal::WINCH).expect("SIGWINCH");
    // No newline after the q: a cooked terminal would hold it back.
    stdin.write_all(b"ab\nq").await.expect("type");
    tokio::time::timeout(
        Duration::from_secs(20),
        wait_for(&mut seen, &mut stdout, "speed"),
    )
    .await
    .unwrap_or_else(|_| panic!("session did not end: {}", text(&seen)));
    drop(stdin);
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stdout.read_to_end(&mut rest)).await;
    seen.extend_from_slice(&rest);
    let out = text(&seen);
    assert!(out.contains("got:[97, 98, 10] size:100x30,100x30"), "{out}");
    let before = &out[..out.find("got:").expect("report")];
    assert!(!before.contains("ab"), "raw mode does not echo: {out}");
    assert!(out.contains("exit=3"), "{out}");
    let stty = &out[out.find("speed").expect("stty output")..];
    assert!(
        stty.contains(" icanon") && stty.contains(" echo ") && !stty.contains("-icanon"),
        "terminal not restored: {stty}"
    );
    let r = d.fake.state().execs[0].clone();
    assert!(r.tty && r.stdin && r.stdout && !r.stderr);
}
