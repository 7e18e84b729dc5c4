//! The OCI runtime as the monitor sees it: a `husk_oci::OciRuntime` built from `monitor.json`
//! (argv of `create`, its error in the runtime's words, `delete --force` to undo).

use std::path::Path;
use std::process::ExitStatus;

use husk_monitor::MonitorConfig;
use husk_oci::{OciError, OciRuntime, RuntimeConfig};

/// The runtime handler described by the config.
pub fn from_config(cfg: &MonitorConfig) -> OciRuntime {
    let name = cfg.runtime_path.file_name().map_or_else(
        || "runtime".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut rc = RuntimeConfig::new(name, &cfg.runtime_path, &cfg.runtime_root);
    rc.systemd_cgroup = cfg.systemd_cgroup;
    OciRuntime::new(rc)
}

/// Full argv (binary first) of `create` for this container.
pub fn create_argv(
    rt: &OciRuntime,
    cfg: &MonitorConfig,
    console: Option<&Path>,
) -> Vec<std::ffi::OsString> {
    rt.create_args(
        &cfg.id,
        &cfg.bundle,
        &cfg.pid_file,
        console,
        &cfg.runtime_log,
    )
}

/// What huskd is told when `create` failed: the runtime's own message.
pub fn create_error(
    rt: &OciRuntime,
    cfg: &MonitorConfig,
    status: ExitStatus,
    stderr: &[u8],
) -> String {
    match rt.create_error(&cfg.id, status, &cfg.runtime_log, stderr) {
        OciError::Failed { message, .. } if !message.trim().is_empty() => message,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn cfg() -> MonitorConfig {
        serde_json::from_str(
            r#"{"id":"c1","bundle":"/b","runtime_path":"/usr/bin/crun","runtime_root":"/r",
            "socket":"/s/monitor.sock","exit_file":"/s/exit.json","pid_file":"/s/pid",
            "runtime_log":"/s/runtime.log","systemd_cgroup":true}"#,
        )
        .unwrap()
    }

    #[test]
    fn create_argv_matches_the_runtime_cli() {
        let cfg = cfg();
        let rt = from_config(&cfg);
        let argv = create_argv(&rt, &cfg, Some(Path::new("/s/console.sock")));
        let s: Vec<_> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(s[0], "/usr/bin/crun");
        assert_eq!(&s[1..3], ["--root", "/r"]);
        assert!(s.contains(&"--systemd-cgroup"));
        let create = s.iter().position(|a| *a == "create").unwrap();
        assert_eq!(
            &s[create..],
            [
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/s/pid",
                "--console-socket",
                "/s/console.sock",
                "c1"
            ]
        );
        let log = s.iter().position(|a| *a == "--log").unwrap();
        assert_eq!(s[log + 1], "/s/runtime.log");
    }

    #[test]
    fn create_error_is_the_runtimes_words() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = cfg();
        cfg.runtime_log = d.path().join("runtime.log");
        std::fs::write(
            &cfg.runtime_log,
            "{\"level\":\"error\",\"msg\":\"open config.json: no such file\",\"time\":\"t\"}\n",
        )
        .unwrap();
        let rt = from_config(&cfg);
        let msg = create_error(&rt, &cfg, ExitStatus::from_raw(1 << 8), b"");
        assert!(msg.contains("open config.json: no such file"), "{msg}");
    }
}
