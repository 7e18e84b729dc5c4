//! huskd's Prometheus metrics: the registry of the daemon's families (prometheus-client, the
//! Prometheus project's Rust client), their exposition in OpenMetrics 1.0.0 or the Prometheus
//! text format 0.0.4 ([`Format`]), and the `/metrics` HTTP endpoint.
//!
//! Recording goes through free functions on a process-wide registry ([`install`]); until
//! huskd installs it (only when `[metrics] address` is configured) every recording call is a
//! no-op, so the gRPC layer, the image service and the engine record without handles being
//! threaded through them. The container and pod gauges are computed at scrape time by a
//! callback the daemon registers ([`Metrics::set_state_source`]), so they are never stale.
#![forbid(unsafe_code)]

mod collect;
mod format;
mod http;
mod operation;
mod process;
mod series;
#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use format::{Format, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
pub use http::{Endpoint, TelemetryError, bind, serve};
pub use operation::{
    OPERATION_BUCKETS, Operation, OperationTimer, PullPhase, operation_timer, record_operation,
    timed,
};
pub use process::ProcessStats;

use collect::{ProcessCollector, StateCollector, StateSlot};
use operation::OperationLabels;
use series::Series;

/// Buckets of `husk_grpc_request_duration_seconds` (upper bounds, seconds).
pub const RPC_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0,
];

/// Buckets of `husk_image_pull_duration_seconds` (upper bounds, seconds).
pub const PULL_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Distinct label sets one family keeps; past this, new ones are dropped (a misbehaving
/// client inventing method names must not grow the daemon without bound).
pub const MAX_SERIES: usize = 1000;

/// Container and pod counts by state, computed when scraped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub containers_created: u64,
    pub containers_running: u64,
    pub containers_exited: u64,
    pub containers_unknown: u64,
    pub sandboxes_ready: u64,
    pub sandboxes_notready: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct RpcLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

fn rpc_histogram() -> Histogram {
    Histogram::new(RPC_BUCKETS.iter().copied())
}

fn operation_histogram() -> Histogram {
    Histogram::new(OPERATION_BUCKETS.iter().copied())
}

/// The registry: every family huskd exports. Names are registered without the suffixes the
/// encoders add (`_total` for counters, the unit), so the samples are named as before:
/// `husk_grpc_requests_total`, `husk_grpc_request_duration_seconds_bucket`, ….
pub struct Metrics {
    registry: Registry,
    rpc_requests: Series<RpcLabels, Counter>,
    rpc_durations: Series<MethodLabels, Histogram>,
    pull_bytes: Counter,
    pulls: Series<ResultLabels, Counter>,
    pull_duration: Histogram,
    oom_kills: Counter,
    operation_durations: Series<OperationLabels, Histogram>,
    operation_errors: Series<OperationLabels, Counter>,
    state: StateSlot,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// An empty registry (tests; the daemon uses [`install`]).
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            rpc_requests: Series::new(Counter::default, MAX_SERIES),
            rpc_durations: Series::new(rpc_histogram, MAX_SERIES),
            pull_bytes: Counter::default(),
            pulls: Series::new(Counter::default, 2),
            pull_duration: Histogram::new(PULL_BUCKETS.iter().copied()),
            oom_kills: Counter::default(),
            operation_durations: Series::new(operation_histogram, Operation::ALL.len()),
            operation_errors: Series::new(Counter::default, Operation::ALL.len()),
            state: Arc::new(RwLock::new(None)),
        };
        // Both results show from the first scrape on, at zero.
        for result in ["failure", "success"] {
            m.pulls.with(&ResultLabels { result }, |_| {});
        }
        m.register()
    }

    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "husk_grpc_requests",
            "gRPC requests handled, by method and gRPC status code",
            self.rpc_requests.clone(),
        );
        r.register_with_unit(
            "husk_grpc_request_duration",
            "Time from a gRPC request's arrival to the end of its response, by method",
            Unit::Seconds,
            self.rpc_durations.clone(),
        );
        r.register_with_unit(
            "husk_image_pull",
            "Bytes received from registries by image pulls",
            Unit::Bytes,
            self.pull_bytes.clone(),
        );
        r.register(
            "husk_image_pulls",
            "Image pulls, by result",
            self.pulls.clone(),
        );
        r.register_with_unit(
            "husk_image_pull_duration",
            "Duration of image pulls, successful or not",
            Unit::Seconds,
            self.pull_duration.clone(),
        );
        r.register(
            "husk_container_oom_kills",
            "Containers that exited killed by the OOM killer",
            self.oom_kills.clone(),
        );
        r.register_with_unit(
            "husk_operation_duration",
            "Duration of CRI lifecycle steps, successful or not, by operation (and phase)",
            Unit::Seconds,
            self.operation_durations.clone(),
        );
        r.register(
            "husk_operation_errors",
            "CRI lifecycle steps that failed, by operation (and phase)",
            self.operation_errors.clone(),
        );
        r.register_collector(Box::new(StateCollector(self.state.clone())));
        self
    }

    /// One finished RPC: its short method name (`RunPodSandbox`), gRPC code name (`OK`,
    /// `NotFound`) and duration.
    pub fn record_rpc(&self, method: &str, code: &str, elapsed: Duration) {
        let labels = RpcLabels {
            method: method.to_string(),
            code: code.to_string(),
        };
        self.rpc_requests.with(&labels, |c| {
            c.inc();
        });
        let labels = MethodLabels {
            method: labels.method,
        };
        self.rpc_durations
            .with(&labels, |h| h.observe(elapsed.as_secs_f64()));
    }

    /// Bytes received from a registry (manifests, configs, layers).
    pub fn record_pull_bytes(&self, n: u64) {
        self.pull_bytes.inc_by(n);
    }

    /// One finished image pull.
    pub fn record_pull(&self, success: bool, elapsed: Duration) {
        let result = if success { "success" } else { "failure" };
        self.pulls.with(&ResultLabels { result }, |c| {
            c.inc();
        });
        self.pull_duration.observe(elapsed.as_secs_f64());
    }

    /// A container killed by the OOM killer.
    pub fn record_oom_kill(&self) {
        self.oom_kills.inc();
    }

    /// One finished lifecycle step: its duration, and an error when `ok` is false.
    pub fn record_operation(&self, op: Operation, elapsed: Duration, ok: bool) {
        let labels = OperationLabels(op);
        self.operation_durations
            .with(&labels, |h| h.observe(elapsed.as_secs_f64()));
        if !ok {
            self.operation_errors.with(&labels, |c| {
                c.inc();
            });
        }
    }

    /// Registers the callback that counts containers and pods at scrape time (replacing any
    /// earlier one).
    pub fn set_state_source(&self, f: impl Fn() -> StateCounts + Send + Sync + 'static) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    /// The whole exposition in the text format 0.0.4, with this process's `process_*`
    /// metrics. Reads `/proc`: call it off the async runtime's workers.
    pub fn render(&self) -> String {
        self.render_as(Format::Text, Some(&ProcessStats::read()))
    }

    /// The exposition in the text format 0.0.4 with the given process stats (`None`: no
    /// `process_*` families).
    pub fn render_with(&self, process: Option<&ProcessStats>) -> String {
        self.render_as(Format::Text, process)
    }

    /// The exposition in `format` with the given process stats (`None`: no `process_*`
    /// families). Runs the state callback.
    pub fn render_as(&self, format: Format, process: Option<&ProcessStats>) -> String {
        let mut extra = Registry::default();
        if let Some(p) = process {
            extra.register_collector(Box::new(ProcessCollector(p.clone())));
        }
        let mut out = String::with_capacity(16 * 1024);
        let encoded = match format {
            Format::OpenMetrics => text::encode_registry(&mut out, &self.registry)
                .and_then(|()| text::encode_registry(&mut out, &extra))
                .and_then(|()| text::encode_eof(&mut out)),
            Format::Text => prometheus_text::encode(&mut out, &self.registry)
                .and_then(|()| prometheus_text::encode(&mut out, &extra)),
        };
        // Writing to a String fails only if an encoder refuses a metric; none of ours is one
        // it refuses (native-only histograms).
        if encoded.is_err() {
            tracing::warn!(?format, "encoding the metrics failed part way");
        }
        out
    }
}

