//! ExecSync: run a command in a running container through `<runtime> exec`, capturing its
//! output (capped), killing it on timeout — promptly, even when a background child it started
//! keeps the output pipes open.
//!
//! The cap: stdout and stderr together keep at most [`MAX_EXEC_OUTPUT`] (16 MiB − 1 KiB), so
//! the whole `ExecSyncResponse` (two length-prefixed byte fields and an exit code: at most
//! 21 bytes of framing) stays under the 16 MiB message limit of the kubelet's and crictl's gRPC
//! clients. When both fit they are kept whole; otherwise each stream is sure of half the budget,
//! and what one leaves of its half goes to the other (a flood on stdout still lets a short error
//! message through on stderr). What is cut is the end of a stream; the rest is read and dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::names::new_id;

/// What stdout and stderr keep together (see the module doc for how they share it): 16 MiB,
/// the gRPC message limit of the kubelet and crictl, less 1 KiB for the response's framing.
pub const MAX_EXEC_OUTPUT: usize = (16 << 20) - 1024;

// The largest response fits: per byte field a tag (1) and a varint length (4 for 2^21..2^28),
// and the exit code (a tag and at most 10 bytes).
const _: () = assert!(MAX_EXEC_OUTPUT + 2 * (1 + 4) + 11 <= 16 << 20);

