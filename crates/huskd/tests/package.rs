//! The Debian package: built by `scripts/package.sh` (or taken from `HUSK_DEB`), installed on
//! this machine with `dpkg -i`, and checked: the systemd unit (`systemd-analyze verify` and the
//! keys a runtime whose containers outlive it needs), the conffile, completions and man pages;
//! the installed `huskd` started with the installed config (paths overridden into a temp dir)
//! and driven by the installed `huskctl` (version, info, a host-network pod with a container
//! from an imported image, run by the installed `husk-monitor`); then `dpkg -r` keeps the
//! conffile and `dpkg -P` removes it. Whatever the test started is stopped by PID and the package
//! is purged at the end, on failure too.
//!
//! Slow (a release build, unless target/release is current): everything is in one test, so the
//! package is built once per run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use husk_test_support::{busybox_image, oci::write_docker_save_archive, require_system};

const CONFFILE: &str = "/etc/husk/config.toml";
const UNIT: &str = "/usr/lib/systemd/system/husk.service";

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

/// dpkg's status of husk: `install ok installed`, `deinstall ok config-files`, or empty (not
/// installed, nor its conffiles).
fn status() -> String {
    let s = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "husk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if s.ends_with("not-installed") {
        String::new()
    } else {
        s
    }
}

/// Purges the package when dropped (the end of the test, or a failure).
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        if !status().is_empty() {
            let _ = Command::new("dpkg")
                .args(["-P", "husk"])
                .stdin(Stdio::null())
                .status();
        }
    }
}

/// The installed huskd serving in a temp dir; dropping it removes its pods, stops it by PID
/// and kills (by PID) anything of its still running under the dir.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        for d in ["root", "state", "logs"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        let log = std::fs::File::create(dir.join("huskd.log")).unwrap();
        let child = Command::new("/usr/bin/huskd")
            .args(["--config", CONFFILE, "--log-level", "debug"])
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--socket")
            .arg(dir.join("state/husk.sock"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn /usr/bin/huskd");
        let mut d = Daemon {
            child: Some(child),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(d.socket()).is_err() {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("huskd exited at start ({st}):\n{}", d.log());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after 30 s:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("state/husk.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("huskd.log")).unwrap_or_default()
    }

    fn huskctl(&self) -> Command {
        let mut c = Command::new("/usr/bin/huskctl");
        c.arg("-r")
            .arg(format!("unix://{}", self.socket().display()));
        c
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, ≤ 15 s, SIGKILL; the exit status.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_child(&child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self
                .huskctl()
                .args(["rmp", "-f", "-a"])
                .stdin(Stdio::null())
                .output();
        }
        self.stop();
        let left = processes_under(&self.dir);
        for pid in &left {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- huskd log ---\n{}\n--- processes killed: {left:?}",
                self.log()
            );
        }
    }
}

/// PIDs other than ours whose command line mentions `dir` (monitors, containers).
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| *p != me)
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
        })
        .collect()
}

/// Mount points below `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// The package: `HUSK_DEB`, else the last line of `scripts/package.sh`.
fn package() -> PathBuf {
    if let Some(p) = std::env::var_os("HUSK_DEB") {
        return PathBuf::from(p);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/package.sh");
    let t = Instant::now();
    let out = stdout(Command::new("bash").arg(script).stderr(Stdio::inherit()));
    eprintln!("package.sh took {:?}", t.elapsed());
    PathBuf::from(
        out.lines()
            .last()
            .expect("package.sh printed nothing")
            .trim(),
    )
}

/// The unit's `Key=value` lines by section (`Service.KillMode` → `process`).
fn unit_keys(text: &str) -> Vec<(String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((format!("{section}.{}", k.trim()), v.trim().to_string()));
        }
    }
    out
}

