//! `SpecError`: everything that can make spec generation refuse a container.

use std::io;
use std::path::PathBuf;

/// Why a spec could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command specified")]
    NoCommand,

    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: &'static str },

    #[error("run_as_group {gid} is set without run_as_user or run_as_username")]
    GroupWithoutUser { gid: i64 },

    #[error("user {name:?} not found in the container's /etc/passwd")]
    UserNotFound { name: String },

    #[error("group {name:?} not found in the container's /etc/group")]
    GroupNotFound { name: String },

    #[error("invalid supplemental group {gid}")]
    InvalidSupplementalGroup { gid: i64 },

    #[error("failed to read {file} in container rootfs {rootfs:?}")]
    ReadRootfsFile {
        rootfs: PathBuf,
        file: &'static str,
        #[source]
        source: io::Error,
    },

    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },

    #[error("privileged container {container:?} is not allowed in a non-privileged sandbox")]
    PrivilegedNotAllowed { container: String },

    #[error("mount container path {path:?} is not absolute")]
    RelativeContainerPath { path: String },

    #[error("mount host path {path:?} is not absolute")]
    RelativeHostPath { path: String },

    #[error("failed to create mount host path {path:?}")]
    CreateHostPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to resolve host path {path:?}")]
    ResolveHostPath {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to look up the mount of {path:?}")]
    LookupMount {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("path {path:?} is mounted on {mount_point:?} but it is not a {required} mount")]
    MountPropagation {
        path: PathBuf,
        mount_point: PathBuf,
        required: &'static str,
    },

    #[error("recursive read-only mount of {host_path:?}: {reason}")]
    RecursiveReadOnly {
        host_path: String,
        reason: &'static str,
    },

    #[error(
        "invalid permissions {permissions:?} for device {path:?}: want a combination of r, w, m"
    )]
    DevicePermissions { path: String, permissions: String },

    #[error("failed to look up device {path:?}")]
    Device {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to list the host devices")]
    HostDevices {
        #[source]
        source: io::Error,
    },

    #[error("{namespace} namespace mode {mode} needs a namespace path the engine did not provide")]
    MissingNamespacePath {
        namespace: &'static str,
        mode: &'static str,
    },

    #[error(
        "apparmor is not enabled on this host (/sys/module/apparmor/parameters/enabled is not \"Y\"): cannot apply profile {profile}"
    )]
    AppArmorNotEnabled { profile: String },

    #[error("apparmor RuntimeDefault requested but no default profile is configured")]
    AppArmorNoDefault,

    #[error("apparmor profile {name:?} is not loaded")]
    AppArmorProfileNotFound { name: String },

    #[error("failed to read the loaded apparmor profiles")]
    AppArmorProfiles {
        #[source]
        source: io::Error,
    },

    #[error("failed to read seccomp profile {path:?}")]
    ReadSeccompProfile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid seccomp profile {profile}: {message}")]
    InvalidSeccompProfile { profile: String, message: String },

    #[error("invalid {field} {value}")]
    InvalidResource { field: &'static str, value: i64 },

    #[error("failed to serialize the spec")]
    Serialize {
        #[source]
        source: serde_json::Error,
    },

    #[error("failed to write {path:?}")]
    WriteSpec {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to detect the host's {what}")]
    DetectHost {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

impl SpecError {
    /// The class of failure, for the server's status table.
    pub fn kind(&self) -> husk_image::ErrorKind {
        use SpecError::*;
        use husk_image::ErrorKind as K;
        match self {
            NoCommand
            | InvalidUser { .. }
            | GroupWithoutUser { .. }
            | UserNotFound { .. }
            | GroupNotFound { .. }
            | InvalidSupplementalGroup { .. }
            | UnknownCapability { .. }
            | PrivilegedNotAllowed { .. }
            | RelativeContainerPath { .. }
            | RelativeHostPath { .. }
            | RecursiveReadOnly { .. }
            | DevicePermissions { .. }
            | InvalidSeccompProfile { .. }
            | InvalidResource { .. } => K::InvalidArgument,
            AppArmorProfileNotFound { .. } => K::NotFound,
            ReadSeccompProfile { source, .. } | Device { source, .. }
                if source.kind() == io::ErrorKind::NotFound =>
            {
                K::NotFound
            }
            MountPropagation { .. } | AppArmorNotEnabled { .. } | AppArmorNoDefault => {
                K::FailedPrecondition
            }
            ReadSeccompProfile { .. }
            | Device { .. }
            | ReadRootfsFile { .. }
            | CreateHostPath { .. }
            | ResolveHostPath { .. }
            | LookupMount { .. }
            | HostDevices { .. }
            | MissingNamespacePath { .. }
            | AppArmorProfiles { .. }
            | Serialize { .. }
            | WriteSpec { .. }
            | DetectHost { .. } => K::Internal,
        }
    }
}
