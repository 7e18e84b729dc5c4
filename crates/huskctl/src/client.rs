//! Reaching huskd: endpoint parsing, connecting over a unix socket (or TCP), per-call time
//! limits and turning gRPC statuses into one-line errors.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use husk_api::v1::husk_client::HuskClient;
use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint as TonicEndpoint, Uri};
use tonic::{Code, Status};

use crate::cli::DEFAULT_ENDPOINT;

/// Largest message accepted from huskd (as crictl: 16 MiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Printed after a failed connection to say how to fix it.
const START_HINT: &str = "is huskd running? start it with: huskd --config /etc/husk/config.toml";

/// Where huskd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket path.
    Unix(PathBuf),
    /// An `http://host:port` URL (given as `tcp://host:port` or `http://host:port`).
    Tcp(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "{}", p.display()),
            Endpoint::Tcp(u) => f.write_str(u),
        }
    }
}

/// Parses `unix:///path`, `unix:path`, a bare path, `tcp://host:port` or `http://host:port`.
pub fn parse_endpoint(s: &str) -> anyhow::Result<Endpoint> {
    let s = s.trim();
    let unix_path = if let Some(rest) = s.strip_prefix("unix://") {
        Some(rest)
    } else if let Some(rest) = s.strip_prefix("unix:") {
        Some(rest)
    } else if let Some(hostport) = s
        .strip_prefix("tcp://")
        .or_else(|| s.strip_prefix("http://"))
    {
        if hostport.is_empty() {
            bail!("invalid endpoint {s:?}: missing host:port");
        }
        return Ok(Endpoint::Tcp(format!("http://{hostport}")));
    } else if let Some((scheme, _)) = s.split_once("://") {
        bail!(
            "unsupported endpoint scheme {scheme:?} in {s:?} (use unix:///path or tcp://host:port)"
        );
    } else {
        Some(s)
    };
    match unix_path {
        Some(p) if !p.is_empty() => Ok(Endpoint::Unix(PathBuf::from(p))),
        _ => bail!("invalid endpoint {s:?}: empty socket path"),
    }
}

/// Chooses the endpoint: the flag (or `$HUSK_ENDPOINT`, folded in by clap), then
/// `$CONTAINER_RUNTIME_ENDPOINT`, then the default.
pub fn resolve_endpoint(flag: Option<&str>, cri_env: Option<&str>) -> anyhow::Result<Endpoint> {
    let raw = [flag, cri_env]
        .into_iter()
        .flatten()
        .find(|s| !s.trim().is_empty())
        .unwrap_or(DEFAULT_ENDPOINT);
    parse_endpoint(raw)
}

/// A connection to huskd, with the CRI and husk service clients on one channel.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects now (not lazily), so an absent daemon is reported before any call.
    pub async fn connect(endpoint: &Endpoint, timeout: Option<Duration>) -> anyhow::Result<Self> {
        let connecting = async {
            match endpoint {
                Endpoint::Unix(path) => {
                    let path = path.clone();
                    TonicEndpoint::from_static("http://[::]")
                        .connect_with_connector(tower::service_fn(move |_: Uri| {
                            let p = path.clone();
                            async move {
                                Ok::<_, std::io::Error>(TokioIo::new(
                                    tokio::net::UnixStream::connect(p).await?,
                                ))
                            }
                        }))
                        .await
                }
                Endpoint::Tcp(url) => {
                    TonicEndpoint::from_shared(url.clone())
                        .map_err(|e| anyhow!("invalid endpoint {url:?}: {e}"))?
                        .connect()
                        .await
                }
            }
            .map_err(|e| connect_error(endpoint, &e))
        };
        let channel = match timeout {
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| {
                    anyhow!(
                        "cannot connect to huskd at {endpoint}: timed out after {} ({START_HINT})",
                        fmt_duration(limit)
                    )
                })??,
            None => connecting.await?,
        };
        Ok(Self { channel, timeout })
    }

    /// The CRI runtime service.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The CRI image service.
    pub fn image(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// husk's own service (pull progress, import).
    pub fn husk(&self) -> HuskClient<Channel> {
        HuskClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// Runs one unary call under the per-call time limit.
    pub async fn unary<T>(
        &self,
        rpc: &'static str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        let result = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, call)
                .await
                .map_err(|_| RpcError::Timeout { rpc, after: limit })?,
            None => call.await,
        };
        result
            .map(tonic::Response::into_inner)
            .map_err(|status| RpcError::Status { rpc, status })
    }
}

/// Describes a failed connection, naming the socket and the OS error.
fn connect_error(endpoint: &Endpoint, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut io = None;
    while let Some(e) = cause {
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            io = Some(e);
            break;
        }
        cause = e.source();
    }
    let (reason, hint) = match io {
        Some(e) if e.kind() == std::io::ErrorKind::PermissionDenied => (
            strip_os_error(&e.to_string()),
            "run huskctl as root or as a member of the socket's group",
        ),
        Some(e) => (strip_os_error(&e.to_string()), START_HINT),
        None => (one_line(&error_chain(err)), START_HINT),
    };
    anyhow!("cannot connect to huskd at {endpoint}: {reason} ({hint})")
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
fn strip_os_error(s: &str) -> String {
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s.to_string(),
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut cause = err.source();
    while let Some(e) = cause {
        let s = e.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cause = e.source();
    }
    parts.join(": ")
}

