//! husk-server: the gRPC face of husk. Thin tonic handlers for the CRI `RuntimeService` and
//! `ImageService` and husk's own `husk.v1.Husk`, the proto ↔ domain conversions, the single
//! error → status table, and a per-RPC logging layer. Only this crate (and the CLI) sees
//! protobuf types.
#![forbid(unsafe_code)]

pub mod convert;
pub mod convert_container;
pub mod convert_pod;
mod husk;
mod image;
mod metrics;
mod rpclog;
mod runtime;
mod status;
mod stream;
pub mod uds_authority;

use std::sync::Arc;

use husk_image::ImageService;
use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

pub use rpclog::RpcLogLayer;
pub use status::to_status;
pub use stream::EngineBackend;

/// gRPC message size limit, as containerd's (16 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// What the daemon tells `Version` and `Status`.
#[derive(Debug, Clone)]
pub struct DaemonInfo {
    pub version: String,
    /// The effective configuration, shown in verbose `Status`.
    pub config_json: serde_json::Value,
    /// Path of the default OCI runtime binary.
    pub runtime_path: String,
    pub runtime_name: String,
}

/// Everything the handlers need.
#[derive(Clone)]
pub struct Services {
    pub images: Arc<ImageService>,
    pub engine: Arc<husk_engine::Engine>,
    pub info: Arc<DaemonInfo>,
    /// Hands out the URLs of Exec, Attach and PortForward.
    pub streaming: husk_streaming::Server,
}

impl Services {
    pub fn runtime_server(&self) -> RuntimeServiceServer<runtime::Runtime> {
        RuntimeServiceServer::new(runtime::Runtime { s: self.clone() })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn image_server(&self) -> ImageServiceServer<image::Images> {
        ImageServiceServer::new(image::Images { s: self.clone() })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn husk_server(&self) -> husk_api::v1::husk_server::HuskServer<husk::Husk> {
        husk_api::v1::husk_server::HuskServer::new(husk::Husk { s: self.clone() })
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}
