//! The sweep at start, after recovery: whatever husk makes on the host but no record names is
//! removed, and logged with what it was and why it went. It looks at the pod, container and
//! monitor dirs under the state dir (with the pins and mounts below them), the writable layers
//! under the root, the runtimes' containers (`<runtime> list`), our `husk-monitor` processes
//! (a container monitor names its `monitor.json`; a pod's `pause` init and `userns` helper work
//! in the pod's dir) and the CNI ADD cache (a DEL for every entry of an unknown pod). A pod
//! whose record was unreadable (moved aside by the store) is unknown, so its pins go too.
//! Only our own objects are candidates: everything is found under our state dir, root, runtime
//! roots and CNI cache, and only `husk-monitor` processes are ever killed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::Engine;
use crate::error::{Result, blocking};
use crate::procs::{self, Proc};
use crate::undo::{self, CacheEntry};

/// What exists on the host, as found.
#[derive(Debug, Default, Clone)]
pub(crate) struct Found {
    pub pod_dirs: Vec<String>,
    pub container_dirs: Vec<String>,
    /// `<state>/s/<id prefix>` directories.
    pub monitor_dirs: Vec<String>,
    pub rw_dirs: Vec<String>,
    /// `(handler, id)` from `<runtime> list`.
    pub runtime_containers: Vec<(String, String)>,
    pub cni: Vec<CacheEntry>,
    /// `husk-monitor` processes.
    pub monitors: Vec<Proc>,
    /// Ids whose record was unreadable and moved aside (`<id>.corrupt`), pods and containers.
    pub moved_aside: BTreeSet<String>,
}

/// What the records name.
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    /// Pod ids with their recorded PID-namespace init.
    pub pods: BTreeMap<String, Option<i32>>,
    pub containers: BTreeSet<String>,
}

/// One thing to remove.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Orphan {
    Cni(CacheEntry),
    RuntimeContainer { handler: String, id: String },
    Process { proc: Proc, owner: String },
    PodDir(String),
    ContainerDir(String),
    MonitorDir(String),
    RwDir(String),
}

/// Whose object a path under the state dir is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Pod(String),
    Container(String),
}

fn owner(path: &Path, state_dir: &Path) -> Option<Owner> {
    let rel = path.strip_prefix(state_dir).ok()?;
    let mut c = rel.components().map(|c| c.as_os_str().to_string_lossy());
    match (c.next()?.as_ref(), c.next()?) {
        ("pods", id) => Some(Owner::Pod(id.into_owned())),
        ("containers", id) => Some(Owner::Container(id.into_owned())),
        _ => None,
    }
}

/// Decides what goes, in the order it must go: CNI DELs while the pods' network namespaces
/// are still pinned, runtime containers before their monitors and mounts, processes before
/// the dirs they work in.
pub(crate) fn orphans(found: &Found, known: &Known, state_dir: &Path) -> Vec<Orphan> {
    let pod_known = |id: &str| known.pods.contains_key(id);
    let container_known = |id: &str| known.containers.contains(id);
    let mut out = Vec::new();
    out.extend(
        found
            .cni
            .iter()
            .filter(|e| !pod_known(&e.pod_id))
            .cloned()
            .map(Orphan::Cni),
    );
    out.extend(
        found
            .runtime_containers
            .iter()
            .filter(|(_, id)| !container_known(id))
            .map(|(handler, id)| Orphan::RuntimeContainer {
                handler: handler.clone(),
                id: id.clone(),
            }),
    );
    for p in found.monitors.iter().filter(|p| p.is_monitor()) {
        let owners = p
            .cwd
            .iter()
            .cloned()
            .chain(p.argv.iter().map(PathBuf::from))
            .filter_map(|path| owner(&path, state_dir));
        for o in owners {
            let orphan = match &o {
                // A pod's only process at rest is the init its record names.
                Owner::Pod(id) => known.pods.get(id).is_none_or(|infra| *infra != Some(p.pid)),
                Owner::Container(id) => !container_known(id),
            };
            if orphan {
                let owner = match o {
                    Owner::Pod(id) => format!("pod {id}"),
                    Owner::Container(id) => format!("container {id}"),
                };
                out.push(Orphan::Process {
                    proc: p.clone(),
                    owner,
                });
                break;
            }
        }
    }
    out.extend(
        found
            .pod_dirs
            .iter()
            .filter(|id| !pod_known(id))
            .cloned()
            .map(Orphan::PodDir),
    );
    out.extend(
        found
            .container_dirs
            .iter()
            .filter(|id| !container_known(id))
            .cloned()
            .map(Orphan::ContainerDir),
    );
    out.extend(
        found
            .monitor_dirs
            .iter()
            .filter(|p| !known.containers.iter().any(|id| id.starts_with(p.as_str())))
            .cloned()
            .map(Orphan::MonitorDir),
    );
    out.extend(
        found
            .rw_dirs
            .iter()
            .filter(|id| !container_known(id))
            .cloned()
            .map(Orphan::RwDir),
    );
    out
}

