//! Pods and containers for real: lifecycle, logs, exit codes, stop escalation, ExecSync, on runc
//! and crun, against the real daemon. Every test ends by checking nothing leaked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use k8s_cri::v1 as cri;
use tonic::Code;

#[tokio::test]
async fn lifecycle_logs_and_exit_codes_on_both_runtimes() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        // exit 0 with stdout and stderr
        let (_, ok) = env
            .run(
                &format!("ok-{rt}"),
                rt,
                &["sh", "-c", "echo out; echo err >&2; exit 0"],
            )
            .await;
        let s = env.wait_exited(&ok).await;
        assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{rt}");
        assert!(s.started_at > 0 && s.finished_at >= s.started_at);
        let log = std::fs::read_to_string(&s.log_path).unwrap();
        assert!(log.contains(" stdout F out\n"), "{rt}: {log}");
        assert!(log.contains(" stderr F err\n"), "{rt}: {log}");

        // exit 3
        let (_, three) = env
            .run(&format!("three-{rt}"), rt, &["sh", "-c", "exit 3"])
            .await;
        let s = env.wait_exited(&three).await;
        assert_eq!((s.exit_code, s.reason.as_str()), (3, "Error"), "{rt}");

        // SIGTERM on stop → 143; a process ignoring it is SIGKILLed after the timeout → 137
        // (PID 1 ignores signals it has no handler for, so the shell installs one)
        let (_, term) = env
            .run(
                &format!("term-{rt}"),
                rt,
                &[
                    "sh",
                    "-c",
                    "trap 'exit 143' TERM; while true; do sleep 0.2; done",
                ],
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        env.rt
            .stop_container(cri::StopContainerRequest {
                container_id: term.clone(),
                timeout: 10,
            })
            .await
            .unwrap();
        assert_eq!(env.status(&term).await.exit_code, 143, "{rt}");

        let (_, stubborn) = env
            .run(
                &format!("stubborn-{rt}"),
                rt,
                &[
                    "sh",
                    "-c",
                    "trap '' TERM; echo ready; while true; do sleep 1; done",
                ],
            )
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let t0 = std::time::Instant::now();
        env.rt
            .stop_container(cri::StopContainerRequest {
                container_id: stubborn.clone(),
                timeout: 2,
            })
            .await
            .unwrap();
        let waited = t0.elapsed();
        assert!(
            waited >= std::time::Duration::from_secs(2),
            "{rt}: waited {waited:?}"
        );
        let s = env.status(&stubborn).await;
        assert_eq!(s.exit_code, 137, "{rt}");
        assert_eq!(s.state, cri::ContainerState::ContainerExited as i32);
        // stop and remove are idempotent
        for _ in 0..2 {
            env.rt
                .stop_container(cri::StopContainerRequest {
                    container_id: stubborn.clone(),
                    timeout: 0,
                })
                .await
                .unwrap();
        }
        for _ in 0..2 {
            env.rt
                .remove_container(cri::RemoveContainerRequest {
                    container_id: stubborn.clone(),
                })
                .await
                .unwrap();
        }
        // ... even after the removal, and for ids that never existed (as the kubelet expects)
        for id in [stubborn.clone(), "0123456789abcdef-unknown".to_string()] {
            env.rt
                .stop_container(cri::StopContainerRequest {
                    container_id: id,
                    timeout: 0,
                })
                .await
                .unwrap();
        }
        let err = env
            .rt
            .container_status(cri::ContainerStatusRequest {
                container_id: stubborn,
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    env.teardown().await;
}

#[tokio::test]
async fn exec_sync_output_exit_code_and_timeouts() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("exec-{rt}"), rt, &["sleep", "1000"]).await;
        let r = env
            .exec(&c, &["sh", "-c", "echo hello; echo oops >&2; exit 7"], 10)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"hello\n", "{rt}");
        assert_eq!(r.stderr, b"oops\n");
        assert_eq!(r.exit_code, 7);

        // timeout: the command is killed and the call returns promptly
        let t0 = std::time::Instant::now();
        let err = env.exec(&c, &["sleep", "100"], 1).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded, "{rt}: {err:?}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(8),
            "{rt}: {:?}",
            t0.elapsed()
        );

        // a background child keeping stdout open does not hold the call
        let t0 = std::time::Instant::now();
        let r = env
            .exec(&c, &["sh", "-c", "sleep 100 & echo done"], 10)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"done\n", "{rt}");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(5),
            "{rt}: {:?}",
            t0.elapsed()
        );

        // output is captured in full (1 MiB)
        let r = env
            .exec(&c, &["sh", "-c", "head -c 1048576 /dev/zero"], 10)
            .await
            .unwrap();
        assert_eq!(r.stdout.len(), 1 << 20);

        let err = env.exec(&c, &[], 1).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    env.teardown().await;
}

