//! Undoing what husk makes on the host: one idempotent function per kind of host object (a
//! namespace pin, a mount, a state directory, a pod's processes, a container's monitor, a
//! runtime container, work an earlier huskd left running) and the [`Janitor`], which holds what
//! the undos of whole pods and containers need (stores, names, CNI, runtimes) and is cheap to
//! clone into a task of its own, so that no caller going away can cut an undo in half. The
//! rollback of a failed operation, the recovery of an unfinished one and the sweep all come
//! here: undoing has one implementation. The functions here block: call them from a blocking
//! thread.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use husk_image::ImageService;
use husk_oci::OciRuntime;

use crate::container::{ContainerRecord, ExitWatchers};
use crate::error::{EngineError, Result};
use crate::names::Names;
use crate::procs;
use crate::sandbox::SandboxRecord;
use crate::store::Store;

/// What undoing pods and containers needs; a clone shares everything.
#[derive(Clone)]
pub(crate) struct Janitor {
    /// The CNI ADD cache (`<root>/cni/results`).
    pub cni_cache_dir: PathBuf,
    pub sandboxes: Arc<Store<SandboxRecord>>,
    pub containers: Arc<Store<ContainerRecord>>,
    pub names: Arc<Names>,
    pub network: husk_net::Network,
    pub runtimes: Arc<BTreeMap<String, OciRuntime>>,
    pub images: Arc<ImageService>,
    pub exits: Arc<ExitWatchers>,
}

impl Janitor {
    /// Runs `f` on a task of its own and waits for it: a caller that is cancelled while it
    /// waits does not stop the undo half way.
    pub async fn detached<T, F, Fut>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Janitor) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        tokio::spawn(f(self.clone()))
            .await
            .map_err(|e| EngineError::Task(e.to_string()))?
    }

    /// The runtime of a handler name.
    pub fn runtime(&self, handler: &str) -> Option<&OciRuntime> {
        self.runtimes.get(handler)
    }
}

/// A namespace pin: lazily unmounted, then its file removed. A missing pin is fine.
pub(crate) fn unpin(path: &Path) -> Result<()> {
    husk_sys::ns::unpin(path).map_err(|e| EngineError::io("unpin", path, e))
}

/// A mount (a pod's `/dev/shm`, a container's rootfs): every mount stacked there, lazily.
pub(crate) fn unmount(path: &Path) -> Result<()> {
    husk_sys::mount::unmount_all(path).map_err(|e| EngineError::io("unmount", path, e))
}

/// Undoes the octal escapes (`\040` …) of `/proc/self/mountinfo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], oct) {
            out.push(
                d.iter()
                    .fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of our mount namespace at or below `dir`, deepest first.
pub(crate) fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// Unmounts everything at or below `dir`; returns what was mounted.
pub(crate) fn unmount_below(dir: &Path) -> Result<Vec<PathBuf>> {
    let found = mounts_below(dir);
    for m in &found {
        unmount(m)?;
    }
    Ok(found)
}

/// A state directory: whatever is mounted below it first (never deleting through a mount: a
/// staged volume is a host directory), then the tree. A missing directory is fine.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    unmount_below(dir)?;
    let left = mounts_below(dir);
    if !left.is_empty() {
        return Err(EngineError::io(
            "remove",
            dir,
            std::io::Error::other(format!("still mounted below it: {left:?}")),
        ));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("remove", dir, e)),
    }
}

/// A pod's processes: its PID-namespace init (`husk-monitor pause`, recorded as `infra_pid`,
/// still ours if it is named `husk-pause`) and every `husk-monitor` working in the pod's state
/// directory (a `pause` init or a `userns` helper an earlier huskd did not get to record).
/// Returns how many were killed.
pub(crate) fn kill_pod_processes(pod_dir: &Path, infra_pid: Option<i32>) -> usize {
    let killed = procs::kill_matching(|p| {
        (p.is_monitor() && p.works_in(pod_dir))
            || (Some(p.pid) == infra_pid && p.comm == "husk-pause")
    });
    for p in &killed {
        tracing::debug!(pid = p.pid, comm = %p.comm, pod_dir = %pod_dir.display(), "killed a pod process");
    }
    killed.len()
}

/// Whether a pod's processes may need looking for (a pid namespace or a user namespace was
/// asked for), so that pods without either never scan the process table.
pub(crate) fn pod_has_processes(rec: &SandboxRecord) -> bool {
    rec.pidns.is_some() || rec.userns.is_some() || rec.infra_pid.is_some()
}

