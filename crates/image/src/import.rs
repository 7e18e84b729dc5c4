//! Offline import of image archives: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/<alg>/<hex>`) or a `docker save` archive (`manifest.json` with `Config`, `RepoTags`,
//! `Layers`), plain or gzip-compressed tar. Blobs stream into the content store (verified where
//! the archive names their digest) and layers unpack like pulled ones.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::manifest::{
    self, Descriptor, ImageConfig, Manifest, ManifestKind, OCI_CONFIG, OCI_MANIFEST,
};
use crate::reference::Reference;
use crate::service::{ImageService, blocking, check_config_media_type};
use crate::store::ImageRecord;
use crate::unpack::Compression;

const SMALL_FILES: [&str; 3] = ["index.json", "manifest.json", "oci-layout"];

/// What the archive held, after the single streaming pass.
#[derive(Default)]
struct Scanned {
    /// archive path → (digest, size) of every regular file stored as a blob.
    files: HashMap<String, (Digest, u64)>,
    /// small metadata files kept in memory.
    small: HashMap<String, Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// One image found in the archive, ready to unpack and record.
struct Found {
    names: Vec<Reference>,
    top: Digest,
    manifest_digest: Digest,
    manifest: Manifest,
    manifest_len: u64,
    blobs: BTreeSet<Digest>,
}

fn bad(message: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        message: message.into(),
    }
}

fn clean(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl ImageService {
    /// Imports every image of the archive at `path`; returns each image's record and the names
    /// the archive gave it.
    pub async fn import_archive(&self, path: &Path) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        let _gc = self.gc_read().await;
        let content = self.content().clone();
        let p = path.to_path_buf();
        let limit = self.max_import_bytes;
        let scanned = blocking(move || scan(&content, &p, limit)).await?;
        let found = if scanned.small.contains_key("manifest.json") {
            self.docker_archive(&scanned).await?
        } else if scanned.small.contains_key("index.json") {
            self.oci_layout(&scanned)?
        } else {
            return Err(bad(
                "neither manifest.json (docker save) nor index.json (OCI layout) found",
            ));
        };
        if found.is_empty() {
            return Err(bad("the archive holds no image"));
        }
        let mut out = Vec::new();
        for f in found {
            let config_digest = f.manifest.config.digest("config")?;
            check_config_media_type(&f.manifest)?;
            let config_bytes = self.content().read(&config_digest)?;
            let config = ImageConfig::parse(&config_digest, &config_bytes)?;
            let layers = self.layer_records(&config_digest, &config, &f.manifest)?;
            let mut blobs = f.blobs;
            blobs.insert(config_digest.clone());
            blobs.extend(layers.iter().map(|l| l.digest.clone()));
            self.fetch_and_unpack(None, &layers, None).await?;
            let size = f.manifest_len
                + f.manifest.config.size("config")?
                + layers.iter().map(|l| l.size).sum::<u64>();
            let tags: Vec<String> = f.names.iter().filter_map(|r| r.tagged()).collect();
            let digests = f
                .names
                .iter()
                .map(|r| r.with_digest(&f.top))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let rec = self
                .record_image(
                    config_digest,
                    f.manifest_digest,
                    tags.clone(),
                    digests,
                    layers,
                    blobs,
                    size,
                    &config,
                )
                .await?;
            tracing::info!(image = %rec.id, tags = ?rec.repo_tags, "imported image");
            out.push((rec, tags));
        }
        Ok(out)
    }

    fn oci_layout(&self, s: &Scanned) -> Result<Vec<Found>> {
        #[derive(Deserialize)]
        struct IndexFile {
            manifests: Vec<Descriptor>,
        }
        let idx: IndexFile = serde_json::from_slice(&s.small["index.json"])
            .map_err(|e| bad(format!("index.json: {e}")))?;
        let mut out = Vec::new();
        for d in &idx.manifests {
            let top = d.digest("manifest")?;
            let data = self.content().read(&top).map_err(|_| {
                bad(format!(
                    "index.json names {top}, which is not in the archive"
                ))
            })?;
            let mut blobs = BTreeSet::from([top.clone()]);
            let (manifest_digest, manifest, len) =
                match manifest::parse_manifest(&top, &d.media_type, &data)? {
                    ManifestKind::Image(m) => (top.clone(), *m, data.len() as u64),
                    ManifestKind::Index(i) => {
                        let pd = manifest::select_platform(&top, &i, &Platform::host())?;
                        let md = pd.digest("manifest")?;
                        let mdata = self.content().read(&md).map_err(|_| {
                            bad(format!("platform manifest {md} is not in the archive"))
                        })?;
                        let ManifestKind::Image(m) =
                            manifest::parse_manifest(&md, &pd.media_type, &mdata)?
                        else {
                            return Err(bad(format!("{md}: nested index")));
                        };
                        blobs.insert(md.clone());
                        (md, *m, mdata.len() as u64)
                    }
                };
            let ann = d.annotations.clone().unwrap_or_default();
            let name = ann
                .get("io.containerd.image.name")
                .or_else(|| ann.get("org.opencontainers.image.ref.name"));
            let names = name
                .and_then(|n| Reference::parse(n).ok())
                .into_iter()
                .collect();
            out.push(Found {
                names,
                top,
                manifest_digest,
                manifest,
                manifest_len: len,
                blobs,
            });
        }
        Ok(out)
    }

    async fn docker_archive(&self, s: &Scanned) -> Result<Vec<Found>> {
        let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&s.small["manifest.json"])
            .map_err(|e| bad(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let file = |p: &str| {
                s.files.get(&clean(p)).cloned().ok_or_else(|| {
                    bad(format!(
                        "manifest.json names {p:?}, which is not in the archive"
                    ))
                })
            };
            let (config_digest, config_size) = file(&e.config)?;
            let mut layers = Vec::new();
            for l in &e.layers {
                let (digest, size) = file(l)?;
                let head = {
                    let mut f = self.content().open_blob(&digest)?;
                    let mut b = [0u8; 4];
                    let n = f
                        .read(&mut b)
                        .map_err(|err| ImageError::io("read", l, err))?;
                    b[..n].to_vec()
                };
                let media_type = match Compression::detect(&head) {
                    Compression::None => "application/vnd.oci.image.layer.v1.tar",
                    Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                    Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
                };
                layers.push(Descriptor {
                    media_type: media_type.into(),
                    digest: digest.to_string(),
                    size: size as i64,
                    platform: None,
                    annotations: None,
                    urls: None,
                });
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(OCI_MANIFEST.into()),
                config: Descriptor {
                    media_type: OCI_CONFIG.into(),
                    digest: config_digest.to_string(),
                    size: config_size as i64,
                    platform: None,
                    annotations: None,
                    urls: None,
                },
                layers,
                annotations: None,
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|e| bad(e.to_string()))?;
            let md = Digest::sha256_of(&bytes);
            let content = self.content().clone();
            let (md2, len) = (md.clone(), bytes.len() as u64);
            blocking(move || content.write(&md2, &bytes)).await?;
            let mut names = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                names.push(Reference::parse(&t).map_err(|source| {
                    ImageError::InvalidReference {
                        reference: t.clone(),
                        source,
                    }
                })?);
            }
            out.push(Found {
                names,
                top: md.clone(),
                manifest_digest: md.clone(),
                manifest,
                manifest_len: len,
                blobs: BTreeSet::from([md]),
            });
        }
        Ok(out)
    }
}

