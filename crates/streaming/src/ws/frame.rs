//! RFC 6455 framing: frame encoding/decoding and message reassembly, free of I/O (and fuzzable).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Control frames carry at most this many payload bytes.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Close codes used by the server.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message was not UTF-8 (or a payload was otherwise inconsistent).
    pub const INVALID_DATA: u16 = 1007;
    /// A message exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continues a fragmented message.
    Continuation,
    /// A UTF-8 text message (or its first fragment).
    Text,
    /// A binary message (or its first fragment).
    Binary,
    /// Closes the connection.
    Close,
    /// Asks for a pong.
    Ping,
    /// Answers a ping.
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xa => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xa,
        }
    }

    /// Close, ping and pong.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// One decoded (unmasked) frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The final fragment of its message.
    pub fin: bool,
    /// What it carries.
    pub opcode: Opcode,
    /// The payload, unmasked.
    pub payload: Bytes,
}

/// A violation of RFC 6455 by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV1-3 set without a negotiated extension.
    #[error("reserved bits set in a websocket frame")]
    ReservedBits,
    /// An opcode RFC 6455 does not define.
    #[error("unknown websocket opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented websocket control frame")]
    FragmentedControl,
    /// A control frame over 125 bytes.
    #[error("websocket control frame of {0} bytes")]
    ControlTooLong(u64),
    /// A client frame without a mask (or a server frame with one).
    #[error("websocket frame masking is wrong for its direction")]
    BadMask,
    /// A frame or message over the limit.
    #[error("websocket message of {0} bytes exceeds the limit of {1}")]
    TooLarge(u64, usize),
    /// A continuation without a message to continue, or a new message inside a fragmented one.
    #[error("websocket fragments out of order")]
    BadFragment,
    /// A text message that is not UTF-8.
    #[error("websocket text message is not utf-8")]
    InvalidUtf8,
    /// A close frame whose payload is one byte or carries an invalid code or reason.
    #[error("invalid websocket close frame")]
    BadClose,
}

impl FrameError {
    /// The close code answering this error.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::TooLarge(..) => close_code::TOO_BIG,
            Self::InvalidUtf8 => close_code::INVALID_DATA,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Appends a frame to `out`, masking the payload with `mask` when given (clients must).
pub fn encode(
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    encode_parts(fin, opcode, &[payload], mask, out);
}

/// Like [`encode`], with the payload given in consecutive parts.
pub fn encode_parts(
    fin: bool,
    opcode: Opcode,
    parts: &[&[u8]],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.reserve(len + 14);
    out.put_u8(if fin { 0x80 } else { 0 } | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        n @ 0..=125 => out.put_u8(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n as u64);
        }
    }
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let start = out.len();
    for part in parts {
        out.extend_from_slice(part);
    }
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key);
    }
}

/// XORs `data` with the repeating `key` (masking and unmasking are the same).
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Which side decodes: a server requires masked frames, a client refuses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decoding a client's frames.
    Server,
    /// Decoding a server's frames.
    Client,
}

/// Decodes frames from a byte buffer.
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    max_payload: usize,
}

impl Decoder {
    /// A decoder for `role` refusing frames over `max_payload` bytes.
    pub fn new(role: Role, max_payload: usize) -> Self {
        Self { role, max_payload }
    }

    /// Takes one complete frame off the front of `buf`, or `None` until more bytes arrive.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err(FrameError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = Opcode::from_bits(b0 & 0x0f).ok_or(FrameError::UnknownOpcode(b0 & 0x0f))?;
        let masked = b1 & 0x80 != 0;
        if masked != (self.role == Role::Server) {
            return Err(FrameError::BadMask);
        }
        let (len, mut header) = match b1 & 0x7f {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::FragmentedControl);
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(FrameError::ControlTooLong(len));
            }
        }
        if len > self.max_payload as u64 {
            return Err(FrameError::TooLarge(len, self.max_payload));
        }
        let len = len as usize;
        let key = if masked {
            if buf.len() < header + 4 {
                return Ok(None);
            }
            let key = [
                buf[header],
                buf[header + 1],
                buf[header + 2],
                buf[header + 3],
            ];
            header += 4;
            Some(key)
        } else {
            None
        };
        if buf.len() < header + len {
            buf.reserve(header + len - buf.len());
            return Ok(None);
        }
        buf.advance(header);
        let mut payload = buf.split_to(len);
        if let Some(key) = key {
            apply_mask(&mut payload, key);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            payload: payload.freeze(),
        }))
    }
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A close, with its code and reason when given.
    Close(Option<(u16, String)>),
    /// A ping and its payload.
    Ping(Bytes),
    /// A pong and its payload.
    Pong(Bytes),
}

/// Reassembles fragmented messages.
#[derive(Debug)]
pub struct Assembler {
    max_message: usize,
    partial: Option<(Opcode, BytesMut)>,
}

impl Assembler {
    /// An assembler refusing messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: None,
        }
    }

    /// Adds a frame, returning the message it completes.
    pub fn push(&mut self, frame: Frame) -> Result<Option<Message>, FrameError> {
        match frame.opcode {
            Opcode::Ping => Ok(Some(Message::Ping(frame.payload))),
            Opcode::Pong => Ok(Some(Message::Pong(frame.payload))),
            Opcode::Close => parse_close(&frame.payload).map(|c| Some(Message::Close(c))),
            Opcode::Text | Opcode::Binary if self.partial.is_some() => Err(FrameError::BadFragment),
            Opcode::Text | Opcode::Binary if frame.fin => {
                finish(frame.opcode, frame.payload).map(Some)
            }
            Opcode::Text | Opcode::Binary => {
                self.check(frame.payload.len())?;
                self.partial = Some((frame.opcode, BytesMut::from(&frame.payload[..])));
                Ok(None)
            }
            Opcode::Continuation => {
                let (opcode, mut data) = self.partial.take().ok_or(FrameError::BadFragment)?;
                self.check(data.len() + frame.payload.len())?;
                data.extend_from_slice(&frame.payload);
                if frame.fin {
                    finish(opcode, data.freeze()).map(Some)
                } else {
                    self.partial = Some((opcode, data));
                    Ok(None)
                }
            }
        }
    }

    fn check(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_message {
            return Err(FrameError::TooLarge(len as u64, self.max_message));
        }
        Ok(())
    }
}

