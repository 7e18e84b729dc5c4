//! Pod sandbox stats: CPU and memory summed over the pod's containers, process count, and per
//! interface network counters read inside the pod's network namespace.

use std::path::Path;

use super::{SandboxFilter, SandboxRecord, SandboxState};
use crate::container::{ContainerFilter, ContainerUsage};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};

/// Counters of one network interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PodUsage {
    pub record: SandboxRecord,
    pub timestamp: i64,
    pub cpu_usage_nanos: Option<u64>,
    pub cpu_nano_cores: Option<u64>,
    pub memory_working_set: Option<u64>,
    pub memory_usage: Option<u64>,
    pub memory_rss: Option<u64>,
    pub processes: u64,
    /// `eth0` first when present.
    pub interfaces: Vec<InterfaceStats>,
    pub containers: Vec<ContainerUsage>,
}

/// Parses `/proc/net/dev`.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    let mut out: Vec<InterfaceStats> = text
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(InterfaceStats {
                name: name.trim().to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .filter(|i| i.name != "lo")
        .collect();
    out.sort_by_key(|i| (i.name != "eth0", i.name.clone()));
    out
}

impl Engine {
    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<PodUsage> {
        let rec = self.pod_sandbox(id)?;
        if rec.state != SandboxState::Ready {
            return Err(EngineError::WrongState {
                what: "pod sandbox",
                id: rec.id,
                state: "NOTREADY".into(),
                message: "stats are only kept for a ready pod".into(),
            });
        }
        self.pod_usage(rec).await
    }

    pub async fn list_pod_sandbox_stats(&self, f: &SandboxFilter) -> Result<Vec<PodUsage>> {
        let mut out = Vec::new();
        for rec in self.list_pod_sandboxes(f) {
            if rec.state == SandboxState::Ready {
                out.push(self.pod_usage(rec).await?);
            }
        }
        Ok(out)
    }

    async fn pod_usage(&self, rec: SandboxRecord) -> Result<PodUsage> {
        let containers = self
            .list_container_stats(&ContainerFilter {
                sandbox_id: rec.id.clone(),
                ..Default::default()
            })
            .await?;
        let sum = |f: &dyn Fn(&ContainerUsage) -> Option<u64>| -> Option<u64> {
            let v: Vec<u64> = containers.iter().filter_map(f).collect();
            (!v.is_empty()).then(|| v.iter().sum())
        };
        let mut processes = 0;
        for c in &containers {
            let cg = self.cgroups.clone();
            let path = c.record.cgroups_path.clone();
            processes += blocking(move || Ok(cg.process_count(&path).unwrap_or(0))).await?;
        }
        let interfaces = match rec.netns.clone() {
            Some(pin) if husk_sys::ns::is_pinned(&pin) => {
                let text = blocking(move || {
                    husk_sys::ns::read_net_file(Path::new(&pin), "dev")
                        .map_err(|e| EngineError::io("read net/dev in", pin.clone(), e))
                })
                .await?;
                parse_net_dev(&text)
            }
            _ => vec![],
        };
        Ok(PodUsage {
            timestamp: now_nanos(),
            cpu_usage_nanos: sum(&|c| c.cpu_usage_nanos),
            cpu_nano_cores: sum(&|c| c.cpu_nano_cores),
            memory_working_set: sum(&|c| c.memory.working_set_bytes),
            memory_usage: sum(&|c| c.memory.usage_bytes),
            memory_rss: sum(&|c| c.memory.rss_bytes),
            processes,
            interfaces,
            containers,
            record: rec,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parsing() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      10    2    0    0     0          0         0     3000       8    1    0    0     0       0          0\n";
        let i = parse_net_dev(text);
        assert_eq!(i.len(), 1);
        assert_eq!(
            (
                i[0].name.as_str(),
                i[0].rx_bytes,
                i[0].rx_errors,
                i[0].tx_bytes,
                i[0].tx_errors
            ),
            ("eth0", 5000, 2, 3000, 1)
        );
    }
}
