//! husk's CNI client (what libcni and containerd's go-cni do): loads the network config list
//! from the config directory and reloads it when it changes, runs plugins through the CNI exec
//! protocol (ADD, DEL, CHECK; spec 0.3.0 to 1.1.0), passes capability args, parses results,
//! and caches what each ADD used so that teardown always undoes exactly that.
//!
//! ```text
//! Network::setup(PodNetwork)    cache(config) → ADD plugin 1 → ADD plugin 2(prevResult) … → cache(result)
//!                                 └ on failure: DEL plugin n … 1 (reverse), cache removed
//! Network::teardown(PodNetwork) cache → DEL plugin n … 1 (prevResult = cached result) → cache removed
//! ```
#![forbid(unsafe_code)]

mod bandwidth;
mod cache;
mod config;
mod error;
mod exec;
mod network;
mod request;
mod result;
mod watch;

pub use bandwidth::parse_bandwidth_annotation;
pub use config::{
    CONFIG_EXTENSIONS, CniConfig, ConfigError, PluginConf, SUPPORTED_VERSIONS, conf_files,
};
pub use error::{CniCommand, NETWORK_NOT_READY_REASON, NetError, NotReady, PluginError};
pub use network::{DEFAULT_TIMEOUT, NetConfig, Network};
pub use request::{
    Bandwidth, CapabilityArgs, DEFAULT_IFNAME, Dns, PodNetwork, PortMapping, Protocol,
};
pub use result::{DnsResult, Interface, IpConfig, IpNet, IpPreference, NetworkResult, Route};
pub use watch::ConfigWatcher;
