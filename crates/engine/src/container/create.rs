//! CreateContainer: name → record *creating* (naming every host object it will have) → image
//! lease → overlay rootfs → OCI spec (staged mounts) → monitor runs `<runtime> create` →
//! CREATED. A failure (or a dropped caller) rolls back from the record; a crash leaves the
//! record for recovery to roll back.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use husk_monitor::config::MonitorConfig;

use super::{ContainerConfig, ContainerIntent, ContainerRecord, ContainerState};
use crate::engine::{CgroupDriver, Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};
use crate::failpoint;
use crate::names::new_id;
use crate::rollback::Rollback;
use crate::sandbox::{SandboxRecord, SandboxState};
use crate::spec::{self, input as si};
use crate::store::Record;

/// `log_path` must stay inside the pod's log directory.
fn log_file(pod: &SandboxRecord, rel: &str) -> Result<Option<PathBuf>> {
    if rel.is_empty() {
        return Ok(None);
    }
    if pod.config.log_directory.is_empty() {
        return Err(EngineError::Invalid(format!(
            "log_path {rel:?} given but the pod has no log_directory"
        )));
    }
    let p = Path::new(rel);
    let ok = p.components().all(|c| matches!(c, Component::Normal(_)));
    if !ok {
        return Err(EngineError::Invalid(format!(
            "log_path {rel:?} must be a relative path inside the pod's log directory"
        )));
    }
    Ok(Some(Path::new(&pod.config.log_directory).join(p)))
}

/// The pinned user namespace of a pod that has its own, with its maps.
fn pod_userns(pod: &SandboxRecord) -> Result<Option<(PathBuf, crate::sandbox::UsernsConfig)>> {
    let Some(pin) = &pod.userns else {
        return Ok(None);
    };
    let maps = pod.config.userns.clone().ok_or_else(|| {
        EngineError::Invalid(format!("pod {} has a user namespace but no maps", pod.id))
    })?;
    Ok(Some((pin.clone(), maps)))
}