/// Collapses a multi-line message onto one line.
pub fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// `30s`, `1.5s`, `2m`, `250ms`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms / 60_000 * 60_000 == ms {
        format!("{}m", ms / 60_000)
    } else if ms / 1000 * 1000 == ms {
        format!("{}s", ms / 1000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// A failed call to huskd.
#[derive(Debug)]
pub enum RpcError {
    /// huskd answered with a non-OK status.
    Status { rpc: &'static str, status: Status },
    /// The per-call time limit passed.
    Timeout { rpc: &'static str, after: Duration },
    /// huskd broke the protocol (e.g. a pull stream ended without `done`).
    Protocol { rpc: &'static str, message: String },
}

impl RpcError {
    /// The gRPC code, when huskd answered.
    pub fn code(&self) -> Option<Code> {
        match self {
            RpcError::Status { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Status { rpc, status } => f.write_str(&describe_status(rpc, status)),
            RpcError::Timeout { rpc, after } => write!(
                f,
                "{rpc} timed out after {} (raise the limit with --timeout)",
                fmt_duration(*after)
            ),
            RpcError::Protocol { rpc, message } => write!(f, "{rpc}: {message}"),
        }
    }
}

impl std::error::Error for RpcError {}

/// One readable line for a gRPC status. Statuses that describe the user's request print
/// huskd's message as is (`image "foo" not found`); others name the call and the code.
pub fn describe_status(rpc: &str, status: &Status) -> String {
    let msg = one_line(status.message());
    let code = status.code();
    match code {
        Code::Unimplemented => {
            let mut s = format!("huskd does not implement {rpc}");
            if !msg.is_empty() {
                s.push_str(&format!(" ({msg})"));
            }
            s
        }
        // tonic attaches the transport error as the source when the call never reached huskd;
        // an Unavailable that huskd sent itself (a registry it cannot reach) reads as is.
        Code::Unavailable if std::error::Error::source(status).is_some() => {
            format!("huskd is unavailable ({rpc}): {}", or_code(&msg, code))
        }
        Code::Unavailable if !msg.is_empty() => msg,
        Code::Unavailable => format!("{rpc}: {}", code.description().to_lowercase()),
        Code::DeadlineExceeded => format!("{rpc} timed out: {}", or_code(&msg, code)),
        Code::Cancelled => format!("{rpc} was cancelled: {}", or_code(&msg, code)),
        Code::NotFound
        | Code::AlreadyExists
        | Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::Aborted => {
            if msg.is_empty() {
                format!("{rpc}: {}", code.description().to_lowercase())
            } else {
                msg
            }
        }
        _ => format!("{rpc} failed: {} ({code:?})", or_code(&msg, code)),
    }
}

fn or_code(msg: &str, code: Code) -> String {
    if msg.is_empty() {
        code.description().to_lowercase()
    } else {
        msg.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(p: &str) -> Endpoint {
        Endpoint::Unix(PathBuf::from(p))
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            parse_endpoint("unix:///run/husk/husk.sock").ok(),
            Some(unix("/run/husk/husk.sock"))
        );
        assert_eq!(
            parse_endpoint("/tmp/h.sock").ok(),
            Some(unix("/tmp/h.sock"))
        );
        assert_eq!(
            parse_endpoint("unix:/tmp/h.sock").ok(),
            Some(unix("/tmp/h.sock"))
        );
        assert_eq!(
            parse_endpoint("unix://rel/h.sock").ok(),
            Some(unix("rel/h.sock"))
        );
        assert_eq!(parse_endpoint(" ./h.sock ").ok(), Some(unix("./h.sock")));
        assert_eq!(
            parse_endpoint("tcp://127.0.0.1:1234").ok(),
            Some(Endpoint::Tcp("http://127.0.0.1:1234".into()))
        );
        assert!(parse_endpoint("unix://").is_err());
        assert!(parse_endpoint("").is_err());
        assert!(parse_endpoint("npipe:////./pipe/x").is_err());
        assert!(parse_endpoint("tcp://").is_err());
    }

    #[test]
    fn endpoint_precedence() {
        let r = |f, e| resolve_endpoint(f, e).ok();
        assert_eq!(r(None, None), Some(unix("/run/husk/husk.sock")));
        assert_eq!(r(Some("/a.sock"), Some("/b.sock")), Some(unix("/a.sock")));
        assert_eq!(r(None, Some("unix:///b.sock")), Some(unix("/b.sock")));
        assert_eq!(r(Some(""), Some("/b.sock")), Some(unix("/b.sock")));
    }

    #[test]
    fn statuses_read_as_one_line() {
        let d = |code, msg: &str| describe_status("ImageStatus", &Status::new(code, msg));
        assert_eq!(
            d(Code::NotFound, "image \"foo\" not found"),
            "image \"foo\" not found"
        );
        assert_eq!(
            d(Code::NotFound, ""),
            "ImageStatus: some requested entity was not found"
        );
        assert_eq!(
            d(Code::Unimplemented, ""),
            "huskd does not implement ImageStatus"
        );
        assert_eq!(
            d(Code::Internal, "disk\nfull"),
            "ImageStatus failed: disk; full (Internal)"
        );
        let mut transport = Status::new(Code::Unavailable, "gone");
        transport.set_source(std::sync::Arc::new(std::io::Error::other("broken pipe")));
        assert_eq!(
            describe_status("ImageStatus", &transport),
            "huskd is unavailable (ImageStatus): gone"
        );
        assert_eq!(
            d(Code::Unavailable, "registry r:1 unreachable"),
            "registry r:1 unreachable"
        );
    }

    #[test]
    fn timeouts_name_the_call() {
        let e = RpcError::Timeout {
            rpc: "Version",
            after: Duration::from_secs(30),
        };
        assert_eq!(
            e.to_string(),
            "Version timed out after 30s (raise the limit with --timeout)"
        );
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(120)), "2m");
    }

    #[test]
    fn os_error_suffix_is_dropped() {
        assert_eq!(
            strip_os_error("No such file or directory (os error 2)"),
            "No such file or directory"
        );
        assert_eq!(strip_os_error("plain"), "plain");
    }
}
