//! A shim between an accepted unix-socket connection and tonic/h2 that makes h2 accept the
//! `:authority` gRPC C-core clients (Python `grpcio`, C++, Ruby) and grpc-java send over unix
//! sockets: the socket's path, raw (`/run/husk/husk.sock`) or %-encoded
//! (`%2Frun%2Fhusk%2Fhusk.sock`). h2 answers such a request with RST_STREAM PROTOCOL_ERROR
//! (hyperium/h2 PR 487, unmerged); containerd serves them, so we must too.
//!
//! Only the client → server bytes are looked at. After the 24-byte preface every frame is
//! passed on as it is, except header blocks (HEADERS + CONTINUATION), which are collected and
//! HPACK-decoded with a decoder that mirrors the client's dynamic table (h2's advertised
//! SETTINGS_HEADER_TABLE_SIZE: the default 4096, which huskd keeps). While every `:authority`
//! parses as an [`http::uri::Authority`] the blocks are forwarded byte for byte, so h2's own
//! decoder keeps mirroring the client's table. From the first block whose authority does not
//! parse on, every block is re-encoded without h2's dynamic table (static-table references and
//! literals without indexing only: h2's table stays as it was and is never referred to again)
//! with that authority replaced by `localhost`, and sent as one HEADERS frame (padding dropped,
//! priority kept) plus CONTINUATIONs, none larger than h2's default SETTINGS_MAX_FRAME_SIZE.
//!
//! DATA and every other frame cost nothing per byte: between header blocks the socket is read
//! straight into the caller's buffer and only frame headers are looked at; what follows a
//! HEADERS frame's start (or a frame header cut short) is taken back into our buffer. HPACK is
//! in [`hpack`]. Malformed input (bad preface, oversized or out-of-order frames, HPACK
//! errors) never panics: while h2's table still mirrors the client's, the bytes go on unchanged
//! for h2 to reject; after a rewrite, the connection is closed with an error. The server →
//! client direction is passed through untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::{Stream, StreamExt, wrappers::UnixListenerStream};
use tonic::transport::server::{Connected, UdsConnectInfo};

use hpack::{Decoder, encode_field};

mod hpack;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// h2's default SETTINGS_MAX_FRAME_SIZE, which huskd's server keeps: the largest frame we
/// collect and the largest we emit.
const MAX_FRAME: usize = 16_384;
/// h2's default SETTINGS_HEADER_TABLE_SIZE: the client's encoder table is at most this big.
const HEADER_TABLE_SIZE: usize = 4096;
/// The most bytes of one header block (all its frames) collected before giving up; h2 itself
/// allows a 16 KiB header list in at most 5 CONTINUATIONs.
const MAX_BLOCK: usize = 256 << 10;
/// Our input buffer (grown when a read into the caller's buffer has to be taken back): room
/// for one whole frame of the largest size, and more.
const IN_CAP: usize = 2 * (HEAD + MAX_FRAME);
/// What we read into our own buffer at least, when collecting a header block or a frame header
/// cut short.
const READ_AHEAD: usize = 4096;
/// What replaces an authority h2 would reject.
const LOCALHOST: &[u8] = b"localhost";

