//! Image configs, manifests and indexes (OCI or Docker schema2) over built layers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{Blob, Layer, MediaTypes, Platform, descriptor, media, sha256_digest};

type Edit = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// Builds one image: config + manifest over a list of layers.
#[derive(Clone)]
pub struct ImageBuilder {
    media_types: MediaTypes,
    platform: Platform,
    layers: Vec<Layer>,
    env: Vec<String>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    user: Option<String>,
    working_dir: Option<String>,
    labels: BTreeMap<String, String>,
    stop_signal: Option<String>,
    exposed_ports: Vec<String>,
    volumes: Vec<String>,
    history: Vec<Value>,
    annotations: BTreeMap<String, String>,
    config_edits: Vec<Edit>,
    manifest_edits: Vec<Edit>,
}

impl Default for ImageBuilder {
    fn default() -> Self {
        Self::new()
    }
}

const CREATED: &str = "2024-01-01T00:00:00Z";

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

impl ImageBuilder {
    /// An empty OCI image for the host platform.
    pub fn new() -> Self {
        Self {
            media_types: MediaTypes::Oci,
            platform: Platform::host(),
            layers: Vec::new(),
            env: Vec::new(),
            entrypoint: None,
            cmd: None,
            user: None,
            working_dir: None,
            labels: BTreeMap::new(),
            stop_signal: None,
            exposed_ports: Vec::new(),
            volumes: Vec::new(),
            history: Vec::new(),
            annotations: BTreeMap::new(),
            config_edits: Vec::new(),
            manifest_edits: Vec::new(),
        }
    }

    /// OCI or Docker media types for manifest, config and layers.
    pub fn media_types(mut self, m: MediaTypes) -> Self {
        self.media_types = m;
        self
    }

    /// The platform written in the config (and used by [`IndexBuilder`]).
    pub fn platform(mut self, p: Platform) -> Self {
        self.platform = p;
        self
    }

    /// Appends a layer (and a history entry for it).
    pub fn layer(mut self, layer: Layer) -> Self {
        let n = self.layers.len();
        self.history.push(
            json!({ "created": CREATED, "created_by": format!("husk-test-support layer {n}") }),
        );
        self.layers.push(layer);
        self
    }

    /// Appends an `empty_layer` history entry (like `ENV` or `CMD` in a Dockerfile).
    pub fn empty_history(mut self, created_by: &str) -> Self {
        self.history
            .push(json!({ "created": CREATED, "created_by": created_by, "empty_layer": true }));
        self
    }

