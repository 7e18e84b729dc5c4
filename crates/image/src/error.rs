//! `ImageError`: every failure of the image service, with a `kind()` the server maps to a
//! gRPC status in one table.

use std::path::PathBuf;

use crate::digest::Digest;

/// The class of an error, independent of any wire protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unauthenticated,
    PermissionDenied,
    Unavailable,
    DataLoss,
    DeadlineExceeded,
    ResourceExhausted,
    Unimplemented,
    Internal,
}

/// Errors of the image service.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {source}")]
    InvalidReference {
        reference: String,
        source: crate::reference::ReferenceError,
    },
    #[error("image {reference:?} not found")]
    ImageNotFound { reference: String },
    #[error("{reference}: not found in any registry host (tried {tried})")]
    ManifestNotFound { reference: String, tried: String },
    #[error("registry {host} unreachable: {message}")]
    RegistryUnreachable { host: String, message: String },
    #[error("registry {host} answered {status} for {url}: {message}")]
    RegistryStatus {
        host: String,
        url: String,
        status: u16,
        message: String,
    },
    #[error("authentication to {host} failed: {message}")]
    AuthFailed { host: String, message: String },
    #[error("invalid auth config: {message}")]
    InvalidAuth { message: String },
    #[error("digest mismatch for {expected}: content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error(
        "layer {digest}: uncompressed content hashes to {actual}, image config says {expected}"
    )]
    DiffIdMismatch {
        digest: Digest,
        expected: String,
        actual: String,
    },
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType { media_type: String, what: String },
    #[error("no image for platform {platform} in index {digest} (has: {available})")]
    NoMatchingPlatform {
        digest: Digest,
        platform: String,
        available: String,
    },
    #[error("invalid {what} {digest}: {message}")]
    InvalidContent {
        what: &'static str,
        digest: String,
        message: String,
    },
    #[error("invalid image archive: {message}")]
    InvalidArchive { message: String },
    #[error("image archive is over the import limit of {limit} bytes")]
    ImportTooLarge { limit: u64 },
    #[error("unpacking layer {digest}: {source}")]
    Unpack {
        digest: Digest,
        source: crate::unpack::UnpackError,
    },
    #[error("registry host configuration: {source}")]
    Hosts { source: crate::hosts::HostsError },
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt metadata file {path:?}: {message}")]
    CorruptMetadata { path: PathBuf, message: String },
    #[error("image {id} is in use by {users}")]
    InUse { id: String, users: String },
    #[error("task failed: {message}")]
    Task { message: String },
}

impl ImageError {
    /// The protocol-independent class of this error.
    pub fn kind(&self) -> ErrorKind {
        use ImageError::*;
        match self {
            // A full filesystem (or quota) is a resource to free, not a bug.
            Io { source, .. } if is_no_space(source) => ErrorKind::ResourceExhausted,
            Unpack { source, .. } if source.is_no_space() => ErrorKind::ResourceExhausted,
            InvalidReference { .. } | InvalidAuth { .. } | InvalidArchive { .. } => {
                ErrorKind::InvalidArgument
            }
            ImageNotFound { .. } | ManifestNotFound { .. } | NoMatchingPlatform { .. } => {
                ErrorKind::NotFound
            }
            RegistryUnreachable { .. } => ErrorKind::Unavailable,
            RegistryStatus { status, .. } => match status {
                401 => ErrorKind::Unauthenticated,
                403 => ErrorKind::PermissionDenied,
                404 => ErrorKind::NotFound,
                429 => ErrorKind::ResourceExhausted,
                _ => ErrorKind::Unavailable,
            },
            AuthFailed { .. } => ErrorKind::Unauthenticated,
            DigestMismatch { .. } | SizeMismatch { .. } | DiffIdMismatch { .. } => {
                ErrorKind::DataLoss
            }
            UnsupportedMediaType { .. } | InvalidContent { .. } | Unpack { .. } => {
                ErrorKind::FailedPrecondition
            }
            InUse { .. } => ErrorKind::FailedPrecondition,
            ImportTooLarge { .. } => ErrorKind::ResourceExhausted,
            Hosts { .. } => ErrorKind::FailedPrecondition,
            Io { .. } | CorruptMetadata { .. } | Task { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Whether an I/O error says the filesystem is full (`ENOSPC`) or a quota is used up (`EDQUOT`).
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> std::io::Error {
        std::io::Error::from_raw_os_error(28)
    }

    #[test]
    fn a_full_disk_is_resource_exhausted_and_says_so() {
        let e = ImageError::io("write", "/var/lib/husk/content/ingest/x", enospc());
        assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
        assert!(e.to_string().contains("No space left on device"), "{e}");
        let e = ImageError::Unpack {
            digest: Digest::sha256_of(b"layer"),
            source: crate::unpack::UnpackError::Io {
                op: "write",
                path: "usr/bin/big".into(),
                source: enospc(),
            },
        };
        assert_eq!(e.kind(), ErrorKind::ResourceExhausted);
        assert!(e.to_string().contains("No space left on device"), "{e}");
        let quota = ImageError::io("write", "/x", std::io::Error::from_raw_os_error(122));
        assert_eq!(quota.kind(), ErrorKind::ResourceExhausted);
        // Other I/O failures stay internal.
        let other = ImageError::io("write", "/x", std::io::Error::from_raw_os_error(5));
        assert_eq!(other.kind(), ErrorKind::Internal);
    }
}