fn check_unit() {
    let text = std::fs::read_to_string(UNIT).expect("the unit is installed");
    let keys = unit_keys(&text);
    for (k, v) in [
        (
            "Service.ExecStart",
            "/usr/bin/huskd --config /etc/husk/config.toml",
        ),
        ("Service.KillMode", "process"),
        ("Service.Delegate", "yes"),
        ("Service.Restart", "always"),
        ("Service.LimitNOFILE", "1048576"),
        ("Service.OOMScoreAdjust", "-999"),
        ("Install.WantedBy", "multi-user.target"),
    ] {
        let got: Vec<&str> = keys
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(got, [v], "{k} in {UNIT}:\n{text}");
    }
    if require_system("systemd-analyze") {
        // It also runs `man huskd(8)` for Documentation=; it exits 0 on ignored bad lines, which
        // it reports on stderr.
        let out = run(Command::new("systemd-analyze").args(["verify", UNIT]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.trim().is_empty(),
            "systemd-analyze verify {UNIT}:\n{err}"
        );
    }
}

fn check_files() {
    for f in [
        "/usr/bin/huskd",
        "/usr/bin/husk-monitor",
        "/usr/bin/huskctl",
        "/usr/share/bash-completion/completions/huskd",
        "/usr/share/zsh/vendor-completions/_huskd",
        "/usr/share/fish/vendor_completions.d/huskd.fish",
        "/usr/share/man/man8/huskd.8.gz",
        "/usr/share/man/man8/huskd-config.8.gz",
        "/usr/share/man/man8/huskd-config-check.8.gz",
        "/usr/share/doc/husk/copyright",
    ] {
        assert!(Path::new(f).is_file(), "{f} is not installed");
    }
    assert!(Path::new("/etc/husk/certs.d").is_dir());
    assert_eq!(std::fs::read_dir("/etc/husk/certs.d").unwrap().count(), 0);
    run(Command::new("bash").args(["-n", "/usr/share/bash-completion/completions/huskd"]));
    let conffiles = stdout(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "husk"]));
    assert!(conffiles.contains(CONFFILE), "{conffiles}");
    // The conffile is the commented default configuration, and it is valid.
    let conf = std::fs::read_to_string(CONFFILE).unwrap();
    let default = stdout(Command::new("/usr/bin/huskd").args(["config", "default"]));
    assert_eq!(conf, default);
    assert!(conf.contains("# The CRI gRPC socket"), "{conf}");
    assert!(
        stdout(Command::new("/usr/bin/huskd").args(["config", "check", CONFFILE])).contains("ok")
    );
    let control = stdout(Command::new("dpkg-query").args(["-W", "-f=${Depends}", "husk"]));
    for dep in [
        "runc | crun",
        "containernetworking-plugins",
        "iptables",
        "iproute2",
    ] {
        assert!(control.contains(dep), "Depends: {control}");
    }
    // huskctl's completions and man pages come from its clap definitions too, once huskctl has
    // its hidden `__generate-docs` command.
    let huskctl_docs = Command::new("/usr/bin/huskctl")
        .arg("__generate-docs")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .is_ok_and(|o| o.status.success());
    if huskctl_docs {
        for f in [
            "/usr/share/bash-completion/completions/huskctl",
            "/usr/share/zsh/vendor-completions/_huskctl",
            "/usr/share/fish/vendor_completions.d/huskctl.fish",
            "/usr/share/man/man1/huskctl.1.gz",
            "/usr/share/man/man1/huskctl-pull.1.gz",
        ] {
            assert!(Path::new(f).is_file(), "{f} is not installed");
        }
    } else {
        eprintln!("note: huskctl has no __generate-docs yet: its completions are not checked");
    }
    let v = stdout(Command::new("/usr/bin/huskd").arg("--version"));
    assert!(
        v.starts_with(&format!("huskd {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(
        v.contains("/usr/bin/crun: crun version") || v.contains("/usr/sbin/runc: runc version"),
        "{v}"
    );
}

/// The installed daemon with the installed config: version, info, and a host-network pod
/// whose container (from an imported image) prints a line under the installed monitor.
fn check_daemon(dir: &Path) {
    let mut d = Daemon::start(dir);
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/exe", d.pid().unwrap())).unwrap(),
        Path::new("/usr/bin/huskd")
    );
    let v = stdout(d.huskctl().arg("version"));
    assert!(v.contains("RuntimeName:") && v.contains("husk"), "{v}");
    let info: serde_json::Value = serde_json::from_str(&stdout(d.huskctl().arg("info"))).unwrap();
    let text = info.to_string();
    assert!(text.contains("/etc/husk/certs.d"), "{text}");

    let tar = dir.join("image.tar");
    let img = busybox_image(&["sh"]).unwrap().build();
    write_docker_save_archive(&img, &["husk-package-test:1"], &tar).unwrap();
    stdout(d.huskctl().arg("import").arg("-q").arg(&tar));
    let pod = dir.join("pod.json");
    let cgroup = format!("/husk-package-test-{}", std::process::id());
    std::fs::write(
        &pod,
        serde_json::json!({
            "metadata": {"name": "pkg", "namespace": "default", "uid": "husk-package-test"},
            "log_directory": dir.join("logs"),
            "linux": {
                "cgroup_parent": cgroup,
                "security_context": {"namespace_options": {"network": "NODE", "pid": "CONTAINER"}}
            }
        })
        .to_string(),
    )
    .unwrap();
    let ctr = dir.join("container.json");
    std::fs::write(
        &ctr,
        serde_json::json!({
            "metadata": {"name": "hello"},
            "image": {"image": "husk-package-test:1"},
            "command": ["sh", "-c", "echo hello from the package; exec sleep 60"],
            "log_path": "hello.log",
            "linux": {}
        })
        .to_string(),
    )
    .unwrap();
    let pod_id = stdout(d.huskctl().arg("runp").arg(&pod)).trim().to_string();
    let cid = stdout(d.huskctl().arg("create").arg(&pod_id).arg(&ctr).arg(&pod))
        .trim()
        .to_string();
    stdout(d.huskctl().args(["start", &cid]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = stdout(d.huskctl().args(["logs", &cid]));
        if logs.contains("hello from the package") {
            break;
        }
        assert!(Instant::now() < deadline, "no log line: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The container's monitor is the installed one.
    let monitors: Vec<u32> = processes_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read_link(format!("/proc/{p}/exe"))
                .is_ok_and(|e| e == Path::new("/usr/bin/husk-monitor"))
        })
        .collect();
    assert!(!monitors.is_empty(), "no /usr/bin/husk-monitor runs");
    stdout(d.huskctl().args(["stop", "-t", "0", &cid]));
    stdout(d.huskctl().args(["rm", &cid]));
    stdout(d.huskctl().args(["rmp", "-f", &pod_id]));
    let st = d.stop().expect("huskd ran");
    assert!(st.success(), "huskd exited with {st}:\n{}", d.log());
    let left = processes_under(dir);
    assert!(left.is_empty(), "processes left: {left:?}");
    let mounts = mounts_under(dir);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for ctrl in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = std::fs::remove_dir(ctrl.path().join(cgroup.trim_start_matches('/')));
    }
}

