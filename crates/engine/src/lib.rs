//! husk-engine: the domain of husk — pod sandboxes and containers, their state machines and
//! persisted stores, OCI spec generation, lifecycle with rollback, restart recovery. Never sees
//! protobuf or tonic. Crash safety: every lifecycle operation records its intent before its
//! first effect; recovery finishes or undoes it and a sweep removes what no record names.
#![forbid(unsafe_code)]

pub mod container;
mod engine;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod names;
mod procs;
mod recover;
pub mod rollback;
pub mod sandbox;
pub mod spec;
pub mod store;
mod sweep;
mod undo;

pub use engine::{CgroupDriver, Engine, EngineConfig, HandlerFeatures};
pub use error::{EngineError, ErrorKind, Result};
pub use sweep::SweepReport;
