//! Container resource usage (CPU with a rate from two samples, memory with the working-set rule,
//! the writable layer's bytes and inodes) and the two RPCs that act on a running container's
//! resources and log: UpdateContainerResources and ReopenContainerLog.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use husk_monitor::client::MonitorClient;

use super::{ContainerFilter, ContainerRecord, ContainerState};
use crate::engine::Engine;
use crate::error::{EngineError, Result, blocking};
use crate::spec::{self, input::Resources};

/// Usage of one container.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub record: ContainerRecord,
    /// Unix nanoseconds of the sample.
    pub timestamp: i64,
    pub cpu_usage_nanos: Option<u64>,
    pub cpu_nano_cores: Option<u64>,
    pub memory: husk_cgroups::Memory,
    /// The writable layer (`upper`): its directory, bytes and inodes.
    pub writable_dir: PathBuf,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
}

impl Engine {
    /// Usage of one container (its cgroup must exist: a running or created container).
    pub async fn container_stats(&self, id: &str) -> Result<ContainerUsage> {
        let rec = self.container(id)?;
        self.usage(rec).await
    }

    /// Usage of every running container matching `f`.
    pub async fn list_container_stats(&self, f: &ContainerFilter) -> Result<Vec<ContainerUsage>> {
        let mut out = Vec::new();
        for rec in self.list_containers(f) {
            if rec.state != ContainerState::Running {
                continue;
            }
            match self.usage(rec).await {
                Ok(u) => out.push(u),
                Err(EngineError::NotFound { .. }) => {} // exited meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn usage(&self, rec: ContainerRecord) -> Result<ContainerUsage> {
        let cg = self.cgroups.clone();
        let path = rec.cgroups_path.clone();
        let upper = rec.rw_dir.join("upper");
        let (stats, (bytes, inodes)) = blocking(move || {
            let stats = cg.stats(&path).map_err(|e| match e {
                husk_cgroups::CgroupError::NotFound { path } => EngineError::NotFound {
                    what: "container cgroup",
                    id: path.display().to_string(),
                },
                other => EngineError::Task(other.to_string()),
            })?;
            Ok((stats, disk_usage(&upper)))
        })
        .await?;
        let timestamp = stats
            .timestamp
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let nano_cores = stats.cpu.usage_nanos.and_then(|u| {
            self.cpu_rate
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .update(&rec.id, stats.timestamp, u)
        });
        Ok(ContainerUsage {
            timestamp,
            cpu_usage_nanos: stats.cpu.usage_nanos,
            cpu_nano_cores: nano_cores,
            memory: stats.memory,
            writable_dir: rec.rw_dir.join("upper"),
            writable_bytes: bytes,
            writable_inodes: inodes,
            record: rec,
        })
    }

    /// Applies new resources through `<runtime> update`, persists them (ContainerStatus shows
    /// them). Bad values are InvalidArgument.
    pub async fn update_container_resources(&self, id: &str, res: Resources) -> Result<()> {
        let rec = self.container(id)?;
        let _lock = self.locks.lock(rec.id.clone()).await;
        if !matches!(rec.state, ContainerState::Running | ContainerState::Created) {
            return Err(rec.wrong_state("container", "resources can only be updated while it runs"));
        }
        let json = spec::update_resources(&res, &self.host)?;
        let (_, rt) = self.runtime(&rec.runtime_handler)?;
        let (rt, cid) = (rt.clone(), rec.id.clone());
        blocking(move || rt.update(&cid, &json).map_err(Into::into)).await?;
        self.containers
            .update_async(&rec.id, |r| r.config.settings.resources = Some(res))
            .await?;
        tracing::info!(container = %rec.id, "resources updated");
        Ok(())
    }

    /// Asks the monitor to reopen the log file (the kubelet has renamed it for rotation).
    pub async fn reopen_container_log(&self, id: &str) -> Result<()> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Running {
            return Err(rec.wrong_state(
                "container",
                "the log of a container that is not running cannot be reopened",
            ));
        }
        MonitorClient::new(rec.monitor_socket())
            .reopen_log()
            .await
            .map_err(|e| EngineError::Monitor(e.to_string()))
    }
}

/// Bytes and inodes under `dir` (not following symlinks, not crossing into other mounts).
fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return (0, 0);
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.path().symlink_metadata() else {
                continue;
            };
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() && md.dev() == root.dev() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}
