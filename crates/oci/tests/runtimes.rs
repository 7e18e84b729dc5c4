//! Drives the real runc and crun, found in `PATH` (root only; skipped with a note otherwise, a
//! failure under `HUSK_REQUIRE_SYSTEM=1`): every test runs once per runtime.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use husk_oci::{ExecOpts, OciError, RuntimeKind, Status};
use support::{Bundle, ContainerGuard, create, harness, reap, unique_id, wait_status};

/// Expands each scenario into `<name>_runc` and `<name>_crun`.
macro_rules! for_both_runtimes {
    ($($scenario:ident),* $(,)?) => {
        mod runc {
            $(#[test] fn $scenario() { super::$scenario("runc"); })*
        }
        mod crun {
            $(#[test] fn $scenario() { super::$scenario("crun"); })*
        }
    };
}

for_both_runtimes!(
    lifecycle,
    exec,
    bad_bundle,
    unknown_container,
    features,
    version_and_kind
);

const SLEEPER: &[&str] = &["/bin/busybox", "sleep", "1000"];
const MEMORY_LIMIT: u64 = 64 * 1024 * 1024;

fn lifecycle(name: &str) {
    let Some(h) = harness(name) else { return };
    let rt = &h.rt;
    let id = unique_id("life", name);
    let bundle = Bundle::new(&id, SLEEPER);
    let mut guard = ContainerGuard::new(rt, &id);

    let (status, _log) = create(rt, &bundle);
    assert!(status.success(), "create failed: {status}");
    let state = rt
        .state(&id)
        .unwrap()
        .expect("created container has a state");
    assert_eq!(state.status, Status::Created);
    assert_eq!(state.id, id);
    assert!(state.pid > 0);
    assert_eq!(state.bundle, bundle.path());
    guard.pids.push(state.pid);
    let pid_file: i32 = std::fs::read_to_string(bundle.file("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid_file, state.pid);

    rt.start(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().unwrap().status, Status::Running);
    // A second start is a real failure, in the runtime's words.
    let err = rt.start(&id).unwrap_err();
    assert!(
        matches!(err, OciError::Failed { op: "start", .. }),
        "{err:?}"
    );

    rt.update(&id, &serde_json::json!({"memory": {"limit": MEMORY_LIMIT}}))
        .unwrap();
    let limit_file = format!(
        "/sys/fs/cgroup/memory/{}/memory.limit_in_bytes",
        support::cgroup_name(&id)
    );
    let limit: u64 = std::fs::read_to_string(&limit_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(limit, MEMORY_LIMIT);
    // A CPU that does not exist: the kernel refuses, both runtimes relay it (crun, unlike runc,
    // silently ignores ill-typed JSON such as `"limit": "lots"`).
    match rt.update(&id, &serde_json::json!({"cpu": {"cpus": "99999"}})) {
        Err(OciError::Failed {
            op: "update",
            message,
            ..
        }) => {
            assert!(message.contains("cpuset.cpus"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    rt.pause(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().unwrap().status, Status::Paused);
    rt.resume(&id).unwrap();
    assert_eq!(rt.state(&id).unwrap().unwrap().status, Status::Running);

    let listed = rt.list().unwrap();
    assert!(
        listed.iter().any(|s| s.id == id && s.pid == state.pid),
        "{listed:?}"
    );

    rt.kill(&id, 9, false).unwrap();
    assert!(reap(state.pid, Duration::from_secs(10)), "init not reaped");
    let stopped = wait_status(rt, &id, &Status::Stopped).unwrap();
    assert_eq!(stopped.status, Status::Stopped);
    let err = rt.kill(&id, 9, false).unwrap_err();
    assert!(matches!(err, OciError::NotRunning { .. }), "{err:?}");
    rt.kill(&id, 9, true).unwrap(); // --all on a stopped container is fine for both

    rt.delete(&id, false).unwrap();
    assert_eq!(rt.state(&id).unwrap(), None);
    rt.delete(&id, false).unwrap();
    rt.delete(&id, true).unwrap();
    assert!(rt.list().unwrap().iter().all(|s| s.id != id));
}

fn exec(name: &str) {
    let Some(h) = harness(name) else { return };
    let rt = &h.rt;
    let id = unique_id("exec", name);
    let bundle = Bundle::new(&id, SLEEPER);
    let mut guard = ContainerGuard::new(rt, &id);
    let (status, _log) = create(rt, &bundle);
    assert!(status.success(), "create failed: {status}");
    let init = rt.state(&id).unwrap().unwrap().pid;
    guard.pids.push(init);
    rt.start(&id).unwrap();

    // Plain exec: output comes back on the pipes we wired.
    let hi = bundle.process_json("hi.json", &["echo", "hi"]);
    let out = rt
        .exec_command(&id, &hi, &bundle.file("exec.pid"), ExecOpts::default())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // The process's own exit code passes through, and is not a runtime failure.
    let log = bundle.file("exec.log");
    let opts = ExecOpts {
        log_file: Some(log.clone()),
        ..ExecOpts::default()
    };
    let exit3 = bundle.process_json("exit3.json", &["sh", "-c", "exit 3"]);
    let status = rt
        .exec_command(&id, &exit3, &bundle.file("exec.pid"), opts.clone())
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    assert!(rt.exec_failure(&id, status, &log).is_none());

    // A missing executable is the runtime's failure, explained from its log.
    let nope = bundle.process_json("nope.json", &["nope"]);
    let out = rt
        .exec_command(&id, &nope, &bundle.file("exec.pid"), opts)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    match rt.exec_failure(&id, out.status, &log) {
        Some(OciError::Failed {
            op: "exec",
            message,
            ..
        }) => {
            assert!(
                message.contains("nope") && message.contains("not found"),
                "{message}"
            )
        }
        other => panic!("expected exec failure, got {other:?}"),
    }

    // Detached: the runtime returns at once; the process is ours (subreaper) to reap.
    let sleeper = bundle.process_json("sleep.json", &["sleep", "0.2"]);
    let status = rt
        .exec_command(
            &id,
            &sleeper,
            &bundle.file("detached.pid"),
            ExecOpts {
                detach: true,
                ..ExecOpts::default()
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let detached: i32 = std::fs::read_to_string(bundle.file("detached.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    guard.pids.push(detached);
    assert!(
        reap(detached, Duration::from_secs(10)),
        "detached exec not reaped"
    );
}

fn bad_bundle(name: &str) {
    let Some(h) = harness(name) else { return };
    let rt = &h.rt;

    // Missing rootfs: the runtime's reason comes from its JSON log.
    let id = unique_id("norootfs", name);
    let bundle = Bundle::new(&id, SLEEPER);
    let _guard = ContainerGuard::new(rt, &id);
    std::fs::remove_dir_all(bundle.file("rootfs")).unwrap();
    let (status, log) = create(rt, &bundle);
    assert!(!status.success());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("\"level\":\"error\""), "{logged}");
    match rt.create_error(&id, status, &log, b"") {
        OciError::Failed {
            op: "create",
            message,
            exit,
            ..
        } => {
            assert!(message.contains("rootfs"), "{message}");
            assert!(!message.starts_with("runc create failed"), "{message}");
            assert_eq!(exit, status.code());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rt.state(&id).unwrap(), None);

    // Missing bundle directory: crun dies before opening its log; stderr explains.
    let id = unique_id("nobundle", name);
    let _guard = ContainerGuard::new(rt, &id);
    let gone = h.state_dir.path().join("no-such-bundle");
    let log = h.state_dir.path().join("nobundle.log");
    let argv = rt.create_args(&id, &gone, &gone.join("pid"), None, &log);
    let out = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = rt.create_error(&id, out.status, &log, &out.stderr);
    let text = err.to_string();
    assert!(text.contains("no-such-bundle"), "{text}");
    assert!(
        text.to_lowercase().contains("no such file or directory"),
        "{text}"
    );
}

fn unknown_container(name: &str) {
    let Some(h) = harness(name) else { return };
    let rt = &h.rt;
    let id = unique_id("ghost", name);
    assert_eq!(rt.state(&id).unwrap(), None);
    rt.delete(&id, false).unwrap();
    rt.delete(&id, true).unwrap();
    let err = rt.kill(&id, 15, false).unwrap_err();
    assert!(matches!(err, OciError::NotRunning { .. }), "{err:?}");
    for err in [rt.start(&id), rt.pause(&id), rt.resume(&id)] {
        assert!(matches!(err, Err(OciError::NotFound { .. })), "{err:?}");
    }
    assert!(rt.list().unwrap().is_empty());
}

fn features(name: &str) {
    let Some(h) = harness(name) else { return };
    match (h.rt.kind(), h.rt.features()) {
        (RuntimeKind::Runc, Ok(f)) => {
            assert!(f.mount_options.iter().any(|o| o == "bind"), "{f:?}");
            assert!(f.recursive_read_only, "runc 1.1 lists rro");
            assert!(f.namespaces.iter().any(|n| n == "pid"));
            assert!(f.raw.get("linux").is_some());
        }
        (RuntimeKind::Crun, Ok(f)) => assert!(f.raw.is_object()), // crun >= 1.9
        (RuntimeKind::Crun, Err(OciError::Unsupported { what, .. })) => {
            assert_eq!(what, "the features command")
        }
        (kind, other) => panic!("{kind:?}: {other:?}"),
    }
}

fn version_and_kind(name: &str) {
    let Some(h) = harness(name) else { return };
    let want = if name == "runc" {
        RuntimeKind::Runc
    } else {
        RuntimeKind::Crun
    };
    assert_eq!(h.rt.kind(), want);
    let version = h.rt.version().unwrap();
    assert!(
        version.starts_with(|c: char| c.is_ascii_digit()),
        "{version}"
    );
}
