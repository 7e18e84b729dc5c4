//! CRI ↔ domain for containers.

use std::collections::HashMap;

use husk_engine::container::{ContainerConfig, ContainerFilter, ContainerRecord, ContainerState};
use husk_engine::spec::input as si;
use k8s_cri::v1 as cri;
use tonic::Status;

use crate::convert_pod::{btree, hash, ns_options};

fn propagation(v: i32) -> Result<si::Propagation, Status> {
    match cri::MountPropagation::try_from(v) {
        Ok(cri::MountPropagation::PropagationPrivate) => Ok(si::Propagation::Private),
        Ok(cri::MountPropagation::PropagationHostToContainer) => {
            Ok(si::Propagation::HostToContainer)
        }
        Ok(cri::MountPropagation::PropagationBidirectional) => Ok(si::Propagation::Bidirectional),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown mount propagation {v}"
        ))),
    }
}

fn propagation_cri(p: si::Propagation) -> i32 {
    (match p {
        si::Propagation::Private => cri::MountPropagation::PropagationPrivate,
        si::Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
        si::Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
    }) as i32
}

fn seccomp(
    p: Option<&cri::SecurityProfile>,
    legacy_path: &str,
) -> Result<si::SeccompProfile, Status> {
    match p {
        Some(p) => match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(si::SeccompProfile::RuntimeDefault)
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => {
                Ok(si::SeccompProfile::Unconfined)
            }
            Ok(cri::security_profile::ProfileType::Localhost) => {
                if p.localhost_ref.is_empty() {
                    return Err(Status::invalid_argument(
                        "seccomp Localhost profile needs localhost_ref",
                    ));
                }
                Ok(si::SeccompProfile::Localhost(
                    p.localhost_ref.clone().into(),
                ))
            }
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown seccomp profile type {}",
                p.profile_type
            ))),
        },
        None => Ok(match legacy_path {
            "" | "unconfined" => si::SeccompProfile::Unconfined,
            "runtime/default" | "docker/default" => si::SeccompProfile::RuntimeDefault,
            other => match other.strip_prefix("localhost/") {
                Some(path) => si::SeccompProfile::Localhost(path.into()),
                None => {
                    return Err(Status::invalid_argument(format!(
                        "unknown seccomp profile {other:?}"
                    )));
                }
            },
        }),
    }
}

fn apparmor(
    p: Option<&cri::SecurityProfile>,
    legacy: &str,
) -> Result<Option<si::AppArmorProfile>, Status> {
    if let Some(p) = p {
        return match cri::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(cri::security_profile::ProfileType::RuntimeDefault) => {
                Ok(Some(si::AppArmorProfile::RuntimeDefault))
            }
            Ok(cri::security_profile::ProfileType::Unconfined) => {
                Ok(Some(si::AppArmorProfile::Unconfined))
            }
            Ok(cri::security_profile::ProfileType::Localhost) => Ok(Some(
                si::AppArmorProfile::Localhost(p.localhost_ref.clone()),
            )),
            Err(_) => Err(Status::invalid_argument(format!(
                "unknown apparmor profile type {}",
                p.profile_type
            ))),
        };
    }
    Ok(match legacy {
        "" => None,
        "unconfined" => Some(si::AppArmorProfile::Unconfined),
        "runtime/default" => Some(si::AppArmorProfile::RuntimeDefault),
        other => Some(si::AppArmorProfile::Localhost(
            other
                .strip_prefix("localhost/")
                .unwrap_or(other)
                .to_string(),
        )),
    })
}

