//! The engine-facing API: `Network` runs a pod's ADD, DEL and CHECK through the current
//! network config list (reloaded when the directory changes), with rollback of a half-done ADD
//! and a teardown that uses what the ADD used.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cache::{self, CacheRecord};
use crate::config::{CniConfig, PluginConf};
use crate::error::{CniCommand, NetError, NotReady};
use crate::exec::{CallEnv, exec_plugin};
use crate::request::{CapabilityArgs, PodNetwork, plugin_stdin};
use crate::result::{IpPreference, NetworkResult};
use crate::watch::ConfigWatcher;

/// How long one plugin call may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where things are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Network config directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Plugin directories, searched in order (`/opt/cni/bin`, `/usr/lib/cni`).
    pub bin_dirs: Vec<PathBuf>,
    /// Per plugin call ([`DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// The ADD cache (persistent, e.g. `/var/lib/husk/cni/results`).
    pub cache_dir: PathBuf,
}

impl NetConfig {
    /// With the default timeout.
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>, cache_dir: PathBuf) -> Self {
        NetConfig {
            conf_dir,
            bin_dirs,
            timeout: DEFAULT_TIMEOUT,
            cache_dir,
        }
    }
}

/// The pod network of one runtime. Cheap to clone; setup and teardown run in their own task, so
/// a caller that gives up (a cancelled RPC) never leaves a plugin list half-run.
#[derive(Debug, Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: NetConfig,
    bin_dirs: Arc<[PathBuf]>,
    watcher: Mutex<ConfigWatcher>,
}

impl Network {
    /// Nothing is read yet: the config is loaded by the first call.
    pub fn new(cfg: NetConfig) -> Self {
        let watcher = ConfigWatcher::new(cfg.conf_dir.clone(), cfg.bin_dirs.clone());
        Network {
            inner: Arc::new(Inner {
                bin_dirs: cfg.bin_dirs.clone().into(),
                cfg,
                watcher: Mutex::new(watcher),
            }),
        }
    }

    /// Whether a valid network config exists (rescanning the directory if it changed).
    pub async fn status(&self) -> Result<(), NotReady> {
        self.config().await.map(|_| ())
    }

