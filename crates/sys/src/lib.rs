//! husk-sys: the one crate of husk allowed to hold `unsafe`; everything here is a small, safe
//! wrapper over a Linux facility (atomic files today; namespaces, mounts, subreaper as they come).

pub mod asyncfd;
pub mod fs;
pub mod mount;
pub mod mount_tree;
pub mod ns;
pub mod process;
pub mod pty;
pub mod signalfd;
