//! huskd's Prometheus metrics: a small registry of the daemon's families, their text
//! exposition (format 0.0.4) and the `/metrics` HTTP endpoint.
//!
//! Recording goes through free functions on a process-wide registry ([`install`]); until
//! huskd installs it (only when `[metrics] address` is configured) every recording call is a
//! no-op, so the gRPC layer, the image service and the engine record without handles being
//! threaded through them. The container and pod gauges are computed at scrape time by a
//! callback the daemon registers ([`Metrics::set_state_source`]), so they are never stale.
#![forbid(unsafe_code)]

pub mod expo;
mod http;
mod process;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

pub use http::{Endpoint, TelemetryError, bind, serve};
pub use process::ProcessStats;

use expo::{Kind, float, header, sample};

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

type StateSource = Arc<dyn Fn() -> StateCounts + Send + Sync>;

/// A histogram's cumulative-on-render state: per-bucket counts (non-cumulative), sum, count.
#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            buckets: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &[(&str, &str)]) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&self.buckets) {
            cumulative += n;
            let le = float(*b);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            sample(out, &bucket, &l, &cumulative.to_string());
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        sample(out, &bucket, &l, &self.count.to_string());
        sample(out, &format!("{name}_sum"), labels, &float(self.sum));
        sample(
            out,
            &format!("{name}_count"),
            labels,
            &self.count.to_string(),
        );
    }
}

#[derive(Debug, Default)]
struct RpcSeries {
    /// (method, code) → requests.
    requests: BTreeMap<(String, String), u64>,
    /// method → latency.
    durations: BTreeMap<String, Histogram>,
}

#[derive(Debug)]
struct PullSeries {
    bytes: u64,
    success: u64,
    failure: u64,
    duration: Histogram,
}

/// The registry: every family huskd exports.
pub struct Metrics {
    rpc: Mutex<RpcSeries>,
    pulls: Mutex<PullSeries>,
    oom_kills: Mutex<u64>,
    state: RwLock<Option<StateSource>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// An empty registry (tests; the daemon uses [`install`]).
    pub fn new() -> Self {
        Metrics {
            rpc: Mutex::new(RpcSeries::default()),
            pulls: Mutex::new(PullSeries {
                bytes: 0,
                success: 0,
                failure: 0,
                duration: Histogram::new(PULL_BUCKETS),
            }),
            oom_kills: Mutex::new(0),
            state: RwLock::new(None),
        }
    }

    /// One finished RPC: its short method name (`RunPodSandbox`), gRPC code name (`OK`,
    /// `NotFound`) and duration.
    pub fn record_rpc(&self, method: &str, code: &str, elapsed: Duration) {
        let mut rpc = lock(&self.rpc);
        let key = (method.to_string(), code.to_string());
        if let Some(n) = rpc.requests.get_mut(&key) {
            *n += 1;
        } else if rpc.requests.len() < MAX_SERIES {
            rpc.requests.insert(key, 1);
        }
        if let Some(h) = rpc.durations.get_mut(method) {
            h.observe(elapsed.as_secs_f64());
        } else if rpc.durations.len() < MAX_SERIES {
            let mut h = Histogram::new(RPC_BUCKETS);
            h.observe(elapsed.as_secs_f64());
            rpc.durations.insert(method.to_string(), h);
        }
    }

    /// Bytes received from a registry (manifests, configs, layers).
    pub fn record_pull_bytes(&self, n: u64) {
        lock(&self.pulls).bytes += n;
    }

    /// One finished image pull.
    pub fn record_pull(&self, success: bool, elapsed: Duration) {
        let mut p = lock(&self.pulls);
        if success {
            p.success += 1;
        } else {
            p.failure += 1;
        }
        p.duration.observe(elapsed.as_secs_f64());
    }

    /// A container killed by the OOM killer.
    pub fn record_oom_kill(&self) {
        *lock(&self.oom_kills) += 1;
    }

