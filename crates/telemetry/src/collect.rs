//! The families computed at scrape time, as prometheus-client collectors: container and pod
//! counts from the daemon's callback, and this process's `process_*` metrics from `/proc`.

use std::sync::{Arc, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::{ProcessStats, StateCounts};

/// The daemon's callback counting containers and pods.
pub(crate) type StateSource = Arc<dyn Fn() -> StateCounts + Send + Sync>;

/// The slot the callback is set in (shared with [`crate::Metrics`]).
pub(crate) type StateSlot = Arc<RwLock<Option<StateSource>>>;

/// `husk_containers{state}` and `husk_pod_sandboxes{state}`, from the callback when one is set.
pub(crate) struct StateCollector(pub(crate) StateSlot);

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(source) = source else {
            return Ok(());
        };
        let c = source();
        gauges(
            &mut encoder,
            "husk_containers",
            "Containers, by state.",
            &[
                ("created", c.containers_created),
                ("exited", c.containers_exited),
                ("running", c.containers_running),
                ("unknown", c.containers_unknown),
            ],
        )?;
        gauges(
            &mut encoder,
            "husk_pod_sandboxes",
            "Pod sandboxes, by state.",
            &[
                ("notready", c.sandboxes_notready),
                ("ready", c.sandboxes_ready),
            ],
        )
    }
}

/// A gauge family labelled `state`.
fn gauges(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    values: &[(&'static str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (state, n) in values {
        ConstGauge::new(*n).encode(family.encode_family(&[("state", *state)])?)?;
    }
    Ok(())
}

/// The standard `process_*` families, from stats read for this scrape. Names are given without
/// their unit, which the encoders append (and OpenMetrics declares in `# UNIT`).
#[derive(Debug)]
pub(crate) struct ProcessCollector(pub(crate) ProcessStats);

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.0;
        if let Some(v) = p.cpu_seconds {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                m.metric_type(),
            )?)?;
        }
        if let Some(v) = p.open_fds {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                v,
            )?;
        }
        if let Some(v) = p.resident_memory_bytes {
            let help = "Resident memory size in bytes.";
            gauge(
                &mut encoder,
                "process_resident_memory",
                help,
                Some(Unit::Bytes),
                v,
            )?;
        }
        if let Some(v) = p.start_time_seconds {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(&Unit::Seconds),
                m.metric_type(),
            )?)?;
        }
        if let Some(v) = p.virtual_memory_bytes {
            let help = "Virtual memory size in bytes.";
            gauge(
                &mut encoder,
                "process_virtual_memory",
                help,
                Some(Unit::Bytes),
                v,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    v: u64,
) -> Result<(), std::fmt::Error> {
    let m = ConstGauge::new(v);
    m.encode(encoder.encode_descriptor(name, help, unit.as_ref(), m.metric_type())?)
}
