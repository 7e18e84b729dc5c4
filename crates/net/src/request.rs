//! What the engine asks for (`PodNetwork`) and how it becomes a plugin call: validation,
//! `CNI_ARGS`, capability args (`runtimeConfig`), and the stdin config of each plugin.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{CniConfig, PluginConf, valid_name};
use crate::error::NetError;

/// The interface name inside the sandbox unless the engine says otherwise.
pub const DEFAULT_IFNAME: &str = "eth0";

/// One pod's attachment to the network.
#[derive(Debug, Clone, PartialEq)]
pub struct PodNetwork {
    /// The sandbox id (`CNI_CONTAINERID`).
    pub id: String,
    /// The pinned network namespace (`CNI_NETNS`).
    pub netns: PathBuf,
    /// The interface inside the sandbox (`CNI_IFNAME`), normally [`DEFAULT_IFNAME`].
    pub ifname: String,
    /// Pod namespace, name and uid (go into `CNI_ARGS`).
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Host ports (capability `portMappings`); entries with `host_port == 0` are skipped.
    pub port_mappings: Vec<PortMapping>,
    /// Traffic shaping (capability `bandwidth`).
    pub bandwidth: Option<Bandwidth>,
    /// DNS settings (capability `dns`).
    pub dns: Option<Dns>,
    /// The pod's cgroup parent (capability `cgroupPath`).
    pub cgroup_path: Option<String>,
}

impl PodNetwork {
    /// A request with the default interface name and no capability args.
    pub fn new(
        id: impl Into<String>,
        netns: impl Into<PathBuf>,
        namespace: impl Into<String>,
        name: impl Into<String>,
        uid: impl Into<String>,
    ) -> Self {
        PodNetwork {
            id: id.into(),
            netns: netns.into(),
            ifname: DEFAULT_IFNAME.into(),
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.into(),
            port_mappings: Vec::new(),
            bandwidth: None,
            dns: None,
            cgroup_path: None,
        }
    }
}

/// A host port forwarded to the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: u16,
    pub host_port: u16,
    /// Only this host address (None: all).
    pub host_ip: Option<IpAddr>,
}

/// Transport protocol of a port mapping (sent lowercase, as the portmap plugin wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

/// Traffic shaping in bits per second (bursts in bits), as the bandwidth plugin takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

impl Bandwidth {
    /// From the pod's annotation rates (see [`crate::parse_bandwidth_annotation`]); bursts are
    /// set to `u32::MAX` for a set rate, as containerd does (the plugin wants both).
    pub fn from_rates(ingress: Option<u64>, egress: Option<u64>) -> Option<Bandwidth> {
        if ingress.is_none() && egress.is_none() {
            return None;
        }
        let burst = |r: Option<u64>| if r.is_some() { u64::from(u32::MAX) } else { 0 };
        Some(Bandwidth {
            ingress_rate: ingress.unwrap_or(0),
            ingress_burst: burst(ingress),
            egress_rate: egress.unwrap_or(0),
            egress_burst: burst(egress),
        })
    }
}

/// DNS capability args (`{"servers", "searches", "options"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The capability args of a call, by capability name (`portMappings`, `bandwidth`, ...).
pub type CapabilityArgs = BTreeMap<String, Value>;

impl PodNetwork {
    /// Checks what the plugins will see: container id and interface name (libcni's rules), and
    /// `CNI_ARGS` values (no `;` or `=`).
    pub fn validate(&self) -> Result<(), NetError> {
        let bad = |field, value: &str, reason| NetError::InvalidRequest {
            field,
            value: value.into(),
            reason,
        };
        if !valid_name(&self.id) {
            return Err(bad(
                "sandbox id",
                &self.id,
                "must start with a letter or digit, followed by letters, digits, '_', '.' or '-'",
            ));
        }
        let ifname = &self.ifname;
        if ifname.is_empty() || ifname.len() > 15 || ifname == "." || ifname == ".." {
            return Err(bad(
                "interface name",
                ifname,
                "must be 1 to 15 bytes, not . or ..",
            ));
        }
        if ifname
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err(bad(
                "interface name",
                ifname,
                "must not contain '/', ':' or spaces",
            ));
        }
        for (field, v) in [
            ("pod namespace", &self.namespace),
            ("pod name", &self.name),
            ("pod uid", &self.uid),
        ] {
            if v.contains([';', '=']) {
                return Err(bad(field, v, "must not contain ';' or '='"));
            }
        }
        Ok(())
    }

    /// `CNI_ARGS`, as containerd sends it.
    pub fn cni_args(&self) -> String {
        format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            self.namespace, self.name, self.id, self.uid
        )
    }

    /// The capability args this request carries (only the ones that are set).
    pub fn capability_args(&self) -> CapabilityArgs {
        let mut caps = CapabilityArgs::new();
        let ports: Vec<Value> = self
            .port_mappings
            .iter()
            .filter(|p| p.host_port != 0)
            .map(|p| {
                let mut m = serde_json::json!({
                    "hostPort": p.host_port,
                    "containerPort": p.container_port,
                    "protocol": p.protocol,
                });
                if let (Some(ip), Some(obj)) = (p.host_ip, m.as_object_mut()) {
                    obj.insert("hostIP".into(), Value::String(ip.to_string()));
                }
                m
            })
            .collect();
        if !ports.is_empty() {
            caps.insert("portMappings".into(), Value::Array(ports));
        }
        if let Some(b) = &self.bandwidth {
            caps.insert("bandwidth".into(), serde_json::json!(b));
        }
        if let Some(d) = &self.dns {
            caps.insert("dns".into(), serde_json::json!(d));
        }
        if let Some(c) = &self.cgroup_path {
            caps.insert("cgroupPath".into(), Value::String(c.clone()));
        }
        caps
    }
}

