//! Container stats from the real cgroups, resource updates through the OCI runtime, and log
//! reopening, on runc and crun.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use k8s_cri::v1 as cri;
use tonic::Code;

async fn stats(env: &mut Env, id: &str) -> cri::ContainerStats {
    env.rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

fn working_set(s: &cri::ContainerStats) -> u64 {
    s.memory
        .as_ref()
        .unwrap()
        .working_set_bytes
        .as_ref()
        .unwrap()
        .value
}

#[tokio::test]
async fn memory_and_cpu_follow_what_the_container_does() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("mem-{rt}"), rt, &["sleep", "1000"]).await;
        let before = working_set(&stats(&mut env, &c).await);
        env.exec(
            &c,
            &["sh", "-c", "head -c 40000000 /dev/zero > /dev/shm/fill"],
            20,
        )
        .await
        .unwrap();
        let full = working_set(&stats(&mut env, &c).await);
        assert!(full >= before + 35_000_000, "{rt}: {before} -> {full}");
        env.exec(&c, &["rm", "/dev/shm/fill"], 10).await.unwrap();
        let freed = working_set(&stats(&mut env, &c).await);
        assert!(freed + 30_000_000 < full, "{rt}: {full} -> {freed}");

        // CPU: usage grows under load, and the rate between two samples is positive.
        let (_, busy) = env
            .run(&format!("cpu-{rt}"), rt, &["sh", "-c", "yes > /dev/null"])
            .await;
        let a = stats(&mut env, &busy).await.cpu.unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let b = stats(&mut env, &busy).await.cpu.unwrap();
        let (ua, ub) = (
            a.usage_core_nano_seconds.unwrap().value,
            b.usage_core_nano_seconds.unwrap().value,
        );
        assert!(ub > ua + 100_000_000, "{rt}: {ua} -> {ub}");
        assert!(
            b.usage_nano_cores.unwrap().value > 100_000_000,
            "{rt}: at least 0.1 core busy"
        );

        // the list has both, with attributes
        let all = env
            .rt
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .stats;
        assert!(
            all.iter()
                .any(|s| s.attributes.as_ref().unwrap().id == busy)
        );
        assert!(
            stats(&mut env, &c)
                .await
                .writable_layer
                .unwrap()
                .used_bytes
                .is_some()
        );
        env.rt
            .stop_container(cri::StopContainerRequest {
                container_id: busy.clone(),
                timeout: 0,
            })
            .await
            .unwrap();
    }
    env.teardown().await;
}

#[tokio::test]
async fn update_resources_reaches_the_cgroup_and_the_status() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("upd-{rt}"), rt, &["sleep", "1000"]).await;
        let limit = 96 * 1024 * 1024;
        env.rt
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: c.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: limit,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let file = format!("/sys/fs/cgroup/memory/husk/{c}/memory.limit_in_bytes");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap().trim(),
            limit.to_string(),
            "{rt}"
        );
        let s = env.status(&c).await;
        assert_eq!(
            s.resources.unwrap().linux.unwrap().memory_limit_in_bytes,
            limit
        );
        let err = env
            .rt
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: c.clone(),
                linux: Some(cri::LinuxContainerResources {
                    cpu_shares: -5,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{rt}: {err:?}");
    }
    env.teardown().await;
}

#[tokio::test]
async fn reopen_log_after_rename_keeps_every_line() {
    let mut env = Env::new().await;
    let (_, c) = env
        .run("rotate", "", &["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo line-$i; i=$((i+1)); sleep 0.005; done; sleep 1000"])
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let path = env.status(&c).await.log_path;
    let rotated = format!("{path}.1");
    std::fs::rename(&path, &rotated).unwrap();
    env.rt
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: c.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut lines = read_cri_log(std::path::Path::new(&rotated));
    let second = read_cri_log(std::path::Path::new(&path));
    assert!(!second.is_empty(), "the new file gets the later lines");
    lines.extend(second);
    let want: Vec<String> = (0..400).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want);
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: c.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    let err = env
        .rt
        .reopen_container_log(cri::ReopenContainerLogRequest { container_id: c })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    env.teardown().await;
}

#[tokio::test]
async fn events_see_a_full_lifecycle_in_order_and_survive_a_stalled_subscriber() {
    use futures::StreamExt;
    let mut env = Env::new().await;
    // One subscriber that never reads, one that does.
    let _stalled = env
        .rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut events = env
        .rt
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner();
    let (pod, c) = env.run("ev", "", &["sh", "-c", "exit 0"]).await;
    env.wait_exited(&c).await;
    env.remove_pod(&pod).await;
    let mut seen = Vec::new();
    while seen.len() < 8 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if ev.container_id == c || ev.container_id == pod {
            let who = if ev.container_id == pod { "pod" } else { "ctr" };
            seen.push((who, ev.container_event_type));
            if ev.container_id == c
                && ev.container_event_type == cri::ContainerEventType::ContainerStartedEvent as i32
            {
                assert_eq!(ev.pod_sandbox_status.as_ref().unwrap().id, pod);
                assert!(ev.containers_statuses.iter().any(|s| s.id == c));
            }
        }
    }
    use cri::ContainerEventType as T;
    assert_eq!(
        seen,
        vec![
            ("pod", T::ContainerCreatedEvent as i32),
            ("pod", T::ContainerStartedEvent as i32),
            ("ctr", T::ContainerCreatedEvent as i32),
            ("ctr", T::ContainerStartedEvent as i32),
            ("ctr", T::ContainerStoppedEvent as i32),
            ("pod", T::ContainerStoppedEvent as i32),
            ("ctr", T::ContainerDeletedEvent as i32),
            ("pod", T::ContainerDeletedEvent as i32),
        ]
    );
    env.teardown().await;
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let mut env = Env::new().await;
    for rt in RUNTIMES {
        let pc = env.pod_config(&format!("oom-{rt}"));
        let pod = env.run_pod(pc.clone(), rt).await.unwrap();
        let mut cc = container_config("hog", &["sh", "-c", "head -c 200m /dev/zero | tail"]);
        cc.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 32 * 1024 * 1024,
            ..Default::default()
        });
        let c = env.create(&pod, cc, &pc).await.unwrap();
        env.start(&c).await.unwrap();
        let s = env.wait_exited(&c).await;
        assert_eq!(
            (s.exit_code, s.reason.as_str()),
            (137, "OOMKilled"),
            "{rt}: {s:?}"
        );
        env.remove_pod(&pod).await;
    }
    env.teardown().await;
}