/// What the sweep removed, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub cni: usize,
    pub runtime_containers: usize,
    pub processes: usize,
    pub pod_dirs: usize,
    pub container_dirs: usize,
    pub other_dirs: usize,
    pub failed: usize,
}

impl SweepReport {
    pub fn total(&self) -> usize {
        self.cni
            + self.runtime_containers
            + self.processes
            + self.pod_dirs
            + self.container_dirs
            + self.other_dirs
    }
}

/// Names of the directories in `dir` (none if it is missing).
fn subdirs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

impl Engine {
    /// Finds and removes what no record names. Never fails: what cannot be removed is logged.
    pub(crate) async fn sweep(&self) -> SweepReport {
        let known = Known {
            pods: self
                .sandboxes
                .list()
                .into_iter()
                .map(|s| (s.id, s.infra_pid))
                .collect(),
            containers: self.containers.list().into_iter().map(|c| c.id).collect(),
        };
        let found = match self.find_host_objects().await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "sweep: cannot list host objects");
                return SweepReport::default();
            }
        };
        let mut report = SweepReport::default();
        for o in orphans(&found, &known, &self.cfg.state_dir) {
            let done = self.remove_orphan(&o, &found).await;
            match (&o, done) {
                (_, Err(e)) => {
                    report.failed += 1;
                    tracing::warn!(orphan = ?o, error = %e, "sweep: could not remove");
                }
                (Orphan::Cni(_), Ok(())) => report.cni += 1,
                (Orphan::RuntimeContainer { .. }, Ok(())) => report.runtime_containers += 1,
                (Orphan::Process { .. }, Ok(())) => report.processes += 1,
                (Orphan::PodDir(_), Ok(())) => report.pod_dirs += 1,
                (Orphan::ContainerDir(_), Ok(())) => report.container_dirs += 1,
                (Orphan::MonitorDir(_) | Orphan::RwDir(_), Ok(())) => report.other_dirs += 1,
            }
        }
        if report != SweepReport::default() {
            tracing::info!(report = ?report, "sweep done");
        }
        report
    }

    async fn find_host_objects(&self) -> Result<Found> {
        let (state, root, cache) = (
            self.cfg.state_dir.clone(),
            self.cfg.root.clone(),
            self.cfg.net.cache_dir.clone(),
        );
        let runtimes = self.janitor.runtimes.clone();
        blocking(move || {
            let mut runtime_containers = Vec::new();
            for (handler, rt) in runtimes.iter() {
                if !rt.root().exists() {
                    continue;
                }
                match rt.list() {
                    Ok(list) => {
                        runtime_containers.extend(list.into_iter().map(|s| (handler.clone(), s.id)))
                    }
                    Err(e) => {
                        tracing::warn!(handler = %handler, error = %e, "sweep: runtime list failed")
                    }
                }
            }
            let moved_aside = ["sandboxes", "containers"]
                .iter()
                .flat_map(|d| {
                    std::fs::read_dir(root.join(d))
                        .into_iter()
                        .flatten()
                        .flatten()
                })
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_suffix(".corrupt").map(str::to_string)
                })
                .collect();
            Ok(Found {
                moved_aside,
                pod_dirs: subdirs(&state.join("pods")),
                container_dirs: subdirs(&state.join("containers")),
                monitor_dirs: subdirs(&state.join("s")),
                rw_dirs: subdirs(&root.join("rw")),
                runtime_containers,
                cni: undo::cni_cache_entries(&cache),
                monitors: procs::scan().into_iter().filter(Proc::is_monitor).collect(),
            })
        })
        .await
    }

    /// Why an unknown pod's or container's objects exist: a record moved aside, or none.
    fn why(found: &Found, id: &str) -> &'static str {
        if found.moved_aside.contains(id) {
            "its record was unreadable and moved aside (*.corrupt)"
        } else {
            "no record names it"
        }
    }

    async fn remove_orphan(&self, o: &Orphan, found: &Found) -> Result<()> {
        let state = self.cfg.state_dir.clone();
        match o {
            Orphan::Cni(e) => {
                tracing::info!(what = "CNI attachment", pod = %e.pod_id, network = %e.network,
                    why = Self::why(found, &e.pod_id), "sweep: CNI DEL");
                let id = e.pod_id.clone();
                blocking(move || Ok(undo::wait_cni_plugins(&id, Duration::from_secs(20)))).await?;
                let netns = state.join("pods").join(&e.pod_id).join("ns/net");
                let mut pn = husk_net::PodNetwork::new(&e.pod_id, netns, "", "", "");
                pn.ifname = e.ifname.clone();
                self.network
                    .teardown(&pn)
                    .await
                    .map_err(|e| crate::EngineError::Network(e.to_string()))
            }
            Orphan::RuntimeContainer { handler, id } => {
                tracing::info!(what = "runtime container", handler = %handler, container = %id,
                    why = Self::why(found, id), "sweep: delete --force");
                let Some(rt) = self.janitor.runtime(handler).cloned() else {
                    return Ok(());
                };
                let id = id.clone();
                blocking(move || {
                    undo::wait_runtime_calls(&id, Duration::from_secs(15));
                    undo::runtime_delete(&rt, &id)
                })
                .await
            }
            Orphan::Process { proc, owner } => {
                tracing::info!(what = "husk-monitor process", pid = proc.pid, comm = %proc.comm,
                    argv = ?proc.argv, owner = %owner, why = "its owner has no record, or does not name it",
                    "sweep: killing");
                let p = proc.clone();
                blocking(move || {
                    if procs::kill(&p) {
                        procs::wait_gone(&[p.pid], Duration::from_secs(5));
                    }
                    Ok(())
                })
                .await
            }
            Orphan::PodDir(id) => {
                let dir = state.join("pods").join(id);
                tracing::info!(what = "pod state dir (pins, /dev/shm)", pod = %id, path = %dir.display(),
                    why = Self::why(found, id), "sweep: removing");
                blocking(move || {
                    undo::kill_pod_processes(&dir, None);
                    let mounts = undo::unmount_below(&dir)?;
                    if !mounts.is_empty() {
                        tracing::info!(mounts = ?mounts, "sweep: unmounted pins and mounts");
                    }
                    undo::remove_dir(&dir)
                })
                .await
            }
            Orphan::ContainerDir(id) => {
                let bundle = state.join("containers").join(id);
                tracing::info!(what = "container bundle (rootfs, staged mounts)", container = %id,
                    path = %bundle.display(), why = Self::why(found, id), "sweep: removing");
                let (runtimes, id) = (self.janitor.runtimes.clone(), id.clone());
                blocking(move || {
                    for rt in runtimes.values() {
                        if let Err(e) = undo::runtime_delete(rt, &id) {
                            tracing::debug!(container = %id, error = %e, "sweep: runtime delete");
                        }
                    }
                    undo::kill_monitor(&bundle);
                    crate::container::unstage_all(&bundle)?;
                    undo::remove_dir(&bundle)
                })
                .await
            }
            Orphan::MonitorDir(p) => {
                let dir = state.join("s").join(p);
                tracing::info!(what = "monitor dir (sockets, idmapped layers)", path = %dir.display(),
                    why = "no container record has this id prefix", "sweep: removing");
                blocking(move || {
                    crate::container::release_layers(&dir.join("l"))?;
                    undo::remove_dir(&dir)
                })
                .await
            }
            Orphan::RwDir(id) => {
                let dir = self.cfg.root.join("rw").join(id);
                tracing::info!(what = "writable layer", path = %dir.display(),
                    why = Self::why(found, id), "sweep: removing");
                blocking(move || undo::remove_dir(&dir)).await
            }
        }
    }
}

#[cfg(test)]
mod tests;
