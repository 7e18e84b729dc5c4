//! husk-image: everything about container images — reference parsing, registry hosts
//! configuration, the registry client, the content-addressed store, layer unpacking, overlay
//! snapshots keyed by chain ID, and the image index with garbage collection.
#![forbid(unsafe_code)]

pub mod hosts;
pub mod reference;
pub mod unpack;
