//! Against the host's real cgroups: a child that fills 50 MiB of tmpfs and then spins is moved
//! into fresh cgroups, and the readings must follow it. v1 uses
//! `/sys/fs/cgroup/<controller>/husk-cgtest-<pid>-…`; v2 uses the unified hierarchy (the root on
//! v2 hosts, `/sys/fs/cgroup/unified` on hybrid ones). Everything is removed by a drop guard.
//! Root only: skipped with a note otherwise, a failure under `HUSK_REQUIRE_SYSTEM=1`. A test of
//! a cgroup version the host does not have skips with a note (a property of the host, not
//! something setup installs).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use husk_cgroups::{CgroupError, Cgroups, Controller, CpuRate, Stats, Version};
use rustix::process::{Pid, Signal, kill_process_group};

const ROOT: &str = "/sys/fs/cgroup";
const FILL: u64 = 50 << 20;

/// Owns the test's cgroups, its child and the tmpfs file; undoes all of it on drop.
struct Guard {
    dirs: Vec<PathBuf>,
    child: Option<Child>,
    shm_file: PathBuf,
}

impl Guard {
    fn new(tag: &str) -> Guard {
        Guard {
            dirs: Vec::new(),
            child: None,
            shm_file: PathBuf::from(format!("/dev/shm/husk-cgtest-{}-{tag}", std::process::id())),
        }
    }

    fn mkdir(&mut self, dir: PathBuf) {
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {dir:?}: {e}"));
        self.dirs.push(dir);
    }

