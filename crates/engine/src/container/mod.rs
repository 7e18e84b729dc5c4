//! Containers: their configuration (domain form of the CRI `ContainerConfig`), their persisted
//! record and state machine.
//!
//! ```text
//!  CreateContainer ──► (creating) ──► CREATED ──StartContainer──► (starting) ──► RUNNING
//!        │                               │ start fails ──────────────────────────► EXITED
//!        │                               └──StopContainer (kill) ────────────────► EXITED
//!        ▼ failure or crash half way: runtime state deleted, monitor killed,  exit / StopContainer
//!   (nothing)  staged mounts and rootfs unmounted, dirs, name and record gone        ▼
//!                                       RemoveContainer (any state) ──► (removing) ──► (gone)
//! ```
//! Intent before effect: the record is written in the *creating* / *starting* / *removing*
//! state ([`ContainerIntent`]) before the first host object is made or undone; it names them
//! all (bundle with rootfs, `monitor.json` and staged mounts, monitor dir with idmapped
//! layers, writable layer, runtime id, name, image lease). A *creating* container is invisible
//! to the CRI; recovery undoes it, settles a cut start from the runtime's state and finishes a
//! removal.
//! The `husk-monitor` of a container owns its stdio and learns its exit; huskd learns it from
//! the monitor (a `wait` on its socket) or, after a restart, from the monitor's exit file.

mod checkpoint;
mod create;
mod exec;
mod lifecycle;
mod staged;
mod stats;
mod stream;
mod undo;
mod watch;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use husk_image::digest::Digest;
use serde::{Deserialize, Serialize};
use tokio::sync::watch as tokio_watch;

pub use checkpoint::DEFAULT_CHECKPOINT_TIMEOUT;
pub use exec::ExecOutput;
pub use husk_monitor::protocol::ExitRecord;
pub(crate) use staged::{release_layers, unstage_all};
pub use stats::ContainerUsage;
pub use stream::{ExecSession, ExecStreamRequest};
pub(crate) use watch::parse_rfc3339_nanos as parse_finished;

use crate::spec::input::ContainerSettings;
use crate::store::Record;

/// What the kubelet asks for a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ContainerConfig {
    pub name: String,
    pub attempt: u32,
    /// The image as requested (name, id or digest reference).
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the pod's log directory.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    /// With pid namespace mode TARGET: the container whose pid namespace to join.
    pub pid_target_id: String,
    /// Everything that shapes the OCI spec (command, env, mounts, security, resources, tty).
    pub settings: ContainerSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// The operation under way on a container, written before its first effect; `None` once
/// settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerIntent {
    /// CreateContainer: recovery undoes it.
    Creating,
    /// StartContainer (`started_at` is the time taken before `<runtime> start`): recovery asks
    /// the runtime whether it ran.
    Starting,
    /// RemoveContainer: recovery finishes it.
    Removing,
}

/// The persisted container (`<root>/containers/<id>.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub sandbox_id: String,
    pub registrar_name: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub image_id: Digest,
    /// A digest reference of the image (`repo@sha256:…`) or its id.
    pub image_ref: String,
    pub runtime_handler: String,
    /// Unix nanoseconds; 0 = not yet.
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub pid: i32,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// `<state_dir>/containers/<id>`: the OCI bundle (config.json, rootfs) and the monitor's
    /// socket and files.
    pub bundle: PathBuf,
    /// `<state_dir>/s/<id prefix>`: the monitor's sockets and log (kept short: unix socket
    /// paths are limited to 108 bytes).
    pub monitor_dir: PathBuf,
    /// `<root>/rw/<id>`: the writable layer (upper, work).
    pub rw_dir: PathBuf,
    /// The CRI log file (absolute), if the kubelet asked for one.
    pub log_path: Option<PathBuf>,
    /// Image layer chain IDs the rootfs is made of (leased from image GC).
    pub chain_ids: Vec<Digest>,
    pub cgroups_path: String,
    /// The image's `StopSignal`.
    pub stop_signal: Option<String>,
    /// The identity the container's process runs with, as resolved into its OCI spec
    /// (`ContainerStatus.user`). Absent in records written before it was kept.
    #[serde(default)]
    pub user: Option<ProcessUser>,
    /// The operation under way (absent in records written before it was kept: settled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<ContainerIntent>,
}

/// The uid, gid and supplementary groups of a container's process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted and unique; includes `gid`.
    pub supplemental_groups: Vec<u32>,
}

impl Record for ContainerRecord {
    const VERSION: u32 = 1;
    fn id(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u32 {
        self.version
    }
}

impl ContainerRecord {
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }
    pub fn monitor_socket(&self) -> PathBuf {
        self.monitor_dir.join("monitor.sock")
    }
    pub fn exit_file(&self) -> PathBuf {
        self.bundle.join("exit.json")
    }
    pub fn spec_path(&self) -> PathBuf {
        self.bundle.join("config.json")
    }
    /// The monitor's configuration (its command line names it).
    pub fn monitor_config(&self) -> PathBuf {
        self.bundle.join("monitor.json")
    }
    /// Idmapped copies of the image layers (pods with their own user namespace).
    pub fn layers_dir(&self) -> PathBuf {
        self.monitor_dir.join("l")
    }
    /// Whether the CRI sees this container (one being created is not there yet).
    pub fn visible(&self) -> bool {
        self.intent != Some(ContainerIntent::Creating)
    }

    /// The error for an operation this container's state does not allow.
    pub(crate) fn wrong_state(&self, what: &'static str, message: &str) -> crate::EngineError {
        crate::EngineError::WrongState {
            what,
            id: self.id.clone(),
            state: format!("{:?}", self.state).to_uppercase(),
            message: message.to_string(),
        }
    }
}

/// A filter for ListContainers.
#[derive(Debug, Clone, Default)]
pub struct ContainerFilter {
    pub id_prefix: String,
    pub state: Option<ContainerState>,
    pub sandbox_id: String,
    pub labels: BTreeMap<String, String>,
}

impl ContainerFilter {
    pub fn matches(&self, c: &ContainerRecord) -> bool {
        c.id.starts_with(&self.id_prefix)
            && self.state.is_none_or(|s| s == c.state)
            && (self.sandbox_id.is_empty() || c.sandbox_id.starts_with(&self.sandbox_id))
            && self
                .labels
                .iter()
                .all(|(k, v)| c.config.labels.get(k) == Some(v))
    }
}

/// Per-container exit notifications: `Some(exit)` once the container has exited.
pub type ExitWatchers = Mutex<HashMap<String, tokio_watch::Receiver<Option<ExitRecord>>>>;

/// The CRI reason for an exit.
pub(crate) fn exit_reason(e: &ExitRecord) -> &'static str {
    if e.oom_killed {
        "OOMKilled"
    } else if e.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Parses a stop signal as images write it (`SIGTERM`, `TERM`, `15`).
pub(crate) fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => {
            let rt = name.strip_prefix("RTMIN+")?.parse::<i32>().ok()?;
            return (0..=30).contains(&rt).then_some(34 + rt);
        }
    };
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_docker() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("term"), Some(15));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(37));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("99"), None);
    }
}