#[tokio::test]
async fn bad_requests_get_clear_errors_and_leave_nothing() {
    let mut env = Env::new().await;
    // missing metadata
    let mut pc = env.pod_config("bad");
    pc.metadata.as_mut().unwrap().uid.clear();
    let err = env.run_pod(pc, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("uid"), "{}", err.message());
    // unknown handler
    let err = env.run_pod(env.pod_config("h"), "kata").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("kata"), "{}", err.message());
    // duplicate name names the holder
    let pc = env.pod_config("dup");
    let pod = env.run_pod(pc.clone(), "").await.unwrap();
    let err = env.run_pod(pc.clone(), "").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&pod), "{}", err.message());
    // unknown image
    let mut cc = container_config("c", &["true"]);
    cc.image = image_spec("nothere:1");
    let err = env.create(&pod, cc, &pc).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("nothere:1"), "{}", err.message());
    // duplicate container name
    let c = env
        .create(&pod, container_config("c", &["true"]), &pc)
        .await
        .unwrap();
    let err = env
        .create(&pod, container_config("c", &["true"]), &pc)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&c));
    // log path escaping the log directory
    let mut cc = container_config("esc", &["true"]);
    cc.log_path = "../../etc/evil.log".into();
    let err = env.create(&pod, cc, &pc).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // unknown ids
    let err = env.start("0123456789abcdef").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = env
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "nope".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    env.rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: "nope".into(),
        })
        .await
        .unwrap();
    env.rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: "nope".into(),
        })
        .await
        .unwrap();
    env.rt
        .remove_container(cri::RemoveContainerRequest {
            container_id: "nope".into(),
        })
        .await
        .unwrap();
    // a container in a stopped pod cannot be created
    env.rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap();
    let err = env
        .create(&pod, container_config("late", &["true"]), &pc)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    env.teardown().await;
}

#[tokio::test]
async fn pod_status_list_filters_and_files() {
    let mut env = Env::new().await;
    let mut pc = env.pod_config("web");
    pc.labels.insert("app".into(), "web".into());
    pc.dns_config = Some(cri::DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    pc.linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.ip_unprivileged_port_start".into(), "80".into());
    let pod = env.run_pod(pc.clone(), "").await.unwrap();
    let other = env.run_pod(env.pod_config("other"), "").await.unwrap();
    let c = env
        .create(&pod, container_config("main", &["sh", "-c", "hostname; cat /etc/resolv.conf; cat /proc/sys/net/ipv4/ip_unprivileged_port_start; ls /sys/class/net"]), &pc)
        .await
        .unwrap();
    env.start(&c).await.unwrap();
    env.wait_exited(&c).await;
    let log = env.log(&c).await;
    assert_eq!(log[0], "web");
    assert!(
        log.contains(&"nameserver 10.96.0.10".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"search default.svc.cluster.local".to_string()),
        "{log:?}"
    );
    assert!(log.contains(&"options ndots:5".to_string()), "{log:?}");
    assert!(log.contains(&"80".to_string()), "{log:?}");
    assert_eq!(log.last().unwrap(), "lo", "own netns with only lo: {log:?}");

    let st = env
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let s = st.status.unwrap();
    assert_eq!(s.state, cri::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.metadata.unwrap().name, "web");
    assert!(s.created_at > 0);
    assert_eq!(s.labels["app"], "web");
    assert!(st.info["info"].contains("netns"));

    let rt0 = env.rt.clone();
    let list = |f: cri::PodSandboxFilter| {
        let mut rt = rt0.clone();
        async move {
            rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        }
    };
    let by_label = cri::PodSandboxFilter {
        label_selector: [("app".to_string(), "web".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, vec![pod.clone()]);
    assert_eq!(
        list(cri::PodSandboxFilter {
            id: other[..8].into(),
            ..Default::default()
        })
        .await,
        vec![other.clone()]
    );
    env.rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: other.clone(),
        })
        .await
        .unwrap();
    let not_ready = cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue {
            state: cri::PodSandboxState::SandboxNotready as i32,
        }),
        ..Default::default()
    };
    assert_eq!(list(not_ready).await, vec![other]);

    let cs = env
        .rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].id, c);
    env.teardown().await;
}

#[tokio::test]
async fn twenty_pods_in_parallel() {
    let env = Env::new().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut rt = env.rt.clone();
        let pc = env.pod_config(&format!("par-{i}"));
        tasks.push(tokio::spawn(async move {
            let pod = rt
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(pc.clone()),
                    runtime_handler: String::new(),
                })
                .await
                .unwrap()
                .into_inner()
                .pod_sandbox_id;
            let c = rt
                .create_container(cri::CreateContainerRequest {
                    pod_sandbox_id: pod.clone(),
                    config: Some(container_config("c", &["sh", "-c", "echo hi"])),
                    sandbox_config: Some(pc),
                })
                .await
                .unwrap()
                .into_inner()
                .container_id;
            rt.start_container(cri::StartContainerRequest {
                container_id: c.clone(),
            })
            .await
            .unwrap();
            (pod, c)
        }));
    }
    let mut env = env;
    for t in tasks {
        let (_, c) = t.await.unwrap();
        let s = env.wait_exited(&c).await;
        assert_eq!(s.exit_code, 0);
        assert_eq!(env.log(&c).await, vec!["hi"]);
    }
    env.teardown().await;
}

