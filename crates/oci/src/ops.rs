//! The runtime verbs: argv conventions (after containerd's go-runc) and how each verb maps the
//! runtime's answer — "unknown container" is `None`/`Ok` where idempotence is wanted, "not running"
//! is its own error.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::log::{self, Verdict};
use crate::run::{self, RunError};
use crate::state::{parse_list, parse_state};
use crate::{Features, OciError, OciRuntime, State};

/// How a `checkpoint` is done: the flags runc and crun share (after Podman's and CRI-O's use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointOpts {
    /// Where CRIU writes its images (`--image-path`); created if missing.
    pub image_path: PathBuf,
    /// Where CRIU writes `dump.log` and `stats-dump` (`--work-path`); a failure is explained
    /// from the `dump.log` found there.
    pub work_path: PathBuf,
    /// The container keeps running afterwards (`--leave-running`).
    pub leave_running: bool,
    /// Dump established TCP connections (`--tcp-established`).
    pub tcp_established: bool,
    /// Dump file locks (`--file-locks`).
    pub file_locks: bool,
    /// Allow unix sockets connected outside the container (`--ext-unix-sk`).
    pub ext_unix_sk: bool,
    /// Deadline of the call; `None` = the handler's configured timeout.
    pub timeout: Option<Duration>,
}

/// How an `exec` is wired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOpts {
    /// Allocate a pty and send its master to this socket (`--tty --console-socket`); the
    /// process JSON must also say `"terminal": true`.
    pub console_socket: Option<PathBuf>,
    /// Return once the process has started (`--detach`); whoever is subreaper must reap it.
    pub detach: bool,
    /// Write the runtime's own JSON log here (`--log F --log-format json`) instead of mixing it
    /// into the process's stderr; read it back with [`OciRuntime::exec_failure`]. Use a fresh
    /// file per exec: runtimes append, so an old error would be read as a new one.
    pub log_file: Option<PathBuf>,
}

