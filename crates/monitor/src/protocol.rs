//! The wire between huskd and `husk-monitor`: the start reply on the monitor's stdout, JSON-line
//! requests and replies on the control socket, the binary attach frames, and the exit record.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The one line the monitor prints on stdout once the runtime's `create` has finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartReply {
    /// `true` when the container is CREATED.
    pub ok: bool,
    /// The container's pid (when `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The runtime's message (when not `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A request on the control socket: one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Answered at once with a [`StatusReply`].
    Status,
    /// Answered with an [`ExitRecord`] once the container has exited (at once if it has).
    Wait,
    /// Close and reopen the log file (after the kubelet renamed it); answered with an [`Ack`].
    ReopenLog,
    /// Answered with an [`Ack`]; then the connection carries [`frame`]s both ways.
    Attach {
        /// Forward this client's stdin frames to the container.
        #[serde(default)]
        stdin: bool,
        /// Send the container's stdout (all output, in tty mode) as frames.
        #[serde(default)]
        stdout: bool,
        /// Send the container's stderr as frames.
        #[serde(default)]
        stderr: bool,
    },
}

/// `{"ok":true}` or `{"ok":false,"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Whether the request succeeded.
    pub ok: bool,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Ack {
    /// A success.
    pub fn ok() -> Self {
        Self {
            ok: true,
            error: None,
        }
    }

    /// A failure with a message.
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
        }
    }
}

/// The reply to [`Request::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// The container's pid.
    pub pid: i32,
    /// `false` once the container has been reaped.
    pub running: bool,
    /// The exit record once there is one.
    pub exit: Option<ExitRecord>,
}

/// How the container ended; the content of `exit_file` and of the exit frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The container's pid.
    pub pid: i32,
    /// The exit status, or 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// An OOM kill was recorded in one of the container's memory cgroups.
    pub oom_killed: bool,
    /// When it was reaped, RFC 3339 with nanoseconds, UTC.
    pub finished_at: String,
}

/// Reads an exit record written by a monitor; `None` when it is missing or unreadable (the
/// monitor writes it atomically, so a present file is always complete).
pub fn read_exit_file(path: &Path) -> Option<ExitRecord> {
    let data = std::fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

/// Attach frames: `[u8 kind][u32 big-endian len][payload]`.
pub mod frame {
    /// Client → monitor: bytes for the container's stdin.
    pub const STDIN: u8 = 1;
    /// Monitor → client: container stdout (all output in tty mode).
    pub const STDOUT: u8 = 2;
    /// Monitor → client: container stderr.
    pub const STDERR: u8 = 3;
    /// Client → monitor: terminal size, payload `u16 cols, u16 rows` big-endian.
    pub const RESIZE: u8 = 4;
    /// Client → monitor: close the container's stdin.
    pub const CLOSE_STDIN: u8 = 5;
    /// Monitor → client: the container exited; payload the [`super::ExitRecord`] JSON.
    pub const EXIT: u8 = 6;
    /// Length of the frame header.
    pub const HEADER_LEN: usize = 5;
    /// The largest payload either side accepts.
    pub const MAX_PAYLOAD: u32 = 1 << 20;

    /// Encodes a frame header.
    pub fn header(kind: u8, len: u32) -> [u8; HEADER_LEN] {
        let l = len.to_be_bytes();
        [kind, l[0], l[1], l[2], l[3]]
    }

    /// Decodes a frame header into `(kind, len)`.
    pub fn parse_header(h: [u8; HEADER_LEN]) -> (u8, u32) {
        (h[0], u32::from_be_bytes([h[1], h[2], h[3], h[4]]))
    }

    /// Encodes a resize payload.
    pub fn resize_payload(cols: u16, rows: u16) -> [u8; 4] {
        let c = cols.to_be_bytes();
        let r = rows.to_be_bytes();
        [c[0], c[1], r[0], r[1]]
    }

    /// Decodes a resize payload into `(cols, rows)`.
    pub fn parse_resize(p: [u8; 4]) -> (u16, u16) {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_the_documented_json() {
        let r: Request = serde_json::from_str(r#"{"op":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(r#"{"op":"reopen_log"}"#).unwrap();
        assert_eq!(r, Request::ReopenLog);
        let r: Request =
            serde_json::from_str(r#"{"op":"attach","stdin":true,"stdout":true}"#).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::Wait).unwrap(),
            r#"{"op":"wait"}"#
        );
    }

    #[test]
    fn replies_have_the_documented_json() {
        assert_eq!(serde_json::to_string(&Ack::ok()).unwrap(), r#"{"ok":true}"#);
        assert_eq!(
            serde_json::to_string(&Ack::error("x")).unwrap(),
            r#"{"ok":false,"error":"x"}"#
        );
        let start = StartReply {
            ok: true,
            pid: Some(7),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&start).unwrap(),
            r#"{"ok":true,"pid":7}"#
        );
        let exit = ExitRecord {
            pid: 7,
            exit_code: 137,
            signal: Some(9),
            oom_killed: false,
            finished_at: "2024-01-01T00:00:00.000000000Z".into(),
        };
        let status = StatusReply {
            pid: 7,
            running: false,
            exit: Some(exit),
        };
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.starts_with(r#"{"pid":7,"running":false,"exit":{"pid":7,"exit_code":137"#));
    }

    #[test]
    fn frame_headers_round_trip() {
        let h = frame::header(frame::STDOUT, 0x0102_0304);
        assert_eq!(h, [2, 1, 2, 3, 4]);
        assert_eq!(frame::parse_header(h), (2, 0x0102_0304));
        assert_eq!(frame::parse_resize(frame::resize_payload(80, 24)), (80, 24));
    }

    #[test]
    fn exit_file_is_read_back_or_none() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("exit.json");
        assert_eq!(read_exit_file(&p), None);
        std::fs::write(
            &p,
            r#"{"pid":1,"exit_code":3,"signal":null,"oom_killed":false,"finished_at":"t"}"#,
        )
        .unwrap();
        assert_eq!(read_exit_file(&p).map(|e| e.exit_code), Some(3));
    }
}