/// Why a connection was closed: its header blocks could no longer be forwarded as they came
/// (an earlier block was re-encoded, so h2's HPACK state differs from the client's).
#[derive(Debug, Clone, thiserror::Error)]
pub enum UdsAuthorityError {
    #[error("malformed HTTP/2 header block after an :authority rewrite: {0}")]
    Malformed(&'static str),
}

/// An accepted connection whose client → server bytes get `:authority` fixed for h2.
pub struct UdsAuthorityStream<S = UnixStream> {
    inner: S,
    rx: Rewriter,
}

impl<S> UdsAuthorityStream<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            rx: Rewriter::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The listener's connections, each wrapped; for `serve_with_incoming_shutdown`.
pub fn incoming(
    listener: UnixListener,
) -> impl Stream<Item = io::Result<UdsAuthorityStream<UnixStream>>> {
    UnixListenerStream::new(listener).map(|r| r.map(UdsAuthorityStream::new))
}

impl Connected for UdsAuthorityStream<UnixStream> {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Preface,
    Frames,
    /// Everything from here on goes through unchanged.
    Passthrough,
    Failed(&'static str),
}

/// What a parsing step needs.
enum Step {
    Progress,
    /// This many buffered bytes (from `start`) are needed to go on.
    NeedMore(usize),
}

#[derive(Debug, Clone, Copy)]
struct FrameHead {
    len: usize,
    ty: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(b: &[u8]) -> FrameHead {
        FrameHead {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            ty: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        let len = u32::try_from(self.len).unwrap_or(0).to_be_bytes();
        out.extend_from_slice(&len[1..]);
        out.extend_from_slice(&[self.ty, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

/// The client → server state machine; no I/O of its own.
struct Rewriter {
    mode: Mode,
    /// Bytes read and not yet consumed: `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes ready for the caller: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes of the current frame still to pass through as they are.
    forward: usize,
    /// The stream id of the header block being collected, if any; its frames are in `raw`.
    block: Option<u32>,
    raw: Vec<u8>,
    fragment: Vec<u8>,
    enc: Vec<u8>,
    decoder: Decoder,
    /// Blocks are re-encoded (an authority has been rewritten on this connection).
    rewriting: bool,
    eof: bool,
}

impl Rewriter {
    fn new() -> Self {
        Self {
            mode: Mode::Preface,
            buf: vec![0; IN_CAP],
            start: 0,
            end: 0,
            out: Vec::new(),
            out_pos: 0,
            forward: 0,
            block: None,
            raw: Vec::new(),
            fragment: Vec::new(),
            enc: Vec::new(),
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            rewriting: false,
            eof: false,
        }
    }

    /// Passes over the frames at the start of `data` that need no work (all but HEADERS),
    /// returning how many bytes may go to h2 as they are.
    fn scan(&mut self, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let k = self.forward.min(data.len() - pos);
            pos += k;
            self.forward -= k;
            let rest = &data[pos..];
            if rest.len() < HEAD {
                return pos;
            }
            let h = FrameHead::parse(rest);
            if h.ty == HEADERS {
                return pos;
            }
            self.forward = HEAD + h.len;
        }
    }

    /// Moves the unconsumed input to the front when `need` bytes would not fit after it.
    fn make_room(&mut self, need: usize) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.start + need > self.buf.len() || self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
    }

    /// Puts bytes read into the caller's buffer back in front of what we will parse.
    fn take_back(&mut self, tail: &[u8]) {
        self.make_room(tail.len());
        if self.end + tail.len() > self.buf.len() {
            self.buf.resize(self.end + tail.len(), 0);
        }
        self.buf[self.end..self.end + tail.len()].copy_from_slice(tail);
        self.end += tail.len();
    }

    /// Consumes buffered input; only called with `out` drained and nothing to forward.
    fn step(&mut self) -> Step {
        let avail = &self.buf[self.start..self.end];
        match self.mode {
            Mode::Preface => {
                let n = avail.len().min(PREFACE.len());
                if avail[..n] != PREFACE[..n] {
                    self.mode = Mode::Passthrough;
                } else if n < PREFACE.len() {
                    return Step::NeedMore(PREFACE.len());
                } else {
                    self.forward = PREFACE.len();
                    self.mode = Mode::Frames;
                }
                Step::Progress
            }
            Mode::Frames => self.frame(),
            Mode::Passthrough | Mode::Failed(_) => Step::Progress,
        }
    }

    fn frame(&mut self) -> Step {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < HEAD {
            return Step::NeedMore(HEAD);
        }
        let h = FrameHead::parse(avail);
        match self.block {
            None if h.ty != HEADERS => {
                // Everything else, a stray CONTINUATION too, is h2's business.
                self.forward = HEAD + h.len;
                return Step::Progress;
            }
            None => self.raw.clear(),
            Some(stream) if h.ty != CONTINUATION || h.stream != stream => {
                return self.give_up("header block interrupted");
            }
            Some(_) => {}
        }
        if h.len > MAX_FRAME {
            return self.give_up("header frame larger than SETTINGS_MAX_FRAME_SIZE");
        }
        if self.raw.len() + HEAD + h.len > MAX_BLOCK {
            return self.give_up("header block too large");
        }
        if avail.len() < HEAD + h.len {
            return Step::NeedMore(HEAD + h.len);
        }
        self.raw.extend_from_slice(&avail[..HEAD + h.len]);
        self.start += HEAD + h.len;
        if h.flags & END_HEADERS == 0 {
            self.block = Some(h.stream);
        } else {
            self.block = None;
            self.finish_block();
        }
        Step::Progress
    }

    /// Stops looking: the collected frames and all that follows go to h2 unchanged, unless
    /// h2's HPACK state no longer mirrors the client's.
    fn give_up(&mut self, why: &'static str) -> Step {
        self.block = None;
        if self.rewriting {
            tracing::debug!("closing the connection: {why}");
            self.mode = Mode::Failed(why);
        } else {
            tracing::debug!("passing the connection through unchanged: {why}");
            std::mem::swap(&mut self.out, &mut self.raw);
            self.mode = Mode::Passthrough;
        }
        self.raw.clear();
        Step::Progress
    }

    /// Decodes the collected block and forwards it, as it came or re-encoded.
    fn finish_block(&mut self) {
        self.fragment.clear();
        let mut first: Option<(FrameHead, Option<[u8; 5]>)> = None;
        let mut rest = &self.raw[..];
        while rest.len() >= HEAD {
            let h = FrameHead::parse(rest);
            let Some(payload) = rest.get(HEAD..HEAD + h.len) else {
                break;
            };
            rest = &rest[HEAD + h.len..];
            if h.ty == CONTINUATION {
                self.fragment.extend_from_slice(payload);
                continue;
            }
            let Some((frag, prio)) = headers_payload(h.flags, payload) else {
                self.give_up("bad padding or priority in HEADERS");
                return;
            };
            self.fragment.extend_from_slice(frag);
            first = Some((h, prio));
        }
        let Some((head, prio)) = first else {
            self.give_up("header block without HEADERS");
            return;
        };

        self.enc.clear();
        let mut bad: Option<Vec<u8>> = None;
        let enc = &mut self.enc;
        let res = self.decoder.decode(&self.fragment, |name, value| {
            if name == b":authority" && http::uri::Authority::try_from(value).is_err() {
                bad.get_or_insert_with(|| value.to_vec());
                encode_field(enc, name, LOCALHOST);
            } else {
                encode_field(enc, name, value);
            }
        });
        if let Err(e) = res {
            tracing::debug!(error = %e, "HPACK decoding error");
            self.give_up("HPACK decoding error");
            return;
        }
        if let Some(a) = bad
            && !self.rewriting
        {
            tracing::debug!(
                authority = %String::from_utf8_lossy(&a),
                "rewriting an unparseable :authority to localhost on this connection"
            );
            self.rewriting = true;
        }
        if !self.rewriting {
            std::mem::swap(&mut self.out, &mut self.raw);
            self.raw.clear();
            return;
        }
        emit_block(&mut self.out, head, prio, &self.enc);
    }
}

/// A HEADERS payload's header block fragment and priority (padding dropped).
fn headers_payload(flags: u8, payload: &[u8]) -> Option<(&[u8], Option<[u8; 5]>)> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, r) = p.split_first()?;
        pad = usize::from(n);
        p = r;
    }
    let mut prio = None;
    if flags & PRIORITY != 0 {
        let (pr, r) = p.split_first_chunk::<5>()?;
        prio = Some(*pr);
        p = r;
    }
    let keep = p.len().checked_sub(pad)?;
    Some((&p[..keep], prio))
}

/// `enc` as one HEADERS frame and as many CONTINUATIONs as needed, none over [`MAX_FRAME`].
fn emit_block(out: &mut Vec<u8>, head: FrameHead, prio: Option<[u8; 5]>, enc: &[u8]) {
    let prio_len = if prio.is_some() { 5 } else { 0 };
    let n = enc.len().min(MAX_FRAME - prio_len);
    let (chunk, mut rest) = enc.split_at(n);
    let mut flags = head.flags & END_STREAM;
    if prio.is_some() {
        flags |= PRIORITY;
    }
    if rest.is_empty() {
        flags |= END_HEADERS;
    }
    FrameHead {
        len: prio_len + n,
        ty: HEADERS,
        flags,
        stream: head.stream,
    }
    .write(out);
    if let Some(p) = prio {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(chunk);
    while !rest.is_empty() {
        let (chunk, r) = rest.split_at(rest.len().min(MAX_FRAME));
        rest = r;
        FrameHead {
            len: chunk.len(),
            ty: CONTINUATION,
            flags: if rest.is_empty() { END_HEADERS } else { 0 },
            stream: head.stream,
        }
        .write(out);
        out.extend_from_slice(chunk);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for UdsAuthorityStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = &mut this.rx;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if let Mode::Failed(why) = r.mode {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    UdsAuthorityError::Malformed(why),
                )));
            }
            if r.out_pos < r.out.len() {
                let n = (r.out.len() - r.out_pos).min(buf.remaining());
                buf.put_slice(&r.out[r.out_pos..r.out_pos + n]);
                r.out_pos += n;
                if r.out_pos == r.out.len() {
                    r.out.clear();
                    r.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let through = r.mode == Mode::Passthrough;
            if r.start < r.end && (r.forward > 0 || through) {
                let limit = if through { usize::MAX } else { r.forward };
                let n = (r.end - r.start).min(limit).min(buf.remaining());
                buf.put_slice(&r.buf[r.start..r.start + n]);
                r.start += n;
                if !through {
                    r.forward -= n;
                }
                return Poll::Ready(Ok(()));
            }
            if through {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let need = if r.start < r.end {
                match r.step() {
                    Step::Progress => continue,
                    Step::NeedMore(need) => need,
                }
            } else if r.mode == Mode::Preface || r.block.is_some() {
                HEAD
            } else {
                // Between header blocks: straight into the caller's buffer; a HEADERS frame
                // (or a frame header cut short) and what follows are taken back.
                let before = buf.filled().len();
                ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
                let new = &buf.filled()[before..];
                if new.is_empty() {
                    return Poll::Ready(Ok(()));
                }
                let keep = r.scan(new);
                if keep < new.len() {
                    r.take_back(&new[keep..]);
                    buf.set_filled(before + keep);
                }
                if keep == 0 {
                    continue;
                }
                return Poll::Ready(Ok(()));
            };
            if r.eof {
                // A truncated preface, frame or block: h2 gets what there is, then EOF.
                if r.block.take().is_some() && !r.rewriting {
                    std::mem::swap(&mut r.out, &mut r.raw);
                }
                r.raw.clear();
                r.mode = Mode::Passthrough;
                continue;
            }
            r.make_room(need);
            let want = need.saturating_sub(r.end - r.start).max(READ_AHEAD);
            let stop = (r.end + want).min(r.buf.len());
            let mut rb = ReadBuf::new(&mut r.buf[r.end..stop]);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            r.end += n;
            r.eof = n == 0;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for UdsAuthorityStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
