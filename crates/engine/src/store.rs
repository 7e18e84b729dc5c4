//! A directory of versioned JSON records (one file per object, written atomically) with an
//! in-memory index, so List calls never touch disk and a torn write can't hurt a neighbour.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};

/// A stored object: its id and the schema version it was written with.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    const VERSION: u32;
    fn id(&self) -> &str;
    fn version(&self) -> u32;
}

pub struct Store<T: Record> {
    dir: PathBuf,
    map: RwLock<HashMap<String, T>>,
    /// Per-id locks serialising writes of one record, so a late update can neither lose a
    /// concurrent one nor resurrect a deleted record; different records never wait on each other.
    writers: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<()>>>>,
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
            dir,
            map: RwLock::new(map),
            writers: Default::default(),
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn list(&self) -> Vec<T> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Persists then indexes.
    pub fn put(&self, rec: &T) -> Result<()> {
        let w = self.writer(rec.id());
        let _w = w.lock().unwrap_or_else(|p| p.into_inner());
        self.put_locked(rec)
    }

    fn put_locked(&self, rec: &T) -> Result<()> {
        let path = self.path(rec.id());
        let data = serde_json::to_vec_pretty(rec).map_err(|e| EngineError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        husk_sys::fs::atomic_write(&path, &data).map_err(|e| EngineError::io("write", &path, e))?;
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id().to_string(), rec.clone());
        Ok(())
    }

    /// Updates a record in place with `f` and persists it; `None` when absent.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut T)) -> Result<Option<T>> {
        let w = self.writer(id);
        let _w = w.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut r) = self.get(id) else {
            return Ok(None);
        };
        f(&mut r);
        self.put_locked(&r)?;
        Ok(Some(r))
    }

    fn writer(&self, id: &str) -> Arc<std::sync::Mutex<()>> {
        let mut w = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(id.to_string()).or_default().clone()
    }

    pub fn delete(&self, id: &str) -> Result<()> {
        let w = self.writer(id);
        let _w = w.lock().unwrap_or_else(|p| p.into_inner());
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

    /// Resolves a full id or a unique prefix.
    pub fn resolve(&self, what: &'static str, prefix: &str) -> Result<T> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
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
        &self.dir
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

    #[test]
    fn put_update_resolve_reopen() {
        let d = tempfile::tempdir().unwrap();
        let s: Store<R> = Store::open(d.path()).unwrap();
        s.put(&R {
            version: 1,
            id: "abc123".into(),
            n: 1,
        })
        .unwrap();
        s.put(&R {
            version: 1,
            id: "abd456".into(),
            n: 2,
        })
        .unwrap();
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
}
