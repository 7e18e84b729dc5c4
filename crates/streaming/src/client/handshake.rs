//! The client's side of the WebSocket opening handshake (RFC 6455 section 4.1) over HTTP/1.1.

use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use rand::RngCore as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use url::{Host, Url};

use super::ClientError;
use crate::ws::accept_key;

/// The largest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// The most of an error response's body kept for the error message.
const MAX_ERROR_BODY: usize = 4096;

/// An upgraded connection.
#[derive(Debug)]
pub(crate) struct Upgraded {
    pub(crate) stream: TcpStream,
    /// Bytes read past the response head: the start of the server's frames.
    pub(crate) leftover: BytesMut,
    /// The subprotocol the server chose.
    pub(crate) protocol: String,
}

/// Parses `url` for a session: only `http` and `ws` (the server has no TLS).
pub(crate) fn parse_url(url: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    match parsed.scheme() {
        "http" | "ws" => {}
        "https" | "wss" => return Err(invalid("TLS is not supported (use an http:// url)")),
        other => return Err(invalid(&format!("unsupported scheme {other:?}"))),
    }
    if parsed.host().is_none() {
        return Err(invalid("missing host"));
    }
    Ok(parsed)
}

/// `host:port` of `url`, as shown in errors and sent as `Host`.
fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    }
}

/// Connects to `url` and upgrades to a WebSocket offering `protocols` (most preferred first),
/// all within `limit`.
pub(crate) async fn connect(
    url: &Url,
    protocols: &[&str],
    limit: Duration,
) -> Result<Upgraded, ClientError> {
    let addr = authority(url);
    match tokio::time::timeout(limit, connect_inner(url, &addr, protocols)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { addr, after: limit }),
    }
}

async fn connect_inner(url: &Url, addr: &str, protocols: &[&str]) -> Result<Upgraded, ClientError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let connected = match url.host() {
        Some(Host::Ipv4(ip)) => TcpStream::connect((ip, port)).await,
        Some(Host::Ipv6(ip)) => TcpStream::connect((ip, port)).await,
        Some(Host::Domain(d)) => TcpStream::connect((d, port)).await,
        None => return Err(ClientError::Handshake("url without host".into())),
    };
    let mut stream = connected.map_err(|source| ClientError::Connect {
        addr: addr.to_owned(),
        source,
    })?;
    let _ = stream.set_nodelay(true);

    let mut key = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut key);
    let key = base64::engine::general_purpose::STANDARD.encode(key);
    let mut target = url.path().to_owned();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\nUser-Agent: husk-streaming\r\n"
    );
    if !protocols.is_empty() {
        request.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            protocols.join(", ")
        ));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let mut buf = BytesMut::with_capacity(4096);
    let head_len = loop {
        if let Some(i) = find_head_end(&buf) {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(ClientError::Handshake(format!(
                "response head longer than {MAX_HEAD} bytes"
            )));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ClientError::Handshake(
                "the server closed the connection before answering".into(),
            ));
        }
    };
    let head = buf.split_to(head_len);
    let head = std::str::from_utf8(&head)
        .map_err(|_| ClientError::Handshake("response head is not utf-8".into()))?;
    let response = parse_head(head)?;
    if response.status != 101 {
        let body = read_body(&mut stream, buf, response.content_length()).await;
        return Err(match response.status {
            404 => ClientError::NotFound,
            status => ClientError::Http {
                status,
                body: body_text(&body),
            },
        });
    }
    let upgrade_ok = response
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade_ok {
        return Err(ClientError::Handshake(
            "101 response without Upgrade: websocket".into(),
        ));
    }
    if response.header("sec-websocket-accept") != Some(accept_key(&key).as_str()) {
        return Err(ClientError::Handshake(
            "wrong or missing Sec-WebSocket-Accept".into(),
        ));
    }
    let protocol = response
        .header("sec-websocket-protocol")
        .unwrap_or_default()
        .to_owned();
    if !protocols.is_empty() && !protocols.contains(&protocol.as_str()) {
        return Err(ClientError::Handshake(format!(
            "the server chose subprotocol {protocol:?}, not one of {protocols:?}"
        )));
    }
    Ok(Upgraded {
        stream,
        leftover: buf,
        protocol,
    })
}

/// The length of the head including its blank line, once complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

#[derive(Debug)]
struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<usize> {
        self.header("content-length")?.parse().ok()
    }
}

fn parse_head(head: &str) -> Result<Head, ClientError> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(ClientError::Handshake(format!(
            "invalid status line {status_line:?}"
        )));
    };
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(Head { status, headers })
}

/// Reads up to [`MAX_ERROR_BODY`] bytes of an error response's body (best effort).
async fn read_body(stream: &mut TcpStream, mut buf: BytesMut, len: Option<usize>) -> BytesMut {
    let want = len.unwrap_or(MAX_ERROR_BODY).min(MAX_ERROR_BODY);
    let reading = async {
        while buf.len() < want {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), reading).await;
    buf.truncate(want);
    buf
}

fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(no message)".to_owned()
    } else {
        text.split('\n')
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_url("http://127.0.0.1:1/exec/x").is_ok());
        assert!(parse_url("ws://[::1]:1/exec/x").is_ok());
        let err = parse_url("https://h/exec/x").unwrap_err().to_string();
        assert!(err.contains("TLS"), "{err}");
        assert!(parse_url("ftp://h/x").is_err());
        assert!(parse_url("not a url").is_err());
        let u = parse_url("http://[::1]:8080/a").unwrap();
        assert_eq!(authority(&u), "[::1]:8080");
    }

    #[test]
    fn heads() {
        let h = parse_head(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Protocol:  v5.channel.k8s.io \r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 101);
        assert_eq!(h.header("upgrade"), Some("websocket"));
        assert_eq!(
            h.header("sec-websocket-protocol"),
            Some("v5.channel.k8s.io")
        );
        assert!(parse_head("SPDY/3 200 OK\r\n\r\n").is_err());
        assert!(parse_head("HTTP/1.1 abc\r\n\r\n").is_err());
        assert_eq!(find_head_end(b"HTTP/1.1 200\r\n\r\nxx"), Some(16));
        assert_eq!(find_head_end(b"HTTP/1.1 200\r\n"), None);
        assert_eq!(body_text(b"not found\n"), "not found");
        assert_eq!(body_text(b""), "(no message)");
    }
}
