//! The ADD cache (libcni's `/var/lib/cni/results`): per network + sandbox + interface, the
//! config list, capability args and `CNI_ARGS` an ADD used and, once it completed, its result.
//! Written before the first plugin runs (so a crash mid-ADD still leaves what DEL needs) and
//! again with the result; removed after a successful DEL.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::NetError;
use crate::request::CapabilityArgs;

const CACHE_VERSION: u32 = 1;

/// One cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct CacheRecord {
    pub version: u32,
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: String,
    pub cni_args: String,
    /// The config list as used ([`crate::CniConfig::to_json`]).
    pub config: Value,
    #[serde(default)]
    pub capability_args: CapabilityArgs,
    /// The final result of the list; None while the ADD is under way (or if it never ended).
    #[serde(default)]
    pub result: Option<Value>,
}

impl CacheRecord {
    pub fn new(
        network: &str,
        container_id: &str,
        ifname: &str,
        netns: &str,
        cni_args: &str,
        config: Value,
        capability_args: CapabilityArgs,
    ) -> Self {
        CacheRecord {
            version: CACHE_VERSION,
            network: network.into(),
            container_id: container_id.into(),
            ifname: ifname.into(),
            netns: netns.into(),
            cni_args: cni_args.into(),
            config,
            capability_args,
            result: None,
        }
    }
}

/// `<dir>/<network>-<container id>-<ifname>.json` (all three validated: no `/`).
pub(crate) fn cache_path(dir: &Path, network: &str, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{network}-{container_id}-{ifname}.json"))
}

/// Writes `rec` atomically (mode 0600), creating the directory when needed.
pub(crate) fn write(dir: &Path, rec: &CacheRecord) -> Result<PathBuf, NetError> {
    let path = cache_path(dir, &rec.network, &rec.container_id, &rec.ifname);
    let err = |action, source| NetError::Cache {
        action,
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    let data = serde_json::to_vec_pretty(rec).map_err(|e| err("encoding", io::Error::other(e)))?;
    husk_sys::fs::atomic_write_mode(&path, &data, 0o600).map_err(|e| err("writing", e))?;
    Ok(path)
}

/// Removes a cache file; a missing one is fine.
pub(crate) fn remove(path: &Path) -> Result<(), NetError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::Cache {
            action: "removing",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The records of one sandbox interface.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Readable records, the one of the preferred network first.
    pub records: Vec<(PathBuf, CacheRecord)>,
    /// Files that matched by name but could not be read (logged).
    pub corrupt: Vec<PathBuf>,
}

/// Every record of `container_id`/`ifname`, whatever its network. A missing directory means
/// none.
pub(crate) fn find(
    dir: &Path,
    container_id: &str,
    ifname: &str,
    preferred: Option<&str>,
) -> Result<Found, NetError> {
    let suffix = format!("-{container_id}-{ifname}.json");
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::default()),
        Err(source) => {
            return Err(NetError::Cache {
                action: "listing",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut found = Found::default();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(&suffix) {
            continue;
        }
        let path = entry.path();
        match read(&path) {
            Ok(rec) if rec.container_id == container_id && rec.ifname == ifname => {
                found.records.push((path, rec));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(sandbox = %container_id, error = %e, "ignoring CNI cache file");
                found.corrupt.push(path);
            }
        }
    }
    found
        .records
        .sort_by_key(|(p, r)| (Some(r.network.as_str()) != preferred, p.clone()));
    Ok(found)
}

/// Moves an unreadable cache file aside (`.<name>.corrupt`, skipped by [`find`]), keeping it
/// for a human to look at.
pub(crate) fn move_aside(path: &Path) {
    let Some(name) = path.file_name() else { return };
    let target = path.with_file_name(format!(".{}.corrupt", name.to_string_lossy()));
    if let Err(e) = fs::rename(path, &target) {
        tracing::warn!(path = ?path, error = %e, "cannot move corrupt CNI cache file aside");
    }
}

fn read(path: &Path) -> Result<CacheRecord, NetError> {
    let data = fs::read(path).map_err(|source| NetError::Cache {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    let rec: CacheRecord = serde_json::from_slice(&data).map_err(|e| NetError::CacheCorrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if rec.version != CACHE_VERSION {
        return Err(NetError::CacheCorrupt {
            path: path.to_path_buf(),
            reason: format!("unknown version {}", rec.version),
        });
    }
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(network: &str, id: &str) -> CacheRecord {
        CacheRecord::new(
            network,
            id,
            "eth0",
            "/run/netns/x",
            "IgnoreUnknown=1",
            serde_json::json!({"name": network}),
            CapabilityArgs::new(),
        )
    }

    #[test]
    fn write_find_remove() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("results");
        assert!(find(&dir, "sb1", "eth0", None).unwrap().records.is_empty());
        let p1 = write(&dir, &rec("net-a", "sb1")).unwrap();
        let mut r2 = rec("netb", "sb1");
        r2.result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
        write(&dir, &r2).unwrap();
        write(&dir, &rec("net-a", "sb10")).unwrap();
        let found = find(&dir, "sb1", "eth0", Some("netb")).unwrap().records;
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].1, r2);
        assert_eq!(found[1].0, p1);
        assert_eq!(
            find(&dir, "sb1", "eth0", Some("net-a")).unwrap().records[0].0,
            p1
        );
        assert!(find(&dir, "sb1", "eth1", None).unwrap().records.is_empty());
        remove(&p1).unwrap();
        remove(&p1).unwrap();
        assert_eq!(find(&dir, "sb1", "eth0", None).unwrap().records.len(), 1);
        assert_eq!(
            fs::metadata(&found[0].0).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn corrupt_records_are_reported_and_moved_aside() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("n-sb1-eth0.json");
        fs::write(&p, "{").unwrap();
        let found = find(d.path(), "sb1", "eth0", None).unwrap();
        assert!(found.records.is_empty());
        assert_eq!(found.corrupt, std::slice::from_ref(&p));
        assert!(matches!(read(&p), Err(NetError::CacheCorrupt { .. })));
        move_aside(&p);
        assert!(d.path().join(".n-sb1-eth0.json.corrupt").exists());
        assert!(
            find(d.path(), "sb1", "eth0", None)
                .unwrap()
                .corrupt
                .is_empty()
        );
    }

    use std::os::unix::fs::PermissionsExt;
}
