//! Turns what runc/crun wrote (JSON log lines, logfmt, plain stderr) into one human message, and
//! recognises the "no such container" / "not running" answers of both runtimes.
//!
//! Formats seen with `--log-format json`:
//! - runc: `{"level":"error","msg":"container not running","time":"2026-01-01T00:00:00Z"}`
//! - crun: `{"msg":"open pidfd: No such process","level":"error","time":"2026-01-01T00:00:00.000000Z"}`
//!
//! Both also print the bare message to stderr, so JSON lines win and plain lines are the fallback.

use std::path::Path;

use serde::Deserialize;

/// One JSON log line of either runtime.
#[derive(Deserialize)]
struct LogLine {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

/// Wrapper phrases runc puts in front of the real reason.
const NOISE_PREFIXES: &[&str] = &[
    "runc create failed: ",
    "runc run failed: ",
    "runc exec failed: ",
    "exec failed: ",
    "unable to start container process: ",
];

/// The error message in a runtime log (JSON lines, or logfmt `msg="..."`), if any.
///
/// Error-level entries win; the last one is the reason (runc logs the cause last).
pub(crate) fn log_message(log: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(log);
    let mut last_error = None;
    let mut last_any = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((level, msg)) = parse_line(line) else {
            continue;
        };
        if msg.is_empty() {
            continue;
        }
        if matches!(level.as_str(), "error" | "fatal" | "panic") {
            last_error = Some(msg.clone());
        }
        last_any = Some(msg);
    }
    last_error.or(last_any).map(|m| strip_noise(&m).to_owned())
}

/// True when the log holds an error-level entry (the runtime itself failed).
pub(crate) fn has_error(log: &[u8]) -> bool {
    String::from_utf8_lossy(log)
        .lines()
        .filter_map(|l| parse_line(l.trim()))
        .any(|(level, _)| matches!(level.as_str(), "error" | "fatal" | "panic"))
}

/// `(level, msg)` of one JSON or logfmt line; `None` for plain text.
fn parse_line(line: &str) -> Option<(String, String)> {
    if line.starts_with('{') {
        let parsed: LogLine = serde_json::from_str(line).ok()?;
        return Some((parsed.level, parsed.msg));
    }
    // logrus text format: time="..." level=error msg="container does not exist"
    let level = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("level="))?
        .to_owned();
    let msg = line.split_once("msg=")?.1;
    let msg = match msg.strip_prefix('"') {
        Some(quoted) => unquote(quoted),
        None => msg.split_whitespace().next().unwrap_or_default().to_owned(),
    };
    Some((level, msg))
}

/// Reads a Go-quoted string body up to its closing quote.
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => break,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    out
}

/// The message for a failed call: the log's error entry, else JSON in stderr, else plain stderr.
pub(crate) fn error_message(log: Option<&[u8]>, stderr: &[u8]) -> String {
    if let Some(msg) = log.and_then(log_message) {
        return msg;
    }
    if let Some(msg) = log_message(stderr) {
        return msg;
    }
    let text = String::from_utf8_lossy(stderr);
    let plain: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('{'))
        .collect();
    match plain.last() {
        Some(line) => strip_noise(line).to_owned(),
        None => "no error message from the runtime".to_owned(),
    }
}

/// Drops runc's wrapper phrases, keeping the runtime's own reason.
pub(crate) fn strip_noise(mut msg: &str) -> &str {
    msg = msg.trim();
    while let Some(rest) = NOISE_PREFIXES.iter().find_map(|p| msg.strip_prefix(p)) {
        msg = rest;
    }
    msg
}

/// How a runtime answered about a container it could not act on.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    NotFound,
    NotRunning,
    Other,
}

