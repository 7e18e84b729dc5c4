//! Network configuration: picking the config file (`*.conflist`, `*.conf`, `*.json`, first in
//! lexical order, like libcni's `ConfFiles`), parsing and validating it into a plugin list.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::NotReady;

/// The CNI spec versions we speak.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// File extensions considered in the config directory, as containerd does.
pub const CONFIG_EXTENSIONS: &[&str] = &["conflist", "conf", "json"];

/// A network configuration list: what every CNI call runs through.
#[derive(Debug, Clone, PartialEq)]
pub struct CniConfig {
    /// The network name, injected into every plugin's config.
    pub name: String,
    /// The list's `cniVersion`, injected into every plugin's config.
    pub cni_version: String,
    /// `disableCheck`: CHECK is a no-op for this network.
    pub disable_check: bool,
    /// The plugins, in ADD order.
    pub plugins: Vec<PluginConf>,
    /// The file it came from (None for a config restored from the cache).
    pub source: Option<PathBuf>,
}

/// One plugin of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    /// `type`: the executable's file name.
    pub plugin_type: String,
    /// The capabilities the plugin declares (`"capabilities": {"portMappings": true}`).
    pub capabilities: BTreeSet<String>,
    /// The plugin's config object as written.
    pub(crate) raw: Map<String, Value>,
}

/// Why a config file is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("not a JSON object")]
    NotObject,
    #[error("missing {0:?}")]
    Missing(&'static str),
    #[error("{field:?} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error(
        "invalid network name {0:?}: must start with a letter or digit, followed by letters, \
         digits, '_', '.' or '-'"
    )]
    InvalidName(String),
    #[error("unsupported cniVersion {0:?} (supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0)")]
    UnsupportedVersion(String),
    #[error("no plugins in list")]
    NoPlugins,
    #[error("invalid plugin type {0:?}: must be a file name")]
    InvalidType(String),
    #[error("plugins[{index}]: {source}")]
    Plugin {
        index: usize,
        source: Box<ConfigError>,
    },
}

impl CniConfig {
    /// Loads the first config file of `conf_dir` in lexical order and checks that every plugin it
    /// names (and its `ipam.type`) exists in `bin_dirs`. The error says what is missing or wrong.
    pub fn load(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Result<Self, NotReady> {
        let files = conf_files(conf_dir).map_err(|e| {
            NotReady::new(format!(
                "cannot read CNI config directory {conf_dir:?}: {e}"
            ))
        })?;
        let Some(file) = files.first() else {
            return Err(NotReady::new(format!(
                "no network config found in {conf_dir:?} (looked for *.conflist, *.conf, *.json)"
            )));
        };
        let bytes = fs::read(file)
            .map_err(|e| NotReady::new(format!("cannot read network config {file:?}: {e}")))?;
        let parsed = if file.extension().is_some_and(|e| e == "conflist") {
            Self::from_conflist_bytes(&bytes)
        } else {
            Self::from_conf_bytes(&bytes)
        };
        let mut cfg =
            parsed.map_err(|e| NotReady::new(format!("invalid network config {file:?}: {e}")))?;
        cfg.source = Some(file.clone());
        for plugin in &cfg.plugins {
            let ipam = plugin.raw.get("ipam").and_then(|i| i.get("type"));
            let names = std::iter::once(plugin.plugin_type.as_str())
                .chain(ipam.and_then(Value::as_str).filter(|t| valid_type(t)));
            for name in names {
                if find_plugin(bin_dirs, name).is_none() {
                    return Err(NotReady::new(format!(
                        "plugin {name:?} of network {} ({file:?}) not found in {bin_dirs:?}",
                        cfg.name
                    )));
                }
            }
        }
        Ok(cfg)
    }

    /// Parses a `.conflist`: `{name, cniVersion | cniVersions, disableCheck, plugins: [..]}`.
    pub fn from_conflist_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_conflist_value(serde_json::from_slice(bytes)?)
    }