    /// Adds `KEY=VALUE` to `config.Env`.
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_owned());
        self
    }

    /// Sets `config.Entrypoint`.
    pub fn entrypoint(mut self, args: &[&str]) -> Self {
        self.entrypoint = Some(strings(args));
        self
    }

    /// Sets `config.Cmd`.
    pub fn cmd(mut self, args: &[&str]) -> Self {
        self.cmd = Some(strings(args));
        self
    }

    /// Sets `config.User` (`name`, `uid`, `uid:gid`, `name:group`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Sets `config.WorkingDir`.
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_owned());
        self
    }

    /// Adds a `config.Labels` entry.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets `config.StopSignal` (e.g. `SIGUSR1`).
    pub fn stop_signal(mut self, sig: &str) -> Self {
        self.stop_signal = Some(sig.to_owned());
        self
    }

    /// Adds a `config.ExposedPorts` entry such as `80/tcp`.
    pub fn exposed_port(mut self, port: &str) -> Self {
        self.exposed_ports.push(port.to_owned());
        self
    }

    /// Adds a `config.Volumes` entry.
    pub fn volume(mut self, path: &str) -> Self {
        self.volumes.push(path.to_owned());
        self
    }

    /// Adds a manifest annotation (OCI only; ignored by Docker clients).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Edits the config JSON after it is generated (for hostile or unusual configs).
    pub fn edit_config(mut self, f: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.config_edits.push(Arc::new(f));
        self
    }

    /// Edits the manifest JSON after it is generated (e.g. a wrong layer size or digest).
    pub fn edit_manifest(mut self, f: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.manifest_edits.push(Arc::new(f));
        self
    }

    /// The layers added so far.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The generated config JSON.
    pub fn config_json(&self) -> Value {
        let mut c = serde_json::Map::new();
        if !self.env.is_empty() {
            c.insert("Env".into(), json!(self.env));
        }
        if let Some(e) = &self.entrypoint {
            c.insert("Entrypoint".into(), json!(e));
        }
        if let Some(cmd) = &self.cmd {
            c.insert("Cmd".into(), json!(cmd));
        }
        if let Some(u) = &self.user {
            c.insert("User".into(), json!(u));
        }
        if let Some(w) = &self.working_dir {
            c.insert("WorkingDir".into(), json!(w));
        }
        if !self.labels.is_empty() {
            c.insert("Labels".into(), json!(self.labels));
        }
        if let Some(s) = &self.stop_signal {
            c.insert("StopSignal".into(), json!(s));
        }
        if !self.exposed_ports.is_empty() {
            let m: BTreeMap<_, _> = self.exposed_ports.iter().map(|p| (p, json!({}))).collect();
            c.insert("ExposedPorts".into(), json!(m));
        }
        if !self.volumes.is_empty() {
            let m: BTreeMap<_, _> = self.volumes.iter().map(|p| (p, json!({}))).collect();
            c.insert("Volumes".into(), json!(m));
        }
        let diff_ids: Vec<&str> = self.layers.iter().map(|l| l.diff_id.as_str()).collect();
        let mut v = json!({
            "created": CREATED,
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": c,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
            "history": self.history,
        });
        if let Some(variant) = &self.platform.variant {
            v["variant"] = json!(variant);
        }
        for edit in &self.config_edits {
            edit(&mut v);
        }
        v
    }

    /// Builds config and manifest.
    pub fn build(&self) -> BuiltImage {
        let m = self.media_types;
        let config = Blob::new(self.config_json().to_string().into_bytes(), m.config());
        let layers: Vec<Layer> = self
            .layers
            .iter()
            .map(|l| {
                let mut l = l.clone();
                if m == MediaTypes::Docker
                    && [media::OCI_LAYER, media::OCI_LAYER_GZIP].contains(&l.media_type.as_str())
                {
                    l.media_type = m.layer(l.compression).to_owned();
                }
                l
            })
            .collect();
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": m.manifest(),
            "config": config.descriptor(),
            "layers": layers.iter().map(Layer::descriptor).collect::<Vec<_>>(),
        });
        if !self.annotations.is_empty() {
            manifest["annotations"] = json!(self.annotations);
        }
        for edit in &self.manifest_edits {
            edit(&mut manifest);
        }
        let manifest = manifest.to_string().into_bytes();
        BuiltImage {
            manifest_digest: sha256_digest(&manifest),
            manifest,
            manifest_media_type: m.manifest().to_owned(),
            config,
            layers,
            platform: self.platform.clone(),
        }
    }
}

/// A built image: every blob plus the manifest bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    /// The config blob.
    pub config: Blob,
    /// The layers, bottom first.
    pub layers: Vec<Layer>,
    /// Manifest bytes exactly as pushed.
    pub manifest: Vec<u8>,
    /// `sha256:` of `manifest`.
    pub manifest_digest: String,
    /// Manifest media type.
    pub manifest_media_type: String,
    /// The platform from the config.
    pub platform: Platform,
}

impl BuiltImage {
    /// The manifest descriptor `{mediaType, digest, size}`.
    pub fn manifest_descriptor(&self) -> Value {
        descriptor(
            &self.manifest_media_type,
            &self.manifest_digest,
            self.manifest.len(),
        )
    }

    /// `(digest, bytes)` of the config and each layer.
    pub fn blobs(&self) -> Vec<(&str, &[u8])> {
        let mut v = vec![(self.config.digest.as_str(), self.config.data.as_slice())];
        v.extend(
            self.layers
                .iter()
                .map(|l| (l.digest.as_str(), l.blob.as_slice())),
        );
        v
    }

    /// The image ID as the CRI reports it: the config digest.
    pub fn image_id(&self) -> &str {
        &self.config.digest
    }

