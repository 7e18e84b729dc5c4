//! The shape of `config.toml`, key by key with a comment each: what `huskd config default`
//! prints (every key with its default, parsing back to `Config::default()`) and what
//! `huskd config check` walks a file against. A key added to `Config` must be added here too:
//! the tests compare this schema with the serialized defaults.

use std::fmt::Write as _;

use crate::config::Config;

/// What a key holds.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string.
    Str,
    /// A boolean.
    Bool,
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// An array of strings.
    StrList,
    /// A table with these keys (`[registry]`).
    Table(&'static [Key]),
    /// A table of named tables, each with these keys (`[runtimes.<name>]`).
    Map(&'static [Key]),
}

/// One key of the file.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// The comment printed above the key (lines separated by `\n`).
    pub doc: &'static str,
    /// For a key that is unset by default: the example printed commented out.
    pub example: Option<&'static str>,
}

const fn key(name: &'static str, kind: Kind, doc: &'static str) -> Key {
    Key {
        name,
        kind,
        doc,
        example: None,
    }
}

const fn unset(name: &'static str, kind: Kind, doc: &'static str, example: &'static str) -> Key {
    Key {
        name,
        kind,
        doc,
        example: Some(example),
    }
}

const COUNT: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
};

/// The top level of `config.toml`.
pub const SCHEMA: &[Key] = &[
    key(
        "root",
        Kind::Str,
        "Persistent state: content, snapshots, image/pod/container records (absolute path).",
    ),
    key(
        "state_dir",
        Kind::Str,
        "Runtime state: namespace pins, OCI bundles, monitor sockets (absolute path; a tmpfs).",
    ),
    key(
        "socket",
        Kind::Str,
        "The CRI gRPC socket: the kubelet's containerRuntimeEndpoint is unix://<socket>.",
    ),
    key(
        "log_level",
        Kind::Str,
        "error, warn, info, debug, trace, or a tracing filter (\"info,husk_image=debug\").",
    ),
    key(
        "log_format",
        Kind::Str,
        "\"text\" or \"json\" (one object per line), written to standard error.",
    ),
    unset(
        "default_runtime",
        Kind::Str,
        "The handler of pods whose RuntimeClass names none; a [runtimes.<name>] below.\n\
         Unset: crun when its binary is found, else runc.",
        "\"crun\"",
    ),
    key(
        "cgroup_driver",
        Kind::Str,
        "\"cgroupfs\" (the only driver husk has yet): the kubelet's cgroupDriver must match.",
    ),
    key(
        "default_cgroup_parent",
        Kind::Str,
        "The cgroup parent of pods whose config names none (an absolute cgroupfs path).",
    ),
    unset(
        "monitor_path",
        Kind::Str,
        "The husk-monitor binary. Unset: next to huskd, else from PATH.",
        "\"/usr/bin/husk-monitor\"",
    ),
    key(
        "registry",
        Kind::Table(REGISTRY),
        "Image pulls and imports.",
    ),
    key(
        "cni",
        Kind::Table(CNI),
        "Pod networking through CNI plugins.",
    ),
    key(
        "runtimes",
        Kind::Map(RUNTIME),
        "OCI runtimes by handler name (a RuntimeClass's handler names one).",
    ),
    key(
        "stream",
        Kind::Table(STREAM),
        "The streaming server the kubelet sends exec, attach and port-forward clients to.",
    ),
    key(
        "metrics",
        Kind::Table(METRICS),
        "Prometheus metrics (text format) at GET /metrics; off unless address is set.",
    ),
];

const REGISTRY: &[Key] = &[
    key(
        "config_path",
        Kind::Str,
        "Registry hosts in containerd's layout: <config_path>/<host>/hosts.toml (mirrors, CAs,\n\
         client certificates, headers) and Docker-style *.crt/*.cert/*.key files.",
    ),
    key(
        "max_concurrent_downloads",
        COUNT,
        "Layer downloads at once, across all pulls (at least 1).",
    ),
    key(
        "max_import_bytes",
        COUNT,
        "The largest ImportImage archive (and the tar inside a compressed one), in bytes.",
    ),
];

const CNI: &[Key] = &[
    key(
        "conf_dir",
        Kind::Str,
        "Network configurations (*.conflist, *.conf, *.json); the first by name is the pods'.",
    ),
    key(
        "bin_dirs",
        Kind::StrList,
        "Where plugin binaries are looked up, in order.",
    ),
    key(
        "ip_preference",
        Kind::Str,
        "The family of a dual-stack pod's primary IP: \"ipv4\" or \"ipv6\".",
    ),
];

const RUNTIME: &[Key] = &[key(
    "path",
    Kind::Str,
    "The OCI runtime binary: a name looked up in PATH, or a path.",
)];

const STREAM: &[Key] = &[
    key(
        "address",
        Kind::Str,
        "The IP address to listen on (the kubelet connects to it).",
    ),
    key(
        "port",
        Kind::Int { min: 0, max: 65535 },
        "The TCP port; 0 picks a free one (the URLs handed out name it).",
    ),
    key(
        "enable_tls",
        Kind::Bool,
        "Serve HTTPS; without the files below, with a self-signed certificate.",
    ),
    unset(
        "tls_cert_file",
        Kind::Str,
        "PEM certificate of the streaming server (with tls_key_file and enable_tls).",
        "\"/etc/husk/stream.crt\"",
    ),
    unset(
        "tls_key_file",
        Kind::Str,
        "PEM private key of tls_cert_file.",
        "\"/etc/husk/stream.key\"",
    ),
];

const METRICS: &[Key] = &[unset(
    "address",
    Kind::Str,
    "IP:port serving GET /metrics.",
    "\"127.0.0.1:9090\"",
)];

