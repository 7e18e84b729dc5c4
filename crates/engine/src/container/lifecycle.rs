//! StartContainer, StopContainer, RemoveContainer, status and list.

use std::time::Duration;

use super::{ContainerFilter, ContainerRecord, ContainerState, parse_signal};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};

/// How long a SIGKILLed container may take to be gone before StopContainer gives up.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// A container by id or unique prefix.
    pub fn container(&self, id: &str) -> Result<ContainerRecord> {
        self.containers.resolve("container", id)
    }

    pub fn list_containers(&self, f: &ContainerFilter) -> Vec<ContainerRecord> {
        let mut v: Vec<_> = self
            .containers
            .list()
            .into_iter()
            .filter(|c| f.matches(c))
            .collect();
        v.sort_by_key(|c| c.created_at);
        v
    }

    /// `<runtime> start`: CREATED → RUNNING. A failure leaves the container EXITED with reason
    /// `ContainerCannotRun` and the runtime's message.
    pub async fn start_container(&self, id: &str) -> Result<ContainerRecord> {
        let rec = self.container(id)?;
        let _lock = self.locks.lock(rec.id.clone()).await;
        // The exit watcher waits for this one: a container that exits at once is reported
        // STARTED before STOPPED (the watcher does not take the lifecycle lock, which a stop
        // holds while it waits for the exit).
        let _starting = self.locks.lock(starting_key(&rec.id)).await;
        let rec = self.container(&rec.id)?;
        if rec.state != ContainerState::Created {
            return Err(rec.wrong_state("container", "only a created container can be started"));
        }
        let (_, rt) = self.runtime(&rec.runtime_handler)?;
        let rt = rt.clone();
        let cid = rec.id.clone();
        // Taken before the start: a quick container may be reaped before `start` returns.
        let started_at = now_nanos();
        match blocking(move || rt.start(&cid).map_err(Into::into)).await {
            Ok(()) => {
                let r = self.containers.update(&rec.id, |r| {
                    if r.state == ContainerState::Created {
                        r.state = ContainerState::Running;
                    }
                    r.started_at = started_at;
                })?;
                tracing::info!(container = %rec.id, "container started");
                self.emit(&rec.id, &rec.sandbox_id, crate::events::EventKind::Started);
                r.ok_or_else(|| EngineError::NotFound {
                    what: "container",
                    id: rec.id.clone(),
                })
            }
            Err(e) => {
                let msg = e.to_string();
                self.containers.update(&rec.id, |r| {
                    r.state = ContainerState::Exited;
                    r.reason = "ContainerCannotRun".into();
                    r.message = msg.clone();
                    r.exit_code = 128;
                    r.finished_at = now_nanos();
                })?;
                // The created process is still waiting in the runtime: kill it.
                let (_, rt) = self.runtime(&rec.runtime_handler)?;
                let (rt, cid) = (rt.clone(), rec.id.clone());
                let _ = blocking(move || rt.kill(&cid, 9, true).map_err(Into::into)).await;
                Err(e)
            }
        }
    }

    /// Stops a container: its stop signal (or SIGTERM), then SIGKILL after `timeout_secs`.
    /// Returns once the process is gone. Stopping a stopped container is fine.
    pub async fn stop_container(&self, id: &str, timeout_secs: i64) -> Result<()> {
        // Idempotent like StopPodSandbox: a container that is gone is stopped (the kubelet
        // retries stops of containers whose removal it did not see).
        let rec = match self.container(id) {
            Ok(r) => r,
            Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let _lock = self.locks.lock(rec.id.clone()).await;
        let rec = self.container(&rec.id)?;
        if matches!(rec.state, ContainerState::Exited | ContainerState::Unknown) {
            return Ok(());
        }
        let (_, rt) = self.runtime(&rec.runtime_handler)?;
        let rt = rt.clone();
        if timeout_secs > 0 && rec.state == ContainerState::Running {
            let sig = rec
                .stop_signal
                .as_deref()
                .and_then(parse_signal)
                .unwrap_or(15);
            let (r, cid) = (rt.clone(), rec.id.clone());
            if let Err(e) = blocking(move || r.kill(&cid, sig, false).map_err(Into::into)).await
                && !is_not_running(&e)
            {
                return Err(e);
            }
            if self
                .wait_exited(&rec.id, Duration::from_secs(timeout_secs as u64))
                .await
            {
                tracing::info!(container = %rec.id, signal = sig, "container stopped");
                return Ok(());
            }
            tracing::info!(container = %rec.id, timeout_secs, "stop timeout: sending SIGKILL");
        }
        let (r, cid) = (rt.clone(), rec.id.clone());
        if let Err(e) = blocking(move || r.kill(&cid, 9, true).map_err(Into::into)).await
            && !is_not_running(&e)
        {
            return Err(e);
        }
        if !self.wait_exited(&rec.id, KILL_GRACE).await {
            return Err(EngineError::Timeout {
                what: format!("container {} still runs after SIGKILL", rec.id),
                secs: KILL_GRACE.as_secs(),
            });
        }
        tracing::info!(container = %rec.id, "container killed");
        Ok(())
    }

    /// Removes a container in any state (stopping it first). Idempotent.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let rec = match self.container(id) {
            Ok(r) => r,
            Err(EngineError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if matches!(rec.state, ContainerState::Running | ContainerState::Created) {
            self.stop_container(&rec.id, 0).await?;
        }
        let _lock = self.locks.lock(rec.id.clone()).await;
        let (_, rt) = self.runtime(&rec.runtime_handler)?;
        let (rt, cid) = (rt.clone(), rec.id.clone());
        blocking(move || rt.delete(&cid, true).map_err(Into::into)).await?;
        let r = rec.clone();
        blocking(move || {
            let rootfs = r.rootfs();
            husk_sys::mount::unmount_all(&rootfs)
                .map_err(|e| EngineError::io("unmount", &rootfs, e))?;
            // Staged volume trees go before the bundle is removed (never through them).
            super::staged::unstage_all(&r.bundle)?;
            for d in [&r.bundle, &r.rw_dir, &r.monitor_dir] {
                match std::fs::remove_dir_all(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(EngineError::io("remove", d, e)),
                }
            }
            Ok(())
        })
        .await?;
        self.containers.delete(&rec.id)?;
        self.names.release(&rec.registrar_name, &rec.id);
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.images.leases().remove(&rec.id);
        if self
            .images
            .status(&rec.image_id.to_string())
            .ok()
            .flatten()
            .is_none()
        {
            // Its image was removed while it ran: the snapshots can go now.
            self.images.gc().await?;
        }
        tracing::info!(container = %rec.id, "container removed");
        self.emit(&rec.id, &rec.sandbox_id, crate::events::EventKind::Deleted);
        Ok(())
    }
}

fn is_not_running(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Oci(
            husk_oci::OciError::NotRunning { .. } | husk_oci::OciError::NotFound { .. }
        )
    )
}

/// The lock a start holds until its STARTED event is out; the exit watcher takes it before
/// recording the exit.
pub(crate) fn starting_key(id: &str) -> String {
    format!("starting/{id}")
}
