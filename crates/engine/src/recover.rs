//! Restart recovery: after huskd starts, reconcile the records with what still runs. Containers
//! kept running under their monitors; exits that happened meanwhile are read from the exit
//! files; pods whose namespace pins are gone (a reboot) become NOTREADY.

use crate::container::{ContainerState, exit_reason};
use crate::engine::Engine;
use crate::error::Result;
use crate::sandbox::SandboxState;

impl Engine {
    /// Reconciles every record; call once at start.
    pub async fn recover(&self) -> Result<()> {
        for s in self.sandboxes.list() {
            if s.network_teardown_pending {
                match self.teardown_network(&s).await {
                    Ok(()) => tracing::info!(pod = %s.id, "pending network teardown done"),
                    Err(e) => {
                        tracing::warn!(pod = %s.id, error = %e, "network teardown still failing")
                    }
                }
            }
            if s.state != SandboxState::Ready {
                continue;
            }
            let alive = [&s.netns, &s.ipcns, &s.utsns, &s.pidns]
                .into_iter()
                .flatten()
                .all(|p| husk_sys::ns::is_pinned(p));
            if !alive {
                tracing::warn!(pod = %s.id, "namespaces gone (reboot?): pod is NOTREADY");
                self.sandboxes
                    .update(&s.id, |r| r.state = SandboxState::NotReady)?;
            }
        }
        let mut running = 0;
        for c in self.containers.list() {
            match c.state {
                ContainerState::Created | ContainerState::Running => {
                    if let Some(exit) = husk_monitor::protocol::read_exit_file(&c.exit_file()) {
                        let reason = exit_reason(&exit).to_string();
                        let finished = crate::container::parse_finished(&exit.finished_at);
                        self.containers.update(&c.id, |r| {
                            r.state = ContainerState::Exited;
                            r.exit_code = exit.exit_code;
                            r.finished_at = finished;
                            r.reason = reason;
                        })?;
                        tracing::info!(container = %c.id, exit_code = exit.exit_code, "exited while huskd was down");
                        if exit.oom_killed {
                            husk_telemetry::record_oom_kill();
                        }
                    } else {
                        running += 1;
                        self.watch_exit(&c);
                    }
                }
                ContainerState::Exited | ContainerState::Unknown => {}
            }
        }
        tracing::info!(
            pods = self.sandboxes.list().len(),
            containers = self.containers.list().len(),
            running,
            "recovered state"
        );
        Ok(())
    }
}
