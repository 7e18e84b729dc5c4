//! Plugin results of every supported spec version (0.1/0.2 `ip4`/`ip6`, 0.3.x/0.4.0, 1.x) as
//! one domain type, and the pod IPs in it (like go-cni's `GetCNIResult` + containerd's
//! `selectPodIPs`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An address with a prefix length (`10.88.0.5/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not in CIDR form (address/prefix)"))?;
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{a:?} is not an IP address"))?;
        let prefix_len: u8 = p
            .parse()
            .map_err(|_| format!("invalid prefix length {p:?}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix_len > max {
            return Err(format!("prefix length {prefix_len} > {max} in {s:?}"));
        }
        Ok(IpNet { addr, prefix_len })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The outcome of an ADD, whatever spec version the plugins spoke.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: DnsResult,
}

/// An interface a plugin created or configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The netns path for interfaces inside a sandbox; None for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into [`NetworkResult::interfaces`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A route in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// DNS information a plugin returned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsResult {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

/// Which address family is the pod's primary IP.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IpPreference {
    /// First IPv4 address first (containerd's default).
    #[default]
    Ipv4,
    /// First IPv6 address first.
    Ipv6,
    /// In the order the plugins returned them.
    Cni,
}

/// 0.1.0/0.2.0 results: one `ip4` and one `ip6` block.
#[derive(Deserialize)]
struct LegacyResult {
    ip4: Option<LegacyIp>,
    ip6: Option<LegacyIp>,
    #[serde(default)]
    dns: DnsResult,
}

#[derive(Deserialize)]
struct LegacyIp {
    ip: IpNet,
    gateway: Option<IpAddr>,
    #[serde(default)]
    routes: Vec<Route>,
}

impl NetworkResult {
    /// Parses a result of any supported version; checks interface indexes.
    pub fn from_value(v: &Value) -> Result<Self, String> {
        let version = v.get("cniVersion").and_then(Value::as_str).unwrap_or("");
        let result = if version.starts_with("0.1.") || version.starts_with("0.2.") {
            let legacy: LegacyResult =
                serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
            let mut r = NetworkResult {
                cni_version: version.into(),
                dns: legacy.dns,
                ..Default::default()
            };
            for ip in [legacy.ip4, legacy.ip6].into_iter().flatten() {
                r.ips.push(IpConfig {
                    address: ip.ip,
                    gateway: ip.gateway,
                    interface: None,
                });
                r.routes.extend(ip.routes);
            }
            r
        } else {
            // 0.3.x/0.4.0 carry `"version": "4"` in each IP; it is implied by the address.
            serde_json::from_value::<NetworkResult>(v.clone()).map_err(|e| e.to_string())?
        };
        for ip in &result.ips {
            if let Some(i) = ip.interface
                && i >= result.interfaces.len()
            {
                return Err(format!(
                    "ip {} names interface {i}, but there are {} interfaces",
                    ip.address,
                    result.interfaces.len()
                ));
            }
        }
        Ok(result)
    }

