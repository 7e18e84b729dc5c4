//! End-to-end tests of `generate`: whole specs for typical, privileged and restricted
//! containers, the written config.json, and a property test that nothing panics.

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::runtime::{
    Capability, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Spec,
};
use proptest::prelude::*;

use super::testutil::{FakeHost, base_input, device, rootfs};
use super::*;

fn gen_spec(input: &SpecInput) -> Spec {
    generate_with(input, &FakeHost::default()).expect("generate")
}

fn caps_of(spec: &Spec) -> LinuxCapabilities {
    spec.process()
        .as_ref()
        .and_then(|p| p.capabilities().clone())
        .expect("capabilities")
}

fn linux(spec: &Spec) -> &Linux {
    spec.linux().as_ref().expect("linux")
}

#[test]
fn typical_container() {
    let root = rootfs();
    let input = base_input(root.path());
    let spec = gen_spec(&input);
    assert_eq!(spec.version(), OCI_VERSION);
    let p = spec.process().as_ref().expect("process");
    assert_eq!(
        p.args().clone().expect("args"),
        ["/bin/sh", "-c", "sleep 1"]
    );
    assert_eq!(
        p.env().clone().expect("env"),
        [process::DEFAULT_PATH, "HOSTNAME=web-0", "FROM_IMAGE=1"]
    );
    assert_eq!(p.cwd(), &PathBuf::from("/"));
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.user().additional_gids().clone(), Some(vec![0]));
    assert!(p.rlimits().is_none());
    assert!(p.oom_score_adj().is_none());
    assert!(p.apparmor_profile().is_none());

    let c = caps_of(&spec);
    let default: HashSet<Capability> = caps::DEFAULT.iter().copied().collect();
    assert_eq!(c.bounding().clone(), Some(default.clone()));
    assert_eq!(c.effective().clone(), Some(default.clone()));
    assert_eq!(c.permitted().clone(), Some(default));
    assert!(c.inheritable().is_none() && c.ambient().is_none());

    let root_cfg = spec.root().as_ref().expect("root");
    assert_eq!(root_cfg.path(), &root.path().to_path_buf());
    assert_eq!(root_cfg.readonly(), None);
    assert_eq!(spec.hostname().as_deref(), Some("web-0"));

    let l = linux(&spec);
    assert_eq!(
        l.cgroups_path().clone(),
        Some(PathBuf::from("/kubepods/pod-uid-1/c0ffee"))
    );
    assert_eq!(l.masked_paths().clone().expect("masked").len(), 11);
    assert_eq!(l.readonly_paths().clone().expect("ro").len(), 5);
    assert!(l.seccomp().is_none(), "Unconfined is the CRI default");
    assert!(l.devices().is_none());
    let rules = l.resources().as_ref().and_then(|r| r.devices().clone());
    assert_eq!(rules, Some(devices::default_rules()));

    let ann = spec.annotations().clone().expect("annotations");
    assert_eq!(ann[annotations::CONTAINER_TYPE], "container");
    assert_eq!(ann[annotations::SANDBOX_ID], "5and");
    assert_eq!(ann[annotations::CONTAINER_NAME], "app");
    assert_eq!(
        ann[annotations::IMAGE_NAME],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(ann[annotations::SANDBOX_NAMESPACE], "default");
}

#[test]
fn restricted_container() {
    let root = rootfs();
    let mut input = base_input(root.path());
    let sc = &mut input.container.security;
    sc.run_as_user = Some(33);
    sc.readonly_rootfs = true;
    sc.no_new_privs = true;
    sc.capabilities = Some(CapabilityChanges {
        add: vec![],
        drop: vec!["ALL".into()],
    });
    sc.seccomp = SeccompProfile::RuntimeDefault;
    sc.masked_paths = Some(vec![]);
    sc.readonly_paths = Some(vec!["/proc/sys".into()]);
    input.container.resources = Some(Resources {
        oom_score_adj: -997,
        ..Default::default()
    });
    input.host.has_cap_sys_resource = false;
    input.host.oom_score_adj = -500;
    let spec = gen_spec(&input);
    let p = spec.process().as_ref().expect("process");
    assert_eq!((p.user().uid(), p.user().gid()), (33, 33));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.oom_score_adj(), Some(-500));
    assert_eq!(caps_of(&spec).bounding().clone(), Some(HashSet::new()));
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
    let l = linux(&spec);
    assert!(l.masked_paths().is_none());
    assert_eq!(
        l.readonly_paths().clone(),
        Some(vec!["/proc/sys".to_string()])
    );
    let seccomp = l.seccomp().clone().expect("seccomp");
    let unshare_allowed = seccomp.syscalls().iter().flatten().any(|s| {
        s.action() == LinuxSeccompAction::ScmpActAllow && s.names().iter().any(|n| n == "unshare")
    });
    assert!(
        !unshare_allowed,
        "unshare must be blocked without CAP_SYS_ADMIN"
    );
    // Without any capability, chroot is not allowed either.
    assert!(
        !seccomp
            .syscalls()
            .iter()
            .flatten()
            .any(|s| s.names().iter().any(|n| n == "chroot"))
    );
}

