//! Which cgroup version a host runs and, for v1, where each controller's hierarchy is mounted:
//! from `/proc/self/mountinfo` when it lists cgroup mounts under the root, else from the
//! directory layout under the root (`memory/`, `cpu,cpuacct/`, ...), which is what fixtures use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A cgroup v1 controller (subsystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Controller {
    Blkio,
    Cpu,
    Cpuacct,
    Cpuset,
    Devices,
    Freezer,
    Hugetlb,
    Memory,
    Misc,
    NetCls,
    NetPrio,
    PerfEvent,
    Pids,
    Rdma,
}

impl Controller {
    /// Every controller, in `Ord` order.
    pub const ALL: [Controller; 14] = [
        Controller::Blkio,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Devices,
        Controller::Freezer,
        Controller::Hugetlb,
        Controller::Memory,
        Controller::Misc,
        Controller::NetCls,
        Controller::NetPrio,
        Controller::PerfEvent,
        Controller::Pids,
        Controller::Rdma,
    ];

    /// The kernel's name for it (`cpuacct`, `net_cls`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Blkio => "blkio",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::Hugetlb => "hugetlb",
            Controller::Memory => "memory",
            Controller::Misc => "misc",
            Controller::NetCls => "net_cls",
            Controller::NetPrio => "net_prio",
            Controller::PerfEvent => "perf_event",
            Controller::Pids => "pids",
            Controller::Rdma => "rdma",
        }
    }

    /// The controller the kernel calls `name`, if any.
    pub fn from_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Where each cgroup v1 controller's hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Mounts(BTreeMap<Controller, PathBuf>);

impl V1Mounts {
    pub fn new() -> V1Mounts {
        V1Mounts::default()
    }

    /// Records `controller` at `mount_point` unless it is already known (first mount wins).
    pub fn insert(&mut self, controller: Controller, mount_point: PathBuf) {
        self.0.entry(controller).or_insert(mount_point);
    }

    /// The mount point of `controller`, if it is mounted.
    pub fn get(&self, controller: Controller) -> Option<&Path> {
        self.0.get(&controller).map(PathBuf::as_path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (Controller, &Path)> {
        self.0.iter().map(|(c, p)| (*c, p.as_path()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The cgroup version of a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// Legacy or hybrid: one hierarchy per controller (or group of co-mounted controllers).
    V1(V1Mounts),
    /// Unified: one hierarchy at the root, every controller in it.
    V2,
}

impl Version {
    /// Detects the version under `root` (normally `/sys/fs/cgroup`): v2 when
    /// `<root>/cgroup.controllers` exists, v1 (legacy or hybrid) otherwise.
    pub fn detect(root: &Path) -> Version {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
        Version::detect_with_mountinfo(root, mountinfo.as_deref())
    }

    /// [`Version::detect`] with the mount table given (`None`: use the directory layout only).
    pub fn detect_with_mountinfo(root: &Path, mountinfo: Option<&str>) -> Version {
        if root.join("cgroup.controllers").exists() {
            tracing::debug!(root = %root.display(), "cgroup v2 (unified)");
            return Version::V2;
        }
        let mut mounts = mountinfo
            .map(|m| mounts_from_mountinfo(root, m))
            .unwrap_or_default();
        if mounts.is_empty() {
            mounts = mounts_from_layout(root);
        }
        tracing::debug!(
            root = %root.display(),
            controllers = ?mounts.iter().map(|(c, _)| c.name()).collect::<Vec<_>>(),
            "cgroup v1"
        );
        Version::V1(mounts)
    }
}

/// The v1 controllers mounted under `root` according to a `/proc/<pid>/mountinfo` text.
///
/// A line reads `id parent major:minor root mount_point options [optional...] - fstype source
/// super_options`; v1 hierarchies have fstype `cgroup` and list their controllers in the super
/// options (`rw,cpu,cpuacct`).
pub fn mounts_from_mountinfo(root: &Path, mountinfo: &str) -> V1Mounts {
    let mut mounts = V1Mounts::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mount_point), Some(&"cgroup"), Some(super_opts)) =
            (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape(mount_point));
        if !mount_point.starts_with(root) {
            continue;
        }
        for opt in super_opts.split(',') {
            if let Some(c) = Controller::from_name(opt) {
                mounts.insert(c, mount_point.clone());
            }
        }
    }
    mounts
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            d.iter()
                .all(|b| (b'0'..=b'7').contains(b))
                .then(|| d.iter().fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0')))
        });
        match (bytes[i], octal.and_then(|v| u8::try_from(v).ok())) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The v1 controllers found as directories under `root`: `memory/`, or `cpu,cpuacct/` for
/// co-mounted ones. A directory named exactly after a controller wins over a combined one.
pub fn mounts_from_layout(root: &Path) -> V1Mounts {
    let mut names: Vec<String> = match std::fs::read_dir(root) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    // Exact names first, then combined ones; sorted so the result does not depend on readdir.
    names.sort_by_key(|n| (n.contains(','), n.clone()));
    let mut mounts = V1Mounts::new();
    for name in &names {
        for part in name.split(',') {
            if let Some(c) = Controller::from_name(part) {
                mounts.insert(c, root.join(name));
            }
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 23 0:40 / /mnt/other\\040cg rw - cgroup cgroup rw,blkio
51 23 0:41 / /proc rw - proc proc rw
";

    #[test]
    fn mountinfo_hybrid() {
        let m = mounts_from_mountinfo(Path::new("/sys/fs/cgroup"), HYBRID);
        let got: Vec<_> = m.iter().map(|(c, p)| (c, p.to_path_buf())).collect();
        assert_eq!(
            got,
            vec![
                (Controller::Cpu, "/sys/fs/cgroup/cpu,cpuacct".into()),
                (Controller::Cpuacct, "/sys/fs/cgroup/cpu,cpuacct".into()),
                (Controller::Memory, "/sys/fs/cgroup/memory".into()),
                (Controller::Pids, "/sys/fs/cgroup/pids".into()),
            ]
        );
        let elsewhere = mounts_from_mountinfo(Path::new("/mnt"), HYBRID);
        assert_eq!(
            elsewhere.get(Controller::Blkio),
            Some(Path::new("/mnt/other cg"))
        );
    }

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape(r"/a\040b\134c\\"), "/a b\\c\\\\");
        assert_eq!(unescape(r"\04"), r"\04");
    }

    #[test]
    fn v2_when_cgroup_controllers_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        assert_eq!(
            Version::detect_with_mountinfo(dir.path(), Some(HYBRID)),
            Version::V2
        );
    }

    #[test]
    fn v1_from_layout_prefers_exact_names() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["cpu,cpuacct", "cpuacct", "memory", "unified", "systemd"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("pids"), "a file, not a hierarchy").unwrap();
        let Version::V1(m) = Version::detect_with_mountinfo(dir.path(), Some(HYBRID)) else {
            panic!("expected v1");
        };
        assert_eq!(
            m.get(Controller::Cpu),
            Some(dir.path().join("cpu,cpuacct").as_path())
        );
        assert_eq!(
            m.get(Controller::Cpuacct),
            Some(dir.path().join("cpuacct").as_path())
        );
        assert_eq!(
            m.get(Controller::Memory),
            Some(dir.path().join("memory").as_path())
        );
        assert_eq!(m.get(Controller::Pids), None);
        assert_eq!(m.iter().count(), 3);
    }

    #[test]
    fn controller_names_roundtrip() {
        for c in Controller::ALL {
            assert_eq!(Controller::from_name(c.name()), Some(c));
        }
        assert_eq!(Controller::from_name("name=systemd"), None);
    }
}
