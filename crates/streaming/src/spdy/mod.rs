//! SPDY/3.1 transport: framing, header compression, and (behind `X-Stream-Protocol-Version`
//! negotiation) exec/attach and `portforward.k8s.io` sessions.

mod conn;
mod dictionary;
mod exec;
mod flow;
pub mod frame;
pub mod headers;
mod portforward;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

use crate::server::{Body, plain};

pub(crate) use exec::{PROTOCOLS as EXEC_PROTOCOLS, serve as serve_exec};
pub(crate) use portforward::{PROTOCOLS as PORT_FORWARD_PROTOCOLS, serve as serve_port_forward};

/// The header a client lists its protocols in (and the server answers with its choice).
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// The header listing the server's protocols when none of the client's fit.
pub const ACCEPTED_PROTOCOLS_HEADER: &str = "x-accepted-stream-protocol-versions";

/// Negotiates the stream protocol and checks the SPDY/3.1 upgrade, as kubelet's
/// `httpstream.Handshake` and `spdy.UpgradeResponse` do: the `101` response and the protocol,
/// or the error response.
pub(crate) fn handshake(
    headers: &HeaderMap,
    supported: &[&'static str],
) -> Result<(Response<Body>, &'static str), Box<Response<Body>>> {
    let offered: Vec<&str> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        )));
    }
    let Some(protocol) = offered
        .iter()
        .find_map(|o| supported.iter().copied().find(|s| s == o))
    else {
        let mut resp = plain(
            StatusCode::FORBIDDEN,
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
        );
        for p in supported {
            resp.headers_mut().append(
                HeaderName::from_static(ACCEPTED_PROTOCOLS_HEADER),
                HeaderValue::from_static(p),
            );
        }
        return Err(Box::new(resp));
    };
    let has = |name: header::HeaderName, needle: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains(needle))
    };
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "spdy/3.1") {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        )));
    }
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        HeaderName::from_static(PROTOCOL_HEADER),
        HeaderValue::from_static(protocol),
    );
    Ok((resp, protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn negotiates_in_client_order() {
        let sup = &["v4.channel.k8s.io", "channel.k8s.io"];
        let up = [("connection", "Upgrade"), ("upgrade", "SPDY/3.1")];
        let mut pairs = up.to_vec();
        pairs.push((PROTOCOL_HEADER, "v9.channel.k8s.io, channel.k8s.io"));
        pairs.push((PROTOCOL_HEADER, "v4.channel.k8s.io"));
        let (resp, p) = handshake(&req(&pairs), sup).unwrap();
        assert_eq!(p, "channel.k8s.io");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(resp.headers()[PROTOCOL_HEADER], "channel.k8s.io");
    }

    #[test]
    fn refusals() {
        let sup = &["v4.channel.k8s.io"];
        let err = handshake(&req(&[("connection", "Upgrade")]), sup).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let err = handshake(&req(&[(PROTOCOL_HEADER, "v1")]), sup).unwrap_err();
        assert_eq!(err.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            err.headers()[ACCEPTED_PROTOCOLS_HEADER],
            "v4.channel.k8s.io"
        );
        let err = handshake(&req(&[(PROTOCOL_HEADER, "v4.channel.k8s.io")]), sup).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
}
