//! Reloading the network config when its directory changes: a fingerprint of the candidate
//! files (name, inode, size, mtime) decides whether to parse again.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{CniConfig, conf_files};
use crate::error::NotReady;

/// What a directory looked like: each candidate file's name, inode, size and mtime.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint(Vec<(OsString, u64, u64, i64, i64)>);

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let files = conf_files(dir).ok()?;
    let entries = files
        .into_iter()
        .map(|p| {
            let m = fs::metadata(&p).ok();
            let name = p.file_name().map(OsString::from).unwrap_or_default();
            match m {
                Some(m) => (name, m.ino(), m.len(), m.mtime(), m.mtime_nsec()),
                None => (name, 0, 0, 0, 0),
            }
        })
        .collect();
    Some(Fingerprint(entries))
}

/// The current config of a directory, reloaded when the directory's listing or a file's mtime,
/// size or inode changes. While not ready, every call rescans (a plugin binary may have been
/// installed since).
#[derive(Debug)]
pub struct ConfigWatcher {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    seen: Option<Option<Fingerprint>>,
    current: Result<Arc<CniConfig>, NotReady>,
}

impl ConfigWatcher {
    /// A watcher that has not looked yet: [`ConfigWatcher::current`] is not ready until the
    /// first [`ConfigWatcher::reload_if_changed`].
    pub fn new(conf_dir: PathBuf, bin_dirs: Vec<PathBuf>) -> Self {
        ConfigWatcher {
            current: Err(NotReady::new(format!(
                "CNI config in {conf_dir:?} not loaded yet"
            ))),
            conf_dir,
            bin_dirs,
            seen: None,
        }
    }

    /// Rescans the directory; reloads when it changed (or nothing valid is loaded). Returns
    /// whether the outcome changed. Blocking: call from a blocking thread.
    pub fn reload_if_changed(&mut self) -> bool {
        let fp = fingerprint(&self.conf_dir);
        if self.current.is_ok() && self.seen.as_ref() == Some(&fp) {
            return false;
        }
        let loaded = CniConfig::load(&self.conf_dir, &self.bin_dirs).map(Arc::new);
        self.seen = Some(fp);
        let changed = match (&self.current, &loaded) {
            (Ok(a), Ok(b)) => a != b,
            (Err(a), Err(b)) => a != b,
            _ => true,
        };
        if changed {
            match &loaded {
                Ok(c) => tracing::info!(
                    network = %c.name,
                    file = ?c.source,
                    plugins = ?c.plugins.iter().map(|p| &p.plugin_type).collect::<Vec<_>>(),
                    "CNI network config loaded"
                ),
                Err(e) => tracing::warn!(reason = %e, "CNI network not ready"),
            }
        }
        self.current = loaded;
        changed
    }

    /// The config loaded last, or why there is none.
    pub fn current(&self) -> Result<Arc<CniConfig>, NotReady> {
        self.current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fixtures::{LIST, bins};

    #[test]
    fn watcher_picks_up_a_config_added_later_and_changes() {
        let (_b, bin_dirs) = bins();
        let d = tempfile::tempdir().unwrap();
        let mut w = ConfigWatcher::new(d.path().to_path_buf(), bin_dirs);
        assert!(w.current().is_err());
        assert!(w.reload_if_changed());
        assert!(
            w.current()
                .unwrap_err()
                .message
                .contains("no network config")
        );
        assert!(!w.reload_if_changed(), "same error, no change");
        fs::write(d.path().join("10-a.conflist"), LIST).unwrap();
        assert!(w.reload_if_changed());
        assert_eq!(w.current().unwrap().name, "podnet");
        assert!(!w.reload_if_changed());
        // Rewritten by rename (new inode): reloaded.
        let tmp = d.path().join("tmp");
        fs::write(&tmp, LIST.replace("podnet", "renamed")).unwrap();
        fs::rename(&tmp, d.path().join("10-a.conflist")).unwrap();
        assert!(w.reload_if_changed());
        assert_eq!(w.current().unwrap().name, "renamed");
        // A lexically earlier file takes over.
        fs::write(
            d.path().join("05-b.conf"),
            r#"{"cniVersion":"1.0.0","name":"early","type":"bridge"}"#,
        )
        .unwrap();
        assert!(w.reload_if_changed());
        assert_eq!(w.current().unwrap().name, "early");
        fs::remove_file(d.path().join("05-b.conf")).unwrap();
        fs::remove_file(d.path().join("10-a.conflist")).unwrap();
        assert!(w.reload_if_changed());
        assert!(w.current().is_err());
    }
}
