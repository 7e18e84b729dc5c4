//! A deliberately small WebSocket client for the streaming tests, written from RFC 6455 and
//! kubelet's channel protocol — independent of husk-streaming's own code.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug)]
pub struct Ws {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    pub protocol: String,
}

/// What one exec/attach session delivered.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The error channel's Status JSON.
    pub status: Option<serde_json::Value>,
}

impl Outcome {
    /// 0 for Success, the code of NonZeroExitCode, panics otherwise.
    pub fn exit_code(&self) -> i32 {
        let s = self.status.as_ref().expect("a status on the error channel");
        if s["status"] == "Success" {
            return 0;
        }
        assert_eq!(s["reason"], "NonZeroExitCode", "{s}");
        s["details"]["causes"][0]["message"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}

/// The HTTP status of a plain GET of `url` (used for bad tokens).
pub async fn http_status(url: &str) -> u16 {
    let u = url::Url::parse(url).unwrap();
    let mut s = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap()))
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            u.path()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

impl Ws {
    /// Opens `url` (http://…) offering `protocols`; Err(status line) when not upgraded.
    pub async fn connect(url: &str, protocols: &[&str]) -> Result<Ws, String> {
        let u = url::Url::parse(url).unwrap();
        let s = TcpStream::connect((u.host_str().unwrap(), u.port().unwrap()))
            .await
            .map_err(|e| e.to_string())?;
        let (r, mut w) = s.into_split();
        let path = match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        };
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: {}\r\n\r\n",
            u.host_str().unwrap(),
            protocols.join(", ")
        );
        w.write_all(req.as_bytes()).await.unwrap();
        let mut r = BufReader::new(r);
        let mut status = String::new();
        r.read_line(&mut status).await.unwrap();
        let mut protocol = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap() == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("sec-websocket-protocol")
            {
                protocol = v.trim().to_string();
            }
        }
        if !status.contains(" 101 ") {
            return Err(status.trim().to_string());
        }
        Ok(Ws { r, w, protocol })
    }

    /// Sends one binary frame: the channel byte, then `data`.
    pub async fn send(&mut self, channel: u8, data: &[u8]) {
        let mut payload = vec![channel];
        payload.extend_from_slice(data);
        self.frame(0x2, &payload).await;
    }

    async fn frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut f = vec![0x80 | opcode];
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let key = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        // A client gone away is not a test failure here; reads tell what happened.
        let _ = self.w.write_all(&f).await;
    }

    /// Sends a terminal size on the resize channel.
    pub async fn resize(&mut self, width: u16, height: u16) {
        let j = serde_json::json!({"Width": width, "Height": height}).to_string();
        self.send(4, j.as_bytes()).await;
    }

    /// v5: closes stdin.
    pub async fn close_stdin(&mut self) {
        self.send(255, &[0]).await;
    }

    /// The next non-empty data frame as (channel, bytes); None at close or EOF.
    pub async fn recv(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            let mut h = [0u8; 2];
            self.r.read_exact(&mut h).await.ok()?;
            let opcode = h[0] & 0x0f;
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.r.read_exact(&mut b).await.ok()?;
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.r.read_exact(&mut b).await.ok()?;
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.r.read_exact(&mut payload).await.ok()?;
            match opcode {
                0x8 => {
                    self.frame(0x8, &payload[..payload.len().min(2)]).await;
                    return None;
                }
                0x9 => self.frame(0xA, &payload).await,
                // The server opens each channel with an empty frame: skip those.
                0x1 | 0x2 if payload.len() > 1 => {
                    return Some((payload[0], payload[1..].to_vec()));
                }
                _ => {}
            }
        }
    }

    /// Reads until the server closes; stdout, stderr and the status.
    pub async fn finish(mut self, limit: Duration) -> Outcome {
        let mut out = Outcome::default();
        tokio::time::timeout(limit, async {
            while let Some((ch, data)) = self.recv().await {
                match ch {
                    1 => out.stdout.extend_from_slice(&data),
                    2 => out.stderr.extend_from_slice(&data),
                    3 if !data.is_empty() => out.status = serde_json::from_slice(&data).ok(),
                    _ => {}
                }
            }
        })
        .await
        .expect("the session ended in time");
        out
    }
}
