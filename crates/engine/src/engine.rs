//! `Engine`: the composition of stores, runtimes and the image service that the lifecycle
//! code (in `sandbox` and `container`) works on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use husk_image::ImageService;
use husk_image::locks::KeyedLocks;
use husk_oci::OciRuntime;

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};
use crate::names::Names;
use crate::sandbox::SandboxRecord;
use crate::store::Store;

/// The cgroup driver, as the kubelet's `cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Persistent records live in `<root>/sandboxes`, `<root>/containers`.
    pub root: PathBuf,
    /// Runtime state (`<state_dir>/pods/<id>`, `<state_dir>/containers/<id>`).
    pub state_dir: PathBuf,
    /// OCI runtimes by handler name.
    pub runtimes: BTreeMap<String, husk_oci::RuntimeConfig>,
    /// Used when a pod names no handler.
    pub default_runtime: String,
    /// The `husk-monitor` binary.
    pub monitor_bin: PathBuf,
    pub cgroup_driver: CgroupDriver,
    /// Parent cgroup when the pod gives none.
    pub default_cgroup_parent: String,
    /// `/etc/resolv.conf` of the host (pods without DNS config copy it).
    pub host_resolv_conf: PathBuf,
    /// Size of a pod's `/dev/shm`.
    pub shm_size: u64,
    /// CNI: config dir, plugin dirs, timeout, result cache.
    pub net: husk_net::NetConfig,
    /// The family of a pod's primary IP on dual-stack networks.
    pub ip_preference: husk_net::IpPreference,
}

pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) images: Arc<ImageService>,
    pub(crate) sandboxes: Arc<Store<SandboxRecord>>,
    pub(crate) containers: Arc<Store<ContainerRecord>>,
    pub(crate) names: Arc<Names>,
    pub(crate) runtimes: BTreeMap<String, OciRuntime>,
    /// One lifecycle operation at a time per pod / container id.
    pub(crate) locks: KeyedLocks,
    pub(crate) exits: Arc<crate::container::ExitWatchers>,
    pub(crate) network: husk_net::Network,
    pub(crate) features: std::sync::OnceLock<Vec<HandlerFeatures>>,
    pub(crate) events: tokio::sync::broadcast::Sender<crate::events::LifecycleEvent>,
    pub(crate) cgroups: husk_cgroups::Cgroups,
    pub(crate) cpu_rate: std::sync::Mutex<husk_cgroups::CpuRate>,
    /// Facts about this host that shape OCI specs (capabilities, cgroup version, …).
    pub(crate) host: crate::spec::input::HostInfo,
    /// Undoes host objects (rollback, recovery, sweep); cheap to clone into a task.
    pub(crate) janitor: crate::undo::Janitor,
}

