//! `monitor.json`: what huskd tells one `husk-monitor` about its container (huskd writes this
//! very type, the monitor reads it).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The configuration of one monitor process; one container each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorConfig {
    /// Container id as known to the OCI runtime.
    pub id: String,
    /// The OCI bundle directory (holds `config.json`).
    pub bundle: PathBuf,
    /// The runtime binary (`/usr/bin/crun`, `/usr/sbin/runc`).
    pub runtime_path: PathBuf,
    /// The runtime's state directory (`--root`).
    pub runtime_root: PathBuf,
    /// Pass `--systemd-cgroup` to the runtime.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// The CRI log file; `None` writes no log (output still goes to attached clients).
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The control socket the monitor listens on.
    pub socket: PathBuf,
    /// Where the exit record is written (atomically) once the container has exited.
    pub exit_file: PathBuf,
    /// The runtime writes the container's pid here.
    pub pid_file: PathBuf,
    /// The runtime's own log (`--log`, JSON lines); its errors come from here.
    pub runtime_log: PathBuf,
    /// Give the container a pseudo-terminal instead of pipes.
    #[serde(default)]
    pub tty: bool,
    /// Keep the container's stdin open for attach clients.
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin when the first client that attached with stdin detaches.
    #[serde(default)]
    pub stdin_once: bool,
    /// cgroup files or directories to check for OOM kills after the exit (`memory.oom_control`
    /// on cgroup v1, `memory.events` on v2; a directory is searched for either).
    #[serde(default)]
    pub cgroup_oom_paths: Vec<PathBuf>,
}

impl MonitorConfig {
    /// The directory of the control socket; the console socket and `monitor.log` live there.
    pub fn state_dir(&self) -> &Path {
        self.socket.parent().unwrap_or_else(|| Path::new("/"))
    }

    /// The socket on which the runtime hands over the pty master in `tty` mode.
    pub fn console_socket(&self) -> PathBuf {
        self.state_dir().join("console.sock")
    }

    /// Where the monitor's own stdout/stderr go once the container is created.
    pub fn monitor_log(&self) -> PathBuf {
        self.state_dir().join("monitor.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let json = r#"{"id":"c1","bundle":"/b","runtime_path":"/usr/bin/crun",
            "runtime_root":"/run/r","log_path":null,"socket":"/run/c1/monitor.sock",
            "exit_file":"/run/c1/exit.json","pid_file":"/run/c1/pid","runtime_log":"/run/c1/rt.log"}"#;
        let cfg: MonitorConfig = serde_json::from_str(json).unwrap();
        assert_eq!(cfg.log_path, None);
        assert!(!cfg.tty && !cfg.stdin && !cfg.stdin_once && !cfg.systemd_cgroup);
        assert_eq!(cfg.console_socket(), Path::new("/run/c1/console.sock"));
        assert_eq!(cfg.monitor_log(), Path::new("/run/c1/monitor.log"));
        let back: MonitorConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }
}
