//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, status and list.

use std::path::{Path, PathBuf};

use husk_sys::ns::{self, PinRequest};

use super::{
    NamespaceMode, PodConfig, SandboxFilter, SandboxRecord, SandboxState, files, network, userns,
};
use crate::engine::{Engine, now_nanos};
use crate::error::{EngineError, Result, blocking};
use crate::events::EventKind;
use crate::names::new_id;
use crate::rollback::Rollback;
use crate::store::Record;

fn validate(cfg: &PodConfig) -> Result<()> {
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
        let mut rb = Rollback::default();
        let result = self
            .run_steps(&id, &handler, cfg, cgroup_parent, pod_net, &mut rb)
            .await;
        match result {
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

    async fn run_steps(
        &self,
        id: &str,
        handler: &str,
        cfg: PodConfig,
        cgroup_parent: String,
        pod_net: Option<husk_net::PodNetwork>,
        rb: &mut Rollback,
    ) -> Result<SandboxRecord> {
        let name = cfg.registrar_name();
        self.names.reserve(&name, id)?;
        {
            let names = self.names.clone();
            let (name, id) = (name.clone(), id.to_string());
            rb.push("release name", async move { names.release(&name, &id) });
        }

        let dir = self.pod_dir(id);
        std::fs::create_dir_all(dir.join("ns")).map_err(|e| EngineError::io("create", &dir, e))?;
        {
            let dir = dir.clone();
            rb.push("remove state dir", async move {
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
            });
        }

        let own_net = cfg.namespaces.network != NamespaceMode::Node;
        let own_ipc = cfg.namespaces.ipc != NamespaceMode::Node;
        // UTS follows the network namespace, as in the kubelet's model.
        let own_uts = own_net;
        // Like containerd and CRI-O: a pod without a hostname gets the node's, in its own UTS
        // namespace too (its metadata name can be longer than the kernel's 64 bytes).
        let hostname = if cfg.hostname.is_empty() {
            host_hostname()
        } else {
            cfg.hostname.clone()
        };
        let pin = PinRequest {
            net: own_net.then(|| dir.join("ns/net")),
            ipc: own_ipc.then(|| dir.join("ns/ipc")),
            uts: own_uts.then(|| dir.join("ns/uts")),
            hostname: own_uts.then(|| hostname.clone()),
            sysctls: cfg
                .sysctls
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            loopback_up: true,
        };
        let user_pin = userns::pod_maps(&cfg).map(|_| dir.join("ns/user"));
        if let (Some(maps), Some(up)) = (userns::pod_maps(&cfg), &user_pin) {
            userns::create_pinned(&self.cfg.monitor_bin, up, maps, &pin).await?;
            let (p, up) = (pin.clone(), up.clone());
            rb.push("unpin namespaces", async move {
                let _ = tokio::task::spawn_blocking(move || {
                    unpin_all(&[p.net, p.ipc, p.uts, Some(up)])
                })
                .await;
            });
        } else if pin.net.is_some()
            || pin.ipc.is_some()
            || pin.uts.is_some()
            || !pin.sysctls.is_empty()
        {
            let p = pin.clone();
            blocking(move || ns::create_pinned(&p).map_err(Into::into)).await?;
            let p = pin.clone();
            rb.push("unpin namespaces", async move {
                let _ =
                    tokio::task::spawn_blocking(move || unpin_all(&[p.net, p.ipc, p.uts])).await;
            });
        }

        let (pidns, infra_pid) = if cfg.namespaces.pid == NamespaceMode::Pod {
            let (ns, pid) = self.start_infra(&dir, user_pin.as_deref()).await?;
            let n = ns.clone();
            rb.push("stop pod infra", async move {
                let _ = tokio::task::spawn_blocking(move || stop_infra(Some(pid), Some(&n))).await;
            });
            (Some(ns), Some(pid))
        } else {
            (None, None)
        };

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
        let (cni, local) = tokio::join!(
            cni,
            self.pod_files(&dir, &cfg, own_net, own_ipc, &hostname, rb)
        );
        let ips = match cni {
            Ok(Some(res)) => {
                let (network, pn) = (self.network.clone(), pod_net.clone());
                rb.push("CNI DEL", async move {
                    if let Some(pn) = pn {
                        let _ = network.teardown(&pn).await;
                    }
                });
                res.pod_ips("eth0", self.cfg.ip_preference)
                    .iter()
                    .map(|ip| ip.to_string())
                    .collect::<Vec<_>>()
            }
            Ok(None) => vec![],
            Err(e) => {
                // The plugins undo a half-done ADD themselves; still run DEL to be sure.
                if let Some(pn) = &pod_net {
                    let _ = self.network.teardown(pn).await;
                }
                return Err(e);
            }
        };
        let (shm, hostname_file, hosts_file, resolv_file) = local?;
        let cni_ran = pod_net.is_some();

        let rec = SandboxRecord {
            version: SandboxRecord::VERSION,
            id: id.to_string(),
            state: SandboxState::Ready,
            created_at: now_nanos(),
            runtime_handler: handler.to_string(),
            netns: pin.net,
            ipcns: pin.ipc,
            utsns: pin.uts,
            pidns,
            infra_pid,
            userns: user_pin,
            shm,
            hostname_file,
            hosts_file,
            resolv_file,
            state_dir: dir,
            cgroup_parent,
            network_setup: cni_ran,
            network_teardown_pending: false,
            ips,
            config: cfg,
        };
        self.sandboxes.put(&rec)?;
        Ok(rec)
    }

    /// `/dev/shm`, hostname, hosts and resolv.conf of a pod (runs beside CNI ADD).
    #[allow(clippy::type_complexity)]
    async fn pod_files(
        &self,
        dir: &Path,
        cfg: &PodConfig,
        own_net: bool,
        own_ipc: bool,
        hostname: &str,
        rb: &mut Rollback,
    ) -> Result<(Option<PathBuf>, PathBuf, PathBuf, PathBuf)> {
        let shm = if own_ipc {
            let shm = dir.join("shm");
            std::fs::create_dir_all(&shm).map_err(|e| EngineError::io("create", &shm, e))?;
            husk_sys::mount::tmpfs(&shm, self.cfg.shm_size, 0o1777)?;
            let s = shm.clone();
            rb.push("unmount shm", async move {
                let _ = husk_sys::mount::unmount_all(&s);
            });
            Some(shm)
        } else {
            None
        };

        let hostname_file = dir.join("hostname");
        let hosts_file = dir.join("hosts");
        let resolv_file = dir.join("resolv.conf");
        let hosts = if own_net {
            files::hosts(hostname)
        } else {
            std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| files::hosts(hostname))
        };
        let resolv = files::resolv_conf(cfg.dns.as_ref(), &self.cfg.host_resolv_conf)?;
        for (p, data) in [
            (&hostname_file, format!("{hostname}\n")),
            (&hosts_file, hosts),
            (&resolv_file, resolv),
        ] {
            husk_sys::fs::atomic_write(p, data.as_bytes())
                .map_err(|e| EngineError::io("write", p, e))?;
        }
        if !cfg.log_directory.is_empty() {
            let ld = PathBuf::from(&cfg.log_directory);
            std::fs::create_dir_all(&ld).map_err(|e| EngineError::io("create", &ld, e))?;
        }

        Ok((shm, hostname_file, hosts_file, resolv_file))
    }

    /// Stops every container of the pod and releases its namespaces and mounts. Idempotent:
    /// an unknown (already removed) pod is fine, as the CRI asks.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = match self.sandboxes.resolve("pod sandbox", id) {
            Ok(r) => r,
            Err(EngineError::NotFound { .. }) => return Ok(()),
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
        let rec = self.pod_sandbox(&rec.id)?;
        // Teardown always runs; if CNI DEL fails the pod keeps its netns and says so, and the
        // kubelet's retry (or remove, or our next start) runs it again.
        self.teardown_network(&rec).await?;
        self.release_pod_resources(&rec).await?;
        if rec.state != SandboxState::NotReady {
            self.sandboxes
                .update(&rec.id, |r| r.state = SandboxState::NotReady)?;
            tracing::info!(pod = %rec.id, "pod sandbox stopped");
            self.emit(&rec.id, &rec.id, EventKind::Stopped);
        }
        Ok(())
    }

    /// `<state_dir>/pods/<id>`: the pod's runtime state (namespace pins, files, shm).
    fn pod_dir(&self, id: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(id)
    }

    /// Starts the init of a pod-shared PID namespace and pins its namespace.
    async fn start_infra(&self, dir: &Path, userns: Option<&Path>) -> Result<(PathBuf, i32)> {
        let mut cmd = tokio::process::Command::new(&self.cfg.monitor_bin);
        cmd.arg("pause");
        if let Some(u) = userns {
            cmd.arg("--userns").arg(u);
        }
        let spawn = cmd
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
        let n = ns.clone();
        let pinned =
            blocking(move || ns::pin_existing(&src, &n).map_err(|e| EngineError::io("pin", &n, e)))
                .await;
        if let Err(e) = pinned {
            stop_infra(Some(pid), None);
            return Err(e);
        }
        Ok((ns, pid))
    }

    async fn release_pod_resources(&self, rec: &SandboxRecord) -> Result<()> {
        // The user namespace last: it owns the others.
        let pins = [
            rec.netns.clone(),
            rec.ipcns.clone(),
            rec.utsns.clone(),
            rec.userns.clone(),
        ];
        let shm = rec.shm.clone();
        let (infra, pidns) = (rec.infra_pid, rec.pidns.clone());
        blocking(move || {
            stop_infra(infra, pidns.as_deref());
            if let Some(s) = &shm {
                husk_sys::mount::unmount_all(s).map_err(|e| EngineError::io("unmount", s, e))?;
            }
            unpin_all(&pins)
        })
        .await
    }

    /// Removes the pod and everything in it. Idempotent: an unknown id is fine.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let rec = match self.sandboxes.resolve("pod sandbox", id) {
            Ok(r) => r,
            Err(EngineError::NotFound { .. }) => return Ok(()),
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
        let rec = self.pod_sandbox(&rec.id)?;
        self.teardown_network(&rec).await?;
        self.release_pod_resources(&rec).await?;
        let dir = rec.state_dir.clone();
        blocking(move || match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io("remove", &dir, e)),
        })
        .await?;
        self.sandboxes.delete(&rec.id)?;
        self.names.release(&rec.config.registrar_name(), &rec.id);
        tracing::info!(pod = %rec.id, "pod sandbox removed");
        self.emit(&rec.id, &rec.id, EventKind::Deleted);
        Ok(())
    }

    /// A pod by id or unique id prefix.
    pub fn pod_sandbox(&self, id: &str) -> Result<SandboxRecord> {
        self.sandboxes.resolve("pod sandbox", id)
    }

    pub fn list_pod_sandboxes(&self, f: &SandboxFilter) -> Vec<SandboxRecord> {
        let mut v: Vec<_> = self
            .sandboxes
            .list()
            .into_iter()
            .filter(|s| f.matches(s))
            .collect();
        v.sort_by_key(|s| s.created_at);
        v
    }
}

/// Kills the pod's PID-namespace init (which ends every process in that namespace) if it is
/// still ours, and unpins the namespace.
fn stop_infra(pid: Option<i32>, pin: Option<&Path>) {
    if let Some(pid) = pid
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim() == "husk-pause")
        && let Some(p) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
    if let Some(p) = pin {
        let _ = ns::unpin(p);
    }
}

fn unpin_all(pins: &[Option<PathBuf>]) -> Result<()> {
    for p in pins.iter().flatten() {
        ns::unpin(p).map_err(|e| EngineError::io("unpin", p, e))?;
    }
    Ok(())
}

fn host_hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}
