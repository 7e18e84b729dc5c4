//! huskd's configuration: the TOML file (`/etc/husk/config.toml`), defaults, flag overrides and
//! validation. Unknown keys and bad values stop the daemon with the key and the file named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

pub const DEFAULT_CONFIG: &str = "/etc/husk/config.toml";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent state: content, snapshots, metadata.
    pub root: PathBuf,
    /// Runtime state (tmpfs).
    pub state_dir: PathBuf,
    /// The gRPC socket.
    pub socket: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace` or a tracing filter.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: String,
    pub registry: RegistryConfig,
    pub cni: CniConfig,
    pub runtimes: BTreeMap<String, RuntimeConfig>,
    /// The handler used when a pod names none; crun when installed, else runc.
    pub default_runtime: Option<String>,
    /// `cgroupfs` or `systemd`, as the kubelet's cgroupDriver.
    pub cgroup_driver: String,
    /// The cgroup parent of pods whose config names none (an absolute cgroupfs path, or a
    /// systemd slice with the systemd driver).
    pub default_cgroup_parent: String,
    /// The `husk-monitor` binary; default: next to `huskd`, else from PATH.
    pub monitor_path: Option<PathBuf>,
    /// The streaming server (exec, attach, port-forward).
    pub stream: StreamConfig,
    /// The Prometheus `/metrics` endpoint; off unless `address` is set.
    pub metrics: MetricsConfig,
}

/// The streaming server's settings (containerd's `stream_server_*` and `enable_tls`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// The IP address to listen on.
    pub address: String,
    /// The TCP port; 0 picks a free one.
    pub port: u16,
    /// Serve HTTPS; without cert and key files, with a self-signed certificate.
    pub enable_tls: bool,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            address: "127.0.0.1".into(),
            port: 0,
            enable_tls: false,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// The Prometheus endpoint (`[metrics]`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:port` serving `GET /metrics`, e.g. `127.0.0.1:9090`; absent: no endpoint.
    pub address: Option<String>,
}

impl MetricsConfig {
    /// The endpoint's address, when configured and valid (see [`Config::validate`]).
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        self.address.as_deref().and_then(|a| a.parse().ok())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// containerd's hosts.toml layout: `<config_path>/<host>/hosts.toml`.
    pub config_path: PathBuf,
    /// Blob downloads at once, across all pulls.
    pub max_concurrent_downloads: usize,
    /// The most bytes an ImportImage archive may hold (and the tar inside it when compressed);
    /// more is refused with RESOURCE_EXHAUSTED. Default 4 GiB.
    pub max_import_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    /// Which family is the pod's primary IP on dual-stack networks: `ipv4` or `ipv6`.
    pub ip_preference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The OCI runtime binary (a name looked up in PATH, or a path).
    pub path: String,
}

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert(
            "runc".into(),
            RuntimeConfig {
                path: "runc".into(),
            },
        );
        runtimes.insert(
            "crun".into(),
            RuntimeConfig {
                path: "crun".into(),
            },
        );
        Config {
            root: "/var/lib/husk".into(),
            state_dir: "/run/husk".into(),
            socket: "/run/husk/husk.sock".into(),
            log_level: "info".into(),
            log_format: "text".into(),
            registry: RegistryConfig::default(),
            cni: CniConfig::default(),
            runtimes,
            default_runtime: None,
            cgroup_driver: "cgroupfs".into(),
            default_cgroup_parent: "/husk".into(),
            monitor_path: None,
            stream: StreamConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: "/etc/husk/certs.d".into(),
            max_concurrent_downloads: 3,
            max_import_bytes: husk_image::DEFAULT_MAX_IMPORT_BYTES,
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: "/etc/cni/net.d".into(),
            bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
            ip_preference: "ipv4".into(),
        }
    }
}

/// A semantic problem of a config: its dotted key (`stream.address`, `runtimes.kata.path`) and
/// a message naming that key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

/// Flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub root: Option<PathBuf>,
    pub state_dir: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub log_level: Option<String>,
}

