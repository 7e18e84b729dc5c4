//! Seccomp: profiles in Docker's format (a superset of the OCI `LinuxSeccomp`), filtered for
//! this container like moby/containerd's `setupSeccomp`: the native architecture picks the
//! `archMap` entry, and each rule's `includes`/`excludes` (caps of the container's bounding
//! set, arches, `minKernel`) decide whether it applies. `RuntimeDefault` is the embedded
//! `seccomp_default.json`, adapted from moby's `profiles/seccomp/default.json`
//! (Copyright Docker, Inc., Apache-2.0).

use std::path::Path;
use std::sync::OnceLock;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSyscall,
};
use serde::Deserialize;

use super::caps;
use super::error::SpecError;
use super::host::HostOps;
use super::input::{HostInfo, SeccompProfile};

const DEFAULT_JSON: &str = include_str!("seccomp_default.json");
const DEFAULT_NAME: &str = "<runtime/default>";

/// A profile in Docker's JSON format.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Profile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<Arch>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Vec<String>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

fn invalid(profile: &str, message: impl ToString) -> SpecError {
    SpecError::InvalidSeccompProfile {
        profile: profile.to_string(),
        message: message.to_string(),
    }
}

/// Parses a Docker-format (or plain OCI) profile.
pub(crate) fn parse(profile: &str, data: &[u8]) -> Result<Profile, SpecError> {
    let p: Profile = serde_json::from_slice(data).map_err(|e| invalid(profile, e))?;
    if !p.architectures.is_empty() && !p.arch_map.is_empty() {
        return Err(invalid(profile, "both architectures and archMap are set"));
    }
    if p.syscalls
        .iter()
        .any(|r| r.name.is_some() && !r.names.is_empty())
    {
        return Err(invalid(profile, "a rule sets both name and names"));
    }
    Ok(p)
}

fn default_profile() -> Result<&'static Profile, SpecError> {
    static DEFAULT: OnceLock<Result<Profile, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| parse(DEFAULT_NAME, DEFAULT_JSON.as_bytes()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|m| invalid(DEFAULT_NAME, m))
}

/// The seccomp architecture of a native (GOARCH-style) name, for `archMap`.
fn seccomp_arch(native: &str) -> Option<Arch> {
    Some(match native {
        "amd64" => Arch::ScmpArchX86_64,
        "arm64" => Arch::ScmpArchAarch64,
        "mips64" => Arch::ScmpArchMips64,
        "mips64n32" => Arch::ScmpArchMips64n32,
        "mipsel64" => Arch::ScmpArchMipsel64,
        "mips64len32" => Arch::ScmpArchMipsel64n32,
        "ppc64le" => Arch::ScmpArchPpc64le,
        "riscv64" => Arch::ScmpArchRiscv64,
        "s390x" => Arch::ScmpArchS390x,
        _ => return None,
    })
}

fn parse_kernel(profile: &str, v: &str) -> Result<(u32, u32), SpecError> {
    let mut it = v.split('.');
    let mut num = || {
        it.next()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or_else(|| invalid(profile, format!("invalid minKernel {v:?}")))
    };
    let major = num()?;
    let minor = num().unwrap_or(0);
    Ok((major, minor))
}

/// Converts a profile to the OCI form for a container with `bounding` capabilities.
pub(crate) fn to_oci(
    name: &str,
    p: &Profile,
    bounding: &[Capability],
    host: &HostInfo,
) -> Result<LinuxSeccomp, SpecError> {
    let has_cap = |c: &String| caps::parse(c).is_some_and(|c| bounding.contains(&c));
    let mut arches = p.architectures.clone();
    if let Some(native) = seccomp_arch(&host.arch) {
        for m in p.arch_map.iter().filter(|m| m.architecture == native) {
            arches.push(m.architecture);
            arches.extend(m.sub_architectures.iter().flatten().copied());
        }
    }

    let mut syscalls = Vec::with_capacity(p.syscalls.len());
    for r in &p.syscalls {
        if let Some(ex) = &r.excludes {
            if ex.arches.contains(&host.arch) || ex.caps.iter().any(has_cap) {
                continue;
            }
            if let Some(k) = &ex.min_kernel
                && host.kernel >= parse_kernel(name, k)?
            {
                continue;
            }
        }
        if let Some(inc) = &r.includes {
            if !inc.arches.is_empty() && !inc.arches.contains(&host.arch) {
                continue;
            }
            if !inc.caps.iter().all(has_cap) {
                continue;
            }
            if let Some(k) = &inc.min_kernel
                && host.kernel < parse_kernel(name, k)?
            {
                continue;
            }
        }
        let names = match &r.name {
            Some(n) => vec![n.clone()],
            None => r.names.clone(),
        };
        let mut s = LinuxSyscall::default();
        s.set_names(names)
            .set_action(r.action)
            .set_errno_ret(r.errno_ret)
            .set_args((!r.args.is_empty()).then(|| r.args.clone()));
        syscalls.push(s);
    }

    let mut out = LinuxSeccomp::default();
    out.set_default_action(p.default_action)
        .set_default_errno_ret(p.default_errno_ret)
        .set_architectures((!arches.is_empty()).then_some(arches))
        .set_flags((!p.flags.is_empty()).then(|| p.flags.clone()))
        .set_listener_path(p.listener_path.as_ref().map(Into::into))
        .set_listener_metadata(p.listener_metadata.clone())
        .set_syscalls(Some(syscalls));
    Ok(out)
}

/// `linux.seccomp` for a container profile and bounding set; `None` for unconfined.
pub(crate) fn generate(
    profile: &SeccompProfile,
    bounding: &[Capability],
    info: &HostInfo,
    host: &dyn HostOps,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => {
            to_oci(DEFAULT_NAME, default_profile()?, bounding, info).map(Some)
        }
        SeccompProfile::Localhost(path) => {
            let data = host
                .read_file(path)
                .map_err(|source| SpecError::ReadSeccompProfile {
                    path: path.clone(),
                    source,
                })?;
            let name = path_name(path);
            let p = parse(&name, &data)?;
            to_oci(&name, &p, bounding, info).map(Some)
        }
    }
}

fn path_name(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
