//! In-memory OCI / Docker schema2 images for tests: layers, configs, manifests, indexes,
//! busybox-based images, big benchmark images and `oci-archive` / `docker save` tarballs.

mod archive;
mod big;
mod busybox;
mod image;
mod layer;

pub use archive::{ArchiveSource, write_docker_save_archive, write_oci_layout_archive};
pub use big::{big_image, big_image_seeded};
pub use busybox::{busybox_image, busybox_layer};
pub use image::{BuiltImage, BuiltIndex, ImageBuilder, IndexBuilder};
pub use layer::{Entry, EntryKind, Layer, LayerBuilder};

/// Every manifest media type the builders produce (for an `Accept` header).
pub const MANIFEST_ACCEPT_ALL: &[&str] = &[
    media::OCI_MANIFEST,
    media::OCI_INDEX,
    media::DOCKER_MANIFEST,
    media::DOCKER_MANIFEST_LIST,
];

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Media type strings used by the builders.
pub mod media {
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker uncompressed layer (rare, but seen in the wild).
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker schema2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip (the common case).
    Gzip,
    /// zstd.
    Zstd,
}

/// Which family of media types an image (manifest, config, layers) uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MediaTypes {
    /// OCI image spec media types.
    #[default]
    Oci,
    /// Docker image manifest v2 schema 2 media types.
    Docker,
}

impl MediaTypes {
    /// The layer media type for `compression`. Docker has no zstd layer type; like BuildKit
    /// we fall back to the OCI zstd type there.
    pub fn layer(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Self::Oci, Compression::None) => media::OCI_LAYER,
            (Self::Oci, Compression::Gzip) => media::OCI_LAYER_GZIP,
            (_, Compression::Zstd) => media::OCI_LAYER_ZSTD,
            (Self::Docker, Compression::None) => media::DOCKER_LAYER,
            (Self::Docker, Compression::Gzip) => media::DOCKER_LAYER_GZIP,
        }
    }

    /// The image config media type.
    pub fn config(self) -> &'static str {
        match self {
            Self::Oci => media::OCI_CONFIG,
            Self::Docker => media::DOCKER_CONFIG,
        }
    }

    /// The image manifest media type.
    pub fn manifest(self) -> &'static str {
        match self {
            Self::Oci => media::OCI_MANIFEST,
            Self::Docker => media::DOCKER_MANIFEST,
        }
    }

    /// The index / manifest list media type.
    pub fn index(self) -> &'static str {
        match self {
            Self::Oci => media::OCI_INDEX,
            Self::Docker => media::DOCKER_MANIFEST_LIST,
        }
    }
}

/// A content-addressed blob (config, manifest, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    /// The bytes.
    pub data: Vec<u8>,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
}

impl Blob {
    /// Wraps `data`, computing its digest.
    pub fn new(data: Vec<u8>, media_type: &str) -> Self {
        let digest = sha256_digest(&data);
        Self {
            data,
            digest,
            media_type: media_type.to_owned(),
        }
    }

    /// The OCI descriptor `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> Value {
        descriptor(&self.media_type, &self.digest, self.data.len())
    }
}

/// `sha256:<lowercase hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The hex part of a `sha256:<hex>` digest (the input itself if it has no algorithm prefix).
pub fn digest_hex(digest: &str) -> &str {
    digest.split_once(':').map_or(digest, |(_, hex)| hex)
}

pub(crate) fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// An image platform as found in an index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// GOARCH style: `amd64`, `arm64`, `arm`, ...
    pub architecture: String,
    /// `v7`, `v8`, ...
    pub variant: Option<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// linux/amd64.
    pub fn linux_amd64() -> Self {
        Self::new("linux", "amd64", None)
    }

    /// linux/arm64.
    pub fn linux_arm64() -> Self {
        Self::new("linux", "arm64", None)
    }

    /// linux/arm/v7.
    pub fn linux_arm_v7() -> Self {
        Self::new("linux", "arm", Some("v7"))
    }

    /// The platform of this machine (GOARCH naming), what the host busybox runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self::new("linux", arch, None)
    }

    /// `{"architecture", "os", "variant"?}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            v["variant"] = json!(variant);
        }
        v
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
