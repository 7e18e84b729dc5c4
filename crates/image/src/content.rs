//! The content-addressed store: verified blobs at `blobs/sha256/<hex>`, partial downloads at
//! `ingest/<hex>` (kept across restarts so an interrupted pull resumes), committed by
//! fsync + rename only after the digest and size check out.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Digester};
use crate::error::{ImageError, Result};

/// Manifests and configs above this size are refused (containerd uses 4 MiB for manifests).
pub const MAX_METADATA_BLOB: u64 = 8 << 20;

/// A directory of blobs named by their digest.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for d in ["blobs/sha256", "ingest"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(|e| ImageError::io("create", &p, e))?;
        }
        Ok(ContentStore { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a committed blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// Where a partial download of `d` is kept.
    pub fn ingest_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("ingest")
            .join(format!("{}-{}", d.algorithm(), d.hex()))
    }

    pub fn has(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Size of a committed blob.
    pub fn size(&self, d: &Digest) -> Option<u64> {
        fs::metadata(self.blob_path(d)).ok().map(|m| m.len())
    }

    /// Reads a small blob (manifest, config) whole, re-verifying its digest.
    pub fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        let meta = fs::metadata(&p).map_err(|e| ImageError::io("stat", &p, e))?;
        if meta.len() > MAX_METADATA_BLOB {
            return Err(ImageError::InvalidContent {
                what: "metadata blob",
                digest: d.to_string(),
                message: format!(
                    "{} bytes is over the {MAX_METADATA_BLOB} byte limit",
                    meta.len()
                ),
            });
        }
        let data = fs::read(&p).map_err(|e| ImageError::io("read", &p, e))?;
        verify(d, &data)?;
        Ok(data)
    }

    /// Opens a committed blob for streaming.
    pub fn open_blob(&self, d: &Digest) -> Result<fs::File> {
        let p = self.blob_path(d);
        fs::File::open(&p).map_err(|e| ImageError::io("open", &p, e))
    }

    /// Stores `data` under `d` after checking that it hashes to `d`.
    pub fn write(&self, d: &Digest, data: &[u8]) -> Result<()> {
        verify(d, data)?;
        if self.has(d) {
            return Ok(());
        }
        let p = self.blob_path(d);
        husk_sys::fs::atomic_write(&p, data).map_err(|e| ImageError::io("write", &p, e))
    }

    /// Starts or resumes writing blob `d`. The writer's `offset()` says how many bytes are
    /// already there from an earlier, interrupted attempt.
    pub fn ingest(&self, d: &Digest, expected_size: Option<u64>) -> Result<Ingest> {
        Ingest::open(self, d.clone(), expected_size)
    }

    /// Stores the content of `reader` as a blob, computing its digest; returns it and the size.
    pub fn write_from_reader(&self, mut reader: impl Read) -> Result<(Digest, u64)> {
        let tmp_dir = self.root.join("ingest");
        let mut tmp = tempfile_in(&tmp_dir)?;
        let written = (|| {
            let mut digester = Digester::sha256();
            let mut buf = vec![0u8; 1 << 20];
            let mut n_total = 0u64;
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|e| ImageError::io("read", &tmp.1, e))?;
                if n == 0 {
                    break;
                }
                digester.update(&buf[..n]);
                tmp.0
                    .write_all(&buf[..n])
                    .map_err(|e| ImageError::io("write", &tmp.1, e))?;
                n_total += n as u64;
            }
            let d = digester.finish();
            tmp.0
                .sync_all()
                .map_err(|e| ImageError::io("fsync", &tmp.1, e))?;
            let dest = self.blob_path(&d);
            fs::rename(&tmp.1, &dest).map_err(|e| ImageError::io("rename", &dest, e))?;
            Ok((d, n_total))
        })();
        if written.is_err() {
            // A reader that failed midway (a truncated archive) leaves no partial file.
            let _ = fs::remove_file(&tmp.1);
        }
        written
    }

    /// Deletes a committed blob (missing is fine).
    pub fn delete(&self, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove", &p, e)),
        }
    }

    /// Every committed blob.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let e = e.map_err(|e| ImageError::io("list", &dir, e))?;
            if let Ok(d) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes partial downloads not touched for `max_age` (an abandoned pull).
    pub fn prune_ingests(&self, max_age: std::time::Duration) {
        let dir = self.root.join("ingest");
        let Ok(rd) = fs::read_dir(&dir) else { return };
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > max_age);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn tempfile_in(dir: &Path) -> Result<(fs::File, PathBuf)> {
    let name = format!(".tmp-{}-{}", std::process::id(), rand::random::<u64>());
    let p = dir.join(name);
    let f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&p)
        .map_err(|e| ImageError::io("create", &p, e))?;
    Ok((f, p))
}

