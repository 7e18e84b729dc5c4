//! `OciError`: every way a call into an OCI runtime can fail, with enough context to act on.

use std::path::PathBuf;
use std::time::Duration;

/// An error from driving an OCI runtime binary.
///
/// `NotFound` and `NotRunning` are split out of `Failed` so callers can treat
/// "already gone" as success where that is the right thing to do (stop, remove).
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The runtime binary could not be started at all.
    #[error("failed to spawn runtime {runtime} ({path:?})")]
    Spawn {
        runtime: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime ran and reported a failure; `message` holds its own words.
    #[error("runtime {runtime} {op} of container {id:?} failed ({exit}): {message}", exit = fmt_exit(*.exit))]
    Failed {
        runtime: String,
        op: &'static str,
        id: String,
        exit: Option<i32>,
        message: String,
    },
    /// The container exists but is not running (already stopped), or is unknown to `kill`.
    #[error("container {id:?} is not running")]
    NotRunning { id: String },
    /// The runtime does not know this container id.
    #[error("container {id:?} not found")]
    NotFound { id: String },
    /// The runtime's output could not be understood.
    #[error("cannot parse output of runtime {runtime} {op}: {message}")]
    Parse {
        runtime: String,
        op: &'static str,
        message: String,
    },
    /// The runtime lacks a feature (e.g. `crun` 1.8 has no `features` command).
    #[error("runtime {runtime} does not support {what}")]
    Unsupported { runtime: String, what: &'static str },
    /// Checkpointing cannot work here: the runtime was built without CRIU, CRIU is not installed
    /// (or too old), or CRIU cannot run on this kernel. `reason` says which, in CRIU's words.
    #[error("runtime {runtime} cannot checkpoint container {id:?}: {reason}")]
    CriuUnavailable {
        runtime: String,
        id: String,
        reason: String,
    },
    /// The runtime did not finish in time; it was killed.
    #[error("runtime {runtime} {op} of container {id:?} timed out after {after:?}")]
    Timeout {
        runtime: String,
        op: &'static str,
        id: String,
        after: Duration,
    },
    /// Talking to the runtime process (pipes, polling, waiting) failed.
    #[error("i/o error while running runtime {runtime} {op}")]
    Io {
        runtime: String,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl OciError {
    /// True when the container is unknown to the runtime.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// True when the container exists but is not running.
    pub fn is_not_running(&self) -> bool {
        matches!(self, Self::NotRunning { .. })
    }
}

fn fmt_exit(exit: Option<i32>) -> String {
    match exit {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_display_keeps_runtime_words() {
        let e = OciError::Failed {
            runtime: "runc".into(),
            op: "start",
            id: "abc".into(),
            exit: Some(1),
            message: "cannot start an already running container".into(),
        };
        assert_eq!(
            e.to_string(),
            "runtime runc start of container \"abc\" failed (exit status 1): \
             cannot start an already running container"
        );
        let e = OciError::Failed {
            runtime: "crun".into(),
            op: "kill",
            id: "x".into(),
            exit: None,
            message: "m".into(),
        };
        assert!(e.to_string().contains("killed by a signal"));
    }
}