pub fn resources(r: &cri::LinuxContainerResources) -> si::Resources {
    si::Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|h| si::HugepageLimit {
                page_size: h.page_size.clone(),
                limit: h.limit,
            })
            .collect(),
        unified: btree(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

/// The domain container config of a CreateContainer request. The deprecated
/// `seccomp_profile_path` / `apparmor_profile` fields are honoured when the new ones are unset.
#[allow(deprecated)]
pub fn container_config(c: Option<cri::ContainerConfig>) -> Result<ContainerConfig, Status> {
    let c = c.ok_or_else(|| Status::invalid_argument("config is required"))?;
    let md = c
        .metadata
        .ok_or_else(|| Status::invalid_argument("config.metadata is required"))?;
    let image = c.image.map(|i| i.image).unwrap_or_default();
    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let ns = sc.namespace_options.clone();
    let security = si::SecurityContext {
        capabilities: sc.capabilities.as_ref().map(|cap| si::CapabilityChanges {
            add: cap.add_capabilities.clone(),
            drop: cap.drop_capabilities.clone(),
        }),
        privileged: sc.privileged,
        namespaces: ns_options(ns.as_ref())?,
        run_as_user: sc.run_as_user.map(|v| v.value),
        run_as_group: sc.run_as_group.map(|v| v.value),
        run_as_username: sc.run_as_username.clone(),
        readonly_rootfs: sc.readonly_rootfs,
        supplemental_groups: sc.supplemental_groups.clone(),
        supplemental_groups_policy: if sc.supplemental_groups_policy
            == cri::SupplementalGroupsPolicy::Strict as i32
        {
            si::SupplementalGroupsPolicy::Strict
        } else {
            si::SupplementalGroupsPolicy::Merge
        },
        no_new_privs: sc.no_new_privs,
        masked_paths: (!sc.masked_paths.is_empty()).then(|| sc.masked_paths.clone()),
        readonly_paths: (!sc.readonly_paths.is_empty()).then(|| sc.readonly_paths.clone()),
        seccomp: seccomp(sc.seccomp.as_ref(), &sc.seccomp_profile_path)?,
        apparmor: apparmor(sc.apparmor.as_ref(), &sc.apparmor_profile)?,
    };
    let mut mounts = Vec::with_capacity(c.mounts.len());
    for m in &c.mounts {
        if m.image.is_some() {
            return Err(Status::invalid_argument(
                "image volume mounts are not supported by husk yet",
            ));
        }
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(Status::invalid_argument(
                "id-mapped mounts are not supported by husk yet",
            ));
        }
        mounts.push(si::MountSpec {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            recursive_read_only: m.recursive_read_only,
            propagation: propagation(m.propagation)?,
        });
    }
    let settings = si::ContainerSettings {
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs: c
            .envs
            .into_iter()
            .map(|kv| si::EnvVar {
                key: kv.key,
                value: kv.value,
            })
            .collect(),
        mounts,
        devices: c
            .devices
            .into_iter()
            .map(|d| si::DeviceSpec {
                container_path: d.container_path,
                host_path: d.host_path,
                permissions: d.permissions,
            })
            .collect(),
        annotations: btree(&c.annotations),
        tty: c.tty,
        security,
        resources: linux.resources.as_ref().map(resources),
    };
    Ok(ContainerConfig {
        name: md.name,
        attempt: md.attempt,
        image,
        labels: btree(&c.labels),
        annotations: btree(&c.annotations),
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        pid_target_id: ns.map(|n| n.target_id).unwrap_or_default(),
        settings,
    })
}

pub fn state(s: ContainerState) -> i32 {
    (match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }) as i32
}

fn metadata(r: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: r.config.name.clone(),
        attempt: r.config.attempt,
    }
}

fn image_spec(r: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: r.config.image.clone(),
        ..Default::default()
    }
}

pub fn container(r: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.sandbox_id.clone(),
        metadata: Some(metadata(r)),
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        state: state(r.state),
        created_at: r.created_at,
        labels: hash(&r.config.labels),
        annotations: hash(&r.config.annotations),
        image_id: r.image_id.to_string(),
    }
}

