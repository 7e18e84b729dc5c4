//! The pod's network through CNI: the request built from the pod config (port mappings,
//! bandwidth annotations, DNS, cgroup parent), setup at RunPodSandbox, and a teardown that
//! always happens (`Janitor::pod_network_down` in `sandbox/undo.rs`) — a failed DEL is
//! remembered in the record and retried on the next stop, on remove and at the next start of
//! huskd.

use husk_net::{Bandwidth, Dns, PodNetwork, PortMapping, Protocol};

use super::{NamespaceMode, PodConfig};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

pub const INGRESS_ANNOTATION: &str = "kubernetes.io/ingress-bandwidth";
pub const EGRESS_ANNOTATION: &str = "kubernetes.io/egress-bandwidth";

/// The CNI request of a pod (validated: bad values are InvalidArgument before anything runs).
pub fn pod_network(
    id: &str,
    netns: &std::path::Path,
    cfg: &PodConfig,
    cgroup_parent: &str,
) -> Result<PodNetwork> {
    let mut pn = PodNetwork::new(id, netns, &cfg.namespace, &cfg.name, &cfg.uid);
    for p in cfg.port_mappings.iter().filter(|p| p.host_port > 0) {
        let protocol = match p.protocol.to_ascii_uppercase().as_str() {
            "" | "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            "SCTP" => Protocol::Sctp,
            other => {
                return Err(EngineError::Invalid(format!(
                    "port mapping protocol {other:?}"
                )));
            }
        };
        let port = |v: i32, what| {
            u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| {
                EngineError::Invalid(format!("port mapping {what} {v} is out of range"))
            })
        };
        let host_ip = if p.host_ip.is_empty() {
            None
        } else {
            Some(p.host_ip.parse().map_err(|_| {
                EngineError::Invalid(format!("port mapping host_ip {:?}", p.host_ip))
            })?)
        };
        pn.port_mappings.push(PortMapping {
            protocol,
            container_port: port(p.container_port, "container_port")?,
            host_port: port(p.host_port, "host_port")?,
            host_ip,
        });
    }
    let rate = |key: &str| -> Result<Option<u64>> {
        cfg.annotations
            .get(key)
            .map(|v| {
                husk_net::parse_bandwidth_annotation(v)
                    .map_err(|e| EngineError::Invalid(format!("annotation {key}: {e}")))
            })
            .transpose()
    };
    pn.bandwidth = Bandwidth::from_rates(rate(INGRESS_ANNOTATION)?, rate(EGRESS_ANNOTATION)?);
    pn.dns = cfg.dns.as_ref().map(|d| Dns {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    });
    pn.cgroup_path = (!cgroup_parent.is_empty()).then(|| cgroup_parent.to_string());
    pn.validate()
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    Ok(pn)
}

/// Whether the pod gets a CNI network (not host networking).
pub(crate) fn uses_cni(cfg: &PodConfig) -> bool {
    cfg.namespaces.network != NamespaceMode::Node
}

impl Engine {
    /// NetworkReady: `Ok` once a valid CNI config exists.
    pub async fn network_status(&self) -> std::result::Result<(), husk_net::NotReady> {
        self.network.status().await
    }
}