    /// Sum of config, layer and manifest sizes.
    pub fn total_size(&self) -> u64 {
        let layers: u64 = self.layers.iter().map(Layer::size).sum();
        layers + self.config.data.len() as u64 + self.manifest.len() as u64
    }

    /// Chain IDs of the layers (`ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))`).
    pub fn chain_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for l in &self.layers {
            let next = match out.last() {
                None => l.diff_id.clone(),
                Some(prev) => sha256_digest(format!("{prev} {}", l.diff_id).as_bytes()),
            };
            out.push(next);
        }
        out
    }
}

/// Builds an OCI image index or Docker manifest list.
#[derive(Clone, Debug, Default)]
pub struct IndexBuilder {
    media_types: MediaTypes,
    images: Vec<BuiltImage>,
    annotations: BTreeMap<String, String>,
}

impl IndexBuilder {
    /// An empty index (OCI) or manifest list (Docker).
    pub fn new(media_types: MediaTypes) -> Self {
        Self {
            media_types,
            ..Self::default()
        }
    }

    /// Adds an image under its own [`BuiltImage::platform`].
    pub fn image(mut self, image: BuiltImage) -> Self {
        self.images.push(image);
        self
    }

    /// Adds an index annotation (OCI only).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Serialises the index.
    pub fn build(&self) -> BuiltIndex {
        let manifests: Vec<Value> = self
            .images
            .iter()
            .map(|i| {
                let mut d = i.manifest_descriptor();
                d["platform"] = i.platform.to_json();
                d
            })
            .collect();
        let mut v = json!({
            "schemaVersion": 2,
            "mediaType": self.media_types.index(),
            "manifests": manifests,
        });
        if !self.annotations.is_empty() {
            v["annotations"] = json!(self.annotations);
        }
        let bytes = v.to_string().into_bytes();
        BuiltIndex {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: self.media_types.index().to_owned(),
            images: self.images.clone(),
        }
    }
}

/// A built index and its child images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltIndex {
    /// Index bytes exactly as pushed.
    pub bytes: Vec<u8>,
    /// `sha256:` of `bytes`.
    pub digest: String,
    /// Index media type.
    pub media_type: String,
    /// The child images, in index order.
    pub images: Vec<BuiltImage>,
}

impl BuiltIndex {
    /// The index descriptor `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> Value {
        descriptor(&self.media_type, &self.digest, self.bytes.len())
    }

    /// The child image for `platform`, if any.
    pub fn image_for(&self, platform: &Platform) -> Option<&BuiltImage> {
        self.images.iter().find(|i| &i.platform == platform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Compression, LayerBuilder};

    #[test]
    fn docker_media_types_and_index() {
        let l = LayerBuilder::new()
            .file("a", "a", 0o644, 0, 0)
            .build(Compression::Gzip);
        let img = ImageBuilder::new()
            .media_types(MediaTypes::Docker)
            .layer(l.clone())
            .cmd(&["sh"])
            .user("1000:1000")
            .label("k", "v")
            .build();
        assert_eq!(img.layers[0].media_type, media::DOCKER_LAYER_GZIP);
        assert_eq!(img.config.media_type, media::DOCKER_CONFIG);
        let m: Value = serde_json::from_slice(&img.manifest).expect("manifest json");
        assert_eq!(m["layers"][0]["digest"], json!(l.digest));
        let c: Value = serde_json::from_slice(&img.config.data).expect("config json");
        assert_eq!(c["rootfs"]["diff_ids"][0], json!(l.diff_id));
        assert_eq!(c["config"]["User"], json!("1000:1000"));
        assert_eq!(img.chain_ids(), vec![l.diff_id.clone()]);

        let arm = ImageBuilder::new()
            .platform(Platform::linux_arm_v7())
            .layer(l)
            .build();
        let idx = IndexBuilder::new(MediaTypes::Oci)
            .image(img)
            .image(arm)
            .build();
        let v: Value = serde_json::from_slice(&idx.bytes).expect("index json");
        assert_eq!(v["manifests"][1]["platform"]["variant"], json!("v7"));
        assert!(idx.image_for(&Platform::linux_arm_v7()).is_some());
    }
}
