//! A hostile token server: a bearer token whose `expires_in` is absurd (u64::MAX seconds, a
//! negative number) must neither panic the token cache nor break the pull; the token is cached
//! (clamped) and reused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use husk_image::hosts::HostsConfig;
use husk_image::reference::Reference;
use husk_image::registry::RegistryClient;

const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

/// A registry that wants a bearer token from its own token server, which answers with
/// `expires_in` as given. Counts token requests.
struct FakeRegistry {
    port: u16,
    token_requests: Arc<AtomicUsize>,
}

impl FakeRegistry {
    fn start(expires_in: &'static str) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let token_requests = Arc::new(AtomicUsize::new(0));
        let count = token_requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                serve(conn, port, expires_in, &count);
            }
        });
        FakeRegistry {
            port,
            token_requests,
        }
    }
}

/// One request per connection (answers say `Connection: close`).
fn serve(mut conn: TcpStream, port: u16, expires_in: &str, token_requests: &AtomicUsize) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if line
            .to_ascii_lowercase()
            .starts_with("authorization: bearer t0k")
        {
            authorized = true;
        }
    }
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let (status, headers, body) = if path.starts_with("/token") {
        token_requests.fetch_add(1, Ordering::SeqCst);
        (
            "200 OK",
            "Content-Type: application/json\r\n".to_string(),
            format!(r#"{{"token":"t0k","expires_in":{expires_in}}}"#),
        )
    } else if authorized {
        (
            "200 OK",
            "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n".to_string(),
            MANIFEST.to_string(),
        )
    } else {
        (
            "401 Unauthorized",
            format!(
                "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:test/img:pull\"\r\nContent-Type: application/json\r\n"
            ),
            r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.to_string(),
        )
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

async fn resolve_twice(expires_in: &'static str) {
    let reg = FakeRegistry::start(expires_in);
    let hosts = tempfile::tempdir().unwrap();
    let client = RegistryClient::new(HostsConfig::new(hosts.path()));
    let reference = Reference::parse(&format!("127.0.0.1:{}/test/img:latest", reg.port)).unwrap();
    for _ in 0..2 {
        let repo = client.repo(&reference, None).unwrap();
        let (_, media_type, body) = repo.resolve().await.unwrap();
        assert_eq!(media_type, "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(body, MANIFEST.as_bytes());
    }
    assert_eq!(
        reg.token_requests.load(Ordering::SeqCst),
        1,
        "expires_in {expires_in}: the token is cached and reused"
    );
}

#[tokio::test]
async fn a_token_that_expires_in_u64_max_seconds_is_cached_clamped() {
    resolve_twice("18446744073709551615").await;
}

#[tokio::test]
async fn a_token_with_a_huge_float_lifetime_is_cached_clamped() {
    resolve_twice("1e300").await;
}

#[tokio::test]
async fn a_negative_lifetime_is_not_a_bad_token_response() {
    // Clamped to the 10 s minimum (less the margin): still cached for the second request.
    resolve_twice("-1").await;
}
