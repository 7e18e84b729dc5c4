//! SPDY/3 header blocks: the name/value encoding and its connection-long zlib streams.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use super::frame::SpdyError;

/// A decompressed header block larger than this is refused (zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Header names (lowercase) and values (several values joined by NUL), in wire order.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (case-insensitive).
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// Serializes a header block (uncompressed), lowercasing the names.
pub fn serialize(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SpdyError> {
        if self.0.len() < n {
            return Err(SpdyError::InvalidHeaderBlock("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn word(&mut self) -> Result<usize, SpdyError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn text(&mut self) -> Result<&'a str, SpdyError> {
        let len = self.word()?;
        std::str::from_utf8(self.take(len)?).map_err(|_| SpdyError::InvalidHeaderBlock("not utf-8"))
    }
}

/// Parses an uncompressed header block; names are lowercased, repeated names merged.
pub fn parse(block: &[u8]) -> Result<Headers, SpdyError> {
    let mut c = Cursor(block);
    let count = c.word()?;
    if count > block.len() / 8 {
        return Err(SpdyError::InvalidHeaderBlock("more pairs than bytes"));
    }
    let mut headers: Headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = c.text()?.to_ascii_lowercase();
        if name.is_empty() {
            return Err(SpdyError::InvalidHeaderBlock("empty header name"));
        }
        let value = c.text()?;
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => headers.push((name, value.to_owned())),
        }
    }
    if !c.0.is_empty() {
        return Err(SpdyError::InvalidHeaderBlock("trailing bytes"));
    }
    Ok(headers)
}

/// The sending side's zlib stream.
pub struct Compressor {
    z: Compress,
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

impl Compressor {
    /// A fresh stream primed with the SPDY dictionary.
    pub fn new() -> Result<Self, SpdyError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(DICTIONARY)
            .map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(Self { z })
    }

    /// Compresses `headers` as the next block of the stream.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = serialize(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            pos += (self.z.total_in() - before) as usize;
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct Decompressor {
    z: Decompress,
}

impl std::fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decompressor")
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }
}

impl Decompressor {
    /// Decompresses and parses the next header block of the stream.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::InvalidHeaderBlock("too large"));
                }
                out.reserve(out.capacity());
            }
            let (before, produced) = (self.z.total_in(), out.len());
            let res = self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            let consumed = (self.z.total_in() - before) as usize;
            pos += consumed;
            match res {
                Ok(Status::StreamEnd) => break,
                Ok(Status::Ok | Status::BufError) => {
                    if pos == input.len() && out.len() < out.capacity() {
                        break;
                    }
                    if consumed == 0 && out.len() == produced && out.len() < out.capacity() {
                        return Err(SpdyError::Compression("zlib stream stalled".into()));
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Compression(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Compression(e.to_string())),
            }
        }
        if out.len() > MAX_HEADER_BLOCK {
            return Err(SpdyError::InvalidHeaderBlock("too large"));
        }
        parse(&out)
    }
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
    fn blocks_roundtrip_through_one_stream() {
        let mut c = Compressor::new().unwrap();
        let mut d = Decompressor::default();
        let blocks = [
            h(&[("streamType", "error")]),
            h(&[]),
            h(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
            h(&[("x", &"y".repeat(100_000))]),
        ];
        for block in &blocks {
            let wire = c.compress(block).unwrap();
            let got = d.decompress(&wire).unwrap();
            let want: Headers = block
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect();
            assert_eq!(got, want);
        }
        assert_eq!(get(&blocks[0], "streamtype"), Some("error"));
    }

    #[test]
    fn repeated_names_merge_and_garbage_fails() {
        let raw = serialize(&h(&[("a", "1"), ("A", "2")]));
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed, h(&[("a", "1\u{0}2")]));
        assert_eq!(get(&parsed, "a"), Some("1"));
        assert!(parse(&[0, 0, 0, 1, 0, 0, 0, 9, b'a']).is_err());
        assert!(parse(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse(&[0, 0, 0, 0, 1]).is_err());
        let mut d = Decompressor::default();
        assert!(d.decompress(b"not zlib at all").is_err());
    }

    #[test]
    fn zlib_bombs_are_refused() {
        let mut c = Compressor::new().unwrap();
        let block = h(&[("x", &"y".repeat(MAX_HEADER_BLOCK * 2))]);
        let wire = c.compress(&block).unwrap();
        assert!(wire.len() < MAX_HEADER_BLOCK / 10);
        let mut d = Decompressor::default();
        assert!(matches!(
            d.decompress(&wire),
            Err(SpdyError::InvalidHeaderBlock("too large"))
        ));
    }
}
