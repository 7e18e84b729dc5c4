//! Fuzz target: arbitrary bytes as a CNI network configuration — a `.conflist` or a single
//! `.conf` (first byte picks) — and as a bandwidth annotation. A parsed list survives the ADD
//! cache's round trip (`to_json`, then read back as a list) unchanged.
#![no_main]

use husk_net::{CniConfig, parse_bandwidth_annotation};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if let Ok(s) = std::str::from_utf8(body) {
        let _ = parse_bandwidth_annotation(s);
    }
    let parsed = if kind % 2 == 0 {
        CniConfig::from_conflist_bytes(body)
    } else {
        CniConfig::from_conf_bytes(body)
    };
    let Ok(cfg) = parsed else {
        return;
    };
    let _ = cfg.version_at_least((0, 4, 0));
    let json = serde_json::to_vec(&cfg.to_json()).expect("serialize config");
    let back = CniConfig::from_conflist_bytes(&json).expect("a cached config reads back");
    assert_eq!(back, cfg, "config changed across the cache round trip");
});