pub fn container_status(r: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(metadata(r)),
        state: state(r.state),
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: hash(&r.config.labels),
        annotations: hash(&r.config.annotations),
        mounts: r
            .config
            .settings
            .mounts
            .iter()
            .map(|m| cri::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                propagation: propagation_cri(m.propagation),
                recursive_read_only: m.recursive_read_only,
                ..Default::default()
            })
            .collect(),
        log_path: r
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        resources: r
            .config
            .settings
            .resources
            .as_ref()
            .map(|res| cri::ContainerResources {
                linux: Some(cri::LinuxContainerResources {
                    cpu_period: res.cpu_period,
                    cpu_quota: res.cpu_quota,
                    cpu_shares: res.cpu_shares,
                    memory_limit_in_bytes: res.memory_limit_in_bytes,
                    oom_score_adj: res.oom_score_adj,
                    cpuset_cpus: res.cpuset_cpus.clone(),
                    cpuset_mems: res.cpuset_mems.clone(),
                    hugepage_limits: res
                        .hugepage_limits
                        .iter()
                        .map(|h| cri::HugepageLimit {
                            page_size: h.page_size.clone(),
                            limit: h.limit,
                        })
                        .collect(),
                    unified: hash(&res.unified),
                    memory_swap_limit_in_bytes: res.memory_swap_limit_in_bytes,
                }),
                windows: None,
            }),
        image_id: r.image_id.to_string(),
        user: r.user.as_ref().map(|u| cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u
                    .supplemental_groups
                    .iter()
                    .map(|&g| i64::from(g))
                    .collect(),
            }),
        }),
    }
}

/// Verbose ContainerStatus info, like containerd's `info` key: pid, sandbox, the OCI spec.
pub fn container_info(r: &ContainerRecord) -> HashMap<String, String> {
    let spec: serde_json::Value = std::fs::read(r.spec_path())
        .ok()
        .and_then(|d| serde_json::from_slice(&d).ok())
        .unwrap_or_default();
    let v = serde_json::json!({
        "sandboxID": r.sandbox_id,
        "pid": r.pid,
        "runtimeHandler": r.runtime_handler,
        "bundle": r.bundle,
        "cgroupsPath": r.cgroups_path,
        "config": r.config,
        "runtimeSpec": spec,
    });
    HashMap::from([("info".to_string(), v.to_string())])
}

pub fn container_filter(f: Option<cri::ContainerFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id_prefix: f.id,
        state: f
            .state
            .and_then(|s| match cri::ContainerState::try_from(s.state) {
                Ok(cri::ContainerState::ContainerCreated) => Some(ContainerState::Created),
                Ok(cri::ContainerState::ContainerRunning) => Some(ContainerState::Running),
                Ok(cri::ContainerState::ContainerExited) => Some(ContainerState::Exited),
                Ok(cri::ContainerState::ContainerUnknown) => Some(ContainerState::Unknown),
                Err(_) => None,
            }),
        sandbox_id: f.pod_sandbox_id,
        labels: btree(&f.label_selector),
    }
}

fn u64v(v: Option<u64>) -> Option<cri::UInt64Value> {
    v.map(|value| cri::UInt64Value { value })
}

/// CRI `ContainerStats` from a usage sample.
pub fn container_stats(u: &husk_engine::container::ContainerUsage) -> cri::ContainerStats {
    let r = &u.record;
    let m = &u.memory;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: r.config.name.clone(),
                attempt: r.config.attempt,
            }),
            labels: hash(&r.config.labels),
            annotations: hash(&r.config.annotations),
        }),
        cpu: Some(cri::CpuUsage {
            timestamp: u.timestamp,
            usage_core_nano_seconds: u64v(u.cpu_usage_nanos),
            usage_nano_cores: u64v(u.cpu_nano_cores),
        }),
        memory: Some(cri::MemoryUsage {
            timestamp: u.timestamp,
            working_set_bytes: u64v(m.working_set_bytes),
            available_bytes: u64v(m.available_bytes),
            usage_bytes: u64v(m.usage_bytes),
            rss_bytes: u64v(m.rss_bytes),
            page_faults: u64v(m.page_faults),
            major_page_faults: u64v(m.major_page_faults),
        }),
        writable_layer: Some(cri::FilesystemUsage {
            timestamp: u.timestamp,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: u.writable_dir.to_string_lossy().into_owned(),
            }),
            used_bytes: u64v(Some(u.writable_bytes)),
            inodes_used: u64v(Some(u.writable_inodes)),
        }),
        swap: Some(cri::SwapUsage {
            timestamp: u.timestamp,
            swap_available_bytes: u64v(m.swap_available_bytes()),
            swap_usage_bytes: u64v(m.swap_usage_bytes),
        }),
    }
}

pub fn stats_filter(f: Option<cri::ContainerStatsFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id_prefix: f.id,
        state: None,
        sandbox_id: f.pod_sandbox_id,
        labels: btree(&f.label_selector),
    }
}
