//! `huskd config default` and `huskd config check [FILE]`: the commented defaults, and a check
//! that names every unknown key and bad value of a file with its line, not just the first.
//!
//! The check parses the text keeping spans (`toml_edit`), walks it against
//! [`config_schema::SCHEMA`] (unknown keys, wrong types, integers out of range), deserializes
//! what passed into a [`Config`] and runs its semantic checks ([`Config::problems`]), each
//! mapped back to the line of its key.

use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item, TableLike, Value};

use crate::config::Config;
use crate::config_schema::{self, Key, Kind};

/// One finding: the 1-based line (when the key is in the file) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub line: Option<usize>,
    pub message: String,
}

/// `huskd config default`: prints the commented default configuration.
pub fn print_default() {
    print!("{}", config_schema::default_toml());
}

/// `huskd config check`: prints `FILE: ok` (exit 0) or one `FILE:LINE: message` per finding
/// (exit 1). A missing default file is fine (huskd runs with the defaults); a missing file that
/// was named is not.
pub fn run_check(path: &Path, explicit: bool) -> i32 {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            println!(
                "{}: no such file: huskd runs with the defaults (see `huskd config default`)",
                path.display()
            );
            return 0;
        }
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return 1;
        }
    };
    let findings = check(&text);
    if findings.is_empty() {
        println!("{}: ok", path.display());
        return 0;
    }
    for f in &findings {
        match f.line {
            Some(l) => eprintln!("{}:{l}: {}", path.display(), f.message),
            None => eprintln!("{}: {}", path.display(), f.message),
        }
    }
    let n = findings.len();
    eprintln!(
        "{}: {n} problem{}",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    1
}

/// Every problem of a config text, in the order of the file.
pub fn check(text: &str) -> Vec<Finding> {
    let doc = match ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            return vec![Finding {
                line: e.span().map(|s| line_of(text, s)),
                message: format!("not valid TOML: {}", e.message().trim_end()),
            }];
        }
    };
    let mut w = Walker {
        text,
        findings: Vec::new(),
    };
    let clean = w.table(doc.as_table(), config_schema::SCHEMA, "");
    let mut findings = w.findings;
    // What passed the walk deserializes (a dropped key takes its default, so it is not
    // reported twice); the semantic checks find the rest.
    match toml::Value::Table(clean).try_into::<Config>() {
        Ok(cfg) => {
            for p in cfg.problems() {
                findings.push(Finding {
                    line: key_line(text, doc.as_table(), &p.key),
                    message: p.message,
                });
            }
        }
        Err(e) => findings.push(Finding {
            line: None,
            message: e.to_string().trim_end().to_string(),
        }),
    }
    findings.sort_by_key(|f| f.line.unwrap_or(usize::MAX));
    findings
}

struct Walker<'a> {
    text: &'a str,
    findings: Vec<Finding>,
}

