//! husk-cgroups: reads container and pod resource usage (CPU, memory, pids, OOM kills) from
//! cgroup v1 and v2, as the kubelet gets it through CRI `ContainerStats`/`PodSandboxStats`.
//! Read-only: runc/crun create, configure and remove the cgroups; this crate never writes.
//!
//! Code map:
//! - `lib.rs`: [`Cgroups`] (a detected hierarchy; `stats`, `process_count`).
//! - `detect.rs`: [`Version`] (v2 when `<root>/cgroup.controllers` exists), v1 mount discovery.
//! - `stats.rs`: [`Stats`] and its parts; cadvisor's working-set rule.
//! - `v1.rs`, `v2.rs`: which file feeds which field, per version.
//! - `rate.rs`: [`CpuRate`], nanocores from two samples.
//! - `procs.rs`: task counting for pods.
//! - `parse.rs`: the file formats (single value, `max`, flat keyed).
//!
//! Synchronous and cheap (a handful of small reads per cgroup); async callers use
//! `spawn_blocking`. Absent files give `None` fields, never errors: controllers differ between
//! hosts and a container may exit while it is read. Only a missing cgroup directory is
//! [`CgroupError::NotFound`].
#![forbid(unsafe_code)]

mod detect;
mod error;
mod parse;
mod procs;
mod rate;
mod stats;
mod v1;
mod v2;

use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

pub use detect::{Controller, V1Mounts, Version, mounts_from_layout, mounts_from_mountinfo};
pub use error::CgroupError;
pub use rate::CpuRate;
pub use stats::{Cpu, Memory, Pids, Stats, Throttling, working_set};
pub use v1::UNLIMITED_THRESHOLD;

/// The usual place of the cgroup hierarchies.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// A host's cgroup hierarchy (or a fixture tree shaped like one), ready to read stats from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroups {
    root: PathBuf,
    version: Version,
}

impl Cgroups {
    /// Detects the version and mounts under `root` (normally [`DEFAULT_ROOT`]).
    pub fn detect(root: &Path) -> Cgroups {
        Cgroups::new(root, Version::detect(root))
    }

    /// A hierarchy of a known version; for v1 the mounts in `version` are used, `root` only
    /// for v2.
    pub fn new(root: &Path, version: Version) -> Cgroups {
        Cgroups {
            root: root.to_path_buf(),
            version,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn version(&self) -> &Version {
        &self.version
    }

    /// Reads the usage of the cgroup at `cgroups_path` (the OCI spec's `linux.cgroupsPath`,
    /// e.g. `/husk/<id>` or `/kubepods/pod<uid>/<id>`), descendants included.
    pub fn stats(&self, cgroups_path: &str) -> Result<Stats, CgroupError> {
        let rel = relative(cgroups_path)?;
        let timestamp = SystemTime::now();
        match &self.version {
            Version::V1(mounts) => v1::stats(mounts, &rel, timestamp),
            Version::V2 => v2::stats(&self.root.join(&rel), timestamp),
        }
    }

    /// The tasks of the cgroup at `cgroups_path` and below it (a pod's process count):
    /// `pids.current` (which counts threads too) when the pids controller is there, otherwise
    /// the processes listed in every `cgroup.procs` of the subtree.
    pub fn process_count(&self, cgroups_path: &str) -> Result<u64, CgroupError> {
        let rel = relative(cgroups_path)?;
        match &self.version {
            Version::V2 => procs::count(&self.root.join(&rel)),
            Version::V1(mounts) => {
                if let Some(dir) = v1::dir(mounts, Controller::Pids, &rel)
                    && dir.is_dir()
                {
                    return procs::count(&dir);
                }
                // Any hierarchy lists the same processes; take the first holding this cgroup.
                let preferred = [Controller::Cpuacct, Controller::Cpu, Controller::Memory];
                let candidates: Vec<PathBuf> = preferred
                    .iter()
                    .filter_map(|c| v1::dir(mounts, *c, &rel))
                    .chain(mounts.iter().map(|(_, m)| m.join(&rel)))
                    .collect();
                match candidates.iter().find(|d| d.is_dir()) {
                    Some(dir) => procs::count_procs(dir),
                    None => Err(CgroupError::NotFound {
                        path: candidates.into_iter().next().unwrap_or(rel),
                    }),
                }
            }
        }
    }

    /// The directory of the cgroup at `cgroups_path`: in v2 the one directory, in v1 the one
    /// in `controller`'s hierarchy (`None` if that controller is not mounted).
    pub fn dir(
        &self,
        cgroups_path: &str,
        controller: Controller,
    ) -> Result<Option<PathBuf>, CgroupError> {
        let rel = relative(cgroups_path)?;
        Ok(match &self.version {
            Version::V2 => Some(self.root.join(rel)),
            Version::V1(mounts) => v1::dir(mounts, controller, &rel),
        })
    }
}

/// `cgroups_path` without its leading `/`, refusing relative paths and `..`.
fn relative(cgroups_path: &str) -> Result<PathBuf, CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: cgroups_path.to_string(),
        reason,
    };
    let path = Path::new(cgroups_path);
    if !path.has_root() {
        return Err(invalid("not absolute"));
    }
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => rel.push(part),
            Component::ParentDir | Component::Prefix(_) => return Err(invalid("contains ..")),
        }
    }
    Ok(rel)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(relative("/husk/abc").unwrap(), PathBuf::from("husk/abc"));
        assert_eq!(
            relative("//kubepods/./pod1/").unwrap(),
            PathBuf::from("kubepods/pod1")
        );
        assert_eq!(relative("/").unwrap(), PathBuf::new());
        for bad in ["husk/abc", "", "/husk/../etc", "kubepods.slice:cri:abc"] {
            assert!(
                matches!(relative(bad), Err(CgroupError::InvalidPath { .. })),
                "{bad}"
            );
        }
    }
}