fn finish(opcode: Opcode, data: Bytes) -> Result<Message, FrameError> {
    if opcode == Opcode::Text {
        std::str::from_utf8(&data).map_err(|_| FrameError::InvalidUtf8)?;
        Ok(Message::Text(data))
    } else {
        Ok(Message::Binary(data))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            let reason = std::str::from_utf8(reason).map_err(|_| FrameError::BadClose)?;
            if !valid {
                return Err(FrameError::BadClose);
            }
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// The payload of a close frame with `code` and `reason` (cut to fit a control frame).
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&reason.as_bytes()[..end]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(len: usize, mask: Option<[u8; 4]>, role: Role) {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut buf = BytesMut::new();
        encode(true, Opcode::Binary, &payload, mask, &mut buf);
        let whole = buf.clone();
        let dec = Decoder::new(role, 1 << 20);
        // Byte by byte: nothing until complete.
        let mut partial = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            partial.put_u8(*b);
            let got = dec.decode(&mut partial).unwrap();
            if i + 1 < whole.len() {
                assert!(got.is_none(), "frame decoded early at {i}");
            } else {
                let f = got.unwrap();
                assert!(f.fin);
                assert_eq!(f.opcode, Opcode::Binary);
                assert_eq!(&f.payload[..], &payload[..]);
            }
        }
        assert!(partial.is_empty());
    }

    #[test]
    fn lengths_and_masks_roundtrip() {
        for len in [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000] {
            roundtrip(len, Some([1, 2, 3, 0xff]), Role::Server);
            roundtrip(len, None, Role::Client);
        }
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 5.7: a masked "Hello".
        let mut buf = BytesMut::from(
            &[
                0x81u8, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ][..],
        );
        let f = Decoder::new(Role::Server, 100)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(f.opcode, Opcode::Text);
        assert_eq!(&f.payload[..], b"Hello");
    }

    #[test]
    fn violations_are_errors() {
        let dec = Decoder::new(Role::Server, 1000);
        let err = |bytes: &[u8]| dec.decode(&mut BytesMut::from(bytes)).unwrap_err();
        assert_eq!(err(&[0x81, 0x05, b'h']), FrameError::BadMask);
        assert_eq!(err(&[0xc1, 0x80, 0, 0, 0, 0]), FrameError::ReservedBits);
        assert_eq!(err(&[0x83, 0x80, 0, 0, 0, 0]), FrameError::UnknownOpcode(3));
        assert_eq!(
            err(&[0x09, 0x80, 0, 0, 0, 0]),
            FrameError::FragmentedControl
        );
        assert_eq!(err(&[0x89, 0xfe, 0, 126]), FrameError::ControlTooLong(126));
        assert_eq!(
            err(&[0x82, 0xfe, 0x10, 0]),
            FrameError::TooLarge(4096, 1000)
        );
        assert_eq!(
            err(&[0x82, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]),
            FrameError::TooLarge(0xff00_0000_0000_0000, 1000)
        );
    }

    fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Frame {
        Frame {
            fin,
            opcode,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn fragments_reassemble_around_control_frames() {
        let mut a = Assembler::new(10);
        assert_eq!(a.push(frame(false, Opcode::Text, b"ab")).unwrap(), None);
        assert_eq!(
            a.push(frame(true, Opcode::Ping, b"p")).unwrap(),
            Some(Message::Ping(Bytes::from_static(b"p")))
        );
        assert_eq!(
            a.push(frame(false, Opcode::Continuation, b"cd")).unwrap(),
            None
        );
        assert_eq!(
            a.push(frame(true, Opcode::Continuation, b"e")).unwrap(),
            Some(Message::Text(Bytes::from_static(b"abcde")))
        );
        assert_eq!(
            a.push(frame(true, Opcode::Continuation, b"x")),
            Err(FrameError::BadFragment)
        );
        assert_eq!(
            a.push(frame(false, Opcode::Binary, b"12345")).unwrap(),
            None
        );
        assert_eq!(
            a.push(frame(true, Opcode::Binary, b"x")),
            Err(FrameError::BadFragment)
        );
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(frame(false, Opcode::Binary, b"123456")).unwrap(),
            None
        );
        assert_eq!(
            a.push(frame(true, Opcode::Continuation, b"123456")),
            Err(FrameError::TooLarge(12, 10))
        );
        assert_eq!(
            a.push(frame(true, Opcode::Text, &[0xff])),
            Err(FrameError::InvalidUtf8)
        );
    }

    #[test]
    fn close_frames() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(frame(true, Opcode::Close, b"")).unwrap(),
            Some(Message::Close(None))
        );
        assert_eq!(
            a.push(frame(true, Opcode::Close, &close_payload(1000, "bye")))
                .unwrap(),
            Some(Message::Close(Some((1000, "bye".into()))))
        );
        assert_eq!(
            a.push(frame(true, Opcode::Close, &[3])),
            Err(FrameError::BadClose)
        );
        assert_eq!(
            a.push(frame(true, Opcode::Close, &[0, 1])),
            Err(FrameError::BadClose)
        );
        assert_eq!(close_payload(1000, &"é".repeat(100)).len(), 2 + 122);
    }
}
