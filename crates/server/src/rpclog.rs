//! A tower layer that logs every RPC once (method, duration and gRPC status code) and
//! records it in the Prometheus metrics (`husk_grpc_requests_total`,
//! `husk_grpc_request_duration_seconds`) when its response body ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};

/// Wraps the gRPC router; one `tracing` event and one metrics record per RPC.
#[derive(Clone, Copy, Default)]
pub struct RpcLogLayer;

impl<S> Layer<S> for RpcLogLayer {
    type Service = RpcLog<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcLog { inner }
    }
}

#[derive(Clone)]
pub struct RpcLog<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for RpcLog<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Body + Send + 'static,
{
    type Response = http::Response<MetricsBody<RB>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            let label = method_label(&method);
            let resp = match res {
                Ok(resp) => resp,
                Err(e) => {
                    husk_telemetry::record_rpc(&label, "Unknown", start.elapsed());
                    return Err(e);
                }
            };
            // Errors come back trailers-only, with grpc-status in the headers.
            match resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
            {
                Some(code) if code != "0" => {
                    let msg = resp
                        .headers()
                        .get("grpc-message")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info!(rpc = %method, ms, code, message = %msg, "rpc failed");
                }
                _ => tracing::debug!(rpc = %method, ms, "rpc"),
            }
            let header_code = grpc_status(resp.headers());
            Ok(resp.map(|body| MetricsBody {
                inner: Box::pin(body),
                pending: Some(Pending {
                    method: label,
                    start,
                    header_code,
                }),
            }))
        })
    }
}

/// The metrics label of a request path: the method's short name for the CRI
/// (`/runtime.v1.RuntimeService/RunPodSandbox` → `RunPodSandbox`), `Husk/<method>` for
/// husk.v1 (whose `PullImage` would otherwise merge with the CRI's), `unknown` for anything
/// else (bounded cardinality).
fn method_label(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((_, "")) => "unknown".into(),
        Some((svc, m)) if svc.starts_with("/runtime.v1.") => m.into(),
        Some((svc, m)) if svc.starts_with("/husk.v1.") => format!("Husk/{m}"),
        _ => "unknown".into(),
    }
}

fn grpc_status(h: &http::HeaderMap) -> Option<i32> {
    h.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// gRPC status codes by the names Go's `codes.Code` gives them (go-grpc-prometheus's labels).
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

/// What is recorded when the response ends.
struct Pending {
    method: String,
    start: Instant,
    /// grpc-status of a trailers-only response (errors).
    header_code: Option<i32>,
}

/// A response body that records the RPC once it ends: the code comes from the headers
/// (trailers-only errors), else from the trailers (streams and successes), else `OK` for a body
/// that ended without one; a body dropped before its end (the client went away) is `Canceled`.
pub struct MetricsBody<B> {
    inner: Pin<Box<B>>,
    pending: Option<Pending>,
}

impl<B> MetricsBody<B> {
    fn finish(&mut self, code: Option<i32>) {
        if let Some(p) = self.pending.take() {
            let code = p.header_code.or(code).map_or("OK", code_name);
            husk_telemetry::record_rpc(&p.method, code, p.start.elapsed());
        }
    }
}

impl<B: Body> Body for MetricsBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let r = this.inner.as_mut().poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    let code = grpc_status(t);
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(Some(2)),
            Poll::Ready(None) => this.finish(None),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MetricsBody<B> {
    fn drop(&mut self) {
        if let Some(p) = &self.pending {
            // A trailers-only response may never be polled; its code is in the headers.
            let code = p.header_code.unwrap_or(1);
            self.finish(Some(code));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_short_and_bounded() {
        assert_eq!(
            method_label("/runtime.v1.RuntimeService/RunPodSandbox"),
            "RunPodSandbox"
        );
        assert_eq!(
            method_label("/runtime.v1.ImageService/PullImage"),
            "PullImage"
        );
        assert_eq!(method_label("/husk.v1.Husk/PullImage"), "Husk/PullImage");
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), "unknown");
        assert_eq!(method_label("/runtime.v1.RuntimeService/"), "unknown");
        assert_eq!(method_label("garbage"), "unknown");
    }

    #[test]
    fn codes_have_go_names() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(5), "NotFound");
        assert_eq!(code_name(12), "Unimplemented");
        assert_eq!(code_name(16), "Unauthenticated");
        assert_eq!(code_name(99), "Unknown");
        assert_eq!(
            grpc_status(&{
                let mut h = http::HeaderMap::new();
                h.insert("grpc-status", http::HeaderValue::from_static("5"));
                h
            }),
            Some(5)
        );
    }
}