use crate::manifest::Platform;

/// Streams every regular file of the archive into the content store (small metadata files are
/// kept in memory too). Files under `blobs/<alg>/<hex>` must hash to their name. The archive,
/// and the tar inside it when compressed, may hold at most `limit` bytes.
fn scan(content: &crate::content::ContentStore, path: &Path, limit: u64) -> Result<Scanned> {
    let f = std::fs::File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    let len = f
        .metadata()
        .map_err(|e| ImageError::io("stat", path, e))?
        .len();
    if len > limit {
        return Err(ImageError::ImportTooLarge { limit });
    }
    let mut r = BufReader::with_capacity(1 << 20, f);
    let head = r.fill_buf().map_err(|e| ImageError::io("read", path, e))?;
    let comp = Compression::detect(head);
    let reader =
        crate::unpack::decompress(r, comp).map_err(|e| bad(format!("decompressing: {e}")))?;
    let over = Rc::new(Cell::new(false));
    let capped = Capped {
        inner: reader,
        left: limit,
        over: over.clone(),
    };
    // Whatever error the cut-off stream caused (a short blob, a truncated tar), the cause is
    // the limit.
    scan_tar(content, capped).map_err(|e| {
        if over.get() {
            ImageError::ImportTooLarge { limit }
        } else {
            e
        }
    })
}

fn scan_tar(content: &crate::content::ContentStore, reader: impl Read) -> Result<Scanned> {
    let mut ar = tar::Archive::new(reader);
    let mut out = Scanned::default();
    for entry in ar.entries().map_err(|e| bad(format!("reading tar: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("reading tar: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = clean(
            &entry
                .path()
                .map_err(|e| bad(format!("bad path: {e}")))?
                .to_string_lossy(),
        );
        if SMALL_FILES.contains(&name.as_str()) {
            if entry.size() > crate::content::MAX_METADATA_BLOB {
                return Err(bad(format!("{name} is too large")));
            }
            let mut buf = Vec::new();
            entry
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("reading {name}: {e}")))?;
            out.small.insert(name, buf);
            continue;
        }
        let (digest, size) = content.write_from_reader(&mut entry)?;
        if let Some(rest) = name.strip_prefix("blobs/") {
            let named = rest.replacen('/', ":", 1);
            if let Ok(want) = Digest::parse(&named)
                && want != digest
            {
                let _ = content.delete(&digest);
                return Err(ImageError::DigestMismatch {
                    expected: want.to_string(),
                    actual: digest.to_string(),
                });
            }
        }
        out.files.insert(name, (digest, size));
    }
    Ok(out)
}

/// A reader that fails once more than `left` bytes would be read, setting `over`.
struct Capped<R> {
    inner: R,
    left: u64,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // At the limit: fine if the stream ends here, else it is over.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.over.set(true);
            return Err(std::io::Error::other("over the import limit"));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_capped(data: &[u8], limit: u64) -> (std::io::Result<Vec<u8>>, bool) {
        let over = Rc::new(Cell::new(false));
        let mut r = Capped {
            inner: data,
            left: limit,
            over: over.clone(),
        };
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (res, over.get())
    }

    #[test]
    fn capped_reads_up_to_the_limit_and_fails_past_it() {
        let (got, over) = read_capped(b"12345", 5);
        assert_eq!((got.unwrap(), over), (b"12345".to_vec(), false));
        let (got, over) = read_capped(b"123456", 5);
        assert!(got.is_err() && over);
        let (got, over) = read_capped(b"", 0);
        assert_eq!((got.unwrap(), over), (Vec::new(), false));
    }
}
