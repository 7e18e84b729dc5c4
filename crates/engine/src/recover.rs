//! Restart recovery: after huskd starts, every operation a crash cut short is finished or undone
//! from its intent record, and the records are reconciled with what still runs; then the sweep
//! (`sweep.rs`) removes what no record names.
//!
//! | record | recovery |
//! |---|---|
//! | container *creating* | rolled back: runtime `delete --force`, monitor, mounts, dirs, name, lease |
//! | container *starting* | the runtime says: still `created` → CREATED again; otherwise RUNNING |
//! | container *removing* | the removal is finished |
//! | container CREATED/RUNNING | an exit file → EXITED with its code; else watched again |
//! | pod *creating* | rolled back (CNI DEL from the cache, init, `/dev/shm`, pins, dir, name); if that cannot finish, NOTREADY for the kubelet to stop and remove |
//! | pod *stopping* | the stop is finished (containers, CNI DEL, pins) |
//! | pod *removing* | the removal is finished |
//! | pod READY with its pins gone (a reboot) | NOTREADY |
//! | pod with a failed CNI DEL | DEL retried |

use husk_monitor::protocol::ExitRecord;

use crate::container::{ContainerIntent, ContainerRecord, ContainerState, exit_reason};
use crate::engine::Engine;
use crate::error::{Result, blocking};
use crate::sandbox::{SandboxIntent, SandboxRecord, SandboxState};

/// What recovery does with a pod record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PodPlan {
    RollBack,
    FinishStop,
    FinishRemove,
    /// Settled, but a CNI DEL is owed.
    RetryTeardown,
    /// READY, but its namespaces are gone.
    MarkNotReady,
    Keep,
}

/// Decides a pod's recovery; `pins_alive`: every namespace pin it names is a live namespace.
pub(crate) fn plan_pod(rec: &SandboxRecord, pins_alive: bool) -> PodPlan {
    match rec.intent {
        Some(SandboxIntent::Creating) => PodPlan::RollBack,
        Some(SandboxIntent::Stopping) => PodPlan::FinishStop,
        Some(SandboxIntent::Removing) => PodPlan::FinishRemove,
        None if rec.network_teardown_pending => PodPlan::RetryTeardown,
        None if rec.state == SandboxState::Ready && !pins_alive => PodPlan::MarkNotReady,
        None => PodPlan::Keep,
    }
}

/// What recovery does with a container record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ContainerPlan {
    RollBack,
    FinishRemove,
    /// A start cut short before the runtime ran it: CREATED again, for the kubelet to start.
    Unstarted,
    /// It exited while huskd was down (the monitor's exit file).
    Exited(ExitRecord),
    /// It runs (or waits created): watch its monitor again; `started`: it was being started
    /// and the runtime ran it, so it is RUNNING.
    Watch {
        started: bool,
    },
    /// Settled (EXITED meanwhile) but still saying *starting*: the intent goes.
    ClearIntent,
    Keep,
}

/// Decides a container's recovery from its record, its exit file and (asked only for a
/// start cut short) whether the runtime still has it waiting in `created`.
pub(crate) fn plan_container(
    rec: &ContainerRecord,
    exit: Option<ExitRecord>,
    runtime_says_created: Option<bool>,
) -> ContainerPlan {
    match rec.intent {
        Some(ContainerIntent::Creating) => return ContainerPlan::RollBack,
        Some(ContainerIntent::Removing) => return ContainerPlan::FinishRemove,
        Some(ContainerIntent::Starting) | None => {}
    }
    let starting = rec.intent == Some(ContainerIntent::Starting);
    if !matches!(rec.state, ContainerState::Created | ContainerState::Running) {
        return if starting {
            ContainerPlan::ClearIntent
        } else {
            ContainerPlan::Keep
        };
    }
    match exit {
        Some(e) => ContainerPlan::Exited(e),
        None if starting && runtime_says_created == Some(true) => ContainerPlan::Unstarted,
        None => ContainerPlan::Watch { started: starting },
    }
}

