//! Tests of the `:authority` shim: header blocks through it are decoded by a fresh decoder, as
//! h2's would be, and compared; malformed input must never panic.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use loona_hpack::{Decoder as RefDecoder, Encoder as RefEncoder};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use super::hpack::{STATIC, encode_str};
use super::*;

/// Serves `data` in chunks of the given sizes, in turn; never pending.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    i: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let size = this.sizes.get(this.i % this.sizes.len().max(1)).copied();
        this.i += 1;
        let n = (this.data.len() - this.pos)
            .min(size.unwrap_or(usize::MAX).max(1))
            .min(buf.remaining());
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Everything the shim hands h2 for `input`, read `read_size` bytes at a time.
fn run_with(input: &[u8], chunks: &[usize], read_size: usize) -> io::Result<Vec<u8>> {
    let mut s = UdsAuthorityStream::new(Chunked {
        data: input.to_vec(),
        pos: 0,
        sizes: chunks.to_vec(),
        i: 0,
    });
    futures::executor::block_on(async {
        let mut out = Vec::new();
        let mut b = vec![0; read_size.max(1)];
        loop {
            let n = s.read(&mut b).await?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&b[..n]);
        }
    })
}

fn run(input: &[u8]) -> Vec<u8> {
    let out = run_with(input, &[], 1 << 16).unwrap();
    // Cut in small pieces, and read in small pieces, the result is the same.
    assert_eq!(run_with(input, &[1, 7, 100], 5).unwrap(), out);
    assert_eq!(run_with(input, &[3000], 20000).unwrap(), out);
    out
}

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    FrameHead {
        len: payload.len(),
        ty,
        flags,
        stream,
    }
    .write(&mut v);
    v.extend_from_slice(payload);
    v
}

/// The preface and a SETTINGS frame, as clients start.
fn start() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(4, 0, 0, &[0, 4, 0, 1, 0, 0]));
    v
}

fn headers(stream: u32, block: &[u8]) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, block)
}

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One decoded header block of the output: stream, HEADERS flags, priority, fields.
#[derive(Debug)]
struct Block {
    stream: u32,
    flags: u8,
    prio: Option<[u8; 5]>,
    fields: Fields,
}

/// The output's header blocks, decoded as h2 would (one decoder for the connection), checking
/// the framing rules h2 enforces.
fn blocks(out: &[u8]) -> Vec<Block> {
    assert_eq!(&out[..24], PREFACE);
    let mut rest = &out[24..];
    let mut dec = RefDecoder::new();
    let mut res = Vec::new();
    let mut open: Option<(Block, Vec<u8>)> = None;
    while !rest.is_empty() {
        let h = FrameHead::parse(rest);
        let payload = &rest[HEAD..HEAD + h.len];
        rest = &rest[HEAD + h.len..];
        match h.ty {
            HEADERS => {
                assert!(open.is_none() && h.len <= MAX_FRAME);
                let (frag, prio) = headers_payload(h.flags, payload).unwrap();
                let b = Block {
                    stream: h.stream,
                    flags: h.flags,
                    prio,
                    fields: Vec::new(),
                };
                open = Some((b, frag.to_vec()));
            }
            CONTINUATION => {
                let (b, frag) = open.as_mut().unwrap();
                assert!(h.stream == b.stream && h.len <= MAX_FRAME);
                frag.extend_from_slice(payload);
            }
            _ => {
                assert!(open.is_none(), "frame inside a header block");
                continue;
            }
        }
        if h.flags & END_HEADERS != 0 {
            let (mut b, frag) = open.take().unwrap();
            b.fields = dec.decode(&frag).unwrap();
            res.push(b);
        }
    }
    assert!(open.is_none());
    res
}

