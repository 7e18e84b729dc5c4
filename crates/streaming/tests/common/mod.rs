//! Test helpers: a fake backend, an echo server and small WebSocket/HTTP clients.
#![allow(dead_code, clippy::unwrap_used)]

pub mod spdy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use husk_streaming::ws::frame::{self, Decoder, Frame, Opcode, Role};
use husk_streaming::{
    AttachRequest, BackendError, Config, ExecRequest, ExitStatus, PortStream, Server,
    StreamBackend, StreamIo, TerminalSize,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// What the fake backend saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub resizes: Vec<TerminalSize>,
    pub cancelled: usize,
    pub execs: Vec<ExecRequest>,
    pub forwards: Vec<(String, u16)>,
}

/// A backend whose commands are test behaviours:
/// `echo` copies stdin to stdout; `exit N` writes "out"/"err" and exits N; `fail` errors;
/// `resize` records resizes until stdin ends; `hang` waits for cancellation; `panic` panics.
/// Attach echoes stdin to stdout. Port-forward connects to 127.0.0.1:port.
#[derive(Clone, Default)]
pub struct Fake {
    pub seen: Arc<Mutex<Seen>>,
}

async fn echo(io: &mut StreamIo) {
    if let (Some(stdin), Some(stdout)) = (io.stdin.as_mut(), io.stdout.as_mut()) {
        let _ = tokio::io::copy(stdin, stdout).await;
        let _ = stdout.shutdown().await;
    }
}

#[async_trait]
impl StreamBackend for Fake {
    async fn exec(&self, req: ExecRequest, mut io: StreamIo) -> Result<ExitStatus, BackendError> {
        self.seen.lock().unwrap().execs.push(req.clone());
        match req.cmd[0].as_str() {
            "echo" => {
                echo(&mut io).await;
                Ok(ExitStatus::new(0))
            }
            "exit" => {
                if let Some(out) = io.stdout.as_mut() {
                    out.write_all(b"out").await.unwrap();
                }
                if let Some(err) = io.stderr.as_mut() {
                    err.write_all(b"err").await.unwrap();
                }
                Ok(ExitStatus::new(req.cmd[1].parse().unwrap()))
            }
            "fail" => Err(BackendError::new("no such container")),
            "resize" => {
                let mut rx = io.resize.take().expect("tty sessions get resizes");
                let mut stdin = io.stdin.take().unwrap();
                let mut sink = Vec::new();
                let mut got = Vec::new();
                let mut stdin_done = false;
                loop {
                    tokio::select! {
                        r = stdin.read_buf(&mut sink), if !stdin_done => {
                            if r.unwrap_or(0) == 0 { stdin_done = true; }
                        }
                        s = rx.recv() => match s {
                            Some(s) => got.push(s),
                            None => break,
                        },
                        _ = tokio::time::sleep(Duration::from_millis(200)), if stdin_done => break,
                    }
                }
                let text = got
                    .iter()
                    .map(|s| format!("{}x{}", s.width, s.height))
                    .collect::<Vec<_>>();
                io.stdout
                    .as_mut()
                    .unwrap()
                    .write_all(text.join(",").as_bytes())
                    .await
                    .unwrap();
                self.seen.lock().unwrap().resizes.extend(got);
                Ok(ExitStatus::new(0))
            }
            "hang" => {
                io.cancel.cancelled().await;
                self.seen.lock().unwrap().cancelled += 1;
                Ok(ExitStatus::new(0))
            }
            "panic" => panic!("backend bug"),
            other => Err(BackendError::new(format!("unknown test command {other}"))),
        }
    }

    async fn attach(
        &self,
        _req: AttachRequest,
        mut io: StreamIo,
    ) -> Result<ExitStatus, BackendError> {
        echo(&mut io).await;
        Ok(ExitStatus::new(0))
    }

    async fn port_forward(
        &self,
        pod_id: &str,
        port: u16,
        mut stream: PortStream,
    ) -> Result<(), BackendError> {
        self.seen
            .lock()
            .unwrap()
            .forwards
            .push((pod_id.to_owned(), port));
        let mut tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| BackendError::new(format!("dial {port}: {e}")))?;
        tokio::io::copy_bidirectional(&mut stream, &mut tcp)
            .await
            .map_err(|e| BackendError::new(format!("copy: {e}")))?;
        Ok(())
    }
}

/// A started server with the fake backend.
pub async fn start(config: Config) -> (Server, Fake) {
    let fake = Fake::default();
    let server = Server::new(config, fake.clone()).unwrap();
    let s = server.clone();
    tokio::spawn(async move { s.serve().await });
    (server, fake)
}

