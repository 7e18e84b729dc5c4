//! Counting the tasks of a cgroup subtree (a pod): `pids.current` when the pids controller is
//! there, else the lines of every `cgroup.procs` below the cgroup.

use std::path::{Path, PathBuf};

use crate::CgroupError;
use crate::parse::{is_gone, read_opt, read_u64};

/// `pids.current` of `dir`, or the processes listed in `dir` and all its descendants.
pub(crate) fn count(dir: &Path) -> Result<u64, CgroupError> {
    if !dir.is_dir() {
        return Err(CgroupError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    if let Some(current) = read_u64(&dir.join("pids.current"))? {
        return Ok(current);
    }
    count_procs(dir)
}

/// The non-empty lines of `cgroup.procs` in `dir` and every cgroup below it. Cgroups removed
/// during the walk count as empty.
pub(crate) fn count_procs(dir: &Path) -> Result<u64, CgroupError> {
    let mut total = 0u64;
    let mut todo: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        if let Some(procs) = read_opt(&d.join("cgroup.procs"))? {
            let n = procs.lines().filter(|l| !l.trim().is_empty()).count();
            total = total.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
        }
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if is_gone(&e) => continue,
            Err(source) => return Err(CgroupError::Read { path: d, source }),
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if is_gone(&e) => continue,
                Err(source) => return Err(CgroupError::Read { path: d, source }),
            };
            // Cgroup directories are real directories; never follow a symlink out of the tree.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(entry.path());
            }
        }
    }
    Ok(total)
}
