//! The monitor process: start the container (reporting the result on stdout), then watch it
//! until it exits.

mod clients;
mod event_loop;
mod frames;
mod oom;
mod queue;
mod runtime;
mod start;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use husk_monitor::MonitorConfig;
use husk_monitor::protocol::StartReply;

/// Runs one monitor from its config file; returns when the container is gone.
pub fn run(config_path: &Path) -> ExitCode {
    let cfg: MonitorConfig = match std::fs::read(config_path)
        .map_err(|e| format!("failed to read config {config_path:?}: {e}"))
        .and_then(|d| {
            serde_json::from_slice(&d)
                .map_err(|e| format!("failed to parse config {config_path:?}: {e}"))
        }) {
        Ok(cfg) => cfg,
        Err(message) => {
            reply(&StartReply {
                ok: false,
                pid: None,
                error: Some(message),
            });
            return ExitCode::FAILURE;
        }
    };
    let started = match start::start(&cfg) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&cfg.socket);
            reply(&StartReply {
                ok: false,
                pid: None,
                error: Some(error_chain(&e)),
            });
            return ExitCode::FAILURE;
        }
    };
    reply(&StartReply {
        ok: true,
        pid: Some(started.pid.as_raw_pid()),
        error: None,
    });
    detach_stdio(&cfg);
    event_loop::Monitor::new(cfg, started).run();
    ExitCode::SUCCESS
}

/// `error: cause: cause`, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The single line huskd waits for.
fn reply(r: &StartReply) {
    let line =
        serde_json::to_string(r).unwrap_or_else(|_| r#"{"ok":false,"error":"encoding"}"#.into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// huskd stops reading our stdout: from now on stdin is /dev/null and stdout/stderr go to
/// `monitor.log` (or /dev/null) so the monitor never dies of a closed pipe.
fn detach_stdio(cfg: &MonitorConfig) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.monitor_log())
        .or_else(|_| std::fs::OpenOptions::new().write(true).open("/dev/null"));
    if let Ok(log) = log {
        let _ = rustix::stdio::dup2_stdout(&log);
        let _ = rustix::stdio::dup2_stderr(&log);
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
}