    /// The current network config list, reloaded if the directory changed.
    pub async fn config(&self) -> Result<Arc<CniConfig>, NotReady> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut w = inner.watcher.lock().unwrap_or_else(PoisonError::into_inner);
            w.reload_if_changed();
            w.current()
        })
        .await
        .unwrap_or_else(|e| Err(NotReady::new(format!("CNI config reload failed: {e}"))))
    }

    /// ADD through the list. On a failure half way, DEL runs through the whole list in reverse
    /// (as the spec says) and the error is returned; if that DEL fails too, the error says so
    /// and the cache keeps what [`Network::teardown`] needs.
    pub async fn setup(&self, req: &PodNetwork) -> Result<NetworkResult, NetError> {
        req.validate()?;
        let this = self.clone();
        let req = req.clone();
        let id = req.id.clone();
        tokio::spawn(async move { this.setup_detached(&req).await })
            .await
            .map_err(|e| NetError::Task {
                id,
                reason: e.to_string(),
            })?
    }

    /// DEL through the list in reverse, with the config, capability args and result cached at
    /// ADD (whatever the config directory says now). A namespace that is gone is passed as
    /// `CNI_NETNS=""`. Without a cache, the current config is used (an ADD may have been cut
    /// short by a crash); without either, there is nothing to undo. The cache is removed when
    /// DEL succeeded, so calling it again is fine.
    pub async fn teardown(&self, req: &PodNetwork) -> Result<(), NetError> {
        req.validate()?;
        let this = self.clone();
        let req = req.clone();
        let id = req.id.clone();
        tokio::spawn(async move { this.teardown_detached(&req).await })
            .await
            .map_err(|e| NetError::Task {
                id,
                reason: e.to_string(),
            })?
    }

    /// CHECK through the list with the cached ADD result. A no-op when the network sets
    /// `disableCheck`; an error for configs older than 0.4.0 or without a completed ADD.
    pub async fn check(&self, req: &PodNetwork) -> Result<(), NetError> {
        req.validate()?;
        let preferred = self.config().await.ok().map(|c| c.name.clone());
        let found = self.find_cached(req, preferred).await?;
        let (_, rec, conf) = found
            .into_iter()
            .next()
            .ok_or_else(|| NetError::NoCachedResult {
                id: req.id.clone(),
                ifname: req.ifname.clone(),
            })?;
        if conf.disable_check {
            return Ok(());
        }
        if !conf.version_at_least((0, 4, 0)) {
            return Err(NetError::CheckUnsupported {
                network: conf.name.clone(),
                version: conf.cni_version.clone(),
            });
        }
        let result = rec.result.ok_or_else(|| NetError::NoCachedResult {
            id: req.id.clone(),
            ifname: req.ifname.clone(),
        })?;
        let env = self.call_env(req, req.netns.to_string_lossy().into_owned(), rec.cni_args);
        for plugin in &conf.plugins {
            let stdin = plugin_stdin(&conf, plugin, Some(&result), &rec.capability_args);
            exec_plugin(
                &plugin.plugin_type,
                &conf.name,
                CniCommand::Check,
                &env,
                &encode(&stdin),
            )
            .await?;
        }
        Ok(())
    }

    async fn setup_detached(&self, req: &PodNetwork) -> Result<NetworkResult, NetError> {
        let conf = self.config().await?;
        let started = Instant::now();
        let caps = req.capability_args();
        let env = self.call_env(
            req,
            req.netns.to_string_lossy().into_owned(),
            req.cni_args(),
        );
        let mut rec = CacheRecord::new(
            &conf.name,
            &req.id,
            &req.ifname,
            &env.netns,
            &env.cni_args,
            conf.to_json(),
            caps.clone(),
        );
        let path = self.write_cache(&rec).await?;
        let outcome = async {
            let mut prev: Option<(Value, NetworkResult)> = None;
            for plugin in &conf.plugins {
                let stdin = plugin_stdin(&conf, plugin, prev.as_ref().map(|p| &p.0), &caps);
                prev = Some(self.add_one(&conf, plugin, &env, &stdin).await?);
            }
            let (raw, result) = prev.ok_or_else(|| NetError::InvalidResult {
                plugin: String::new(),
                network: conf.name.clone(),
                command: CniCommand::Add,
                reason: "the list has no plugins".into(),
            })?;
            rec.result = Some(raw);
            self.write_cache(&rec).await?;
            Ok(result)
        }
        .await;
        match outcome {
            Ok(result) => {
                tracing::info!(
                    sandbox = %req.id,
                    network = %conf.name,
                    ips = ?result.pod_ips(&req.ifname, IpPreference::Ipv4),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pod network set up"
                );
                Ok(result)
            }
            Err(add) => {
                tracing::warn!(sandbox = %req.id, network = %conf.name, error = %add,
                    "CNI ADD failed; running DEL through the list");
                match self.del_list(&conf, None, &caps, &env).await {
                    Ok(()) => {
                        self.remove_cache(path).await;
                        Err(add)
                    }
                    Err(del) => Err(NetError::RollbackFailed {
                        add: Box::new(add),
                        del: Box::new(del),
                    }),
                }
            }
        }
    }

    async fn teardown_detached(&self, req: &PodNetwork) -> Result<(), NetError> {
        let started = Instant::now();
        let netns = netns_if_alive(&req.netns).await;
        if netns.is_empty() {
            tracing::debug!(sandbox = %req.id, netns = ?req.netns,
                "network namespace gone; DEL with CNI_NETNS=\"\"");
        }
        let current = self.config().await;
        let preferred = current.as_ref().ok().map(|c| c.name.clone());
        let (records, corrupt) = self.find_cached_all(req, preferred).await?;
        if records.is_empty() {
            match &current {
                Ok(conf) => {
                    let env = self.call_env(req, netns.clone(), req.cni_args());
                    self.del_list(conf, None, &req.capability_args(), &env)
                        .await?;
                }
                // Unreadable cache files mean an ADD we cannot undo without a config.
                Err(not_ready) if !corrupt.is_empty() => {
                    return Err(NetError::NotReady(not_ready.clone()));
                }
                Err(_) => {
                    tracing::debug!(sandbox = %req.id, "no cached ADD and no network config: nothing to tear down");
                }
            }
        }
        for (path, rec, conf) in records {
            let env = self.call_env(req, netns.clone(), rec.cni_args.clone());
            let prev = rec
                .result
                .as_ref()
                .filter(|_| conf.version_at_least((0, 4, 0)));
            self.del_list(&conf, prev, &rec.capability_args, &env)
                .await?;
            self.remove_cache(path).await;
        }
        for path in corrupt {
            let _ = tokio::task::spawn_blocking(move || cache::move_aside(&path)).await;
        }
        tracing::info!(sandbox = %req.id, elapsed_ms = started.elapsed().as_millis() as u64,
            "pod network torn down");
        Ok(())
    }

    /// One ADD; the output must be a result we can read (it is passed on as JSON unchanged).
    async fn add_one(
        &self,
        conf: &CniConfig,
        plugin: &PluginConf,
        env: &CallEnv,
        stdin: &Value,
    ) -> Result<(Value, NetworkResult), NetError> {
        let out = exec_plugin(
            &plugin.plugin_type,
            &conf.name,
            CniCommand::Add,
            env,
            &encode(stdin),
        )
        .await?;
        let invalid = |reason: String| NetError::InvalidResult {
            plugin: plugin.plugin_type.clone(),
            network: conf.name.clone(),
            command: CniCommand::Add,
            reason,
        };
        if out.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid("no output".into()));
        }
        let raw: Value = serde_json::from_slice(&out).map_err(|e| invalid(e.to_string()))?;
        let parsed = NetworkResult::from_value(&raw).map_err(invalid)?;
        Ok((raw, parsed))
    }

    /// DEL through the list in reverse; stops at the first failure, as the spec says.
    async fn del_list(
        &self,
        conf: &CniConfig,
        prev_result: Option<&Value>,
        caps: &CapabilityArgs,
        env: &CallEnv,
    ) -> Result<(), NetError> {
        for plugin in conf.plugins.iter().rev() {
            let stdin = plugin_stdin(conf, plugin, prev_result, caps);
            exec_plugin(
                &plugin.plugin_type,
                &conf.name,
                CniCommand::Del,
                env,
                &encode(&stdin),
            )
            .await?;
        }
        Ok(())
    }

    fn call_env(&self, req: &PodNetwork, netns: String, cni_args: String) -> CallEnv {
        CallEnv {
            container_id: req.id.clone(),
            netns,
            ifname: req.ifname.clone(),
            cni_args,
            bin_dirs: self.inner.bin_dirs.clone(),
            timeout: self.inner.cfg.timeout,
        }
    }

    async fn write_cache(&self, rec: &CacheRecord) -> Result<PathBuf, NetError> {
        let dir = self.inner.cfg.cache_dir.clone();
        let rec = rec.clone();
        let id = rec.container_id.clone();
        tokio::task::spawn_blocking(move || cache::write(&dir, &rec))
            .await
            .map_err(|e| NetError::Task {
                id,
                reason: e.to_string(),
            })?
    }

    async fn remove_cache(&self, path: PathBuf) {
        let res = tokio::task::spawn_blocking(move || cache::remove(&path)).await;
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "CNI cache file left behind");
        }
    }

    async fn find_cached(
        &self,
        req: &PodNetwork,
        preferred: Option<String>,
    ) -> Result<Vec<(PathBuf, CacheRecord, CniConfig)>, NetError> {
        Ok(self.find_cached_all(req, preferred).await?.0)
    }

    /// Cached records with their parsed configs, and the files that could not be used.
    async fn find_cached_all(
        &self,
        req: &PodNetwork,
        preferred: Option<String>,
    ) -> Result<(Vec<(PathBuf, CacheRecord, CniConfig)>, Vec<PathBuf>), NetError> {
        let dir = self.inner.cfg.cache_dir.clone();
        let (id, ifname) = (req.id.clone(), req.ifname.clone());
        let found = tokio::task::spawn_blocking(move || {
            cache::find(&dir, &id, &ifname, preferred.as_deref())
        })
        .await
        .map_err(|e| NetError::Task {
            id: req.id.clone(),
            reason: e.to_string(),
        })??;
        let mut corrupt = found.corrupt;
        let mut records = Vec::new();
        for (path, rec) in found.records {
            match CniConfig::from_conflist_value(rec.config.clone()) {
                Ok(conf) => records.push((path, rec, conf)),
                Err(e) => {
                    tracing::warn!(sandbox = %req.id, path = ?path, error = %e,
                        "cached CNI config unusable");
                    corrupt.push(path);
                }
            }
        }
        Ok((records, corrupt))
    }
}

/// `CNI_NETNS` for a DEL: the path while the namespace is pinned, empty once it is gone.
async fn netns_if_alive(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        return String::new();
    }
    let p = path.to_path_buf();
    let alive = tokio::task::spawn_blocking(move || husk_sys::ns::is_pinned(&p))
        .await
        .unwrap_or(false);
    if alive {
        path.to_string_lossy().into_owned()
    } else {
        String::new()
    }
}

fn encode(v: &Value) -> Vec<u8> {
    // Serialising a Value cannot fail (string keys only).
    serde_json::to_vec(v).unwrap_or_default()
}