    /// `sh` waiting for a line on stdin, then filling the tmpfs file and spinning; its own
    /// process group so the whole of it can be killed.
    fn spawn(&mut self) -> u32 {
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "read _; head -c {FILL} /dev/zero > \"$0\"; while :; do :; done"
            ))
            .arg(&self.shm_file)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        self.child = Some(child);
        pid
    }

    fn go(&mut self) {
        let stdin = self.child.as_mut().and_then(|c| c.stdin.as_mut()).unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    /// Kills the child, removes the file and the cgroups (innermost first). Idempotent.
    fn cleanup(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pgid) = Pid::from_raw(i32::try_from(child.id()).unwrap_or(0)) {
                let _ = kill_process_group(pgid, Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.shm_file);
        while let Some(dir) = self.dirs.pop() {
            // The last tasks can take a moment to leave a cgroup after they die.
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(&dir) {
                if e.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!("leaked cgroup {dir:?}: {e}");
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cleanup();
    }
}

fn is_root() -> bool {
    common::require_system("root")
}

fn join_procs(dir: &Path, pid: u32) {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .unwrap_or_else(|e| panic!("moving {pid} into {dir:?}: {e}"));
}

/// Polls `stats` until `done` holds (10 s at most) and returns the last sample.
fn wait_for(cg: &Cgroups, path: &str, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = cg.stats(path).unwrap();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Two samples 300 ms apart: usage grows and the rate is a busy core's worth (> 0).
fn check_cpu_grows(cg: &Cgroups, path: &str) -> u64 {
    let a = cg.stats(path).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let b = cg.stats(path).unwrap();
    let (ua, ub) = (a.cpu.usage_nanos.unwrap(), b.cpu.usage_nanos.unwrap());
    assert!(ub > ua, "cpu usage did not grow: {ua} -> {ub}");
    let mut rate = CpuRate::new();
    assert_eq!(rate.update(path, a.timestamp, ua), None);
    let nano_cores = rate.update(path, b.timestamp, ub).unwrap();
    assert!(nano_cores > 0, "rate {nano_cores}");
    assert!(nano_cores <= 2_000_000_000 * 64, "absurd rate {nano_cores}");
    nano_cores
}

#[test]
fn v1_host_cgroups_follow_a_child() {
    if !is_root() {
        return;
    }
    let cg = Cgroups::detect(Path::new(ROOT));
    let Version::V1(mounts) = cg.version().clone() else {
        eprintln!("skipped: not a cgroup v1 host");
        return;
    };
    let wanted = [
        Controller::Cpuacct,
        Controller::Cpu,
        Controller::Memory,
        Controller::Pids,
    ];
    if wanted.iter().any(|c| mounts.get(*c).is_none()) {
        eprintln!("skipped: cpuacct, cpu, memory or pids not mounted: {mounts:?}");
        return;
    }
    let name = format!("husk-cgtest-{}-v1", std::process::id());
    let path = format!("/{name}");
    let mut guard = Guard::new("v1");
    // Co-mounted controllers (cpu,cpuacct) share one directory: create each once.
    let mut hierarchies: Vec<&Path> = wanted.iter().filter_map(|c| mounts.get(*c)).collect();
    hierarchies.sort();
    hierarchies.dedup();
    for h in &hierarchies {
        guard.mkdir(h.join(&name));
    }
    let memory_dir = cg.dir(&path, Controller::Memory).unwrap().unwrap();
    let pids_dir = cg.dir(&path, Controller::Pids).unwrap().unwrap();
    std::fs::write(
        memory_dir.join("memory.limit_in_bytes"),
        (200u64 << 20).to_string(),
    )
    .unwrap();
    std::fs::write(pids_dir.join("pids.max"), "50").unwrap();

    let before = cg.stats(&path).unwrap();
    assert_eq!(before.cpu.usage_nanos, Some(0));
    assert_eq!(before.memory.limit_bytes, Some(200 << 20));
    assert_eq!(before.pids.current, Some(0));
    assert_eq!(before.pids.limit, Some(50));
    assert_eq!(cg.process_count(&path).unwrap(), 0);

    let pid = guard.spawn();
    for h in &hierarchies {
        join_procs(&h.join(&name), pid);
    }
    guard.go();

    // memory.usage_in_bytes is exact; memory.stat counters are flushed lazily (up to ~2 s).
    let full = wait_for(&cg, &path, "50 MiB charged and in memory.stat", |s| {
        s.memory.usage_bytes.unwrap_or(0) >= FILL && s.memory.cache_bytes.unwrap_or(0) >= FILL
    });
    let m = &full.memory;
    let usage = m.usage_bytes.unwrap();
    let before_usage = before.memory.usage_bytes.unwrap();
    assert!(usage >= before_usage + FILL, "{before_usage} -> {usage}");
    // tmpfs pages sit on the anon LRU: they are working set, not inactive file cache.
    let ws = m.working_set_bytes.unwrap();
    assert!(ws >= FILL && ws <= usage, "working set {ws}, usage {usage}");
    assert_eq!(m.available_bytes, Some((200 << 20) - ws));
    assert!(m.page_faults.unwrap() > 0);
    assert_eq!(m.oom_kills.unwrap_or(0), 0);
    assert!(full.pids.current.unwrap() >= 1);
    assert!(cg.process_count(&path).unwrap() >= 1);

    let nano_cores = check_cpu_grows(&cg, &path);
    let s = cg.stats(&path).unwrap();
    assert!(s.cpu.user_nanos.unwrap() + s.cpu.system_nanos.unwrap() > 0);
    assert!(
        s.cpu.throttling.is_some(),
        "cpu.stat is always there with the cpu controller"
    );
    eprintln!("v1: usage {usage} B, working set {ws} B, {nano_cores} nanocores");

    // Once the container is gone, its cgroup is NotFound rather than zeros.
    guard.cleanup();
    assert!(matches!(cg.stats(&path), Err(CgroupError::NotFound { .. })));
    assert!(matches!(
        cg.process_count(&path),
        Err(CgroupError::NotFound { .. })
    ));
}

/// The unified hierarchy: `/sys/fs/cgroup` on a v2 host, `/sys/fs/cgroup/unified` on a hybrid
/// one (which often has no controllers at all: only the core `cpu.stat` and `cgroup.procs`).
fn unified_root() -> Option<PathBuf> {
    [ROOT, "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|r| Version::detect_with_mountinfo(r, None) == Version::V2)
}

#[test]
fn v2_unified_cgroups_follow_a_child() {
    if !is_root() {
        return;
    }
    let Some(root) = unified_root() else {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    };
    let cg = Cgroups::detect(&root);
    assert_eq!(cg.version(), &Version::V2);
    let name = format!("husk-cgtest-{}-v2", std::process::id());
    let path = format!("/{name}");
    let mut guard = Guard::new("v2");
    guard.mkdir(root.join(&name));
    // The child goes one level down, so the pod-level count has to look below.
    guard.mkdir(root.join(&name).join("ctr"));
    assert_eq!(cg.process_count(&path).unwrap(), 0);

    let pid = guard.spawn();
    join_procs(&root.join(&name).join("ctr"), pid);
    guard.go();
    assert!(cg.process_count(&path).unwrap() >= 1);
    assert!(cg.process_count(&format!("{path}/ctr")).unwrap() >= 1);

    let nano_cores = check_cpu_grows(&cg, &path);
    let s = cg.stats(&path).unwrap();
    assert!(s.cpu.user_nanos.is_some() && s.cpu.system_nanos.is_some());
    if root.join(&name).join("memory.current").exists() {
        let full = wait_for(&cg, &path, "50 MiB charged", |s| {
            s.memory.usage_bytes.unwrap_or(0) >= FILL
        });
        let ws = full.memory.working_set_bytes.unwrap();
        assert!(ws >= FILL, "working set {ws}");
        assert_eq!(
            full.memory.limit_bytes, None,
            "memory.max is \"max\" by default"
        );
    } else {
        // No memory controller here: memory fields are None, not an error.
        assert_eq!(s.memory, Default::default());
        eprintln!("v2: no memory controller in {root:?}; memory checks skipped");
    }
    eprintln!("v2 ({root:?}): {nano_cores} nanocores");

    guard.cleanup();
    assert!(matches!(cg.stats(&path), Err(CgroupError::NotFound { .. })));
}

#[test]
fn guard_cleans_up_after_a_failed_test() {
    if !is_root() {
        return;
    }
    let Some(root) = unified_root() else {
        eprintln!("skipped: no cgroup2 hierarchy");
        return;
    };
    let dir = root.join(format!("husk-cgtest-{}-panic", std::process::id()));
    let shm_file = std::sync::Mutex::new(PathBuf::new());
    let result = std::panic::catch_unwind(|| {
        let mut guard = Guard::new("panic");
        *shm_file.lock().unwrap() = guard.shm_file.clone();
        guard.mkdir(dir.clone());
        let pid = guard.spawn();
        join_procs(&dir, pid);
        guard.go();
        panic!("a failing assertion while the child runs in the cgroup");
    });
    assert!(result.is_err());
    assert!(!dir.exists(), "{dir:?} left behind");
    assert!(!shm_file.lock().unwrap().exists());
}
