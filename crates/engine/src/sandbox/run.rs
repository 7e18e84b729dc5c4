//! RunPodSandbox: validate, reserve the name, write the record *creating* (naming every host
//! object the pod will have), then make them: the state dir, the namespace pins (from a
//! dedicated thread, or through `husk-monitor userns`), the PID-namespace init, CNI ADD beside
//! `/dev/shm` and the pod's files, and last the record READY. A failure (or a dropped caller)
//! rolls back from the record; a crash leaves the record for recovery to roll back.

use std::path::{Path, PathBuf};

use husk_sys::ns::{self, PinRequest};

use super::{NamespaceMode, PodConfig, SandboxIntent, SandboxRecord, SandboxState, files};
use super::{lifecycle::validate, network, userns};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};
use crate::events::EventKind;
use crate::failpoint;
use crate::names::new_id;
use crate::rollback::Rollback;
use crate::store::Record;

impl Engine {
    /// Creates a pod: reserves its name, pins its namespaces, writes its files, mounts its
    /// `/dev/shm`, persists it READY. Any failure undoes every step.
    pub async fn run_pod_sandbox(&self, cfg: PodConfig) -> Result<SandboxRecord> {
        validate(&cfg)?;
        let (handler, _) = self.runtime(&cfg.runtime_handler)?;
        let handler = handler.to_string();
        let id = new_id();
        let cgroup_parent = if cfg.cgroup_parent.is_empty() {
            self.cfg.default_cgroup_parent.clone()
        } else {
            cfg.cgroup_parent.clone()
        };
        // The CNI request, built once: bad port mappings or bandwidth annotations fail before
        // anything is made. Its netns is where the pin will be.
        let pod_net = if network::uses_cni(&cfg) {
            let netns = self.pod_dir(&id).join("ns/net");
            let pn = network::pod_network(&id, &netns, &cfg, &cgroup_parent)?;
            self.network
                .status()
                .await
                .map_err(|e| EngineError::NetworkNotReady(e.message))?;
            Some(pn)
        } else {
            None
        };
        let _lock = self.locks.lock(id.clone()).await;
        let started = std::time::Instant::now();
        self.names.reserve(&cfg.registrar_name(), &id)?;
        let intent = self.pod_intent(&id, &handler, cfg, cgroup_parent, pod_net.is_some());
        let rb = {
            let (j, rec) = (self.janitor.clone(), intent.clone());
            Rollback::new("RunPodSandbox", async move {
                let _ = j.roll_back_pod(rec, false).await;
            })
        };
        match self.run_steps(intent, pod_net).await {
            Ok(rec) => {
                rb.disarm();
                tracing::info!(pod = %id, name = %rec.config.name, ms = started.elapsed().as_millis() as u64, "pod sandbox ready");
                self.emit(&id, &id, EventKind::Created);
                self.emit(&id, &id, EventKind::Started);
                Ok(rec)
            }
            Err(e) => {
                tracing::info!(pod = %id, error = %e, "pod sandbox failed; rolling back");
                rb.run().await;
                Err(e)
            }
        }
    }

    /// The record of a pod about to be made: *creating*, naming everything it will have.
    fn pod_intent(
        &self,
        id: &str,
        handler: &str,
        cfg: PodConfig,
        cgroup_parent: String,
        cni: bool,
    ) -> SandboxRecord {
        let dir = self.pod_dir(id);
        let own_net = cfg.namespaces.network != NamespaceMode::Node;
        let own_ipc = cfg.namespaces.ipc != NamespaceMode::Node;
        // UTS follows the network namespace, as in the kubelet's model.
        let own_uts = own_net;
        SandboxRecord {
            version: SandboxRecord::VERSION,
            id: id.to_string(),
            state: SandboxState::NotReady,
            intent: Some(SandboxIntent::Creating),
            created_at: now_nanos(),
            runtime_handler: handler.to_string(),
            netns: own_net.then(|| dir.join("ns/net")),
            ipcns: own_ipc.then(|| dir.join("ns/ipc")),
            utsns: own_uts.then(|| dir.join("ns/uts")),
            pidns: (cfg.namespaces.pid == NamespaceMode::Pod).then(|| dir.join("ns/pid")),
            infra_pid: None,
            userns: userns::pod_maps(&cfg).map(|_| dir.join("ns/user")),
            shm: own_ipc.then(|| dir.join("shm")),
            hostname_file: dir.join("hostname"),
            hosts_file: dir.join("hosts"),
            resolv_file: dir.join("resolv.conf"),
            state_dir: dir,
            cgroup_parent,
            ips: vec![],
            // CNI ADD may run (DEL is owed once its cache entry exists).
            network_setup: cni,
            network_teardown_pending: false,
            config: cfg,
        }
    }

    /// Persists a pod record (off the async workers).
    pub(crate) async fn persist_pod(&self, rec: &SandboxRecord) -> Result<()> {
        let (s, r) = (self.sandboxes.clone(), rec.clone());
        blocking(move || s.put(&r)).await
    }