/// A TCP echo server on loopback; returns its port.
pub async fn echo_server() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn exec_req(cmd: &[&str], stdin: bool, stdout: bool, stderr: bool, tty: bool) -> ExecRequest {
    ExecRequest {
        container_id: "c1".into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout,
        stderr,
    }
}

/// The status line and headers of an HTTP response, read up to the blank line.
pub async fn read_head(stream: &mut TcpStream) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Sends a raw HTTP request to `url`'s host with `headers`; returns the connection.
pub async fn request(url: &url::Url, method: &str, headers: &[(&str, &str)]) -> TcpStream {
    let addr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {}\r\n",
        url.path(),
        url.host_str().unwrap()
    );
    if let Some(q) = url.query() {
        req = format!(
            "{method} {}?{q} HTTP/1.1\r\nHost: {}\r\n",
            url.path(),
            url.host_str().unwrap()
        );
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

/// A minimal WebSocket client.
pub struct WsClient {
    pub rx: WsRx,
    pub tx: WsTx,
    pub protocol: Option<String>,
}

pub struct WsRx {
    rd: OwnedReadHalf,
    buf: BytesMut,
    dec: Decoder,
}

pub struct WsTx {
    wr: OwnedWriteHalf,
}

/// Opens a WebSocket to `url` offering `protocols`; `Err((status, head))` when refused.
pub async fn ws_connect(url: &url::Url, protocols: &[&str]) -> Result<WsClient, (u16, String)> {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let joined = protocols.join(", ");
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", key),
    ];
    if !protocols.is_empty() {
        headers.push(("Sec-WebSocket-Protocol", &joined));
    }
    let mut s = request(url, "GET", &headers).await;
    let (status, head) = read_head(&mut s).await;
    if status != 101 {
        return Err((status, head));
    }
    let lower = head.to_ascii_lowercase();
    let accept = husk_streaming::ws::accept_key(key).to_ascii_lowercase();
    assert!(
        lower.contains(&format!("sec-websocket-accept: {accept}")),
        "{head}"
    );
    let protocol = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("sec-websocket-protocol:")
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned());
    let (rd, wr) = s.into_split();
    Ok(WsClient {
        rx: WsRx {
            rd,
            buf: BytesMut::new(),
            dec: Decoder::new(Role::Client, 64 << 20),
        },
        tx: WsTx { wr },
        protocol,
    })
}

impl WsTx {
    pub async fn send_frame(&mut self, fin: bool, opcode: Opcode, payload: &[u8]) {
        let mut out = BytesMut::new();
        frame::encode(
            fin,
            opcode,
            payload,
            Some([0x12, 0x34, 0x56, 0x78]),
            &mut out,
        );
        self.wr.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    pub async fn channel(&mut self, channel: u8, data: &[u8]) {
        let mut payload = vec![channel];
        payload.extend_from_slice(data);
        self.send_frame(true, Opcode::Binary, &payload).await;
    }

    pub async fn close(&mut self) {
        self.send_frame(true, Opcode::Close, &frame::close_payload(1000, ""))
            .await;
    }
}

impl WsRx {
    /// The next frame, `None` at EOF.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            if self.rd.read_buf(&mut self.buf).await.unwrap_or(0) == 0 {
                return None;
            }
        }
    }

    /// Reads until the server's close frame (or EOF): data per channel, and the close code.
    pub async fn collect(&mut self) -> Collected {
        let mut c = Collected::default();
        while let Some(f) = tokio::time::timeout(Duration::from_secs(20), self.frame())
            .await
            .expect("server went quiet")
        {
            match f.opcode {
                Opcode::Binary => {
                    let ch = f.payload[0] as usize;
                    c.channels.resize(c.channels.len().max(ch + 1), Vec::new());
                    c.channels[ch].extend_from_slice(&f.payload[1..]);
                    c.frames.push(f.payload.clone());
                }
                Opcode::Text => c.frames.push(f.payload.clone()),
                Opcode::Close => {
                    c.close = Some(u16::from_be_bytes([f.payload[0], f.payload[1]]));
                    c.close_reason = String::from_utf8_lossy(&f.payload[2..]).into_owned();
                    break;
                }
                _ => {}
            }
        }
        c
    }
}

/// What a client received.
#[derive(Debug, Default)]
pub struct Collected {
    pub channels: Vec<Vec<u8>>,
    pub frames: Vec<Bytes>,
    pub close: Option<u16>,
    pub close_reason: String,
}

impl Collected {
    pub fn channel(&self, ch: usize) -> &[u8] {
        self.channels.get(ch).map(|v| &v[..]).unwrap_or(&[])
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_slice(self.channel(3)).unwrap()
    }
}