#[test]
fn privileged_container() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.security.privileged = true;
    input.container.security.seccomp = SeccompProfile::RuntimeDefault;
    assert!(matches!(
        generate_with(&input, &FakeHost::default()),
        Err(SpecError::PrivilegedNotAllowed { .. })
    ));

    input.pod.privileged = true;
    input.host.capabilities = caps::from_bitmap(0x1fffeffffff);
    let host = FakeHost {
        host_devices: vec![device("/dev/sda", LinuxDeviceType::B, 8, 0)],
        ..Default::default()
    };
    let spec = generate_with(&input, &host).expect("generate");
    let all: HashSet<Capability> = input.host.capabilities.iter().copied().collect();
    assert_eq!(caps_of(&spec).bounding().clone(), Some(all));
    let l = linux(&spec);
    assert!(l.seccomp().is_none());
    assert!(l.masked_paths().is_none() && l.readonly_paths().is_none());
    assert_eq!(l.devices().clone().expect("devices").len(), 1);
    let rules = l
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow());
    assert!(
        !l.namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Cgroup)
    );
}

#[test]
fn apparmor_rules() {
    let root = rootfs();
    let host = FakeHost {
        apparmor_profiles: vec!["my-profile".into()],
        ..Default::default()
    };
    let run = |enabled: bool, default: Option<&str>, p: Option<AppArmorProfile>| {
        let mut input = base_input(root.path());
        input.host.apparmor_enabled = enabled;
        input.host.apparmor_default_profile = default.map(str::to_string);
        input.container.security.apparmor = p;
        generate_with(&input, &host).map(|s| {
            s.process()
                .as_ref()
                .and_then(|p| p.apparmor_profile().clone())
        })
    };
    use AppArmorProfile::*;
    assert_eq!(run(false, None, None).expect("none"), None);
    assert_eq!(
        run(false, None, Some(Unconfined)).expect("unconfined"),
        None
    );
    assert!(matches!(
        run(false, None, Some(RuntimeDefault)),
        Err(SpecError::AppArmorNotEnabled { .. })
    ));
    assert!(matches!(
        run(false, None, Some(Localhost("my-profile".into()))),
        Err(SpecError::AppArmorNotEnabled { .. })
    ));
    assert_eq!(
        run(true, Some("husk-default"), None).expect("default"),
        Some("husk-default".into())
    );
    assert_eq!(run(true, None, None).expect("no default"), None);
    assert!(matches!(
        run(true, None, Some(RuntimeDefault)),
        Err(SpecError::AppArmorNoDefault)
    ));
    assert_eq!(
        run(true, None, Some(Localhost("localhost/my-profile".into()))).expect("local"),
        Some("my-profile".into())
    );
    assert!(matches!(
        run(true, None, Some(Localhost("other".into()))),
        Err(SpecError::AppArmorProfileNotFound { .. })
    ));
}

#[test]
fn host_network_uses_node_hostname_and_host_uts() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.pod.hostname = String::new();
    input.container.security.namespaces.network = NamespaceMode::Node;
    input.namespaces.network = None;
    input.namespaces.uts = None;
    let spec = gen_spec(&input);
    assert!(spec.hostname().is_none());
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .expect("env");
    assert!(env.contains(&"HOSTNAME=node-1".to_string()));
}

#[test]
fn no_command_is_an_error() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.command.clear();
    input.container.args.clear();
    assert!(matches!(
        generate_with(&input, &FakeHost::default()),
        Err(SpecError::NoCommand)
    ));
}

