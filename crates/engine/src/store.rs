//! A directory of versioned JSON records (one file per object, written atomically) with an
//! in-memory index, so List calls never touch disk and a torn write can't hurt a neighbour.
//!
//! Reads (`get`, `list`, `resolve`) only look at the index; it is changed after a record's file
//! has been written, under a lock held for the insert alone, so a read never waits on the disk.
//! Writes of one record are serialised by a per-id lock; different records never wait on each
//! other. There are two ways to write:
//! - `put_async` / `update_async` / `delete_async` for async code: the per-id lock is awaited
//!   (no worker is held) and the file work (temp file, fsync, rename, directory fsync) runs on
//!   the blocking pool. Once started, a write finishes and is indexed even if the caller's
//!   future is dropped.
//! - `put` / `update` / `delete` block the calling thread: for `spawn_blocking` and other
//!   blocking threads, never an async worker.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result, blocking};

/// A stored object: its id and the schema version it was written with.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    const VERSION: u32;
    fn id(&self) -> &str;
    fn version(&self) -> u32;
}

/// One record's write lock: awaited by async writers, blocked on by blocking ones.
type WriteLock = Arc<tokio::sync::Mutex<()>>;

pub struct Store<T: Record> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    dir: PathBuf,
    map: RwLock<HashMap<String, T>>,
    /// Per-id locks serialising writes of one record, so a late update can neither lose a
    /// concurrent one nor resurrect a deleted record.
    writers: std::sync::Mutex<HashMap<String, WriteLock>>,
}

