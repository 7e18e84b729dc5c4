//! What a container sees: users, capabilities, seccomp, masked paths, read-only rootfs, env,
//! working dir, mounts and propagation, host namespaces — checked from inside real containers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_cri::v1 as cri;

/// Runs one container with `edit` applied to its config and returns its log lines.
async fn run_and_log(
    env: &mut Env,
    name: &str,
    handler: &str,
    cmd: &[&str],
    edit: impl FnOnce(&mut cri::ContainerConfig, &mut cri::PodSandboxConfig),
) -> (Vec<String>, i32) {
    let mut pc = env.pod_config(name);
    let mut cc = container_config("c", cmd);
    edit(&mut cc, &mut pc);
    let pod = env.run_pod(pc.clone(), handler).await.unwrap();
    let c = env.create(&pod, cc, &pc).await.unwrap();
    env.start(&c).await.unwrap();
    let s = env.wait_exited(&c).await;
    let log = env.log(&c).await;
    env.remove_pod(&pod).await;
    (log, s.exit_code)
}

fn sc(cc: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    cc.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
}

fn cap_eff(log: &[String]) -> u64 {
    let line = log
        .iter()
        .find(|l| l.starts_with("CapEff:"))
        .expect("CapEff line");
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[tokio::test]
async fn users_groups_env_and_workdir() {
    let mut env = Env::new().await;
    let as_app = husk_test_support::busybox_image(&["id"])
        .unwrap()
        .user("app")
        .build();
    push(&env.reg, "library/busybox", "as-app", &as_app).await;
    pull(&mut env.img, "busybox:as-app").await.unwrap();
    for rt in RUNTIMES {
        // default: root
        let (log, _) = run_and_log(&mut env, &format!("u0-{rt}"), rt, &["id"], |_, _| {}).await;
        assert!(
            log[0].starts_with("uid=0(root) gid=0(root)"),
            "{rt}: {log:?}"
        );
        // run_as_user + run_as_group + supplemental groups
        let (log, _) = run_and_log(&mut env, &format!("u1-{rt}"), rt, &["id"], |cc, _| {
            let s = sc(cc);
            s.run_as_user = Some(cri::Int64Value { value: 1000 });
            s.run_as_group = Some(cri::Int64Value { value: 2000 });
            s.supplemental_groups = vec![3000];
        })
        .await;
        assert!(
            log[0].starts_with("uid=1000(app) gid=2000(extra)"),
            "{rt}: {log:?}"
        );
        assert!(log[0].contains("3000"), "{rt}: {log:?}");
        // run_as_username resolved through the image's /etc/passwd and /etc/group
        let (log, _) = run_and_log(&mut env, &format!("u2-{rt}"), rt, &["id"], |cc, _| {
            sc(cc).run_as_username = "app".into();
        })
        .await;
        assert!(
            log[0].starts_with("uid=1000(app) gid=1000(app)"),
            "{rt}: {log:?}"
        );
        assert!(
            log[0].contains("2000(extra)"),
            "member of extra via /etc/group: {log:?}"
        );
        // the image's own User (a name, resolved in its /etc/passwd)
        let (log, _) = run_and_log(&mut env, &format!("img-{rt}"), rt, &["id"], |cc, _| {
            cc.image = image_spec("busybox:as-app");
        })
        .await;
        assert!(
            log[0].starts_with("uid=1000(app) gid=1000(app)"),
            "{rt}: {log:?}"
        );
        // env and working dir
        let (log, _) = run_and_log(
            &mut env,
            &format!("env-{rt}"),
            rt,
            &["sh", "-c", "echo $FOO; pwd; echo $HOSTNAME"],
            |cc, _| {
                cc.envs = vec![cri::KeyValue {
                    key: "FOO".into(),
                    value: "bar baz".into(),
                }];
                cc.working_dir = "/tmp".into();
            },
        )
        .await;
        assert_eq!(log, vec!["bar baz", "/tmp", &format!("env-{rt}")], "{rt}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn capabilities_seccomp_masked_paths_readonly_rootfs() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let status = ["sh", "-c", "grep CapEff /proc/self/status"];
        let (log, _) = run_and_log(&mut env, &format!("caps-{rt}"), rt, &status, |_, _| {}).await;
        let default = cap_eff(&log);
        // containerd's default set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
        // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
        assert_eq!(default, 0x00000000a80425fb, "{rt}: {default:x}");
        let (log, _) = run_and_log(&mut env, &format!("priv-{rt}"), rt, &status, |cc, pc| {
            sc(cc).privileged = true;
            pc.linux
                .get_or_insert_default()
                .security_context
                .get_or_insert_default()
                .privileged = true;
        })
        .await;
        let mine = u64::from_str_radix(
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find(|l| l.starts_with("CapBnd:"))
                .unwrap()
                .split_whitespace()
                .nth(1)
                .unwrap(),
            16,
        )
        .unwrap();
        assert_eq!(
            cap_eff(&log),
            mine,
            "{rt}: privileged gets the daemon's bounding set"
        );
        let (log, _) = run_and_log(&mut env, &format!("drop-{rt}"), rt, &status, |cc, _| {
            sc(cc).capabilities = Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                add_capabilities: vec!["NET_ADMIN".into()],
                ..Default::default()
            });
        })
        .await;
        assert_eq!(cap_eff(&log), 1 << 12, "{rt}: only NET_ADMIN");

        // seccomp RuntimeDefault blocks unshare; Unconfined (with SYS_ADMIN) allows it
        let (log, code) = run_and_log(
            &mut env,
            &format!("sec-{rt}"),
            rt,
            &[
                "sh",
                "-c",
                "unshare -n true && echo allowed || echo blocked",
            ],
            |cc, _| {
                sc(cc).seccomp = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                });
            },
        )
        .await;
        // (stdout and stderr are separate pipes: their lines may interleave either way)
        assert!(
            log.iter().any(|l| l == "blocked") && code == 0,
            "{rt}: {log:?}"
        );
        assert!(!log.iter().any(|l| l == "allowed"), "{rt}: {log:?}");
        let (log, _) = run_and_log(
            &mut env,
            &format!("unconf-{rt}"),
            rt,
            &[
                "sh",
                "-c",
                "unshare -n true && echo allowed || echo blocked",
            ],
            |cc, _| {
                let s = sc(cc);
                s.seccomp = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                    localhost_ref: String::new(),
                });
                s.capabilities = Some(cri::Capability {
                    add_capabilities: vec!["SYS_ADMIN".into()],
                    ..Default::default()
                });
            },
        )
        .await;
        assert!(log.iter().any(|l| l == "allowed"), "{rt}: {log:?}");

        // masked and read-only paths
        let (log, _) = run_and_log(&mut env, &format!("mask-{rt}"), rt, &["sh", "-c", "wc -c < /proc/timer_list; (echo 1 > /proc/sys/kernel/domainname) 2>/dev/null && echo rw || echo ro"], |_, _| {}).await;
        assert_eq!(log, vec!["0", "ro"], "{rt}");

        // read-only rootfs
        let (log, _) = run_and_log(&mut env, &format!("ro-{rt}"), rt, &["sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; touch /tmp/y 2>/dev/null && echo tmp-rw || echo tmp-ro"], |cc, _| {
            sc(cc).readonly_rootfs = true;
        })
        .await;
        assert_eq!(log[0], "ro", "{rt}: {log:?}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn bind_mounts_readonly_and_propagation() {
    let mut env = Env::new().await;
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("hello"), "from host\n").unwrap();
    let missing = host.path().join("created-by-husk");
    let pc = env.pod_config("mounts");
    let pod = env.run_pod(pc.clone(), "").await.unwrap();
    let mut cc = container_config(
        "c",
        &[
            "sh",
            "-c",
            "cat /data/hello; touch /data/x 2>/dev/null && echo rw || echo ro; ls -d /made; sleep 3; ls /data/sub",
        ],
    );
    let src = host.path().display().to_string();
    // The host dir must be a shared or slave mount for HostToContainer propagation.
    std::process::Command::new("mount")
        .args(["--bind", &src, &src])
        .status()
        .unwrap();
    std::process::Command::new("mount")
        .args(["--make-shared", &src])
        .status()
        .unwrap();
    cc.mounts = vec![
        cri::Mount {
            container_path: "/data".into(),
            host_path: src.clone(),
            readonly: true,
            propagation: cri::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        },
        cri::Mount {
            container_path: "/made".into(),
            host_path: missing.display().to_string(),
            ..Default::default()
        },
    ];
    let c = env.create(&pod, cc, &pc).await.unwrap();
    env.start(&c).await.unwrap();
    assert!(
        missing.is_dir(),
        "a missing host path is created as a directory"
    );
    // A mount made on the host after start propagates into the container (rslave).
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    std::fs::create_dir_all(host.path().join("sub")).unwrap();
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(host.path().join("sub"))
        .status()
        .unwrap();
    std::fs::write(host.path().join("sub/propagated"), "x").unwrap();
    env.wait_exited(&c).await;
    let log = env.log(&c).await;
    let _ = std::process::Command::new("umount")
        .arg(host.path().join("sub"))
        .status();
    let _ = std::process::Command::new("umount").arg(&src).status();
    assert_eq!(log[0], "from host");
    assert_eq!(log[1], "ro");
    assert_eq!(log[2], "/made");
    assert_eq!(log[3], "propagated", "{log:?}");
    env.teardown().await;
}

