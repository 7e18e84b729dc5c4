//! husk-monitor library: the types huskd and the `husk-monitor` process share (`config`,
//! `protocol`), the CRI log format, and (feature `client`) the async client huskd uses.
#![forbid(unsafe_code)]

pub mod config;
pub mod cri_log;
pub mod protocol;
pub mod userns;

#[cfg(feature = "client")]
pub mod client;

pub use config::MonitorConfig;
pub use protocol::{ExitRecord, read_exit_file};
