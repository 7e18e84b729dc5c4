//! SPDY/3.1 framing: frame types and their encoding/decoding, free of I/O (and fuzzable).

use bytes::{BufMut, Bytes, BytesMut};

use super::headers::{Compressor, Decompressor, Headers};

/// The protocol version of every control frame.
pub const VERSION: u16 = 3;
/// The largest frame payload (24-bit length).
pub const MAX_FRAME: usize = (1 << 24) - 1;
/// FIN: the sender's last frame on the stream (data, SYN_STREAM, SYN_REPLY, HEADERS).
pub const FLAG_FIN: u8 = 0x01;
/// SYN_STREAM's UNIDIRECTIONAL flag.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes.
pub mod rst {
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// A frame for a stream that is not open.
    pub const INVALID_STREAM: u32 = 2;
    /// The stream was refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
    /// The sender failed.
    pub const INTERNAL_ERROR: u32 = 6;
}

/// GOAWAY status codes.
pub mod goaway {
    /// Normal session teardown.
    pub const OK: u32 = 0;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The sender failed.
    pub const INTERNAL_ERROR: u32 = 2;
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream (odd: client-initiated).
        stream_id: u32,
        /// The stream it is associated with (0: none).
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// FIN and/or UNIDIRECTIONAL.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The accepted stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// Reply headers.
        headers: Headers,
    },
    /// Aborts a stream.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Session settings: (flags, id, value) triples.
    Settings {
        /// Frame flags.
        flags: u8,
        /// The entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// A ping or its echo.
    Ping {
        /// Odd from clients, even from servers.
        id: u32,
    },
    /// The session is ending.
    GoAway {
        /// The last stream the sender accepted.
        last_good: u32,
        /// Why (see [`goaway`]).
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow-control credit.
    WindowUpdate {
        /// The stream (0: the session).
        stream_id: u32,
        /// Additional bytes the receiver accepts.
        delta: u32,
    },
    /// Stream data.
    Data {
        /// The stream.
        stream_id: u32,
        /// FIN.
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// A control frame of a type SPDY/3.1 does not define (ignored, as the spec requires).
    Unknown {
        /// Its type.
        frame_type: u16,
    },
}

/// A framing violation: the connection ends with a GOAWAY.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("unsupported spdy version {0}")]
    UnsupportedVersion(u16),
    /// A frame whose length does not fit its type.
    #[error("invalid spdy {0} frame")]
    InvalidFrame(&'static str),
    /// A frame over the size limit.
    #[error("spdy frame of {0} bytes exceeds the limit of {1}")]
    TooLarge(usize, usize),
    /// A malformed header block.
    #[error("invalid spdy header block: {0}")]
    InvalidHeaderBlock(&'static str),
    /// Header (de)compression failed.
    #[error("spdy header compression: {0}")]
    Compression(String),
    /// A stream frame naming stream 0.
    #[error("spdy stream id zero is disallowed")]
    ZeroStreamId,
}

fn word(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes frames, decompressing header blocks through the connection's zlib stream.
#[derive(Debug, Default)]
pub struct Decoder {
    headers: Decompressor,
    max_frame: usize,
}

impl Decoder {
    /// A decoder refusing frames over `max_frame` bytes of payload.
    pub fn new(max_frame: usize) -> Self {
        Self {
            headers: Decompressor::default(),
            max_frame: max_frame.min(MAX_FRAME),
        }
    }

    /// Takes one complete frame off the front of `buf`, or `None` until more bytes arrive.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (word(&buf[4..8]) & 0x00ff_ffff) as usize;
        if len > self.max_frame {
            return Err(SpdyError::TooLarge(len, self.max_frame));
        }
        if buf.len() < 8 + len {
            buf.reserve(8 + len - buf.len());
            return Ok(None);
        }
        let head = buf.split_to(8);
        let payload = buf.split_to(len).freeze();
        if head[0] & 0x80 == 0 {
            let stream_id = word(&head[0..4]) & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(SpdyError::ZeroStreamId);
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::UnsupportedVersion(version));
        }
        let frame_type = u16::from_be_bytes([head[2], head[3]]);
        self.control(frame_type, flags, &payload).map(Some)
    }

    fn control(&mut self, frame_type: u16, flags: u8, p: &[u8]) -> Result<Frame, SpdyError> {
        let need = |name, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(SpdyError::InvalidFrame(name))
            }
        };
        let stream = |name, id: u32| {
            if id == 0 {
                Err(SpdyError::ZeroStreamId)
            } else {
                need(name, true).map(|()| id)
            }
        };
        Ok(match frame_type {
            SYN_STREAM => {
                need("SYN_STREAM", p.len() >= 10)?;
                let stream_id = stream("SYN_STREAM", word(p) & 0x7fff_ffff)?;
                Frame::SynStream {
                    stream_id,
                    associated: word(&p[4..]) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.headers.decompress(&p[10..])?,
                }
            }
            SYN_REPLY => {
                need("SYN_REPLY", p.len() >= 4)?;
                Frame::SynReply {
                    stream_id: stream("SYN_REPLY", word(p) & 0x7fff_ffff)?,
                    flags,
                    headers: self.headers.decompress(&p[4..])?,
                }
            }
            HEADERS => {
                need("HEADERS", p.len() >= 4)?;
                Frame::Headers {
                    stream_id: stream("HEADERS", word(p) & 0x7fff_ffff)?,
                    flags,
                    headers: self.headers.decompress(&p[4..])?,
                }
            }
            RST_STREAM => {
                need("RST_STREAM", p.len() == 8)?;
                Frame::RstStream {
                    stream_id: stream("RST_STREAM", word(p) & 0x7fff_ffff)?,
                    status: word(&p[4..]),
                }
            }
            SETTINGS => {
                need("SETTINGS", p.len() >= 4)?;
                let n = word(p) as usize;
                need("SETTINGS", p.len() - 4 == n.saturating_mul(8))?;
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| (e[0], word(e) & 0x00ff_ffff, word(&e[4..])))
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need("PING", p.len() == 4)?;
                Frame::Ping { id: word(p) }
            }
            GOAWAY => {
                need("GOAWAY", p.len() == 8)?;
                Frame::GoAway {
                    last_good: word(p) & 0x7fff_ffff,
                    status: word(&p[4..]),
                }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", p.len() == 8)?;
                Frame::WindowUpdate {
                    stream_id: word(p) & 0x7fff_ffff,
                    delta: word(&p[4..]) & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        })
    }
}

/// Encodes frames, compressing header blocks through the connection's zlib stream.
#[derive(Debug)]
pub struct Encoder {
    headers: Compressor,
}

impl Encoder {
    /// A fresh encoder.
    pub fn new() -> Result<Self, SpdyError> {
        Ok(Self {
            headers: Compressor::new()?,
        })
    }

    /// Appends `frame` to `out`. Data larger than [`MAX_FRAME`] is an error.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME {
                    return Err(SpdyError::TooLarge(data.len(), MAX_FRAME));
                }
                out.put_u32(stream_id & 0x7fff_ffff);
                out.put_u32(u32::from(*flags) << 24 | data.len() as u32);
                out.extend_from_slice(data);
                Ok(())
            }
            Frame::SynStream {
                stream_id,
                associated,
                priority,
                flags,
                headers,
            } => {
                let block = self.headers.compress(headers)?;
                let mut p = Vec::with_capacity(10 + block.len());
                p.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&[(priority & 7) << 5, 0]);
                p.extend_from_slice(&block);
                control(SYN_STREAM, *flags, &p, out)
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let block = self.headers.compress(headers)?;
                let mut p = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&block);
                let t = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                control(t, *flags, &p, out)
            }
            Frame::RstStream { stream_id, status } => {
                control(RST_STREAM, 0, &pair(*stream_id & 0x7fff_ffff, *status), out)
            }
            Frame::Settings { flags, entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (f, id, value) in entries {
                    p.extend_from_slice(&(u32::from(*f) << 24 | (id & 0x00ff_ffff)).to_be_bytes());
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, *flags, &p, out)
            }
            Frame::Ping { id } => control(PING, 0, &id.to_be_bytes(), out),
            Frame::GoAway { last_good, status } => {
                control(GOAWAY, 0, &pair(*last_good & 0x7fff_ffff, *status), out)
            }
            Frame::WindowUpdate { stream_id, delta } => control(
                WINDOW_UPDATE,
                0,
                &pair(*stream_id & 0x7fff_ffff, *delta & 0x7fff_ffff),
                out,
            ),
            Frame::Unknown { frame_type } => control(*frame_type, 0, &[], out),
        }
    }
}

