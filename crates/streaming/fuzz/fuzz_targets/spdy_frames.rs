//! Fuzz target: arbitrary bytes as a client's SPDY/3.1 byte stream (arriving in chunks of a
//! size the first byte picks) through the frame decoder and its connection-long zlib header
//! stream, or (odd first byte) as one header block, raw and compressed. Every decoded frame
//! re-encodes and decodes back to itself.
#![no_main]

use bytes::BytesMut;
use husk_streaming::spdy::frame::{Decoder, Encoder, Frame, MAX_FRAME};
use husk_streaming::spdy::headers::{self, Decompressor};
use libfuzzer_sys::fuzz_target;

fn round_trip(frame: &Frame, enc: &mut Encoder, dec: &mut Decoder) {
    if matches!(frame, Frame::Unknown { .. }) {
        return;
    }
    let mut out = BytesMut::new();
    enc.encode(frame, &mut out)
        .expect("a decoded frame encodes");
    let back = dec
        .decode(&mut out)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is complete");
    assert_eq!(&back, frame, "frame changed across a round trip");
    assert!(out.is_empty(), "encoding left {} extra bytes", out.len());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        if let Ok(h) = headers::parse(stream) {
            assert_eq!(headers::parse(&headers::serialize(&h)).as_ref(), Ok(&h));
        }
        let _ = Decompressor::default().decompress(stream);
        return;
    }
    let chunk = usize::from(mode >> 1).max(1);
    let max_frame = if mode & 0x80 == 0 { MAX_FRAME } else { 1024 };
    let mut dec = Decoder::new(max_frame);
    let (mut enc, mut check) = (Encoder::new().expect("encoder"), Decoder::new(MAX_FRAME));
    let mut buf = BytesMut::new();
    for part in stream.chunks(chunk) {
        buf.extend_from_slice(part);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => round_trip(&frame, &mut enc, &mut check),
                Ok(None) => break,
                // A framing error ends the connection (GOAWAY).
                Err(e) => return assert!(!e.to_string().is_empty()),
            }
        }
    }
});