impl OciRuntime {
    /// Full argv (binary first) of `create`, for the monitor to run with its own stdio.
    pub fn create_args(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console_socket: Option<&Path>,
        log_file: &Path,
    ) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.path().into()];
        argv.extend(self.global_args(log_file.as_os_str()));
        argv.extend(["create".into(), "--bundle".into(), bundle.into()]);
        argv.extend(["--pid-file".into(), pid_file.into()]);
        if let Some(socket) = console_socket {
            argv.extend(["--console-socket".into(), socket.into()]);
        }
        argv.push(id.into());
        argv
    }

    /// Explains a failed `create` from its JSON log file and stderr, in the runtime's words.
    ///
    /// crun fails before opening its log when the bundle is missing; stderr covers that.
    pub fn create_error(
        &self,
        id: &str,
        status: ExitStatus,
        log_file: &Path,
        stderr: &[u8],
    ) -> OciError {
        let log = std::fs::read(log_file).ok();
        OciError::Failed {
            runtime: self.name().to_owned(),
            op: "create",
            id: id.to_owned(),
            exit: status.code(),
            message: log::error_message(log.as_deref(), stderr),
        }
    }

    /// `start <id>`: runs the user process of a created container.
    pub fn start(&self, id: &str) -> Result<(), OciError> {
        self.call("start", id, &["start", id], b"").map(drop)
    }

    /// `state <id>`; `None` when the runtime does not know the id.
    pub fn state(&self, id: &str) -> Result<Option<State>, OciError> {
        match self.call("state", id, &["state", id], b"") {
            Ok(out) => parse_state(&out)
                .map(Some)
                .map_err(|e| self.parse_error("state", e)),
            Err(OciError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `kill [--all] <id> <signal>`. A stopped or unknown container is
    /// [`OciError::NotRunning`]; `--all` on a stopped container succeeds with both runtimes.
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        let signal = signal.to_string();
        let mut args: Vec<&str> = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal.as_str()]);
        match self.call("kill", id, &args, b"") {
            Ok(_) => Ok(()),
            Err(OciError::NotFound { id }) => Err(OciError::NotRunning { id }),
            Err(e) => Err(e),
        }
    }

    /// `delete [--force] <id>`; an unknown id is already deleted.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
        let mut args: Vec<&str> = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.call("delete", id, &args, b"") {
            Ok(_) | Err(OciError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `pause <id>` (freezes the cgroup).
    pub fn pause(&self, id: &str) -> Result<(), OciError> {
        self.call("pause", id, &["pause", id], b"").map(drop)
    }

    /// `resume <id>`.
    pub fn resume(&self, id: &str) -> Result<(), OciError> {
        self.call("resume", id, &["resume", id], b"").map(drop)
    }

    /// `update --resources - <id>` with OCI `LinuxResources` JSON on stdin.
    pub fn update(&self, id: &str, resources: &serde_json::Value) -> Result<(), OciError> {
        let input = resources.to_string();
        let args: [&str; 4] = ["update", "--resources", "-", id];
        self.call("update", id, &args, input.as_bytes()).map(drop)
    }

    /// A ready-to-spawn `exec --process <json> --pid-file <p> [--tty --console-socket S]
    /// [--detach] <id>`; the caller wires stdio and waits. The runtime exits with the process's
    /// exit code, or 255 (runc) / 1..=255 (crun) when it failed itself: see [`Self::exec_failure`].
    pub fn exec_command(
        &self,
        id: &str,
        process_json: &Path,
        pid_file: &Path,
        opts: ExecOpts,
    ) -> Command {
        let mut cmd = self.bare_command();
        cmd.arg("--root").arg(self.root());
        if let Some(log) = &opts.log_file {
            cmd.arg("--log").arg(log).args(["--log-format", "json"]);
        }
        if self.config().systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.arg("exec").arg("--process").arg(process_json);
        cmd.arg("--pid-file").arg(pid_file);
        if let Some(socket) = &opts.console_socket {
            cmd.arg("--tty").arg("--console-socket").arg(socket);
        }
        if opts.detach {
            cmd.arg("--detach");
        }
        cmd.arg(id);
        cmd
    }

    /// After an `exec` that exited non-zero: `Some` when the runtime's log (the `log_file` given
    /// in [`ExecOpts`]) shows the runtime itself failed (e.g. executable not found), `None` when
    /// the status is the process's own.
    pub fn exec_failure(&self, id: &str, status: ExitStatus, log_file: &Path) -> Option<OciError> {
        if status.success() {
            return None;
        }
        let log = std::fs::read(log_file).ok()?;
        if !log::has_error(&log) {
            return None;
        }
        let message = log::error_message(Some(&log), b"");
        Some(match log::classify(&message, self.root(), id) {
            Verdict::NotFound => OciError::NotFound { id: id.to_owned() },
            Verdict::NotRunning => OciError::NotRunning { id: id.to_owned() },
            Verdict::Other => OciError::Failed {
                runtime: self.name().to_owned(),
                op: "exec",
                id: id.to_owned(),
                exit: status.code(),
                message,
            },
        })
    }

    /// `checkpoint --image-path I --work-path W [--leave-running] … <id>`: CRIU images of the
    /// container's processes. The runtime treats namespaces given by path in `config.json` as
    /// external (runc and crun: network and pid), so a pod's pinned namespaces are not dumped.
    ///
    /// Failures: an unknown id is [`OciError::NotFound`], a stopped container
    /// [`OciError::NotRunning`]; a runtime without CRIU support, a missing or too old CRIU, or a
    /// CRIU that cannot run on this kernel is [`OciError::CriuUnavailable`]; any other failure is
    /// [`OciError::Failed`] with CRIU's own error lines from `dump.log`.
    pub fn checkpoint(&self, id: &str, opts: &CheckpointOpts) -> Result<(), OciError> {
        let mut cmd = self.bare_command();
        cmd.args(self.global_args("/dev/stderr".as_ref()))
            .args(checkpoint_args(id, opts));
        let timeout = opts.timeout.unwrap_or(self.config().timeout);
        match self.execute(cmd, "checkpoint", id, b"", timeout) {
            Ok(_) => Ok(()),
            Err(OciError::Failed { exit, message, .. }) => {
                let criu_log = std::fs::read(opts.work_path.join("dump.log")).ok();
                Err(checkpoint_failure(
                    self.name(),
                    id,
                    exit,
                    message,
                    criu_log.as_deref(),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// `list --format json`: every container under `--root`.
    pub fn list(&self) -> Result<Vec<State>, OciError> {
        let args: [&str; 3] = ["list", "--format", "json"];
        let out = self.call("list", "", &args, b"")?;
        parse_list(&out).map_err(|e| self.parse_error("list", e))
    }

    /// `features`: what the runtime supports. [`OciError::Unsupported`] when the runtime has no
    /// such command (crun before 1.9, runc before 1.1).
    pub fn features(&self) -> Result<Features, OciError> {
        let out = match self.call_bare("features", &["features"]) {
            Err(OciError::Failed { message, .. })
                if ["unknown command", "No help topic", "not a valid command"]
                    .iter()
                    .any(|m| message.contains(m)) =>
            {
                return Err(OciError::Unsupported {
                    runtime: self.name().to_owned(),
                    what: "the features command",
                });
            }
            other => other?,
        };
        let raw = serde_json::from_slice(&out).map_err(|e| self.parse_error("features", e))?;
        Ok(Features::from_json(raw))
    }

    /// `--root R --log L --log-format json [--systemd-cgroup]`.
    fn global_args(&self, log: &OsStr) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.root().into()];
        args.extend([
            "--log".into(),
            log.into(),
            "--log-format".into(),
            "json".into(),
        ]);
        if self.config().systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    /// Runs one verb with the global flags (log to our stderr pipe) and returns its stdout;
    /// a failure is classified as `NotFound`, `NotRunning` or `Failed`.
    fn call(
        &self,
        op: &'static str,
        id: &str,
        args: &[&str],
        input: &[u8],
    ) -> Result<Vec<u8>, OciError> {
        let mut cmd = self.bare_command();
        cmd.args(self.global_args("/dev/stderr".as_ref()))
            .args(args);
        self.execute(cmd, op, id, input, self.config().timeout)
    }

    /// Runs the binary with just `args` (for `--version`, `features`).
    pub(crate) fn call_bare(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>, OciError> {
        let mut cmd = self.bare_command();
        cmd.args(args);
        self.execute(cmd, op, "", b"", self.config().timeout)
    }

    fn execute(
        &self,
        cmd: Command,
        op: &'static str,
        id: &str,
        input: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, OciError> {
        let started = Instant::now();
        let result = run::run(cmd, input, timeout);
        tracing::debug!(runtime = self.name(), op, container = id, elapsed = ?started.elapsed(), "oci runtime call");
        let out = result.map_err(|e| match e {
            RunError::Spawn(source) => OciError::Spawn {
                runtime: self.name().to_owned(),
                path: self.path().to_owned(),
                source,
            },
            RunError::Io(source) => OciError::Io {
                runtime: self.name().to_owned(),
                op,
                source,
            },
            RunError::Timeout => OciError::Timeout {
                runtime: self.name().to_owned(),
                op,
                id: id.to_owned(),
                after: timeout,
            },
        })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        let message = log::error_message(None, &out.stderr);
        Err(match log::classify(&message, self.root(), id) {
            Verdict::NotFound if !id.is_empty() => OciError::NotFound { id: id.to_owned() },
            Verdict::NotRunning if !id.is_empty() => OciError::NotRunning { id: id.to_owned() },
            _ => OciError::Failed {
                runtime: self.name().to_owned(),
                op,
                id: id.to_owned(),
                exit: out.status.code(),
                message,
            },
        })
    }

    fn parse_error(&self, op: &'static str, e: serde_json::Error) -> OciError {
        OciError::Parse {
            runtime: self.name().to_owned(),
            op,
            message: e.to_string(),
        }
    }
}

/// The verb's argv (after the global flags).
fn checkpoint_args(id: &str, opts: &CheckpointOpts) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["checkpoint".into()];
    args.extend(["--image-path".into(), opts.image_path.clone().into()]);
    args.extend(["--work-path".into(), opts.work_path.clone().into()]);
    for (on, flag) in [
        (opts.leave_running, "--leave-running"),
        (opts.tcp_established, "--tcp-established"),
        (opts.file_locks, "--file-locks"),
        (opts.ext_unix_sk, "--ext-unix-sk"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    args.push(id.into());
    args
}

/// Explains a failed `checkpoint` from the runtime's message and CRIU's `dump.log`.
///
/// Seen here: crun built without CRIU says `unknown command checkpoint`; runc without `criu` in
/// its PATH says `CRIU version check failed: exec: "criu": executable file not found in $PATH`;
/// a CRIU that does not understand the kernel fails its kernel feature detection ("kerndat"),
/// which runc reports as `criu failed: type DUMP errno 0` and `dump.log` explains.
fn checkpoint_failure(
    runtime: &str,
    id: &str,
    exit: Option<i32>,
    message: String,
    criu_log: Option<&[u8]>,
) -> OciError {
    let lower = message.to_lowercase();
    let unavailable = |reason: String| OciError::CriuUnavailable {
        runtime: runtime.to_owned(),
        id: id.to_owned(),
        reason,
    };
    if ["unknown command", "no help topic", "not a valid command"]
        .iter()
        .any(|m| lower.contains(m))
    {
        return unavailable(format!(
            "it was built without CRIU support ({runtime}: {message})"
        ));
    }
    if lower.contains("criu")
        && [
            "executable file not found",
            "no such file or directory",
            "version check failed",
            "requires at least",
            "too old",
            "libcriu",
        ]
        .iter()
        .any(|m| lower.contains(m))
    {
        return unavailable(format!(
            "CRIU is not installed or too old ({runtime}: {message})"
        ));
    }
    if lower.contains("cannot be checkpointed in") {
        // runc: "Container cannot be checkpointed in stopped state"
        return OciError::NotRunning { id: id.to_owned() };
    }
    let log = criu_log.map(String::from_utf8_lossy).unwrap_or_default();
    let errors = criu_errors(&log);
    let kernel =
        log.contains("kernel features detection") || errors.iter().any(|e| e.contains("kerndat"));
    if kernel {
        return unavailable(format!(
            "CRIU cannot run on this kernel (criu: {})",
            errors.join("; ")
        ));
    }
    // "log file: <work>/dump.log" names a file that is gone once the caller cleans up.
    let first = message.lines().next().unwrap_or_default().trim();
    let message = if errors.is_empty() {
        first.to_owned()
    } else {
        format!("{first}; criu: {}", errors.join("; "))
    };
    OciError::Failed {
        runtime: runtime.to_owned(),
        op: "checkpoint",
        id: id.to_owned(),
        exit,
        message,
    }
}

/// CRIU's error lines (`(00.0207) Error (criu/vdso.c:381): vdso: …`) without time and source
/// location, the last few, in order, without repeats.
fn criu_errors(log: &str) -> Vec<String> {
    const KEEP: usize = 6;
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line.split_once("Error (") else {
            continue;
        };
        let text = rest
            .split_once("): ")
            .or_else(|| rest.split_once(") "))
            .map_or(rest, |(_, t)| t)
            .trim();
        if !text.is_empty() && !out.iter().any(|e| e == text) {
            out.push(text.to_owned());
        }
    }
    let skip = out.len().saturating_sub(KEEP);
    out.split_off(skip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RuntimeConfig;

    fn rt(systemd: bool) -> OciRuntime {
        let mut cfg = RuntimeConfig::new("runc", "/usr/sbin/runc", "/run/husk/runtimes/runc");
        cfg.systemd_cgroup = systemd;
        OciRuntime::new(cfg)
    }

    fn strs(v: &[OsString]) -> Vec<&str> {
        v.iter().map(|s| s.to_str().unwrap()).collect()
    }

    #[test]
    fn create_argv_follows_go_runc() {
        let argv = rt(true).create_args(
            "c1",
            Path::new("/b"),
            Path::new("/b/pid"),
            Some(Path::new("/b/console.sock")),
            Path::new("/b/log.json"),
        );
        assert_eq!(
            strs(&argv),
            [
                "/usr/sbin/runc",
                "--root",
                "/run/husk/runtimes/runc",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "--systemd-cgroup",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pid",
                "--console-socket",
                "/b/console.sock",
                "c1",
            ]
        );
        let argv = rt(false).create_args(
            "c1",
            Path::new("/b"),
            Path::new("/p"),
            None,
            Path::new("/l"),
        );
        assert!(!strs(&argv).contains(&"--systemd-cgroup"));
        assert!(!strs(&argv).contains(&"--console-socket"));
    }

    #[test]
    fn exec_argv() {
        let opts = ExecOpts {
            console_socket: Some("/s".into()),
            detach: true,
            log_file: Some("/l".into()),
        };
        let cmd = rt(false).exec_command("c1", Path::new("/p.json"), Path::new("/pid"), opts);
        let args: Vec<&str> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--root",
                "/run/husk/runtimes/runc",
                "--log",
                "/l",
                "--log-format",
                "json",
                "exec",
                "--process",
                "/p.json",
                "--pid-file",
                "/pid",
                "--tty",
                "--console-socket",
                "/s",
                "--detach",
                "c1",
            ]
        );
        let cmd = rt(false).exec_command(
            "c1",
            Path::new("/p.json"),
            Path::new("/pid"),
            ExecOpts::default(),
        );
        assert!(
            !cmd.get_args()
                .any(|a| a == "--tty" || a == "--detach" || a == "--log")
        );
    }

    #[test]
    fn checkpoint_argv() {
        let opts = CheckpointOpts {
            image_path: "/w/checkpoint".into(),
            work_path: "/w".into(),
            leave_running: true,
            tcp_established: true,
            file_locks: false,
            ext_unix_sk: true,
            timeout: None,
        };
        assert_eq!(
            strs(&checkpoint_args("c1", &opts)),
            [
                "checkpoint",
                "--image-path",
                "/w/checkpoint",
                "--work-path",
                "/w",
                "--leave-running",
                "--tcp-established",
                "--ext-unix-sk",
                "c1",
            ]
        );
        let plain = CheckpointOpts {
            image_path: "/i".into(),
            work_path: "/w".into(),
            ..Default::default()
        };
        assert_eq!(
            strs(&checkpoint_args("c1", &plain)),
            [
                "checkpoint",
                "--image-path",
                "/i",
                "--work-path",
                "/w",
                "c1"
            ]
        );
    }

    /// The real answers of runc 1.1.5, crun 1.8.1 and CRIU 3.17 on a 6.18 kernel.
    #[test]
    fn checkpoint_failures_are_explained() {
        let e = checkpoint_failure(
            "crun",
            "c1",
            Some(1),
            "unknown command checkpoint".into(),
            None,
        );
        assert!(matches!(e, OciError::CriuUnavailable { .. }), "{e:?}");
        assert!(e.to_string().contains("built without CRIU support"), "{e}");

        let e = checkpoint_failure(
            "runc",
            "c1",
            Some(1),
            r#"CRIU version check failed: exec: "criu": executable file not found in $PATH"#.into(),
            None,
        );
        assert!(matches!(e, OciError::CriuUnavailable { .. }), "{e:?}");
        assert!(e.to_string().contains("CRIU is not installed"), "{e}");

        let log = b"(00.000010) Version: 3.17.1 (gitid 0)\n\
(00.009415) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
(00.009417) Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable\n\
(00.009418) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.\n\
(00.009450) Error (criu/crtools.c:260): Could not initialize kernel features detection.\n";
        let e = checkpoint_failure(
            "runc",
            "c1",
            Some(1),
            "criu failed: type DUMP errno 0\nlog file: /w/dump.log".into(),
            Some(log),
        );
        let text = e.to_string();
        assert!(matches!(e, OciError::CriuUnavailable { .. }), "{e:?}");
        assert!(text.contains("CRIU cannot run on this kernel"), "{text}");
        assert!(
            text.contains("vdso: Unexpected rt vDSO area bounds"),
            "{text}"
        );
        assert!(!text.contains("crtools.c"), "{text}");

        let log = b"(00.1) Error (criu/sk-unix.c:100): unix: Can't dump external socket\n\
(00.2) Error (criu/cr-dump.c:2093): Dumping FAILED.\n";
        let e = checkpoint_failure(
            "runc",
            "c1",
            Some(1),
            "criu failed: type DUMP errno 0\nlog file: /w/dump.log".into(),
            Some(log),
        );
        match &e {
            OciError::Failed { op, message, .. } => {
                assert_eq!(*op, "checkpoint");
                assert_eq!(
                    message,
                    "criu failed: type DUMP errno 0; criu: unix: Can't dump external socket; \
                     Dumping FAILED."
                );
            }
            other => panic!("{other:?}"),
        }

        let e = checkpoint_failure(
            "runc",
            "c1",
            Some(1),
            "Container cannot be checkpointed in stopped state".into(),
            None,
        );
        assert!(e.is_not_running(), "{e:?}");
    }
}
