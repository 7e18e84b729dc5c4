//! husk-image: everything about container images — reference parsing, registry hosts
//! configuration, the registry client, the content-addressed store, layer unpacking, overlay
//! snapshots keyed by chain ID, and the image index with garbage collection.
#![forbid(unsafe_code)]

pub mod config;
pub mod content;
pub mod digest;
pub mod error;
pub mod hosts;
pub mod import;
pub mod locks;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod service;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use config::{DEFAULT_MAX_IMPORT_BYTES, ImageServiceConfig};
pub use error::{ErrorKind, ImageError};
pub use registry::Credentials;
pub use service::{FsUsage, ImageService, LayerPhase, LayerProgress, PullEvent, PullResult};
pub use store::ImageRecord;
