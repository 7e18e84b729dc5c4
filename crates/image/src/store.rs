//! The image index: one versioned JSON record per image (`images/<config hex>.json`, written
//! atomically) and an in-memory map answering List/Status calls without touching disk.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::reference::{Reference, is_image_id};

pub const RECORD_VERSION: u32 = 1;

/// One layer of an image as pulled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
    pub chain_id: Digest,
}

/// An image known to husk. Its id is the config digest, as in containerd and Docker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageRecord {
    pub version: u32,
    pub id: Digest,
    /// The platform manifest of the latest pull.
    pub manifest: Digest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub layers: Vec<LayerRecord>,
    /// Every blob this image keeps alive (indexes, manifests, config, layers).
    pub blobs: BTreeSet<Digest>,
    /// Content size: manifest + config + compressed layers.
    pub size: u64,
    pub pinned: bool,
    /// The image config's `User`.
    pub user: Option<String>,
    /// Unix seconds of the first pull or import.
    pub created_at: i64,
}

impl ImageRecord {
    /// The layer chain IDs, bottom layer first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.chain_id.clone()).collect()
    }

    /// uid or username from the image's `User`, as containerd's CRI reports them: a numeric
    /// user (before any `:group`) is a uid, anything else a username.
    pub fn uid_and_username(&self) -> (Option<i64>, String) {
        let Some(user) = self.user.as_deref().filter(|u| !u.is_empty()) else {
            return (None, String::new());
        };
        let user = user.split(':').next().unwrap_or("");
        match user.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, user.to_string()),
        }
    }
}

/// The records on disk and in memory.
pub struct ImageStore {
    dir: PathBuf,
    images: RwLock<HashMap<Digest, ImageRecord>>,
}

