//! The domain input of spec generation: what a CRI `ContainerConfig` + `PodSandboxConfig` carry
//! that shapes config.json, plus what the engine knows (image config, sandbox files and pinned
//! namespaces, rootfs, cgroups path) and facts about the host the daemon runs on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::runtime::Capability;
use serde::{Deserialize, Serialize};

pub use husk_image::manifest::ContainerConfig as ImageConfig;

/// Everything [`super::generate`] needs to build the spec of one container of a pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecInput {
    /// Ids and names that end up in annotations.
    pub identity: Identity,
    /// The CRI container config (converted by the server).
    pub container: ContainerSettings,
    /// What the pod sandbox config contributes.
    pub pod: PodSettings,
    /// The image's `config` (Entrypoint, Cmd, Env, WorkingDir, User …).
    pub image: ImageConfig,
    /// Files the sandbox prepared for its containers.
    pub sandbox_files: SandboxFiles,
    /// Pinned namespaces of the pod to join.
    pub namespaces: PodNamespaces,
    /// The mounted container rootfs; `root.path` of the spec and where users are resolved.
    pub rootfs: PathBuf,
    /// `linux.cgroupsPath`: cgroupfs `/parent/<id>` or systemd `slice:prefix:id`.
    pub cgroups_path: String,
    /// Facts about the host and the daemon itself.
    pub host: HostInfo,
}

/// Ids and names recorded as `io.kubernetes.cri.*` annotations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub container_id: String,
    /// The CRI metadata name of the container (not the full registrar name).
    pub container_name: String,
    pub sandbox_id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    /// The image as the user named it.
    pub image_name: String,
}

/// What the pod sandbox config contributes to a container's spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSettings {
    /// The pod hostname; empty means the node's (host network).
    pub hostname: String,
    /// The sandbox security context allows privileged containers.
    pub privileged: bool,
}

/// The parts of a CRI `ContainerConfig` that shape the spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSettings {
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<EnvVar>,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<DeviceSpec>,
    /// Copied into the spec annotations.
    pub annotations: BTreeMap<String, String>,
    pub tty: bool,
    pub security: SecurityContext,
    /// `None` when the CRI request carried no `LinuxContainerResources`.
    pub resources: Option<Resources>,
}

/// One `KEY=value` environment entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub key: String,
    pub value: String,
}

/// A CRI mount (always a bind mount of a host path).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountSpec {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub recursive_read_only: bool,
    pub propagation: Propagation,
}

/// CRI `MountPropagation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

/// A CRI device: a host device node (or a directory of them) exposed in the container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    /// cgroup permissions, a combination of `r`, `w` and `m`.
    pub permissions: String,
}

/// CRI `LinuxContainerSecurityContext`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SecurityContext {
    /// `None` when the request carried no `Capability` message.
    pub capabilities: Option<CapabilityChanges>,
    pub privileged: bool,
    pub namespaces: NamespaceOptions,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Empty when unset.
    pub run_as_username: String,
    pub readonly_rootfs: bool,
    pub supplemental_groups: Vec<i64>,
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
    pub no_new_privs: bool,
    /// `None`: the default list; `Some(vec![])`: nothing masked.
    pub masked_paths: Option<Vec<String>>,
    /// `None`: the default list; `Some(vec![])`: nothing read-only.
    pub readonly_paths: Option<Vec<String>>,
    pub seccomp: SeccompProfile,
    /// `None` when the request did not name a profile.
    pub apparmor: Option<AppArmorProfile>,
}

/// Capabilities to add and drop, as CRI names them (`NET_ADMIN`, `CAP_NET_ADMIN` or `ALL`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// CRI `NamespaceOption`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
}

/// CRI `NamespaceMode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    #[default]
    Pod,
    Container,
    Node,
    Target,
}

/// CRI `SupplementalGroupsPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// Groups of the user from the image's `/etc/group` plus `supplemental_groups`.
    #[default]
    Merge,
    /// Only `supplemental_groups`.
    Strict,
}