impl Config {
    /// Loads `path`; when it is the default path and does not exist, the defaults apply.
    pub fn load(path: &Path, explicit: bool, ov: &Overrides) -> anyhow::Result<Config> {
        let mut cfg = match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Config::default(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading config file {}", path.display()));
            }
        };
        if let Some(v) = &ov.root {
            cfg.root = v.clone();
        }
        if let Some(v) = &ov.state_dir {
            cfg.state_dir = v.clone();
        }
        if let Some(v) = &ov.socket {
            cfg.socket = v.clone();
        }
        if let Some(v) = &ov.log_level {
            cfg.log_level = v.clone();
        }
        cfg.validate()
            .with_context(|| format!("invalid configuration (file {})", path.display()))?;
        Ok(cfg)
    }

    /// Parses TOML text; the error names the file and the key.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Config> {
        toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            )
        })
    }

    /// Semantic checks the types can't express: the first problem found, if any (what stops
    /// the daemon; `huskd config check` reports all of them, see [`Config::problems`]).
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.problems().into_iter().next() {
            Some(p) => bail!("{}", p.message),
            None => Ok(()),
        }
    }

    /// Every semantic problem, in file order of the keys: each names its dotted key (for the
    /// line `huskd config check` prints) and a message that starts with that key.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, message: String| {
            out.push(Problem {
                key: key.to_string(),
                message,
            })
        };
        for (key, p) in [
            ("root", &self.root),
            ("state_dir", &self.state_dir),
            ("socket", &self.socket),
            ("registry.config_path", &self.registry.config_path),
            ("cni.conf_dir", &self.cni.conf_dir),
        ] {
            if !p.is_absolute() {
                bad(
                    key,
                    format!(
                        "{key} = {:?}: must be an absolute path",
                        p.display().to_string()
                    ),
                );
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            bad(
                "log_level",
                format!(
                    "log_level = {:?}: not a level (error, warn, info, debug, trace)",
                    self.log_level
                ),
            );
        }
        if !["text", "json"].contains(&self.log_format.as_str()) {
            bad(
                "log_format",
                format!(
                    "log_format = {:?}: must be \"text\" or \"json\"",
                    self.log_format
                ),
            );
        }
        if self.runtimes.is_empty() {
            bad(
                "runtimes",
                "runtimes: at least one OCI runtime must be configured".into(),
            );
        }
        for (name, rt) in &self.runtimes {
            if rt.path.trim().is_empty() {
                bad(
                    &format!("runtimes.{name}.path"),
                    format!("runtimes.{name}.path: must not be empty"),
                );
            }
        }
        if let Some(d) = &self.default_runtime
            && !self.runtimes.contains_key(d)
        {
            bad(
                "default_runtime",
                format!(
                    "default_runtime = {d:?}: no [runtimes.{d}] section (have: {})",
                    self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
        if !["cgroupfs", "systemd"].contains(&self.cgroup_driver.as_str()) {
            bad(
                "cgroup_driver",
                format!(
                    "cgroup_driver = {:?}: must be \"cgroupfs\" or \"systemd\"",
                    self.cgroup_driver
                ),
            );
        } else if self.cgroup_driver == "systemd" {
            bad(
                "cgroup_driver",
                "cgroup_driver = \"systemd\": not supported by husk yet (use cgroupfs)".into(),
            );
        }
        let parent = &self.default_cgroup_parent;
        if !parent.starts_with('/') || parent.split('/').any(|c| c == "..") {
            bad(
                "default_cgroup_parent",
                format!(
                    "default_cgroup_parent = {parent:?}: must be an absolute cgroup path without \"..\""
                ),
            );
        }
        if self.registry.max_concurrent_downloads == 0 {
            bad(
                "registry.max_concurrent_downloads",
                "registry.max_concurrent_downloads = 0: must be at least 1".into(),
            );
        }
        if self.registry.max_import_bytes == 0 {
            bad(
                "registry.max_import_bytes",
                "registry.max_import_bytes = 0: must be at least 1".into(),
            );
        }
        if !["ipv4", "ipv6"].contains(&self.cni.ip_preference.as_str()) {
            bad(
                "cni.ip_preference",
                format!(
                    "cni.ip_preference = {:?}: must be \"ipv4\" or \"ipv6\"",
                    self.cni.ip_preference
                ),
            );
        }
        if self.stream.address.parse::<std::net::IpAddr>().is_err() {
            bad(
                "stream.address",
                format!(
                    "stream.address = {:?}: not an IP address",
                    self.stream.address
                ),
            );
        }
        match (&self.stream.tls_cert_file, &self.stream.tls_key_file) {
            (Some(_), None) => bad(
                "stream.tls_cert_file",
                "stream.tls_cert_file and stream.tls_key_file go together".into(),
            ),
            (None, Some(_)) => bad(
                "stream.tls_key_file",
                "stream.tls_cert_file and stream.tls_key_file go together".into(),
            ),
            (Some(_), Some(_)) if !self.stream.enable_tls => bad(
                "stream.tls_cert_file",
                "stream.tls_cert_file is set but stream.enable_tls is false".into(),
            ),
            _ => {}
        }
        if let Some(a) = &self.metrics.address
            && a.parse::<std::net::SocketAddr>().is_err()
        {
            bad(
                "metrics.address",
                format!(
                    "metrics.address = {a:?}: not an IP address and port (e.g. \"127.0.0.1:9090\")"
                ),
            );
        }
        out
    }

    /// The default handler: the configured one, else crun when its binary is found, else runc.
    pub fn default_runtime_name(&self) -> String {
        if let Some(d) = &self.default_runtime {
            return d.clone();
        }
        for pref in ["crun", "runc"] {
            if let Some(rt) = self.runtimes.get(pref)
                && find_binary(&rt.path).is_some()
            {
                return pref.into();
            }
        }
        self.runtimes
            .keys()
            .next()
            .cloned()
            .unwrap_or_else(|| "runc".into())
    }
}

/// Resolves a binary name through PATH (a path with a slash is taken as is).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/etc/husk/config.toml")
    }

    #[test]
    fn the_documented_example_parses() {
        let text = r#"
root = "/var/lib/husk"
state_dir = "/run/husk"
socket = "/run/husk/husk.sock"
[registry]
config_path = "/etc/husk/certs.d"
[cni]
conf_dir = "/etc/cni/net.d"
bin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
[runtimes.runc]
path = "runc"
[runtimes.crun]
path = "crun"
default_runtime = "runc"
"#;
        // default_runtime after a table belongs to that table: the example puts it there
        // commented out; a real user writes it at the top.
        assert!(Config::parse(text, &p()).is_err());
        let text = text.replace("default_runtime = \"runc\"\n", "");
        let c = Config::parse(&format!("default_runtime = \"runc\"\n{text}"), &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.default_runtime_name(), "runc");
        assert_eq!(c.cni.bin_dirs.len(), 2);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_key_and_file() {
        let e = Config::parse("roots = \"/x\"", &p())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("roots") && e.contains("/etc/husk/config.toml"),
            "{e}"
        );
        let e = Config::parse("[registry]\nconfig_pth = \"/x\"", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("config_pth"), "{e}");
        let e = Config::parse("root = 5", &p()).unwrap_err().to_string();
        assert!(e.contains("root"), "{e}");
        let c = Config::parse("root = \"relative\"", &p()).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("root"));
        let c = Config::parse("default_runtime = \"kata\"", &p()).unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("kata"));
        for bad in ["husk", "/a/../b"] {
            let c = Config::parse(&format!("default_cgroup_parent = {bad:?}"), &p()).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("default_cgroup_parent"), "{e}");
        }
        let c = Config::parse("default_cgroup_parent = \"/kubepods\"", &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(Config::default().default_cgroup_parent, "/husk");
    }

    #[test]
    fn stream_settings_are_checked() {
        let c = Config::parse("[stream]\naddress = \"0.0.0.0\"\nport = 10010", &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.stream.port, 10010);
        let c = Config::parse("[stream]\naddress = \"localhost\"", &p()).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("stream.address"), "{e}");
        let c = Config::parse(
            "[stream]\nenable_tls = true\ntls_cert_file = \"/c.pem\"",
            &p(),
        )
        .unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("tls_key_file"), "{e}");
        let e = Config::parse("[stream]\nport = 70000", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("port"), "{e}");
        let e = Config::parse("[stream]\nstream_idle = 1", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("stream_idle"), "{e}");
    }

    #[test]
    fn metrics_address_is_optional_and_checked() {
        assert_eq!(Config::default().metrics.socket_addr(), None);
        let c = Config::parse("[metrics]\n", &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.metrics.socket_addr(), None);
        let c = Config::parse("[metrics]\naddress = \"127.0.0.1:9090\"", &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.metrics.socket_addr(),
            Some("127.0.0.1:9090".parse().unwrap())
        );
        let c = Config::parse("[metrics]\naddress = \"[::1]:9090\"", &p()).unwrap();
        c.validate().unwrap();
        for bad in ["localhost:9090", "127.0.0.1", "127.0.0.1:99999", ""] {
            let c = Config::parse(&format!("[metrics]\naddress = {bad:?}"), &p()).unwrap();
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("metrics.address"), "{bad}: {e}");
        }
        let e = Config::parse("[metrics]\nadress = \"127.0.0.1:9090\"", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("adress"), "{e}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_missing_explicit_file_fails() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope.toml");
        let c = Config::load(&missing, false, &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert!(Config::load(&missing, true, &Overrides::default()).is_err());
        let ov = Overrides {
            root: Some("/tmp/r".into()),
            ..Default::default()
        };
        assert_eq!(
            Config::load(&missing, false, &ov).unwrap().root,
            PathBuf::from("/tmp/r")
        );
    }

    #[test]
    fn max_import_bytes_defaults_to_4_gib_and_is_checked() {
        assert_eq!(Config::default().registry.max_import_bytes, 4 << 30);
        let c = Config::parse("[registry]\nmax_import_bytes = 1048576", &p()).unwrap();
        c.validate().unwrap();
        assert_eq!(c.registry.max_import_bytes, 1 << 20);
        let c = Config::parse("[registry]\nmax_import_bytes = 0", &p()).unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("registry.max_import_bytes"), "{e}");
        let e = Config::parse("[registry]\nmax_import_bytes = -1", &p())
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_import_bytes"), "{e}");
    }
}
