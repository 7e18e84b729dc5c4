//! Incremental parser for the attach frames a client sends (`[kind][u32 BE len][payload]`):
//! stdin bytes are handed out as they arrive, never buffered whole.

use husk_monitor::protocol::frame;

/// One thing a client asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameEvent<'a> {
    /// A piece of a stdin frame's payload.
    Stdin(&'a [u8]),
    /// A complete resize frame: (cols, rows).
    Resize(u16, u16),
    /// A close-stdin frame.
    CloseStdin,
}

/// A frame announced a payload over [`frame::MAX_PAYLOAD`].
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("attach frame of {len} bytes exceeds the limit")]
pub struct FrameTooLarge {
    /// The announced length.
    pub len: u32,
}

/// Parser state; small and `Copy`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameReader {
    header: [u8; frame::HEADER_LEN],
    header_len: usize,
    kind: u8,
    remaining: u32,
    small: [u8; 4],
    small_len: usize,
}

impl FrameReader {
    /// Consumes a prefix of `data`; returns how many bytes and what (if anything) it completed.
    pub fn next<'a>(
        &mut self,
        data: &'a [u8],
    ) -> (usize, Option<Result<FrameEvent<'a>, FrameTooLarge>>) {
        if self.header_len < frame::HEADER_LEN {
            let take = (frame::HEADER_LEN - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            if self.header_len < frame::HEADER_LEN {
                return (take, None);
            }
            let (kind, len) = frame::parse_header(self.header);
            if len > frame::MAX_PAYLOAD {
                return (take, Some(Err(FrameTooLarge { len })));
            }
            self.kind = kind;
            self.remaining = len;
            self.small_len = 0;
            if len == 0 {
                self.header_len = 0;
                return (take, self.complete().map(Ok));
            }
            return (take, None);
        }
        let take = (self.remaining as usize).min(data.len());
        let chunk = &data[..take];
        self.remaining -= take as u32;
        if self.kind == frame::STDIN {
            if self.remaining == 0 {
                self.header_len = 0;
            }
            return (take, Some(Ok(FrameEvent::Stdin(chunk))));
        }
        if self.kind == frame::RESIZE {
            let room = self.small.len() - self.small_len;
            let n = room.min(chunk.len());
            self.small[self.small_len..self.small_len + n].copy_from_slice(&chunk[..n]);
            self.small_len += n;
        }
        if self.remaining > 0 {
            return (take, None);
        }
        self.header_len = 0;
        (take, self.complete().map(Ok))
    }

    fn complete(&self) -> Option<FrameEvent<'static>> {
        match self.kind {
            frame::RESIZE if self.small_len == 4 => {
                let (cols, rows) = frame::parse_resize(self.small);
                Some(FrameEvent::Resize(cols, rows))
            }
            frame::CLOSE_STDIN => Some(FrameEvent::CloseStdin),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(data: &[u8], step: usize) -> Vec<String> {
        let mut r = FrameReader::default();
        let mut out: Vec<String> = Vec::new();
        for piece in data.chunks(step) {
            let mut off = 0;
            while off < piece.len() {
                let (used, ev) = r.next(&piece[off..]);
                off += used;
                match ev {
                    Some(Ok(FrameEvent::Stdin(d))) => match out.last_mut() {
                        Some(s) if s.starts_with("in:") => {
                            s.push_str(std::str::from_utf8(d).unwrap())
                        }
                        _ => out.push(format!("in:{}", std::str::from_utf8(d).unwrap())),
                    },
                    Some(Ok(FrameEvent::Resize(c, r))) => out.push(format!("resize:{c}x{r}")),
                    Some(Ok(FrameEvent::CloseStdin)) => out.push("close".into()),
                    Some(Err(e)) => out.push(format!("err:{}", e.len)),
                    None => {}
                }
            }
        }
        out
    }

    #[test]
    fn parses_frames_at_any_split() {
        let mut data = Vec::new();
        data.extend_from_slice(&frame::header(frame::STDIN, 5));
        data.extend_from_slice(b"hello");
        data.extend_from_slice(&frame::header(frame::RESIZE, 4));
        data.extend_from_slice(&frame::resize_payload(120, 40));
        data.extend_from_slice(&frame::header(9, 3)); // unknown kinds are skipped
        data.extend_from_slice(b"xyz");
        data.extend_from_slice(&frame::header(frame::STDIN, 0));
        data.extend_from_slice(&frame::header(frame::CLOSE_STDIN, 0));
        for step in [1, 2, 3, 7, 100] {
            assert_eq!(
                events(&data, step),
                ["in:hello", "resize:120x40", "close"],
                "step {step}"
            );
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let data = frame::header(frame::STDIN, frame::MAX_PAYLOAD + 1);
        assert_eq!(
            events(&data, 5),
            [format!("err:{}", frame::MAX_PAYLOAD + 1)]
        );
    }
}
