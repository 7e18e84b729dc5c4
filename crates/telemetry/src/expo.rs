//! The Prometheus text exposition format 0.0.4: `# HELP`/`# TYPE` lines, samples with escaped
//! label values, and Go-compatible float spelling (`+Inf`, `-Inf`, `NaN`).

use std::fmt::Write as _;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a family.
pub fn header(out: &mut String, name: &str, help: &str, kind: Kind) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
}

/// Writes one sample line: `name{l1="v1",l2="v2"} value`.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: &str) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            out.push_str(&escape_label_value(v));
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A label value as the format wants it: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// HELP text: `\` → `\\`, newline → `\n` (quotes stay).
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus (and Go's `strconv`) spell the special values; finite values in
/// Rust's shortest round-trip form (`1`, `0.005`, `12.5`).
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(escape_label_value("plain é"), "plain é");
        let mut out = String::new();
        sample(&mut out, "m", &[("a", "q\""), ("b", "\\\n")], "1");
        assert_eq!(out, "m{a=\"q\\\"\",b=\"\\\\\\n\"} 1\n");
    }

    #[test]
    fn help_is_escaped_and_types_named() {
        let mut out = String::new();
        header(&mut out, "m", "a \\ b\nc \"q\"", Kind::Histogram);
        assert_eq!(out, "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m histogram\n");
    }

    #[test]
    fn floats_spell_like_go() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.005), "0.005");
        assert_eq!(float(2.5), "2.5");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(1e21), "1000000000000000000000");
    }
}
