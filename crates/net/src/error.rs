//! Errors of the CNI client: why the network is not ready, plugin failures as CNI reports
//! them, and everything around them (lookup, timeouts, cache, invalid requests).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The `reason` the CRI reports in `NetworkReady=false` (same string as containerd and CRI-O).
pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// The network cannot be used yet: no config, an invalid one, or a missing plugin binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotReady {
    /// Always [`NETWORK_NOT_READY_REASON`].
    pub reason: &'static str,
    /// Says why, naming the directory or file.
    pub message: String,
}

impl NotReady {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        NotReady {
            reason: NETWORK_NOT_READY_REASON,
            message: message.into(),
        }
    }
}

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CniCommand {
    Add,
    Del,
    Check,
}

impl CniCommand {
    /// The `CNI_COMMAND` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CniCommand::Add => "ADD",
            CniCommand::Del => "DEL",
            CniCommand::Check => "CHECK",
        }
    }
}

impl fmt::Display for CniCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a plugin reported on stdout (`{"code", "msg", "details"}`), with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// The plugin's `type`.
    pub plugin: String,
    /// The network (list) name.
    pub network: String,
    pub command: CniCommand,
    /// CNI error code: 1–99 well known (e.g. 7 invalid network config, 11 try again later).
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin {} {} on network {} failed with code {}: {}",
            self.plugin, self.command, self.network, self.code, self.msg
        )?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginError {}

/// Every error of `husk-net`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("network not ready: {0}")]
    NotReady(#[from] NotReady),
    #[error("CNI {0}")]
    Plugin(#[from] PluginError),
    #[error("CNI plugin {plugin:?} of network {network} not found in {dirs:?}")]
    PluginNotFound {
        plugin: String,
        network: String,
        dirs: Vec<PathBuf>,
    },
    #[error("starting CNI plugin {path:?} for {command}: {source}")]
    Spawn {
        path: PathBuf,
        command: CniCommand,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} on network {network} failed ({status}): {output}")]
    PluginFailed {
        plugin: String,
        network: String,
        command: CniCommand,
        /// Exit status as text (`exit status: 1`, `signal: 9 (SIGKILL)`).
        status: String,
        /// stderr, and stdout if it was not a CNI error object.
        output: String,
    },
    #[error(
        "CNI plugin {plugin} {command} on network {network} timed out after {timeout:?} and was killed"
    )]
    Timeout {
        plugin: String,
        network: String,
        command: CniCommand,
        timeout: Duration,
    },
    #[error(
        "CNI plugin {plugin} {command} on network {network} returned an invalid result: {reason}"
    )]
    InvalidResult {
        plugin: String,
        network: String,
        command: CniCommand,
        reason: String,
    },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidRequest {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("invalid bandwidth {value:?}: {reason}")]
    InvalidBandwidth { value: String, reason: &'static str },
    #[error("{action} CNI cache file {path:?}: {source}")]
    Cache {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI cache file {path:?} is unreadable: {reason}")]
    CacheCorrupt { path: PathBuf, reason: String },
    #[error("no cached ADD result for sandbox {id} interface {ifname}: nothing to CHECK")]
    NoCachedResult { id: String, ifname: String },
    #[error(
        "network {network} uses cniVersion {version}, which has no CHECK (needs 0.4.0 or later)"
    )]
    CheckUnsupported { network: String, version: String },
    #[error("{add}; rollback DEL also failed: {del}")]
    RollbackFailed {
        add: Box<NetError>,
        del: Box<NetError>,
    },
    #[error("CNI task for sandbox {id} ended abnormally: {reason}")]
    Task { id: String, reason: String },
}

impl NetError {
    /// Whether the error means "no usable network config" (the kubelet waits for one).
    pub fn is_not_ready(&self) -> bool {
        matches!(self, NetError::NotReady(_))
    }

    /// The CNI error code, when a plugin reported one.
    pub fn plugin_code(&self) -> Option<u32> {
        match self {
            NetError::Plugin(p) => Some(p.code),
            NetError::RollbackFailed { add, .. } => add.plugin_code(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_error_display_names_everything() {
        let e = NetError::from(PluginError {
            plugin: "bridge".into(),
            network: "podnet".into(),
            command: CniCommand::Add,
            code: 7,
            msg: "invalid config".into(),
            details: "no bridge name".into(),
        });
        assert_eq!(
            e.to_string(),
            "CNI plugin bridge ADD on network podnet failed with code 7: invalid config \
             (no bridge name)"
        );
        assert_eq!(e.plugin_code(), Some(7));
    }

    #[test]
    fn not_ready_carries_the_cri_reason() {
        let n = NotReady::new("no network config found in \"/etc/cni/net.d\"");
        assert_eq!(n.reason, "NetworkPluginNotReady");
        let e = NetError::from(n);
        assert!(e.is_not_ready());
        assert!(
            e.to_string()
                .starts_with("network not ready: no network config")
        );
    }
}