    /// Parses a single-plugin `.conf` (or `.json`) into a one-plugin list, like libcni's
    /// `ConfListFromConf`. A file that has a `plugins` array is read as a list.
    pub fn from_conf_bytes(bytes: &[u8]) -> Result<Self, ConfigError> {
        let v: Value = serde_json::from_slice(bytes)?;
        let obj = v.as_object().ok_or(ConfigError::NotObject)?;
        if obj.contains_key("plugins") {
            return Self::from_conflist_value(v);
        }
        let (name, cni_version) = name_and_version(obj)?;
        let plugin = PluginConf::from_value(&v)?;
        Ok(CniConfig {
            name,
            cni_version,
            disable_check: false,
            plugins: vec![plugin],
            source: None,
        })
    }

    pub(crate) fn from_conflist_value(v: Value) -> Result<Self, ConfigError> {
        let obj = v.as_object().ok_or(ConfigError::NotObject)?;
        let (name, cni_version) = name_and_version(obj)?;
        let disable_check = match obj.get("disableCheck") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
            Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "disableCheck",
                    expected: "true or false",
                });
            }
        };
        let list = match obj.get("plugins") {
            None => return Err(ConfigError::Missing("plugins")),
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "plugins",
                    expected: "an array",
                });
            }
        };
        if list.is_empty() {
            return Err(ConfigError::NoPlugins);
        }
        let plugins = list
            .iter()
            .enumerate()
            .map(|(index, p)| {
                PluginConf::from_value(p).map_err(|e| ConfigError::Plugin {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CniConfig {
            name,
            cni_version,
            disable_check,
            plugins,
            source: None,
        })
    }

    /// The list as JSON (what the cache stores; [`CniConfig::from_conflist_value`] reads it).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins.iter().map(|p| Value::Object(p.raw.clone())).collect::<Vec<_>>(),
        })
    }

    /// Whether the list's version is at least `min` (`(major, minor, patch)`).
    pub fn version_at_least(&self, min: (u64, u64, u64)) -> bool {
        parse_version(&self.cni_version).is_some_and(|v| v >= min)
    }
}

impl PluginConf {
    fn from_value(v: &Value) -> Result<Self, ConfigError> {
        let raw = v.as_object().ok_or(ConfigError::NotObject)?.clone();
        let plugin_type = match raw.get("type") {
            None => return Err(ConfigError::Missing("type")),
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "type",
                    expected: "a string",
                });
            }
        };
        if !valid_type(&plugin_type) {
            return Err(ConfigError::InvalidType(plugin_type));
        }
        let capabilities = match raw.get("capabilities") {
            None | Some(Value::Null) => BTreeSet::new(),
            Some(Value::Object(caps)) => caps
                .iter()
                .filter(|(_, on)| on.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            Some(_) => {
                return Err(ConfigError::WrongType {
                    field: "capabilities",
                    expected: "an object",
                });
            }
        };
        Ok(PluginConf {
            plugin_type,
            capabilities,
            raw,
        })
    }
}

fn name_and_version(obj: &Map<String, Value>) -> Result<(String, String), ConfigError> {
    let name = match obj.get("name") {
        None => return Err(ConfigError::Missing("name")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ConfigError::WrongType {
                field: "name",
                expected: "a string",
            });
        }
    };
    if !valid_name(&name) {
        return Err(ConfigError::InvalidName(name));
    }
    // CNI 1.1: `cniVersions` lists the versions the file is valid for; pick the highest we speak.
    if let Some(versions) = obj.get("cniVersions") {
        let list = versions.as_array().ok_or(ConfigError::WrongType {
            field: "cniVersions",
            expected: "an array of strings",
        })?;
        let best = list
            .iter()
            .filter_map(Value::as_str)
            .filter(|v| SUPPORTED_VERSIONS.contains(v))
            .max_by_key(|v| parse_version(v));
        if let Some(v) = best {
            return Ok((name, v.to_string()));
        }
        if !obj.contains_key("cniVersion") {
            return Err(ConfigError::UnsupportedVersion(versions.to_string()));
        }
    }
    let version = match obj.get("cniVersion") {
        None => return Err(ConfigError::Missing("cniVersion")),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ConfigError::WrongType {
                field: "cniVersion",
                expected: "a string",
            });
        }
    };
    if !SUPPORTED_VERSIONS.contains(&version.as_str()) {
        return Err(ConfigError::UnsupportedVersion(version));
    }
    Ok((name, version))
}

