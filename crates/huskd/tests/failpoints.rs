//! Crash safety, step by step: for every failpoint of the lifecycle operations huskd runs with
//! it set to `abort`, the operation is driven until the daemon dies there, huskd starts again
//! without it, and then the pod or container is complete or gone, and once everything still
//! listed is removed through the CRI nothing is left on the host: mounts, namespace pins, IP
//! reservations, veths, NAT rules, cgroups, processes, runtime state. Pods use a real bridge
//! network with host-local IPAM and a host port (portmap) and a pod-shared PID namespace (a
//! `pause` init), on runc and on crun; some cases run in a pod with its own user namespace and a
//! volume (pinned user namespace, staged idmapped mounts, idmapped layers). Also: failpoints set
//! to `error` roll back in place, a half-made pod whose undo cannot finish (CNI DEL failing) is
//! listed NOTREADY for the kubelet to clean, and a pod whose record is torn on disk is swept at
//! start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use common::*;
use k8s_cri::v1 as cri;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    RunPod,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    StopPod,
    RemovePod,
}

/// What the restarted daemon must show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    PodGone,
    PodNotReady,
    ContainerGone,
    Created,
    Running,
    Exited,
}

use After::*;
use Op::*;

/// Every failpoint, the operation that reaches it and what is left after the restart.
const CASES: &[(&str, Op, After)] = &[
    ("sandbox.after_name", RunPod, PodGone),
    ("sandbox.after_intent", RunPod, PodGone),
    ("sandbox.after_pins", RunPod, PodGone),
    ("sandbox.after_infra", RunPod, PodGone),
    ("sandbox.after_cni_add", RunPod, PodGone),
    ("sandbox.before_persist", RunPod, PodGone),
    ("container.after_name", CreateContainer, ContainerGone),
    ("container.after_intent", CreateContainer, ContainerGone),
    ("container.after_rootfs", CreateContainer, ContainerGone),
    ("container.after_create", CreateContainer, ContainerGone),
    ("container.before_persist", CreateContainer, ContainerGone),
    ("container.start.after_intent", StartContainer, Created),
    ("container.start.after_runtime", StartContainer, Running),
    ("container.stop.after_signal", StopContainer, Exited),
    (
        "container.remove.after_intent",
        RemoveContainer,
        ContainerGone,
    ),
    (
        "container.remove.after_delete",
        RemoveContainer,
        ContainerGone,
    ),
    (
        "container.remove.after_unmount",
        RemoveContainer,
        ContainerGone,
    ),
    ("sandbox.stop.after_intent", StopPod, PodNotReady),
    ("sandbox.stop.after_cni_del", StopPod, PodNotReady),
    ("sandbox.stop.after_unpin", StopPod, PodNotReady),
    ("sandbox.remove.after_intent", RemovePod, PodGone),
    ("sandbox.remove.after_release", RemovePod, PodGone),
];

/// Failpoints also run in a pod with its own user namespace and a volume.
const USERNS_CASES: &[&str] = &[
    "sandbox.after_infra",
    "sandbox.after_cni_add",
    "container.after_create",
    "container.before_persist",
];

const FAILPOINTS: &str = "HUSK_FAILPOINTS";

/// A host port for case `n` of this process.
fn host_port(n: usize) -> u16 {
    40000 + (std::process::id() % 300) as u16 * 80 + n as u16
}

fn with_userns(
    pc: &mut cri::PodSandboxConfig,
    cc: &mut cri::ContainerConfig,
    vol: &std::path::Path,
) {
    let map = vec![cri::IdMapping {
        container_id: 0,
        host_id: 300_000,
        length: 65536,
    }];
    let o = cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: map.clone(),
            gids: map,
        }),
        pid: cri::NamespaceMode::Pod as i32,
        ..kubelet_namespaces()
    };
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
    cc.mounts.push(cri::Mount {
        container_path: "/vol".into(),
        host_path: vol.display().to_string(),
        ..Default::default()
    });
}

/// Restarts huskd with `failpoints` (None: without) and reconnects.
async fn restart_with(env: &mut Env, failpoints: Option<String>) {
    let opts = env.h.options_mut();
    opts.env.retain(|(k, _)| k != FAILPOINTS);
    if let Some(fp) = failpoints {
        opts.env.push((FAILPOINTS.into(), fp));
    }
    if env.h.pid().is_some() {
        env.h.restart().unwrap();
    } else {
        env.h.start_again().unwrap();
    }
    env.rt = env.h.runtime_client().await.unwrap();
}

async fn pods(env: &mut Env) -> Vec<cri::PodSandbox> {
    env.rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items
}

async fn containers(env: &mut Env) -> Vec<cri::Container> {
    env.rt
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers
}

