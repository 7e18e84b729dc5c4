//! Validation of a pod config; StopPodSandbox and RemovePodSandbox (each writes its intent
//! before its first effect, then undoes through the `Janitor` (`undo.rs`) on a task of its
//! own); status and list.

use std::path::Path;

use super::userns;
use super::{NamespaceMode, PodConfig, SandboxFilter, SandboxIntent, SandboxRecord, SandboxState};
use crate::engine::Engine;
use crate::error::{EngineError, Result, blocking};
use crate::events::EventKind;
use crate::failpoint;

pub fn validate(cfg: &PodConfig) -> Result<()> {
    userns::validate(cfg)?;
    for (what, v) in [
        ("name", &cfg.name),
        ("uid", &cfg.uid),
        ("namespace", &cfg.namespace),
    ] {
        if v.trim().is_empty() {
            return Err(EngineError::Invalid(format!(
                "sandbox metadata.{what} is required"
            )));
        }
    }
    if cfg.namespaces.network == NamespaceMode::Target
        || cfg.namespaces.ipc == NamespaceMode::Target
    {
        return Err(EngineError::Invalid(
            "TARGET namespace mode is only valid for pid".into(),
        ));
    }
    // The kernel's HOST_NAME_MAX; sethostname(2) refuses anything longer.
    if cfg.hostname.len() > 64 {
        return Err(EngineError::Invalid(format!(
            "hostname {:?} is {} bytes long; at most 64 are allowed",
            cfg.hostname,
            cfg.hostname.len()
        )));
    }
    if !cfg.log_directory.is_empty() && !Path::new(&cfg.log_directory).is_absolute() {
        return Err(EngineError::Invalid(format!(
            "log_directory {:?} must be an absolute path",
            cfg.log_directory
        )));
    }
    for k in cfg.sysctls.keys() {
        let net = k.starts_with("net.");
        let ipc = k.starts_with("kernel.shm")
            || k.starts_with("kernel.msg")
            || k == "kernel.sem"
            || k.starts_with("fs.mqueue.");
        if net && cfg.namespaces.network == NamespaceMode::Node {
            return Err(EngineError::Invalid(format!(
                "sysctl {k} needs the pod's own network namespace"
            )));
        }
        if ipc && cfg.namespaces.ipc == NamespaceMode::Node {
            return Err(EngineError::Invalid(format!(
                "sysctl {k} needs the pod's own IPC namespace"
            )));
        }
        if !net && !ipc {
            return Err(EngineError::Invalid(format!(
                "sysctl {k} is not namespaced: not allowed in a pod"
            )));
        }
    }
    Ok(())
}

impl Engine {
    /// Stops every container of the pod and releases its namespaces and mounts. Idempotent:
    /// an unknown (already removed) pod is fine, as the CRI asks.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = match self.sandboxes.resolve("pod sandbox", id) {
            Ok(r) if r.visible() => r,
            Ok(_) | Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self
            .containers
            .list()
            .into_iter()
            .filter(|c| c.sandbox_id == rec.id)
        {
            self.stop_container(&c.id, 0).await?;
        }
        let _lock = self.locks.lock(rec.id.clone()).await;
        let Some(rec) = self.sandboxes.get(&rec.id).filter(|r| r.visible()) else {
            return Ok(());
        };
        let was_ready = rec.state == SandboxState::Ready;
        let pod_id = rec.id.clone();
        // Intent before effect (a stop of a stopped pod, with nothing owed, undoes nothing).
        let rec = if was_ready || rec.network_teardown_pending || rec.intent.is_some() {
            let r = self
                .set_pod_intent(&rec.id, SandboxIntent::Stopping)
                .await?;
            failpoint::hit("sandbox.stop.after_intent")?;
            r
        } else {
            rec
        };
        self.janitor
            .detached(move |j| async move {
                // Teardown always runs; if CNI DEL fails the pod keeps its netns and says so,
                // and the kubelet's retry (or remove, or our next start) runs it again.
                j.pod_network_down(&rec, false).await?;
                failpoint::hit("sandbox.stop.after_cni_del")?;
                j.release_pod(&rec).await?;
                failpoint::hit("sandbox.stop.after_unpin")?;
                if rec.state == SandboxState::Ready || rec.intent.is_some() {
                    let (s, id) = (j.sandboxes.clone(), rec.id.clone());
                    blocking(move || {
                        s.update(&id, |r| {
                            r.state = SandboxState::NotReady;
                            if r.intent == Some(SandboxIntent::Stopping) {
                                r.intent = None;
                            }
                        })
                    })
                    .await?;
                }
                Ok(())
            })
            .await?;
        if was_ready {
            tracing::info!(pod = %pod_id, "pod sandbox stopped");
            self.emit(&pod_id, &pod_id, EventKind::Stopped);
        }
        Ok(())
    }

    /// Writes `intent` into a pod's record before its first effect; returns the record.
    async fn set_pod_intent(&self, id: &str, intent: SandboxIntent) -> Result<SandboxRecord> {
        let (s, i) = (self.sandboxes.clone(), id.to_string());
        blocking(move || {
            s.update(&i, |r| {
                r.intent = Some(intent);
                // A pod being removed is stopped whatever happens next.
                if intent == SandboxIntent::Removing {
                    r.state = SandboxState::NotReady;
                }
            })
        })
        .await?
        .ok_or_else(|| EngineError::NotFound {
            what: "pod sandbox",
            id: id.to_string(),
        })
    }

    /// Removes the pod and everything in it. Idempotent: an unknown id is fine.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = match self.sandboxes.resolve("pod sandbox", id) {
            Ok(r) if r.visible() => r,
            Ok(_) | Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in self
            .containers
            .list()
            .into_iter()
            .filter(|c| c.sandbox_id == rec.id)
        {
            self.remove_container(&c.id).await?;
        }
        let _lock = self.locks.lock(rec.id.clone()).await;
        if !self.sandboxes.get(&rec.id).is_some_and(|r| r.visible()) {
            return Ok(());
        }
        let rec = self
            .set_pod_intent(&rec.id, SandboxIntent::Removing)
            .await?;
        failpoint::hit("sandbox.remove.after_intent")?;
        let id = rec.id.clone();
        self.janitor
            .detached(move |j| async move {
                j.pod_network_down(&rec, false).await?;
                j.release_pod(&rec).await?;
                failpoint::hit("sandbox.remove.after_release")?;
                j.forget_pod(&rec).await
            })
            .await?;
        tracing::info!(pod = %id, "pod sandbox removed");
        self.emit(&id, &id, EventKind::Deleted);
        Ok(())
    }

    /// A pod by id or unique id prefix (one being created is not there yet).
    pub fn pod_sandbox(&self, id: &str) -> Result<SandboxRecord> {
        match self.sandboxes.resolve("pod sandbox", id) {
            Ok(r) if r.visible() => Ok(r),
            Ok(r) => Err(EngineError::NotFound {
                what: "pod sandbox",
                id: r.id,
            }),
            Err(e) => Err(e),
        }
    }

    pub fn list_pod_sandboxes(&self, f: &SandboxFilter) -> Vec<SandboxRecord> {
        let mut v: Vec<_> = self
            .sandboxes
            .list()
            .into_iter()
            .filter(|s| s.visible() && f.matches(s))
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }
}
