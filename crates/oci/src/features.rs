//! `Features`: what `<runtime> features` says the runtime supports (OCI runtime-spec
//! `features.md`), with the few answers husk acts on pulled out of the raw JSON.

use serde_json::Value;

/// A runtime's self-description. Missing fields read as "not supported".
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// The whole document, for fields not pulled out below.
    pub raw: Value,
    pub oci_version_min: Option<String>,
    pub oci_version_max: Option<String>,
    pub hooks: Vec<String>,
    pub mount_options: Vec<String>,
    pub namespaces: Vec<String>,
    pub capabilities: Vec<String>,
    pub cgroup_v1: bool,
    pub cgroup_v2: bool,
    pub cgroup_systemd: bool,
    pub seccomp: bool,
    pub apparmor: bool,
    pub selinux: bool,
    /// `rro` in `mountOptions`: recursive read-only bind mounts (KEP-3857).
    pub recursive_read_only: bool,
    /// `linux.mountExtensions.idmap.enabled`: id-mapped mounts (user namespaces).
    pub idmap_mounts: bool,
}

impl Features {
    /// Reads the fields of interest from a parsed `features` document.
    pub fn from_json(raw: Value) -> Self {
        let strings = |ptr: &str| -> Vec<String> {
            raw.pointer(ptr)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let flag = |ptr: &str| raw.pointer(ptr).and_then(Value::as_bool).unwrap_or(false);
        let string = |ptr: &str| raw.pointer(ptr).and_then(Value::as_str).map(str::to_owned);
        let mount_options = strings("/mountOptions");
        Self {
            oci_version_min: string("/ociVersionMin"),
            oci_version_max: string("/ociVersionMax"),
            hooks: strings("/hooks"),
            namespaces: strings("/linux/namespaces"),
            capabilities: strings("/linux/capabilities"),
            cgroup_v1: flag("/linux/cgroup/v1"),
            cgroup_v2: flag("/linux/cgroup/v2"),
            cgroup_systemd: flag("/linux/cgroup/systemd"),
            seccomp: flag("/linux/seccomp/enabled"),
            apparmor: flag("/linux/apparmor/enabled"),
            selinux: flag("/linux/selinux/enabled"),
            recursive_read_only: mount_options.iter().any(|o| o == "rro"),
            idmap_mounts: flag("/linux/mountExtensions/idmap/enabled"),
            mount_options,
            raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_runc_style_document() {
        let raw = serde_json::json!({
            "ociVersionMin": "1.0.0",
            "ociVersionMax": "1.0.2-dev",
            "hooks": ["prestart", "poststop"],
            "mountOptions": ["bind", "rro", "ro"],
            "linux": {
                "namespaces": ["pid", "user"],
                "capabilities": ["CAP_KILL"],
                "cgroup": {"v1": true, "v2": true, "systemd": true},
                "seccomp": {"enabled": true},
                "apparmor": {"enabled": true},
                "mountExtensions": {"idmap": {"enabled": true}}
            }
        });
        let f = Features::from_json(raw);
        assert_eq!(f.oci_version_max.as_deref(), Some("1.0.2-dev"));
        assert!(f.recursive_read_only && f.idmap_mounts && f.cgroup_v1 && f.seccomp);
        assert!(!f.selinux);
        assert_eq!(f.namespaces, ["pid", "user"]);
    }

    #[test]
    fn empty_document_supports_nothing() {
        let f = Features::from_json(serde_json::json!({}));
        assert!(!f.recursive_read_only && !f.idmap_mounts && f.mount_options.is_empty());
    }
}