fn fields(list: &[(&str, &str)]) -> Fields {
    list.iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

fn grpc_fields(authority: &str) -> Fields {
    fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

/// `f` HPACK-encoded with literals only (no table), strings raw.
fn literal_block(f: &Fields) -> Vec<u8> {
    let mut v = Vec::new();
    for (n, val) in f {
        v.push(0);
        encode_str(&mut v, n);
        encode_str(&mut v, val);
    }
    v
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const PCT: &str = "%2Frun%2Fhusk%2Fhusk.sock";

#[test]
fn static_table_matches_the_decoders() {
    let mut dec = RefDecoder::new();
    for (i, (n, v)) in STATIC.iter().enumerate() {
        let got = dec.decode(&[0x80 | (i as u8 + 1)]).unwrap();
        assert_eq!(got, vec![(n.to_vec(), v.to_vec())], "index {}", i + 1);
        let mut b = Vec::new();
        encode_field(&mut b, n, b"other value");
        let got = dec.decode(&b).unwrap();
        assert_eq!(got, vec![(n.to_vec(), b"other value".to_vec())]);
    }
    assert!(dec.decode(&[0x80 | 62]).is_err(), "nothing was indexed");
}

#[test]
fn rfc7541_huffman_and_dynamic_indexing_pass_unchanged() {
    // RFC 7541 C.4.1–C.4.3: requests with Huffman strings and dynamic-table references.
    let c41 = unhex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
    let c42 = unhex("828684be5886a8eb10649cbf");
    let c43 = unhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf");
    let mut input = start();
    for (i, b) in [c41, c42, c43].into_iter().enumerate() {
        input.extend(headers(2 * i as u32 + 1, &b));
    }
    let out = run(&input);
    assert_eq!(out, input);
    let b = blocks(&out);
    assert_eq!(
        b[1].fields[3],
        (b":authority".to_vec(), b"www.example.com".to_vec())
    );
    assert_eq!(
        b[2].fields[4],
        (b"custom-key".to_vec(), b"custom-value".to_vec())
    );
}

#[test]
fn valid_authorities_kept_byte_for_byte() {
    let mut input = start();
    for (i, a) in ["localhost", "localhost:10000", "[::1]:1", "husk"]
        .iter()
        .enumerate()
    {
        input.extend(headers(2 * i as u32 + 1, &literal_block(&grpc_fields(a))));
        input.extend(frame(0, END_STREAM, 2 * i as u32 + 1, &[0, 0, 0, 0, 0]));
    }
    assert_eq!(run(&input), input);
}

#[test]
fn invalid_authorities_rewritten_and_later_blocks_reencoded() {
    let mut input = start();
    // Stream 1: the %-encoded path, with incremental indexing (→ dynamic 62 after
    // content-type is indexed too: content-type 62, :authority 63).
    let mut b1 = vec![0x83, 0x86, 0x44];
    encode_str(&mut b1, b"/runtime.v1.RuntimeService/Version");
    b1.push(0x41);
    encode_str(&mut b1, PCT.as_bytes());
    b1.push(0x5f);
    encode_str(&mut b1, b"application/grpc");
    input.extend(headers(1, &b1));
    input.extend(frame(0, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    // Stream 3: everything from the client's dynamic table.
    input.extend(headers(3, &[0x83, 0x86, 0xc0, 0xbf, 0xbe]));
    // Stream 5: a raw path and a valid authority, after the rewrite.
    input.extend(headers(
        5,
        &literal_block(&grpc_fields("/run/husk/husk.sock")),
    ));
    input.extend(headers(7, &literal_block(&grpc_fields("localhost:1"))));
    let out = run(&input);
    let b = blocks(&out);
    let want = fields(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/runtime.v1.RuntimeService/Version"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
    ]);
    assert_eq!(b[0].fields, want);
    assert_eq!(b[1].fields, want);
    assert_eq!(b[2].fields, grpc_fields("localhost"));
    assert_eq!(b[3].fields, grpc_fields("localhost:1"));
    assert!(b.iter().all(|b| b.flags == END_HEADERS | END_STREAM));
    // The DATA frame is where it was.
    assert!(
        out.windows(14)
            .any(|w| w == frame(0, END_STREAM, 1, &[0; 5]))
    );
}

#[test]
fn table_size_updates_are_honoured() {
    let mut input = start();
    let mut b1 = vec![0x83, 0x86, 0x84, 0x41];
    encode_str(&mut b1, PCT.as_bytes());
    input.extend(headers(1, &b1));
    // 4096 again, then the entry is used.
    input.extend(headers(3, &[0x3f, 0xe1, 0x1f, 0x83, 0x86, 0x84, 0xbe]));
    let b = blocks(&run(&input));
    assert_eq!(b[1].fields[3].1, b"localhost");
    // Size 0 evicts it: referring to it is an HPACK error, and after a rewrite that closes
    // the connection.
    input.extend(headers(5, &[0x20, 0x83, 0x86, 0x84, 0xbe]));
    let err = run_with(&input, &[], 4096).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    // More than SETTINGS_HEADER_TABLE_SIZE: h2 gets the bytes as they came to reject them.
    let mut input = start();
    input.extend(headers(1, &[0x3f, 0xe2, 0x1f, 0x83, 0x86, 0x84]));
    input.extend(headers(3, &literal_block(&grpc_fields(PCT))));
    assert_eq!(run(&input), input);
}

#[test]
fn continuation_frames_collected_and_output_split() {
    let mut f = grpc_fields(PCT);
    f.push((b"x-big".to_vec(), vec![b'x'; 40_000]));
    let block = literal_block(&f);
    let mut input = start();
    let (a, rest) = block.split_at(10_000);
    let (b, c) = rest.split_at(16_000);
    input.extend(frame(HEADERS, END_STREAM, 1, a));
    input.extend(frame(CONTINUATION, 0, 1, b));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, c));
    let out = run(&input);
    let bl = blocks(&out);
    assert_eq!(bl.len(), 1);
    f[3].1 = b"localhost".to_vec();
    assert_eq!(bl[0].fields, f);
    assert_eq!(bl[0].flags, END_STREAM);
    // HEADERS + 2 CONTINUATIONs of at most 16 KiB
    let n = out.len() - 24;
    assert!(n < 3 * (HEAD + MAX_FRAME) && n > 2 * MAX_FRAME, "{n}");
}

#[test]
fn padded_priority_headers() {
    let prio = [0x80, 0, 0, 3, 15];
    let padded = |a: &str| {
        let mut p = vec![3];
        p.extend_from_slice(&prio);
        p.extend(literal_block(&grpc_fields(a)));
        p.extend_from_slice(&[0, 0, 0]);
        frame(HEADERS, PADDED | PRIORITY | END_HEADERS | END_STREAM, 1, &p)
    };
    let mut input = start();
    input.extend(padded("localhost"));
    assert_eq!(run(&input), input);

    let mut input = start();
    input.extend(padded(PCT));
    let out = run(&input);
    let b = blocks(&out);
    assert_eq!(b[0].flags, PRIORITY | END_HEADERS | END_STREAM);
    assert_eq!(b[0].prio, Some(prio));
    assert_eq!(b[0].fields, grpc_fields("localhost"));
    let at = 24 + 15 + HEAD; // after the SETTINGS frame
    assert_eq!(&out[at..at + 5], &prio);
    // Bad padding: passed on for h2 to reject.
    let mut input = start();
    input.extend(frame(HEADERS, PADDED | END_HEADERS, 1, &[9, 0x82]));
    assert_eq!(run(&input), input);
}

/// The frames after the preface.
fn split_frames(mut rest: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    rest = &rest[24..];
    while !rest.is_empty() {
        let n = HEAD + FrameHead::parse(rest).len;
        v.push(&rest[..n]);
        rest = &rest[n..];
    }
    v
}

#[test]
fn other_frames_and_data_pass_through() {
    let mut input = start();
    input.extend(frame(8, 0, 0, &[0, 1, 0, 0])); // WINDOW_UPDATE
    input.extend(frame(6, 0, 0, &[1; 8])); // PING
    input.extend(headers(1, &literal_block(&grpc_fields(PCT))));
    input.extend(frame(0, 0, 1, &vec![7; 40_000])); // larger than SETTINGS_MAX_FRAME_SIZE
    input.extend(frame(0, END_STREAM, 1, &[8; 100]));
    let out = run(&input);
    let (fi, fo) = (split_frames(&input), split_frames(&out));
    assert_eq!(fi.len(), fo.len());
    for (i, (a, b)) in fi.iter().zip(&fo).enumerate() {
        assert!(i == 3 || a == b, "frame {i}");
    }
    assert_eq!(blocks(&out)[0].fields, grpc_fields("localhost"));
}

#[test]
fn garbage_never_panics_and_reaches_h2() {
    // Not HTTP/2 at all; a truncated preface; truncated frames; an oversized HEADERS; a block
    // interrupted by DATA; an HPACK error in the first block.
    let mut cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        PREFACE[..10].to_vec(),
        start()[..30].to_vec(),
    ];
    let mut c = start();
    c.extend(&headers(1, &literal_block(&grpc_fields(PCT)))[..20]);
    cases.push(c);
    let mut c = start();
    c.extend(frame(HEADERS, END_HEADERS, 1, &vec![0; MAX_FRAME + 1]));
    cases.push(c);
    let mut c = start();
    c.extend(frame(HEADERS, 0, 1, &literal_block(&grpc_fields(PCT))));
    c.extend(frame(0, 0, 1, &[1, 2, 3]));
    c.extend(frame(CONTINUATION, END_HEADERS, 1, &[]));
    cases.push(c);
    let mut c = start();
    c.extend(headers(1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    c.extend(headers(3, &literal_block(&grpc_fields(PCT))));
    cases.push(c);
    let mut c = start();
    c.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82])); // stray
    c.extend(headers(3, &literal_block(&grpc_fields("localhost"))));
    cases.push(c);
    for c in cases {
        assert_eq!(run(&c), c);
    }
}

