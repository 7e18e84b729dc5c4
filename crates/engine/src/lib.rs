//! husk-engine: the domain of husk — pod sandboxes and containers, their state machines and
//! persisted stores, OCI spec generation, lifecycle with rollback, restart recovery. Never sees
//! protobuf or tonic.
#![forbid(unsafe_code)]

pub mod container;
mod engine;
pub mod error;
pub mod events;
pub mod names;
mod recover;
pub mod rollback;
pub mod sandbox;
pub mod spec;
pub mod store;

pub use engine::{CgroupDriver, Engine, EngineConfig, HandlerFeatures};
pub use error::{EngineError, ErrorKind, Result};
