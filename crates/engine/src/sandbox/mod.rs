//! Pod sandboxes: their configuration (domain form of the CRI `PodSandboxConfig`), their
//! persisted record and state machine.
//!
//! ```text
//!   RunPodSandbox ──► (creating) ──► READY ──StopPodSandbox──► (stopping) ──► NOTREADY
//!                         │                                                     │
//!   failure / crash: every step undone from the record ──► (gone)   RemovePodSandbox
//!   (an undo that cannot finish, e.g. CNI DEL failing: NOTREADY)                 ▼
//!                                                               (removing) ──► (gone)
//! ```
//! Intent before effect: the record is written in the *creating* / *stopping* / *removing*
//! state ([`SandboxIntent`]) before the first host object of the operation is made or undone,
//! naming every one of them (pins, `/dev/shm`, the state dir with the pause init's working
//! directory, the CNI attachment by pod id, the name), so that recovery at the next start can
//! finish or undo whatever a crash left. A *creating* pod is invisible to the CRI.
//! A READY pod owns pinned network/IPC/UTS namespaces (unless it uses the host's), a `/dev/shm`
//! tmpfs (unless host IPC), and its `hostname`/`hosts`/`resolv.conf` files; with a user
//! namespace (mode POD) that namespace is pinned too and owns the others. NOTREADY keeps
//! only the record and the containers' records; stop and remove are idempotent.

mod files;
pub mod lifecycle;
pub mod network;
mod run;
pub mod stats;
mod undo;
mod userns;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use crate::spec::input::{IdMapping, NamespaceMode, NamespaceOptions};
use crate::store::Record;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortMapping {
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// What the kubelet asks for a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PodConfig {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub namespaces: NamespaceOptions,
    pub privileged: bool,
    pub runtime_handler: String,
    /// CRI `userns_options`; `None` is the host's user namespace (mode NODE).
    #[serde(default)]
    pub userns: Option<UsernsConfig>,
}

/// A pod's user namespace as asked (CRI `UserNamespace`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UsernsConfig {
    pub mode: NamespaceMode,
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

impl PodConfig {
    /// The registrar key, as containerd builds it: `name_namespace_uid_attempt`.
    pub fn registrar_name(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.name, self.namespace, self.uid, self.attempt
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// The operation under way on a pod, written before its first effect; `None` once settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxIntent {
    /// RunPodSandbox: the record names what will be made; recovery undoes it.
    Creating,
    /// StopPodSandbox: recovery finishes the stop.
    Stopping,
    /// RemovePodSandbox: recovery finishes the removal.
    Removing,
}

/// The persisted sandbox (`<root>/sandboxes/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SandboxRecord {
    pub version: u32,
    pub id: String,
    pub config: PodConfig,
    pub state: SandboxState,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub runtime_handler: String,
    /// `<state_dir>/pods/<id>`.
    pub state_dir: PathBuf,
    /// Pinned namespaces (None: the host's).
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod-shared PID namespace (pid = POD) and its init, a `husk-monitor pause` process.
    pub pidns: Option<PathBuf>,
    pub infra_pid: Option<i32>,
    /// The pod's own user namespace (pinned), which owns its other namespaces.
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// The pod's `/dev/shm` (None: the host's).
    pub shm: Option<PathBuf>,
    pub hostname_file: PathBuf,
    pub hosts_file: PathBuf,
    pub resolv_file: PathBuf,
    /// The cgroup parent of its containers.
    pub cgroup_parent: String,
    /// The pod's IPs from CNI (`eth0`), preferred family first.
    pub ips: Vec<String>,
    /// CNI ADD ran (DEL is owed).
    pub network_setup: bool,
    /// A CNI DEL failed and must be retried (stop, remove, next start of huskd).
    pub network_teardown_pending: bool,
    /// The operation under way (absent in records written before it was kept: settled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<SandboxIntent>,
}

impl SandboxRecord {
    /// Whether the CRI sees this pod (a pod being created is not there yet).
    pub fn visible(&self) -> bool {
        self.intent != Some(SandboxIntent::Creating)
    }
}

impl Record for SandboxRecord {
    const VERSION: u32 = 1;
    fn id(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u32 {
        self.version
    }
}

/// A filter for ListPodSandbox.
#[derive(Debug, Clone, Default)]
pub struct SandboxFilter {
    pub id_prefix: String,
    pub state: Option<SandboxState>,
    pub labels: BTreeMap<String, String>,
}

impl SandboxFilter {
    pub fn matches(&self, s: &SandboxRecord) -> bool {
        s.id.starts_with(&self.id_prefix)
            && self.state.is_none_or(|st| st == s.state)
            && self
                .labels
                .iter()
                .all(|(k, v)| s.config.labels.get(k) == Some(v))
    }
}
