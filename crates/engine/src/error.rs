//! `EngineError`: every failure of the pod and container lifecycle, with a `kind()` the server
//! maps to a gRPC status in its one table.

use std::path::PathBuf;

pub use husk_image::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("name {name:?} is reserved for {holder}")]
    NameReserved { name: String, holder: String },
    #[error("{what} {id} is {state}: {message}")]
    WrongState {
        what: &'static str,
        id: String,
        state: String,
        message: String,
    },
    #[error("ambiguous id prefix {prefix:?} matches {count} {what}s")]
    Ambiguous {
        what: &'static str,
        prefix: String,
        count: usize,
    },
    #[error("unknown runtime handler {handler:?} (configured: {known})")]
    UnknownHandler { handler: String, known: String },
    #[error(transparent)]
    Image(#[from] husk_image::ImageError),
    #[error("OCI runtime: {0}")]
    Oci(#[from] husk_oci::OciError),
    #[error("pod network: {0}")]
    Network(String),
    #[error("pod network not ready: {0}")]
    NetworkNotReady(String),
    #[error("exec failed: {0}")]
    ExecFailed(String),
    #[error("container monitor: {0}")]
    Monitor(String),
    #[error("port-forward: {0}")]
    PortForward(String),
    #[error("OCI spec: {0}")]
    Spec(#[from] crate::spec::SpecError),
    #[error("namespaces: {0}")]
    Namespaces(#[from] husk_sys::ns::NsError),
    #[error(transparent)]
    Mount(#[from] husk_sys::mount::MountError),
    #[error("staging the mount of {host_path:?}: {source}")]
    StageMount {
        host_path: PathBuf,
        source: husk_sys::mount_tree::TreeError,
    },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt record {path:?}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("timed out after {secs}s: {what}")]
    Timeout { what: String, secs: u64 },
    #[error("task failed: {0}")]
    Task(String),
    #[error("failpoint {name} reached")]
    Failpoint { name: &'static str },
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        use EngineError::*;
        match self {
            Invalid(_) | UnknownHandler { .. } | Ambiguous { .. } => ErrorKind::InvalidArgument,
            NotFound { .. } => ErrorKind::NotFound,
            ExecFailed(_) => ErrorKind::FailedPrecondition,
            NetworkNotReady(_) => ErrorKind::FailedPrecondition,
            Network(_) => ErrorKind::Internal,
            NameReserved { .. } => ErrorKind::AlreadyExists,
            WrongState { .. } => ErrorKind::FailedPrecondition,
            Image(e) => e.kind(),
            Spec(e) => e.kind(),
            Timeout { .. } => ErrorKind::DeadlineExceeded,
            // CRIU missing or unusable here: a property of the host, not a failure.
            Oci(husk_oci::OciError::CriuUnavailable { .. }) => ErrorKind::FailedPrecondition,
            Oci(_)
            | Monitor(_)
            | PortForward(_)
            | Namespaces(_)
            | Mount(_)
            | StageMount { .. }
            | Io { .. }
            | Corrupt { .. }
            | Task(_)
            | Failpoint { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Runs blocking work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::Task(e.to_string()))?
}
