//! The HTTP server: token URLs, routing, and the upgrade into a session's transport.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use url::Url;

use crate::backend::{AttachRequest, ExecRequest, PortForwardRequest, StreamBackend};
use crate::error::Error;
use crate::remotecommand::Session;
use crate::token::{Pending, TokenCache};
use crate::{spdy, ws};

/// The body of the server's (small, non-streaming) HTTP responses.
pub(crate) type Body = Full<Bytes>;

/// A plain-text response.
pub(crate) fn plain(status: StatusCode, msg: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(format!("{msg}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The streaming server's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen (default `127.0.0.1:0`: loopback, any free port).
    pub addr: SocketAddr,
    /// The scheme and authority of the URLs handed out (default `http://<bound address>`);
    /// as in kubelet, its path is replaced by `/exec/<token>` etc.
    pub base_url: Option<Url>,
    /// How long a token stays valid (default 60 s).
    pub token_ttl: Duration,
    /// How long a SPDY client may take to open a session's streams (default 30 s).
    pub stream_creation_timeout: Duration,
    /// Serve HTTPS with this configuration (see [`crate::tls_config`]); URLs are then `https`.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            base_url: None,
            token_ttl: Duration::from_secs(60),
            stream_creation_timeout: Duration::from_secs(30),
            tls: None,
        }
    }
}