/// One failpoint: drive `op` until huskd aborts there, restart, check, clean, check the host.
async fn crash_case(
    env: &mut Env,
    net: &CrashNet,
    handler: &str,
    (fp, op, after): (&str, Op, After),
    userns: bool,
    n: usize,
) {
    let what = format!("{handler} {fp}{}", if userns { " (userns)" } else { "" });
    let started = Instant::now();
    restart_with(env, Some(format!("{fp}=abort"))).await;
    let vol = tempfile::tempdir().unwrap();
    let mut pc = net.pod_config(env, &format!("fp{n}"), Some(host_port(n)));
    let mut cc = container_config("c", &["sleep", "1000"]);
    if userns {
        with_userns(&mut pc, &mut cc, vol.path());
    }
    let pod = if op > RunPod {
        Some(env.run_pod(pc.clone(), handler).await.unwrap())
    } else {
        None
    };
    let ctr = if op > CreateContainer {
        Some(
            env.create(pod.as_deref().unwrap(), cc.clone(), &pc)
                .await
                .unwrap(),
        )
    } else {
        None
    };
    if matches!(op, StopContainer | RemoveContainer | StopPod | RemovePod) {
        env.start(ctr.as_deref().unwrap()).await.unwrap();
    }
    if op == RemoveContainer {
        env.rt
            .stop_container(cri::StopContainerRequest {
                container_id: ctr.clone().unwrap(),
                timeout: 0,
            })
            .await
            .unwrap();
    }
    let (pod_id, ctr_id) = (
        pod.clone().unwrap_or_default(),
        ctr.clone().unwrap_or_default(),
    );
    let r = match op {
        RunPod => env.run_pod(pc.clone(), handler).await.map(drop),
        CreateContainer => env.create(&pod_id, cc.clone(), &pc).await.map(drop),
        StartContainer => env.start(&ctr_id).await,
        StopContainer => env
            .rt
            .stop_container(cri::StopContainerRequest {
                container_id: ctr_id.clone(),
                timeout: 0,
            })
            .await
            .map(drop),
        RemoveContainer => env
            .rt
            .remove_container(cri::RemoveContainerRequest {
                container_id: ctr_id.clone(),
            })
            .await
            .map(drop),
        StopPod => env
            .rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .map(drop),
        RemovePod => env
            .rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            })
            .await
            .map(drop),
    };
    assert!(
        r.is_err(),
        "{what}: the operation succeeded: failpoint not reached"
    );
    let st = env
        .h
        .wait_exit(Duration::from_secs(20))
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: huskd still runs after the failed RPC"));
    assert_eq!(st.signal(), Some(6), "{what}: huskd did not abort: {st}");
    if matches!(fp, "sandbox.after_cni_add" | "sandbox.before_persist") {
        assert_eq!(
            net.reservations().len(),
            1,
            "{what}: ADD ran before the crash"
        );
        assert!(
            !net.nat_rules().is_empty(),
            "{what}: DNAT set up before the crash"
        );
    }

    restart_with(env, None).await;
    let ps = pods(env).await;
    let cs = containers(env).await;
    match after {
        PodGone => assert!(ps.is_empty(), "{what}: pods after restart: {ps:?}"),
        PodNotReady => {
            assert_eq!(ps.len(), 1, "{what}: {ps:?}");
            assert_eq!(
                ps[0].state,
                cri::PodSandboxState::SandboxNotready as i32,
                "{what}"
            );
            assert!(
                net.reservations().is_empty(),
                "{what}: the stop finished (CNI DEL)"
            );
            assert!(
                cs.iter()
                    .all(|c| c.state == cri::ContainerState::ContainerExited as i32),
                "{what}: {cs:?}"
            );
        }
        ContainerGone => {
            assert_eq!(ps.len(), 1, "{what}: the pod stays: {ps:?}");
            assert_eq!(
                ps[0].state,
                cri::PodSandboxState::SandboxReady as i32,
                "{what}"
            );
            assert!(cs.is_empty(), "{what}: containers after restart: {cs:?}");
        }
        Created | Running | Exited => {
            assert_eq!(cs.len(), 1, "{what}: {cs:?}");
            let want = match after {
                Created => cri::ContainerState::ContainerCreated,
                Running => cri::ContainerState::ContainerRunning,
                _ => cri::ContainerState::ContainerExited,
            };
            let s = env.status(&ctr_id).await;
            assert_eq!(s.state, want as i32, "{what}: {s:?}");
            if after == Exited {
                assert_eq!(
                    s.exit_code, 137,
                    "{what}: SIGKILLed during the outage: {s:?}"
                );
            }
            if after == Created {
                // Complete: it can still be started.
                env.start(&ctr_id).await.unwrap();
            }
        }
    }
    CrashNet::remove_all(&mut env.rt).await;
    let leaks = net.leaks(&env.h);
    assert!(leaks.is_empty(), "{what}: left on the host: {leaks:#?}");
    eprintln!(
        "failpoint {what}: survived, nothing leaked ({} ms)",
        started.elapsed().as_millis()
    );
}

