//! Running one plugin (libcni's `invoke`): lookup in the bin dirs, the `CNI_*` environment,
//! config on stdin, stdout/stderr collected, a deadline that kills the plugin's whole process
//! group, and CNI error objects turned into typed errors.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::error::{CniCommand, NetError, PluginError};

/// Everything a call needs besides the plugin and its stdin.
#[derive(Debug, Clone)]
pub(crate) struct CallEnv {
    pub container_id: String,
    /// `CNI_NETNS`; empty for a DEL whose namespace is gone.
    pub netns: String,
    pub ifname: String,
    pub cni_args: String,
    pub bin_dirs: Arc<[PathBuf]>,
    pub timeout: Duration,
}

/// The error object of the CNI spec.
#[derive(Deserialize)]
struct ErrorObject {
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Runs `plugin` for `command` with `stdin` as its config; returns its stdout on success.
pub(crate) async fn exec_plugin(
    plugin: &str,
    network: &str,
    command: CniCommand,
    env: &CallEnv,
    stdin: &[u8],
) -> Result<Vec<u8>, NetError> {
    let path =
        find_plugin(&env.bin_dirs, plugin)
            .await
            .ok_or_else(|| NetError::PluginNotFound {
                plugin: plugin.into(),
                network: network.into(),
                dirs: env.bin_dirs.to_vec(),
            })?;
    let started = Instant::now();
    let mut child = spawn(&path, command, env).await?;
    let pid = child.id();
    let mut input = child.stdin.take();
    let run = async {
        let write = async {
            if let Some(mut w) = input.take() {
                // A plugin may exit without reading its config: a broken pipe is its business.
                let _ = w.write_all(stdin).await;
                let _ = w.shutdown().await;
            }
        };
        let (_, out) = tokio::join!(write, child.wait_with_output());
        out
    };
    let output = match tokio::time::timeout(env.timeout, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(source)) => {
            return Err(NetError::Spawn {
                path,
                command,
                source,
            });
        }
        Err(_) => {
            // Dropping the future killed the plugin (kill_on_drop); take its children too.
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            return Err(NetError::Timeout {
                plugin: plugin.into(),
                network: network.into(),
                command,
                timeout: env.timeout,
            });
        }
    };
    tracing::debug!(
        sandbox = %env.container_id,
        plugin,
        %command,
        status = %output.status,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "CNI plugin returned"
    );
    if output.status.success() {
        return Ok(output.stdout);
    }
    Err(plugin_failure(
        plugin,
        network,
        command,
        &output.status.to_string(),
        &output.stdout,
        &output.stderr,
    ))
}

/// Turns a failed run into an error: the CNI error object on stdout when there is one,
/// otherwise the exit status with stderr (and whatever stdout held).
pub(crate) fn plugin_failure(
    plugin: &str,
    network: &str,
    command: CniCommand,
    status: &str,
    stdout: &[u8],
    stderr: &[u8],
) -> NetError {
    if let Ok(e) = serde_json::from_slice::<ErrorObject>(stdout) {
        return NetError::Plugin(PluginError {
            plugin: plugin.into(),
            network: network.into(),
            command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        });
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stdout = String::from_utf8_lossy(stdout);
    let mut output = match stderr.trim() {
        "" => "no error message".to_string(),
        s => format!("stderr: {s}"),
    };
    if !stdout.trim().is_empty() {
        output.push_str(&format!("; stdout: {}", stdout.trim()));
    }
    NetError::PluginFailed {
        plugin: plugin.into(),
        network: network.into(),
        command,
        status: status.into(),
        output,
    }
}

async fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    let dirs = bin_dirs.to_vec();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || crate::config::find_plugin(&dirs, &name))
        .await
        .ok()
        .flatten()
}

async fn spawn(
    path: &Path,
    command: CniCommand,
    env: &CallEnv,
) -> Result<tokio::process::Child, NetError> {
    let cni_path = env
        .bin_dirs
        .iter()
        .map(|d| d.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let mut attempt = 0;
    loop {
        // The rest of our environment (PATH above all: plugins run iptables) is inherited.
        let spawned = tokio::process::Command::new(path)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", &env.container_id)
            .env("CNI_NETNS", &env.netns)
            .env("CNI_IFNAME", &env.ifname)
            .env("CNI_ARGS", &env.cni_args)
            .env("CNI_PATH", &cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => return Ok(child),
            // A binary being written (or just written by a forking thread) is busy for a moment;
            // libcni retries too.
            Err(e)
                if e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error())
                    && attempt < 5 =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(source) => {
                return Err(NetError::Spawn {
                    path: path.to_path_buf(),
                    command,
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_object_is_parsed() {
        let e = plugin_failure(
            "bridge",
            "podnet",
            CniCommand::Add,
            "exit status: 1",
            br#"{"cniVersion":"1.0.0","code":11,"msg":"try again","details":"lock busy"}"#,
            b"some log",
        );
        let NetError::Plugin(p) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (p.code, p.msg.as_str(), p.details.as_str()),
            (11, "try again", "lock busy")
        );
        assert_eq!(
            e.to_string(),
            "CNI plugin bridge ADD on network podnet failed with code 11: try again (lock busy)"
        );
    }

    #[test]
    fn non_json_failure_includes_stderr_and_stdout() {
        let e = plugin_failure(
            "portmap",
            "podnet",
            CniCommand::Del,
            "exit status: 2",
            b"panic: oops",
            b"goroutine 1 [running]\n",
        );
        assert_eq!(
            e.to_string(),
            "CNI plugin portmap DEL on network podnet failed (exit status: 2): \
             stderr: goroutine 1 [running]; stdout: panic: oops"
        );
        let e = plugin_failure("x", "n", CniCommand::Check, "signal: 9", b"", b"");
        assert!(
            e.to_string().ends_with("(signal: 9): no error message"),
            "{e}"
        );
    }
}