impl<T: Record> Store<T> {
    /// Loads every record; unreadable ones are moved aside as `*.corrupt`, never dropped.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        let mut map = HashMap::new();
        for e in fs::read_dir(&dir).map_err(|e| EngineError::io("list", &dir, e))? {
            let path = e.map_err(|e| EngineError::io("list", &dir, e))?.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            match load::<T>(&path) {
                Ok(r) => {
                    map.insert(r.id().to_string(), r);
                }
                Err(err) => {
                    tracing::error!(path = %path.display(), error = %err, "moving corrupt record aside");
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        Ok(Store {
            inner: Arc::new(Inner {
                dir,
                map: RwLock::new(map),
                writers: Default::default(),
            }),
        })
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.inner.read().get(id).cloned()
    }

    pub fn list(&self) -> Vec<T> {
        self.inner.read().values().cloned().collect()
    }

    /// Persists then indexes. Blocks: call from a blocking thread (or use [`Self::put_async`]).
    pub fn put(&self, rec: &T) -> Result<()> {
        let lock = self.inner.writer(rec.id());
        let _w = futures::executor::block_on(lock.lock());
        self.inner.write(rec.clone())
    }

    /// [`Self::put`] for async code: the file is written on the blocking pool.
    pub async fn put_async(&self, rec: &T) -> Result<()> {
        let held = self.inner.writer(rec.id()).lock_owned().await;
        let (inner, rec) = (self.inner.clone(), rec.clone());
        blocking(move || {
            let _held = held;
            inner.write(rec)
        })
        .await
    }

    /// Updates a record in place with `f` and persists it; `None` when absent. Blocks: call
    /// from a blocking thread (or use [`Self::update_async`]).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut T)) -> Result<Option<T>> {
        let lock = self.inner.writer(id);
        let _w = futures::executor::block_on(lock.lock());
        let Some(mut r) = self.get(id) else {
            return Ok(None);
        };
        f(&mut r);
        self.inner.write(r.clone())?;
        Ok(Some(r))
    }

    /// [`Self::update`] for async code: `f` runs here, under the record's write lock; the file
    /// is written on the blocking pool.
    pub async fn update_async(&self, id: &str, f: impl FnOnce(&mut T)) -> Result<Option<T>> {
        let held = self.inner.writer(id).lock_owned().await;
        let Some(mut r) = self.get(id) else {
            return Ok(None);
        };
        f(&mut r);
        let inner = self.inner.clone();
        blocking(move || {
            let _held = held;
            inner.write(r.clone())?;
            Ok(Some(r))
        })
        .await
    }

    /// Removes a record (missing is fine). Blocks: call from a blocking thread (or use
    /// [`Self::delete_async`]).
    pub fn delete(&self, id: &str) -> Result<()> {
        let lock = self.inner.writer(id);
        let _w = futures::executor::block_on(lock.lock());
        self.inner.remove(id)
    }

    /// [`Self::delete`] for async code: the file is removed on the blocking pool.
    pub async fn delete_async(&self, id: &str) -> Result<()> {
        let held = self.inner.writer(id).lock_owned().await;
        let (inner, id) = (self.inner.clone(), id.to_string());
        blocking(move || {
            let _held = held;
            inner.remove(&id)
        })
        .await
    }

    /// Resolves a full id or a unique prefix.
    pub fn resolve(&self, what: &'static str, prefix: &str) -> Result<T> {
        let map = self.inner.read();
        if let Some(r) = map.get(prefix) {
            return Ok(r.clone());
        }
        if prefix.is_empty() {
            return Err(EngineError::Invalid(format!("{what} id must not be empty")));
        }
        let hits: Vec<&T> = map
            .values()
            .filter(|r| r.id().starts_with(prefix))
            .collect();
        match hits.len() {
            1 => Ok(hits[0].clone()),
            0 => Err(EngineError::NotFound {
                what,
                id: prefix.to_string(),
            }),
            count => Err(EngineError::Ambiguous {
                what,
                prefix: prefix.to_string(),
                count,
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl<T: Record> Inner<T> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, T>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn writer(&self, id: &str) -> WriteLock {
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id.to_string()).or_default().clone()
    }

    /// Writes the file, then indexes: the caller holds the record's write lock.
    fn write(&self, rec: T) -> Result<()> {
        let path = self.path(rec.id());
        let data = serde_json::to_vec_pretty(&rec).map_err(|e| EngineError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        husk_sys::fs::atomic_write(&path, &data).map_err(|e| EngineError::io("write", &path, e))?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id().to_string(), rec);
        Ok(())
    }

    /// Removes the file, then the index entry: the caller holds the record's write lock.
    fn remove(&self, id: &str) -> Result<()> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io("remove", &path, e)),
        }
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }
}

fn load<T: Record>(path: &Path) -> Result<T> {
    let data = fs::read(path).map_err(|e| EngineError::io("read", path, e))?;
    let r: T = serde_json::from_slice(&data).map_err(|e| EngineError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if r.version() != T::VERSION {
        return Err(EngineError::Corrupt {
            path: path.to_path_buf(),
            message: format!(
                "record version {} (this husk reads {})",
                r.version(),
                T::VERSION
            ),
        });
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct R {
        version: u32,
        id: String,
        n: u32,
    }
    impl Record for R {
        const VERSION: u32 = 1;
        fn id(&self) -> &str {
            &self.id
        }
        fn version(&self) -> u32 {
            self.version
        }
    }

    fn r(id: &str, n: u32) -> R {
        R {
            version: 1,
            id: id.into(),
            n,
        }
    }

    /// Runs `f` on a thread of its own: a hang (a blocked worker) fails instead of hanging.
    fn within(secs: u64, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(std::time::Duration::from_secs(secs)) {
            Ok(()) => t.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(t.join().unwrap_err())
            }
            Err(e) => panic!("did not finish within {secs}s: {e}"),
        }
    }

    #[test]
    fn put_update_resolve_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s: Store<R> = Store::open(d.path()).unwrap();
        s.put(&r("abc123", 1)).unwrap();
        s.put(&r("abd456", 2)).unwrap();
        assert_eq!(s.resolve("x", "abc").unwrap().n, 1);
        assert!(matches!(
            s.resolve("x", "ab"),
            Err(EngineError::Ambiguous { count: 2, .. })
        ));
        assert!(matches!(
            s.resolve("x", "zz"),
            Err(EngineError::NotFound { .. })
        ));
        s.update("abc123", |r| r.n = 9).unwrap();
        fs::write(d.path().join("bad.json"), "{").unwrap();
        fs::write(
            d.path().join("old.json"),
            r#"{"version":7,"id":"old","n":0}"#,
        )
        .unwrap();
        drop(s);
        let s: Store<R> = Store::open(d.path()).unwrap();
        assert_eq!(s.get("abc123").unwrap().n, 9);
        assert_eq!(s.list().len(), 2);
        assert!(d.path().join("bad.corrupt").exists());
        assert!(d.path().join("old.corrupt").exists());
        s.delete("abc123").unwrap();
        s.delete("abc123").unwrap();
        assert!(s.get("abc123").is_none());
    }

    #[test]
    fn async_writes_wait_without_holding_the_worker_and_reads_never_wait() {
        within(20, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(async {
                let d = tempfile::tempdir().unwrap();
                let s = Arc::new(Store::<R>::open(d.path()).unwrap());
                s.put_async(&r("a", 1)).await.unwrap();
                // A write of "a" in progress elsewhere: the async update waits for it...
                let held = s.inner.writer("a").lock_owned().await;
                let s2 = s.clone();
                let pending = tokio::spawn(async move { s2.update_async("a", |r| r.n = 2).await });
                for _ in 0..10 {
                    tokio::task::yield_now().await;
                }
                // ...while the only worker thread still serves reads of the old record.
                assert!(!pending.is_finished());
                assert_eq!(s.get("a").unwrap().n, 1);
                assert_eq!(s.list().len(), 1);
                assert_eq!(s.resolve("x", "a").unwrap().n, 1);
                drop(held);
                let done = pending.await.unwrap().unwrap().unwrap();
                assert_eq!(done.n, 2);
                assert_eq!(s.get("a").unwrap().n, 2);
                s.delete_async("a").await.unwrap();
                assert!(s.get("a").is_none());
                assert!(s.update_async("a", |r| r.n = 3).await.unwrap().is_none());
                drop(s);
                let s: Store<R> = Store::open(d.path()).unwrap();
                assert!(s.list().is_empty());
            });
        });
    }