impl Walker<'_> {
    fn report(&mut self, span: Option<Range<usize>>, message: String) {
        self.findings.push(Finding {
            line: span.map(|s| line_of(self.text, s)),
            message,
        });
    }

    /// Checks `table` against `keys`; returns the good part as a `toml::Table`.
    fn table(&mut self, table: &dyn TableLike, keys: &[Key], prefix: &str) -> toml::Table {
        let mut clean = toml::Table::new();
        for (name, item) in table.iter() {
            let path = format!("{prefix}{name}");
            let span = table
                .key(name)
                .and_then(toml_edit::Key::span)
                .or_else(|| item.span());
            let Some(k) = keys.iter().find(|k| k.name == name) else {
                let known: Vec<&str> = keys.iter().map(|k| k.name).collect();
                let hint = match closest(name, &known) {
                    Some(c) => format!(" (did you mean {c:?}?)"),
                    None => format!(" (known: {})", known.join(", ")),
                };
                self.report(span, format!("unknown key {path:?}{hint}"));
                continue;
            };
            if let Some(v) = self.item(item, k, &path, span) {
                clean.insert(name.to_string(), v);
            }
        }
        clean
    }

    /// Checks one item against its key; `None` (and a finding) when it does not fit.
    fn item(
        &mut self,
        item: &Item,
        k: &Key,
        path: &str,
        span: Option<Range<usize>>,
    ) -> Option<toml::Value> {
        match k.kind {
            Kind::Table(keys) => match item.as_table_like() {
                Some(t) => Some(toml::Value::Table(self.table(t, keys, &format!("{path}.")))),
                None => {
                    self.report(span, format!("{path}: expected a table ([{path}])"));
                    None
                }
            },
            Kind::Map(keys) => {
                let Some(t) = item.as_table_like() else {
                    self.report(span, format!("{path}: expected a table of [{path}.<name>]"));
                    return None;
                };
                let mut out = toml::Table::new();
                for (name, entry) in t.iter() {
                    let epath = format!("{path}.{}", config_schema::bare_or_quoted(name));
                    let espan = t
                        .key(name)
                        .and_then(toml_edit::Key::span)
                        .or_else(|| entry.span());
                    match entry.as_table_like() {
                        Some(e) => {
                            let v = self.table(e, keys, &format!("{epath}."));
                            // An entry needs the keys that have no default (`path`); one that
                            // lacks a good value for them is dropped (and reported once).
                            let mut complete = true;
                            for k in keys.iter().filter(|k| k.example.is_none()) {
                                if !v.contains_key(k.name) {
                                    complete = false;
                                    if e.get(k.name).is_none() {
                                        self.report(
                                            espan.clone(),
                                            format!("{epath}: no {}", k.name),
                                        );
                                    }
                                }
                            }
                            if complete {
                                out.insert(name.to_string(), toml::Value::Table(v));
                            }
                        }
                        None => self.report(espan, format!("{epath}: expected a table")),
                    }
                }
                Some(toml::Value::Table(out))
            }
            _ => {
                let Some(v) = item.as_value() else {
                    self.report(span, format!("{path}: expected {}, found a table", want(k)));
                    return None;
                };
                let vspan = v.span().or(span);
                match leaf(v, k.kind) {
                    Ok(t) => Some(t),
                    Err(()) => {
                        let shown = v.clone().decorated("", "").to_string();
                        self.report(vspan, format!("{path} = {shown}: expected {}", want(k)));
                        None
                    }
                }
            }
        }
    }
}

/// What a key wants, for messages.
fn want(k: &Key) -> String {
    match k.kind {
        Kind::Str => "a string".into(),
        Kind::Bool => "true or false".into(),
        Kind::Int { min, max } if max == i64::MAX => format!("an integer of at least {min}"),
        Kind::Int { min, max } => format!("an integer from {min} to {max}"),
        Kind::StrList => "an array of strings".into(),
        Kind::Table(_) | Kind::Map(_) => "a table".into(),
    }
}

/// A scalar or list value as a `toml::Value`, when it has the kind's type.
fn leaf(v: &Value, kind: Kind) -> Result<toml::Value, ()> {
    match (kind, v) {
        (Kind::Str, Value::String(s)) => Ok(toml::Value::String(s.value().clone())),
        (Kind::Bool, Value::Boolean(b)) => Ok(toml::Value::Boolean(*b.value())),
        (Kind::Int { min, max }, Value::Integer(i)) if (min..=max).contains(i.value()) => {
            Ok(toml::Value::Integer(*i.value()))
        }
        (Kind::StrList, Value::Array(a)) => a
            .iter()
            .map(|e| e.as_str().map(|s| toml::Value::String(s.to_string())))
            .collect::<Option<Vec<_>>>()
            .map(toml::Value::Array)
            .ok_or(()),
        _ => Err(()),
    }
}

/// The line of a dotted key (`stream.address`, `runtimes.kata.path`): that of the deepest
/// part present in the file.
fn key_line(text: &str, root: &dyn TableLike, dotted: &str) -> Option<usize> {
    let mut table = root;
    let mut line = None;
    for part in dotted.split('.') {
        let Some((k, item)) = table.get_key_value(part) else {
            break;
        };
        if let Some(s) = k.span().or_else(|| item.span()) {
            line = Some(line_of(text, s));
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => break,
        }
    }
    line
}

