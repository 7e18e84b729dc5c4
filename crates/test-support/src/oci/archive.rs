//! Image tarballs as other tools write them: an OCI image layout (`oci-archive`, what
//! `ctr export` / `skopeo copy oci-archive:` produce) and a classic `docker save` archive.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{BuiltImage, BuiltIndex, digest_hex, sha256_digest};

/// What an OCI layout archive holds: one image or a whole index.
#[derive(Clone, Copy, Debug)]
pub enum ArchiveSource<'a> {
    /// A single image manifest.
    Image(&'a BuiltImage),
    /// An index and all its child images.
    Index(&'a BuiltIndex),
}

impl<'a> From<&'a BuiltImage> for ArchiveSource<'a> {
    fn from(i: &'a BuiltImage) -> Self {
        Self::Image(i)
    }
}

impl<'a> From<&'a BuiltIndex> for ArchiveSource<'a> {
    fn from(i: &'a BuiltIndex) -> Self {
        Self::Index(i)
    }
}

struct TarOut {
    b: tar::Builder<Vec<u8>>,
}

impl TarOut {
    fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn file(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        self.b
            .append_data(&mut h, path, data)
            .with_context(|| format!("tar {path}"))
    }

    fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Directory);
        self.b
            .append_data(&mut h, path, &[][..])
            .with_context(|| format!("tar {path}"))
    }

    fn write(self, path: &Path) -> Result<()> {
        let bytes = self.b.into_inner()?;
        std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
    }
}

fn image_blobs<'a>(img: &'a BuiltImage, out: &mut Vec<(&'a str, &'a [u8])>) {
    out.push((&img.manifest_digest, &img.manifest));
    out.extend(img.blobs());
}

/// Writes an OCI image layout tarball: `oci-layout`, `index.json` (one descriptor, annotated
/// with `org.opencontainers.image.ref.name` = `ref_name` when given) and `blobs/sha256/<hex>`.
pub fn write_oci_layout_archive<'a>(
    src: impl Into<ArchiveSource<'a>>,
    ref_name: Option<&str>,
    path: &Path,
) -> Result<()> {
    let src = src.into();
    let mut blobs: Vec<(&str, &[u8])> = Vec::new();
    let mut desc = match src {
        ArchiveSource::Image(img) => {
            image_blobs(img, &mut blobs);
            let mut d = img.manifest_descriptor();
            d["platform"] = img.platform.to_json();
            d
        }
        ArchiveSource::Index(idx) => {
            blobs.push((&idx.digest, &idx.bytes));
            for img in &idx.images {
                image_blobs(img, &mut blobs);
            }
            idx.descriptor()
        }
    };
    if let Some(r) = ref_name {
        desc["annotations"] = json!({ "org.opencontainers.image.ref.name": r });
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": super::media::OCI_INDEX,
        "manifests": [desc],
    });
    let mut t = TarOut::new();
    t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    t.file("index.json", index.to_string().as_bytes())?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    let mut seen = BTreeSet::new();
    for (digest, data) in blobs {
        if seen.insert(digest) {
            t.file(&format!("blobs/sha256/{}", digest_hex(digest)), data)?;
        }
    }
    t.write(path)
}

/// Writes a classic `docker save` tarball (the format Docker produced before 25):
/// `manifest.json` (`Config`, `RepoTags`, `Layers`), `<config hex>.json`,
/// `<layer id>/{VERSION,json,layer.tar}` with uncompressed layer tars, and `repositories`.
pub fn write_docker_save_archive(img: &BuiltImage, repo_tags: &[&str], path: &Path) -> Result<()> {
    let mut t = TarOut::new();
    let config_name = format!("{}.json", digest_hex(&img.config.digest));
    let mut layer_paths = Vec::new();
    let mut parent: Option<String> = None;
    for layer in &img.layers {
        let tar = layer.uncompressed()?;
        // A v1-style layer id: deterministic, unique per (parent, diff_id) chain.
        let seed = format!("{} {}", parent.as_deref().unwrap_or(""), layer.diff_id);
        let id = digest_hex(&sha256_digest(seed.as_bytes())).to_owned();
        let mut v1 = json!({ "id": id, "created": "2024-01-01T00:00:00Z" });
        if let Some(p) = &parent {
            v1["parent"] = json!(p);
        }
        t.dir(&format!("{id}/"))?;
        t.file(&format!("{id}/VERSION"), b"1.0")?;
        t.file(&format!("{id}/json"), v1.to_string().as_bytes())?;
        t.file(&format!("{id}/layer.tar"), &tar)?;
        layer_paths.push(format!("{id}/layer.tar"));
        parent = Some(id);
    }
    t.file(&config_name, &img.config.data)?;
    let manifest = json!([{ "Config": config_name, "RepoTags": repo_tags, "Layers": layer_paths }]);
    t.file("manifest.json", manifest.to_string().as_bytes())?;
    let mut repos: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    if let Some(top) = &parent {
        for rt in repo_tags {
            let (repo, tag) = match rt.rsplit_once(':') {
                Some((r, t)) if !t.contains('/') => (r, t),
                _ => (*rt, "latest"),
            };
            repos
                .entry(repo.to_owned())
                .or_default()
                .insert(tag.to_owned(), json!(top));
        }
    }
    t.file("repositories", serde_json::to_string(&repos)?.as_bytes())?;
    t.write(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Compression, ImageBuilder, IndexBuilder, LayerBuilder, MediaTypes};

    fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
        let data = std::fs::read(path)?;
        let mut out = BTreeMap::new();
        for e in tar::Archive::new(&data[..]).entries()? {
            let mut e = e?;
            let p = e.path()?.to_string_lossy().into_owned();
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut v)?;
            out.insert(p, v);
        }
        Ok(out)
    }

    #[test]
    fn archives_have_the_expected_layout() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let l = LayerBuilder::new()
            .file("a", "hello", 0o644, 0, 0)
            .build(Compression::Zstd);
        let img = ImageBuilder::new().layer(l.clone()).build();

        let p = dir.path().join("oci.tar");
        write_oci_layout_archive(&img, Some("example.com/x:1"), &p)?;
        let files = read(&p)?;
        let index: Value = serde_json::from_slice(&files["index.json"])?;
        assert_eq!(index["manifests"][0]["digest"], json!(img.manifest_digest));
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            json!("example.com/x:1")
        );
        for (d, data) in img.blobs() {
            assert_eq!(&files[&format!("blobs/sha256/{}", digest_hex(d))], data);
        }

        let idx = IndexBuilder::new(MediaTypes::Oci)
            .image(img.clone())
            .build();
        write_oci_layout_archive(&idx, None, &p)?;
        let files = read(&p)?;
        assert!(files.contains_key(&format!("blobs/sha256/{}", digest_hex(&idx.digest))));

        let p = dir.path().join("docker.tar");
        write_docker_save_archive(&img, &["example.com/x:1"], &p)?;
        let files = read(&p)?;
        let m: Value = serde_json::from_slice(&files["manifest.json"])?;
        let layer_path = m[0]["Layers"][0].as_str().unwrap_or_default();
        assert_eq!(sha256_digest(&files[layer_path]), l.diff_id);
        assert_eq!(m[0]["RepoTags"][0], json!("example.com/x:1"));
        Ok(())
    }
}