/// A header block fragment split into HEADERS and CONTINUATION frames at `cuts`.
fn split_block(stream: u32, block: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (block.len() + 1)).collect();
    at.sort_unstable();
    at.push(block.len());
    let mut v = Vec::new();
    let mut prev = 0;
    for (i, &a) in at.iter().enumerate() {
        let last = i + 1 == at.len();
        let ty = if i == 0 { HEADERS } else { CONTINUATION };
        let flags = if last { END_HEADERS } else { 0 };
        v.extend(frame(ty, flags, stream, &block[prev..a]));
        prev = a;
    }
    v
}

fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just(0u8), Just(1), Just(9), Just(4), any::<u8>()],
        any::<u8>(),
        0u32..4,
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(ty, flags, stream, payload)| frame(ty, flags, stream, &payload))
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        preface in any::<bool>(),
        chunks in proptest::collection::vec(1usize..64, 1..4),
        read in 1usize..100,
    ) {
        let mut input = if preface { PREFACE.to_vec() } else { Vec::new() };
        input.extend(data);
        let _ = run_with(&input, &chunks, read);
    }

    #[test]
    fn arbitrary_frames_never_panic(
        frames in proptest::collection::vec(arb_frame(), 0..20),
        chunks in proptest::collection::vec(1usize..64, 1..4),
        read in 1usize..100,
    ) {
        let mut input = start();
        input.extend(frames.concat());
        let out = run_with(&input, &chunks, read);
        // Without HEADERS frames, nothing changes.
        if !frames.iter().any(|f| f[3] == HEADERS) {
            prop_assert_eq!(out.unwrap(), input);
        }
    }

    #[test]
    fn header_lists_survive_with_authorities_fixed(
        reqs in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "localhost", "localhost:1", "/run/husk/husk.sock", PCT, "a b", "",
                ]),
                proptest::collection::vec(("x-[a-c]{1,2}", "[a-z0-9]{0,30}"), 0..5),
                proptest::collection::vec(any::<usize>(), 0..3),
            ),
            1..8,
        ),
        chunks in proptest::collection::vec(1usize..200, 1..4),
    ) {
        let mut enc = RefEncoder::new();
        let mut input = start();
        let mut want = Vec::new();
        let mut rewriting = false;
        for (i, (authority, extra, cuts)) in reqs.iter().enumerate() {
            let mut f = grpc_fields(authority);
            f.extend(extra.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())));
            let block = enc.encode(f.iter().map(|(n, v)| (&n[..], &v[..])));
            input.extend(split_block(2 * i as u32 + 1, &block, cuts));
            input.extend(frame(0, END_STREAM, 2 * i as u32 + 1, &[0; 5]));
            if http::uri::Authority::try_from(*authority).is_err() {
                f[3].1 = b"localhost".to_vec();
                rewriting = true;
            }
            want.push(f);
        }
        let out = run_with(&input, &chunks, 1000).unwrap();
        if !rewriting {
            prop_assert_eq!(&out, &input);
        }
        let got: Vec<Fields> = blocks(&out).into_iter().map(|b| b.fields).collect();
        prop_assert_eq!(got, want);
    }
}