/// The monitor of a container (`husk-monitor --config <bundle>/monitor.json`), if it still
/// runs. Returns how many were killed.
pub(crate) fn kill_monitor(bundle: &Path) -> usize {
    let config = bundle.join("monitor.json").to_string_lossy().into_owned();
    procs::kill_matching(|p| p.is_monitor() && p.mentions(&config)).len()
}

/// Waits (≤ `timeout`) for runtime calls about container `id` that an earlier huskd's monitor
/// started (`<runtime> create --bundle …/<id>`, `delete <id>`) and that outlived it. They run in
/// our mount namespace; a container's own init (crun's keeps `create`'s command line while it
/// waits in `created`) does not.
pub(crate) fn wait_runtime_calls(id: &str, timeout: Duration) -> bool {
    procs::wait_quiet(
        |p| !p.is_monitor() && p.mentions(id) && p.in_our_mount_ns(),
        timeout,
    )
}

/// Waits (≤ `timeout`) for CNI plugins an earlier huskd started for pod `id` (their
/// environment says `CNI_CONTAINERID=<id>`) and that outlived it: a DEL must come after them.
pub(crate) fn wait_cni_plugins(id: &str, timeout: Duration) -> bool {
    let var = format!("CNI_CONTAINERID={id}");
    procs::wait_quiet(|p| procs::environ_has(p.pid, &var), timeout)
}

/// A runtime container: `<runtime> delete --force` (kills what runs). An unknown id is fine.
pub(crate) fn runtime_delete(rt: &OciRuntime, id: &str) -> Result<()> {
    rt.delete(id, true).map_err(Into::into)
}

/// The CNI ADD cache files of pod `id` (`<network>-<id>-<ifname>.json`, the naming of
/// husk-net's cache), with their interface names.
pub(crate) fn cni_cache_entries(dir: &Path) -> Vec<CacheEntry> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| parse_cache_name(&e.file_name().to_string_lossy()))
        .collect()
}

/// One file of the CNI ADD cache, by what its name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CacheEntry {
    pub network: String,
    pub pod_id: String,
    pub ifname: String,
}

/// `<network>-<64 hex id>-<ifname>.json`; anything else (temp files, files moved aside, ids
/// that are not ours) is not an entry.
pub(crate) fn parse_cache_name(name: &str) -> Option<CacheEntry> {
    if name.starts_with('.') {
        return None;
    }
    let stem = name.strip_suffix(".json")?;
    let (rest, ifname) = stem.rsplit_once('-')?;
    let (network, id) = rest.rsplit_once('-')?;
    let hex = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !network.is_empty() && !ifname.is_empty()).then(|| CacheEntry {
        network: network.to_string(),
        pod_id: id.to_string(),
        ifname: ifname.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_names_parse() {
        let id = "ab".repeat(32);
        assert_eq!(
            parse_cache_name(&format!("husk-test-3-{id}-eth0.json")),
            Some(CacheEntry {
                network: "husk-test-3".into(),
                pod_id: id.clone(),
                ifname: "eth0".into()
            })
        );
        for bad in [
            format!(".husk-test-3-{id}-eth0.json.corrupt"),
            format!(".husk-{id}-eth0.json.tmp1-2"),
            format!("net-{}-eth0.json", &id[..63]),
            format!("net-{id}.json"),
            format!("-{id}-eth0.json"),
            "net-xyz-eth0.json".into(),
        ] {
            assert_eq!(parse_cache_name(&bad), None, "{bad}");
        }
    }

    #[test]
    fn remove_dir_unmounts_first_and_never_deletes_through_a_mount() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let state = d.path().join("state");
        let shm = state.join("shm");
        std::fs::create_dir_all(&shm).unwrap();
        husk_sys::mount::tmpfs(&shm, 1 << 20, 0o1777).unwrap();
        let pin = state.join("pin");
        husk_sys::ns::pin_existing(Path::new("/proc/self/ns/net"), &pin).unwrap();
        assert_eq!(mounts_below(&state).len(), 2);
        remove_dir(&state).unwrap();
        assert!(!state.exists());
        remove_dir(&state).unwrap();
        assert!(outside.join("precious").exists());
        assert_eq!(unescape(r"/a\040b"), "/a b");
    }
}