/// Checks that `data` hashes to `d`.
pub fn verify(d: &Digest, data: &[u8]) -> Result<()> {
    let actual = Digest::sha256_of(data);
    if d.algorithm() != "sha256" {
        return Err(ImageError::InvalidContent {
            what: "digest",
            digest: d.to_string(),
            message: "only sha256 content is supported".into(),
        });
    }
    if &actual != d {
        return Err(ImageError::DigestMismatch {
            expected: d.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

/// A blob being written; appends after what an earlier attempt left.
pub struct Ingest {
    digest: Digest,
    expected_size: Option<u64>,
    path: PathBuf,
    dest: PathBuf,
    file: fs::File,
    digester: Digester,
    offset: u64,
}

impl Ingest {
    fn open(store: &ContentStore, digest: Digest, expected_size: Option<u64>) -> Result<Self> {
        let path = store.ingest_path(&digest);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| ImageError::io("open", &path, e))?;
        // Re-hash what is there already so that we can resume.
        let mut digester = Digester::sha256();
        let mut offset = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| ImageError::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            digester.update(&buf[..n]);
            offset += n as u64;
        }
        let mut ingest = Ingest {
            dest: store.blob_path(&digest),
            digest,
            expected_size,
            path,
            file,
            digester,
            offset,
        };
        if expected_size.is_some_and(|s| offset > s) {
            ingest.reset()?;
        }
        Ok(ingest)
    }

    /// Bytes already present.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Throws away what is there (the server did not honour a range request).
    pub fn reset(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| ImageError::io("truncate", &self.path, e))?;
        self.digester = Digester::sha256();
        self.offset = 0;
        Ok(())
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.file
            .write_all(data)
            .map_err(|e| ImageError::io("write", &self.path, e))?;
        self.digester.update(data);
        self.offset += data.len() as u64;
        if let Some(s) = self.expected_size
            && self.offset > s
        {
            let actual = self.offset;
            let _ = self.abort();
            return Err(ImageError::SizeMismatch {
                digest: self.digest.clone(),
                expected: s,
                actual,
            });
        }
        Ok(())
    }

    /// Verifies size and digest, then moves the blob into place. On a mismatch the partial
    /// file is deleted so that the next attempt starts over.
    pub fn commit(self) -> Result<()> {
        if let Some(s) = self.expected_size
            && self.offset != s
        {
            let actual = self.offset;
            let digest = self.digest.clone();
            self.abort()?;
            return Err(ImageError::SizeMismatch {
                digest,
                expected: s,
                actual,
            });
        }
        let actual = self.digester.clone().finish();
        if actual != self.digest {
            let expected = self.digest.to_string();
            self.abort()?;
            return Err(ImageError::DigestMismatch {
                expected,
                actual: actual.to_string(),
            });
        }
        self.file
            .sync_all()
            .map_err(|e| ImageError::io("fsync", &self.path, e))?;
        fs::rename(&self.path, &self.dest).map_err(|e| ImageError::io("rename", &self.dest, e))?;
        if let Some(dir) = self.dest.parent() {
            husk_sys::fs::sync_dir(dir).map_err(|e| ImageError::io("fsync", dir, e))?;
        }
        Ok(())
    }

    /// Deletes the partial file.
    pub fn abort(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove", &self.path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_verify() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let dg = Digest::sha256_of(b"hello");
        cs.write(&dg, b"hello").unwrap();
        assert_eq!(cs.read(&dg).unwrap(), b"hello");
        let bad = Digest::sha256_of(b"other");
        assert!(matches!(
            cs.write(&bad, b"hello"),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!cs.has(&bad));
    }

    #[test]
    fn ingest_resumes_and_verifies() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let data = vec![7u8; 3 << 20];
        let dg = Digest::sha256_of(&data);
        let mut ing = cs.ingest(&dg, Some(data.len() as u64)).unwrap();
        ing.write(&data[..1000]).unwrap();
        drop(ing); // interrupted
        let mut ing = cs.ingest(&dg, Some(data.len() as u64)).unwrap();
        assert_eq!(ing.offset(), 1000);
        ing.write(&data[1000..]).unwrap();
        ing.commit().unwrap();
        assert!(cs.has(&dg));
        assert!(!cs.ingest_path(&dg).exists());
    }

    #[test]
    fn ingest_rejects_bad_content_and_forgets_it() {
        let d = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(d.path()).unwrap();
        let dg = Digest::sha256_of(b"good");
        let mut ing = cs.ingest(&dg, Some(4)).unwrap();
        ing.write(b"evil").unwrap();
        assert!(matches!(
            ing.commit(),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!cs.has(&dg));
        assert!(!cs.ingest_path(&dg).exists());
        let mut ing = cs.ingest(&dg, Some(4)).unwrap();
        assert!(matches!(
            ing.write(b"toolong"),
            Err(ImageError::SizeMismatch { .. })
        ));
    }
}