#[test]
fn the_package_installs_runs_and_purges() {
    if !require_system("root") || !require_system("dpkg-deb") {
        return;
    }
    let before = status();
    assert!(
        before.is_empty() && !Path::new("/etc/husk").exists(),
        "husk is already installed here ({before:?}) or /etc/husk exists: purge it first \
         (dpkg -P husk), this test installs and purges the package"
    );
    let deb = package();
    assert!(deb.is_file(), "{} is not a file", deb.display());
    let _installed = Installed;
    run(Command::new("dpkg")
        .arg("-i")
        .arg(&deb)
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert_eq!(status(), "install ok installed");
    check_unit();
    check_files();

    let tmp = tempfile::Builder::new()
        .prefix("husk-package-")
        .tempdir()
        .unwrap();
    check_daemon(tmp.path());

    // Remove keeps the conffile, purge removes it (and /etc/husk with it).
    run(Command::new("dpkg").args(["-r", "husk"]));
    assert_eq!(status(), "deinstall ok config-files");
    assert!(Path::new(CONFFILE).is_file(), "dpkg -r removed {CONFFILE}");
    assert!(!Path::new("/usr/bin/huskd").exists());
    run(Command::new("dpkg").args(["-P", "husk"]));
    assert_eq!(status(), "");
    assert!(!Path::new(CONFFILE).exists(), "dpkg -P left {CONFFILE}");
    assert!(!Path::new("/etc/husk").exists(), "dpkg -P left /etc/husk");
    assert!(!Path::new(UNIT).exists());
}