fn pair(a: u32, b: u32) -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&a.to_be_bytes());
    p[4..].copy_from_slice(&b.to_be_bytes());
    p
}

fn control(
    frame_type: u16,
    flags: u8,
    payload: &[u8],
    out: &mut BytesMut,
) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME {
        return Err(SpdyError::TooLarge(payload.len(), MAX_FRAME));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(frame_type);
    out.put_u32(u32::from(flags) << 24 | payload.len() as u32);
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_frame_roundtrips_byte_by_byte() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: h(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                flags: 0,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                flags: FLAG_FIN,
                headers: h(&[("a", "b")]),
            },
            Frame::RstStream {
                stream_id: 5,
                status: rst::CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good: 7,
                status: goaway::OK,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 32768,
            },
            Frame::Data {
                stream_id: 9,
                flags: FLAG_FIN,
                data: Bytes::from(vec![7u8; 70000]),
            },
            Frame::Data {
                stream_id: 9,
                flags: 0,
                data: Bytes::new(),
            },
            Frame::Unknown { frame_type: 10 },
        ];
        let mut enc = Encoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in &frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new(MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            if let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn violations_are_errors() {
        let dec = |bytes: &[u8]| Decoder::new(1024).decode(&mut BytesMut::from(bytes));
        assert_eq!(
            dec(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]),
            Err(SpdyError::UnsupportedVersion(2))
        );
        assert_eq!(
            dec(&[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 0]),
            Err(SpdyError::InvalidFrame("PING"))
        );
        assert_eq!(
            dec(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(SpdyError::ZeroStreamId)
        );
        assert_eq!(
            dec(&[0, 0, 0, 1, 0, 0, 8, 0]),
            Err(SpdyError::TooLarge(2048, 1024))
        );
        assert_eq!(dec(&[0, 0, 0, 0, 0, 0, 0, 0]), Err(SpdyError::ZeroStreamId));
        assert_eq!(
            dec(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1]),
            Err(SpdyError::InvalidFrame("SETTINGS"))
        );
        assert!(matches!(
            dec(&[
                0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2
            ]),
            Err(SpdyError::Compression(_))
        ));
        assert_eq!(dec(&[0x80, 3, 0, 1, 0, 0, 0]), Ok(None));
    }
}