async fn every_failpoint(handler: &str, slot: u32) {
    if !crash_test_system() {
        return;
    }
    let mut env = Env::new().await;
    let net = CrashNet::new(slot);
    net.install(&env.h);
    let mut n = 0;
    for case in CASES {
        crash_case(&mut env, &net, handler, *case, false, n).await;
        n += 1;
    }
    for fp in USERNS_CASES {
        let case = CASES.iter().find(|c| c.0 == *fp).copied().unwrap();
        crash_case(&mut env, &net, handler, case, true, n).await;
        n += 1;
    }
    eprintln!("{handler}: {n} failpoint cases survived, 0 leaks");
    drop(env);
}

#[tokio::test]
async fn every_failpoint_on_runc() {
    every_failpoint("runc", 0).await;
}

#[tokio::test]
async fn every_failpoint_on_crun() {
    every_failpoint("crun", 1).await;
}

/// `error` instead of `abort`: the operation fails and its rollback (the same undo recovery
/// uses) leaves nothing, without a restart.
#[tokio::test]
async fn failpoints_that_fail_roll_back_in_place() {
    if !crash_test_system() {
        return;
    }
    let mut env = Env::new().await;
    let net = CrashNet::new(2);
    net.install(&env.h);
    let fps = [
        "sandbox.after_pins",
        "sandbox.after_cni_add",
        "sandbox.before_persist",
        "container.after_rootfs",
        "container.after_create",
        "container.before_persist",
    ];
    restart_with(
        &mut env,
        Some(
            fps.iter()
                .map(|f| format!("{f}=error"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
    )
    .await;
    for (i, handler) in RUNTIMES.into_iter().enumerate() {
        let pc = net.pod_config(&env, &format!("err-{handler}"), Some(host_port(70 + i)));
        let e = env.run_pod(pc.clone(), handler).await.unwrap_err();
        assert!(
            e.message().contains("failpoint sandbox.after_pins"),
            "{e:?}"
        );
        assert!(pods(&mut env).await.is_empty());
        let leaks = net.leaks(&env.h);
        assert!(
            leaks.is_empty(),
            "{handler}: after a failed RunPodSandbox: {leaks:#?}"
        );
    }
    // Without the pod failpoints, the container ones.
    restart_with(
        &mut env,
        Some(
            fps[3..]
                .iter()
                .map(|f| format!("{f}=error"))
                .collect::<Vec<_>>()
                .join(";"),
        ),
    )
    .await;
    for (i, handler) in RUNTIMES.into_iter().enumerate() {
        let pc = net.pod_config(&env, &format!("err2-{handler}"), Some(host_port(72 + i)));
        let pod = env.run_pod(pc.clone(), handler).await.unwrap();
        let e = env
            .create(&pod, container_config("c", &["sleep", "1000"]), &pc)
            .await
            .unwrap_err();
        assert!(
            e.message().contains("failpoint container.after_rootfs"),
            "{e:?}"
        );
        assert!(containers(&mut env).await.is_empty());
        // The name is free again: the kubelet's retry can succeed once the failpoint is off.
        CrashNet::remove_all(&mut env.rt).await;
    }
    let leaks = net.leaks(&env.h);
    assert!(
        leaks.is_empty(),
        "after failed CreateContainers: {leaks:#?}"
    );
}

/// Records torn on disk are moved aside at start (store behaviour); the sweep then finds what
/// they named and no record names any more, and removes it: for a pod its pins, `/dev/shm`, CNI
/// attachment and `pause` init; for a container (crun here) the runtime's container, its
/// monitor, its rootfs and dirs.
#[tokio::test]
async fn objects_of_torn_records_are_swept_at_start() {
    if !crash_test_system() {
        return;
    }
    let mut env = Env::new().await;
    let net = CrashNet::new(3);
    net.install(&env.h);
    let pc = net.pod_config(&env, "torn", Some(host_port(75)));
    let pod = env.run_pod(pc.clone(), "runc").await.unwrap();
    let c = env
        .create(&pod, container_config("c", &["sleep", "1000"]), &pc)
        .await
        .unwrap();
    env.start(&c).await.unwrap();
    let pc2 = net.pod_config(&env, "intact", Some(host_port(77)));
    let pod2 = env.run_pod(pc2.clone(), "crun").await.unwrap();
    let c2 = env
        .create(&pod2, container_config("c", &["sleep", "1000"]), &pc2)
        .await
        .unwrap();
    env.start(&c2).await.unwrap();
    assert_eq!(net.reservations().len(), 2);
    assert!(!net.nat_rules().is_empty());
    env.h.kill().unwrap();
    let tear = |store: &str, id: &str| {
        let rec = env.h.root_dir().join(store).join(format!("{id}.json"));
        let data = std::fs::read(&rec).unwrap();
        std::fs::write(&rec, &data[..data.len() / 2]).unwrap();
        rec
    };
    let (rec, rec2) = (tear("sandboxes", &pod), tear("containers", &c2));
    restart_with(&mut env, None).await;
    let ps = pods(&mut env).await;
    assert!(
        ps.len() == 1 && ps[0].id == pod2,
        "only the intact pod is listed: {ps:?}"
    );
    assert_eq!(net.reservations().len(), 1, "the torn pod's IP went back");
    assert!(
        net.nat_rules().iter().all(|r| !r.contains(&pod)),
        "its DNAT rules are gone"
    );
    assert_eq!(net.veths().len(), 1, "its veth is gone");
    let pod_dir = env.h.state_dir().join("pods").join(&pod);
    assert!(!pod_dir.exists(), "its pins and /dev/shm are gone");
    assert!(
        env.h.mounts().iter().all(|m| !m.starts_with(&pod_dir)),
        "{:?}",
        env.h.mounts()
    );
    assert!(
        containers(&mut env).await.iter().all(|x| x.id != c2),
        "the torn container is not listed"
    );
    let bundle = env.h.state_dir().join("containers").join(&c2);
    assert!(!bundle.exists(), "its bundle and rootfs are gone");
    assert!(env.h.processes().iter().all(|p| {
        let cmd = std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
        !cmd.contains(&c2)
    }));
    let log = env.h.log();
    assert!(log.contains("moved aside"), "the sweep says why");
    // The torn pod's container is still listed (its pod's init took its process down): the
    // kubelet removes it, and the intact pod.
    CrashNet::remove_all(&mut env.rt).await;
    let leaks = net.leaks(&env.h);
    assert!(leaks.is_empty(), "left on the host: {leaks:#?}");
    for r in [rec, rec2] {
        assert!(
            r.with_extension("corrupt").exists(),
            "the torn record stays for a human"
        );
    }
}

/// A half-made pod whose undo cannot finish at restart (its CNI DEL fails) is listed NOTREADY,
/// as containerd does, and the kubelet's StopPodSandbox and RemovePodSandbox clean it up once
/// DEL works again.
#[tokio::test]
async fn a_half_made_pod_that_cannot_be_undone_is_listed_notready() {
    if !crash_test_system() || !husk_test_support::require_system("jq") {
        return;
    }
    // The last plugin of the list passes ADD's result on and refuses DEL while `flag` exists
    // (DEL runs the list in reverse: it is first, so nothing else is deleted either).
    let plugins = tempfile::tempdir().unwrap();
    let flag = plugins.path().join("fail-del");
    husk_test_support::write_executable(
        &plugins.path().join("husk-flaky"),
        format!(
            "#!/bin/sh\ncase \"$CNI_COMMAND\" in\n\
             VERSION) cat >/dev/null; echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\"]}}';;\n\
             ADD) jq -c .prevResult;;\n\
             DEL) cat >/dev/null; if [ -e {flag} ]; then echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"DEL refused\"}}'; exit 1; fi;;\n\
             *) cat >/dev/null;;\n\
             esac\n",
            flag = flag.display()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut env = Env::with_config(&format!(
        "[cni]\nbin_dirs = [\"{}\", \"/usr/lib/cni\"]\n",
        plugins.path().display()
    ))
    .await;
    let net = CrashNet::new(5);
    net.install(&env.h);
    let mut list: serde_json::Value = serde_json::from_str(&net.conflist()).unwrap();
    list["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "husk-flaky"}));
    std::fs::write(
        env.h.cni_dir().join("net.d/10-crash.conflist"),
        list.to_string(),
    )
    .unwrap();
    restart_with(&mut env, Some("sandbox.before_persist=abort".into())).await;
    std::fs::write(&flag, "").unwrap();
    let pc = net.pod_config(&env, "stuck", Some(host_port(76)));
    assert!(env.run_pod(pc.clone(), "runc").await.is_err());
    let st = env.h.wait_exit(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(st.signal(), Some(6), "{st}");

    restart_with(&mut env, None).await;
    let ps = pods(&mut env).await;
    assert_eq!(ps.len(), 1, "the pod is listed: {ps:?}");
    assert_eq!(ps[0].state, cri::PodSandboxState::SandboxNotready as i32);
    let e = env
        .rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: ps[0].id.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("DEL refused"), "{e:?}");
    assert_eq!(net.reservations().len(), 1, "DEL has not run yet");
    std::fs::remove_file(&flag).unwrap();
    CrashNet::remove_all(&mut env.rt).await;
    let leaks = net.leaks(&env.h);
    assert!(leaks.is_empty(), "left on the host: {leaks:#?}");
}
