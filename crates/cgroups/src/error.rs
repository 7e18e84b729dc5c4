//! `CgroupError`: the ways reading a cgroup can fail, each naming the path involved.

use std::path::PathBuf;

/// An error from reading a cgroup's files.
///
/// A cgroup file that is absent (controller not mounted, older kernel, cgroup removed while we
/// read it) is not an error: the field it feeds is `None`. Only a missing cgroup directory, an
/// unusable path, an unreadable file or a file the kernel would never write are errors.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// The cgroup does not exist (in v1: under none of the controllers we read).
    #[error("cgroup {path:?} not found")]
    NotFound { path: PathBuf },
    /// The cgroups path is not absolute or climbs out of the hierarchy (`..`).
    #[error("invalid cgroups path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    /// A cgroup file or directory exists but could not be read.
    #[error("failed to read cgroup file {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cgroup file does not have the format the kernel writes.
    #[error("cannot parse cgroup file {path:?}: unexpected {what:?}")]
    Parse { path: PathBuf, what: String },
}
