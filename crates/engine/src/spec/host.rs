//! What spec generation asks of the host: detected facts ([`HostInfo::detect`]) and per-path
//! lookups behind the [`HostOps`] seam (symlinks, mount propagation, device nodes, AppArmor
//! profiles, profile files), so the rules can be unit-tested with a fake.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::caps;
use super::error::SpecError;
use super::input::HostInfo;

/// Propagation of the mount a path lives on, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub mount_point: PathBuf,
    pub shared: bool,
    pub slave: bool,
}

/// Host lookups made while generating a spec.
pub trait HostOps {
    /// The path with a final symlink resolved (containerd's `ResolveSymbolicLink`); a missing
    /// path is returned unchanged.
    fn resolve_symlink(&self, path: &Path) -> io::Result<PathBuf>;
    /// The mount that `path` lives on.
    fn mount_point(&self, path: &Path) -> io::Result<MountPoint>;
    /// The device at `path`, or every device below it when it is a directory; paths are
    /// rewritten under `container_path` when it is not empty.
    fn devices(&self, path: &Path, container_path: &str) -> io::Result<Vec<LinuxDevice>>;
    /// Every device of the host's `/dev` (privileged containers).
    fn host_devices(&self) -> io::Result<Vec<LinuxDevice>>;
    /// Whether an AppArmor profile of this name is loaded.
    fn apparmor_profile_loaded(&self, name: &str) -> io::Result<bool>;
    /// Reads a host file (seccomp `Localhost` profiles).
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The node's hostname.
    fn hostname(&self) -> String;
}

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostOps for RealHost {
    fn resolve_symlink(&self, path: &Path) -> io::Result<PathBuf> {
        match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => fs::canonicalize(path),
            Ok(_) => Ok(path.to_path_buf()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
            Err(e) => Err(e),
        }
    }

    fn mount_point(&self, path: &Path) -> io::Result<MountPoint> {
        let info = fs::read_to_string("/proc/self/mountinfo")?;
        find_mount(&info, path)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no mount found for the path"))
    }

    fn devices(&self, path: &Path, container_path: &str) -> io::Result<Vec<LinuxDevice>> {
        if fs::metadata(path)?.is_dir() {
            let mut out = Vec::new();
            walk_devices(path, container_path, &mut out)?;
            return Ok(out);
        }
        let resolved = fs::canonicalize(path)?;
        let mut dev = device_from_path(&resolved)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a device node"))?;
        if !container_path.is_empty() {
            dev.set_path(PathBuf::from(container_path));
        }
        Ok(vec![dev])
    }

    fn host_devices(&self) -> io::Result<Vec<LinuxDevice>> {
        let mut out = Vec::new();
        walk_devices(Path::new("/dev"), "", &mut out)?;
        Ok(out)
    }

    fn apparmor_profile_loaded(&self, name: &str) -> io::Result<bool> {
        let profiles = fs::read_to_string("/sys/kernel/security/apparmor/profiles")?;
        let prefix = format!("{name} (");
        Ok(profiles.lines().any(|l| l.starts_with(&prefix)))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn hostname(&self) -> String {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    }
}

/// Walks a device directory like containerd's `getDevices`: skips `pts`, `shm`, `fd`,
/// `mqueue` and runtime bookkeeping directories, `console`, FIFOs and non-devices.
fn walk_devices(dir: &Path, container_dir: &str, out: &mut Vec<LinuxDevice>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name_str = name.to_string_lossy();
        let ty = entry.file_type()?;
        let cpath = if container_dir.is_empty() {
            String::new()
        } else {
            format!("{}/{}", container_dir.trim_end_matches('/'), name_str)
        };
        if ty.is_dir() {
            if matches!(
                name_str.as_ref(),
                "pts" | "shm" | "fd" | "mqueue" | ".lxc" | ".lxd-mounts" | ".udev"
            ) {
                continue;
            }
            walk_devices(&entry.path(), &cpath, out)?;
            continue;
        }
        if name_str == "console" {
            continue;
        }
        match device_from_path(&entry.path()) {
            Ok(Some(mut dev)) if dev.typ() != LinuxDeviceType::P => {
                if !cpath.is_empty() {
                    dev.set_path(PathBuf::from(cpath));
                }
                out.push(dev);
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The device node at `path` (not following a final symlink); `None` if it is not one.
fn device_from_path(path: &Path) -> io::Result<Option<LinuxDevice>> {
    let meta = fs::symlink_metadata(path)?;
    let ft = meta.file_type();
    let typ = if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_fifo() {
        LinuxDeviceType::P
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut dev = LinuxDevice::default();
    dev.set_path(path.to_path_buf())
        .set_typ(typ)
        .set_major(i64::from(rustix::fs::major(rdev)))
        .set_minor(i64::from(rustix::fs::minor(rdev)))
        .set_file_mode(Some(meta.mode() & 0o7777))
        .set_uid(Some(meta.uid()))
        .set_gid(Some(meta.gid()));
    Ok(Some(dev))
}

/// Finds the mount `path` lives on in a mountinfo table: the longest mount point that is a
/// path prefix of it (the last one when mounts are stacked).
pub(crate) fn find_mount(mountinfo: &str, path: &Path) -> Option<MountPoint> {
    let mut best: Option<MountPoint> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(mp) = fields.get(4) else { continue };
        let mount_point = PathBuf::from(unescape_mountinfo(mp));
        if !path.starts_with(&mount_point) {
            continue;
        }
        let shallower = best
            .as_ref()
            .is_some_and(|b| b.mount_point.components().count() > mount_point.components().count());
        if shallower {
            continue;
        }
        let optional = fields.iter().skip(6).take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for opt in optional {
            shared |= opt.starts_with("shared:");
            slave |= opt.starts_with("master:");
        }
        best = Some(MountPoint {
            mount_point,
            shared,
            slave,
        });
    }
    best
}

/// Undoes mountinfo's octal escapes (`\040` for a space …).
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The native architecture as seccomp profiles name it (Go's `GOARCH` spelling).
pub fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "x86",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn parse_kernel(release: &str) -> (u32, u32) {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn status_bitmap(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

impl HostInfo {
    /// Detects the facts of this host and of the calling process (the daemon).
    pub fn detect() -> Result<HostInfo, SpecError> {
        let status =
            fs::read_to_string("/proc/self/status").map_err(|source| SpecError::DetectHost {
                what: "capabilities",
                source,
            })?;
        // What the daemon holds and may pass on: effective ∩ bounding (equal for root).
        let eff = status_bitmap(&status, "CapEff:");
        let bnd = status_bitmap(&status, "CapBnd:");
        let oom = fs::read_to_string("/proc/self/oom_score_adj").map_err(|source| {
            SpecError::DetectHost {
                what: "oom_score_adj",
                source,
            }
        })?;
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let apparmor_enabled = fs::read_to_string("/sys/module/apparmor/parameters/enabled")
            .map(|s| s.trim() == "Y")
            .unwrap_or(false);
        let kernel = parse_kernel(&rustix::system::uname().release().to_string_lossy());
        Ok(HostInfo {
            capabilities: caps::from_bitmap(eff & bnd),
            has_cap_sys_resource: eff & (1 << 24) != 0,
            oom_score_adj: oom.trim().parse().unwrap_or(0),
            cgroup_v2,
            apparmor_enabled,
            apparmor_default_profile: None,
            swap_controller: swap_controller(cgroup_v2),
            hugetlb_controller: hugetlb_controller(cgroup_v2),
            kernel,
            arch: native_arch().to_string(),
            rro_supported: kernel >= (5, 12),
        })
    }
}

fn swap_controller(v2: bool) -> bool {
    if !v2 {
        return Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    }
    // memory.swap.max does not exist in the root cgroup: look in our own.
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let Some(rel) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return false;
    };
    Path::new("/sys/fs/cgroup")
        .join(rel.trim_start_matches('/'))
        .join("memory.swap.max")
        .exists()
}

fn hugetlb_controller(v2: bool) -> bool {
    if v2 {
        fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .map(|s| s.split_whitespace().any(|c| c == "hugetlb"))
            .unwrap_or(false)
    } else {
        Path::new("/sys/fs/cgroup/hugetlb").exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw
40 22 8:2 / /var/lib rw,relatime master:7 - ext4 /dev/sda2 rw
41 40 8:3 / /var/lib/private rw,relatime - ext4 /dev/sda3 rw
42 22 0:40 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn find_mount_picks_the_deepest_prefix() {
        let cases = [
            ("/home/x", "/", true, false),
            ("/var/lib/kubelet", "/var/lib", false, true),
            ("/var/lib/private/a", "/var/lib/private", false, false),
            ("/var/library", "/", true, false),
            ("/mnt/with space/d", "/mnt/with space", false, false),
        ];
        for (path, mp, shared, slave) in cases {
            let got = find_mount(MOUNTINFO, Path::new(path)).expect(path);
            assert_eq!(got.mount_point, PathBuf::from(mp), "{path}");
            assert_eq!((got.shared, got.slave), (shared, slave), "{path}");
        }
    }

    #[test]
    fn kernel_release_parses() {
        assert_eq!(parse_kernel("6.18.44-fc-v595"), (6, 18));
        assert_eq!(parse_kernel("5.4.0"), (5, 4));
        assert_eq!(parse_kernel("garbage"), (0, 0));
    }

    #[test]
    fn detect_reads_this_host() {
        let h = HostInfo::detect().expect("detect");
        assert!(!h.capabilities.is_empty() || !h.has_cap_sys_resource);
        assert!(h.kernel >= (3, 0));
    }

    #[test]
    fn real_host_finds_dev_null() {
        let devs = RealHost
            .devices(Path::new("/dev/null"), "/dev/mynull")
            .expect("dev null");
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), &PathBuf::from("/dev/mynull"));
        assert_eq!((devs[0].major(), devs[0].minor()), (1, 3));
        assert_eq!(devs[0].typ(), LinuxDeviceType::C);
    }

    #[test]
    fn real_host_rejects_non_devices() {
        let err = RealHost
            .devices(Path::new("/proc/self/status"), "")
            .expect_err("not a device");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