/// The streaming server: hands out one-time URLs, then serves the sessions they name.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Arc<dyn StreamBackend>,
    tokens: TokenCache,
    addr: SocketAddr,
    base: Url,
    config: Config,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.inner.addr)
            .field("base", &self.inner.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.addr`; nothing is served until [`Server::serve`].
    pub fn new(config: Config, backend: impl StreamBackend) -> Result<Self, Error> {
        Self::with_backend(config, Arc::new(backend))
    }

    /// Like [`Server::new`], with a shared backend.
    pub fn with_backend(config: Config, backend: Arc<dyn StreamBackend>) -> Result<Self, Error> {
        let bind = |source| Error::Bind {
            addr: config.addr,
            source,
        };
        let listener = std::net::TcpListener::bind(config.addr).map_err(bind)?;
        listener.set_nonblocking(true).map_err(bind)?;
        let addr = listener.local_addr().map_err(bind)?;
        let base = match &config.base_url {
            Some(u) if u.cannot_be_a_base() => return Err(Error::BaseUrl(u.to_string())),
            Some(u) => u.clone(),
            None => {
                let scheme = if config.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                // A wildcard address is no place to connect to: name loopback instead.
                let mut shown = addr;
                if shown.ip().is_unspecified() {
                    shown.set_ip(match shown.ip() {
                        std::net::IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                Url::parse(&format!("{scheme}://{shown}/"))
                    .map_err(|e| Error::BaseUrl(e.to_string()))?
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                tokens: TokenCache::new(config.token_ttl),
                addr,
                base,
                config,
                listener: Mutex::new(Some(listener)),
            }),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// A one-time URL streaming `req` (the CRI `Exec` answer).
    pub fn get_exec(&self, req: ExecRequest) -> Result<Url, Error> {
        if req.container_id.is_empty() {
            return Err(invalid("missing required container_id"));
        }
        if req.cmd.is_empty() {
            return Err(invalid("missing required cmd"));
        }
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        self.url("exec", Pending::Exec(req))
    }

    /// A one-time URL streaming `req` (the CRI `Attach` answer).
    pub fn get_attach(&self, req: AttachRequest) -> Result<Url, Error> {
        if req.container_id.is_empty() {
            return Err(invalid("missing required container_id"));
        }
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        self.url("attach", Pending::Attach(req))
    }

    /// A one-time URL streaming `req` (the CRI `PortForward` answer).
    pub fn get_port_forward(&self, req: PortForwardRequest) -> Result<Url, Error> {
        if req.pod_id.is_empty() {
            return Err(invalid("missing required pod_sandbox_id"));
        }
        if req.ports.contains(&0) {
            return Err(invalid("port 0 cannot be forwarded"));
        }
        if req.ports.len() > ws::MAX_PORTS {
            return Err(invalid(&format!(
                "at most {} ports per request",
                ws::MAX_PORTS
            )));
        }
        self.url("portforward", Pending::PortForward(req))
    }

    fn url(&self, kind: &str, pending: Pending) -> Result<Url, Error> {
        let token = self.inner.tokens.insert(pending)?;
        self.inner
            .base
            .join(&format!("/{kind}/{token}"))
            .map_err(|e| Error::BaseUrl(e.to_string()))
    }

    /// Serves connections until the task is dropped; only one `serve` may run.
    pub async fn serve(&self) -> Result<(), Error> {
        let std_listener = self
            .inner
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or(Error::AlreadyServing)?;
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        tracing::info!(addr = %self.inner.addr, "streaming server listening");
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "streaming server accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let inner = self.inner.clone();
            match inner.config.tls.clone() {
                None => {
                    tokio::spawn(serve_connection(inner, tcp, peer));
                }
                Some(tls) => {
                    tokio::spawn(async move {
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(stream)) => serve_connection(inner, stream, peer).await,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "streaming TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "streaming TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    }
}

/// Serves one HTTP/1 connection (plain or TLS), upgrades included.
async fn serve_connection<I>(inner: Arc<Inner>, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| handle(inner.clone(), req));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "streaming connection failed");
    }
}

fn invalid(msg: &str) -> Error {
    Error::InvalidRequest(msg.to_owned())
}

fn check_streams(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> Result<(), Error> {
    if tty && stderr {
        return Err(invalid("tty and stderr cannot both be true"));
    }
    if !stdin && !stdout && !stderr {
        return Err(invalid("one of stdin, stdout, or stderr must be set"));
    }
    Ok(())
}

async fn handle(inner: Arc<Inner>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let Some((kind, token)) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(k, t)| {
            matches!(*k, "exec" | "attach" | "portforward") && !t.is_empty() && !t.contains('/')
        })
    else {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    };
    if req.method() != Method::GET && req.method() != Method::POST {
        return Ok(plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"));
    }
    let resp = match (kind, inner.tokens.consume(token)) {
        ("exec", Some(Pending::Exec(r))) => remote_command(&inner, req, Session::Exec(r)),
        ("attach", Some(Pending::Attach(r))) => remote_command(&inner, req, Session::Attach(r)),
        ("portforward", Some(Pending::PortForward(r))) => port_forward(&inner, req, r),
        _ => plain(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(resp)
}

fn remote_command(inner: &Arc<Inner>, req: Request<Incoming>, session: Session) -> Response<Body> {
    if ws::is_websocket(req.headers()) {
        let (resp, protocol) = match ws::handshake(req.method(), req.headers(), ws::EXEC_PROTOCOLS)
        {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        let backend = inner.backend.clone();
        upgrade_then(req, move |io| {
            ws::serve_exec(io, protocol, session, backend)
        });
        return resp;
    }
    let (resp, protocol) = match spdy::handshake(req.headers(), spdy::EXEC_PROTOCOLS) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    let backend = inner.backend.clone();
    let timeout = inner.config.stream_creation_timeout;
    upgrade_then(req, move |io| {
        spdy::serve_exec(io, protocol, session, backend, timeout)
    });
    resp
}

fn port_forward(
    inner: &Arc<Inner>,
    req: Request<Incoming>,
    pf: PortForwardRequest,
) -> Response<Body> {
    if ws::is_websocket(req.headers()) && ws::offers_tunnel(req.headers()) {
        // SPDY inside the WebSocket (kubectl/crictl ≥ 1.30): ports come in stream headers.
        let (resp, _) = match ws::handshake(req.method(), req.headers(), ws::TUNNEL_PROTOCOLS) {
            Ok(ok) => ok,
            Err(resp) => return *resp,
        };
        let backend = inner.backend.clone();
        let timeout = inner.config.stream_creation_timeout;
        upgrade_then(req, move |io| {
            ws::serve_tunnelled_port_forward(io, pf.pod_id, pf.ports, backend, timeout)
        });
        return resp;
    }
    if ws::is_websocket(req.headers()) {
        let ports = if pf.ports.is_empty() {
            match query_ports(req.uri().query()) {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "query parameter \"port\" is required",
                    );
                }
                Err(msg) => return plain(StatusCode::BAD_REQUEST, &msg),
            }
        } else {
            pf.ports
        };
        let (resp, protocol) =
            match ws::handshake(req.method(), req.headers(), ws::PORT_FORWARD_PROTOCOLS) {
                Ok(ok) => ok,
                Err(resp) => return *resp,
            };
        let backend = inner.backend.clone();
        let pod = pf.pod_id;
        upgrade_then(req, move |io| {
            ws::serve_port_forward(io, protocol, pod, ports, backend)
        });
        return resp;
    }
    let (resp, _) = match spdy::handshake(req.headers(), spdy::PORT_FORWARD_PROTOCOLS) {
        Ok(ok) => ok,
        Err(resp) => return *resp,
    };
    let backend = inner.backend.clone();
    let timeout = inner.config.stream_creation_timeout;
    upgrade_then(req, move |io| {
        spdy::serve_port_forward(io, pf.pod_id, pf.ports, backend, timeout)
    });
    resp
}

/// Ports named by `port=` query parameters (repeated or comma-separated).
fn query_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "port" {
            continue;
        }
        for p in v.split(',') {
            match p.trim().parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("invalid port {p:?}")),
            }
        }
    }
    if ports.len() > ws::MAX_PORTS {
        return Err(format!("at most {} ports per request", ws::MAX_PORTS));
    }
    Ok(ports)
}

/// Once hyper hands over the upgraded connection, runs `session` on it.
fn upgrade_then<F, Fut>(req: Request<Incoming>, session: F)
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => session(TokioIo::new(upgraded)).await,
            Err(e) => tracing::debug!(error = %e, "streaming upgrade failed"),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_ports_parse() {
        assert_eq!(
            query_ports(Some("port=80&port=8080,9090")).unwrap(),
            vec![80, 8080, 9090]
        );
        assert_eq!(query_ports(None).unwrap(), Vec::<u16>::new());
        assert!(query_ports(Some("port=0")).is_err());
        assert!(query_ports(Some("port=x")).is_err());
    }
}