#[tokio::test]
async fn hostname_defaults_to_the_nodes_and_is_bounded() {
    let mut env = Env::new().await;
    let node = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    // critest's pod names run to 68 characters, over the kernel's 64: an empty hostname means
    // the node's, in the pod's own UTS namespace (as containerd and CRI-O do)
    let long = format!("pod-{}", "x".repeat(64));
    let (log, code) = run_and_log(
        &mut env,
        &long,
        "",
        &[
            "sh",
            "-c",
            "hostname; cat /etc/hostname; readlink /proc/self/ns/uts",
        ],
        |_, pc| pc.hostname.clear(),
    )
    .await;
    assert_eq!(code, 0, "{log:?}");
    assert_eq!(&log[..2], &[node.clone(), node.clone()], "{log:?}");
    let host_uts = std::fs::read_link("/proc/self/ns/uts").unwrap();
    assert_ne!(log[2], host_uts.display().to_string(), "own UTS namespace");
    // a hostname the kernel cannot take is the caller's error, not an internal one
    let mut pc = env.pod_config("longhost");
    pc.hostname = "h".repeat(65);
    let err = env.run_pod(pc, "").await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("hostname"), "{err}");
    let mut pc = env.pod_config("maxhost");
    pc.hostname = "h".repeat(64);
    let pod = env.run_pod(pc, "").await.unwrap();
    env.remove_pod(&pod).await;
    env.teardown().await;
}