#[test]
fn write_spec_round_trips() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.container.security.seccomp = SeccompProfile::RuntimeDefault;
    let spec = gen_spec(&input);
    let bundle = tempfile::tempdir().expect("bundle");
    let path = write_spec(&spec, bundle.path()).expect("write");
    assert_eq!(path, bundle.path().join("config.json"));
    assert_eq!(Spec::load(&path).expect("load"), spec);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    assert_eq!(json["ociVersion"], OCI_VERSION);
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(json["process"]["user"]["uid"], 0);
    assert!(write_spec(&spec, &bundle.path().join("missing")).is_err());
}

#[test]
fn generate_against_the_real_host() {
    let root = rootfs();
    let mut input = base_input(root.path());
    input.host = HostInfo::detect().expect("detect");
    input.container.devices = vec![DeviceSpec {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    let spec = generate(&input).expect("generate");
    let devs = linux(&spec).devices().clone().expect("devices");
    assert_eq!(devs[0].path(), &PathBuf::from("/dev/xnull"));
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_./:=+-]{0,12}",
        Just(String::new()),
        Just("/".to_string()),
        Just("ALL".to_string()),
        Just("root:root".to_string()),
    ]
}

fn mode() -> impl Strategy<Value = NamespaceMode> {
    prop_oneof![
        Just(NamespaceMode::Pod),
        Just(NamespaceMode::Container),
        Just(NamespaceMode::Node),
        Just(NamespaceMode::Target),
    ]
}

fn mount_spec() -> impl Strategy<Value = MountSpec> {
    (text(), text(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(|(c, h, ro, rro, p)| {
        MountSpec {
            container_path: c,
            host_path: h,
            readonly: ro,
            recursive_read_only: rro,
            propagation: match p {
                0 => Propagation::Private,
                1 => Propagation::HostToContainer,
                _ => Propagation::Bidirectional,
            },
        }
    })
}

fn security() -> impl Strategy<Value = SecurityContext> {
    (
        (
            proptest::option::of((
                prop::collection::vec(text(), 0..3),
                prop::collection::vec(text(), 0..3),
            )),
            any::<bool>(),
            (mode(), mode(), mode()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(-2i64..70_000),
        ),
        (
            text(),
            any::<bool>(),
            prop::collection::vec(-2i64..70_000, 0..3),
            proptest::option::of(prop::collection::vec(text(), 0..3)),
            0..3u8,
        ),
    )
        .prop_map(
            |((caps, privileged, (n, p, i), uid, gid), (name, ro, groups, masked, sec))| {
                SecurityContext {
                    capabilities: caps.map(|(add, drop)| CapabilityChanges { add, drop }),
                    privileged,
                    namespaces: NamespaceOptions {
                        network: n,
                        pid: p,
                        ipc: i,
                    },
                    run_as_user: uid,
                    run_as_group: gid,
                    run_as_username: name,
                    readonly_rootfs: ro,
                    supplemental_groups: groups,
                    masked_paths: masked,
                    seccomp: match sec {
                        0 => SeccompProfile::Unconfined,
                        1 => SeccompProfile::RuntimeDefault,
                        _ => SeccompProfile::Localhost("/nope".into()),
                    },
                    ..Default::default()
                }
            },
        )
}

fn resources() -> impl Strategy<Value = Option<Resources>> {
    proptest::option::of(
        (
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            text(),
        )
            .prop_map(|(period, quota, shares, mem, oom, cpus)| Resources {
                cpu_period: period,
                cpu_quota: quota,
                cpu_shares: shares,
                memory_limit_in_bytes: mem,
                oom_score_adj: oom,
                cpuset_cpus: cpus,
                ..Default::default()
            }),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn generate_never_panics(
        command in prop::collection::vec(text(), 0..3),
        args in prop::collection::vec(text(), 0..3),
        image_user in proptest::option::of(text()),
        entrypoint in proptest::option::of(prop::collection::vec(text(), 0..2)),
        mounts in prop::collection::vec(mount_spec(), 0..4),
        sc in security(),
        res in resources(),
        tty in any::<bool>(),
        pod_privileged in any::<bool>(),
        hostname in text(),
    ) {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.command = command;
        input.container.args = args;
        input.container.mounts = mounts;
        input.container.security = sc;
        input.container.resources = res;
        input.container.tty = tty;
        input.image.user = image_user;
        input.image.entrypoint = entrypoint;
        input.pod.privileged = pod_privileged;
        input.pod.hostname = hostname;
        let _ = generate_with(&input, &FakeHost::default());
    }
}
