//! Undoing a container's host objects, in the order they must go: the runtime's container
//! (`delete --force`, after any runtime call an earlier huskd left running), the monitor if it
//! is still there, staged volume trees, idmapped layers, the rootfs overlay, the bundle, monitor
//! and writable-layer dirs, then the record, the name, the exit watcher and the image lease.
//! RemoveContainer, the rollback of a failed CreateContainer and recovery all use these; each
//! step is idempotent.

use std::time::Duration;

use super::{ContainerRecord, ContainerState, staged};
use crate::engine::now_nanos;
use crate::error::{Result, blocking};
use crate::undo::{self, Janitor};

/// How long runtime calls an earlier huskd's monitor started may still run.
const RUNTIME_WAIT: Duration = Duration::from_secs(15);

impl Janitor {
    /// `<runtime> delete --force` of the container. `after_crash`: first wait for runtime
    /// calls about it that outlived an earlier huskd (a `create` still under way).
    pub(crate) async fn container_runtime_down(
        &self,
        rec: &ContainerRecord,
        after_crash: bool,
    ) -> Result<()> {
        let rt = self.runtime(&rec.runtime_handler).cloned();
        let id = rec.id.clone();
        blocking(move || {
            if after_crash {
                undo::wait_runtime_calls(&id, RUNTIME_WAIT);
            }
            match &rt {
                Some(rt) => undo::runtime_delete(rt, &id),
                None => {
                    tracing::warn!(container = %id, "its runtime handler is no longer configured");
                    Ok(())
                }
            }
        })
        .await
    }

    /// The monitor (if it still runs), staged mounts, idmapped layers, the rootfs and the
    /// container's dirs. Staged trees and mounts go before any dir is removed (never through
    /// them).
    pub(crate) async fn container_files_down(&self, rec: &ContainerRecord) -> Result<()> {
        let r = rec.clone();
        blocking(move || {
            let killed = undo::kill_monitor(&r.bundle);
            if killed > 0 {
                tracing::debug!(container = %r.id, "killed its monitor");
            }
            staged::unstage_all(&r.bundle)?;
            staged::release_layers(&r.layers_dir())?;
            undo::unmount(&r.rootfs())?;
            for d in [&r.bundle, &r.monitor_dir, &r.rw_dir] {
                undo::remove_dir(d)?;
            }
            Ok(())
        })
        .await
    }

    /// What remains of a container once its host objects are gone: the record, the name, the
    /// exit watcher, the image lease.
    pub(crate) async fn forget_container(&self, rec: &ContainerRecord) -> Result<()> {
        let (c, id) = (self.containers.clone(), rec.id.clone());
        blocking(move || c.delete(&id)).await?;
        self.names.release(&rec.registrar_name, &rec.id);
        self.exits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&rec.id);
        self.images.leases().remove(&rec.id);
        Ok(())
    }

    /// Undoes a container that was being created, from what its record names (the latest
    /// stored version, else `rec`). If that cannot finish (the runtime refuses the delete, a
    /// mount is busy), the container is left EXITED and listed, for RemoveContainer to finish.
    pub(crate) async fn roll_back_container(
        &self,
        rec: ContainerRecord,
        after_crash: bool,
    ) -> Result<()> {
        let rec = self.containers.get(&rec.id).unwrap_or(rec);
        let result = async {
            self.container_runtime_down(&rec, after_crash).await?;
            self.container_files_down(&rec).await?;
            self.forget_container(&rec).await
        }
        .await;
        match &result {
            Ok(()) => tracing::info!(container = %rec.id, "half-made container rolled back"),
            Err(e) => {
                tracing::warn!(container = %rec.id, error = %e,
                    "container rollback incomplete: it stays EXITED for RemoveContainer");
                let (c, id, msg) = (self.containers.clone(), rec.id.clone(), e.to_string());
                let kept = blocking(move || {
                    c.update(&id, |r| {
                        r.intent = None;
                        r.state = ContainerState::Exited;
                        r.exit_code = 128;
                        r.reason = "CreateFailed".into();
                        r.message = msg;
                        r.finished_at = now_nanos();
                    })
                })
                .await?;
                if kept.is_none() {
                    self.names.release(&rec.registrar_name, &rec.id);
                }
            }
        }
        result
    }
}
