//! OCI / Docker schema2 manifest, index and image-config types, media types, platform
//! selection and chain-ID computation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The `Accept` header sent when resolving a manifest.
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// The parsed digest; an invalid one is an error naming `what`.
    pub fn digest(&self, what: &'static str) -> Result<Digest> {
        Digest::parse(&self.digest).map_err(|e| ImageError::InvalidContent {
            what,
            digest: self.digest.clone(),
            message: e.to_string(),
        })
    }

    /// The size as unsigned; negative sizes are invalid.
    pub fn size(&self, what: &'static str) -> Result<u64> {
        u64::try_from(self.size).map_err(|_| ImageError::InvalidContent {
            what,
            digest: self.digest.clone(),
            message: format!("negative size {}", self.size),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
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

impl Platform {
    /// The platform this daemon runs on, in OCI terms.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(Into::into),
            os_version: None,
        }
    }

    /// Whether an image for `other` runs here; 0 = no, higher = better match.
    pub fn match_score(&self, other: &Platform) -> u8 {
        if other.os != self.os || other.architecture != self.architecture {
            return 0;
        }
        let norm = |v: &Option<String>| -> Option<String> {
            match (self.architecture.as_str(), v.as_deref()) {
                ("arm64", None | Some("")) => Some("v8".into()),
                ("arm", None | Some("")) => Some("v7".into()),
                (_, Some("")) => None,
                (_, v) => v.map(Into::into),
            }
        };
        if norm(&other.variant) == norm(&self.variant) {
            2
        } else {
            1
        }
    }
}

/// An image manifest (OCI or Docker schema2; same JSON shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// What a fetched manifest document is.
#[derive(Debug, Clone)]
pub enum ManifestKind {
    Image(Box<Manifest>),
    Index(Index),
}

/// Parses a manifest document using the media type the registry gave (or the document's own
/// `mediaType`, or its shape when neither says).
pub fn parse_manifest(digest: &Digest, media_type: &str, data: &[u8]) -> Result<ManifestKind> {
    let invalid = |message: String| ImageError::InvalidContent {
        what: "manifest",
        digest: digest.to_string(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| invalid(e.to_string()))?;
    let doc_type = value
        .get("mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let mut mt = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if mt.is_empty()
        || mt == "application/json"
        || mt == "text/plain"
        || mt == "application/octet-stream"
    {
        mt = doc_type.clone();
    }
    if mt.is_empty() {
        mt = if value.get("manifests").is_some() {
            OCI_INDEX.into()
        } else if value.get("config").is_some() {
            OCI_MANIFEST.into()
        } else if value.get("fsLayers").is_some() {
            DOCKER_SCHEMA1.into()
        } else {
            String::new()
        };
    }
    match mt.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: Manifest = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            if m.schema_version != 2 {
                return Err(invalid(format!(
                    "schemaVersion {} (want 2)",
                    m.schema_version
                )));
            }
            Ok(ManifestKind::Image(Box::new(m)))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: Index = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            Ok(ManifestKind::Index(i))
        }
        DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED => Err(ImageError::UnsupportedMediaType {
            media_type: mt,
            what: format!("manifest {digest} (Docker schema 1 is deprecated and not supported)"),
        }),
        _ => Err(ImageError::UnsupportedMediaType {
            media_type: mt,
            what: format!("manifest {digest}"),
        }),
    }
}

/// Picks the best manifest for `want` from an index.
pub fn select_platform<'a>(
    index_digest: &Digest,
    index: &'a Index,
    want: &Platform,
) -> Result<&'a Descriptor> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for d in &index.manifests {
        let score = match &d.platform {
            Some(p) => want.match_score(p),
            None => 0,
        };
        if score > 0 && best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| ImageError::NoMatchingPlatform {
            digest: index_digest.clone(),
            platform: want.to_string(),
            available: index
                .manifests
                .iter()
                .map(|d| {
                    d.platform
                        .as_ref()
                        .map_or("unknown".into(), |p| p.to_string())
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// The subset of the OCI image configuration husk reads.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    pub rootfs: RootFs,
}

/// The `config` member of an image config: defaults for a container.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn parse(digest: &Digest, data: &[u8]) -> Result<ImageConfig> {
        let c: ImageConfig =
            serde_json::from_slice(data).map_err(|e| ImageError::InvalidContent {
                what: "image config",
                digest: digest.to_string(),
                message: e.to_string(),
            })?;
        Ok(c)
    }

    /// The layer diff IDs, parsed.
    pub fn diff_ids(&self, config_digest: &Digest) -> Result<Vec<Digest>> {
        self.rootfs
            .diff_ids
            .iter()
            .map(|s| {
                Digest::parse(s).map_err(|e| ImageError::InvalidContent {
                    what: "image config",
                    digest: config_digest.to_string(),
                    message: format!("bad diff_id {s:?}: {e}"),
                })
            })
            .collect()
    }
}

/// Chain IDs as the OCI image spec defines them: `chain[0] = diff[0]`,
/// `chain[n] = sha256(chain[n-1] + " " + diff[n])`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::sha256_of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// Whether a layer media type is one we can unpack.
pub fn is_layer_media_type(mt: &str) -> bool {
    crate::unpack::Compression::from_media_type(mt).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::sha256_of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn platform_selection_prefers_exact_variant() {
        let idx = Index {
            schema_version: 2,
            media_type: None,
            annotations: None,
            manifests: vec![
                desc("sha256:aa", "arm64", Some("v8")),
                desc("sha256:bb", "amd64", None),
                desc("sha256:cc", "arm", Some("v6")),
                desc("sha256:dd", "arm", Some("v7")),
            ],
        };
        let dg = Digest::sha256_of(b"i");
        let amd = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        assert_eq!(
            select_platform(&dg, &idx, &amd).unwrap().digest,
            "sha256:bb"
        );
        let arm = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
            ..Default::default()
        };
        assert_eq!(
            select_platform(&dg, &idx, &arm).unwrap().digest,
            "sha256:dd"
        );
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        assert_eq!(
            select_platform(&dg, &idx, &arm64).unwrap().digest,
            "sha256:aa"
        );
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            ..Default::default()
        };
        let err = select_platform(&dg, &idx, &s390).unwrap_err();
        assert!(err.to_string().contains("linux/amd64"), "{err}");
    }

    fn desc(d: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
                os_version: None,
            }),
            annotations: None,
            urls: None,
        }
    }

    #[test]
    fn schema1_is_refused_clearly() {
        let dg = Digest::sha256_of(b"x");
        let err = parse_manifest(&dg, "", br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }
}