impl Engine {
    /// Opens the stores and reserves the names of what they hold. Call [`Engine::recover`]
    /// next to reconcile with what actually runs.
    pub fn open(cfg: EngineConfig, images: Arc<ImageService>) -> Result<Engine> {
        crate::failpoint::init()?;
        for d in [
            &cfg.state_dir.join("pods"),
            &cfg.state_dir.join("containers"),
        ] {
            std::fs::create_dir_all(d).map_err(|e| EngineError::io("create", d, e))?;
        }
        // A container in a user namespace resolves its bundle's rootfs path with unmapped
        // credentials: the dirs above bundles must be searchable by others (0711, as
        // containerd's state dir), never listable.
        for d in [&cfg.state_dir, &cfg.state_dir.join("containers")] {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(d).map_err(|e| EngineError::io("stat", d, e))?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o001 == 0 {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o111))
                    .map_err(|e| EngineError::io("chmod", d, e))?;
            }
        }
        let sandboxes: Arc<Store<SandboxRecord>> =
            Arc::new(Store::open(cfg.root.join("sandboxes"))?);
        let containers: Arc<Store<ContainerRecord>> =
            Arc::new(Store::open(cfg.root.join("containers"))?);
        let names = Arc::new(Names::default());
        for s in sandboxes.list() {
            names.reserve(&s.config.registrar_name(), &s.id)?;
        }
        for c in containers.list() {
            names.reserve(&c.registrar_name, &c.id)?;
        }
        let runtimes: BTreeMap<String, OciRuntime> = cfg
            .runtimes
            .iter()
            .map(|(name, rc)| (name.clone(), OciRuntime::new(rc.clone())))
            .collect();
        let host = crate::spec::input::HostInfo::detect()?;
        for c in containers.list() {
            images.leases().add(&c.id, c.chain_ids.clone());
        }
        let network = husk_net::Network::new(cfg.net.clone());
        let exits: Arc<crate::container::ExitWatchers> = Default::default();
        let janitor = crate::undo::Janitor {
            cni_cache_dir: cfg.net.cache_dir.clone(),
            sandboxes: sandboxes.clone(),
            containers: containers.clone(),
            names: names.clone(),
            network: network.clone(),
            runtimes: Arc::new(runtimes.clone()),
            images: images.clone(),
            exits: exits.clone(),
        };
        Ok(Engine {
            janitor,
            features: std::sync::OnceLock::new(),
            events: crate::events::channel(),
            cgroups: husk_cgroups::Cgroups::detect(std::path::Path::new(
                husk_cgroups::DEFAULT_ROOT,
            )),
            cpu_rate: Default::default(),
            network,
            host,
            cfg,
            images,
            sandboxes,
            containers,
            names,
            runtimes,
            locks: KeyedLocks::default(),
            exits,
        })
    }

    pub(crate) fn containers_handle(&self) -> Arc<Store<ContainerRecord>> {
        self.containers.clone()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn images(&self) -> &Arc<ImageService> {
        &self.images
    }

    /// The runtime for a handler name ("" = the default).
    pub(crate) fn runtime(&self, handler: &str) -> Result<(&str, &OciRuntime)> {
        let name = if handler.is_empty() {
            self.cfg.default_runtime.as_str()
        } else {
            handler
        };
        self.runtimes
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
            .ok_or_else(|| EngineError::UnknownHandler {
                handler: name.to_string(),
                known: self.runtimes.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Names of the configured runtime handlers.
    pub fn handlers(&self) -> Vec<String> {
        self.runtimes.keys().cloned().collect()
    }
}

/// Unix nanoseconds now.
pub(crate) fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}

/// What a runtime handler can do, as the CRI reports it: only what the runtime binary really
/// supports *and* husk implements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerFeatures {
    pub name: String,
    /// Recursive read-only mounts work: natively (`rro` in `<runtime> features`), or because
    /// husk stages the read-only tree itself (kernel `mount_setattr`, 5.12+).
    pub recursive_read_only_mounts: bool,
    /// The runtime makes `rro` mounts itself; otherwise husk stages them.
    pub native_rro: bool,
    pub user_namespaces: bool,
}

impl Engine {
    /// Features of every handler (asked from `<runtime> features` once, then cached).
    pub async fn handler_features(&self) -> Vec<HandlerFeatures> {
        if let Some(f) = self.features.get() {
            return f.clone();
        }
        let mut out = Vec::new();
        let staging = self.host.rro_supported && husk_sys::mount_tree::supported();
        // Idmapped mounts (5.12) under an overlay's layers (5.19).
        let idmap = self.host.kernel >= (5, 19) && husk_sys::mount_tree::supported();
        for (name, rt) in &self.runtimes {
            let rt = rt.clone();
            let native_rro = tokio::task::spawn_blocking(move || rt.features())
                .await
                .ok()
                .and_then(|r| r.ok())
                .is_some_and(|f| f.recursive_read_only);
            out.push(HandlerFeatures {
                name: name.clone(),
                recursive_read_only_mounts: native_rro || staging,
                native_rro,
                // husk makes the user namespace and the idmapped mounts itself; the runtime
                // only joins the namespace.
                user_namespaces: idmap,
            });
        }
        let _ = self.features.set(out.clone());
        out
    }

    /// The features of one handler.
    pub(crate) async fn features_of(&self, handler: &str) -> Option<HandlerFeatures> {
        self.handler_features()
            .await
            .into_iter()
            .find(|f| f.name == handler)
    }
}
