//! A minimal SPDY/3.1 client for the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use husk_streaming::spdy::frame::{Decoder, Encoder, FLAG_FIN, Frame};
use husk_streaming::spdy::headers::Headers;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{read_head, request};

pub struct SpdyClient {
    pub rx: SpdyRx,
    pub tx: SpdyTx,
    pub protocol: String,
}

pub struct SpdyRx {
    rd: OwnedReadHalf,
    dec: Decoder,
    buf: BytesMut,
}

pub struct SpdyTx {
    wr: OwnedWriteHalf,
    enc: Encoder,
    next_id: u32,
}

/// Upgrades to SPDY/3.1 at `url` offering `protocols`; `Err((status, head))` when refused.
pub async fn connect(url: &url::Url, protocols: &[&str]) -> Result<SpdyClient, (u16, String)> {
    let mut headers = vec![("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1")];
    for p in protocols {
        headers.push(("X-Stream-Protocol-Version", p));
    }
    let mut s = request(url, "POST", &headers).await;
    let (status, head) = read_head(&mut s).await;
    if status != 101 {
        return Err((status, head));
    }
    let protocol = head
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("x-stream-protocol-version:")
        })
        .map(|l| l.split_once(':').unwrap().1.trim().to_owned())
        .unwrap_or_default();
    let (rd, wr) = s.into_split();
    Ok(SpdyClient {
        rx: SpdyRx {
            rd,
            dec: Decoder::new(1 << 24),
            buf: BytesMut::new(),
        },
        tx: SpdyTx {
            wr,
            enc: Encoder::new().unwrap(),
            next_id: 1,
        },
        protocol,
    })
}

impl SpdyTx {
    pub async fn send(&mut self, frame: &Frame) {
        let mut out = BytesMut::new();
        self.enc.encode(frame, &mut out).unwrap();
        self.wr.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.wr.write_all(bytes).await.unwrap();
    }

    /// Opens a stream with `headers`, returning its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
        let stream_id = self.next_id;
        self.next_id += 2;
        let headers: Headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.send(&Frame::SynStream {
            stream_id,
            associated: 0,
            priority: 0,
            flags: 0,
            headers,
        })
        .await;
        stream_id
    }

    pub async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(&Frame::Data {
            stream_id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: Bytes::copy_from_slice(data),
        })
        .await;
    }
}

impl SpdyRx {
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

    /// Reads until GOAWAY (or EOF).
    pub async fn collect(&mut self) -> SpdyCollected {
        let mut c = SpdyCollected::default();
        while let Some(f) = tokio::time::timeout(Duration::from_secs(20), self.frame())
            .await
            .expect("server went quiet")
        {
            let bye = matches!(f, Frame::GoAway { .. });
            c.add(f);
            if bye {
                break;
            }
        }
        c
    }
}

/// What a client received.
#[derive(Debug, Default)]
pub struct SpdyCollected {
    pub data: BTreeMap<u32, Vec<u8>>,
    pub fins: BTreeSet<u32>,
    pub replies: BTreeSet<u32>,
    pub rsts: Vec<(u32, u32)>,
    pub pings: Vec<u32>,
    pub window_updates: Vec<(u32, u32)>,
    pub goaway: Option<(u32, u32)>,
}

impl SpdyCollected {
    pub fn add(&mut self, f: Frame) {
        match f {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                self.data
                    .entry(stream_id)
                    .or_default()
                    .extend_from_slice(&data);
                if flags & FLAG_FIN != 0 {
                    self.fins.insert(stream_id);
                }
            }
            Frame::SynReply { stream_id, .. } => {
                self.replies.insert(stream_id);
            }
            Frame::RstStream { stream_id, status } => self.rsts.push((stream_id, status)),
            Frame::Ping { id } => self.pings.push(id),
            Frame::WindowUpdate { stream_id, delta } => {
                self.window_updates.push((stream_id, delta))
            }
            Frame::GoAway { last_good, status } => self.goaway = Some((last_good, status)),
            _ => {}
        }
    }

    pub fn stream(&self, id: u32) -> &[u8] {
        self.data.get(&id).map(|v| &v[..]).unwrap_or(&[])
    }

    pub fn text(&self, id: u32) -> String {
        String::from_utf8_lossy(self.stream(id)).into_owned()
    }
}