    /// Registers the callback that counts containers and pods at scrape time (replacing any
    /// earlier one).
    pub fn set_state_source(&self, f: impl Fn() -> StateCounts + Send + Sync + 'static) {
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(f));
    }

    /// The whole exposition, with this process's `process_*` metrics. Reads `/proc`: call it
    /// off the async runtime's workers.
    pub fn render(&self) -> String {
        self.render_with(Some(&ProcessStats::read()))
    }

    /// The exposition with the given process stats (`None`: no `process_*` families).
    pub fn render_with(&self, process: Option<&ProcessStats>) -> String {
        let mut out = String::with_capacity(8 * 1024);
        {
            let rpc = lock(&self.rpc);
            let name = "husk_grpc_requests_total";
            header(
                &mut out,
                name,
                "gRPC requests handled, by method and gRPC status code.",
                Kind::Counter,
            );
            for ((method, code), n) in &rpc.requests {
                sample(
                    &mut out,
                    name,
                    &[("method", method), ("code", code)],
                    &n.to_string(),
                );
            }
            let name = "husk_grpc_request_duration_seconds";
            header(
                &mut out,
                name,
                "Time from a gRPC request's arrival to the end of its response, by method.",
                Kind::Histogram,
            );
            for (method, h) in &rpc.durations {
                h.render(&mut out, name, &[("method", method)]);
            }
        }
        {
            let p = lock(&self.pulls);
            let name = "husk_image_pull_bytes_total";
            header(
                &mut out,
                name,
                "Bytes received from registries by image pulls.",
                Kind::Counter,
            );
            sample(&mut out, name, &[], &p.bytes.to_string());
            let name = "husk_image_pulls_total";
            header(&mut out, name, "Image pulls, by result.", Kind::Counter);
            sample(
                &mut out,
                name,
                &[("result", "failure")],
                &p.failure.to_string(),
            );
            sample(
                &mut out,
                name,
                &[("result", "success")],
                &p.success.to_string(),
            );
            let name = "husk_image_pull_duration_seconds";
            header(
                &mut out,
                name,
                "Duration of image pulls, successful or not.",
                Kind::Histogram,
            );
            p.duration.render(&mut out, name, &[]);
        }
        let name = "husk_container_oom_kills_total";
        header(
            &mut out,
            name,
            "Containers that exited killed by the OOM killer.",
            Kind::Counter,
        );
        sample(&mut out, name, &[], &lock(&self.oom_kills).to_string());

        let source = self.state.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(source) = source {
            let c = source();
            let name = "husk_containers";
            header(&mut out, name, "Containers, by state.", Kind::Gauge);
            for (state, n) in [
                ("created", c.containers_created),
                ("exited", c.containers_exited),
                ("running", c.containers_running),
                ("unknown", c.containers_unknown),
            ] {
                sample(&mut out, name, &[("state", state)], &n.to_string());
            }
            let name = "husk_pod_sandboxes";
            header(&mut out, name, "Pod sandboxes, by state.", Kind::Gauge);
            for (state, n) in [
                ("notready", c.sandboxes_notready),
                ("ready", c.sandboxes_ready),
            ] {
                sample(&mut out, name, &[("state", state)], &n.to_string());
            }
        }
        if let Some(p) = process {
            render_process(&mut out, p);
        }
        out
    }
}

