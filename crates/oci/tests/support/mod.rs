//! Test harness for real runc/crun: busybox bundles, a subreaper test process, and guards that
//! delete containers, reap their init, and remove their cgroups even when an assertion fails.

#![allow(dead_code)]

pub mod system;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use husk_oci::{OciRuntime, RuntimeConfig, State, Status};
use rustix::process::{Pid, WaitOptions, waitpid};
use serde_json::json;

/// The prefix of every test container's cgroup (cgroupfs, v1).
pub const CGROUP_PREFIX: &str = "husk-oci-test";
const BUSYBOX: &str = "/bin/busybox";
const APPLETS: &[&str] = &["sh", "echo", "sleep", "cat"];

/// A runtime rooted in its own temp state dir, or `None` (with a note) when the test cannot run.
pub struct Harness {
    pub rt: OciRuntime,
    pub state_dir: tempfile::TempDir,
}

/// The runtime `name` (`runc`, `crun`) found in `PATH`.
pub fn harness(name: &str) -> Option<Harness> {
    if !system::require_system("root") {
        return None;
    }
    let path = system::require_program(name)?;
    if !system::require_system(BUSYBOX) {
        return None;
    }
    // Container inits are reparented to us after `create` exits; we reap them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .expect("become child subreaper");
    let state_dir = tempfile::tempdir().expect("state tempdir");
    let cfg = RuntimeConfig::new(name, path, state_dir.path().join("root"));
    Some(Harness {
        rt: OciRuntime::new(cfg),
        state_dir,
    })
}

/// A container's cgroup, relative to each hierarchy's root: its own top-level directory, so no
/// test removes a parent another one is creating its cgroup under.
pub fn cgroup_name(id: &str) -> String {
    format!("{CGROUP_PREFIX}-{id}")
}

/// A process-unique container id.
pub fn unique_id(test: &str, rt: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{test}-{rt}-{}-{n}", std::process::id())
}

/// An OCI bundle in a temp dir: busybox rootfs + a hand-written minimal `config.json`.
pub struct Bundle {
    pub dir: tempfile::TempDir,
    pub id: String,
}

impl Bundle {
    pub fn new(id: &str, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("bundle tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).expect("copy busybox");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .expect("applet symlink");
        }
        let config = config_json(id, args);
        std::fs::write(
            dir.path().join("config.json"),
            serde_json::to_vec_pretty(&config).expect("config json"),
        )
        .expect("write config.json");
        Self {
            dir,
            id: id.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes an exec `process.json` running `args`.
    pub fn process_json(&self, name: &str, args: &[&str]) -> PathBuf {
        let path = self.file(name);
        let process = json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
        });
        std::fs::write(&path, process.to_string()).expect("write process.json");
        path
    }
}

fn config_json(id: &str, args: &[&str]) -> serde_json::Value {
    let caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "husk-test",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "network"}
            ],
            "cgroupsPath": format!("/{}", cgroup_name(id)),
            "maskedPaths": ["/proc/kcore", "/proc/keys"],
            "readonlyPaths": ["/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// Runs `create` the way the monitor will: the argv from `create_args`, stdio null.
/// Returns the exit status and the log file path.
pub fn create(rt: &OciRuntime, bundle: &Bundle) -> (std::process::ExitStatus, PathBuf) {
    let log = bundle.file("create.log");
    let argv = rt.create_args(&bundle.id, bundle.path(), &bundle.file("pid"), None, &log);
    let status = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawn create");
    (status, log)
}

/// Deletes the container, reaps its init and removes its cgroups on drop.
pub struct ContainerGuard {
    pub rt: OciRuntime,
    pub id: String,
    /// Host pids to reap (the init, detached execs).
    pub pids: Vec<i32>,
}

impl ContainerGuard {
    pub fn new(rt: &OciRuntime, id: &str) -> Self {
        Self {
            rt: rt.clone(),
            id: id.to_owned(),
            pids: Vec::new(),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let _ = self.rt.kill(&self.id, 9, true);
        let deadline = Instant::now() + Duration::from_secs(10);
        for pid in &self.pids {
            // A dying init waits (zap_pid_ns_processes) until every zombie of its pid namespace
            // is reaped, and some are ours: crun leaves one per failed exec.
            while !reap(*pid, Duration::ZERO) && Instant::now() < deadline {
                reap_nested_zombies();
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = self.rt.delete(&self.id, true);
        remove_cgroups(&self.id);
    }
}

/// Waits (up to `timeout`) for one of our children to exit; true once reaped or not ours.
pub fn reap(pid: i32, timeout: Duration) -> bool {
    let Some(pid) = Pid::from_raw(pid) else {
        return true;
    };
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(Some(pid), WaitOptions::NOHANG) {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Reaps our exited children that live in a nested pid namespace (container processes), leaving
/// alone the runtime processes other tests are waiting for.
pub fn reap_nested_zombies() {
    let me = rustix::process::getpid().as_raw_nonzero().get();
    let my_depth = ns_depth("self");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may contain spaces, so split after the last ')'.
        let mut fields = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace());
        let state = fields.as_mut().and_then(Iterator::next);
        let ppid = fields
            .as_mut()
            .and_then(Iterator::next)
            .and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && ppid == Some(me) && ns_depth(&pid.to_string()) > my_depth {
            reap(pid, Duration::ZERO);
        }
    }
}

/// How many pid namespaces deep a process is (fields of `NSpid:`).
fn ns_depth(pid: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().count())
        })
        .unwrap_or(0)
}

/// Removes the container's cgroup ([`cgroup_name`]) in every v1 hierarchy.
pub fn remove_cgroups(id: &str) {
    let Ok(controllers) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for controller in controllers.flatten() {
        let dir = controller.path().join(cgroup_name(id));
        for _ in 0..50 {
            // EBUSY for a moment while the last task leaves.
            if !dir.exists() || std::fs::remove_dir(&dir).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Polls `state` until it reports `want` (or the deadline passes); returns the last state.
pub fn wait_status(rt: &OciRuntime, id: &str, want: &Status) -> Option<State> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = rt.state(id).expect("state");
        if state.as_ref().map(|s| &s.status) == Some(want) || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
