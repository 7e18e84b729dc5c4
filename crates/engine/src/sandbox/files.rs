//! The files a pod's containers see at `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

use std::path::Path;

use super::DnsConfig;
use crate::error::{EngineError, Result};

/// `/etc/hosts` for a pod with its own network namespace (the kubelet may mount its own).
pub fn hosts(hostname: &str) -> String {
    let mut s = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        s.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    s
}

/// `resolv.conf` from the pod's DNS config, or the host's when it has none.
pub fn resolv_conf(dns: Option<&DnsConfig>, host_resolv: &Path) -> Result<String> {
    let Some(d) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return match std::fs::read_to_string(host_resolv) {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(EngineError::io("read", host_resolv, e)),
        };
    };
    for v in d.servers.iter().chain(&d.searches).chain(&d.options) {
        if v.contains(['\n', '\r']) {
            return Err(EngineError::Invalid(format!(
                "dns_config value {v:?} contains a newline"
            )));
        }
    }
    let mut s = String::new();
    if !d.searches.is_empty() {
        s.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    for n in &d.servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !d.options.is_empty() {
        s.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let d = DnsConfig {
            servers: vec!["10.0.0.10".into(), "1.1.1.1".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d), Path::new("/nonexistent")).unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), "nameserver 9.9.9.9\n").unwrap();
        assert_eq!(
            resolv_conf(None, tmp.path()).unwrap(),
            "nameserver 9.9.9.9\n"
        );
        let bad = DnsConfig {
            servers: vec!["1.1.1.1\nevil".into()],
            ..Default::default()
        };
        assert!(resolv_conf(Some(&bad), tmp.path()).is_err());
        assert!(hosts("web-0").contains("127.0.1.1\tweb-0"));
    }
}
