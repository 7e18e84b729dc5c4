//! Overlay-ready snapshots, one per layer chain ID: `snapshots/<n>/fs` holds the unpacked
//! layer (overlay whiteouts included) and `snapshots/<n>/meta.json` its record. Short numeric
//! directory names keep overlay `lowerdir=` option strings short. A snapshot is unpacked into
//! `<n>.tmp` and renamed into place only once complete, so a crash never leaves a half layer.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{ImageError, Result};

const META_VERSION: u32 = 1;

/// The persisted record of one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotInfo {
    pub version: u32,
    pub id: u64,
    pub chain_id: Digest,
    pub parent: Option<Digest>,
    pub diff_id: Digest,
    /// Bytes of regular-file content in this layer.
    pub size: u64,
    /// Number of entries (≈ inodes) in this layer.
    pub inodes: u64,
}

/// The snapshot directory and its in-memory index.
pub struct Snapshotter {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    by_chain: HashMap<Digest, SnapshotInfo>,
    next_id: u64,
}

/// A snapshot being unpacked; commit or drop (which deletes it).
pub struct Prepared {
    pub id: u64,
    pub tmp: PathBuf,
    committed: bool,
}

impl Prepared {
    /// The directory to unpack into.
    pub fn fs_dir(&self) -> PathBuf {
        self.tmp.join("fs")
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

impl Snapshotter {
    /// Opens the snapshot directory, dropping leftovers of interrupted unpacks.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| ImageError::io("create", &dir, e))?;
        let mut by_chain = HashMap::new();
        let mut next_id = 1;
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let e = e.map_err(|e| ImageError::io("list", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let Ok(id) = name.parse::<u64>() else {
                tracing::info!(path = %path.display(), "removing incomplete snapshot");
                let _ = fs::remove_dir_all(&path);
                continue;
            };
            next_id = next_id.max(id + 1);
            let meta = path.join("meta.json");
            let info = fs::read(&meta)
                .ok()
                .and_then(|b| serde_json::from_slice::<SnapshotInfo>(&b).ok())
                .filter(|i| i.id == id && i.version == META_VERSION);
            match info {
                Some(i) => {
                    by_chain.insert(i.chain_id.clone(), i);
                }
                None => {
                    tracing::warn!(path = %path.display(), "removing snapshot without a valid record");
                    let _ = fs::remove_dir_all(&path);
                }
            }
        }
        Ok(Snapshotter {
            dir,
            inner: Mutex::new(Inner { by_chain, next_id }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, chain_id: &Digest) -> Option<SnapshotInfo> {
        self.lock().by_chain.get(chain_id).cloned()
    }

    /// The unpacked directory of a committed snapshot.
    pub fn fs_path(&self, info: &SnapshotInfo) -> PathBuf {
        self.dir.join(info.id.to_string()).join("fs")
    }

    /// Lower directories for an overlay mount of `chain_ids` (bottom layer first in the input),
    /// returned top-most first as overlay's `lowerdir=` wants them.
    pub fn lowerdirs(&self, chain_ids: &[Digest]) -> Result<Vec<PathBuf>> {
        let inner = self.lock();
        let mut out = Vec::with_capacity(chain_ids.len());
        for c in chain_ids.iter().rev() {
            let info = inner
                .by_chain
                .get(c)
                .ok_or_else(|| ImageError::ImageNotFound {
                    reference: format!("snapshot {c}"),
                })?;
            out.push(self.dir.join(info.id.to_string()).join("fs"));
        }
        Ok(out)
    }

    /// Reserves a new snapshot directory to unpack into.
    pub fn prepare(&self) -> Result<Prepared> {
        let id = {
            let mut inner = self.lock();
            let id = inner.next_id;
            inner.next_id += 1;
            id
        };
        let tmp = self.dir.join(format!("{id}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        let fs_dir = tmp.join("fs");
        if let Err(e) = fs::create_dir_all(&fs_dir) {
            // Half made (a full disk): leave nothing behind.
            let _ = fs::remove_dir_all(&tmp);
            return Err(ImageError::io("create", &fs_dir, e));
        }
        Ok(Prepared {
            id,
            tmp,
            committed: false,
        })
    }

    /// Makes a prepared snapshot visible under `chain_id`.
    pub fn commit(
        &self,
        mut prepared: Prepared,
        chain_id: Digest,
        parent: Option<Digest>,
        diff_id: Digest,
        size: u64,
        inodes: u64,
    ) -> Result<SnapshotInfo> {
        let info = SnapshotInfo {
            version: META_VERSION,
            id: prepared.id,
            chain_id: chain_id.clone(),
            parent,
            diff_id,
            size,
            inodes,
        };
        let meta = prepared.tmp.join("meta.json");
        let data = serde_json::to_vec(&info).map_err(|e| ImageError::CorruptMetadata {
            path: meta.clone(),
            message: e.to_string(),
        })?;
        husk_sys::fs::atomic_write(&meta, &data).map_err(|e| ImageError::io("write", &meta, e))?;
        let dest = self.dir.join(prepared.id.to_string());
        fs::rename(&prepared.tmp, &dest).map_err(|e| ImageError::io("rename", &dest, e))?;
        husk_sys::fs::sync_dir(&self.dir).map_err(|e| ImageError::io("fsync", &self.dir, e))?;
        prepared.committed = true;
        self.lock().by_chain.insert(chain_id, info.clone());
        Ok(info)
    }

    /// Deletes a snapshot (missing is fine). The record goes first so a crash half way leaves
    /// a directory that `open` sweeps.
    pub fn remove(&self, chain_id: &Digest) -> Result<()> {
        let Some(info) = self.lock().by_chain.remove(chain_id) else {
            return Ok(());
        };
        let path = self.dir.join(info.id.to_string());
        let trash = self.dir.join(format!("{}.tmp", info.id));
        fs::rename(&path, &trash).map_err(|e| ImageError::io("rename", &path, e))?;
        fs::remove_dir_all(&trash).map_err(|e| ImageError::io("remove", &trash, e))
    }

    /// Every committed snapshot.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        self.lock().by_chain.values().cloned().collect()
    }

    /// Total bytes and inodes of all snapshots.
    pub fn usage(&self) -> (u64, u64) {
        self.lock()
            .by_chain
            .values()
            .fold((0, 0), |(b, i), s| (b + s.size, i + s.inodes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_commit_reopen_remove() {
        let d = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(d.path()).unwrap();
        let p = s.prepare().unwrap();
        fs::write(p.fs_dir().join("f"), b"x").unwrap();
        let c = Digest::sha256_of(b"c");
        let info = s.commit(p, c.clone(), None, c.clone(), 1, 1).unwrap();
        assert!(s.fs_path(&info).join("f").exists());
        // an abandoned prepare is swept on reopen
        let leaked = s.prepare().unwrap();
        std::mem::forget(leaked);
        drop(s);
        let s = Snapshotter::open(d.path()).unwrap();
        assert_eq!(s.get(&c).unwrap(), info);
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        assert_eq!(
            s.lowerdirs(std::slice::from_ref(&c)).unwrap(),
            vec![s.fs_path(&info)]
        );
        s.remove(&c).unwrap();
        s.remove(&c).unwrap();
        assert!(s.get(&c).is_none());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn dropped_prepare_is_removed() {
        let d = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(d.path()).unwrap();
        let p = s.prepare().unwrap();
        let tmp = p.tmp.clone();
        drop(p);
        assert!(!tmp.exists());
    }
}