/// Recognises "unknown container" and "not running" in runc's and crun's words.
///
/// crun names the missing state directory (`<root>/<id>/status`) rather than saying so.
pub(crate) fn classify(message: &str, root: &Path, id: &str) -> Verdict {
    const NOT_RUNNING: &[&str] = &[
        "container not running", // runc kill/pause/update on a stopped one
        "cannot exec in a stopped container", // runc exec
        "cannot start a container that has stopped", // runc start
        "is not running",        // crun start/exec/pause
        "open pidfd: No such process", // crun kill on a stopped one
    ];
    if message.contains("container does not exist") {
        return Verdict::NotFound;
    }
    if !id.is_empty() && message.contains("No such file or directory") {
        // `error opening file `<dir>/status`` or `cannot open directory '<dir>'`; not
        // `<dir>/exec.fifo`, which means "already started".
        let state_dir = root.join(id);
        let status_file = state_dir.join("status");
        let quoted_dir = format!("'{}'", state_dir.display());
        if message.contains(&*status_file.to_string_lossy()) || message.contains(&quoted_dir) {
            return Verdict::NotFound;
        }
    }
    if NOT_RUNNING.iter().any(|p| message.contains(p)) {
        return Verdict::NotRunning;
    }
    Verdict::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUNC_EXEC: &[u8] = br#"{"level":"error","msg":"exec failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"2026-11-23T01:38:28Z"}
exec failed: unable to start container process: exec: "nope": executable file not found in $PATH
"#;
    const CRUN_KILL: &[u8] = br#"open pidfd: No such process
{"msg":"open pidfd: No such process","level":"error","time":"2026-11-23T01:48:54.979456Z"}
"#;

    #[test]
    fn runc_json_wins_and_noise_is_stripped() {
        assert_eq!(
            error_message(None, RUNC_EXEC),
            r#"exec: "nope": executable file not found in $PATH"#
        );
    }

    #[test]
    fn crun_json_is_parsed() {
        assert_eq!(
            error_message(None, CRUN_KILL),
            "open pidfd: No such process"
        );
    }

    #[test]
    fn log_file_beats_stderr() {
        let log = br#"{"level":"warning","msg":"deprecated","time":"t"}
{"level":"error","msg":"runc create failed: invalid rootfs: stat /b/rootfs: no such file or directory","time":"t"}
"#;
        assert_eq!(
            error_message(Some(log), b"something else"),
            "invalid rootfs: stat /b/rootfs: no such file or directory"
        );
    }

    #[test]
    fn falls_back_to_plain_stderr() {
        // crun fails before opening its log when the bundle directory is missing.
        let msg = error_message(
            Some(b""),
            b"chdir `/tmp/nonexist` failed: No such file or directory\n",
        );
        assert_eq!(
            msg,
            "chdir `/tmp/nonexist` failed: No such file or directory"
        );
        assert_eq!(
            error_message(None, b""),
            "no error message from the runtime"
        );
    }

    #[test]
    fn logfmt_is_understood() {
        let line = br#"time="2026-11-23T01:38:39Z" level=error msg="container does not exist""#;
        assert_eq!(
            log_message(line).as_deref(),
            Some("container does not exist")
        );
        assert!(has_error(line));
        assert!(!has_error(b"hi\n"));
    }

    #[test]
    fn multiline_json_messages_survive() {
        let crun = br#"{"msg":"cannot parse the data: `lexical error`\n garbage","level":"error","time":"t"}"#;
        assert_eq!(
            log_message(crun).as_deref(),
            Some("cannot parse the data: `lexical error`\n garbage")
        );
    }

    #[test]
    fn classifies_both_runtimes() {
        let root = Path::new("/run/husk/runtimes/crun");
        assert_eq!(
            classify("container does not exist", root, "a"),
            Verdict::NotFound
        );
        assert_eq!(
            classify(
                "error opening file `/run/husk/runtimes/crun/a/status`: No such file or directory",
                root,
                "a"
            ),
            Verdict::NotFound
        );
        assert_eq!(
            classify(
                "cannot open directory '/run/husk/runtimes/crun/a': No such file or directory",
                root,
                "a"
            ),
            Verdict::NotFound
        );
        assert_eq!(
            classify(
                "cannot open `/run/husk/runtimes/crun/a/exec.fifo`: No such file or directory",
                root,
                "a"
            ),
            Verdict::Other
        );
        assert_eq!(
            classify("container not running", root, "a"),
            Verdict::NotRunning
        );
        assert_eq!(
            classify("open pidfd: No such process", root, "a"),
            Verdict::NotRunning
        );
        assert_eq!(
            classify("container `a` is not running", root, "a"),
            Verdict::NotRunning
        );
        assert_eq!(
            classify(
                "executable file `nope` not found in $PATH: No such file or directory",
                root,
                "a"
            ),
            Verdict::Other
        );
    }
}