/// The stdin config of one plugin call: the plugin's own config with the list's `name` and
/// `cniVersion`, `prevResult` when given, and `runtimeConfig` holding the capability args the
/// plugin declares (and only those; nothing is added when none apply, like libcni).
pub(crate) fn plugin_stdin(
    list: &CniConfig,
    plugin: &PluginConf,
    prev_result: Option<&Value>,
    caps: &CapabilityArgs,
) -> Value {
    let mut conf = plugin.raw.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let runtime: serde_json::Map<String, Value> = plugin
        .capabilities
        .iter()
        .filter_map(|c| caps.get(c).map(|v| (c.clone(), v.clone())))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    Value::Object(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodNetwork {
        PodNetwork::new("sb1", "/run/netns/x", "default", "web", "uid-1")
    }

    #[test]
    fn cni_args_like_containerd() {
        assert_eq!(
            pod().cni_args(),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"
        );
    }

    #[test]
    fn validation() {
        assert!(pod().validate().is_ok());
        for f in [
            |p: &mut PodNetwork| p.id = "".into(),
            |p: &mut PodNetwork| p.id = "a/b".into(),
            |p: &mut PodNetwork| p.ifname = "".into(),
            |p: &mut PodNetwork| p.ifname = "a-very-long-ifname".into(),
            |p: &mut PodNetwork| p.ifname = "et h0".into(),
            |p: &mut PodNetwork| p.ifname = "..".into(),
            |p: &mut PodNetwork| p.name = "a;b".into(),
            |p: &mut PodNetwork| p.uid = "a=b".into(),
        ] {
            let mut p = pod();
            f(&mut p);
            let e = p.validate().unwrap_err();
            assert!(matches!(e, NetError::InvalidRequest { .. }), "{e}");
        }
    }

    #[test]
    fn capability_args_json() {
        let mut p = pod();
        assert!(p.capability_args().is_empty());
        p.port_mappings = vec![
            PortMapping {
                protocol: Protocol::Tcp,
                container_port: 80,
                host_port: 8080,
                host_ip: None,
            },
            PortMapping {
                protocol: Protocol::Udp,
                container_port: 53,
                host_port: 5353,
                host_ip: Some("127.0.0.1".parse().unwrap()),
            },
            PortMapping {
                protocol: Protocol::Sctp,
                container_port: 9,
                host_port: 0,
                host_ip: None,
            },
        ];
        p.bandwidth = Bandwidth::from_rates(Some(1_000_000), None);
        p.dns = Some(Dns {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec![],
        });
        p.cgroup_path = Some("/kubepods/pod1".into());
        let caps = p.capability_args();
        assert_eq!(
            Value::Object(caps.into_iter().collect()),
            serde_json::json!({
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
                ],
                "bandwidth": {"ingressRate": 1000000, "ingressBurst": 4294967295u64,
                              "egressRate": 0, "egressBurst": 0},
                "dns": {"servers": ["10.0.0.10"], "searches": ["svc.cluster.local"]},
                "cgroupPath": "/kubepods/pod1"
            })
        );
    }

    #[test]
    fn stdin_injects_name_version_prev_result_and_declared_capabilities_only() {
        let list = CniConfig::from_conflist_bytes(
            br#"{"cniVersion":"1.0.0","name":"podnet","plugins":[
                {"type":"bridge","name":"ignored","cniVersion":"0.3.1","bridge":"cni0"},
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false},
                 "runtimeConfig":{"kept":"when nothing applies"}}]}"#,
        )
        .unwrap();
        let mut p = pod();
        p.bandwidth = Bandwidth::from_rates(Some(1000), Some(2000));
        let caps = p.capability_args();
        let first = plugin_stdin(&list, &list.plugins[0], None, &caps);
        assert_eq!(
            first,
            serde_json::json!({"type":"bridge","name":"podnet","cniVersion":"1.0.0","bridge":"cni0"})
        );
        // portmap declares portMappings (none requested) and bandwidth false: its own
        // runtimeConfig stays, nothing injected.
        let prev = serde_json::json!({"cniVersion":"1.0.0","ips":[]});
        let second = plugin_stdin(&list, &list.plugins[1], Some(&prev), &caps);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            serde_json::json!({"kept":"when nothing applies"})
        );
        p.port_mappings = vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_port: 8080,
            host_ip: None,
        }];
        let second = plugin_stdin(&list, &list.plugins[1], Some(&prev), &p.capability_args());
        assert_eq!(
            second["runtimeConfig"],
            serde_json::json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
        );
        assert_eq!(second["name"], "podnet");
    }
}