fn render_process(out: &mut String, p: &ProcessStats) {
    if let Some(v) = p.cpu_seconds {
        let name = "process_cpu_seconds_total";
        header(
            out,
            name,
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
        );
        sample(out, name, &[], &float(v));
    }
    if let Some(v) = p.open_fds {
        let name = "process_open_fds";
        header(out, name, "Number of open file descriptors.", Kind::Gauge);
        sample(out, name, &[], &v.to_string());
    }
    if let Some(v) = p.resident_memory_bytes {
        let name = "process_resident_memory_bytes";
        header(out, name, "Resident memory size in bytes.", Kind::Gauge);
        sample(out, name, &[], &v.to_string());
    }
    if let Some(v) = p.start_time_seconds {
        let name = "process_start_time_seconds";
        header(
            out,
            name,
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
        );
        sample(out, name, &[], &float(v));
    }
    if let Some(v) = p.virtual_memory_bytes {
        let name = "process_virtual_memory_bytes";
        header(out, name, "Virtual memory size in bytes.", Kind::Gauge);
        sample(out, name, &[], &v.to_string());
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

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = r#"# HELP husk_grpc_requests_total gRPC requests handled, by method and gRPC status code.
# TYPE husk_grpc_requests_total counter
husk_grpc_requests_total{method="ContainerStatus",code="NotFound"} 1
husk_grpc_requests_total{method="Version",code="OK"} 2
# HELP husk_grpc_request_duration_seconds Time from a gRPC request's arrival to the end of its response, by method.
# TYPE husk_grpc_request_duration_seconds histogram
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.0005"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.001"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.0025"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.005"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.01"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.025"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.05"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.1"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.25"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="1"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="2.5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="10"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="30"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="60"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="120"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="+Inf"} 1
husk_grpc_request_duration_seconds_sum{method="ContainerStatus"} 300
husk_grpc_request_duration_seconds_count{method="ContainerStatus"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.0005"} 0
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.001"} 0
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.0025"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.005"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.01"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.025"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.05"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.1"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.25"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.5"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="1"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="2.5"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="5"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="10"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="30"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="60"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="120"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="+Inf"} 2
husk_grpc_request_duration_seconds_sum{method="Version"} 1.002
husk_grpc_request_duration_seconds_count{method="Version"} 2
# HELP husk_image_pull_bytes_total Bytes received from registries by image pulls.
# TYPE husk_image_pull_bytes_total counter
husk_image_pull_bytes_total 1536
# HELP husk_image_pulls_total Image pulls, by result.
# TYPE husk_image_pulls_total counter
husk_image_pulls_total{result="failure"} 1
husk_image_pulls_total{result="success"} 1
# HELP husk_image_pull_duration_seconds Duration of image pulls, successful or not.
# TYPE husk_image_pull_duration_seconds histogram
husk_image_pull_duration_seconds_bucket{le="0.1"} 0
husk_image_pull_duration_seconds_bucket{le="0.25"} 1
husk_image_pull_duration_seconds_bucket{le="0.5"} 1
husk_image_pull_duration_seconds_bucket{le="1"} 1
husk_image_pull_duration_seconds_bucket{le="2.5"} 1
husk_image_pull_duration_seconds_bucket{le="5"} 1
husk_image_pull_duration_seconds_bucket{le="10"} 1
husk_image_pull_duration_seconds_bucket{le="30"} 1
husk_image_pull_duration_seconds_bucket{le="60"} 1
husk_image_pull_duration_seconds_bucket{le="120"} 2
husk_image_pull_duration_seconds_bucket{le="300"} 2
husk_image_pull_duration_seconds_bucket{le="600"} 2
husk_image_pull_duration_seconds_bucket{le="1800"} 2
husk_image_pull_duration_seconds_bucket{le="+Inf"} 2
husk_image_pull_duration_seconds_sum 120.25
husk_image_pull_duration_seconds_count 2
# HELP husk_container_oom_kills_total Containers that exited killed by the OOM killer.
# TYPE husk_container_oom_kills_total counter
husk_container_oom_kills_total 1
# HELP husk_containers Containers, by state.
# TYPE husk_containers gauge
husk_containers{state="created"} 1
husk_containers{state="exited"} 3
husk_containers{state="running"} 2
husk_containers{state="unknown"} 0
# HELP husk_pod_sandboxes Pod sandboxes, by state.
# TYPE husk_pod_sandboxes gauge
husk_pod_sandboxes{state="notready"} 1
husk_pod_sandboxes{state="ready"} 4
"#;

    #[test]
    fn exposition_matches_the_golden_text() {
        let m = Metrics::new();
        m.record_rpc("Version", "OK", Duration::from_millis(2));
        m.record_rpc("Version", "OK", Duration::from_secs(1));
        m.record_rpc("ContainerStatus", "NotFound", Duration::from_secs(300));
        m.record_pull_bytes(1024);
        m.record_pull_bytes(512);
        m.record_pull(true, Duration::from_millis(250));
        m.record_pull(false, Duration::from_secs(120));
        m.record_oom_kill();
        m.set_state_source(|| StateCounts {
            containers_created: 1,
            containers_running: 2,
            containers_exited: 3,
            containers_unknown: 0,
            sandboxes_ready: 4,
            sandboxes_notready: 1,
        });
        let text = m.render_with(None);
        assert_eq!(text, GOLDEN, "got:\n{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let mut h = Histogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 2.0, 4.0, 6.0, 100.0] {
            h.observe(v);
        }
        // An observation equal to a bound counts in that bound's bucket (le = less or equal).
        assert_eq!(h.buckets, vec![2, 2, 1]);
        let mut out = String::new();
        h.render(&mut out, "x", &[("a", "b")]);
        assert_eq!(
            out,
            "x_bucket{a=\"b\",le=\"1\"} 2\n\
             x_bucket{a=\"b\",le=\"2\"} 4\n\
             x_bucket{a=\"b\",le=\"5\"} 5\n\
             x_bucket{a=\"b\",le=\"+Inf\"} 7\n\
             x_sum{a=\"b\"} 115\n\
             x_count{a=\"b\"} 7\n"
        );
    }

    #[test]
    fn label_values_are_escaped_in_series() {
        let m = Metrics::new();
        m.record_rpc("we\"ird\\na\nme", "OK", Duration::ZERO);
        let text = m.render_with(None);
        assert!(
            text.contains(
                "husk_grpc_requests_total{method=\"we\\\"ird\\\\na\\nme\",code=\"OK\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn series_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_SERIES + 10 {
            m.record_rpc(&format!("M{i}"), "Unimplemented", Duration::ZERO);
        }
        m.record_rpc("M0", "Unimplemented", Duration::ZERO);
        let rpc = lock(&m.rpc);
        assert_eq!(rpc.requests.len(), MAX_SERIES);
        assert_eq!(rpc.durations.len(), MAX_SERIES);
        assert_eq!(
            rpc.requests[&("M0".to_string(), "Unimplemented".to_string())],
            2
        );
    }

    #[test]
    fn without_a_state_source_there_are_no_gauges_and_process_stats_render() {
        let m = Metrics::new();
        let text = m.render();
        assert!(!text.contains("husk_containers"), "{text}");
        for family in [
            "process_start_time_seconds",
            "process_resident_memory_bytes",
            "process_cpu_seconds_total",
            "process_open_fds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}: {text}"
            );
        }
    }

    #[test]
    fn global_recording_is_a_no_op_until_installed() {
        // The only test touching the process-wide registry.
        record_rpc("Version", "OK", Duration::ZERO);
        record_pull_bytes(10);
        record_oom_kill();
        drop(pull_timer());
        assert!(global().is_none());
        let m = install();
        assert!(Arc::ptr_eq(&m, &install()));
        record_rpc("Version", "OK", Duration::ZERO);
        record_pull_bytes(10);
        record_oom_kill();
        drop(pull_timer());
        pull_timer().succeeded();
        let text = m.render_with(None);
        assert!(text.contains("husk_grpc_requests_total{method=\"Version\",code=\"OK\"} 1\n"));
        assert!(text.contains("husk_image_pull_bytes_total 10\n"));
        assert!(text.contains("husk_container_oom_kills_total 1\n"));
        assert!(text.contains("husk_image_pulls_total{result=\"failure\"} 1\n"));
        assert!(text.contains("husk_image_pulls_total{result=\"success\"} 1\n"));
        assert!(text.contains("husk_image_pull_duration_seconds_count 2\n"));
    }
}
