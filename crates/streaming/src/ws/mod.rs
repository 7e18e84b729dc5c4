//! WebSocket transport: the handshake, the channel-multiplexed connection, exec/attach and
//! port-forward sessions (`v4`/`v5.channel.k8s.io`, `base64.channel.k8s.io`), and SPDY
//! port-forward tunnelled through it (`SPDY/3.1+portforward.k8s.io`).

mod conn;
mod exec;
pub mod frame;
mod portforward;
mod tunnel;

use base64::Engine as _;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha1::{Digest as _, Sha1};

use crate::server::{Body, plain};

pub(crate) use exec::{PROTOCOLS as EXEC_PROTOCOLS, serve as serve_exec};
pub(crate) use portforward::{
    MAX_PORTS, PROTOCOLS as PORT_FORWARD_PROTOCOLS, serve as serve_port_forward,
};
pub(crate) use tunnel::{
    PROTOCOLS as TUNNEL_PROTOCOLS, offers_tunnel,
    serve_port_forward as serve_tunnelled_port_forward,
};

/// The GUID RFC 6455 appends to the client's key.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Whether any `name` header lists `token` (comma-separated, case-insensitive).
pub(crate) fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a request asks for a WebSocket (as kubelet's `wsstream.IsWebSocketRequest`).
pub(crate) fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    upgrade && header_has_token(headers, header::CONNECTION, "upgrade")
}

/// The subprotocols a client offers, in its order of preference.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Picks the first protocol the client offers that `supported` lists; a client offering none
/// gets `""` (the legacy `channel.k8s.io` behaviour) when `supported` has it.
pub(crate) fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    if offered.is_empty() {
        return supported.iter().copied().find(|p| p.is_empty());
    }
    offered
        .iter()
        .find_map(|o| supported.iter().copied().find(|s| !s.is_empty() && s == o))
}

/// Checks a WebSocket upgrade request and negotiates its subprotocol: the `101` response and
/// the protocol, or the error response.
pub(crate) fn handshake(
    method: &hyper::Method,
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<(Response<Body>, &'static str), Box<Response<Body>>> {
    if method != hyper::Method::GET {
        return Err(Box::new(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "websocket upgrades use GET",
        )));
    }
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    if !version_ok {
        let mut resp = plain(StatusCode::BAD_REQUEST, "unsupported websocket version");
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(resp));
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
    else {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key",
        )));
    };
    let offered = offered_protocols(headers);
    let Some(protocol) = negotiate(&offered, supported) else {
        let shown: Vec<&str> = supported
            .iter()
            .copied()
            .filter(|p| !p.is_empty())
            .collect();
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            &format!("requested protocol(s) are not supported: {offered:?}; supports {shown:?}"),
        )));
    };
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key(key)) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if !protocol.is_empty() {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    Ok((resp, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn negotiation_follows_client_order() {
        let sup = &["v5.channel.k8s.io", "v4.channel.k8s.io", ""];
        let off = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            negotiate(&off(&["v4.channel.k8s.io", "v5.channel.k8s.io"]), sup),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&off(&["x", "v5.channel.k8s.io"]), sup),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(negotiate(&off(&["x"]), sup), None);
        assert_eq!(negotiate(&[], sup), Some(""));
        assert_eq!(negotiate(&[], &["v4.channel.k8s.io"]), None);
    }

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        assert!(!is_websocket(&h));
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert!(is_websocket(&h));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(!is_websocket(&h));
    }
}
