//! `ImageServiceConfig`: the settings of the image service (where its stores live, how pulls
//! run, how much an import may bring).

use std::path::PathBuf;

use crate::manifest::Platform;

/// What [`ImageServiceConfig::max_import_bytes`] is unless set: 4 GiB.
pub const DEFAULT_MAX_IMPORT_BYTES: u64 = 4 << 30;

/// Settings of the image service.
#[derive(Debug, Clone)]
pub struct ImageServiceConfig {
    /// Persistent root (content, snapshots, images live below it).
    pub root: PathBuf,
    /// containerd-style `hosts.toml` directory.
    pub registry_config_path: PathBuf,
    /// Blob downloads at once, across all pulls.
    pub max_concurrent_downloads: usize,
    /// The platform to pull for.
    pub platform: Platform,
    /// The most bytes an imported archive may hold: the archive as received, and the tar
    /// inside it when it is compressed (so a small gzip bomb is bounded too). More is refused
    /// with [`ImageError::ImportTooLarge`](crate::ImageError::ImportTooLarge).
    pub max_import_bytes: u64,
}

impl ImageServiceConfig {
    pub fn new(root: impl Into<PathBuf>, registry_config_path: impl Into<PathBuf>) -> Self {
        ImageServiceConfig {
            root: root.into(),
            registry_config_path: registry_config_path.into(),
            max_concurrent_downloads: 3,
            platform: Platform::host(),
            max_import_bytes: DEFAULT_MAX_IMPORT_BYTES,
        }
    }
}
