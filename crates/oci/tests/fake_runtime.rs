//! A shell-script stand-in for a runtime (no root needed): checks the argv and stdin each verb
//! sends, how answers map to errors, and that a hung runtime is killed at the deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use husk_oci::{OciError, OciRuntime, RuntimeConfig, RuntimeKind};

/// Writes an executable script whose body can read `$@` and stdin; it logs its argv to `argv`.
/// Written so that it can be spawned at once while other tests spawn processes (no ETXTBSY).
fn fake(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("fake-runtime");
    let script = format!(
        "#!/bin/sh\necho \"$@\" >> {argv}\n{body}\n",
        argv = dir.join("argv").display()
    );
    support::system::write_executable(&path, script.as_bytes()).unwrap();
    path
}

fn runtime(dir: &Path, body: &str, timeout: Duration) -> OciRuntime {
    let mut cfg = RuntimeConfig::new("fake", fake(dir, body), dir.join("root"));
    cfg.timeout = timeout;
    cfg.systemd_cgroup = true;
    OciRuntime::new(cfg)
}

fn argv(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("argv")).unwrap()
}

#[test]
fn verbs_send_go_runc_style_argv() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), "exit 0", Duration::from_secs(10));
    rt.start("c1").unwrap();
    rt.kill("c1", 15, true).unwrap();
    rt.delete("c1", true).unwrap();
    rt.pause("c1").unwrap();
    rt.resume("c1").unwrap();
    let root = dir.path().join("root");
    let g = format!(
        "--root {} --log /dev/stderr --log-format json --systemd-cgroup",
        root.display()
    );
    assert_eq!(
        argv(dir.path()),
        format!(
            "{g} start c1\n{g} kill --all c1 15\n{g} delete --force c1\n{g} pause c1\n{g} resume c1\n"
        )
    );
}

#[test]
fn update_sends_resources_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let stdin = dir.path().join("stdin");
    let rt = runtime(
        dir.path(),
        &format!("cat > {}", stdin.display()),
        Duration::from_secs(10),
    );
    let resources = serde_json::json!({"cpu": {"shares": 512}});
    rt.update("c1", &resources).unwrap();
    assert!(argv(dir.path()).ends_with("update --resources - c1\n"));
    let sent: serde_json::Value = serde_json::from_slice(&std::fs::read(stdin).unwrap()).unwrap();
    assert_eq!(sent, resources);
}

#[test]
fn failures_keep_the_runtime_words() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(
        dir.path(),
        r#"echo '{"level":"error","msg":"cgroup is frozen","time":"t"}' >&2; echo 'cgroup is frozen' >&2; exit 1"#,
        Duration::from_secs(10),
    );
    match rt.pause("c1").unwrap_err() {
        OciError::Failed {
            runtime,
            op,
            id,
            exit,
            message,
        } => {
            assert_eq!((runtime.as_str(), op, id.as_str()), ("fake", "pause", "c1"));
            assert_eq!(exit, Some(1));
            assert_eq!(message, "cgroup is frozen");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unparsable_state_is_a_parse_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), "echo not-json", Duration::from_secs(10));
    let err = rt.state("c1").unwrap_err();
    assert!(
        matches!(err, OciError::Parse { op: "state", .. }),
        "{err:?}"
    );
    assert_eq!(rt.kind(), RuntimeKind::Other);
}

#[test]
fn hung_runtime_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path(), "sleep 30", Duration::from_millis(300));
    let started = Instant::now();
    let err = rt.kill("c1", 9, false).unwrap_err();
    assert!(
        matches!(err, OciError::Timeout { op: "kill", ref id, .. } if id == "c1"),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn missing_binary_is_a_spawn_error() {
    let rt = OciRuntime::new(RuntimeConfig::new("gone", "/nonexistent/runc", "/tmp/x"));
    assert!(matches!(rt.start("c1"), Err(OciError::Spawn { .. })));
}