    #[test]
    fn blocking_and_async_writers_of_one_record_never_lose_an_update() {
        within(60, || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            rt.block_on(async {
                let d = tempfile::tempdir().unwrap();
                let s = Arc::new(Store::<R>::open(d.path()).unwrap());
                s.put_async(&r("a", 0)).await.unwrap();
                let mut tasks = Vec::new();
                for i in 0..20 {
                    let s = s.clone();
                    tasks.push(if i % 2 == 0 {
                        tokio::spawn(async move {
                            s.update_async("a", |r| r.n += 1).await.unwrap();
                        })
                    } else {
                        tokio::task::spawn_blocking(move || {
                            s.update("a", |r| r.n += 1).unwrap();
                        })
                    });
                }
                for t in tasks {
                    t.await.unwrap();
                }
                assert_eq!(s.get("a").unwrap().n, 20);
                let reopened: Store<R> = Store::open(d.path()).unwrap();
                assert_eq!(reopened.get("a").unwrap().n, 20);
            });
        });
    }

    #[tokio::test]
    async fn a_started_write_finishes_when_its_caller_goes_away() {
        let d = tempfile::tempdir().unwrap();
        let s: Store<R> = Store::open(d.path()).unwrap();
        s.put_async(&r("a", 1)).await.unwrap();
        {
            let mut fut = Box::pin(s.update_async("a", |r| r.n = 2));
            // First poll: the lock is free, `f` runs and the write is handed to the pool.
            assert!(futures::poll!(&mut fut).is_pending());
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.get("a").unwrap().n != 2 {
            assert!(std::time::Instant::now() < deadline, "write never landed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        // The lock was released by the finished write.
        s.update_async("a", |r| r.n = 3).await.unwrap();
        let reopened: Store<R> = Store::open(d.path()).unwrap();
        assert_eq!(reopened.get("a").unwrap().n, 3);
    }

    #[tokio::test]
    async fn a_failed_write_leaves_the_index_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("recs");
        let s: Store<R> = Store::open(&dir).unwrap();
        s.put_async(&r("a", 1)).await.unwrap();
        fs::remove_dir_all(&dir).unwrap();
        assert!(s.update_async("a", |r| r.n = 2).await.is_err());
        assert!(s.put_async(&r("b", 1)).await.is_err());
        assert_eq!(s.get("a").unwrap().n, 1);
        assert!(s.get("b").is_none());
        // Nothing is wedged: the next write after the disk recovers goes through.
        fs::create_dir_all(&dir).unwrap();
        s.update_async("a", |r| r.n = 3).await.unwrap();
        assert_eq!(Store::<R>::open(&dir).unwrap().get("a").unwrap().n, 3);
    }
}
