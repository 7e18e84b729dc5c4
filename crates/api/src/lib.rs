//! husk-api: generated types, clients and servers of the gRPC APIs huskd serves: the CRI
//! (`runtime.v1`, husk's own copy at cri-api v0.36) and husk's own `husk.v1.Husk` service.
#![forbid(unsafe_code)]
#![allow(clippy::all)]

/// The `husk.v1` package.
pub mod v1 {
    tonic::include_proto!("husk.v1");
}

/// The CRI, package `runtime.v1` (Kubernetes 1.36, cri-api v0.36.3); older kubelets speak a
/// subset of the same wire contract.
pub mod runtime {
    /// The `runtime.v1` package.
    pub mod v1 {
        tonic::include_proto!("runtime.v1");
    }
}
