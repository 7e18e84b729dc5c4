//! The `/metrics` endpoint: HTTP/1 on a TCP address, `GET /metrics` answers the exposition in
//! the format the scraper's `Accept` header picks ([`Format::negotiate`]), anything else 404
//! (405 for another method on `/metrics`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue, VARY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::{Format, Metrics, ProcessStats};

/// Errors of the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("binding the metrics endpoint on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

/// Binds `addr` (port 0 picks a free port: see [`Endpoint::local_addr`]).
pub async fn bind(addr: SocketAddr) -> Result<Endpoint, TelemetryError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| TelemetryError::Bind { addr, source })?;
    Ok(Endpoint { listener, addr })
}

/// Serves `metrics` on a bound endpoint until the task is dropped.
pub async fn serve(endpoint: Endpoint, metrics: Arc<Metrics>) {
    endpoint.serve(metrics).await
}

impl Endpoint {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `metrics` until the task is dropped.
    pub async fn serve(self, metrics: Arc<Metrics>) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(metrics.clone(), req));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30))
                    .serve_connection(TokioIo::new(tcp), svc);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "metrics connection failed");
                }
            });
        }
    }
}

async fn handle(
    metrics: Arc<Metrics>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(r);
    }
    let format = Format::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    // Reading /proc and running the state callback stay off the runtime's workers.
    let render = move || metrics.render_as(format, Some(&ProcessStats::read()));
    let text = match tokio::task::spawn_blocking(render).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "rendering metrics failed");
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "rendering metrics failed\n",
            ));
        }
    };
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(text)
    };
    let mut r = Response::new(Full::new(body));
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(VARY, HeaderValue::from_static("accept"));
    Ok(r)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A raw HTTP/1.0 request; returns the whole response.
    async fn get(addr: SocketAddr, method: &str, path: &str) -> String {
        request(addr, method, path, "").await
    }

    /// A raw HTTP/1.0 request with extra header lines (each ending in CRLF).
    async fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("{method} {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn scrape_over_http() {
        let m = Arc::new(Metrics::new());
        m.record_rpc("Version", "OK", Duration::from_millis(1));
        m.set_state_source(|| crate::StateCounts {
            containers_running: 7,
            ..Default::default()
        });
        let ep = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = ep.local_addr();
        assert_ne!(addr.port(), 0);
        let task = tokio::spawn(serve(ep, m.clone()));

        let r = get(addr, "GET", "/metrics").await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert!(body.contains("husk_grpc_requests_total{method=\"Version\",code=\"OK\"} 1\n"));
        assert!(
            body.contains("husk_containers{state=\"running\"} 7\n"),
            "{body}"
        );
        assert!(body.contains("# TYPE process_resident_memory_bytes gauge\n"));

        assert!(head.to_ascii_lowercase().contains("vary: accept"), "{head}");
        assert!(!body.contains("# EOF"), "{body}");

        // What Prometheus asks for by default: OpenMetrics, same samples, `# EOF` last.
        let accept = "Accept: application/openmetrics-text;version=1.0.0,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n";
        let r = request(addr, "GET", "/metrics", accept).await;
        let (head, body) = r.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{head}"
        );
        assert!(
            body.contains("# TYPE husk_grpc_requests counter\n"),
            "{body}"
        );
        assert!(body.contains("husk_grpc_requests_total{method=\"Version\",code=\"OK\"} 1\n"));
        assert!(
            body.contains("# UNIT process_resident_memory_bytes bytes\n"),
            "{body}"
        );
        assert!(body.ends_with("\n# EOF\n"), "{body}");

        // Scraping again sees new recordings.
        m.record_oom_kill();
        let r = get(addr, "GET", "/metrics?x=1").await;
        assert!(r.contains("husk_container_oom_kills_total 1\n"), "{r}");

        let r = get(addr, "GET", "/").await;
        assert!(r.starts_with("HTTP/1.0 404"), "{r}");
        let r = get(addr, "GET", "/metricsx").await;
        assert!(r.starts_with("HTTP/1.0 404"), "{r}");
        let r = get(addr, "POST", "/metrics").await;
        assert!(r.starts_with("HTTP/1.0 405"), "{r}");
        assert!(r.to_ascii_lowercase().contains("allow: get, head"), "{r}");
        let r = get(addr, "HEAD", "/metrics").await;
        assert!(r.starts_with("HTTP/1.0 200"), "{r}");
        task.abort();
    }

    #[tokio::test]
    async fn a_busy_address_names_itself() {
        let ep = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = ep.local_addr();
        let e = bind(addr).await.expect_err("address in use");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    }
}
