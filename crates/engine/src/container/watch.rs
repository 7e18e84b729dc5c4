//! Learning container exits: a task per created container waits on its monitor's socket; when
//! the monitor is gone (or huskd restarted) the exit file it wrote is the truth.

use std::time::Duration;

use husk_monitor::client::MonitorClient;
use husk_monitor::protocol::{ExitRecord, read_exit_file};
use tokio::sync::watch;

use super::{ContainerRecord, ContainerState, exit_reason};
use crate::engine::Engine;

impl Engine {
    /// Starts (once) the task that records `rec`'s exit.
    pub(crate) fn watch_exit(&self, rec: &ContainerRecord) {
        let (tx, rx) = watch::channel(None);
        {
            let mut w = self.exits.lock().unwrap_or_else(|p| p.into_inner());
            if w.contains_key(&rec.id) {
                return;
            }
            w.insert(rec.id.clone(), rx);
        }
        let socket = rec.monitor_socket();
        let exit_file = rec.exit_file();
        let containers = self.containers_handle();
        let events = self.events.clone();
        let sandbox_id = rec.sandbox_id.clone();
        let id = rec.id.clone();
        let locks = self.locks.clone();
        tokio::spawn(async move {
            let exit = wait_for_exit(&socket, &exit_file).await;
            // A start in progress finishes (and says STARTED) first.
            let _starting = locks.lock(super::lifecycle::starting_key(&id)).await;
            let finished = parse_rfc3339_nanos(&exit.finished_at);
            let reason = exit_reason(&exit).to_string();
            let res = containers
                .update_async(&id, |r| {
                    // A record may already say EXITED (start failure); keep its reason.
                    if r.state != ContainerState::Exited {
                        r.state = ContainerState::Exited;
                        r.exit_code = exit.exit_code;
                        r.finished_at = finished;
                        r.reason = reason.clone();
                    }
                })
                .await;
            if let Err(e) = res {
                tracing::error!(container = %id, error = %e, "recording exit");
            }
            tracing::info!(container = %id, exit_code = exit.exit_code, oom = exit.oom_killed, "container exited");
            if exit.oom_killed {
                husk_telemetry::record_oom_kill();
            }
            let _ = events.send(crate::events::LifecycleEvent {
                id: id.clone(),
                sandbox_id,
                kind: crate::events::EventKind::Stopped,
                at: finished,
            });
            let _ = tx.send(Some(exit));
        });
    }

    /// Waits until the container has exited (its record says so), up to `timeout`.
    pub(crate) async fn wait_exited(&self, id: &str, timeout: Duration) -> bool {
        let rx = self
            .exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned();
        let Some(mut rx) = rx else {
            return self
                .containers
                .get(id)
                .is_none_or(|r| r.state == ContainerState::Exited);
        };
        tokio::time::timeout(timeout, rx.wait_for(|e| e.is_some()))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Asks the monitor to tell us when the container exits; if it can't (gone, crashed), falls
/// back to the exit file, and failing that reports an unknown exit (255).
async fn wait_for_exit(socket: &std::path::Path, exit_file: &std::path::Path) -> ExitRecord {
    loop {
        if let Ok(c) = MonitorClient::connect(socket).await
            && let Ok(e) = c.wait().await
        {
            return e;
        }
        // The monitor writes the exit file before it goes away.
        if let Some(e) = read_exit_file(exit_file) {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(e) = read_exit_file(exit_file) {
            return e;
        }
        if MonitorClient::connect(socket).await.is_err() {
            return ExitRecord {
                pid: 0,
                exit_code: 255,
                signal: None,
                oom_killed: false,
                finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            };
        }
    }
}

pub(crate) fn parse_rfc3339_nanos(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .unwrap_or_else(crate::engine::now_nanos)
}
