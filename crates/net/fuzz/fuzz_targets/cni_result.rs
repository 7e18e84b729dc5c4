//! Fuzz target: arbitrary bytes as a CNI plugin's result (any spec version, 0.1 to 1.x) into
//! `NetworkResult::parse`; a parsed result yields pod IPs that are its own, and a result of
//! spec 0.3 or later survives being written out and read back unchanged.
#![no_main]

use husk_net::{IpPreference, NetworkResult};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = NetworkResult::parse(data) else {
        return;
    };
    let mut names = vec!["eth0".to_string(), String::new()];
    names.extend(r.interfaces.iter().map(|i| i.name.clone()));
    for ifname in &names {
        for pref in [IpPreference::Ipv4, IpPreference::Ipv6, IpPreference::Cni] {
            let ips = r.pod_ips(ifname, pref);
            for ip in &ips {
                assert!(
                    r.ips.iter().any(|c| c.address.addr == *ip),
                    "pod ip {ip} is not in the result"
                );
            }
            assert!(ips.len() <= r.ips.len());
        }
    }
    let legacy = r.cni_version.starts_with("0.1.") || r.cni_version.starts_with("0.2.");
    if !legacy {
        let json = serde_json::to_vec(&r).expect("serialize result");
        let back = NetworkResult::parse(&json).expect("a written result reads back");
        assert_eq!(back, r, "result changed across a round trip");
    }
});