impl Engine {
    /// Creates a container in a READY pod; the runtime's `create` has run when this returns.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        cfg: ContainerConfig,
    ) -> Result<ContainerRecord> {
        if cfg.name.trim().is_empty() {
            return Err(EngineError::Invalid(
                "container metadata.name is required".into(),
            ));
        }
        if cfg.image.trim().is_empty() {
            return Err(EngineError::Invalid("container image is required".into()));
        }
        let pod = self.pod_sandbox(sandbox_id)?;
        if pod.state != SandboxState::Ready {
            return Err(EngineError::WrongState {
                what: "pod sandbox",
                id: pod.id.clone(),
                state: "NOTREADY".into(),
                message: "containers can only be created in a ready pod".into(),
            });
        }
        let image = self
            .images
            .status(&cfg.image)?
            .ok_or_else(|| EngineError::NotFound {
                what: "image",
                id: cfg.image.clone(),
            })?;
        let log_path = log_file(&pod, &cfg.log_path)?;
        let (handler, _) = self.runtime(&pod.runtime_handler)?;
        let handler = handler.to_string();
        let image_config = self.images.config(&image)?.config.unwrap_or_default();
        let id = new_id();
        let _lock = self.locks.lock(id.clone()).await;
        let started = std::time::Instant::now();
        let monitor_dir = self.cfg.state_dir.join("s").join(&id[..16]);
        if monitor_dir.exists() {
            return Err(EngineError::Invalid(format!(
                "container id prefix {} collides",
                &id[..16]
            )));
        }
        let registrar_name = format!(
            "{}_{}_{}_{}_{}",
            cfg.name, pod.config.name, pod.config.namespace, pod.config.uid, cfg.attempt
        );
        self.names.reserve(&registrar_name, &id)?;
        // Everything the container will have on the host, named before any of it is made.
        let intent = ContainerRecord {
            version: ContainerRecord::VERSION,
            id: id.clone(),
            sandbox_id: pod.id.clone(),
            registrar_name,
            state: ContainerState::Created,
            intent: Some(ContainerIntent::Creating),
            image_id: image.id.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or_else(|| image.id.to_string()),
            runtime_handler: handler,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            pid: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            bundle: self.cfg.state_dir.join("containers").join(&id),
            monitor_dir,
            rw_dir: self.cfg.root.join("rw").join(&id),
            log_path,
            chain_ids: image.chain_ids(),
            cgroups_path: self.cgroups_path(&pod.cgroup_parent, &id),
            stop_signal: image_config.stop_signal.clone(),
            user: None,
            config: cfg,
        };
        let rb = {
            let (j, rec) = (self.janitor.clone(), intent.clone());
            Rollback::new("CreateContainer", async move {
                let _ = j.roll_back_container(rec, false).await;
            })
        };
        match self.create_steps(intent, &pod, image_config).await {
            Ok(rec) => {
                rb.disarm();
                tracing::info!(container = %id, pod = %pod.id, name = %rec.config.name, ms = started.elapsed().as_millis() as u64, "container created");
                self.watch_exit(&rec);
                self.emit(&rec.id, &rec.sandbox_id, crate::events::EventKind::Created);
                Ok(rec)
            }
            Err(e) => {
                tracing::info!(container = %id, error = %e, "create failed; rolling back");
                rb.run().await;
                Err(e)
            }
        }
    }

    /// Persists a container record (off the async workers).
    pub(crate) async fn persist_container(&self, rec: &ContainerRecord) -> Result<()> {
        let (c, r) = (self.containers.clone(), rec.clone());
        blocking(move || c.put(&r)).await
    }

    async fn create_steps(
        &self,
        mut rec: ContainerRecord,
        pod: &SandboxRecord,
        image_config: husk_image::manifest::ContainerConfig,
    ) -> Result<ContainerRecord> {
        failpoint::hit("container.after_name")?;
        // Intent before effect: nothing exists on the host that this record does not name.
        self.persist_container(&rec).await?;
        failpoint::hit("container.after_intent")?;
        let id = rec.id.clone();
        let handler = rec.runtime_handler.clone();
        self.images.leases().add(&id, rec.chain_ids.clone());

        // Root filesystem: the image's snapshots under a per-container upper dir. A pod with
        // its own user namespace: the layers go in idmapped (the container's root owns the
        // image's files) and the writable layer belongs to the mapped root, so that what the
        // container writes lands on disk with its host ids.
        let userns = pod_userns(pod)?;
        {
            let (images, r, userns) = (self.images.clone(), rec.clone(), userns.clone());
            blocking(move || make_rootfs(&images, &r, userns.as_ref())).await?;
        }
        failpoint::hit("container.after_rootfs")?;

        // Network and IPC are the pod's, whatever the container config says (the kubelet always
        // sends them equal); pid POD in a pod without a shared PID namespace means its own.
        let cfg = &rec.config;
        let mut settings = cfg.settings.clone();
        let ns = &mut settings.security.namespaces;
        ns.network = pod.config.namespaces.network;
        ns.ipc = pod.config.namespaces.ipc;
        if ns.pid == si::NamespaceMode::Pod && pod.pidns.is_none() {
            ns.pid = si::NamespaceMode::Container;
        }
        let input = si::SpecInput {
            identity: si::Identity {
                container_id: id.clone(),
                container_name: cfg.name.clone(),
                sandbox_id: pod.id.clone(),
                pod_name: pod.config.name.clone(),
                pod_namespace: pod.config.namespace.clone(),
                pod_uid: pod.config.uid.clone(),
                image_name: cfg.image.clone(),
            },
            container: settings,
            pod: si::PodSettings {
                hostname: std::fs::read_to_string(&pod.hostname_file)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                privileged: pod.config.privileged,
            },
            image: image_config,
            sandbox_files: si::SandboxFiles {
                hostname: Some(pod.hostname_file.clone()),
                hosts: Some(pod.hosts_file.clone()),
                resolv_conf: Some(pod.resolv_file.clone()),
                shm: pod.shm.clone(),
            },
            namespaces: si::PodNamespaces {
                network: pod.netns.clone(),
                ipc: pod.ipcns.clone(),
                uts: pod.utsns.clone(),
                pid: pod.pidns.clone(),
                target_pid: self.target_pid_ns(cfg)?,
                user: userns.clone().map(|(path, u)| si::PodUserNamespace {
                    path,
                    uids: u.uids,
                    gids: u.gids,
                }),
            },
            rootfs: rec.rootfs(),
            cgroups_path: rec.cgroups_path.clone(),
            host: self.host.clone(),
        };
        let stage_rro = !self
            .features_of(&handler)
            .await
            .is_some_and(|f| f.native_rro);
        let idmap_pin = userns.as_ref().map(|(p, _)| p.clone());
        let spec_bundle = rec.bundle.clone();
        let staged_any = stage_rro || idmap_pin.is_some();
        let user = blocking(move || {
            let mut input = input;
            spec::ensure_host_paths(&input)?;
            let ns_fd = match &idmap_pin {
                Some(p) => Some(std::fs::File::open(p).map_err(|e| EngineError::io("open", p, e))?),
                None => None,
            };
            if stage_rro || ns_fd.is_some() {
                super::staged::stage_mounts(
                    &spec_bundle,
                    &mut input.container.mounts,
                    stage_rro,
                    ns_fd.as_ref().map(|f| f.as_fd()),
                )?;
            }
            let s = spec::generate(&input)?;
            spec::write_spec(&s, &spec_bundle)?;
            Ok(s.process().as_ref().map(|p| {
                let u = p.user();
                super::ProcessUser {
                    uid: u.uid(),
                    gid: u.gid(),
                    supplemental_groups: u.additional_gids().clone().unwrap_or_default(),
                }
            }))
        })
        .await?;

        let rt_cfg = &self.cfg.runtimes[&handler];
        let mcfg = MonitorConfig {
            id: id.clone(),
            bundle: rec.bundle.clone(),
            runtime_path: rt_cfg.path.clone(),
            runtime_root: rt_cfg.root.clone(),
            systemd_cgroup: rt_cfg.systemd_cgroup,
            log_path: rec.log_path.clone(),
            socket: rec.monitor_socket(),
            exit_file: rec.exit_file(),
            pid_file: rec.bundle.join("pid"),
            runtime_log: rec.bundle.join("runtime.log"),
            tty: cfg.settings.tty,
            stdin: cfg.stdin,
            stdin_once: cfg.stdin_once,
            cgroup_oom_paths: self.oom_paths(&rec.cgroups_path),
        };
        let mpath = rec.monitor_config();
        let data =
            serde_json::to_vec_pretty(&mcfg).map_err(|e| EngineError::Task(e.to_string()))?;
        let log_path = rec.log_path.clone();
        let mp = mpath.clone();
        blocking(move || {
            if let Some(parent) = log_path.as_deref().and_then(Path::parent) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| EngineError::io("create", parent, e))?;
            }
            husk_sys::fs::atomic_write(&mp, &data).map_err(|e| EngineError::io("write", &mp, e))
        })
        .await?;
        let (mut child, pid) = husk_monitor::client::spawn_monitor(&self.cfg.monitor_bin, &mpath)
            .await
            .map_err(|e| EngineError::Monitor(e.to_string()))?;
        // The monitor outlives us; while we live we reap it when it exits.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        rec.pid = pid;
        failpoint::hit("container.after_create")?;
        // The runtime has bound the staged trees into the container's mount namespace: ours
        // go now, so that nothing of ours pins the host paths (a volume's owner may unmount
        // and remove them while the container runs, as with any runtime).
        if staged_any {
            let b = rec.bundle.clone();
            blocking(move || super::staged::unstage_all(&b)).await?;
        }
        failpoint::hit("container.before_persist")?;
        rec.user = user;
        rec.intent = None;
        self.persist_container(&rec).await?;
        Ok(rec)
    }

    /// `linux.cgroupsPath` for a container under `parent`.
    fn cgroups_path(&self, parent: &str, id: &str) -> String {
        match self.cfg.cgroup_driver {
            CgroupDriver::Cgroupfs => format!("{}/{id}", parent.trim_end_matches('/')),
            CgroupDriver::Systemd => format!("{parent}:husk:{id}"),
        }
    }

    /// Where the monitor looks for OOM kills of this container.
    fn oom_paths(&self, cgroups_path: &str) -> Vec<PathBuf> {
        if self.cfg.cgroup_driver == CgroupDriver::Systemd {
            return vec![];
        }
        let rel = cgroups_path.trim_start_matches('/');
        if self.host.cgroup_v2 {
            vec![Path::new("/sys/fs/cgroup").join(rel)]
        } else {
            vec![Path::new("/sys/fs/cgroup/memory").join(rel)]
        }
    }

    fn target_pid_ns(&self, cfg: &ContainerConfig) -> Result<Option<PathBuf>> {
        if cfg.settings.security.namespaces.pid != si::NamespaceMode::Target {
            return Ok(None);
        }
        let target = &cfg.pid_target_id;
        let t = self.containers.resolve("target container", target)?;
        if t.state != ContainerState::Running {
            return Err(t.wrong_state(
                "target container",
                "its pid namespace can only be shared while it runs",
            ));
        }
        Ok(Some(PathBuf::from(format!("/proc/{}/ns/pid", t.pid))))
    }
}