/// How long to keep reading after the exec'd process exited (a background child may hold the
/// pipes open forever).
const DRAIN: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Exit code of `husk-monitor exec-sync` when the runtime itself failed (its message is in
/// `<pid-file>.error`).
pub(crate) const RUNTIME_FAILED: u8 = 255;

/// The files of one exec, removed when it is over.
#[derive(Debug)]
pub(crate) struct ExecFiles {
    process: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    console: PathBuf,
}

impl ExecFiles {
    fn error_file(&self) -> PathBuf {
        self.pid.with_extension("error")
    }

    /// The exec'd process's exit code (128 + signal when killed) from its monitor's exit
    /// status, or the runtime's own failure, which the monitor wrote to the error file.
    pub(crate) async fn exit_code(&self, status: std::process::ExitStatus) -> Result<i32> {
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        if code == i32::from(RUNTIME_FAILED)
            && let Ok(msg) = tokio::fs::read_to_string(self.error_file()).await
        {
            return Err(EngineError::ExecFailed(msg));
        }
        Ok(code)
    }

    pub(crate) fn console_socket(&self) -> PathBuf {
        self.console.clone()
    }

    fn pid(&self) -> Option<rustix::process::Pid> {
        std::fs::read_to_string(&self.pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
    }

    /// SIGKILLs the exec'd process (its monitor reaps it and exits).
    pub(crate) fn kill_process(&self) {
        if let Some(pid) = self.pid() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }

    pub(crate) fn remove_now(&self) {
        for f in [
            &self.process,
            &self.pid,
            &self.log,
            &self.console,
            &self.error_file(),
        ] {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Engine {
    /// Runs `cmd` in container `id`; `timeout_secs` 0 means no timeout.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout_secs: i64,
    ) -> Result<ExecOutput> {
        let (files, std_cmd) = self.prepare_exec(id, cmd, false).await?;
        let result = run_exec(std_cmd, &files, timeout_secs, cmd).await;
        files.remove_now();
        result
    }

    /// Checks an exec request, writes its process JSON and builds the `husk-monitor exec-sync`
    /// command that runs it (stdio for the caller to set).
    pub(crate) async fn prepare_exec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<(ExecFiles, std::process::Command)> {
        if cmd.is_empty() || cmd[0].is_empty() {
            return Err(EngineError::Invalid("exec: cmd must not be empty".into()));
        }
        let rec = self.check_running(id, "exec")?;
        let (_, rt) = self.runtime(&rec.runtime_handler)?;
        // The exec'd process inherits the container's process settings (user, env, cwd, caps,
        // no_new_privs, apparmor) with new args and its own terminal or none.
        let spec: serde_json::Value = {
            let data = tokio::fs::read(rec.spec_path())
                .await
                .map_err(|e| EngineError::io("read", rec.spec_path(), e))?;
            serde_json::from_slice(&data).map_err(|e| EngineError::Corrupt {
                path: rec.spec_path(),
                message: e.to_string(),
            })?
        };
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(cmd);
        process["terminal"] = serde_json::json!(tty);
        if let Some(o) = process.as_object_mut() {
            o.remove("consoleSize");
        }
        let tag = &new_id()[..16];
        let files = ExecFiles {
            process: rec.bundle.join(format!("exec-{tag}.json")),
            pid: rec.bundle.join(format!("exec-{tag}.pid")),
            log: rec.bundle.join(format!("exec-{tag}.log")),
            // Short: unix socket paths are limited to 108 bytes.
            console: self.cfg.state_dir.join("s").join(format!("x{tag}.sock")),
        };
        let data = serde_json::to_vec(&process).map_err(|e| EngineError::Task(e.to_string()))?;
        tokio::fs::write(&files.process, data)
            .await
            .map_err(|e| EngineError::io("write", &files.process, e))?;
        // A `husk-monitor exec-sync` subreaper runs `<runtime> exec --detach` and reaps the
        // exec'd process itself: the call ends when that process exits, even if a background
        // child keeps the output pipes open (a foreground `runc exec` waits for those).
        let rt_cfg = rt.config();
        let mut std_cmd = std::process::Command::new(&self.cfg.monitor_bin);
        std_cmd
            .arg("exec-sync")
            .arg("--runtime")
            .arg(&rt_cfg.path)
            .arg("--root")
            .arg(&rt_cfg.root)
            .args(rt_cfg.systemd_cgroup.then_some("--systemd-cgroup"))
            .arg("--id")
            .arg(&rec.id)
            .arg("--process")
            .arg(&files.process)
            .arg("--pid-file")
            .arg(&files.pid)
            .arg("--log")
            .arg(&files.log);
        Ok((files, std_cmd))
    }
}

async fn run_exec(
    std_cmd: std::process::Command,
    files: &ExecFiles,
    timeout_secs: i64,
    cmd: &[String],
) -> Result<ExecOutput> {
    let mut c = tokio::process::Command::from(std_cmd);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = c
        .spawn()
        .map_err(|e| EngineError::io("spawn", "runtime exec", e))?;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(EngineError::Task("exec: pipes missing".into()));
    };
    let (obuf, ebuf) = (Shared::default(), Shared::default());
    let out_task = tokio::spawn(read_capped(out, obuf.clone()));
    let err_task = tokio::spawn(read_capped(err, ebuf.clone()));
    let wait = child.wait();
    let status = if timeout_secs > 0 {
        match tokio::time::timeout(Duration::from_secs(timeout_secs as u64), wait).await {
            Ok(s) => s,
            Err(_) => {
                // Kill the exec'd process itself (the monitor exits with it), then the monitor.
                files.kill_process();
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                out_task.abort();
                err_task.abort();
                return Err(EngineError::Timeout {
                    what: format!("command {cmd:?}"),
                    secs: timeout_secs as u64,
                });
            }
        }
    } else {
        wait.await
    }
    .map_err(|e| EngineError::io("wait", "runtime exec", e))?;
    // Collect what the readers have; don't wait for EOF forever.
    let mut stdout = collect(out_task, &obuf).await;
    let mut stderr = collect(err_task, &ebuf).await;
    share_budget(&mut stdout, &mut stderr);
    let exit_code = files.exit_code(status).await?;
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code,
    })
}

type Shared = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

/// Reads until EOF into `buf`, keeping at most [`MAX_EXEC_OUTPUT`] bytes (what the stream could
/// keep if the other were empty; [`share_budget`] trims the two at the end).
async fn read_capped<R: AsyncRead + Unpin>(mut r: R, buf: Shared) {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut b = buf.lock().unwrap_or_else(|p| p.into_inner());
                let room = MAX_EXEC_OUTPUT.saturating_sub(b.len());
                b.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

/// What a reader got: all of it when the pipe reaches EOF soon after the process exited, else
/// what it had read by then (a background child still holds the pipe).
async fn collect(mut task: tokio::task::JoinHandle<()>, buf: &Shared) -> Vec<u8> {
    if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
        tracing::debug!("exec output pipe held open by a background process");
        task.abort();
    }
    std::mem::take(&mut *buf.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Trims the two streams to [`MAX_EXEC_OUTPUT`] together: whole when both fit, else each keeps
/// at least half the budget (or all of itself when shorter) and the other takes the rest.
fn share_budget(stdout: &mut Vec<u8>, stderr: &mut Vec<u8>) {
    let half = MAX_EXEC_OUTPUT / 2;
    let err_keep = stderr.len().min(MAX_EXEC_OUTPUT - stdout.len().min(half));
    let out_keep = stdout.len().min(MAX_EXEC_OUTPUT - err_keep);
    stdout.truncate(out_keep);
    stderr.truncate(err_keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(out: usize, err: usize) -> (usize, usize) {
        let (mut o, mut e) = (vec![b'o'; out], vec![b'e'; err]);
        share_budget(&mut o, &mut e);
        (o.len(), e.len())
    }

    #[test]
    fn stdout_and_stderr_share_one_budget() {
        const MAX: usize = MAX_EXEC_OUTPUT;
        assert_eq!(shared(10, 20), (10, 20));
        assert_eq!(shared(MAX, 0), (MAX, 0));
        assert_eq!(shared(0, MAX), (0, MAX));
        // A flood on one stream leaves the other's short message whole.
        assert_eq!(shared(MAX, 100), (MAX - 100, 100));
        assert_eq!(shared(100, MAX), (100, MAX - 100));
        // Both flooding: half each.
        assert_eq!(shared(MAX, MAX), (MAX / 2, MAX - MAX / 2));
        assert_eq!(shared(MAX / 2 + 7, MAX), (MAX / 2, MAX - MAX / 2));
        for (o, e) in [(MAX, MAX), (MAX, 1), (3, MAX), (MAX / 2, MAX / 2 + 1)] {
            let (ko, ke) = shared(o, e);
            assert!(ko + ke <= MAX, "{o}+{e} kept {ko}+{ke}");
        }
    }
}
