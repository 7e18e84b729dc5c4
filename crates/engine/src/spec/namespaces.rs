//! Namespaces: join the pod's pinned network/ipc/uts namespaces, pid per mode, a new mount
//! namespace always, a new cgroup namespace on cgroup v2 (not for privileged containers), and
//! the pod's pinned user namespace when it has one.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::error::SpecError;
use super::input::{NamespaceMode, SpecInput};

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ).set_path(path);
    n
}

/// Join `path` if the pod pinned one, else a new namespace; nothing for the host's.
fn pod_shared(
    typ: LinuxNamespaceType,
    mode: NamespaceMode,
    path: &Option<PathBuf>,
) -> Option<LinuxNamespace> {
    if mode == NamespaceMode::Node {
        return None;
    }
    Some(ns(typ, path.clone()))
}

fn required(
    path: &Option<PathBuf>,
    namespace: &'static str,
    mode: &'static str,
) -> Result<PathBuf, SpecError> {
    path.clone()
        .ok_or(SpecError::MissingNamespacePath { namespace, mode })
}

/// The namespaces of a container, in containerd's order (pid, ipc, uts, mount, network,
/// cgroup).
pub(crate) fn build(input: &SpecInput) -> Result<Vec<LinuxNamespace>, SpecError> {
    let opts = input.container.security.namespaces;
    let paths = &input.namespaces;
    let mut out = Vec::with_capacity(6);
    match opts.pid {
        NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Pod => out.push(ns(
            LinuxNamespaceType::Pid,
            Some(required(&paths.pid, "pid", "POD")?),
        )),
        NamespaceMode::Target => out.push(ns(
            LinuxNamespaceType::Pid,
            Some(required(&paths.target_pid, "pid", "TARGET")?),
        )),
        NamespaceMode::Node => {}
    }
    out.extend(pod_shared(LinuxNamespaceType::Ipc, opts.ipc, &paths.ipc));
    // UTS follows the network: a host-network pod uses the host's UTS namespace unless the
    // sandbox pinned one.
    if paths.uts.is_some() || opts.network != NamespaceMode::Node {
        out.push(ns(LinuxNamespaceType::Uts, paths.uts.clone()));
    }
    out.push(ns(LinuxNamespaceType::Mount, None));
    out.extend(pod_shared(
        LinuxNamespaceType::Network,
        opts.network,
        &paths.network,
    ));
    if input.host.cgroup_v2 && !input.container.security.privileged {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    // Every container of a user-namespaced pod joins the pod's user namespace.
    if let Some(u) = &paths.user {
        out.push(ns(LinuxNamespaceType::User, Some(u.path.clone())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::testutil::{base_input, rootfs};

    type Summary = Vec<(LinuxNamespaceType, Option<&'static str>)>;

    fn summary(v: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<String>)> {
        v.iter()
            .map(|n| {
                (
                    n.typ(),
                    n.path().as_ref().map(|p| p.to_string_lossy().into_owned()),
                )
            })
            .collect()
    }

    fn want(s: Summary) -> Vec<(LinuxNamespaceType, Option<String>)> {
        s.into_iter()
            .map(|(t, p)| (t, p.map(str::to_string)))
            .collect()
    }

    #[test]
    fn table() {
        use LinuxNamespaceType::*;
        use NamespaceMode as M;
        let root = rootfs();
        let net = Some("/run/husk/ns/net-5and");
        let ipc = Some("/run/husk/ns/ipc-5and");
        let uts = Some("/run/husk/ns/uts-5and");
        let cases: Vec<(&str, M, M, M, bool, Summary)> = vec![
            (
                "pod defaults, private pid",
                M::Pod,
                M::Container,
                M::Pod,
                true,
                vec![
                    (Pid, None),
                    (Ipc, ipc),
                    (Uts, uts),
                    (Mount, None),
                    (Network, net),
                    (Cgroup, None),
                ],
            ),
            (
                "cgroup v1 has no cgroup ns",
                M::Pod,
                M::Container,
                M::Pod,
                false,
                vec![
                    (Pid, None),
                    (Ipc, ipc),
                    (Uts, uts),
                    (Mount, None),
                    (Network, net),
                ],
            ),
            (
                "shared pod pid",
                M::Pod,
                M::Pod,
                M::Pod,
                false,
                vec![
                    (Pid, Some("/proc/42/ns/pid")),
                    (Ipc, ipc),
                    (Uts, uts),
                    (Mount, None),
                    (Network, net),
                ],
            ),
            (
                "target pid",
                M::Pod,
                M::Target,
                M::Pod,
                false,
                vec![
                    (Pid, Some("/proc/77/ns/pid")),
                    (Ipc, ipc),
                    (Uts, uts),
                    (Mount, None),
                    (Network, net),
                ],
            ),
            (
                "host pid, ipc and network",
                M::Node,
                M::Node,
                M::Node,
                false,
                vec![(Mount, None)],
            ),
        ];
        for (name, network, pid, ipc_mode, v2, expected) in cases {
            let mut input = base_input(root.path());
            input.container.security.namespaces.network = network;
            input.container.security.namespaces.pid = pid;
            input.container.security.namespaces.ipc = ipc_mode;
            input.host.cgroup_v2 = v2;
            input.namespaces.pid = Some("/proc/42/ns/pid".into());
            input.namespaces.target_pid = Some("/proc/77/ns/pid".into());
            if network == M::Node {
                input.namespaces.network = None;
                input.namespaces.uts = None;
            }
            let got = build(&input).expect(name);
            assert_eq!(summary(&got), want(expected), "{name}");
        }
    }

    #[test]
    fn unpinned_namespaces_are_new() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.namespaces = Default::default();
        input.host.cgroup_v2 = false;
        let got = build(&input).expect("build");
        assert!(got.iter().all(|n| n.path().is_none()));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn privileged_has_no_cgroup_ns() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.security.privileged = true;
        let got = build(&input).expect("build");
        assert!(!got.iter().any(|n| n.typ() == LinuxNamespaceType::Cgroup));
    }

    #[test]
    fn missing_paths_are_errors() {
        let root = rootfs();
        let mut input = base_input(root.path());
        input.container.security.namespaces.pid = NamespaceMode::Pod;
        assert!(matches!(
            build(&input),
            Err(SpecError::MissingNamespacePath {
                namespace: "pid",
                mode: "POD"
            })
        ));
        input.container.security.namespaces.pid = NamespaceMode::Target;
        assert!(matches!(
            build(&input),
            Err(SpecError::MissingNamespacePath { mode: "TARGET", .. })
        ));
    }
}