/// The directories and the overlay rootfs of a container (idmapped layers for a pod with its
/// own user namespace). Blocking.
fn make_rootfs(
    images: &husk_image::ImageService,
    rec: &ContainerRecord,
    userns: Option<&(PathBuf, crate::sandbox::UsernsConfig)>,
) -> Result<()> {
    let (rootfs, upper, work) = (
        rec.rootfs(),
        rec.rw_dir.join("upper"),
        rec.rw_dir.join("work"),
    );
    for d in [&rootfs, &upper, &work, &rec.monitor_dir] {
        std::fs::create_dir_all(d).map_err(|e| EngineError::io("create", d, e))?;
    }
    let mut lowers = images.snapshotter().lowerdirs(&rec.chain_ids)?;
    if lowers.is_empty() {
        let empty = rec.rw_dir.join("empty");
        std::fs::create_dir_all(&empty).map_err(|e| EngineError::io("create", &empty, e))?;
        lowers.push(empty);
    }
    let layer_dir = rec.layers_dir();
    if let Some((pin, u)) = userns {
        let ns_fd = std::fs::File::open(pin).map_err(|e| EngineError::io("open", pin, e))?;
        lowers = super::staged::idmapped_layers(&layer_dir, &lowers, ns_fd.as_fd())?;
        let (uid, gid) = (
            si::map_to_host(&u.uids, 0).unwrap_or(0),
            si::map_to_host(&u.gids, 0).unwrap_or(0),
        );
        rustix::fs::chown(
            &upper,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| EngineError::io("chown", &upper, e.into()))?;
    }
    husk_sys::mount::overlay(&lowers, Some((&upper, &work)), &rootfs)?;
    if userns.is_some() {
        // The overlay holds private clones of its layers.
        super::staged::release_layers(&layer_dir)?;
    }
    Ok(())
}