/// The seccomp profile of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfile {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// A profile file on the host (Docker or OCI JSON format).
    Localhost(PathBuf),
}

/// The AppArmor profile of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppArmorProfile {
    Unconfined,
    RuntimeDefault,
    /// The name of a profile loaded on the host.
    Localhost(String),
}

/// CRI `LinuxContainerResources`; zero / empty means unset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub hugepage_limits: Vec<HugepageLimit>,
    pub unified: BTreeMap<String, String>,
    pub memory_swap_limit_in_bytes: i64,
}

/// A hugetlb limit for one page size (`2MB`, `1GB`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HugepageLimit {
    pub page_size: String,
    pub limit: u64,
}

/// Files of the sandbox bind-mounted into each container; `None` skips the mount.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
    /// The pod's `/dev/shm` (a tmpfs the sandbox mounted); ignored with host IPC, where the
    /// host's `/dev/shm` is used.
    pub shm: Option<PathBuf>,
}

/// Paths of the pod's namespaces to join; `None` means a new namespace (or the host's for
/// `NamespaceMode::Node`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodNamespaces {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pid namespace of the pod's infra process; required when pid mode is `Pod`.
    pub pid: Option<PathBuf>,
    /// The pid namespace of the target container; required when pid mode is `Target`.
    pub target_pid: Option<PathBuf>,
    /// The pod's user namespace (pinned) and its maps, when the pod has one.
    #[serde(default)]
    pub user: Option<PodUserNamespace>,
}

/// A pinned user namespace and the maps it was made with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodUserNamespace {
    pub path: PathBuf,
    pub uids: Vec<IdMapping>,
    pub gids: Vec<IdMapping>,
}

/// One range of a user namespace's uid or gid map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The host id of `id` inside the namespace, if this range maps it.
    pub fn host_of(&self, id: u32) -> Option<u32> {
        let off = id.checked_sub(self.container_id)?;
        (off < self.length).then(|| self.host_id + off)
    }
}

/// The host id that `id` maps to through `maps` (`None`: unmapped).
pub fn map_to_host(maps: &[IdMapping], id: u32) -> Option<u32> {
    maps.iter().find_map(|m| m.host_of(id))
}

/// Facts about the host and the daemon; see [`HostInfo::detect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Capabilities the daemon can hand out: what `ALL` and privileged mean.
    pub capabilities: Vec<Capability>,
    /// Without it the daemon cannot lower a child's `oom_score_adj` below its own.
    pub has_cap_sys_resource: bool,
    /// The daemon's own `oom_score_adj`.
    pub oom_score_adj: i32,
    pub cgroup_v2: bool,
    /// `/sys/module/apparmor/parameters/enabled` is `Y`.
    pub apparmor_enabled: bool,
    /// The loaded profile used for AppArmor `RuntimeDefault`, if any.
    pub apparmor_default_profile: Option<String>,
    /// The memory cgroup accounts swap (`memsw` on v1, `memory.swap.max` on v2).
    pub swap_controller: bool,
    pub hugetlb_controller: bool,
    /// `(major, minor)` of the running kernel, for seccomp `minKernel` conditions.
    pub kernel: (u32, u32),
    /// The native architecture as the seccomp profile names it (`amd64`, `arm64`, …).
    pub arch: String,
    /// The OCI runtime and kernel support recursive read-only (`rro`) mounts.
    pub rro_supported: bool,
}

impl Default for HostInfo {
    /// A root daemon on a modern cgroup v2 host without AppArmor.
    fn default() -> Self {
        HostInfo {
            capabilities: super::caps::all_known(),
            has_cap_sys_resource: true,
            oom_score_adj: 0,
            cgroup_v2: true,
            apparmor_enabled: false,
            apparmor_default_profile: None,
            swap_controller: true,
            hugetlb_controller: true,
            kernel: (6, 1),
            arch: super::host::native_arch().to_string(),
            rro_supported: true,
        }
    }
}
