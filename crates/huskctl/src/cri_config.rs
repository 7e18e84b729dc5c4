//! crictl-style config files: the JSON or YAML form of a CRI message (`PodSandboxConfig`,
//! `ContainerConfig`), read into the k8s-cri type.
//!
//! The rules, checked against the type's shape (see [`crate::probe`]):
//! - field names match ignoring case, `_` and `-`: `log_directory`, `logDirectory` and
//!   `LogDirectory` are one field; keys of maps (labels, annotations, sysctls) are kept as is;
//! - missing fields take their defaults (absent messages stay unset);
//! - an enum field takes its number or its name (`"POD"`, `"NODE"`, `"RuntimeDefault"`, any
//!   case); integers may be given as strings (`"1024"`, as protobuf JSON writes int64);
//!   strings in maps and lists accept numbers and booleans (YAML `app: 1`);
//! - unknown fields are ignored with a warning (crictl ignores them silently).

use std::path::Path;

use anyhow::{Context as _, anyhow};
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::{MountPropagation, NamespaceMode, Protocol, SupplementalGroupsPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::probe::{is_map_template, template};

/// How a config file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Yaml,
}

impl FileFormat {
    /// By extension (`.json`, `.yaml`, `.yml`), else JSON when the text starts with `{`.
    pub fn detect(path: &Path, text: &str) -> FileFormat {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => FileFormat::Json,
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                FileFormat::Yaml
            }
            _ if text.trim_start().starts_with('{') => FileFormat::Json,
            _ => FileFormat::Yaml,
        }
    }
}

/// A config read from a file, with what was ignored in it.
#[derive(Debug)]
pub struct Loaded<T> {
    pub config: T,
    /// One line per ignored field.
    pub warnings: Vec<String>,
}

/// Reads `path` as a `T` (see the module docs) and prints its warnings to stderr.
pub fn load<T: DeserializeOwned + Serialize>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let loaded = parse::<T>(&text, FileFormat::detect(path, &text))
        .with_context(|| path.display().to_string())?;
    for warning in &loaded.warnings {
        eprintln!("huskctl: warning: {}: {warning}", path.display());
    }
    Ok(loaded.config)
}

/// Parses config text as a `T` (see the module docs).
pub fn parse<T: DeserializeOwned + Serialize>(
    text: &str,
    format: FileFormat,
) -> anyhow::Result<Loaded<T>> {
    let raw: Value = match format {
        FileFormat::Json => serde_json::from_str(text).context("invalid JSON")?,
        FileFormat::Yaml => serde_yaml::from_str(text).context("invalid YAML")?,
    };
    if !raw.is_object() {
        anyhow::bail!("expected an object, found {}", kind(&raw));
    }
    let shape = template::<T>()?;
    let mut warnings = Vec::new();
    let value = conform(raw, &shape, "", "", &mut warnings).map_err(|e| anyhow!(e))?;
    let config = serde_json::from_value(value).context("invalid config")?;
    Ok(Loaded { config, warnings })
}

