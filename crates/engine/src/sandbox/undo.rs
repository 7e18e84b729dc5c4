//! Undoing a pod's host objects, in the order they must go: the CNI attachment (DEL, while the
//! network namespace still exists), the processes (PID-namespace init, user-namespace helper),
//! `/dev/shm`, the namespace pins (the user namespace last: it owns the others), then the state
//! dir, the record and the name. StopPodSandbox, RemovePodSandbox, the rollback of a failed
//! RunPodSandbox and recovery all use these; each step is idempotent.

use std::time::Duration;

use husk_net::PodNetwork;

use super::network::pod_network;
use super::{SandboxIntent, SandboxRecord, SandboxState};
use crate::error::{EngineError, Result, blocking};
use crate::undo::{self, Janitor};

/// How long CNI plugins an earlier huskd started may still run before a DEL goes ahead.
const CNI_WAIT: Duration = Duration::from_secs(20);

impl Janitor {
    /// Whether the CNI cache holds an entry for pod `id` (written before ADD's first plugin).
    async fn cni_cached(&self, id: &str) -> bool {
        let (dir, id) = (self.cni_cache_dir.clone(), id.to_string());
        blocking(move || Ok(undo::cni_cache_entries(&dir).iter().any(|e| e.pod_id == id)))
            .await
            .unwrap_or(true)
    }

    /// CNI DEL for a pod whose network was set up, or may have been half way. A pod being
    /// created whose ADD never began (no cache entry) owes none. On failure the record keeps
    /// `network_teardown_pending`, so that the next stop, remove or start retries it.
    /// `after_crash`: first wait for plugins an earlier huskd left running for this pod.
    pub(crate) async fn pod_network_down(
        &self,
        rec: &SandboxRecord,
        after_crash: bool,
    ) -> Result<()> {
        if !rec.network_setup && !rec.network_teardown_pending {
            return Ok(());
        }
        if after_crash {
            let id = rec.id.clone();
            blocking(move || Ok(undo::wait_cni_plugins(&id, CNI_WAIT))).await?;
        }
        if rec.intent == Some(SandboxIntent::Creating) && !self.cni_cached(&rec.id).await {
            let s = self.sandboxes.clone();
            let id = rec.id.clone();
            blocking(move || s.update(&id, |r| r.network_setup = false)).await?;
            return Ok(());
        }
        let netns = rec.netns.clone().unwrap_or_default();
        let pn =
            pod_network(&rec.id, &netns, &rec.config, &rec.cgroup_parent).unwrap_or_else(|_| {
                PodNetwork::new(
                    &rec.id,
                    &netns,
                    &rec.config.namespace,
                    &rec.config.name,
                    &rec.config.uid,
                )
            });
        let result = self.network.teardown(&pn).await;
        let s = self.sandboxes.clone();
        let id = rec.id.clone();
        let ok = result.is_ok();
        blocking(move || {
            s.update(&id, |r| {
                if ok {
                    r.network_setup = false;
                    r.network_teardown_pending = false;
                    r.ips.clear();
                } else {
                    r.network_teardown_pending = true;
                }
            })
        })
        .await?;
        result.map_err(|e| EngineError::Network(e.to_string()))
    }

    /// The pod's processes, `/dev/shm` and namespace pins. Idempotent.
    pub(crate) async fn release_pod(&self, rec: &SandboxRecord) -> Result<()> {
        let rec = rec.clone();
        blocking(move || {
            if undo::pod_has_processes(&rec) {
                undo::kill_pod_processes(&rec.state_dir, rec.infra_pid);
            }
            if let Some(p) = &rec.pidns {
                undo::unpin(p)?;
            }
            if let Some(s) = &rec.shm {
                undo::unmount(s)?;
            }
            for p in [&rec.netns, &rec.ipcns, &rec.utsns, &rec.userns]
                .into_iter()
                .flatten()
            {
                undo::unpin(p)?;
            }
            Ok(())
        })
        .await
    }

    /// What remains of a released pod: its state dir, its record, its name.
    pub(crate) async fn forget_pod(&self, rec: &SandboxRecord) -> Result<()> {
        let dir = rec.state_dir.clone();
        blocking(move || undo::remove_dir(&dir)).await?;
        let (s, id) = (self.sandboxes.clone(), rec.id.clone());
        blocking(move || s.delete(&id)).await?;
        self.names.release(&rec.config.registrar_name(), &rec.id);
        Ok(())
    }

    /// Undoes a pod that was being created, from what its record names (the latest stored
    /// version, else `rec`). What cannot be undone now (a failing CNI DEL, a busy mount) leaves
    /// the pod NOTREADY and listed, for the kubelet's StopPodSandbox/RemovePodSandbox to finish,
    /// as containerd does.
    pub(crate) async fn roll_back_pod(&self, rec: SandboxRecord, after_crash: bool) -> Result<()> {
        let rec = self.sandboxes.get(&rec.id).unwrap_or(rec);
        let result = async {
            self.pod_network_down(&rec, after_crash).await?;
            self.release_pod(&rec).await?;
            self.forget_pod(&rec).await
        }
        .await;
        match &result {
            Ok(()) => tracing::info!(pod = %rec.id, "half-made pod rolled back"),
            Err(e) => {
                tracing::warn!(pod = %rec.id, error = %e,
                    "pod rollback incomplete: it stays NOTREADY for StopPodSandbox/RemovePodSandbox");
                let (s, id) = (self.sandboxes.clone(), rec.id.clone());
                let kept = blocking(move || {
                    s.update(&id, |r| {
                        r.intent = None;
                        r.state = SandboxState::NotReady;
                    })
                })
                .await?;
                if kept.is_none() {
                    self.names.release(&rec.config.registrar_name(), &rec.id);
                }
            }
        }
        result
    }
}