    /// Parses result JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let v: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        Self::from_value(&v)
    }

    /// The addresses of the sandbox interface `ifname` (IPs without an interface index count as
    /// its, as go-cni does), the preferred family's first address first, the rest in order.
    /// When some interface named `ifname` has a `sandbox`, host-side namesakes are ignored.
    pub fn pod_ips(&self, ifname: &str, pref: IpPreference) -> Vec<IpAddr> {
        let in_sandbox = self
            .interfaces
            .iter()
            .any(|i| i.name == ifname && i.sandbox.as_deref().is_some_and(|s| !s.is_empty()));
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(
                |ip| match ip.interface.and_then(|i| self.interfaces.get(i)) {
                    None => true,
                    Some(i) => {
                        i.name == ifname
                            && (!in_sandbox || i.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
                    }
                },
            )
            .map(|ip| ip.address.addr)
            .collect();
        let want: fn(&IpAddr) -> bool = match pref {
            IpPreference::Ipv4 => IpAddr::is_ipv4,
            IpPreference::Ipv6 => IpAddr::is_ipv6,
            IpPreference::Cni => return ips,
        };
        if let Some(pos) = ips.iter().position(want) {
            let primary = ips.remove(pos);
            ips.insert(0, primary);
        }
        ips
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_100: &str = r#"{
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
            {"name": "veth1234", "mac": "aa:bb:cc:dd:ee:02"},
            {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p1"}
        ],
        "ips": [
            {"address": "fd00:10::5/64", "gateway": "fd00:10::1", "interface": 2},
            {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 2},
            {"address": "10.88.0.1/16", "interface": 0}
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}, {"dst": "10.0.0.0/8"}],
        "dns": {"nameservers": ["10.88.0.1"], "domain": "cluster.local", "search": ["svc"]}
    }"#;

    #[test]
    fn parses_1_0_0() {
        let r = NetworkResult::parse(BRIDGE_100.as_bytes()).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.interfaces[2].sandbox.as_deref(), Some("/run/netns/p1"));
        assert_eq!(r.ips[1].address.to_string(), "10.88.0.5/16");
        assert_eq!(r.ips[1].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.routes[1].gw, None);
        assert_eq!(r.dns.domain.as_deref(), Some("cluster.local"));
        let v4: Vec<String> = r
            .pod_ips("eth0", IpPreference::Ipv4)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(v4, ["10.88.0.5", "fd00:10::5"]);
        assert_eq!(
            r.pod_ips("eth0", IpPreference::Ipv6)[0].to_string(),
            "fd00:10::5"
        );
        assert_eq!(
            r.pod_ips("eth0", IpPreference::Cni)[0].to_string(),
            "fd00:10::5"
        );
        assert!(r.pod_ips("eth1", IpPreference::Ipv4).is_empty());
    }

    #[test]
    fn parses_0_3_and_0_4_with_ip_versions() {
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            let text = format!(
                r#"{{"cniVersion":"{v}","interfaces":[{{"name":"eth0","sandbox":"/x"}}],
                "ips":[{{"version":"4","address":"10.1.0.5/24","gateway":"10.1.0.1","interface":0}}],
                "routes":[{{"dst":"0.0.0.0/0"}}],"dns":{{}}}}"#
            );
            let r = NetworkResult::parse(text.as_bytes()).unwrap();
            assert_eq!(r.cni_version, v);
            assert_eq!(
                r.pod_ips("eth0", IpPreference::Ipv4),
                ["10.1.0.5".parse::<IpAddr>().unwrap()]
            );
        }
    }

    #[test]
    fn parses_legacy_and_chained_results_without_interfaces() {
        let r = NetworkResult::parse(
            br#"{"cniVersion":"0.2.0","ip4":{"ip":"10.2.0.7/16","gateway":"10.2.0.1",
                "routes":[{"dst":"0.0.0.0/0"}]},"ip6":{"ip":"fd00::7/64"},"dns":{"nameservers":["1.1.1.1"]}}"#,
        )
        .unwrap();
        assert_eq!(r.ips.len(), 2);
        assert_eq!(r.routes.len(), 1);
        assert_eq!(r.dns.nameservers, ["1.1.1.1"]);
        // No interface index: attributed to the sandbox interface.
        assert_eq!(
            r.pod_ips("eth0", IpPreference::Ipv4)[0].to_string(),
            "10.2.0.7"
        );
        let r = NetworkResult::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert!(r.ips.is_empty() && r.interfaces.is_empty());
    }

    #[test]
    fn host_side_namesake_is_not_a_pod_ip() {
        let r = NetworkResult::parse(
            br#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"},{"name":"eth0","sandbox":"/n"}],
                "ips":[{"address":"192.0.2.9/24","interface":0},{"address":"10.3.0.2/24","interface":1}]}"#,
        )
        .unwrap();
        assert_eq!(r.pod_ips("eth0", IpPreference::Ipv4).len(), 1);
    }

    #[test]
    fn rejects_bad_results() {
        for bad in [
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/24","interface":0}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/33"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"nope/8"}]}"#,
            r#"{"cniVersion":"1.0.0","routes":[{"dst":"0.0.0.0/0","gw":"x"}]}"#,
            r#"{"cniVersion":"1.0.0","interfaces":{}}"#,
            "not json",
        ] {
            assert!(NetworkResult::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipnet_round_trip() {
        let n: IpNet = "fd00::1/64".parse().unwrap();
        assert_eq!(n.to_string(), "fd00::1/64");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"fd00::1/64\"");
    }
}