    async fn run_steps(
        &self,
        mut rec: SandboxRecord,
        pod_net: Option<husk_net::PodNetwork>,
    ) -> Result<SandboxRecord> {
        failpoint::hit("sandbox.after_name")?;
        // Intent before effect: nothing exists on the host that this record does not name.
        self.persist_pod(&rec).await?;
        failpoint::hit("sandbox.after_intent")?;
        let dir = rec.state_dir.clone();
        let d = dir.join("ns");
        blocking(move || std::fs::create_dir_all(&d).map_err(|e| EngineError::io("create", &d, e)))
            .await?;

        // Like containerd and CRI-O: a pod without a hostname gets the node's, in its own UTS
        // namespace too (its metadata name can be longer than the kernel's 64 bytes).
        let hostname = if rec.config.hostname.is_empty() {
            host_hostname()
        } else {
            rec.config.hostname.clone()
        };
        let pin = PinRequest {
            net: rec.netns.clone(),
            ipc: rec.ipcns.clone(),
            uts: rec.utsns.clone(),
            hostname: rec.utsns.is_some().then(|| hostname.clone()),
            sysctls: rec
                .config
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            loopback_up: true,
        };
        if let (Some(maps), Some(up)) = (userns::pod_maps(&rec.config), &rec.userns) {
            userns::create_pinned(&self.cfg.monitor_bin, &dir, up, maps, &pin).await?;
        } else if pin.net.is_some()
            || pin.ipc.is_some()
            || pin.uts.is_some()
            || !pin.sysctls.is_empty()
        {
            let p = pin.clone();
            blocking(move || ns::create_pinned(&p).map_err(Into::into)).await?;
        }
        failpoint::hit("sandbox.after_pins")?;

        if rec.pidns.is_some() {
            let pid = self.start_infra(&dir, rec.userns.as_deref()).await?;
            rec.infra_pid = Some(pid);
            self.persist_pod(&rec).await?;
            failpoint::hit("sandbox.after_infra")?;
        }

        // CNI ADD is the long pole: it runs while the files and /dev/shm are made.
        let cni = async {
            match &pod_net {
                Some(pn) => self
                    .network
                    .setup(pn)
                    .await
                    .map(Some)
                    .map_err(|e| EngineError::Network(e.to_string())),
                None => Ok(None),
            }
        };
        let files = {
            let (rec, hostname) = (rec.clone(), hostname.clone());
            let (shm_size, host_resolv) = (self.cfg.shm_size, self.cfg.host_resolv_conf.clone());
            blocking(move || pod_files(&rec, &hostname, shm_size, &host_resolv))
        };
        let (cni, files) = tokio::join!(cni, files);
        // The plugins undo a half-done ADD themselves (and the rollback DELs again if that
        // DEL failed: the cache entry then remains).
        let ips = match cni? {
            Some(res) => res
                .pod_ips("eth0", self.cfg.ip_preference)
                .iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>(),
            None => vec![],
        };
        files?;
        if pod_net.is_some() {
            failpoint::hit("sandbox.after_cni_add")?;
        }
        rec.ips = ips;
        failpoint::hit("sandbox.before_persist")?;
        rec.state = SandboxState::Ready;
        rec.intent = None;
        self.persist_pod(&rec).await?;
        Ok(rec)
    }

    /// `<state_dir>/pods/<id>`: the pod's runtime state (namespace pins, files, shm).
    pub(crate) fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(id)
    }

    /// Starts the init of a pod-shared PID namespace and pins its namespace. The init works
    /// in the pod's state dir, which is how the sweep knows it after a crash.
    async fn start_infra(&self, dir: &Path, userns: Option<&Path>) -> Result<i32> {
        let mut cmd = tokio::process::Command::new(&self.cfg.monitor_bin);
        cmd.arg("pause");
        if let Some(u) = userns {
            cmd.arg("--userns").arg(u);
        }
        let spawn = cmd
            .current_dir(dir)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(10), spawn)
            .await
            .map_err(|_| EngineError::Timeout {
                what: "starting the pod infra process".into(),
                secs: 10,
            })?
            .map_err(|e| EngineError::io("spawn", &self.cfg.monitor_bin, e))?;
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<i32>()
            .map_err(|_| {
                EngineError::Monitor(format!(
                    "pod infra process did not start: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            })?;
        let ns = dir.join("ns/pid");
        let src = PathBuf::from(format!("/proc/{pid}/ns/pid"));
        let d = dir.to_path_buf();
        blocking(move || {
            ns::pin_existing(&src, &ns).map_err(|e| {
                crate::undo::kill_pod_processes(&d, Some(pid));
                EngineError::io("pin", &ns, e)
            })
        })
        .await?;
        Ok(pid)
    }
}

/// `/dev/shm`, hostname, hosts and resolv.conf of a pod (runs beside CNI ADD). Blocking.
fn pod_files(rec: &SandboxRecord, hostname: &str, shm_size: u64, host_resolv: &Path) -> Result<()> {
    if let Some(shm) = &rec.shm {
        std::fs::create_dir_all(shm).map_err(|e| EngineError::io("create", shm, e))?;
        husk_sys::mount::tmpfs(shm, shm_size, 0o1777)?;
    }
    let hosts = if rec.netns.is_some() {
        files::hosts(hostname)
    } else {
        std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| files::hosts(hostname))
    };
    let resolv = files::resolv_conf(rec.config.dns.as_ref(), host_resolv)?;
    for (p, data) in [
        (&rec.hostname_file, format!("{hostname}\n")),
        (&rec.hosts_file, hosts),
        (&rec.resolv_file, resolv),
    ] {
        husk_sys::fs::atomic_write(p, data.as_bytes())
            .map_err(|e| EngineError::io("write", p, e))?;
    }
    if !rec.config.log_directory.is_empty() {
        let ld = PathBuf::from(&rec.config.log_directory);
        std::fs::create_dir_all(&ld).map_err(|e| EngineError::io("create", &ld, e))?;
    }
    Ok(())
}

fn host_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