impl ImageStore {
    /// Loads every record; unreadable ones are moved aside (`*.corrupt`) and logged, never
    /// silently dropped.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("create", &dir, e))?;
        let mut images = HashMap::new();
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let e = e.map_err(|e| ImageError::io("list", &dir, e))?;
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    let _ = fs::remove_file(&path); // temp file of an interrupted write
                }
                continue;
            }
            match load(&path) {
                Ok(r) => {
                    images.insert(r.id.clone(), r);
                }
                Err(err) => {
                    tracing::error!(path = %path.display(), error = %err, "moving corrupt image record aside");
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        Ok(ImageStore {
            dir,
            images: RwLock::new(images),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<Digest, ImageRecord>> {
        self.images.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<Digest, ImageRecord>> {
        self.images.write().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &Digest) -> PathBuf {
        self.dir.join(format!("{}.json", id.hex()))
    }

    pub fn get(&self, id: &Digest) -> Option<ImageRecord> {
        self.read().get(id).cloned()
    }

    pub fn list(&self) -> Vec<ImageRecord> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Persists and indexes a record.
    pub fn put(&self, rec: ImageRecord) -> Result<()> {
        let path = self.path(&rec.id);
        let data = serde_json::to_vec_pretty(&rec).map_err(|e| ImageError::CorruptMetadata {
            path: path.clone(),
            message: e.to_string(),
        })?;
        husk_sys::fs::atomic_write(&path, &data).map_err(|e| ImageError::io("write", &path, e))?;
        self.write().insert(rec.id.clone(), rec);
        Ok(())
    }

    /// Deletes a record (missing is fine).
    pub fn delete(&self, id: &Digest) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("remove", &path, e)),
        }
        self.write().remove(id);
        Ok(())
    }

    /// Finds an image by full id, unique id prefix (≥ 3 hex chars), tag or digest reference.
    /// Returns the record and how it was matched.
    pub fn resolve(&self, query: &str) -> Result<Option<(ImageRecord, Match)>> {
        let q = query.trim();
        if q.is_empty() {
            return Ok(None);
        }
        let images = self.read();
        let hex = q.strip_prefix("sha256:").unwrap_or(q);
        if is_image_id(q)
            && let Some(r) = images.values().find(|r| r.id.hex() == hex)
        {
            return Ok(Some((r.clone(), Match::Id)));
        }
        let looks_hex = hex.len() >= 3
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        if looks_hex && hex.len() < 64 {
            let hits: Vec<_> = images
                .values()
                .filter(|r| r.id.hex().starts_with(hex))
                .collect();
            if hits.len() == 1 {
                return Ok(Some((hits[0].clone(), Match::Id)));
            }
        }
        let r = match Reference::parse(q) {
            Ok(r) => r,
            Err(source) => {
                if is_image_id(q) || looks_hex {
                    return Ok(None);
                }
                return Err(ImageError::InvalidReference {
                    reference: q.to_string(),
                    source,
                });
            }
        };
        if let Some(d) = r.digest() {
            let want = r.with_digest(d);
            if let Some(x) = images.values().find(|x| x.repo_digests.contains(&want)) {
                return Ok(Some((x.clone(), Match::Digest(want))));
            }
            return Ok(None);
        }
        if let Some(t) = r.tagged()
            && let Some(x) = images.values().find(|x| x.repo_tags.contains(&t))
        {
            return Ok(Some((x.clone(), Match::Tag(t))));
        }
        Ok(None)
    }

    /// The images that carry `tag`.
    pub fn with_tag(&self, tag: &str) -> Vec<ImageRecord> {
        self.read()
            .values()
            .filter(|r| r.repo_tags.iter().any(|t| t == tag))
            .cloned()
            .collect()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How a query matched an image.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    Id,
    Tag(String),
    Digest(String),
}

fn load(path: &Path) -> Result<ImageRecord> {
    let data = fs::read(path).map_err(|e| ImageError::io("read", path, e))?;
    let rec: ImageRecord =
        serde_json::from_slice(&data).map_err(|e| ImageError::CorruptMetadata {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if rec.version != RECORD_VERSION {
        return Err(ImageError::CorruptMetadata {
            path: path.to_path_buf(),
            message: format!("unknown record version {}", rec.version),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seed: &[u8], tags: &[&str]) -> ImageRecord {
        let id = Digest::sha256_of(seed);
        ImageRecord {
            version: RECORD_VERSION,
            manifest: id.clone(),
            id,
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![format!(
                "docker.io/library/busybox@{}",
                Digest::sha256_of(b"m")
            )],
            layers: vec![],
            blobs: BTreeSet::new(),
            size: 1,
            pinned: false,
            user: Some("1000:1000".into()),
            created_at: 0,
        }
    }

    #[test]
    fn resolve_by_id_prefix_tag_digest() {
        let d = tempfile::tempdir().unwrap();
        let s = ImageStore::open(d.path()).unwrap();
        let r = rec(b"a", &["docker.io/library/busybox:latest"]);
        s.put(r.clone()).unwrap();
        let hex = r.id.hex().to_string();
        assert_eq!(s.resolve(&r.id.to_string()).unwrap().unwrap().1, Match::Id);
        assert_eq!(s.resolve(&hex).unwrap().unwrap().1, Match::Id);
        assert_eq!(s.resolve(&hex[..12]).unwrap().unwrap().1, Match::Id);
        assert!(matches!(
            s.resolve("busybox").unwrap().unwrap().1,
            Match::Tag(_)
        ));
        assert!(matches!(
            s.resolve(&format!("busybox@{}", Digest::sha256_of(b"m")))
                .unwrap()
                .unwrap()
                .1,
            Match::Digest(_)
        ));
        assert!(s.resolve("nothere").unwrap().is_none());
        assert!(s.resolve("Bad Ref!").is_err());
        // survives a reopen
        drop(s);
        let s = ImageStore::open(d.path()).unwrap();
        assert_eq!(s.get(&r.id).unwrap(), r);
    }

    #[test]
    fn corrupt_records_are_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("x.json"), b"{not json").unwrap();
        let s = ImageStore::open(d.path()).unwrap();
        assert!(s.list().is_empty());
        assert!(d.path().join("x.corrupt").exists());
    }

    #[test]
    fn user_is_split_like_containerd() {
        let mut r = rec(b"u", &[]);
        assert_eq!(r.uid_and_username(), (Some(1000), String::new()));
        r.user = Some("app:app".into());
        assert_eq!(r.uid_and_username(), (None, "app".into()));
        r.user = None;
        assert_eq!(r.uid_and_username(), (None, String::new()));
    }
}
