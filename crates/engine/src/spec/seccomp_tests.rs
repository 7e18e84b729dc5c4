//! Tests of seccomp profile filtering: the default profile's capability, arch and kernel
//! conditions, and Localhost profiles.

use std::path::PathBuf;

use oci_spec::runtime::LinuxSeccompOperator;

use super::*;
use crate::spec::testutil::FakeHost;

fn default_caps() -> Vec<Capability> {
    caps::DEFAULT.to_vec()
}

fn amd64() -> HostInfo {
    HostInfo {
        arch: "amd64".into(),
        kernel: (6, 1),
        ..Default::default()
    }
}

fn runtime_default(bounding: &[Capability], info: &HostInfo) -> LinuxSeccomp {
    generate(
        &SeccompProfile::RuntimeDefault,
        bounding,
        info,
        &FakeHost::default(),
    )
    .expect("generate")
    .expect("some profile")
}

fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    s.syscalls()
        .iter()
        .flatten()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect()
}

/// Allowed without conditions on the arguments.
fn allowed(s: &LinuxSeccomp, name: &str) -> bool {
    rules_for(s, name)
        .iter()
        .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
}

#[test]
fn embedded_default_parses() {
    let p = default_profile().expect("default profile");
    assert_eq!(p.default_action, LinuxSeccompAction::ScmpActErrno);
    assert!(p.syscalls.len() > 30);
}

#[test]
fn default_blocks_unshare_mount_and_namespaced_clone() {
    let s = runtime_default(&default_caps(), &amd64());
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(s.default_errno_ret(), Some(1));
    for blocked in ["unshare", "mount", "umount2", "setns", "bpf", "reboot"] {
        assert!(
            rules_for(&s, blocked).is_empty(),
            "{blocked} must fall to the default action"
        );
    }
    // clone only without namespace flags (CLONE_NEW* mask 0x7E020000).
    let clone = rules_for(&s, "clone");
    assert_eq!(clone.len(), 1);
    let args = clone[0].args().clone().expect("clone args");
    assert_eq!(
        (args[0].index(), args[0].value(), args[0].op()),
        (0, 2_114_060_288, LinuxSeccompOperator::ScmpCmpMaskedEq)
    );
    // clone3 gets ENOSYS so libcs fall back to clone.
    let clone3 = rules_for(&s, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(38));
    for ok in ["read", "execve", "arch_prctl", "socket"] {
        assert!(!rules_for(&s, ok).is_empty(), "{ok} must be allowed");
    }
    // chroot: SYS_CHROOT is in the default set.
    assert!(allowed(&s, "chroot"));
}

#[test]
fn sys_admin_unlocks_unshare() {
    let mut caps = default_caps();
    caps.push(Capability::SysAdmin);
    let s = runtime_default(&caps, &amd64());
    for name in ["unshare", "mount", "setns", "clone", "clone3"] {
        assert!(allowed(&s, name), "{name}");
    }
    // The conditional clone and the clone3 ENOSYS rules are excluded.
    assert!(rules_for(&s, "clone").iter().all(|r| r.args().is_none()));
    assert!(
        rules_for(&s, "clone3")
            .iter()
            .all(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
    );
}

#[test]
fn dropping_a_capability_removes_its_syscalls() {
    let caps: Vec<Capability> = default_caps()
        .into_iter()
        .filter(|c| *c != Capability::SysChroot)
        .collect();
    let s = runtime_default(&caps, &amd64());
    assert!(!allowed(&s, "chroot"));
}

#[test]
fn arch_conditions() {
    let s = runtime_default(&default_caps(), &amd64());
    assert_eq!(
        s.architectures().clone().expect("arches"),
        [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    );
    assert!(allowed(&s, "arch_prctl"));
    assert!(allowed(&s, "modify_ldt"));
    assert!(!allowed(&s, "s390_runtime_instr"));
    assert!(!allowed(&s, "set_tls"));

    let arm = HostInfo {
        arch: "arm64".into(),
        ..amd64()
    };
    let s = runtime_default(&default_caps(), &arm);
    assert_eq!(
        s.architectures().clone().expect("arches"),
        [Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    );
    assert!(allowed(&s, "set_tls"));
    assert!(!allowed(&s, "arch_prctl"));

    let s390 = HostInfo {
        arch: "s390x".into(),
        ..amd64()
    };
    let s = runtime_default(&default_caps(), &s390);
    let clone = rules_for(&s, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args().clone().expect("args")[0].index(), 1);
}

#[test]
fn min_kernel_condition() {
    let s = runtime_default(&default_caps(), &amd64());
    assert!(allowed(&s, "ptrace"));
    let old = HostInfo {
        kernel: (4, 4),
        ..amd64()
    };
    let s = runtime_default(&default_caps(), &old);
    assert!(!allowed(&s, "ptrace"));
    let mut caps = default_caps();
    caps.push(Capability::SysPtrace);
    let s = runtime_default(&caps, &old);
    assert!(allowed(&s, "ptrace"));
}

#[test]
fn unconfined_is_none() {
    let got = generate(
        &SeccompProfile::Unconfined,
        &default_caps(),
        &amd64(),
        &FakeHost::default(),
    )
    .expect("generate");
    assert!(got.is_none());
}

#[test]
fn localhost_profiles() {
    let oci = br#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"name": "chmod", "action": "SCMP_ACT_LOG"}
        ]
    }"#;
    let host = FakeHost {
        files: [
            (PathBuf::from("/p/oci.json"), oci.to_vec()),
            (PathBuf::from("/p/bad.json"), b"{not json".to_vec()),
            (
                PathBuf::from("/p/both.json"),
                br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_LOG"}]}"#.to_vec(),
            ),
        ]
        .into(),
        ..Default::default()
    };
    let run = |p: &str| {
        generate(
            &SeccompProfile::Localhost(PathBuf::from(p)),
            &default_caps(),
            &amd64(),
            &host,
        )
    };
    let s = run("/p/oci.json").expect("oci").expect("profile");
    assert_eq!(s.default_action(), LinuxSeccompAction::ScmpActAllow);
    assert_eq!(
        s.architectures().clone().expect("arch"),
        [Arch::ScmpArchX86_64]
    );
    let mkdir = rules_for(&s, "mkdir");
    assert_eq!(mkdir[0].errno_ret(), Some(13));
    assert_eq!(
        rules_for(&s, "chmod")[0].action(),
        LinuxSeccompAction::ScmpActLog
    );
    assert!(matches!(
        run("/p/missing.json"),
        Err(SpecError::ReadSeccompProfile { .. })
    ));
    assert!(matches!(
        run("/p/bad.json"),
        Err(SpecError::InvalidSeccompProfile { .. })
    ));
    assert!(matches!(
        run("/p/both.json"),
        Err(SpecError::InvalidSeccompProfile { .. })
    ));
}
