//! StartContainer (intent *starting* before `<runtime> start`), StopContainer, RemoveContainer
//! (intent *removing* before the first undo, then the `Janitor` (`undo.rs`) on a task of its
//! own), status and list.

use std::time::Duration;

use super::{ContainerFilter, ContainerIntent, ContainerRecord, ContainerState, parse_signal};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};
use crate::failpoint;

/// How long a SIGKILLed container may take to be gone before StopContainer gives up.
const KILL_GRACE: Duration = Duration::from_secs(30);

impl Engine {
    /// A container by id or unique prefix (one being created is not there yet).
    pub fn container(&self, id: &str) -> Result<ContainerRecord> {
        match self.containers.resolve("container", id) {
            Ok(r) if r.visible() => Ok(r),
            Ok(r) => Err(EngineError::NotFound {
                what: "container",
                id: r.id,
            }),
            Err(e) => Err(e),
        }
    }

    pub fn list_containers(&self, f: &ContainerFilter) -> Vec<ContainerRecord> {
        let mut v: Vec<_> = self
            .containers
            .list()
            .into_iter()
            .filter(|c| c.visible() && f.matches(c))
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
        // Intent before effect: recovery asks the runtime whether this start happened.
        self.update_container(&rec.id, move |r| {
            r.intent = Some(ContainerIntent::Starting);
            r.started_at = started_at;
        })
        .await?;
        failpoint::hit("container.start.after_intent")?;
        let started = blocking(move || rt.start(&cid).map_err(Into::into)).await;
        if started.is_ok() {
            failpoint::hit("container.start.after_runtime")?;
        }
        match started {
            Ok(()) => {
                let r = self
                    .update_container(&rec.id, move |r| {
                        if r.state == ContainerState::Created {
                            r.state = ContainerState::Running;
                        }
                        r.started_at = started_at;
                        r.intent = None;
                    })
                    .await?;
                tracing::info!(container = %rec.id, "container started");
                self.emit(&rec.id, &rec.sandbox_id, crate::events::EventKind::Started);
                Ok(r)
            }
            Err(e) => {
                let msg = e.to_string();
                self.update_container(&rec.id, move |r| {
                    r.state = ContainerState::Exited;
                    r.intent = None;
                    r.reason = "ContainerCannotRun".into();
                    r.message = msg;
                    r.exit_code = 128;
                    r.finished_at = now_nanos();
                })
                .await?;
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
            failpoint::hit("container.stop.after_signal")?;
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
        if timeout_secs <= 0 || rec.state != ContainerState::Running {
            failpoint::hit("container.stop.after_signal")?;
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
        if !self.containers.get(&rec.id).is_some_and(|r| r.visible()) {
            return Ok(());
        }
        // Intent before effect: recovery finishes a removal that a crash cut short.
        let rec = self
            .update_container(&rec.id, |r| r.intent = Some(ContainerIntent::Removing))
            .await?;
        failpoint::hit("container.remove.after_intent")?;
        let (id, sandbox_id, image_id) =
            (rec.id.clone(), rec.sandbox_id.clone(), rec.image_id.clone());
        self.janitor
            .detached(move |j| async move {
                j.container_runtime_down(&rec, false).await?;
                failpoint::hit("container.remove.after_delete")?;
                j.container_files_down(&rec).await?;
                failpoint::hit("container.remove.after_unmount")?;
                j.forget_container(&rec).await
            })
            .await?;
        if self
            .images
            .status(&image_id.to_string())
            .ok()
            .flatten()
            .is_none()
        {
            // Its image was removed while it ran: the snapshots can go now.
            self.images.gc().await?;
        }
        tracing::info!(container = %id, "container removed");
        self.emit(&id, &sandbox_id, crate::events::EventKind::Deleted);
        Ok(())
    }

    /// Updates a container record (off the async workers); the record as written.
    pub(crate) async fn update_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord) + Send + 'static,
    ) -> Result<ContainerRecord> {
        let (c, i) = (self.containers.clone(), id.to_string());
        blocking(move || c.update(&i, f))
            .await?
            .ok_or_else(|| EngineError::NotFound {
                what: "container",
                id: id.to_string(),
            })
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