#[tokio::test]
async fn host_namespaces() {
    let mut env = Env::new().await;
    let my_net = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let (log, _) = run_and_log(
        &mut env,
        "hostnet",
        "",
        &["sh", "-c", "readlink /proc/self/ns/net; hostname"],
        |cc, pc| {
            let opts = cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..kubelet_namespaces()
            };
            pc.linux
                .get_or_insert_default()
                .security_context
                .get_or_insert_default()
                .namespace_options = Some(opts.clone());
            sc(cc).namespace_options = Some(opts);
            pc.hostname.clear();
        },
    )
    .await;
    assert_eq!(log[0], my_net);
    assert_eq!(log[1], rustix::system::uname().nodename().to_string_lossy());
    let (log, _) = run_and_log(
        &mut env,
        "ownnet",
        "",
        &["readlink", "/proc/self/ns/net"],
        |_, _| {},
    )
    .await;
    assert_ne!(log[0], my_net);
    // host pid namespace: pid 1 is the host's init
    let (log, _) = run_and_log(
        &mut env,
        "hostpid",
        "",
        &["sh", "-c", "cat /proc/1/comm; echo $$"],
        |cc, _| {
            sc(cc).namespace_options = Some(cri::NamespaceOption {
                pid: cri::NamespaceMode::Node as i32,
                ..kubelet_namespaces()
            });
        },
    )
    .await;
    assert_ne!(log[1], "1", "not pid 1 in the host pid namespace: {log:?}");
    let (log, _) = run_and_log(&mut env, "ownpid", "", &["sh", "-c", "echo $$"], |_, _| {}).await;
    assert_eq!(log[0], "1");
    env.teardown().await;
}
