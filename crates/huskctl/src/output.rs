//! Rendering: crictl-style tables, human sizes, ID truncation, reference splitting and
//! JSON/YAML documents, all written to stdout through one function that tolerates a closed pipe.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::cli::DataFormat;

/// Shown for a missing repository, tag or digest.
pub const NONE: &str = "<none>";

/// Length of a truncated image ID, as crictl.
pub const TRUNC_ID_LEN: usize = 13;

/// Writes text to stdout. A closed pipe (`huskctl images | head`) surfaces as an
/// `io::ErrorKind::BrokenPipe` error that `main` treats as success.
pub fn emit(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// `println!` through [`emit`], returning early with the I/O error.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

/// A table rendered like Go's `tabwriter.NewWriter(w, 20, 1, 3, ' ', 0)` as crictl does: every
/// column but the last is padded to the wider of 20 and its longest cell plus 3.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with a header row.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|s| s.to_string()).collect()],
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as text, one line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let longest = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0);
                (longest + 3).max(20)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// Decimal size with 3 significant digits, like Go's `units.HumanSizeWithPrecision(n, 3)`:
/// `999B`, `1kB`, `4.5MB`, `1.23GB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    let mut text = significant(size, 3);
    // 999.6 rounds to "1000": say "1" of the next unit instead.
    if text == "1000" && unit < UNITS.len() - 1 {
        text = "1".into();
        unit += 1;
    }
    format!("{text}{}", UNITS[unit])
}

/// `value` (0 ≤ value < 1000) with `digits` significant digits, trailing zeros dropped (`%g`).
fn significant(value: f64, digits: i32) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let magnitude = value.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Strips `sha256:` and keeps the first 13 characters, as crictl.
pub fn truncate_id(id: &str) -> String {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    id.chars().take(TRUNC_ID_LEN).collect()
}

/// Splits `repo:tag`, `repo@digest` or `repo:tag@digest` into repository and tag (`<none>`
/// when absent). The tag separator is the last ':' after the last '/', so a registry port
/// (`localhost:5000/a`) stays in the repository.
pub fn split_repo_tag(reference: &str) -> (String, String) {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => {
            let at = last_slash + i;
            (name[..at].to_string(), name[at + 1..].to_string())
        }
        None => (name.to_string(), NONE.to_string()),
    }
}

/// Splits `repo@sha256:…` into repository and digest; `<none>` for both when absent.
pub fn split_repo_digest(reference: Option<&str>) -> (String, String) {
    match reference.and_then(|r| r.split_once('@')) {
        Some((repo, digest)) => (repo.to_string(), digest.to_string()),
        None => (NONE.to_string(), NONE.to_string()),
    }
}

/// Renders a value as pretty JSON or YAML, ending with a newline.
pub fn render_data<T: Serialize>(format: DataFormat, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        DataFormat::Json => serde_json::to_string_pretty(value)? + "\n",
        DataFormat::Yaml => serde_yaml::to_string(value)?,
    })
}

/// Prints a value as JSON or YAML.
pub fn print_data<T: Serialize>(format: DataFormat, value: &T) -> anyhow::Result<()> {
    emit(&render_data(format, value)?)?;
    Ok(())
}

