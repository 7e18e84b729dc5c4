//! husk-oci: drives OCI runtimes (runc, crun) through their CLI and turns their logs into typed
//! errors. Synchronous, std + rustix only: the lean `husk-monitor` links it without tokio, and the
//! async daemon calls it through `spawn_blocking`.
//!
//! Code map:
//! - `lib.rs`: [`RuntimeConfig`], [`OciRuntime`] (one per runtime handler), version/kind probing.
//! - `ops.rs`: the verbs (create argv, start, state, kill, delete, pause, resume, update, exec, list,
//!   features, checkpoint) and how each maps the runtime's answer.
//! - `run.rs`: runs one runtime process with a deadline (poll loop, no threads).
//! - `log.rs`: JSON/logfmt/plain log parsing and "not found"/"not running" recognition.
//! - `state.rs`, `features.rs`, `error.rs`: the data types.
//!
//! Every call passes `--root <root> --log /dev/stderr --log-format json [--systemd-cgroup]`; both
//! runc and crun reopen `/dev/stderr` (our pipe) and write JSON lines there, next to their plain
//! message. `create` is not run here: [`OciRuntime::create_args`] hands the argv to the monitor,
//! which owns the container's stdio, and [`OciRuntime::create_error`] explains a failure after.
#![forbid(unsafe_code)]

mod error;
mod features;
mod log;
mod ops;
mod run;
mod state;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use error::OciError;
pub use features::Features;
pub use ops::{CheckpointOpts, ExecOpts};
pub use state::{State, Status};

/// How long one runtime call may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One runtime handler (the `runtime_handler` of a CRI `RunPodSandbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Handler name, e.g. `runc`.
    pub name: String,
    /// The runtime binary (absolute, or looked up in `PATH`).
    pub path: PathBuf,
    /// State directory passed as `--root`, e.g. `/run/husk/runtimes/runc`.
    pub root: PathBuf,
    /// Pass `--systemd-cgroup` (cgroupsPath is then `slice:prefix:name`).
    pub systemd_cgroup: bool,
    /// Per-call deadline; a runtime that takes longer is killed ([`OciError::Timeout`]).
    pub timeout: Duration,
}

impl RuntimeConfig {
    /// A cgroupfs handler with the default timeout.
    pub fn new(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        root: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            root: root.into(),
            systemd_cgroup: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl Default for RuntimeConfig {
    /// `runc` from `PATH`, rooted at `/run/husk/runtimes/runc`.
    fn default() -> Self {
        Self::new("runc", "runc", "/run/husk/runtimes/runc")
    }
}

/// Which implementation a binary is, from the first line of its `--version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Runc,
    Crun,
    Other,
}

/// Name and version parsed from `--version`.
#[derive(Debug, Clone)]
struct VersionInfo {
    kind: RuntimeKind,
    version: String,
}

/// A CLI-driven OCI runtime. Cheap to clone; safe to share between threads.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: RuntimeConfig,
    /// Filled by the first successful `--version`.
    version: OnceLock<VersionInfo>,
}

impl OciRuntime {
    pub fn new(cfg: RuntimeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                cfg,
                version: OnceLock::new(),
            }),
        }
    }

    /// The handler name.
    pub fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    /// The runtime binary.
    pub fn path(&self) -> &Path {
        &self.inner.cfg.path
    }

    /// The `--root` state directory.
    pub fn root(&self) -> &Path {
        &self.inner.cfg.root
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.cfg
    }

    /// runc, crun or other, from `--version` (cached); falls back to the binary's file name
    /// when `--version` cannot be run.
    pub fn kind(&self) -> RuntimeKind {
        match self.version_info() {
            Ok(info) => info.kind,
            Err(_) => {
                let file = self.path().file_name().map(|f| f.to_string_lossy());
                match file.as_deref() {
                    Some(f) if f.contains("crun") => RuntimeKind::Crun,
                    Some(f) if f.contains("runc") => RuntimeKind::Runc,
                    _ => RuntimeKind::Other,
                }
            }
        }
    }

    /// The runtime's version number, e.g. `1.1.5+ds1` (runc) or `1.8.1` (crun).
    pub fn version(&self) -> Result<String, OciError> {
        self.version_info().map(|i| i.version.clone())
    }

    fn version_info(&self) -> Result<&VersionInfo, OciError> {
        if let Some(info) = self.inner.version.get() {
            return Ok(info);
        }
        let out = self.call_bare("version", &["--version"])?;
        let info = parse_version(&out).ok_or_else(|| OciError::Parse {
            runtime: self.name().to_owned(),
            op: "version",
            message: format!(
                "unexpected --version output {:?}",
                String::from_utf8_lossy(&out)
            ),
        })?;
        Ok(self.inner.version.get_or_init(|| info))
    }

    /// A command for the runtime binary without any global flags.
    fn bare_command(&self) -> Command {
        Command::new(self.path())
    }
}

/// Parses `runc version 1.1.5+ds1` / `crun version 1.8.1` (first line of `--version`).
fn parse_version(out: &[u8]) -> Option<VersionInfo> {
    let text = String::from_utf8_lossy(out);
    let first = text.lines().next()?;
    let (name, version) = first.trim().split_once(" version ")?;
    let kind = match name {
        "runc" => RuntimeKind::Runc,
        "crun" => RuntimeKind::Crun,
        _ => RuntimeKind::Other,
    };
    Some(VersionInfo {
        kind,
        version: version.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let runc = parse_version(b"runc version 1.1.5+ds1\ncommit: x\nspec: 1.0.2-dev\n").unwrap();
        assert_eq!(runc.kind, RuntimeKind::Runc);
        assert_eq!(runc.version, "1.1.5+ds1");
        let crun = parse_version(b"crun version 1.8.1\ncommit: f8a0\nrundir: /run/crun\n").unwrap();
        assert_eq!(crun.kind, RuntimeKind::Crun);
        assert_eq!(crun.version, "1.8.1");
        let youki = parse_version(b"youki version 0.3.0\n").unwrap();
        assert_eq!(youki.kind, RuntimeKind::Other);
        assert!(parse_version(b"garbage").is_none());
    }

    #[test]
    fn kind_falls_back_to_the_file_name() {
        let rt = OciRuntime::new(RuntimeConfig::new("x", "/nonexistent/crun", "/tmp/x"));
        assert_eq!(rt.kind(), RuntimeKind::Crun);
        assert!(matches!(rt.version(), Err(OciError::Spawn { .. })));
        let rt = OciRuntime::new(RuntimeConfig::new("x", "/nonexistent/other", "/tmp/x"));
        assert_eq!(rt.kind(), RuntimeKind::Other);
    }

    #[test]
    fn runtime_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync>() {}
        check::<OciRuntime>();
        assert_eq!(RuntimeConfig::default().timeout, DEFAULT_TIMEOUT);
    }
}
