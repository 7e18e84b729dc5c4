//! cAdvisor-style metrics for the kubelet's `/metrics/cadvisor` through CRI
//! (ListMetricDescriptors / ListPodSandboxMetrics), built from the same samples as the stats
//! RPCs. Names and labels follow cAdvisor's.

use husk_engine::sandbox::stats::PodUsage;
use k8s_cri::v1 as cri;

const CONTAINER_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];
const NETWORK_LABELS: [&str; 3] = ["interface", "namespace", "pod"];

/// (name, help, counter?, container-level?)
const METRICS: [(&str, &str, bool, bool); 8] = [
    (
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        true,
        true,
    ),
    (
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        false,
        true,
    ),
    (
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        false,
        true,
    ),
    ("container_memory_rss", "Size of RSS in bytes.", false, true),
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received.",
        true,
        false,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted.",
        true,
        false,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving.",
        true,
        false,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting.",
        true,
        false,
    ),
];

pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    METRICS
        .iter()
        .map(|(name, help, _, container)| cri::MetricDescriptor {
            name: name.to_string(),
            help: help.to_string(),
            label_keys: if *container {
                &CONTAINER_LABELS[..]
            } else {
                &NETWORK_LABELS[..]
            }
            .iter()
            .map(|s| s.to_string())
            .collect(),
        })
        .collect()
}

fn metric(
    name: &str,
    counter: bool,
    at: i64,
    labels: Vec<String>,
    value: Option<u64>,
) -> Option<cri::Metric> {
    Some(cri::Metric {
        name: name.to_string(),
        timestamp: at,
        metric_type: if counter {
            cri::MetricType::Counter
        } else {
            cri::MetricType::Gauge
        } as i32,
        label_values: labels,
        value: Some(cri::UInt64Value { value: value? }),
    })
}

pub fn pod_metrics(u: &PodUsage) -> cri::PodSandboxMetrics {
    let pod = &u.record.config;
    let net = |iface: &str| vec![iface.to_string(), pod.namespace.clone(), pod.name.clone()];
    let mut metrics = Vec::new();
    for i in &u.interfaces {
        metrics.extend(
            [
                metric(
                    METRICS[4].0,
                    true,
                    u.timestamp,
                    net(&i.name),
                    Some(i.rx_bytes),
                ),
                metric(
                    METRICS[5].0,
                    true,
                    u.timestamp,
                    net(&i.name),
                    Some(i.tx_bytes),
                ),
                metric(
                    METRICS[6].0,
                    true,
                    u.timestamp,
                    net(&i.name),
                    Some(i.rx_errors),
                ),
                metric(
                    METRICS[7].0,
                    true,
                    u.timestamp,
                    net(&i.name),
                    Some(i.tx_errors),
                ),
            ]
            .into_iter()
            .flatten(),
        );
    }
    let container_metrics = u
        .containers
        .iter()
        .map(|c| {
            let r = &c.record;
            let labels = vec![
                r.config.name.clone(),
                r.id.clone(),
                r.config.image.clone(),
                r.id.clone(),
                pod.namespace.clone(),
                pod.name.clone(),
            ];
            let m = &c.memory;
            cri::ContainerMetrics {
                container_id: r.id.clone(),
                metrics: [
                    metric(
                        METRICS[0].0,
                        true,
                        c.timestamp,
                        labels.clone(),
                        c.cpu_usage_nanos.map(|n| n / 1_000_000_000),
                    ),
                    metric(
                        METRICS[1].0,
                        false,
                        c.timestamp,
                        labels.clone(),
                        m.working_set_bytes,
                    ),
                    metric(
                        METRICS[2].0,
                        false,
                        c.timestamp,
                        labels.clone(),
                        m.usage_bytes,
                    ),
                    metric(METRICS[3].0, false, c.timestamp, labels, m.rss_bytes),
                ]
                .into_iter()
                .flatten()
                .collect(),
            }
        })
        .collect();
    cri::PodSandboxMetrics {
        pod_sandbox_id: u.record.id.clone(),
        metrics,
        container_metrics,
    }
}
