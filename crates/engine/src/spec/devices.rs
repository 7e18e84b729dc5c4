//! Devices: CRI devices as `linux.devices` plus device-cgroup allow rules over runc's default
//! rules; privileged containers get every host device and an allow-all rule.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::error::SpecError;
use super::host::HostOps;
use super::input::{DeviceSpec, SpecInput};

/// `linux.devices` and `linux.resources.devices`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DevicePlan {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow)
        .set_typ(typ)
        .set_major(major)
        .set_minor(minor)
        .set_access(Some(access.to_string()));
    r
}

/// runc's defaults: deny everything, allow mknod of any node and the standard devices.
pub(crate) fn default_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    let char_dev = |major, minor| rule(true, Some(C), Some(major), minor, "rwm");
    vec![
        rule(false, Some(A), None, None, "rwm"),
        rule(true, Some(C), None, None, "m"),
        rule(true, Some(B), None, None, "m"),
        char_dev(1, Some(3)), // /dev/null
        char_dev(1, Some(8)), // /dev/random
        char_dev(1, Some(7)), // /dev/full
        char_dev(5, Some(0)), // /dev/tty
        char_dev(1, Some(5)), // /dev/zero
        char_dev(1, Some(9)), // /dev/urandom
        char_dev(5, Some(1)), // /dev/console
        char_dev(136, None),  // /dev/pts/*
        char_dev(5, Some(2)), // /dev/ptmx
    ]
}

/// Validates cgroup permissions (`r`, `w`, `m`); empty means all of them.
fn permissions(d: &DeviceSpec) -> Result<String, SpecError> {
    if d.permissions.is_empty() {
        return Ok("rwm".to_string());
    }
    let valid = d.permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    if !valid {
        return Err(SpecError::DevicePermissions {
            path: d.host_path.clone(),
            permissions: d.permissions.clone(),
        });
    }
    Ok(d.permissions.clone())
}

/// Builds the devices of a container.
pub(crate) fn build(input: &SpecInput, host: &dyn HostOps) -> Result<DevicePlan, SpecError> {
    let c = &input.container;
    let mut wanted: Vec<DeviceSpec> = c.devices.clone();
    // A tty with the host's /dev mounted needs /dev/console (containerd does the same).
    let host_dev = c
        .mounts
        .iter()
        .any(|m| m.container_path == "/dev" && m.host_path == "/dev");
    let has_console = wanted
        .iter()
        .any(|d| d.container_path == "/dev/console" && !d.host_path.is_empty());
    if c.tty && host_dev && !has_console {
        wanted.push(DeviceSpec {
            container_path: "/dev/console".into(),
            host_path: "/dev/console".into(),
            permissions: "rwm".into(),
        });
    }

    let mut rules = default_rules();
    let mut devices: Vec<LinuxDevice> = Vec::new();
    for d in &wanted {
        let access = permissions(d)?;
        let path = Path::new(&d.host_path);
        let resolved = host
            .resolve_symlink(path)
            .map_err(|source| SpecError::ResolveHostPath {
                path: path.to_path_buf(),
                source,
            })?;
        let found = host
            .devices(&resolved, &d.container_path)
            .map_err(|source| SpecError::Device {
                path: path.to_path_buf(),
                source,
            })?;
        for dev in found {
            rules.push(rule(
                true,
                Some(dev.typ()),
                Some(dev.major()),
                Some(dev.minor()),
                &access,
            ));
            devices.push(dev);
        }
    }

    if c.security.privileged {
        let all = host
            .host_devices()
            .map_err(|source| SpecError::HostDevices { source })?;
        for dev in all {
            if !devices.iter().any(|d| d.path() == dev.path()) {
                devices.push(dev);
            }
        }
        rules = vec![rule(true, Some(LinuxDeviceType::A), None, None, "rwm")];
    }
    Ok(DevicePlan { devices, rules })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::spec::input::MountSpec;
    use crate::spec::testutil::{FakeHost, base_input, device, rootfs};

    fn host() -> FakeHost {
        FakeHost {
            devices: [
                (
                    PathBuf::from("/dev/fuse"),
                    vec![device("/dev/fuse", LinuxDeviceType::C, 10, 229)],
                ),
                (
                    PathBuf::from("/dev/console"),
                    vec![device("/dev/console", LinuxDeviceType::C, 5, 1)],
                ),
                (
                    PathBuf::from("/dev/snd"),
                    vec![
                        device("/dev/snd/a", LinuxDeviceType::C, 116, 1),
                        device("/dev/snd/b", LinuxDeviceType::C, 116, 2),
                    ],
                ),
            ]
            .into(),
            host_devices: vec![
                device("/dev/fuse", LinuxDeviceType::C, 10, 229),
                device("/dev/sda", LinuxDeviceType::B, 8, 0),
            ],
            ..Default::default()
        }
    }

    fn dev(host_path: &str, container_path: &str, perms: &str) -> DeviceSpec {
        DeviceSpec {
            container_path: container_path.into(),
            host_path: host_path.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn cri_devices_add_nodes_and_rules() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.devices = vec![dev("/dev/fuse", "/dev/fuse0", "rw")];
        let plan = build(&input, &host()).expect("build");
        assert_eq!(plan.devices.len(), 1);
        assert_eq!(plan.devices[0].path(), &PathBuf::from("/dev/fuse0"));
        assert_eq!(
            plan.rules[0],
            rule(false, Some(LinuxDeviceType::A), None, None, "rwm")
        );
        assert_eq!(
            plan.rules.last(),
            Some(&rule(
                true,
                Some(LinuxDeviceType::C),
                Some(10),
                Some(229),
                "rw"
            ))
        );
        assert_eq!(plan.rules.len(), default_rules().len() + 1);
    }

    #[test]
    fn directory_of_devices() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.devices = vec![dev("/dev/snd", "", "rwm")];
        let plan = build(&input, &host()).expect("build");
        assert_eq!(plan.devices.len(), 2);
        assert_eq!(plan.rules.len(), default_rules().len() + 2);
    }

    #[test]
    fn bad_permissions_and_missing_devices() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.devices = vec![dev("/dev/fuse", "/dev/fuse", "rwx")];
        assert!(matches!(
            build(&input, &host()),
            Err(SpecError::DevicePermissions { .. })
        ));
        input.container.devices = vec![dev("/dev/nope", "/dev/nope", "rw")];
        assert!(matches!(
            build(&input, &host()),
            Err(SpecError::Device { .. })
        ));
    }

    #[test]
    fn tty_with_host_dev_gets_console() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.tty = true;
        input.container.mounts = vec![MountSpec {
            container_path: "/dev".into(),
            host_path: "/dev".into(),
            ..Default::default()
        }];
        let plan = build(&input, &host()).expect("build");
        assert_eq!(plan.devices[0].path(), &PathBuf::from("/dev/console"));
    }

    #[test]
    fn privileged_gets_all_host_devices_and_allow_all() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.security.privileged = true;
        input.container.devices = vec![dev("/dev/fuse", "/dev/fuse", "rw")];
        let plan = build(&input, &host()).expect("build");
        let paths: Vec<_> = plan.devices.iter().map(|d| d.path().clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("/dev/fuse"), PathBuf::from("/dev/sda")]
        );
        assert_eq!(
            plan.rules,
            [rule(true, Some(LinuxDeviceType::A), None, None, "rwm")]
        );
    }
}
