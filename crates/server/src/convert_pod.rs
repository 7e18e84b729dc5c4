//! CRI ↔ domain for pod sandboxes.

use std::collections::{BTreeMap, HashMap};

use husk_engine::sandbox::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceOptions, PodConfig, PortMapping, SandboxFilter,
    SandboxRecord, SandboxState, UsernsConfig,
};
use k8s_cri::v1 as cri;
use tonic::Status;

pub fn btree(m: &HashMap<String, String>) -> BTreeMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn hash(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn ns_mode(v: i32) -> Result<NamespaceMode, Status> {
    match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown namespace mode {v}"
        ))),
    }
}

pub fn ns_mode_cri(m: NamespaceMode) -> i32 {
    (match m {
        NamespaceMode::Pod => cri::NamespaceMode::Pod,
        NamespaceMode::Container => cri::NamespaceMode::Container,
        NamespaceMode::Node => cri::NamespaceMode::Node,
        NamespaceMode::Target => cri::NamespaceMode::Target,
    }) as i32
}

pub fn ns_options(o: Option<&cri::NamespaceOption>) -> Result<NamespaceOptions, Status> {
    let Some(o) = o else {
        return Ok(NamespaceOptions::default());
    };
    Ok(NamespaceOptions {
        network: ns_mode(o.network)?,
        pid: ns_mode(o.pid)?,
        ipc: ns_mode(o.ipc)?,
    })
}

/// CRI `userns_options` (the engine checks the rules: modes, one mapping, container id 0).
pub fn userns(o: Option<&cri::NamespaceOption>) -> Result<Option<UsernsConfig>, Status> {
    let Some(u) = o.and_then(|o| o.userns_options.as_ref()) else {
        return Ok(None);
    };
    let maps = |v: &[cri::IdMapping]| {
        v.iter()
            .map(|m| IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    Ok(Some(UsernsConfig {
        mode: ns_mode(u.mode)?,
        uids: maps(&u.uids),
        gids: maps(&u.gids),
    }))
}

fn userns_cri(u: &UsernsConfig) -> cri::UserNamespace {
    let maps = |v: &[IdMapping]| {
        v.iter()
            .map(|m| cri::IdMapping {
                container_id: m.container_id,
                host_id: m.host_id,
                length: m.length,
            })
            .collect()
    };
    cri::UserNamespace {
        mode: ns_mode_cri(u.mode),
        uids: maps(&u.uids),
        gids: maps(&u.gids),
    }
}

/// The domain pod config of a RunPodSandbox request.
pub fn pod_config(c: Option<cri::PodSandboxConfig>, handler: String) -> Result<PodConfig, Status> {
    let c = c.ok_or_else(|| Status::invalid_argument("config is required"))?;
    let md = c
        .metadata
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let port_mappings = c
        .port_mappings
        .iter()
        .map(|p| PortMapping {
            protocol: cri::Protocol::try_from(p.protocol)
                .map(|p| p.as_str_name().to_string())
                .unwrap_or_else(|_| "TCP".into()),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        })
        .collect();
    Ok(PodConfig {
        name: md.name,
        uid: md.uid,
        namespace: md.namespace,
        attempt: md.attempt,
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns: c.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: btree(&c.labels),
        annotations: btree(&c.annotations),
        cgroup_parent: linux.cgroup_parent,
        sysctls: btree(&linux.sysctls),
        namespaces: ns_options(sc.namespace_options.as_ref())?,
        userns: userns(sc.namespace_options.as_ref())?,
        privileged: sc.privileged,
        runtime_handler: handler,
    })
}

fn metadata(c: &PodConfig) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: c.name.clone(),
        uid: c.uid.clone(),
        namespace: c.namespace.clone(),
        attempt: c.attempt,
    }
}

pub fn state(s: SandboxState) -> i32 {
    (match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }) as i32
}

pub fn pod_status(r: &SandboxRecord) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(metadata(&r.config)),
        state: state(r.state),
        created_at: r.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: r.ips.first().cloned().unwrap_or_default(),
            additional_ips: r
                .ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: ns_mode_cri(r.config.namespaces.network),
                    pid: ns_mode_cri(r.config.namespaces.pid),
                    ipc: ns_mode_cri(r.config.namespaces.ipc),
                    target_id: String::new(),
                    userns_options: r.config.userns.as_ref().map(userns_cri),
                }),
            }),
        }),
        labels: hash(&r.config.labels),
        annotations: hash(&r.config.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

pub fn pod_sandbox(r: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: r.id.clone(),
        metadata: Some(metadata(&r.config)),
        state: state(r.state),
        created_at: r.created_at,
        labels: hash(&r.config.labels),
        annotations: hash(&r.config.annotations),
        runtime_handler: r.runtime_handler.clone(),
    }
}

/// Verbose PodSandboxStatus info, like containerd's `info` key.
pub fn pod_info(r: &SandboxRecord) -> HashMap<String, String> {
    let v = serde_json::json!({
        "runtimeHandler": r.runtime_handler,
        "config": r.config,
        "netns": r.netns,
        "ipcns": r.ipcns,
        "utsns": r.utsns,
        "shm": r.shm,
        "stateDir": r.state_dir,
        "cgroupParent": r.cgroup_parent,
        "ips": r.ips,
        "networkTeardownPending": r.network_teardown_pending,
    });
    HashMap::from([("info".to_string(), v.to_string())])
}

pub fn pod_filter(f: Option<cri::PodSandboxFilter>) -> SandboxFilter {
    let Some(f) = f else {
        return SandboxFilter::default();
    };
    SandboxFilter {
        id_prefix: f.id,
        state: f
            .state
            .and_then(|s| match cri::PodSandboxState::try_from(s.state) {
                Ok(cri::PodSandboxState::SandboxReady) => Some(SandboxState::Ready),
                Ok(cri::PodSandboxState::SandboxNotready) => Some(SandboxState::NotReady),
                Err(_) => None,
            }),
        labels: btree(&f.label_selector),
    }
}

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// CRI `PodSandboxStats` from a pod usage sample.
pub fn pod_stats(u: &husk_engine::sandbox::stats::PodUsage) -> cri::PodSandboxStats {
    let r = &u.record;
    let iface = |i: &husk_engine::sandbox::stats::InterfaceStats| cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64v(i.rx_bytes),
        rx_errors: u64v(i.rx_errors),
        tx_bytes: u64v(i.tx_bytes),
        tx_errors: u64v(i.tx_errors),
    };
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: r.id.clone(),
            metadata: Some(metadata(&r.config)),
            labels: hash(&r.config.labels),
            annotations: hash(&r.config.annotations),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: Some(cri::CpuUsage {
                timestamp: u.timestamp,
                usage_core_nano_seconds: u.cpu_usage_nanos.and_then(u64v),
                usage_nano_cores: u.cpu_nano_cores.and_then(u64v),
            }),
            memory: Some(cri::MemoryUsage {
                timestamp: u.timestamp,
                working_set_bytes: u.memory_working_set.and_then(u64v),
                usage_bytes: u.memory_usage.and_then(u64v),
                rss_bytes: u.memory_rss.and_then(u64v),
                ..Default::default()
            }),
            network: Some(cri::NetworkUsage {
                timestamp: u.timestamp,
                default_interface: u.interfaces.first().map(iface),
                interfaces: u.interfaces.iter().map(iface).collect(),
            }),
            process: Some(cri::ProcessUsage {
                timestamp: u.timestamp,
                process_count: u64v(u.processes),
            }),
            containers: u
                .containers
                .iter()
                .map(crate::convert_container::container_stats)
                .collect(),
        }),
        windows: None,
    }
}
