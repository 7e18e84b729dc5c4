//! husk-test-support: dev-only helpers for integration tests — OCI images built in memory from
//! the host's busybox-static, a real local `docker-registry` (plain, htpasswd or bearer-token
//! auth, optional TLS), a connection-cutting TCP proxy, a `huskd` started in a temp root, and
//! what a test needs from the machine (`require_system`: a skip note, or a failure under
//! `HUSK_REQUIRE_SYSTEM=1`).
#![forbid(unsafe_code)]

mod cleanup;
pub mod huskd;
pub mod interop;
pub mod oci;
pub mod proxy;
pub mod registry;
pub mod system;

pub use huskd::{Huskd, HuskdOptions, channel};
pub use oci::{
    BuiltImage, BuiltIndex, Compression, ImageBuilder, IndexBuilder, Layer, LayerBuilder,
    MediaTypes, Platform, busybox_image, busybox_layer,
};
pub use proxy::CutProxy;
pub use registry::{Auth, Registry, RegistryOptions};
pub use system::{find_program, require_program, require_system, system_missing, write_executable};

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
