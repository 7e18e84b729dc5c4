//! CRI lifecycle steps timed one by one, as containerd (`container_create_seconds`,
//! `sandbox_create_network_seconds`, …) and CRI-O (`crio_operations_latency_seconds`,
//! `crio_operations_errors_total`) export them: `husk_operation_duration_seconds{operation}`
//! and `husk_operation_errors_total{operation}`, with a `phase` label on the steps of an image
//! pull.
//!
//! A step is timed with [`operation_timer`] (or [`timed`] around a future returning a
//! `Result`); like [`crate::pull_timer`], a timer dropped without [`OperationTimer::succeeded`]
//! counts a failure, so an early `?` return is recorded as one.

use std::future::Future;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};

use crate::Metrics;

/// Buckets of `husk_operation_duration_seconds` (upper bounds, seconds): from a quick CNI DEL
/// to a layer of gigabytes.
pub const OPERATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

/// A lifecycle step, the `operation` label (and `phase` for an image pull's steps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// CNI ADD of a pod's network (RunPodSandbox).
    SandboxNetworkSetup,
    /// CNI DEL of a pod's network (StopPodSandbox, RemovePodSandbox, retries at start).
    SandboxNetworkTeardown,
    /// CreateContainer: image → rootfs → spec → `<runtime> create`.
    ContainerCreate,
    /// `<runtime> start`.
    ContainerStart,
    /// StopContainer of a container that was running: signal, wait, SIGKILL if need be.
    ContainerStop,
    /// ExecSync: the command run to its end (a non-zero exit is a success of the step).
    ExecSync,
    /// One step of an image pull.
    ImagePull(PullPhase),
}

/// The steps of an image pull, the `phase` label of `operation="image_pull"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PullPhase {
    /// Reference → manifest (through the index) and config: once per pull.
    Resolve,
    /// One layer blob fetched into the content store: once per layer fetched.
    Download,
    /// One layer applied as a snapshot: once per layer unpacked.
    Unpack,
}

impl Operation {
    /// Every operation, in label order.
    pub const ALL: [Operation; 9] = [
        Operation::SandboxNetworkSetup,
        Operation::SandboxNetworkTeardown,
        Operation::ContainerCreate,
        Operation::ContainerStart,
        Operation::ContainerStop,
        Operation::ExecSync,
        Operation::ImagePull(PullPhase::Resolve),
        Operation::ImagePull(PullPhase::Download),
        Operation::ImagePull(PullPhase::Unpack),
    ];

    /// The `operation` label value.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::SandboxNetworkSetup => "sandbox_network_setup",
            Operation::SandboxNetworkTeardown => "sandbox_network_teardown",
            Operation::ContainerCreate => "container_create",
            Operation::ContainerStart => "container_start",
            Operation::ContainerStop => "container_stop",
            Operation::ExecSync => "exec_sync",
            Operation::ImagePull(_) => "image_pull",
        }
    }

    /// The `phase` label value, for the steps that have one.
    pub const fn phase(self) -> Option<&'static str> {
        match self {
            Operation::ImagePull(p) => Some(p.name()),
            _ => None,
        }
    }
}

impl PullPhase {
    /// The `phase` label value.
    pub const fn name(self) -> &'static str {
        match self {
            PullPhase::Resolve => "resolve",
            PullPhase::Download => "download",
            PullPhase::Unpack => "unpack",
        }
    }
}

/// An operation as labels: `operation` always, `phase` when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OperationLabels(pub(crate) Operation);

impl EncodeLabelSet for OperationLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let op = self.0;
        match op.phase() {
            Some(phase) => [("operation", op.name()), ("phase", phase)].encode(encoder),
            None => [("operation", op.name())].encode(encoder),
        }
    }
}

/// Records a finished step (no-op until [`crate::install`]).
pub fn record_operation(op: Operation, elapsed: Duration, ok: bool) {
    if let Some(m) = crate::global() {
        m.record_operation(op, elapsed, ok);
    }
}

/// Times a step: [`OperationTimer::succeeded`] records its duration; dropped without it (an
/// error returned with `?`, a cancelled future) it records the duration and an error.
#[must_use = "an operation timer records when it is dropped"]
pub fn operation_timer(op: Operation) -> OperationTimer {
    OperationTimer {
        op,
        start: Instant::now(),
        metrics: crate::global(),
    }
}

/// Awaits `fut`, recording its duration as `op` and an error when it returns `Err`.
pub async fn timed<T, E>(op: Operation, fut: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let timer = operation_timer(op);
    let r = fut.await;
    if r.is_ok() {
        timer.succeeded();
    }
    r
}

/// See [`operation_timer`].
#[derive(Debug)]
pub struct OperationTimer {
    op: Operation,
    start: Instant,
    metrics: Option<&'static Metrics>,
}

impl OperationTimer {
    /// Records the step as successful.
    pub fn succeeded(mut self) {
        if let Some(m) = self.metrics.take() {
            m.record_operation(self.op, self.start.elapsed(), true);
        }
    }
}

impl Drop for OperationTimer {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.record_operation(self.op, self.start.elapsed(), false);
        }
    }
}
