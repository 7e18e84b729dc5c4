//! Tests of mount ordering, overrides, propagation and read-only handling.

use std::path::PathBuf;

use super::*;
use crate::spec::testutil::{FakeHost, base_input, rootfs};

fn dsts(plan: &MountPlan) -> Vec<String> {
    plan.mounts
        .iter()
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect()
}

fn find<'a>(plan: &'a MountPlan, dst: &str) -> &'a Mount {
    plan.mounts
        .iter()
        .find(|m| m.destination() == &PathBuf::from(dst))
        .unwrap_or_else(|| panic!("no mount {dst}"))
}

fn opts(m: &Mount) -> Vec<String> {
    m.options().clone().unwrap_or_default()
}

fn cri(dst: &str, src: &str) -> MountSpec {
    MountSpec {
        container_path: dst.into(),
        host_path: src.into(),
        ..Default::default()
    }
}

#[test]
fn clean_paths() {
    for (raw, want) in [
        ("/a/b/", "/a/b"),
        ("//a//./b", "/a/b"),
        ("/a/../../b", "/b"),
        ("/", "/"),
        ("/etc/hosts/.", "/etc/hosts"),
    ] {
        assert_eq!(clean(raw), want, "{raw}");
    }
}

#[test]
fn default_order_and_sandbox_files() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.mounts = vec![cri("/var/log/app", "/srv/logs"), cri("/data", "/srv/data")];
    let plan = build(&input, &FakeHost::default()).expect("build");
    assert_eq!(
        dsts(&plan),
        [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/data",
            "/etc/hostname",
            "/etc/hosts",
            "/etc/resolv.conf",
            "/dev/shm",
            "/var/log/app",
        ]
    );
    let shm = find(&plan, "/dev/shm");
    assert_eq!(
        shm.source(),
        &Some(PathBuf::from("/run/husk/pods/5and/shm"))
    );
    assert_eq!(opts(shm), ["rbind", "rprivate", "rw"]);
    assert_eq!(opts(find(&plan, "/etc/hosts")), ["rbind", "rprivate", "rw"]);
    assert_eq!(
        opts(find(&plan, "/sys")),
        ["nosuid", "noexec", "nodev", "ro"]
    );
    assert_eq!(plan.rootfs_propagation, None);
}

#[test]
fn readonly_rootfs_makes_sandbox_files_readonly_but_not_shm() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.security.readonly_rootfs = true;
    let plan = build(&input, &FakeHost::default()).expect("build");
    for f in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"] {
        assert_eq!(opts(find(&plan, f)), ["rbind", "rprivate", "ro"], "{f}");
    }
    assert_eq!(opts(find(&plan, "/dev/shm")), ["rbind", "rprivate", "rw"]);
}

#[test]
fn host_ipc_uses_host_shm_and_missing_files_are_skipped() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.security.namespaces.ipc = NamespaceMode::Node;
    input.sandbox_files.hostname = None;
    let plan = build(&input, &FakeHost::default()).expect("build");
    assert_eq!(
        find(&plan, "/dev/shm").source(),
        &Some(PathBuf::from("/dev/shm"))
    );
    assert!(!dsts(&plan).contains(&"/etc/hostname".to_string()));

    // No pod shm at all: the default private tmpfs stays.
    let mut input = base_input(root.path());
    input.sandbox_files.shm = None;
    let plan = build(&input, &FakeHost::default()).expect("build");
    assert_eq!(find(&plan, "/dev/shm").typ(), &Some("tmpfs".to_string()));
}

#[test]
fn cri_mount_replaces_defaults_and_sandbox_files() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.mounts = vec![
        cri("/etc/hosts/", "/my/hosts"),
        cri("/sys", "/host/sys"),
        cri("/dev", "/dev"),
    ];
    let plan = build(&input, &FakeHost::default()).expect("build");
    let d = dsts(&plan);
    assert_eq!(d.iter().filter(|x| *x == "/etc/hosts").count(), 1);
    assert_eq!(
        find(&plan, "/etc/hosts").source(),
        &Some(PathBuf::from("/my/hosts"))
    );
    assert_eq!(find(&plan, "/sys").typ(), &Some("bind".to_string()));
    // A host /dev hides every default mount under /dev; the pod's shm bind stays.
    assert!(!d.contains(&"/dev/pts".to_string()));
    assert!(!d.contains(&"/dev/mqueue".to_string()));
    assert_eq!(find(&plan, "/dev").typ(), &Some("bind".to_string()));
    assert_eq!(find(&plan, "/dev/shm").typ(), &Some("bind".to_string()));
}