/// The commented default configuration (`huskd config default`).
pub fn default_toml() -> String {
    let defaults = toml::Value::try_from(Config::default())
        .ok()
        .and_then(|v| v.as_table().cloned())
        .unwrap_or_default();
    let mut out = format!(
        "# husk {} configuration: /etc/husk/config.toml (huskd --config FILE).\n\
         # Printed by `huskd config default`: every key with its default value; an unset key is\n\
         # shown commented out. Check a file with `huskd config check FILE`.\n",
        env!("CARGO_PKG_VERSION")
    );
    // Top-level keys must come before the first table header.
    for k in SCHEMA.iter().filter(|k| !is_table(k)) {
        write_key(&mut out, k, defaults.get(k.name));
    }
    for k in SCHEMA.iter().filter(|k| is_table(k)) {
        let value = defaults.get(k.name).and_then(toml::Value::as_table);
        match k.kind {
            Kind::Table(keys) => {
                out.push('\n');
                write_doc(&mut out, k.doc);
                let _ = writeln!(out, "[{}]", k.name);
                for sub in keys {
                    write_key(&mut out, sub, value.and_then(|t| t.get(sub.name)));
                }
            }
            Kind::Map(keys) => {
                out.push('\n');
                write_doc(&mut out, k.doc);
                for (i, (name, entry)) in value.into_iter().flatten().enumerate() {
                    if i > 0 {
                        out.push('\n');
                    }
                    let _ = writeln!(out, "[{}.{}]", k.name, bare_or_quoted(name));
                    for sub in keys {
                        write_key(&mut out, sub, entry.get(sub.name));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn is_table(k: &Key) -> bool {
    matches!(k.kind, Kind::Table(_) | Kind::Map(_))
}

fn write_doc(out: &mut String, doc: &str) {
    for line in doc.lines() {
        let _ = writeln!(out, "# {}", line.trim_start());
    }
}

fn write_key(out: &mut String, k: &Key, value: Option<&toml::Value>) {
    out.push('\n');
    write_doc(out, k.doc);
    match (value, k.example) {
        (Some(v), _) => {
            let _ = writeln!(out, "{} = {v}", k.name);
        }
        (None, Some(example)) => {
            let _ = writeln!(out, "# {} = {example}", k.name);
        }
        (None, None) => {
            let _ = writeln!(out, "# {} =", k.name);
        }
    }
}

/// A table name as TOML writes it: bare when it can be, else quoted.
pub fn bare_or_quoted(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        name.to_string()
    } else {
        toml::Value::String(name.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key path the schema knows, `registry.config_path` style (maps as `runtimes.*.path`).
    fn schema_keys(keys: &[Key], prefix: &str, out: &mut Vec<String>) {
        for k in keys {
            let path = format!("{prefix}{}", k.name);
            match k.kind {
                Kind::Table(sub) => schema_keys(sub, &format!("{path}."), out),
                Kind::Map(sub) => schema_keys(sub, &format!("{path}.*."), out),
                _ => out.push(path),
            }
        }
    }

    fn value_keys(t: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (name, v) in t {
            let path = format!("{prefix}{name}");
            match v {
                toml::Value::Table(sub) if path == "runtimes" => {
                    for entry in sub.values().filter_map(toml::Value::as_table) {
                        value_keys(entry, "runtimes.*.", out);
                    }
                }
                toml::Value::Table(sub) => value_keys(sub, &format!("{path}."), out),
                _ => out.push(path),
            }
        }
    }

    #[test]
    fn the_schema_names_every_key_of_the_config() {
        let mut known = Vec::new();
        schema_keys(SCHEMA, "", &mut known);
        // Options that are set: every key the structs have appears in the serialization.
        let mut all = Config {
            default_runtime: Some("runc".into()),
            monitor_path: Some("/usr/bin/husk-monitor".into()),
            ..Config::default()
        };
        all.stream.tls_cert_file = Some("/c".into());
        all.stream.tls_key_file = Some("/k".into());
        all.metrics.address = Some("127.0.0.1:9090".into());
        let v = toml::Value::try_from(&all).unwrap();
        let mut serialized = Vec::new();
        value_keys(v.as_table().unwrap(), "", &mut serialized);
        serialized.dedup();
        for k in &serialized {
            assert!(
                known.contains(k),
                "config key {k} is missing from config_schema::SCHEMA: add it there with a comment"
            );
        }
        for k in &known {
            assert!(
                serialized.contains(k),
                "SCHEMA names {k}, which Config lacks"
            );
        }
    }

    #[test]
    fn the_default_file_parses_back_to_the_defaults_and_comments_every_key() {
        let text = default_toml();
        let parsed = Config::parse(&text, "default".as_ref()).unwrap();
        assert_eq!(parsed, Config::default());
        // Each key line (set or commented out) has a comment line right above it, or follows
        // the table header that its comment precedes.
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            let l = l.trim_start_matches("# ");
            if l.contains(" = ") && !l.starts_with(char::is_uppercase) {
                let above = lines[i - 1];
                assert!(
                    above.starts_with("# ") && !above.contains(" = "),
                    "key without a comment: {l:?}\n{text}"
                );
            }
        }
        for k in [
            "default_runtime",
            "monitor_path",
            "tls_cert_file",
            "address",
        ] {
            assert!(text.contains(&format!("# {k} = ")), "{k}:\n{text}");
        }
    }

    #[test]
    fn odd_map_names_are_quoted() {
        assert_eq!(bare_or_quoted("runc"), "runc");
        assert_eq!(bare_or_quoted("kata.v2"), "\"kata.v2\"");
    }
}