#[tokio::test]
async fn containers_survive_a_daemon_restart() {
    let mut env = Env::new().await;
    let (_, long) = env
        .run("survivor", "", &["sh", "-c", "echo up; sleep 1000"])
        .await;
    let (_, short) = env.run("quick", "", &["sh", "-c", "sleep 2; exit 5"]).await;
    env.h.kill().unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await; // `quick` exits meanwhile
    env.h.restart().unwrap();
    env.rt = env.h.runtime_client().await.unwrap();
    let s = env.status(&long).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let s = env.status(&short).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerExited as i32,
        "{s:?}"
    );
    assert_eq!(s.exit_code, 5);
    // still manageable: exec and stop work after the restart
    let r = env.exec(&long, &["echo", "still here"], 5).await.unwrap();
    assert_eq!(r.stdout, b"still here\n");
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: long.clone(),
            timeout: 1,
        })
        .await
        .unwrap();
    assert_eq!(
        env.status(&long).await.state,
        cri::ContainerState::ContainerExited as i32
    );
    assert_eq!(env.log(&long).await, vec!["up"]);
    env.teardown().await;
}

#[tokio::test]
async fn pod_shared_pid_namespace() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        // No namespace options at all: CRI's default is a pod-shared PID namespace.
        let mut pc = env.pod_config(&format!("shared-{rt}"));
        pc.linux = Some(cri::LinuxPodSandboxConfig::default());
        let pod = env.run_pod(pc.clone(), rt).await.unwrap();
        let mut a = container_config("sleeper", &["sleep", "1000"]);
        a.linux = None;
        let a = env.create(&pod, a, &pc).await.unwrap();
        env.start(&a).await.unwrap();
        let mut b = container_config(
            "looker",
            &["sh", "-c", "cat /proc/1/comm; ps -o comm | grep -c sleep"],
        );
        b.linux = None;
        let b = env.create(&pod, b, &pc).await.unwrap();
        env.start(&b).await.unwrap();
        env.wait_exited(&b).await;
        assert_eq!(env.log(&b).await, vec!["husk-pause", "1"], "{rt}");
        // An orphan in a session (and process group) of its own is reaped by husk-pause.
        let r = env
            .exec(
                &a,
                &["sh", "-c", "(setsid sleep 0.2 &); sleep 1; ps -o stat,comm"],
                10,
            )
            .await
            .unwrap();
        let ps = String::from_utf8_lossy(&r.stdout);
        assert!(
            !ps.lines().any(|l| l.starts_with('Z')),
            "{rt}: a zombie in the pod: {ps}"
        );
        // Stopping the pod ends every process in its PID namespace.
        env.rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            })
            .await
            .unwrap();
        assert_eq!(
            env.status(&a).await.state,
            cri::ContainerState::ContainerExited as i32
        );
        let out = std::process::Command::new("pgrep")
            .arg("-x")
            .arg("husk-pause")
            .output()
            .unwrap();
        let _ = out; // other tests may run pods of their own; the leak check below is per pod
        env.remove_pod(&pod).await;
    }
    env.teardown().await;
}

/// ExecSync of a flood (200 MB on stdout) answers with nearly 16 MiB, all of the response
/// decodable by a client with the kubelet's (and crictl's) 16 MiB message limit; a short
/// message on stderr after a flood on stdout is kept whole.
#[tokio::test]
async fn exec_sync_of_a_flood_fits_the_kubelets_message_limit() {
    const LIMIT: usize = 16 << 20;
    let mut env = Env::new().await;
    let mut kubelet =
        cri::runtime_service_client::RuntimeServiceClient::new(env.h.channel().await.unwrap())
            .max_decoding_message_size(LIMIT);
    for rt in RUNTIMES {
        let (pod, c) = env
            .run(&format!("flood-{rt}"), rt, &["sleep", "1000"])
            .await;
        let r = sh_exec(&mut kubelet, &c, "head -c 200000000 /dev/zero").await;
        assert_eq!(r.exit_code, 0, "{rt}");
        assert!(r.stderr.is_empty(), "{rt}");
        assert!(
            r.stdout.len() > LIMIT - 4096 && r.stdout.len() < LIMIT,
            "{rt}: {} bytes",
            r.stdout.len()
        );
        assert!(r.stdout.iter().all(|&b| b == 0), "{rt}");

        let script = "head -c 200000000 /dev/zero; echo oops >&2; exit 3";
        let r = sh_exec(&mut kubelet, &c, script).await;
        assert_eq!(r.exit_code, 3, "{rt}");
        assert_eq!(r.stderr, b"oops\n", "{rt}");
        assert!(r.stdout.len() + r.stderr.len() > LIMIT - 4096, "{rt}");
        env.remove_pod(&pod).await;
    }
    env.teardown().await;
}

async fn sh_exec(client: &mut RuntimeClient, id: &str, script: &str) -> cri::ExecSyncResponse {
    client
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), script.into()],
            timeout: 60,
        })
        .await
        .unwrap_or_else(|e| panic!("{script}: {e:?}"))
        .into_inner()
}
