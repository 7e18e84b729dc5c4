//! husk-api: generated types, client and server of husk's own `husk.v1.Husk` gRPC service.
#![forbid(unsafe_code)]
#![allow(clippy::all)]

/// The `husk.v1` package.
pub mod v1 {
    tonic::include_proto!("husk.v1");
}
