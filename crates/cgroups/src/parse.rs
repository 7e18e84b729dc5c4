//! Reading cgroup interface files: single values, `max`-or-value limits and flat keyed files
//! (`memory.stat`, `cpu.stat`, `memory.events`, `memory.oom_control`). An absent file is `None`.

use std::io;
use std::path::{Path, PathBuf};

use crate::CgroupError;

/// Whether a read failed because the file (or its whole cgroup) is gone rather than unreadable.
///
/// Reading a file of a cgroup removed after we opened its directory gives `ENODEV`.
pub(crate) fn is_gone(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::NotFound
        || err.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error())
}

/// Reads a whole cgroup file; `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn parse_error(path: &Path, what: &str) -> CgroupError {
    let mut what = what.trim().to_string();
    if what.len() > 64 {
        let mut cut = 64;
        while !what.is_char_boundary(cut) {
            cut -= 1;
        }
        what.truncate(cut);
    }
    CgroupError::Parse {
        path: path.to_path_buf(),
        what,
    }
}

fn parse_u64(path: &Path, text: &str) -> Result<u64, CgroupError> {
    let t = text.trim();
    t.parse().map_err(|_| parse_error(path, t))
}

/// Reads a file holding one unsigned number (`memory.current`, `cpuacct.usage`, ...).
pub(crate) fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    read_opt(path)?.map(|t| parse_u64(path, &t)).transpose()
}

/// A limit as cgroup v2 (and v1 `pids.max`) writes it: a number or the word `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Max,
    Value(u64),
}

impl Limit {
    /// The number, or `None` for `max`.
    pub(crate) fn value(self) -> Option<u64> {
        match self {
            Limit::Max => None,
            Limit::Value(v) => Some(v),
        }
    }
}

/// Reads a `max`-or-number file (`memory.max`, `memory.swap.max`, `pids.max`).
pub(crate) fn read_limit(path: &Path) -> Result<Option<Limit>, CgroupError> {
    let Some(text) = read_opt(path)? else {
        return Ok(None);
    };
    if text.trim() == "max" {
        Ok(Some(Limit::Max))
    } else {
        parse_u64(path, &text).map(|v| Some(Limit::Value(v)))
    }
}

/// A flat keyed file: one `<key> <value>` pair per line.
///
/// Values are parsed only when asked for, so a key we never read cannot fail a read.
#[derive(Debug)]
pub(crate) struct Keyed {
    path: PathBuf,
    text: String,
}

impl Keyed {
    /// Reads `path`; `Ok(None)` when the file does not exist.
    pub(crate) fn read(path: &Path) -> Result<Option<Keyed>, CgroupError> {
        Ok(read_opt(path)?.map(|text| Keyed::from_text(path, text)))
    }

    pub(crate) fn from_text(path: &Path, text: String) -> Keyed {
        Keyed {
            path: path.to_path_buf(),
            text,
        }
    }

    /// The value of `key`, `None` if the file has no such line.
    pub(crate) fn get(&self, key: &str) -> Result<Option<u64>, CgroupError> {
        for line in self.text.lines() {
            let mut fields = line.split_ascii_whitespace();
            if fields.next() != Some(key) {
                continue;
            }
            return match (fields.next(), fields.next()) {
                (Some(v), None) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| parse_error(&self.path, line)),
                _ => Err(parse_error(&self.path, line)),
            };
        }
        Ok(None)
    }

    /// The value of the first of `keys` present (e.g. v1 `total_rss`, then `rss`).
    pub(crate) fn get_any(&self, keys: &[&str]) -> Result<Option<u64>, CgroupError> {
        for key in keys {
            if let Some(v) = self.get(key)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }
}

/// Looks `key` up in an optional keyed file.
pub(crate) fn get(file: Option<&Keyed>, key: &str) -> Result<Option<u64>, CgroupError> {
    file.map_or(Ok(None), |f| f.get(key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn keyed(text: &str) -> Keyed {
        Keyed::from_text(Path::new("/x/memory.stat"), text.to_string())
    }

    #[test]
    fn keyed_lookup() {
        let k = keyed("cache 10\nrss 20\ntotal_rss 30\n");
        assert_eq!(k.get("rss").unwrap(), Some(20));
        assert_eq!(k.get("total_rss").unwrap(), Some(30));
        assert_eq!(k.get("missing").unwrap(), None);
        assert_eq!(k.get_any(&["nope", "cache"]).unwrap(), Some(10));
    }

    #[test]
    fn keyed_bad_value_is_a_parse_error_only_when_asked_for() {
        let k = keyed("good 1\nbad x\nlonely\n");
        assert_eq!(k.get("good").unwrap(), Some(1));
        let err = k.get("bad").unwrap_err();
        assert!(
            matches!(&err, CgroupError::Parse { path, what } if path.ends_with("memory.stat") && what == "bad x"),
            "{err:?}"
        );
        assert!(k.get("lonely").is_err());
    }

    #[test]
    fn limits_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.max");
        assert_eq!(read_limit(&p).unwrap(), None);
        std::fs::write(&p, "max\n").unwrap();
        assert_eq!(read_limit(&p).unwrap(), Some(Limit::Max));
        std::fs::write(&p, "1048576\n").unwrap();
        assert_eq!(read_limit(&p).unwrap(), Some(Limit::Value(1 << 20)));
        std::fs::write(&p, "-1\n").unwrap();
        assert!(matches!(read_limit(&p), Err(CgroupError::Parse { .. })));
        assert_eq!(read_u64(&dir.path().join("absent")).unwrap(), None);
    }

    #[test]
    fn a_directory_is_a_read_error_not_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_u64(dir.path()),
            Err(CgroupError::Read { .. })
        ));
    }

    proptest! {
        #[test]
        fn keyed_never_panics(text in "\\PC*", key in "[a-z_]{1,12}") {
            let _ = keyed(&text).get(&key);
        }

        #[test]
        fn keyed_roundtrip(pairs in proptest::collection::btree_map("[a-z_]{1,12}", any::<u64>(), 0..20)) {
            let text: String = pairs.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            let k = keyed(&text);
            for (key, v) in &pairs {
                prop_assert_eq!(k.get(key).unwrap(), Some(*v));
            }
        }
    }
}
