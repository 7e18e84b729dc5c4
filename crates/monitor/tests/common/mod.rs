//! Test harness: busybox bundles run by the real runc and crun under `husk-monitor`, with a
//! guard that deletes the container, its cgroups, the monitor and the temp dir even on failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use husk_monitor::MonitorConfig;
use husk_monitor::client::{MonitorClient, MonitorError, spawn_monitor};
use husk_monitor::cri_log::{Stream, parse_record};
use serde_json::json;

/// A runtime found on this machine.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub name: &'static str,
    pub path: PathBuf,
}

const BUSYBOX: &str = "/bin/busybox";

/// runc and crun found in `PATH`, when we are root and have busybox; a skip note otherwise (a
/// failure under `HUSK_REQUIRE_SYSTEM=1`).
pub fn runtimes() -> Vec<Runtime> {
    use husk_test_support::{require_program, require_system};
    if !require_system("root") || !require_system(BUSYBOX) {
        return vec![];
    }
    ["runc", "crun"]
        .into_iter()
        .filter_map(|name| require_program(name).map(|path| Runtime { name, path }))
        .collect()
}

/// The monitor binary under test: `HUSK_MONITOR_BIN` (e.g. a release build) or this build's.
pub fn monitor_bin() -> PathBuf {
    std::env::var_os("HUSK_MONITOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_husk-monitor")))
}

/// How a test container is set up.
#[derive(Debug, Clone, Default)]
pub struct Opts {
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    pub memory_limit: Option<i64>,
    /// Leave config.json out of the bundle.
    pub broken_bundle: bool,
}

/// One container under one monitor; everything goes away on drop.
pub struct Fixture {
    pub rt: Runtime,
    pub id: String,
    pub dir: tempfile::TempDir,
    pub cfg: MonitorConfig,
    pub cfg_path: PathBuf,
    pub monitor: Option<tokio::process::Child>,
    pub monitor_pid: Option<i32>,
}

impl Fixture {
    /// `name` is the test's own; the id (and the container's cgroup, named after it) is unique
    /// to this fixture.
    pub fn new(rt: &Runtime, name: &str, script: &str, opts: Opts) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("husk-mon-{name}-{}-{}-{n}", rt.name, std::process::id());
        let keep = std::env::var_os("HUSK_TEST_KEEP").is_some();
        let dir = tempfile::Builder::new()
            .prefix("hm")
            .disable_cleanup(keep)
            .tempdir()
            .unwrap();
        let root = dir.path();
        let bundle = root.join("bundle");
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        if !opts.broken_bundle {
            let spec = spec(&id, script, &opts);
            std::fs::write(
                bundle.join("config.json"),
                serde_json::to_vec_pretty(&spec).unwrap(),
            )
            .unwrap();
        }
        let state = root.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let cfg = MonitorConfig {
            id: id.clone(),
            bundle,
            runtime_path: rt.path.clone(),
            runtime_root: root.join("rt-root"),
            systemd_cgroup: false,
            log_path: Some(root.join("logs/ctr/0.log")),
            socket: state.join("monitor.sock"),
            exit_file: state.join("exit.json"),
            pid_file: state.join("pid"),
            runtime_log: state.join("runtime.log"),
            tty: opts.tty,
            stdin: opts.stdin,
            stdin_once: opts.stdin_once,
            cgroup_oom_paths: vec![PathBuf::from(format!("/sys/fs/cgroup/memory/{id}"))],
        };
        let cfg_path = state.join("monitor.json");
        std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        Self {
            rt: rt.clone(),
            id,
            dir,
            cfg,
            cfg_path,
            monitor: None,
            monitor_pid: None,
        }
    }

    /// Spawns the monitor through the client library; returns the container pid.
    pub async fn spawn(&mut self) -> Result<i32, MonitorError> {
        let (child, pid) = spawn_monitor(&monitor_bin(), &self.cfg_path).await?;
        self.monitor_pid = child.id().map(|p| p as i32);
        self.monitor = Some(child);
        Ok(pid)
    }

    pub fn runtime(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.rt.path)
            .arg("--root")
            .arg(&self.cfg.runtime_root)
            .args(args)
            .output()
            .unwrap()
    }

    /// `<runtime> start <id>`.
    pub fn start(&self) {
        let out = self.runtime(&["start", &self.id]);
        assert!(
            out.status.success(),
            "{} start: {}",
            self.rt.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn kill(&self, signal: &str) {
        let out = self.runtime(&["kill", &self.id, signal]);
        assert!(
            out.status.success(),
            "{} kill: {}",
            self.rt.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub async fn client(&self) -> MonitorClient {
        MonitorClient::connect(&self.cfg.socket).await.unwrap()
    }

    /// Waits for the exit (30 s at most) and for the monitor process to end.
    pub async fn wait_exit(&mut self) -> husk_monitor::ExitRecord {
        let client = MonitorClient::new(&self.cfg.socket).with_exit_file(&self.cfg.exit_file);
        let exit = tokio::time::timeout(Duration::from_secs(30), client.wait())
            .await
            .expect("wait timed out")
            .unwrap();
        if let Some(mut child) = self.monitor.take() {
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .expect("monitor did not exit")
                .unwrap();
            assert!(status.success(), "monitor exit status {status}");
        }
        exit
    }

    pub fn log_path(&self) -> PathBuf {
        self.cfg.log_path.clone().unwrap()
    }

    /// Every record of a log file, checked for format: (stream, partial, content).
    pub fn records(path: &Path) -> Vec<(Stream, bool, String)> {
        let data = std::fs::read(path).unwrap_or_default();
        data.split_inclusive(|&b| b == b'\n')
            .map(|line| {
                assert!(
                    line.ends_with(b"\n"),
                    "unterminated record {:?}",
                    String::from_utf8_lossy(line)
                );
                let r = parse_record(line)
                    .unwrap_or_else(|| panic!("bad record {:?}", String::from_utf8_lossy(line)));
                chrono::DateTime::parse_from_rfc3339(r.timestamp).expect("timestamp parses");
                (
                    r.stream,
                    r.partial,
                    String::from_utf8_lossy(r.content).into_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.runtime(&["delete", "--force", &self.id]);
        if let Some(pid) = self.monitor_pid {
            // Give the monitor a moment to notice the exit, then make sure it is gone.
            for _ in 0..20 {
                if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if let Some(child) = self.monitor.as_mut() {
                let _ = child.start_kill();
            }
        }
        remove_cgroups(&self.id);
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

/// rmdir `/sys/fs/cgroup/<every controller>/<id>`: each container has a top-level cgroup of
/// its own, so no test removes a parent another one is creating its cgroup under.
pub fn remove_cgroups(id: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for c in controllers.flatten() {
        let dir = c.path().join(id);
        for _ in 0..50 {
            if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A minimal OCI spec for busybox `sh -c script`.
fn spec(id: &str, script: &str, opts: &Opts) -> serde_json::Value {
    let mut resources = json!({ "devices": [{ "allow": false, "access": "rwm" }] });
    if let Some(limit) = opts.memory_limit {
        resources["memory"] = json!({ "limit": limit, "swap": limit });
    }
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": opts.tty,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/sh", "-c", script],
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/",
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "husk-test",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] }
        ],
        "linux": {
            "cgroupsPath": format!("/{id}"),
            "resources": resources,
            "namespaces": [
                { "type": "pid" }, { "type": "ipc" }, { "type": "uts" },
                { "type": "mount" }, { "type": "network" }
            ]
        }
    })
}

/// Pids of live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) && !is_zombie(pid) {
            pids.push(pid);
        }
    }
    pids
}