#[test]
fn propagation_table() {
    let root = rootfs();
    let host = FakeHost {
        mounts: vec![
            (PathBuf::from("/shared"), true, false),
            (PathBuf::from("/slave"), false, true),
            (PathBuf::from("/private"), false, false),
        ],
        ..Default::default()
    };
    type Case = (
        &'static str,
        Propagation,
        Option<&'static str>,
        Option<&'static str>,
    );
    let cases: [Case; 7] = [
        ("/private/x", Propagation::Private, Some("rprivate"), None),
        (
            "/shared/x",
            Propagation::Bidirectional,
            Some("rshared"),
            Some("rshared"),
        ),
        ("/slave/x", Propagation::Bidirectional, None, None),
        ("/private/x", Propagation::Bidirectional, None, None),
        (
            "/shared/x",
            Propagation::HostToContainer,
            Some("rslave"),
            Some("rslave"),
        ),
        (
            "/slave/x",
            Propagation::HostToContainer,
            Some("rslave"),
            Some("rslave"),
        ),
        ("/private/x", Propagation::HostToContainer, None, None),
    ];
    for (src, prop, want_opt, want_root) in cases {
        let mut input = base_input(root.path());
        let mut m = cri("/mnt", src);
        m.propagation = prop;
        input.container.mounts = vec![m];
        match (build(&input, &host), want_opt) {
            (Ok(plan), Some(o)) => {
                assert_eq!(opts(find(&plan, "/mnt"))[1], o, "{src} {prop:?}");
                assert_eq!(
                    plan.rootfs_propagation.as_deref(),
                    want_root,
                    "{src} {prop:?}"
                );
            }
            (Err(SpecError::MountPropagation { .. }), None) => {}
            (got, _) => panic!("{src} {prop:?}: {got:?}"),
        }
    }
}

#[test]
fn rshared_wins_over_rslave() {
    let root = rootfs();
    let host = FakeHost {
        mounts: vec![(PathBuf::from("/shared"), true, false)],
        ..Default::default()
    };
    let mut input = base_input(root.path());
    let mut a = cri("/a", "/shared/a");
    a.propagation = Propagation::Bidirectional;
    let mut b = cri("/b", "/shared/b");
    b.propagation = Propagation::HostToContainer;
    input.container.mounts = vec![a, b];
    let plan = build(&input, &host).expect("build");
    assert_eq!(plan.rootfs_propagation.as_deref(), Some("rshared"));
}

#[test]
fn readonly_and_recursive_readonly() {
    let root = rootfs();
    let mut input = base_input(root.path());
    let mut ro = cri("/ro", "/src/ro");
    ro.readonly = true;
    let mut rro = cri("/rro", "/src/rro");
    rro.readonly = true;
    rro.recursive_read_only = true;
    input.container.mounts = vec![ro, rro.clone()];
    let plan = build(&input, &FakeHost::default()).expect("build");
    assert_eq!(opts(find(&plan, "/ro")), ["rbind", "rprivate", "ro"]);
    assert_eq!(opts(find(&plan, "/rro")), ["rbind", "rprivate", "rro"]);

    let mut bad = rro.clone();
    bad.readonly = false;
    input.container.mounts = vec![bad];
    assert!(matches!(
        build(&input, &FakeHost::default()),
        Err(SpecError::RecursiveReadOnly { .. })
    ));

    input.container.mounts = vec![rro];
    input.host.rro_supported = false;
    assert!(matches!(
        build(&input, &FakeHost::default()),
        Err(SpecError::RecursiveReadOnly { .. })
    ));
}

#[test]
fn relative_paths_are_rejected() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.mounts = vec![cri("data", "/src")];
    assert!(matches!(
        build(&input, &FakeHost::default()),
        Err(SpecError::RelativeContainerPath { .. })
    ));
    input.container.mounts = vec![cri("/data", "src")];
    assert!(matches!(
        ensure_host_paths(&input),
        Err(SpecError::RelativeHostPath { .. })
    ));
}

#[test]
fn symlinked_host_path_is_resolved() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.mounts = vec![cri("/data", "/link")];
    let host = FakeHost {
        symlinks: [(PathBuf::from("/link"), PathBuf::from("/real/data"))].into(),
        ..Default::default()
    };
    let plan = build(&input, &host).expect("build");
    assert_eq!(
        find(&plan, "/data").source(),
        &Some(PathBuf::from("/real/data"))
    );
}

#[test]
fn privileged_makes_sys_and_cgroup_writable() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.security.privileged = true;
    let plan = build(&input, &FakeHost::default()).expect("build");
    assert_eq!(
        opts(find(&plan, "/sys")).last().map(String::as_str),
        Some("rw")
    );
    assert_eq!(
        opts(find(&plan, "/sys/fs/cgroup"))
            .last()
            .map(String::as_str),
        Some("rw")
    );
}

#[test]
fn ensure_host_paths_creates_missing_directories() {
    let root = rootfs();
    let tmp = tempfile::tempdir().expect("tmp");
    let missing = tmp.path().join("a/b/c");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").expect("file");
    let mut input = base_input(root.path());
    input.container.mounts = vec![
        cri("/c", &missing.to_string_lossy()),
        cri("/f", &file.to_string_lossy()),
    ];
    ensure_host_paths(&input).expect("ensure");
    assert!(missing.is_dir());
    assert!(file.is_file());
}