/// `major.minor.patch` as numbers.
pub(crate) fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
    let major = it.next()??;
    let minor = it.next().unwrap_or(Some(0))?;
    let patch = it.next().unwrap_or(Some(0))?;
    it.next().is_none().then_some((major, minor, patch))
}

/// Network names and container ids: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (CNI spec).
pub(crate) fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A plugin type is looked up as a file name in the bin dirs: no path separators.
fn valid_type(t: &str) -> bool {
    !t.is_empty() && t != "." && t != ".." && !t.contains('/') && !t.contains('\0')
}

/// The first regular file named `name` in `bin_dirs` (libcni `FindInPath`).
pub(crate) fn find_plugin(bin_dirs: &[PathBuf], name: &str) -> Option<PathBuf> {
    if !valid_type(name) {
        return None;
    }
    bin_dirs
        .iter()
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file()))
}

/// Candidate config files of `dir` (files, not directories; symlinks followed), sorted by name.
pub fn conf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let matches = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e));
        if matches && fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Fixtures shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use std::fs;
    use std::path::PathBuf;

    /// Fake plugin binaries in a temp dir; the bin dirs list a missing dir first.
    pub(crate) fn bins() -> (tempfile::TempDir, Vec<PathBuf>) {
        let d = tempfile::tempdir().unwrap();
        for p in ["bridge", "host-local", "portmap", "loopback"] {
            fs::write(d.path().join(p), "#!/bin/sh\n").unwrap();
        }
        let dirs = vec![d.path().join("missing"), d.path().to_path_buf()];
        (d, dirs)
    }

    pub(crate) const LIST: &str = r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
        {"type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}},
        {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#;
}

#[cfg(test)]
mod tests {
    use super::fixtures::{LIST, bins};
    use super::*;

    #[test]
    fn first_file_in_lexical_order_wins() {
        let (_b, bin_dirs) = bins();
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("20-b.conflist"),
            LIST.replace("podnet", "second"),
        )
        .unwrap();
        fs::write(d.path().join("10-a.conflist"), LIST).unwrap();
        fs::write(d.path().join("05-ignored.txt"), "junk").unwrap();
        fs::create_dir(d.path().join("00-dir.conf")).unwrap();
        let c = CniConfig::load(d.path(), &bin_dirs).unwrap();
        assert_eq!(c.name, "podnet");
        assert_eq!(
            c.source.as_deref(),
            Some(d.path().join("10-a.conflist").as_path())
        );
        assert_eq!(c.plugins.len(), 2);
        assert_eq!(
            c.plugins[1].capabilities,
            BTreeSet::from(["portMappings".into()])
        );
        assert!(!c.disable_check);
    }

    #[test]
    fn single_conf_becomes_a_one_plugin_list() {
        let (_b, bin_dirs) = bins();
        let d = tempfile::tempdir().unwrap();
        let conf = r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"x"}"#;
        fs::write(d.path().join("10-single.conf"), conf).unwrap();
        fs::write(d.path().join("99-z.conflist"), LIST).unwrap();
        let c = CniConfig::load(d.path(), &bin_dirs).unwrap();
        assert_eq!(
            (c.name.as_str(), c.cni_version.as_str()),
            ("single", "0.4.0")
        );
        assert_eq!(c.plugins.len(), 1);
        assert_eq!(c.plugins[0].plugin_type, "bridge");
        assert_eq!(c.plugins[0].raw["bridge"], "x");
        // A .json file holding a list is read as a list.
        let c = CniConfig::from_conf_bytes(LIST.as_bytes()).unwrap();
        assert_eq!(c.plugins.len(), 2);
    }

    #[test]
    fn invalid_configs_say_why() {
        let cases: &[(&str, &str)] = &[
            ("{", "invalid JSON"),
            ("[]", "not a JSON object"),
            (
                r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#,
                "missing \"name\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"-x","plugins":[{"type":"a"}]}"#,
                "invalid network name",
            ),
            (
                r#"{"name":"n","plugins":[{"type":"a"}]}"#,
                "missing \"cniVersion\"",
            ),
            (
                r#"{"cniVersion":"0.2.0","name":"n","plugins":[{"type":"a"}]}"#,
                "unsupported cniVersion \"0.2.0\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#,
                "no plugins",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n"}"#,
                "missing \"plugins\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a"},{"x":1}]}"#,
                "plugins[1]: missing \"type\"",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../sh"}]}"#,
                "invalid plugin type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":3,"plugins":[{"type":"a"}]}"#,
                "disableCheck",
            ),
        ];
        for (text, want) in cases {
            let err = CniConfig::from_conflist_bytes(text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = CniConfig::from_conf_bytes(br#"{"cniVersion":"1.0.0","name":"n"}"#).unwrap_err();
        assert!(err.to_string().contains("missing \"type\""), "{err}");
    }

    #[test]
    fn disable_check_and_cni_versions() {
        let c = CniConfig::from_conflist_bytes(
            br#"{"cniVersions":["0.4.0","1.0.0","9.9.9"],"name":"n","disableCheck":"true","plugins":[{"type":"a"}]}"#,
        )
        .unwrap();
        assert_eq!(c.cni_version, "1.0.0");
        assert!(c.disable_check);
        assert!(c.version_at_least((0, 4, 0)));
        assert!(!c.version_at_least((1, 1, 0)));
        // Round trip through the cache form.
        assert_eq!(CniConfig::from_conflist_value(c.to_json()).unwrap(), c);
    }

    #[test]
    fn not_ready_messages_name_the_problem() {
        let (_b, bin_dirs) = bins();
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = CniConfig::load(&missing, &bin_dirs).unwrap_err();
        assert!(
            e.message.contains("cannot read CNI config directory"),
            "{e}"
        );
        let e = CniConfig::load(d.path(), &bin_dirs).unwrap_err();
        assert!(e.message.contains("no network config found"), "{e}");
        fs::write(d.path().join("10-bad.conflist"), "{nope").unwrap();
        fs::write(d.path().join("20-good.conflist"), LIST).unwrap();
        let e = CniConfig::load(d.path(), &bin_dirs).unwrap_err();
        assert!(
            e.message.contains("10-bad.conflist") && e.message.contains("invalid JSON"),
            "{e}"
        );
        fs::remove_file(d.path().join("10-bad.conflist")).unwrap();
        fs::write(
            d.path().join("10-x.conflist"),
            LIST.replace("\"host-local\"", "\"dhcp\""),
        )
        .unwrap();
        let e = CniConfig::load(d.path(), &bin_dirs).unwrap_err();
        assert!(
            e.message.contains("plugin \"dhcp\" of network podnet"),
            "{e}"
        );
        assert_eq!(e.reason, "NetworkPluginNotReady");
    }

    #[test]
    fn versions_and_names() {
        assert_eq!(parse_version("1.0.0"), Some((1, 0, 0)));
        assert_eq!(parse_version("0.4"), Some((0, 4, 0)));
        assert_eq!(parse_version("x"), None);
        assert!(
            valid_name("abc-1.x_y") && !valid_name("") && !valid_name("_a") && !valid_name("a/b")
        );
    }
}
