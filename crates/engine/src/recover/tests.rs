//! Recovery decisions, on records made up for each case.

use std::path::PathBuf;

use super::*;
use crate::container::ContainerConfig;
use crate::sandbox::PodConfig;
use crate::store::Record;

pub(crate) fn pod(intent: Option<SandboxIntent>, state: SandboxState) -> SandboxRecord {
    let dir = PathBuf::from("/run/husk/pods/p1");
    SandboxRecord {
        version: SandboxRecord::VERSION,
        id: "p1".into(),
        config: PodConfig::default(),
        state,
        created_at: 1,
        runtime_handler: "runc".into(),
        netns: Some(dir.join("ns/net")),
        ipcns: Some(dir.join("ns/ipc")),
        utsns: Some(dir.join("ns/uts")),
        pidns: None,
        infra_pid: None,
        userns: None,
        shm: Some(dir.join("shm")),
        hostname_file: dir.join("hostname"),
        hosts_file: dir.join("hosts"),
        resolv_file: dir.join("resolv.conf"),
        state_dir: dir,
        cgroup_parent: "/husk".into(),
        ips: vec![],
        network_setup: true,
        network_teardown_pending: false,
        intent,
    }
}

pub(crate) fn container(intent: Option<ContainerIntent>, state: ContainerState) -> ContainerRecord {
    ContainerRecord {
        version: ContainerRecord::VERSION,
        id: "c1".repeat(32),
        sandbox_id: "p1".into(),
        registrar_name: "c_p_ns_uid_0".into(),
        config: ContainerConfig::default(),
        state,
        image_id: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            .parse()
            .unwrap(),
        image_ref: String::new(),
        runtime_handler: "runc".into(),
        created_at: 1,
        started_at: 0,
        finished_at: 0,
        pid: 42,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        bundle: "/run/husk/containers/c1".into(),
        monitor_dir: "/run/husk/s/c1c1".into(),
        rw_dir: "/var/lib/husk/rw/c1".into(),
        log_path: None,
        chain_ids: vec![],
        cgroups_path: "/husk/c1".into(),
        stop_signal: None,
        user: None,
        intent,
    }
}

fn exit(code: i32) -> ExitRecord {
    ExitRecord {
        pid: 42,
        exit_code: code,
        signal: None,
        oom_killed: false,
        finished_at: "2026-01-01T00:00:00Z".into(),
    }
}

#[test]
fn unfinished_pod_operations_are_finished_or_undone() {
    use SandboxIntent::*;
    use SandboxState::*;
    assert_eq!(
        plan_pod(&pod(Some(Creating), NotReady), true),
        PodPlan::RollBack
    );
    assert_eq!(
        plan_pod(&pod(Some(Creating), NotReady), false),
        PodPlan::RollBack
    );
    assert_eq!(
        plan_pod(&pod(Some(Stopping), Ready), true),
        PodPlan::FinishStop
    );
    assert_eq!(
        plan_pod(&pod(Some(Removing), NotReady), false),
        PodPlan::FinishRemove
    );
    assert_eq!(plan_pod(&pod(None, Ready), true), PodPlan::Keep);
    assert_eq!(plan_pod(&pod(None, NotReady), false), PodPlan::Keep);
    assert_eq!(plan_pod(&pod(None, Ready), false), PodPlan::MarkNotReady);
    let mut pending = pod(None, NotReady);
    pending.network_teardown_pending = true;
    assert_eq!(plan_pod(&pending, false), PodPlan::RetryTeardown);
}

#[test]
fn unfinished_container_operations_are_finished_or_undone() {
    use ContainerIntent::*;
    use ContainerState::*;
    // Being created: undone whatever the runtime or the monitor did meanwhile.
    for st in [Created, Running, Exited] {
        assert_eq!(
            plan_container(&container(Some(Creating), st), Some(exit(0)), None),
            ContainerPlan::RollBack
        );
    }
    assert_eq!(
        plan_container(&container(Some(Removing), Exited), None, None),
        ContainerPlan::FinishRemove
    );
    // A start cut short: the runtime tells whether it happened.
    assert_eq!(
        plan_container(&container(Some(Starting), Created), None, Some(true)),
        ContainerPlan::Unstarted
    );
    assert_eq!(
        plan_container(&container(Some(Starting), Created), None, Some(false)),
        ContainerPlan::Watch { started: true }
    );
    assert_eq!(
        plan_container(&container(Some(Starting), Created), None, None),
        ContainerPlan::Watch { started: true }
    );
    // Started and exited during the outage: its exit code counts.
    assert_eq!(
        plan_container(&container(Some(Starting), Created), Some(exit(3)), None),
        ContainerPlan::Exited(exit(3))
    );
    assert_eq!(
        plan_container(&container(Some(Starting), Exited), None, None),
        ContainerPlan::ClearIntent
    );
    // Settled records.
    assert_eq!(
        plan_container(&container(None, Running), Some(exit(3)), None),
        ContainerPlan::Exited(exit(3))
    );
    assert_eq!(
        plan_container(&container(None, Running), None, None),
        ContainerPlan::Watch { started: false }
    );
    assert_eq!(
        plan_container(&container(None, Created), None, None),
        ContainerPlan::Watch { started: false }
    );
    assert_eq!(
        plan_container(&container(None, Exited), Some(exit(1)), None),
        ContainerPlan::Keep
    );
}

#[test]
fn old_records_read_as_settled_and_new_ones_round_trip() {
    let mut v = serde_json::to_value(pod(None, SandboxState::Ready)).unwrap();
    assert!(
        v.get("intent").is_none(),
        "a settled record is written as before"
    );
    v.as_object_mut().unwrap().remove("intent");
    let back: SandboxRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back.intent, None);
    let p = pod(Some(SandboxIntent::Stopping), SandboxState::Ready);
    let back: SandboxRecord = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
    assert_eq!(back, p);
    assert!(!pod(Some(SandboxIntent::Creating), SandboxState::NotReady).visible());

    let c = container(Some(ContainerIntent::Starting), ContainerState::Created);
    let mut v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["intent"], "Starting");
    let back: ContainerRecord = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, c);
    v.as_object_mut().unwrap().remove("intent");
    let back: ContainerRecord = serde_json::from_value(v).unwrap();
    assert_eq!(back.intent, None);
    assert!(!container(Some(ContainerIntent::Creating), ContainerState::Created).visible());
}