/// The crictl shape for a status plus a verbose info map: `{"status": …, <key>: <value>…}`,
/// each info value parsed as JSON when it is JSON, kept as a string otherwise. huskd (like
/// containerd) puts its details under the info key `"info"`, giving `{"status", "info"}`.
/// Keys keep that order when printed (status first, then `extra`, then info keys sorted), so
/// `huskctl inspecti busybox | head` shows the status.
pub fn status_with_info<S: Serialize>(
    status: &S,
    extra: Vec<(&str, Value)>,
    info: &HashMap<String, String>,
) -> anyhow::Result<StatusDoc> {
    let mut entries = vec![("status".to_string(), serde_json::to_value(status)?)];
    for (k, v) in extra {
        entries.push((k.to_string(), v));
    }
    let sorted: BTreeMap<_, _> = info.iter().collect();
    for (k, v) in sorted {
        if entries.iter().any(|(have, _)| have == k) {
            continue;
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
        entries.push((k.clone(), value));
    }
    Ok(StatusDoc(entries))
}

/// A JSON/YAML object whose keys print in insertion order (see [`status_with_info`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StatusDoc(Vec<(String, Value)>);

impl Serialize for StatusDoc {
    fn serialize<Ser: serde::Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Formats a CRI timestamp (nanoseconds since the epoch) as RFC 3339 UTC.
pub fn format_nanos(nanos: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(nanos).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_crictl() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(4_500_000), "4.5MB");
        assert_eq!(human_size(1_234_567), "1.23MB");
        assert_eq!(human_size(2_219_949), "2.22MB");
        assert_eq!(human_size(123_456_789), "123MB");
        assert_eq!(human_size(12_345_678), "12.3MB");
        assert_eq!(human_size(999_600), "1MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }

    #[test]
    fn ids_are_truncated_to_13() {
        let id = "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824";
        assert_eq!(truncate_id(id), "a416a98b71e22");
        assert_eq!(truncate_id("abc"), "abc");
    }

    #[test]
    fn repo_and_tag() {
        let s = |r| split_repo_tag(r);
        assert_eq!(
            s("docker.io/library/busybox:latest"),
            ("docker.io/library/busybox".into(), "latest".into())
        );
        assert_eq!(
            s("localhost:5000/a/b:v1"),
            ("localhost:5000/a/b".into(), "v1".into())
        );
        assert_eq!(
            s("localhost:5000/a/b"),
            ("localhost:5000/a/b".into(), NONE.into())
        );
        assert_eq!(s("repo@sha256:0123abcd"), ("repo".into(), NONE.into()));
        assert_eq!(
            s("reg:5000/repo:v2@sha256:0123"),
            ("reg:5000/repo".into(), "v2".into())
        );
        assert_eq!(s("busybox"), ("busybox".into(), NONE.into()));
        assert_eq!(
            split_repo_digest(Some("docker.io/library/busybox@sha256:abc")),
            ("docker.io/library/busybox".into(), "sha256:abc".into())
        );
        assert_eq!(split_repo_digest(None), (NONE.into(), NONE.into()));
    }

    #[test]
    fn table_pads_like_tabwriter() {
        let mut t = Table::new(&["IMAGE", "TAG", "IMAGE ID", "SIZE"]);
        t.push(vec![
            "docker.io/library/busybox".into(),
            "latest".into(),
            "a416a98b71e22".into(),
            "2.22MB".into(),
        ]);
        t.push(vec![
            "localhost:5000/x".into(),
            "v1".into(),
            "0123456789abc".into(),
            "999B".into(),
        ]);
        let golden = "\
IMAGE                       TAG                 IMAGE ID            SIZE
docker.io/library/busybox   latest              a416a98b71e22       2.22MB
localhost:5000/x            v1                  0123456789abc       999B
";
        assert_eq!(t.render(), golden);
    }

    #[test]
    fn info_values_are_parsed() {
        let info = HashMap::from([
            ("info".to_string(), r#"{"chainID":"sha256:1"}"#.to_string()),
            ("note".to_string(), "not json".to_string()),
        ]);
        let doc = status_with_info(&serde_json::json!({"id": "x"}), vec![], &info).ok();
        let text = doc.as_ref().and_then(|d| serde_json::to_string(d).ok());
        assert_eq!(
            text.as_deref(),
            Some(r#"{"status":{"id":"x"},"info":{"chainID":"sha256:1"},"note":"not json"}"#)
        );
        assert_eq!(
            doc.and_then(|d| serde_json::to_value(d).ok()),
            Some(serde_json::json!({
                "status": {"id": "x"},
                "info": {"chainID": "sha256:1"},
                "note": "not json",
            }))
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            format_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20Z"
        );
    }
}
