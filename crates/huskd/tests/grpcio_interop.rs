//! Interop with gRPC clients that send the unix socket's path as `:authority` (gRPC C-core:
//! Python `grpcio` %-encodes it, `grpc.default_authority` or grpc-java send it raw), which h2
//! alone rejects with PROTOCOL_ERROR. `grpcio` runs with its default settings; without it the
//! test skips, unless `HUSK_REQUIRE_INTEROP=1` (scripts/setup.sh installs it). A hand-framed
//! HTTP/2 client checks the raw path too, with no Python at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Calls Version (twice: the second request's headers come from grpcio's dynamic table),
/// ListPodSandbox and ListImages with hand-encoded empty requests and identity (de)serializers;
/// prints the replies' hex, one `method reply` per line. `raw` sets `grpc.default_authority` to
/// the socket path (sent un-encoded).
const CLIENT: &str = r#"
import sys, grpc
sock, mode = sys.argv[1], sys.argv[2]
opts = [("grpc.default_authority", sock)] if mode == "raw" else []
ch = grpc.insecure_channel("unix:" + sock, options=opts)
ident = lambda b: b
for m in ["runtime.v1.RuntimeService/Version", "runtime.v1.RuntimeService/Version",
          "runtime.v1.RuntimeService/ListPodSandbox", "runtime.v1.ImageService/ListImages"]:
    call = ch.unary_unary("/" + m, request_serializer=ident, response_deserializer=ident)
    try:
        reply = call(b"", timeout=20)
    except grpc.RpcError as e:
        sys.exit("%s: %s %s" % (m, e.code(), e.details()))
    print(m, reply.hex())
ch.close()
"#;

/// Whether `python3` has `grpcio` (fails the test when it must).
fn grpcio_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("HUSK_REQUIRE_INTEROP").as_deref() != Ok("1"),
            "python3 with `grpcio` is required (HUSK_REQUIRE_INTEROP=1; pip install grpcio)"
        );
        eprintln!("skipping: python3 with `grpcio` is unavailable");
    }
    ok
}

/// Runs [`CLIENT`] and returns its replies (method → reply bytes).
async fn grpcio_calls(sock: &std::path::Path, mode: &str) -> Vec<(String, Vec<u8>)> {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.args(["-c", CLIENT]).arg(sock).arg(mode);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("grpcio client timed out")
        .unwrap();
    assert!(
        out.status.success(),
        "grpcio ({mode}) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (m, hex) = l.split_once(' ').unwrap_or((l, ""));
            (m.to_string(), hex::decode(hex).unwrap())
        })
        .collect()
}

fn check_replies(replies: &[(String, Vec<u8>)]) {
    assert_eq!(replies.len(), 4, "{replies:?}");
    for (m, reply) in &replies[..2] {
        assert!(m.ends_with("/Version"), "{m}");
        assert!(
            reply.windows(4).any(|w| w == b"husk"),
            "{m}: no runtime_name in {reply:?}"
        );
    }
    // Nothing exists yet: both lists are empty messages.
    assert!(replies[2].0.ends_with("/ListPodSandbox") && replies[2].1.is_empty());
    assert!(replies[3].0.ends_with("/ListImages") && replies[3].1.is_empty());
}

#[tokio::test]
async fn grpcio_default_channel_percent_encoded_authority() {
    if !grpcio_available() {
        return;
    }
    let h = common::huskd();
    check_replies(&grpcio_calls(&h.socket_path(), "default").await);
    // The daemon still serves tonic clients (a valid authority) afterwards.
    let mut rt = h.runtime_client().await.unwrap();
    let v = rt
        .version(k8s_cri::v1::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(v.into_inner().runtime_name, "husk");
}

#[tokio::test]
async fn grpcio_raw_path_authority() {
    if !grpcio_available() {
        return;
    }
    let h = common::huskd();
    check_replies(&grpcio_calls(&h.socket_path(), "raw").await);
}

/// An HPACK string literal, not Huffman-coded (lengths < 127 only).
fn lit(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// A frame header: 24-bit length, type, flags, stream id.
fn frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A gRPC unary call on `stream` with `authority` sent raw, as grpc-java does.
fn request(out: &mut Vec<u8>, stream: u32, authority: &[u8], path: &[u8]) {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    block.push(0x04); // :path, literal without indexing, name from the static table
    lit(&mut block, path);
    block.push(0x01); // :authority
    lit(&mut block, authority);
    block.push(0x0f);
    block.push(0x10); // content-type (static index 31 = 15 + 16)
    lit(&mut block, b"application/grpc");
    block.push(0x00);
    lit(&mut block, b"te");
    lit(&mut block, b"trailers");
    frame(out, 1, 0x4, stream, &block); // HEADERS, END_HEADERS
    frame(out, 0, 0x1, stream, &[0, 0, 0, 0, 0]); // DATA: an empty message, END_STREAM
}

#[tokio::test]
async fn hand_framed_raw_path_authority() {
    let h = common::huskd();
    let sock = h.socket_path();
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 4, 0, 0, &[]); // SETTINGS
    let path = sock.to_string_lossy();
    request(
        &mut out,
        1,
        path.as_bytes(),
        b"/runtime.v1.RuntimeService/Version",
    );
    request(
        &mut out,
        3,
        b"localhost",
        b"/runtime.v1.RuntimeService/Version",
    );
    s.write_all(&out).await.unwrap();

    // Read frames until both streams have ended (HEADERS or DATA with END_STREAM).
    let mut got = Vec::new();
    let mut ended = std::collections::BTreeSet::new();
    let mut data = std::collections::BTreeMap::<u32, Vec<u8>>::new();
    let read = async {
        while ended.len() < 2 {
            let mut hdr = [0u8; 9];
            s.read_exact(&mut hdr).await.unwrap();
            let len = u32::from_be_bytes([0, hdr[0], hdr[1], hdr[2]]) as usize;
            let (ty, flags) = (hdr[3], hdr[4]);
            let stream = u32::from_be_bytes([hdr[5], hdr[6], hdr[7], hdr[8]]) & 0x7fff_ffff;
            let mut payload = vec![0; len];
            s.read_exact(&mut payload).await.unwrap();
            got.push((ty, flags, stream));
            match ty {
                3 => panic!("RST_STREAM on stream {stream}: {payload:?}"),
                7 => panic!("GOAWAY: {payload:?}"),
                4 if flags & 1 == 0 => {
                    let mut ack = Vec::new();
                    frame(&mut ack, 4, 1, 0, &[]);
                    s.write_all(&ack).await.unwrap();
                }
                0 => data.entry(stream).or_default().extend_from_slice(&payload),
                _ => {}
            }
            if (ty == 0 || ty == 1) && flags & 1 != 0 {
                ended.insert(stream);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("no replies; frames so far {got:?}"));
    for stream in [1, 3] {
        let d = &data[&stream];
        assert!(d.windows(4).any(|w| w == b"husk"), "stream {stream}: {d:?}");
    }
}
