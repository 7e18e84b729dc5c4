//! `State` and `Status`: what `<runtime> state` and `<runtime> list --format json` report.

use std::path::PathBuf;

use serde::Deserialize;

/// The lifecycle status of a container as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
    /// A status string this crate does not know.
    Unknown(String),
}

impl Status {
    fn parse(s: &str) -> Self {
        match s {
            "creating" => Self::Creating,
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "stopped" => Self::Stopped,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// One container as reported by the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub id: String,
    /// The init process on the host; 0 once stopped.
    pub pid: i32,
    pub status: Status,
    pub bundle: PathBuf,
    /// RFC 3339 creation time, when the runtime says.
    pub created: Option<String>,
}

/// The fields both runtimes share (crun's `list` omits `ociVersion` and `rootfs`).
#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    pid: i32,
    status: String,
    #[serde(default)]
    bundle: PathBuf,
    #[serde(default)]
    created: Option<String>,
}

impl From<RawState> for State {
    fn from(raw: RawState) -> Self {
        Self {
            id: raw.id,
            pid: raw.pid,
            status: Status::parse(&raw.status),
            bundle: raw.bundle,
            created: raw.created,
        }
    }
}

/// Parses the output of `state <id>`.
pub(crate) fn parse_state(json: &[u8]) -> Result<State, serde_json::Error> {
    serde_json::from_slice::<RawState>(json).map(State::from)
}

/// Parses the output of `list --format json` (runc prints `null` when empty).
pub(crate) fn parse_list(json: &[u8]) -> Result<Vec<State>, serde_json::Error> {
    let raw: Option<Vec<RawState>> = serde_json::from_slice(json)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(State::from)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_state() {
        let s = parse_state(
            br#"{"ociVersion":"1.0.2-dev","id":"x1","pid":20949,"status":"created",
            "bundle":"/tmp/b","rootfs":"/tmp/b/rootfs","created":"2026-11-23T01:38:28.95519621Z","owner":""}"#,
        )
        .unwrap();
        assert_eq!(s.id, "x1");
        assert_eq!(s.pid, 20949);
        assert_eq!(s.status, Status::Created);
        assert_eq!(s.bundle, PathBuf::from("/tmp/b"));
        assert_eq!(s.created.as_deref(), Some("2026-11-23T01:38:28.95519621Z"));
    }

    #[test]
    fn parses_crun_state_and_lists() {
        let s = parse_state(
            b"{\n \"ociVersion\": \"1.0.0\", \"id\": \"x1\", \"pid\": 0, \"status\": \"stopped\",\n \
              \"bundle\": \"/tmp/b\", \"rootfs\": \"rootfs\", \"created\": \"2026-11-23T01:38:29.477454Z\",\n \
              \"systemd-scope\": \"\", \"owner\": \"root\"\n}\n\n",
        )
        .unwrap();
        assert_eq!(s.status, Status::Stopped);
        let l = parse_list(b"[\n    {\"id\": \"a\", \"pid\": 7, \"status\": \"paused\", \"bundle\": \"/b\", \"created\": \"t\", \"owner\": \"root\"}\n]").unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].status, Status::Paused);
        assert_eq!(parse_list(b"[\n\n]\n").unwrap(), vec![]);
        assert_eq!(parse_list(b"null\n").unwrap(), vec![]);
    }

    #[test]
    fn unknown_status_is_kept() {
        let s = parse_state(br#"{"id":"a","status":"frozen-ish"}"#).unwrap();
        assert_eq!(s.status, Status::Unknown("frozen-ish".into()));
        assert!(parse_state(b"not json").is_err());
    }
}
