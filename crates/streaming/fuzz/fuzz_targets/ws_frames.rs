//! Fuzz target: arbitrary bytes as a WebSocket peer's byte stream (client frames, masked, or
//! server frames for the client side; arriving in chunks) through the frame decoder and the
//! message assembler. Every decoded frame re-encodes and decodes back to itself, and every
//! error has a close code.
#![no_main]

use bytes::BytesMut;
use husk_streaming::ws::frame::{self, Assembler, Decoder, Frame, Role};
use libfuzzer_sys::fuzz_target;

fn round_trip(f: &Frame, role: Role) {
    let mask = (role == Role::Server).then_some([0x37, 0xfa, 0x21, 0x3d]);
    let mut out = BytesMut::new();
    frame::encode(f.fin, f.opcode, &f.payload, mask, &mut out);
    let back = Decoder::new(role, usize::MAX)
        .decode(&mut out)
        .expect("an encoded frame decodes")
        .expect("an encoded frame is complete");
    assert_eq!(&back, f, "frame changed across a round trip");
    assert!(out.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let chunk = usize::from((mode >> 1) & 0x3f).max(1);
    let limit = if mode & 0x80 == 0 { 1 << 20 } else { 64 };
    let dec = Decoder::new(role, limit);
    let mut asm = Assembler::new(limit);
    let mut buf = BytesMut::new();
    for part in stream.chunks(chunk) {
        buf.extend_from_slice(part);
        loop {
            let res = dec.decode(&mut buf).and_then(|f| match f {
                Some(f) => {
                    round_trip(&f, role);
                    asm.push(f).map(Some)
                }
                None => Ok(None),
            });
            match res {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    let code = e.close_code();
                    assert!((1000..=4999).contains(&code));
                    let _ = frame::close_payload(code, &e.to_string());
                    return;
                }
            }
        }
    }
});
