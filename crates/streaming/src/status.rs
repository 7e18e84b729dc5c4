//! The `metav1.Status` documents written to the error stream when a session ends.

use serde::Serialize;

use crate::backend::{BackendError, ExitStatus};

/// kubelet's `StatusReason` for a command that exited non-zero.
const NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
/// kubelet's `CauseType` carrying the exit code.
const EXIT_CODE_CAUSE: &str = "ExitCode";

#[derive(Debug, Serialize)]
struct Status<'a> {
    metadata: Empty,
    status: &'a str,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
}

#[derive(Debug, Serialize)]
struct Empty {}

#[derive(Debug, Serialize)]
struct Details {
    causes: Vec<Cause>,
}

#[derive(Debug, Serialize)]
struct Cause {
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    message: String,
}

/// How a session ended, as the error stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exited(ExitStatus),
    Failed(BackendError),
}

impl From<Result<ExitStatus, BackendError>> for Outcome {
    fn from(r: Result<ExitStatus, BackendError>) -> Self {
        match r {
            Ok(s) => Self::Exited(s),
            Err(e) => Self::Failed(e),
        }
    }
}

impl Outcome {
    fn status(&self) -> Option<Status<'static>> {
        match self {
            Self::Exited(s) if s.success() => None,
            Self::Exited(s) => Some(Status {
                metadata: Empty {},
                status: "Failure",
                message: format!(
                    "command terminated with non-zero exit code: command terminated with exit code {}",
                    s.code
                ),
                reason: NON_ZERO_EXIT_CODE,
                details: Some(Details {
                    causes: vec![Cause {
                        reason: EXIT_CODE_CAUSE,
                        message: s.code.to_string(),
                    }],
                }),
                code: None,
            }),
            Self::Failed(e) => Some(Status {
                metadata: Empty {},
                status: "Failure",
                message: format!("Internal error occurred: {}", e.message()),
                reason: "InternalError",
                details: Some(Details {
                    causes: vec![Cause {
                        reason: "",
                        message: e.message().to_owned(),
                    }],
                }),
                code: Some(500),
            }),
        }
    }

    /// The v4+ error-stream payload: a JSON `Status`, `Success` included.
    pub(crate) fn v4_json(&self) -> Vec<u8> {
        let success = Status {
            metadata: Empty {},
            status: "Success",
            message: String::new(),
            reason: "",
            details: None,
            code: None,
        };
        let status = self.status().unwrap_or(success);
        serde_json::to_vec(&status).unwrap_or_default()
    }

    /// The pre-v4 error-stream payload: the failure's message, nothing on success.
    pub(crate) fn v1_text(&self) -> Vec<u8> {
        self.status()
            .map(|s| s.message.into_bytes())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_is_kubelets_document() {
        let o = Outcome::Exited(ExitStatus::new(0));
        assert_eq!(o.v4_json(), br#"{"metadata":{},"status":"Success"}"#);
        assert!(o.v1_text().is_empty());
    }

    #[test]
    fn non_zero_exit_carries_the_code_as_a_cause() {
        let o = Outcome::Exited(ExitStatus::new(3));
        let v: serde_json::Value = serde_json::from_slice(&o.v4_json()).unwrap();
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("non-zero exit code")
        );
        assert!(
            String::from_utf8(o.v1_text())
                .unwrap()
                .contains("exit code 3")
        );
    }

    #[test]
    fn backend_errors_are_internal_errors() {
        let o = Outcome::Failed(BackendError::new("container gone"));
        let v: serde_json::Value = serde_json::from_slice(&o.v4_json()).unwrap();
        assert_eq!(v["reason"], "InternalError");
        assert_eq!(v["code"], 500);
        assert_eq!(v["message"], "Internal error occurred: container gone");
    }
}