/// `logDirectory`, `log_directory`, `Log-Directory` → `logdirectory`.
fn fold(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn child(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Shapes `user` like `shape` (a [`template`]): `field` is the field's own name (for enum
/// names), `path` where it is (for messages).
fn conform(
    user: Value,
    shape: &Value,
    field: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let at = || {
        if path.is_empty() {
            "the config".to_string()
        } else {
            path.to_string()
        }
    };
    match shape {
        Value::Object(fields) if is_map_template(fields) => {
            let entry = &fields[""];
            match user {
                Value::Null => Ok(Value::Object(Map::new())),
                Value::Object(map) => map
                    .into_iter()
                    .map(|(k, v)| {
                        let p = format!("{path}[{k:?}]");
                        conform(v, entry, field, &p, warnings).map(|v| (k, v))
                    })
                    .collect::<Result<Map<_, _>, _>>()
                    .map(Value::Object),
                other => Err(format!("{}: expected a map, found {}", at(), kind(&other))),
            }
        }
        Value::Object(fields) => match user {
            Value::Null => Ok(Value::Null),
            Value::Object(given) => conform_message(given, fields, path, warnings),
            other => Err(format!(
                "{}: expected an object, found {}",
                at(),
                kind(&other)
            )),
        },
        Value::Array(element) => match (user, element.first()) {
            (Value::Null, _) => Ok(Value::Array(Vec::new())),
            (Value::Array(items), Some(element)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| conform(v, element, field, &format!("{path}[{i}]"), warnings))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            (Value::Array(items), None) => Ok(Value::Array(items)),
            (other, _) => Err(format!("{}: expected a list, found {}", at(), kind(&other))),
        },
        Value::String(_) => match user {
            Value::Null => Ok(Value::String(String::new())),
            Value::String(s) => Ok(Value::String(s)),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            other => Err(format!(
                "{}: expected a string, found {}",
                at(),
                kind(&other)
            )),
        },
        Value::Number(_) => match user {
            Value::Null => Ok(shape.clone()),
            Value::Number(n) => Ok(Value::Number(n)),
            Value::String(s) => number_from_str(&s, field).ok_or_else(|| match enum_names(field) {
                Some(names) => format!(
                    "{}: unknown value {s:?} (expected one of {} or a number)",
                    at(),
                    names.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                ),
                None => format!("{}: expected a number, found {s:?}", at()),
            }),
            other => Err(format!(
                "{}: expected a number, found {}",
                at(),
                kind(&other)
            )),
        },
        Value::Bool(_) => match user {
            Value::Null => Ok(Value::Bool(false)),
            Value::Bool(b) => Ok(Value::Bool(b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            other => Err(format!(
                "{}: expected true or false, found {}",
                at(),
                kind(&other)
            )),
        },
        Value::Null => Ok(user),
    }
}

/// One message: every field of `fields`, from `given` where present.
fn conform_message(
    given: Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Value, String> {
    let mut out = Map::new();
    for (key, value) in given {
        let folded = fold(&key);
        let Some(name) = fields.keys().find(|name| fold(name) == folded) else {
            warnings.push(format!("unknown field {:?} ignored", child(path, &key)));
            continue;
        };
        if out.contains_key(name) {
            return Err(format!(
                "{} is given twice (as {key:?} and another spelling)",
                child(path, name)
            ));
        }
        let value = conform(value, &fields[name], name, &child(path, name), warnings)?;
        out.insert(name.clone(), value);
    }
    for (name, shape) in fields {
        if out.contains_key(name) {
            continue;
        }
        // Absent: messages stay unset (`None`), the rest take their default.
        let default = match shape {
            Value::Object(f) if is_map_template(f) => Value::Object(Map::new()),
            Value::Object(_) => continue,
            Value::Array(_) => Value::Array(Vec::new()),
            other => other.clone(),
        };
        out.insert(name.clone(), default);
    }
    Ok(Value::Object(out))
}

/// A number given as a string: an enum name of `field`, or digits.
fn number_from_str(s: &str, field: &str) -> Option<Value> {
    if let Some(names) = enum_names(field) {
        let hit = names
            .iter()
            .find(|(n, _)| *n == s)
            .or_else(|| names.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)));
        if let Some((_, v)) = hit {
            return Some(Value::from(*v));
        }
    }
    let s = s.trim();
    s.parse::<i64>()
        .map(Value::from)
        .or_else(|_| s.parse::<u64>().map(Value::from))
        .ok()
}

/// The names and numbers of the enum that `field` holds, for the enum fields of the CRI
/// config messages.
fn enum_names(field: &str) -> Option<Vec<(&'static str, i32)>> {
    macro_rules! all {
        ($e:ty) => {
            (0..32)
                .filter_map(|i| <$e>::try_from(i).ok())
                .map(|e| (e.as_str_name(), e as i32))
                .collect()
        };
    }
    Some(match field {
        "protocol" => all!(Protocol),
        "propagation" => all!(MountPropagation),
        "network" | "pid" | "ipc" | "mode" => all!(NamespaceMode),
        "supplemental_groups_policy" => all!(SupplementalGroupsPolicy),
        "profile_type" => all!(ProfileType),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};

    fn pod(text: &str, format: FileFormat) -> Loaded<PodSandboxConfig> {
        parse(text, format).expect("parses")
    }

    #[test]
    fn crictl_example_pod_json() {
        let text = r#"{
            "metadata": {"name": "nginx-sandbox", "namespace": "default", "attempt": 1,
                         "uid": "hdishd83djaidwnduwk28bcsb"},
            "log_directory": "/tmp",
            "linux": {}
        }"#;
        let p = pod(text, FileFormat::Json);
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        let c = p.config;
        let m = c.metadata.expect("metadata");
        assert_eq!(
            (m.name.as_str(), m.namespace.as_str(), m.attempt),
            ("nginx-sandbox", "default", 1)
        );
        assert_eq!(m.uid, "hdishd83djaidwnduwk28bcsb");
        assert_eq!(c.log_directory, "/tmp");
        let linux = c.linux.expect("linux");
        assert!(linux.security_context.is_none());
        assert!(linux.sysctls.is_empty());
        assert!(c.dns_config.is_none());
        assert!(c.labels.is_empty());
    }

    #[test]
    fn camel_case_and_enum_names() {
        let text = r#"{
            "metadata": {"name": "p", "uid": "u"},
            "logDirectory": "/var/log/pods/x",
            "dnsConfig": {"servers": ["1.1.1.1"]},
            "portMappings": [{"protocol": "UDP", "containerPort": 53, "hostPort": "5353"}],
            "labels": {"app.kubernetes.io/name": "dns", "someCamelKey": "kept"},
            "linux": {
                "cgroupParent": "/kubepods",
                "securityContext": {
                    "namespaceOptions": {"network": "NODE", "pid": "container", "ipc": 0},
                    "runAsUser": {"value": "1000"},
                    "seccomp": {"profileType": "RuntimeDefault"},
                    "apparmor": {"profile_type": "Localhost", "localhostRef": "p"},
                    "supplementalGroupsPolicy": "Strict"
                }
            }
        }"#;
        let c = pod(text, FileFormat::Json).config;
        assert_eq!(c.log_directory, "/var/log/pods/x");
        assert_eq!(
            c.dns_config.map(|d| d.servers),
            Some(vec!["1.1.1.1".into()])
        );
        let port = &c.port_mappings[0];
        assert_eq!(port.protocol, Protocol::Udp as i32);
        assert_eq!((port.container_port, port.host_port), (53, 5353));
        assert_eq!(
            c.labels.get("someCamelKey").map(String::as_str),
            Some("kept")
        );
        assert!(c.labels.contains_key("app.kubernetes.io/name"));
        let linux = c.linux.expect("linux");
        assert_eq!(linux.cgroup_parent, "/kubepods");
        let sc = linux.security_context.expect("security context");
        let ns = sc.namespace_options.expect("namespaces");
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
        assert_eq!(sc.run_as_user.map(|u| u.value), Some(1000));
        assert!(sc.run_as_group.is_none());
        assert_eq!(
            sc.seccomp.map(|s| s.profile_type),
            Some(ProfileType::RuntimeDefault as i32)
        );
        let apparmor = sc.apparmor.expect("apparmor");
        assert_eq!(apparmor.profile_type, ProfileType::Localhost as i32);
        assert_eq!(apparmor.localhost_ref, "p");
        assert_eq!(
            sc.supplemental_groups_policy,
            SupplementalGroupsPolicy::Strict as i32
        );
    }

    #[test]
    fn yaml_container() {
        let text = "\
metadata:
  name: busybox
image:
  image: busybox
command: [sh, -c, 'echo hi']
envs:
  - key: N
    value: 1
log_path: busybox.log
mounts:
  - containerPath: /data
    hostPath: /tmp/data
    propagation: PROPAGATION_BIDIRECTIONAL
linux:
  resources:
    memoryLimitInBytes: 67108864
  securityContext:
    namespaceOptions:
      pid: POD
";
        let loaded = parse::<ContainerConfig>(text, FileFormat::Yaml).expect("parses");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        let c = loaded.config;
        assert_eq!(c.metadata.map(|m| m.name), Some("busybox".into()));
        assert_eq!(c.image.map(|i| i.image), Some("busybox".into()));
        assert_eq!(c.command, ["sh", "-c", "echo hi"]);
        assert_eq!(
            (c.envs[0].key.as_str(), c.envs[0].value.as_str()),
            ("N", "1")
        );
        assert_eq!(c.log_path, "busybox.log");
        assert_eq!(c.mounts[0].container_path, "/data");
        assert_eq!(
            c.mounts[0].propagation,
            MountPropagation::PropagationBidirectional as i32
        );
        let linux = c.linux.expect("linux");
        assert_eq!(
            linux.resources.map(|r| r.memory_limit_in_bytes),
            Some(67_108_864)
        );
    }

    #[test]
    fn unknown_fields_warn() {
        let p = pod(
            r#"{"metadata": {"name": "p", "nickname": "x"}, "bogus": 1}"#,
            FileFormat::Json,
        );
        assert_eq!(
            p.warnings,
            [
                "unknown field \"bogus\" ignored",
                "unknown field \"metadata.nickname\" ignored"
            ]
        );
    }

    #[test]
    fn errors_name_the_field() {
        let err = |t: &str| {
            parse::<PodSandboxConfig>(t, FileFormat::Json)
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        assert_eq!(
            err(r#"{"linux": {"security_context": {"namespace_options": {"network": "HOST"}}}}"#),
            "linux.security_context.namespace_options.network: unknown value \"HOST\" \
             (expected one of POD, CONTAINER, NODE, TARGET or a number)"
        );
        assert_eq!(
            err(r#"{"metadata": {"attempt": "x"}}"#),
            "metadata.attempt: expected a number, found \"x\""
        );
        assert_eq!(
            err(r#"{"metadata": []}"#),
            "metadata: expected an object, found a list"
        );
        assert_eq!(
            err(r#"{"labels": {"a": {"b": 1}}}"#),
            "labels[\"a\"]: expected a string, found an object"
        );
        assert_eq!(
            err(r#"{"log_directory": "/a", "logDirectory": "/b"}"#),
            "log_directory is given twice (as \"log_directory\" and another spelling)"
        );
        assert!(err("[1]").contains("expected an object, found a list"));
        assert!(err("{").starts_with("invalid JSON"));
        assert!(err(r#"{"metadata": {"attempt": -1}}"#).starts_with("invalid config"));
    }

    #[test]
    fn format_detection() {
        let d = |p: &str, t: &str| FileFormat::detect(Path::new(p), t);
        assert_eq!(d("pod.json", "a: 1"), FileFormat::Json);
        assert_eq!(d("pod.YAML", "{}"), FileFormat::Yaml);
        assert_eq!(d("pod.yml", "{}"), FileFormat::Yaml);
        assert_eq!(d("pod", "  {\"a\": 1}"), FileFormat::Json);
        assert_eq!(d("pod", "a: 1"), FileFormat::Yaml);
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let pod: PodSandboxConfig = load(&dir.join("pod.json")).expect("pod.json");
        assert_eq!(pod.log_directory, "/tmp/husk-demo-logs");
        let ctr: ContainerConfig = load(&dir.join("container.json")).expect("container.json");
        assert_eq!(ctr.image.map(|i| i.image), Some("busybox".into()));
        assert_eq!(ctr.log_path, "busybox.log");
        assert_eq!(ctr.command, ["sh", "-c", "echo hello from husk; sleep 1"]);
    }
}
