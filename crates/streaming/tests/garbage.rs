//! The frame parsers never panic: random and mutated input only ever yields frames or errors.
#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use husk_streaming::spdy::frame as spdy;
use husk_streaming::ws::frame as ws;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn feed_ws(input: &[u8]) {
    let dec = ws::Decoder::new(ws::Role::Server, 1 << 16);
    let mut asm = ws::Assembler::new(1 << 16);
    let mut buf = BytesMut::from(input);
    while let Ok(Some(f)) = dec.decode(&mut buf) {
        if asm.push(f).is_err() {
            break;
        }
    }
}

fn feed_spdy(input: &[u8]) {
    let mut dec = spdy::Decoder::new(1 << 16);
    let mut buf = BytesMut::from(input);
    while let Ok(Some(_)) = dec.decode(&mut buf) {}
}

fn valid_spdy() -> Vec<u8> {
    let mut enc = spdy::Encoder::new().unwrap();
    let mut out = BytesMut::new();
    for f in [
        spdy::Frame::SynStream {
            stream_id: 1,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: vec![("streamtype".into(), "stdin".into())],
        },
        spdy::Frame::Data {
            stream_id: 1,
            flags: spdy::FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        },
        spdy::Frame::Ping { id: 1 },
        spdy::Frame::Settings {
            flags: 0,
            entries: vec![(0, 7, 100)],
        },
    ] {
        enc.encode(&f, &mut out).unwrap();
    }
    out.to_vec()
}

fn valid_ws() -> Vec<u8> {
    let mut out = BytesMut::new();
    let mask = Some([1, 2, 3, 4]);
    ws::encode(false, ws::Opcode::Binary, &[0, 1, 2], mask, &mut out);
    ws::encode(true, ws::Opcode::Ping, b"p", mask, &mut out);
    ws::encode(true, ws::Opcode::Continuation, &[3; 300], mask, &mut out);
    ws::encode(true, ws::Opcode::Text, b"0aGk=", mask, &mut out);
    ws::encode(
        true,
        ws::Opcode::Close,
        &ws::close_payload(1000, "x"),
        mask,
        &mut out,
    );
    out.to_vec()
}

#[test]
fn random_bytes() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..5000 {
        let input = rng.bytes(i % 300);
        feed_ws(&input);
        feed_spdy(&input);
    }
}

#[test]
fn mutated_valid_streams() {
    let mut rng = Rng(0x0fed_cba9_8765_4321);
    let (ws_ok, spdy_ok) = (valid_ws(), valid_spdy());
    for _ in 0..5000 {
        for (valid, feed) in [(&ws_ok, feed_ws as fn(&[u8])), (&spdy_ok, feed_spdy)] {
            let mut input = valid.clone();
            for _ in 0..1 + rng.next() % 4 {
                let at = (rng.next() as usize) % input.len();
                input[at] = rng.next() as u8;
            }
            let cut = (rng.next() as usize) % (input.len() + 1);
            feed(&input[..cut]);
            feed(&input);
        }
    }
}
