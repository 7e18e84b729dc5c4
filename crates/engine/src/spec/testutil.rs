//! Test helpers: a recording-free fake [`HostOps`] and a typical [`SpecInput`].

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::host::{HostOps, MountPoint};
use super::input::*;

/// A host whose mounts, devices, AppArmor profiles and files are whatever the test says.
#[derive(Debug, Default, Clone)]
pub(crate) struct FakeHost {
    /// `(mount point, shared, slave)`; the root is private unless listed.
    pub mounts: Vec<(PathBuf, bool, bool)>,
    pub symlinks: BTreeMap<PathBuf, PathBuf>,
    pub devices: BTreeMap<PathBuf, Vec<LinuxDevice>>,
    pub host_devices: Vec<LinuxDevice>,
    pub apparmor_profiles: Vec<String>,
    pub files: BTreeMap<PathBuf, Vec<u8>>,
}

pub(crate) fn device(path: &str, typ: LinuxDeviceType, major: i64, minor: i64) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(PathBuf::from(path))
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_file_mode(Some(0o666))
        .set_uid(Some(0))
        .set_gid(Some(0));
    d
}

impl HostOps for FakeHost {
    fn resolve_symlink(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(self
            .symlinks
            .get(path)
            .cloned()
            .unwrap_or_else(|| path.to_path_buf()))
    }

    fn mount_point(&self, path: &Path) -> io::Result<MountPoint> {
        let mut best = MountPoint {
            mount_point: PathBuf::from("/"),
            shared: false,
            slave: false,
        };
        for (mp, shared, slave) in &self.mounts {
            if path.starts_with(mp)
                && mp.components().count() >= best.mount_point.components().count()
            {
                best = MountPoint {
                    mount_point: mp.clone(),
                    shared: *shared,
                    slave: *slave,
                };
            }
        }
        Ok(best)
    }

    fn devices(&self, path: &Path, container_path: &str) -> io::Result<Vec<LinuxDevice>> {
        let devs = self
            .devices
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such device"))?;
        Ok(devs
            .into_iter()
            .map(|mut d| {
                if !container_path.is_empty() {
                    d.set_path(PathBuf::from(container_path));
                }
                d
            })
            .collect())
    }

    fn host_devices(&self) -> io::Result<Vec<LinuxDevice>> {
        Ok(self.host_devices.clone())
    }

    fn apparmor_profile_loaded(&self, name: &str) -> io::Result<bool> {
        Ok(self.apparmor_profiles.iter().any(|p| p == name))
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn hostname(&self) -> String {
        "node-1".to_string()
    }
}

/// A rootfs with `/etc/passwd` and `/etc/group`.
pub(crate) fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(d.path().join("etc")).expect("etc");
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(d.path().join("etc/group"), "root:x:0:\nwww:x:33:\n").expect("group");
    d
}

/// A plain container of a pod with pinned namespaces and sandbox files.
pub(crate) fn base_input(rootfs: &Path) -> SpecInput {
    SpecInput {
        identity: Identity {
            container_id: "c0ffee".into(),
            container_name: "app".into(),
            sandbox_id: "5and".into(),
            pod_name: "web-0".into(),
            pod_namespace: "default".into(),
            pod_uid: "uid-1".into(),
            image_name: "docker.io/library/busybox:latest".into(),
        },
        container: ContainerSettings {
            command: vec!["/bin/sh".into()],
            args: vec!["-c".into(), "sleep 1".into()],
            security: SecurityContext {
                namespaces: NamespaceOptions {
                    pid: NamespaceMode::Container,
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        },
        pod: PodSettings {
            hostname: "web-0".into(),
            privileged: false,
        },
        image: ImageConfig {
            env: Some(vec!["FROM_IMAGE=1".into()]),
            ..Default::default()
        },
        sandbox_files: SandboxFiles {
            hostname: Some("/run/husk/pods/5and/hostname".into()),
            hosts: Some("/run/husk/pods/5and/hosts".into()),
            resolv_conf: Some("/run/husk/pods/5and/resolv.conf".into()),
            shm: Some("/run/husk/pods/5and/shm".into()),
        },
        namespaces: PodNamespaces {
            network: Some("/run/husk/ns/net-5and".into()),
            ipc: Some("/run/husk/ns/ipc-5and".into()),
            uts: Some("/run/husk/ns/uts-5and".into()),
            pid: None,
            target_pid: None,
            user: None,
        },
        rootfs: rootfs.to_path_buf(),
        cgroups_path: "/kubepods/pod-uid-1/c0ffee".into(),
        host: HostInfo::default(),
    }
}
