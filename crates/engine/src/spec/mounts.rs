//! Mounts in containerd's order: the default system mounts (minus those a supplied mount
//! replaces), then the CRI mounts and the sandbox's files (`/etc/hostname`, `/etc/hosts`,
//! `/etc/resolv.conf`, `/dev/shm`) sorted by depth, as `rbind` mounts with propagation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

use super::error::SpecError;
use super::host::HostOps;
use super::input::{MountSpec, NamespaceMode, Propagation, SpecInput};

/// The mounts of a spec and the rootfs propagation they require.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MountPlan {
    pub mounts: Vec<Mount>,
    pub rootfs_propagation: Option<String>,
}

/// A bind mount to add: a CRI mount or a sandbox file.
struct Supplied {
    dst: String,
    src: PathBuf,
    readonly: bool,
    rro: bool,
    propagation: Propagation,
}

/// Lexically cleans an absolute path like Go's `filepath.Clean`.
pub(crate) fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Number of `/` in the cleaned path: the sort key that keeps parents before children.
fn depth(path: &str) -> usize {
    path.matches('/').count()
}

/// Rejects CRI mounts whose paths are not absolute.
pub(crate) fn validate(m: &MountSpec) -> Result<(), SpecError> {
    if !m.container_path.starts_with('/') {
        return Err(SpecError::RelativeContainerPath {
            path: m.container_path.clone(),
        });
    }
    if !m.host_path.starts_with('/') {
        return Err(SpecError::RelativeHostPath {
            path: m.host_path.clone(),
        });
    }
    Ok(())
}

fn mount(dst: &str, typ: &str, src: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dst))
        .set_typ(Some(typ.to_string()))
        .set_source(Some(PathBuf::from(src)))
        .set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// containerd's default mounts (`/run` removed, `/sys/fs/cgroup` added); `/sys` and the cgroup
/// mount are writable for privileged containers.
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let mode = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", mode],
        ),
    ]
}

/// Checks that the mount `src` lives on propagates as required.
fn ensure_propagation(host: &dyn HostOps, src: &Path, need_shared: bool) -> Result<(), SpecError> {
    let mp = host
        .mount_point(src)
        .map_err(|source| SpecError::LookupMount {
            path: src.to_path_buf(),
            source,
        })?;
    let ok = if need_shared {
        mp.shared
    } else {
        mp.shared || mp.slave
    };
    if ok {
        return Ok(());
    }
    Err(SpecError::MountPropagation {
        path: src.to_path_buf(),
        mount_point: mp.mount_point,
        required: if need_shared {
            "shared"
        } else {
            "shared or slave"
        },
    })
}

/// Builds the mount list of a container.
pub(crate) fn build(input: &SpecInput, host: &dyn HostOps) -> Result<MountPlan, SpecError> {
    let c = &input.container;
    let sc = &c.security;
    let mut supplied = Vec::with_capacity(c.mounts.len() + 4);
    for m in &c.mounts {
        validate(m)?;
        supplied.push(Supplied {
            dst: clean(&m.container_path),
            src: PathBuf::from(&m.host_path),
            readonly: m.readonly,
            rro: m.recursive_read_only,
            propagation: m.propagation,
        });
    }

    let files = &input.sandbox_files;
    let shm = if sc.namespaces.ipc == NamespaceMode::Node {
        Some(PathBuf::from("/dev/shm"))
    } else {
        files.shm.clone()
    };
    let ro = sc.readonly_rootfs;
    let extra = [
        ("/etc/hostname", files.hostname.clone(), ro),
        ("/etc/hosts", files.hosts.clone(), ro),
        ("/etc/resolv.conf", files.resolv_conf.clone(), ro),
        ("/dev/shm", shm, false),
    ];
    for (dst, src, readonly) in extra {
        let Some(src) = src else { continue };
        if supplied.iter().any(|s| s.dst == dst) {
            continue;
        }
        supplied.push(Supplied {
            dst: dst.to_string(),
            src,
            readonly,
            rro: false,
            propagation: Propagation::Private,
        });
    }
    // Stable: equal depths keep CRI mounts first, in request order.
    supplied.sort_by_key(|s| depth(&s.dst));

    let targets: HashSet<&str> = supplied.iter().map(|s| s.dst.as_str()).collect();
    let dev_supplied = targets.contains("/dev");
    let mut mounts: Vec<Mount> = default_mounts(sc.privileged)
        .into_iter()
        .filter(|m| {
            let dst = m.destination().to_string_lossy();
            !(targets.contains(dst.as_ref()) || (dev_supplied && dst.starts_with("/dev/")))
        })
        .collect();

    let mut rootfs_propagation: Option<&str> = None;
    for s in &supplied {
        let src = host
            .resolve_symlink(&s.src)
            .map_err(|source| SpecError::ResolveHostPath {
                path: s.src.clone(),
                source,
            })?;
        let mut options = vec!["rbind"];
        match s.propagation {
            Propagation::Private => options.push("rprivate"),
            Propagation::Bidirectional => {
                ensure_propagation(host, &src, true)?;
                options.push("rshared");
                rootfs_propagation = Some("rshared");
            }
            Propagation::HostToContainer => {
                ensure_propagation(host, &src, false)?;
                options.push("rslave");
                if rootfs_propagation != Some("rshared") {
                    rootfs_propagation = Some("rslave");
                }
            }
        }
        let host_path = || s.src.to_string_lossy().into_owned();
        match (s.readonly, s.rro) {
            (true, true) => {
                if !input.host.rro_supported {
                    return Err(SpecError::RecursiveReadOnly {
                        host_path: host_path(),
                        reason: "the runtime does not support recursive read-only mounts",
                    });
                }
                if s.propagation != Propagation::Private {
                    return Err(SpecError::RecursiveReadOnly {
                        host_path: host_path(),
                        reason: "needs private propagation",
                    });
                }
                options.push("rro");
            }
            (true, false) => options.push("ro"),
            (false, true) => {
                return Err(SpecError::RecursiveReadOnly {
                    host_path: host_path(),
                    reason: "conflicts with a read-write mount",
                });
            }
            (false, false) => options.push("rw"),
        }
        let mut m = mount(&s.dst, "bind", "", &options);
        m.set_source(Some(src));
        mounts.push(m);
    }
    Ok(MountPlan {
        mounts,
        rootfs_propagation: rootfs_propagation.map(str::to_string),
    })
}

/// Creates missing CRI mount host paths as directories (kubelet semantics, containerd does the
/// same); rejects relative paths.
pub(crate) fn ensure_host_paths(input: &SpecInput) -> Result<(), SpecError> {
    for m in &input.container.mounts {
        validate(m)?;
        let path = Path::new(&m.host_path);
        match std::fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(path)
                    .map_err(|source| SpecError::CreateHostPath {
                        path: path.to_path_buf(),
                        source,
                    })?;
            }
            Err(source) => {
                return Err(SpecError::CreateHostPath {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