/// The 1-based line of a byte span's start.
fn line_of(text: &str, span: Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The known name within edit distance 2 of `name`, if there is one.
fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| k)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(Option<usize>, String)> {
        check(text)
            .into_iter()
            .map(|f| (f.line, f.message))
            .collect()
    }

    #[test]
    fn the_defaults_and_the_readme_example_are_clean() {
        assert_eq!(check(&config_schema::default_toml()), vec![]);
        assert_eq!(check(""), vec![]);
        let readme = "root = \"/var/lib/husk\"\ndefault_runtime = \"crun\"\n\
                      [registry]\nconfig_path = \"/etc/husk/certs.d\"\n\
                      [runtimes.runc]\npath = \"runc\"\n[runtimes.crun]\npath = \"crun\"\n\
                      [stream]\naddress = \"127.0.0.1\"\nport = 0\n\
                      [metrics]\naddress = \"127.0.0.1:9090\"\n";
        assert_eq!(check(readme), vec![]);
    }

    #[test]
    fn every_bad_key_and_value_is_named_with_its_line() {
        let text = "roots = \"/x\"\n\
                    log_format = \"yaml\"\n\
                    [registry]\n\
                    config_pth = \"/etc/husk/certs.d\"\n\
                    max_concurrent_downloads = \"3\"\n\
                    [stream]\n\
                    port = 70000\n\
                    address = \"localhost\"\n\
                    [runtimes.kata]\n\
                    path = \"\"\n\
                    shim = true\n";
        let got = lines(text);
        let want: &[(usize, &str)] = &[
            (1, "unknown key \"roots\" (did you mean \"root\"?)"),
            (2, "log_format = \"yaml\": must be \"text\" or \"json\""),
            (
                4,
                "unknown key \"registry.config_pth\" (did you mean \"config_path\"?)",
            ),
            (
                5,
                "registry.max_concurrent_downloads = \"3\": expected an integer of at least 0",
            ),
            (
                7,
                "stream.port = 70000: expected an integer from 0 to 65535",
            ),
            (8, "stream.address = \"localhost\": not an IP address"),
            (10, "runtimes.kata.path: must not be empty"),
            (11, "unknown key \"runtimes.kata.shim\" (known: path)"),
        ];
        assert_eq!(got.len(), want.len(), "{got:#?}");
        for ((line, msg), (wl, wm)) in got.iter().zip(want) {
            assert_eq!((*line, msg.as_str()), (Some(*wl), *wm), "{got:#?}");
        }
    }

    #[test]
    fn syntax_errors_and_wrong_shapes_have_lines() {
        let got = lines("root = \"/a\"\nroot = \"/b\"\n");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, Some(2), "{got:?}");
        assert!(got[0].1.starts_with("not valid TOML"), "{got:?}");
        let got = lines("registry = 5\n[cni]\nbin_dirs = [\"/a\", 3]\n");
        assert_eq!(
            got,
            vec![
                (
                    Some(1),
                    "registry: expected a table ([registry])".to_string()
                ),
                (
                    Some(3),
                    "cni.bin_dirs = [\"/a\", 3]: expected an array of strings".to_string()
                ),
            ]
        );
        // Inline tables and dotted keys are tables too.
        assert_eq!(
            lines("stream = { port = 1 }\nregistry.config_path = \"/r\"\n"),
            vec![]
        );
        // A runtime without its path is named, not a deserialization error without a line.
        let got = lines("[runtimes.kata]\nshim = 1\n");
        assert_eq!(
            got,
            vec![
                (Some(1), "runtimes.kata: no path".to_string()),
                // [runtimes.*] replaces the default runc and crun: kata was the only one.
                (
                    Some(1),
                    "runtimes: at least one OCI runtime must be configured".to_string()
                ),
                (
                    Some(2),
                    "unknown key \"runtimes.kata.shim\" (known: path)".to_string()
                ),
            ]
        );
        let got = lines("default_runtime = \"kata\"\n");
        assert_eq!(got[0].0, Some(1));
        assert!(got[0].1.contains("no [runtimes.kata] section"), "{got:?}");
    }

    #[test]
    fn suggestions_are_close_names_only() {
        assert_eq!(closest("adress", &["address"]), Some("address"));
        assert_eq!(closest("zzz", &["address", "port"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