// ---- the process-wide registry -------------------------------------------------------------

static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Turns recording on for the whole process and returns the registry (the same one on every
/// call).
pub fn install() -> Arc<Metrics> {
    GLOBAL.get_or_init(|| Arc::new(Metrics::new())).clone()
}

/// The process-wide registry, when [`install`]ed.
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get().map(|m| &**m)
}

/// Records a finished RPC (no-op until [`install`]).
pub fn record_rpc(method: &str, code: &str, elapsed: Duration) {
    if let Some(m) = global() {
        m.record_rpc(method, code, elapsed);
    }
}

/// Counts bytes received from a registry (no-op until [`install`]).
pub fn record_pull_bytes(n: u64) {
    if let Some(m) = global() {
        m.record_pull_bytes(n);
    }
}

/// Counts an OOM-killed container (no-op until [`install`]).
pub fn record_oom_kill() {
    if let Some(m) = global() {
        m.record_oom_kill();
    }
}

/// Times an image pull: [`PullTimer::succeeded`] records a success; dropped without it (an
/// error returned with `?`, or the pull abandoned) it records a failure.
#[must_use = "a pull timer records when it is dropped"]
pub fn pull_timer() -> PullTimer {
    PullTimer {
        start: Instant::now(),
        metrics: global(),
    }
}

/// See [`pull_timer`].
#[derive(Debug)]
pub struct PullTimer {
    start: Instant,
    metrics: Option<&'static Metrics>,
}

impl PullTimer {
    /// Records the pull as successful.
    pub fn succeeded(mut self) {
        if let Some(m) = self.metrics.take() {
            m.record_pull(true, self.start.elapsed());
        }
    }
}

impl Drop for PullTimer {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.record_pull(false, self.start.elapsed());
        }
    }
}
