//! OCI runtime spec generation: turns a container of a pod ([`SpecInput`], plain domain types —
//! never protobuf) into the `config.json` runc/crun run, following containerd's CRI plugin
//! (`container_create*.go`, `opts/spec_*.go`, `pkg/oci` defaults).
//!
//! One file per concern: [`input`] (what comes in), `process` (argv/env/cwd), `user`
//! (rootfs-scoped user resolution), `caps`, `seccomp` (Docker-format profiles; the
//! `RuntimeDefault` profile is adapted from moby's `profiles/seccomp/default.json`, Copyright
//! Docker, Inc., Apache-2.0), `mounts`, `devices`, `namespaces`, `resources`, [`host`] (facts
//! and lookups of the host, behind a seam for tests).

mod caps;
mod devices;
mod error;
pub mod host;
pub mod input;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod user;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Linux, LinuxCapabilities, LinuxNamespaceType, Process, Root, Spec, User,
};

pub use error::SpecError;
pub use host::{HostOps, MountPoint, RealHost};
pub use input::*;

/// The `ociVersion` written into generated specs: crun before 1.9 refuses anything but 1.0.x.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// Annotation keys containerd sets on every CRI container.
pub mod annotations {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// containerd's default masked paths.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// containerd's default read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Generates the spec of a container against the real host.
pub fn generate(input: &SpecInput) -> Result<Spec, SpecError> {
    generate_with(input, &RealHost)
}

/// Creates missing CRI mount host paths as directories (kubelet semantics); rejects
/// relative paths. Call before [`generate`].
pub fn ensure_host_paths(input: &SpecInput) -> Result<(), SpecError> {
    mounts::ensure_host_paths(input)
}

/// Writes `config.json` into `bundle_dir` atomically; returns its path.
pub fn write_spec(spec: &Spec, bundle_dir: &Path) -> Result<PathBuf, SpecError> {
    let data = serde_json::to_vec(spec).map_err(|source| SpecError::Serialize { source })?;
    let path = bundle_dir.join("config.json");
    husk_sys::fs::atomic_write(&path, &data).map_err(|source| SpecError::WriteSpec {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Generates the spec of a container with host lookups going through `host`.
pub fn generate_with(input: &SpecInput, host: &dyn HostOps) -> Result<Spec, SpecError> {
    let c = &input.container;
    let sc = &c.security;
    if sc.privileged && !input.pod.privileged {
        return Err(SpecError::PrivilegedNotAllowed {
            container: input.identity.container_name.clone(),
        });
    }

    let args = process::args(c, &input.image)?;
    let hostname = if input.pod.hostname.is_empty() {
        host.hostname()
    } else {
        input.pod.hostname.clone()
    };
    let resolved = user::resolve(&input.rootfs, sc, input.image.user.as_deref())?;
    let caps = caps::compute(
        sc.capabilities.as_ref(),
        sc.privileged,
        &input.host.capabilities,
    )?;
    let seccomp = if sc.privileged {
        None
    } else {
        seccomp::generate(&sc.seccomp, &caps, &input.host, host)?
    };
    let apparmor = apparmor_profile(input, host)?;
    let mount_plan = mounts::build(input, host)?;
    let device_plan = devices::build(input, host)?;
    let namespaces = namespaces::build(input)?;
    let resources = resources::build(c.resources.as_ref(), &input.host, device_plan.rules)?;
    let oom_score_adj = resources::oom_score_adj(c.resources.as_ref(), &input.host)?;

    let mut user = User::default();
    user.set_uid(resolved.uid)
        .set_gid(resolved.gid)
        .set_umask(None)
        .set_additional_gids(Some(resolved.additional_gids))
        .set_username(None);

    let cap_set: Capabilities = caps.iter().copied().collect();
    let mut capabilities = LinuxCapabilities::default();
    capabilities
        .set_bounding(Some(cap_set.clone()))
        .set_effective(Some(cap_set.clone()))
        .set_permitted(Some(cap_set))
        .set_inheritable(None)
        .set_ambient(None);

    let mut process = Process::default();
    process
        .set_terminal(Some(c.tty))
        .set_console_size(None)
        .set_user(user)
        .set_args(Some(args))
        .set_command_line(None)
        .set_env(Some(process::env(c, &input.image, &hostname)))
        .set_cwd(PathBuf::from(process::cwd(c, &input.image)))
        .set_capabilities(Some(capabilities))
        .set_rlimits(None)
        .set_no_new_privileges(Some(sc.no_new_privs))
        .set_apparmor_profile(apparmor)
        .set_oom_score_adj(oom_score_adj)
        .set_selinux_label(None)
        .set_io_priority(None)
        .set_scheduler(None)
        .set_exec_cpu_affinity(None);

    let mut root = Root::default();
    root.set_path(input.rootfs.clone())
        .set_readonly(sc.readonly_rootfs.then_some(true));

    let has_uts = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Uts);
    let (masked, readonly) = if sc.privileged {
        (None, None)
    } else {
        (
            path_list(sc.masked_paths.as_ref(), &DEFAULT_MASKED_PATHS),
            path_list(sc.readonly_paths.as_ref(), &DEFAULT_READONLY_PATHS),
        )
    };

    let mut linux = Linux::default();
    linux
        .set_net_devices(None)
        .set_uid_mappings(input.namespaces.user.as_ref().map(|u| id_mappings(&u.uids)))
        .set_gid_mappings(input.namespaces.user.as_ref().map(|u| id_mappings(&u.gids)))
        .set_sysctl(None)
        .set_resources(Some(resources))
        .set_cgroups_path(
            (!input.cgroups_path.is_empty()).then(|| input.cgroups_path.clone().into()),
        )
        .set_namespaces(Some(namespaces))
        .set_devices((!device_plan.devices.is_empty()).then_some(device_plan.devices))
        .set_seccomp(seccomp)
        .set_rootfs_propagation(mount_plan.rootfs_propagation)
        .set_masked_paths(masked)
        .set_readonly_paths(readonly)
        .set_mount_label(None)
        .set_intel_rdt(None)
        .set_memory_policy(None)
        .set_personality(None)
        .set_time_offsets(None);

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string())
        .set_root(Some(root))
        .set_mounts(Some(mount_plan.mounts))
        .set_process(Some(process))
        .set_hostname((has_uts && !hostname.is_empty()).then_some(hostname))
        .set_domainname(None)
        .set_hooks(None)
        .set_annotations(Some(spec_annotations(input)))
        .set_linux(Some(linux))
        .set_solaris(None)
        .set_windows(None)
        .set_vm(None);
    tracing::debug!(container_id = %input.identity.container_id, "generated oci spec");
    Ok(spec)
}

/// An explicit list (possibly empty) or the defaults; empty lists are omitted.
fn path_list(explicit: Option<&Vec<String>>, defaults: &[&str]) -> Option<Vec<String>> {
    let list: Vec<String> = match explicit {
        Some(v) => v.clone(),
        None => defaults.iter().map(|s| s.to_string()).collect(),
    };
    (!list.is_empty()).then_some(list)
}

/// The container's CRI annotations plus containerd's `io.kubernetes.cri.*` ones.
fn spec_annotations(input: &SpecInput) -> HashMap<String, String> {
    use annotations::*;
    let id = &input.identity;
    let mut out: HashMap<String, String> = input
        .container
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        (SANDBOX_ID, &id.sandbox_id),
        (SANDBOX_NAMESPACE, &id.pod_namespace),
        (SANDBOX_UID, &id.pod_uid),
        (SANDBOX_NAME, &id.pod_name),
        (CONTAINER_NAME, &id.container_name),
        (IMAGE_NAME, &id.image_name),
    ] {
        out.insert(k.to_string(), v.clone());
    }
    out.insert(CONTAINER_TYPE.to_string(), "container".to_string());
    out
}

/// `process.apparmorProfile` as containerd decides it; refuses any profile but `Unconfined`
/// when AppArmor is not enabled on the host.
fn apparmor_profile(input: &SpecInput, host: &dyn HostOps) -> Result<Option<String>, SpecError> {
    let sc = &input.container.security;
    let info = &input.host;
    if !info.apparmor_enabled {
        return match &sc.apparmor {
            None | Some(AppArmorProfile::Unconfined) => Ok(None),
            Some(p) => Err(SpecError::AppArmorNotEnabled {
                profile: match p {
                    AppArmorProfile::Localhost(name) => format!("localhost/{name}"),
                    _ => "runtime/default".to_string(),
                },
            }),
        };
    }
    match &sc.apparmor {
        Some(AppArmorProfile::Unconfined) => Ok(None),
        None | Some(AppArmorProfile::RuntimeDefault) if sc.privileged => Ok(None),
        None => Ok(info.apparmor_default_profile.clone()),
        Some(AppArmorProfile::RuntimeDefault) => info
            .apparmor_default_profile
            .clone()
            .map(Some)
            .ok_or(SpecError::AppArmorNoDefault),
        Some(AppArmorProfile::Localhost(name)) => {
            let name = name.strip_prefix("localhost/").unwrap_or(name);
            let loaded = !name.is_empty()
                && host
                    .apparmor_profile_loaded(name)
                    .map_err(|source| SpecError::AppArmorProfiles { source })?;
            if !loaded {
                return Err(SpecError::AppArmorProfileNotFound {
                    name: name.to_string(),
                });
            }
            Ok(Some(name.to_string()))
        }
    }
}

/// The runtimes want the maps of a user namespace they join by path too (runc refuses a
/// user namespace without them).
fn id_mappings(maps: &[input::IdMapping]) -> Vec<oci_spec::runtime::LinuxIdMapping> {
    maps.iter()
        .filter_map(|m| {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .ok()
        })
        .collect()
}

/// The OCI `linux.resources` for an update of a running container (no device rules): what
/// `<runtime> update --resources -` takes. Bad values are errors, as at creation.
pub fn update_resources(
    res: &input::Resources,
    host: &input::HostInfo,
) -> Result<serde_json::Value, SpecError> {
    let r = resources::build(Some(res), host, Vec::new())?;
    let mut v = serde_json::to_value(&r).map_err(|source| SpecError::Serialize { source })?;
    if let Some(o) = v.as_object_mut() {
        o.remove("devices");
    }
    Ok(v)
}
