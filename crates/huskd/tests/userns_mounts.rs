//! Pods with their own user namespace and recursive read-only volumes, on runc and crun,
//! through the real daemon. Neither runtime (runc 1.1, crun 1.8) makes idmapped mounts or, for
//! crun, recursive read-only ones: husk stages both itself.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::*;
use k8s_cri::v1 as cri;

const HANDLERS: [&str; 2] = ["runc", "crun"];

fn mapping(host_id: u32) -> Vec<cri::IdMapping> {
    vec![cri::IdMapping {
        container_id: 0,
        host_id,
        length: 65536,
    }]
}

fn userns_options(host_id: u32) -> cri::NamespaceOption {
    cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: mapping(host_id),
            gids: mapping(host_id),
        }),
        // the conformance suite's pods share their PID namespace (mode POD is 0)
        pid: cri::NamespaceMode::Pod as i32,
        ..kubelet_namespaces()
    }
}

fn set_namespaces(
    pc: &mut cri::PodSandboxConfig,
    cc: &mut cri::ContainerConfig,
    o: cri::NamespaceOption,
) {
    pc.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .namespace_options = Some(o.clone());
    cc.linux
        .get_or_insert_default()
        .security_context
        .get_or_insert_default()
        .namespace_options = Some(o);
}

fn mount(host: &Path, container: &str, readonly: bool, rro: bool) -> cri::Mount {
    cri::Mount {
        container_path: container.into(),
        host_path: host.display().to_string(),
        readonly,
        recursive_read_only: rro,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_pod_in_its_own_user_namespace_on_runc_and_crun() {
    let mut env = Env::new().await;
    let st = env
        .rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    for h in HANDLERS {
        let f = st
            .runtime_handlers
            .iter()
            .find(|r| r.name == h)
            .and_then(|r| r.features.as_ref())
            .unwrap_or_else(|| panic!("handler {h} listed: {st:?}"));
        assert!(f.user_namespaces, "{h}: {f:?}");
        assert!(f.recursive_read_only_mounts, "{h}: {f:?}");
    }
    let host_userns = std::fs::read_link("/proc/self/ns/user").unwrap();
    for (i, h) in HANDLERS.into_iter().enumerate() {
        let base = 200_000 + 100_000 * i as u32;
        let vol = tempfile::tempdir().unwrap();
        std::fs::write(vol.path().join("owned-by-root"), "x").unwrap();
        let mut pc = env.pod_config(&format!("userns-{h}"));
        let mut cc = container_config(
            "c",
            &[
                "sh",
                "-c",
                "cat /proc/self/uid_map; readlink /proc/self/ns/user; \
                 stat -c %u:%g / /etc/passwd /vol/owned-by-root; \
                 touch /written && echo hi > /vol/new && id -u; ls /sys/class/net",
            ],
        );
        set_namespaces(&mut pc, &mut cc, userns_options(base));
        cc.mounts.push(mount(vol.path(), "/vol", false, false));
        let pod = env.run_pod(pc.clone(), h).await.unwrap();
        let c = env.create(&pod, cc, &pc).await.unwrap();
        env.start(&c).await.unwrap();
        let s = env.wait_exited(&c).await;
        let log = env.log(&c).await;
        assert_eq!(s.exit_code, 0, "{h}: {log:?}");
        let words: Vec<&str> = log[0].split_whitespace().collect();
        assert_eq!(words, ["0", &base.to_string(), "65536"], "{h}: {log:?}");
        assert_ne!(
            log[1],
            host_userns.display().to_string(),
            "{h}: own user namespace"
        );
        // the image's and the volume's root-owned files are the container root's
        assert_eq!(&log[2..5], ["0:0", "0:0", "0:0"], "{h}: {log:?}");
        assert_eq!(log[5], "0", "{h}: {log:?}");
        assert!(
            log.contains(&"lo".to_string()),
            "{h}: /sys mounted in the pod's netns: {log:?}"
        );
        // what the container wrote: in its writable layer as the mapped root; through the
        // idmapped volume as the host's root
        let upper = env.h.root_dir().join("rw").join(&c).join("upper/written");
        let m = std::fs::metadata(&upper).unwrap();
        assert_eq!((m.uid(), m.gid()), (base, base), "{h}: {}", upper.display());
        let m = std::fs::metadata(vol.path().join("new")).unwrap();
        assert_eq!((m.uid(), m.gid()), (0, 0), "{h}");
        // the pins, the idmapped layers and the staged volume are gone with the pod
        env.remove_pod(&pod).await;
        assert_no_leaks(&env.h, &[c]);
    }
    env.teardown().await;
}

#[tokio::test]
async fn recursive_read_only_volumes_on_runc_and_crun() {
    let mut env = Env::new().await;
    for h in HANDLERS {
        let vol = tempfile::tempdir().unwrap();
        let sub = vol.path().join("tmpfs");
        std::fs::create_dir(&sub).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&sub)
            .status()
            .unwrap();
        assert!(st.success());
        let mut pc = env.pod_config(&format!("rro-{h}"));
        pc.hostname = format!("rro-{h}");
        let mut cc = container_config(
            "c",
            &[
                "sh",
                "-c",
                "touch /ro/tmpfs/f 2>&1; touch /nonrec/tmpfs/f && echo writable; sleep 30",
            ],
        );
        cc.mounts.push(mount(vol.path(), "/ro", true, true));
        cc.mounts.push(mount(vol.path(), "/nonrec", true, false));
        let pod = env.run_pod(pc.clone(), h).await.unwrap();
        let c = env.create(&pod, cc, &pc).await.unwrap();
        env.start(&c).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let log = loop {
            let log = env.log(&c).await;
            if log.len() >= 2 || std::time::Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert!(log[0].contains("Read-only file system"), "{h}: {log:?}");
        assert_eq!(
            log[1], "writable",
            "{h}: a plain ro bind is not recursive: {log:?}"
        );
        // nothing of husk's pins the volume: its owner can take it apart while the container
        // runs (what the conformance suite does)
        let st = std::process::Command::new("umount")
            .arg(&sub)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::remove_dir(&sub).unwrap();
        env.remove_pod(&pod).await;
        assert_no_leaks(&env.h, &[c]);
    }
    // a recursive read-only mount that is writable or propagates is refused
    let mut pc = env.pod_config("rro-bad");
    pc.hostname = "rro-bad".into();
    let pod = env.run_pod(pc.clone(), "crun").await.unwrap();
    let vol = tempfile::tempdir().unwrap();
    let mut cc = container_config("c", &["true"]);
    cc.mounts.push(mount(vol.path(), "/ro", false, true));
    let err = env.create(&pod, cc, &pc).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    env.remove_pod(&pod).await;
    env.teardown().await;
}
