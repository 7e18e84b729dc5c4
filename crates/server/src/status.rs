//! The one table from domain errors to gRPC statuses.

use husk_image::{ErrorKind, ImageError};
use tonic::{Code, Status};

/// Maps an error class to its gRPC code.
pub fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::DataLoss => Code::DataLoss,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::ResourceExhausted => Code::ResourceExhausted,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A status for an error, with the full message.
pub fn to_status(kind: ErrorKind, message: String) -> Status {
    Status::new(code(kind), message)
}

impl From<ImageErr> for Status {
    fn from(e: ImageErr) -> Status {
        to_status(e.0.kind(), e.0.to_string())
    }
}

/// Newtype so that `?` converts image errors in handlers.
pub struct ImageErr(pub ImageError);

impl From<ImageError> for ImageErr {
    fn from(e: ImageError) -> Self {
        ImageErr(e)
    }
}

/// Newtype so that engine errors convert in handlers.
pub struct EngineErr(pub husk_engine::EngineError);

impl From<EngineErr> for Status {
    fn from(e: EngineErr) -> Status {
        to_status(e.0.kind(), e.0.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_a_distinct_meaningful_code() {
        assert_eq!(code(ErrorKind::NotFound), Code::NotFound);
        assert_eq!(code(ErrorKind::InvalidArgument), Code::InvalidArgument);
        assert_eq!(code(ErrorKind::DataLoss), Code::DataLoss);
        let e = ImageError::ImageNotFound {
            reference: "busybox".into(),
        };
        let s: Status = ImageErr(e).into();
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().contains("busybox"));
    }
}