impl Engine {
    /// Reconciles every record, then sweeps; call once at start, before serving.
    pub async fn recover(&self) -> Result<()> {
        let mut running = 0;
        for c in self.containers.list() {
            let exit = {
                let f = c.exit_file();
                blocking(move || Ok(husk_monitor::protocol::read_exit_file(&f))).await?
            };
            let created = if c.intent == Some(ContainerIntent::Starting) && exit.is_none() {
                self.runtime_says_created(&c).await
            } else {
                None
            };
            let plan = plan_container(&c, exit, created);
            if plan != ContainerPlan::Keep {
                tracing::info!(container = %c.id, intent = ?c.intent, state = ?c.state, plan = ?plan, "recovering container");
            }
            if matches!(plan, ContainerPlan::Watch { .. }) {
                running += 1;
            }
            if let Err(e) = self.recover_container(c.clone(), plan).await {
                tracing::warn!(container = %c.id, error = %e, "container recovery failed");
            }
        }
        for s in self.sandboxes.list() {
            let pins = [&s.netns, &s.ipcns, &s.utsns, &s.pidns]
                .into_iter()
                .flatten()
                .cloned()
                .collect::<Vec<_>>();
            let alive =
                blocking(move || Ok(pins.iter().all(|p| husk_sys::ns::is_pinned(p)))).await?;
            let plan = plan_pod(&s, alive);
            if plan != PodPlan::Keep {
                tracing::info!(pod = %s.id, intent = ?s.intent, state = ?s.state, plan = ?plan, "recovering pod");
            }
            if let Err(e) = self.recover_pod(s.clone(), plan).await {
                tracing::warn!(pod = %s.id, error = %e, "pod recovery failed");
            }
        }
        let report = self.sweep().await;
        tracing::info!(
            pods = self.sandboxes.list().len(),
            containers = self.containers.list().len(),
            running,
            swept = report.total(),
            "recovered state"
        );
        Ok(())
    }

    /// Whether the runtime has the container waiting in `created` (None: cannot tell).
    async fn runtime_says_created(&self, c: &ContainerRecord) -> Option<bool> {
        let rt = self.janitor.runtime(&c.runtime_handler)?.clone();
        let id = c.id.clone();
        let state = blocking(move || rt.state(&id).map_err(Into::into)).await;
        match state {
            Ok(Some(s)) => Some(s.status == husk_oci::Status::Created),
            Ok(None) => Some(false),
            Err(e) => {
                tracing::warn!(container = %c.id, error = %e, "runtime state unknown");
                None
            }
        }
    }

    async fn recover_container(&self, c: ContainerRecord, plan: ContainerPlan) -> Result<()> {
        match plan {
            ContainerPlan::RollBack => self.janitor.roll_back_container(c, true).await,
            ContainerPlan::FinishRemove => {
                self.janitor.container_runtime_down(&c, true).await?;
                self.janitor.container_files_down(&c).await?;
                self.janitor.forget_container(&c).await?;
                tracing::info!(container = %c.id, "unfinished removal finished");
                Ok(())
            }
            ContainerPlan::Unstarted => {
                self.update_container(&c.id, |r| {
                    r.intent = None;
                    r.started_at = 0;
                })
                .await?;
                self.watch_exit(&c);
                Ok(())
            }
            ContainerPlan::Exited(exit) => {
                let reason = exit_reason(&exit).to_string();
                let finished = crate::container::parse_finished(&exit.finished_at);
                let code = exit.exit_code;
                self.update_container(&c.id, move |r| {
                    r.state = ContainerState::Exited;
                    r.intent = None;
                    r.exit_code = code;
                    r.finished_at = finished;
                    r.reason = reason;
                })
                .await?;
                tracing::info!(container = %c.id, exit_code = exit.exit_code, "exited while huskd was down");
                if exit.oom_killed {
                    husk_telemetry::record_oom_kill();
                }
                Ok(())
            }
            ContainerPlan::Watch { started } => {
                let c = if started {
                    self.update_container(&c.id, |r| {
                        r.intent = None;
                        r.state = ContainerState::Running;
                    })
                    .await?
                } else {
                    c
                };
                self.watch_exit(&c);
                Ok(())
            }
            ContainerPlan::ClearIntent => {
                self.update_container(&c.id, |r| r.intent = None).await?;
                Ok(())
            }
            ContainerPlan::Keep => Ok(()),
        }
    }

    async fn recover_pod(&self, s: SandboxRecord, plan: PodPlan) -> Result<()> {
        match plan {
            PodPlan::RollBack => self.janitor.roll_back_pod(s, true).await,
            PodPlan::FinishStop => {
                self.janitor.pod_network_down(&s, true).await?;
                self.stop_pod_sandbox(&s.id).await
            }
            PodPlan::FinishRemove => {
                self.janitor.pod_network_down(&s, true).await?;
                self.remove_pod_sandbox(&s.id).await
            }
            PodPlan::RetryTeardown => {
                self.janitor.pod_network_down(&s, true).await?;
                tracing::info!(pod = %s.id, "pending network teardown done");
                Ok(())
            }
            PodPlan::MarkNotReady => {
                tracing::warn!(pod = %s.id, "namespaces gone (reboot?): pod is NOTREADY");
                let (st, id) = (self.sandboxes.clone(), s.id.clone());
                blocking(move || st.update(&id, |r| r.state = SandboxState::NotReady)).await?;
                Ok(())
            }
            PodPlan::Keep => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
