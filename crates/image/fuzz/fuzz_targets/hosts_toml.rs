//! Fuzz target: arbitrary bytes as a `hosts.toml` (in `_default`, so it applies to every
//! registry) resolved for one of several registry domains (first byte picks). A resolved list
//! is never empty, ends with the upstream, and every endpoint URL it builds is http(s).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use husk_image::hosts::{Capabilities, HostsConfig};
use libfuzzer_sys::fuzz_target;

const DOMAINS: [&str; 7] = [
    "docker.io",
    "registry.k8s.io",
    "127.0.0.1:5000",
    "localhost",
    "[::1]:5000",
    "example.com:443",
    "mirror.example:80",
];

fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        std::fs::create_dir_all(dir.join("_default")).expect("mkdir");
        // Files that relative `ca` / `client` entries may name.
        std::fs::write(dir.join("_default/ca.crt"), b"not a certificate").expect("write");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, toml)) = data.split_first() else {
        return;
    };
    let root = root();
    std::fs::write(root.join("_default/hosts.toml"), toml).expect("write hosts.toml");
    let domain = DOMAINS[usize::from(pick) % DOMAINS.len()];
    let Ok(hosts) = HostsConfig::new(root).hosts_for(domain) else {
        return;
    };
    assert!(!hosts.is_empty(), "no host at all for {domain}");
    assert!(hosts.last().is_some_and(|h| h.is_upstream));
    assert_eq!(hosts.iter().filter(|h| h.is_upstream).count(), 1);
    for h in &hosts {
        assert!(matches!(h.url.scheme(), "http" | "https"), "{}", h.url);
        assert!(
            h.url.path().ends_with('/'),
            "api root {} must end in /",
            h.url
        );
        let _ = h.capabilities.has(Capabilities::default());
        for (repo, suffix) in [
            ("library/busybox", "manifests/latest"),
            ("a/../../b", "blobs/uploads/"),
            ("", ""),
        ] {
            let url = h.endpoint(repo, suffix);
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
        }
    }
});
