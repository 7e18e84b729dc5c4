//! Capabilities: the kernel's capability table, CRI name parsing, containerd's default set and
//! its add/drop rules (`ALL` included).

use oci_spec::runtime::Capability;

use super::error::SpecError;
use super::input::CapabilityChanges;

/// Capabilities by kernel bit number (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE` = 40).
const TABLE: [(Capability, &str); 41] = [
    (Capability::Chown, "CHOWN"),
    (Capability::DacOverride, "DAC_OVERRIDE"),
    (Capability::DacReadSearch, "DAC_READ_SEARCH"),
    (Capability::Fowner, "FOWNER"),
    (Capability::Fsetid, "FSETID"),
    (Capability::Kill, "KILL"),
    (Capability::Setgid, "SETGID"),
    (Capability::Setuid, "SETUID"),
    (Capability::Setpcap, "SETPCAP"),
    (Capability::LinuxImmutable, "LINUX_IMMUTABLE"),
    (Capability::NetBindService, "NET_BIND_SERVICE"),
    (Capability::NetBroadcast, "NET_BROADCAST"),
    (Capability::NetAdmin, "NET_ADMIN"),
    (Capability::NetRaw, "NET_RAW"),
    (Capability::IpcLock, "IPC_LOCK"),
    (Capability::IpcOwner, "IPC_OWNER"),
    (Capability::SysModule, "SYS_MODULE"),
    (Capability::SysRawio, "SYS_RAWIO"),
    (Capability::SysChroot, "SYS_CHROOT"),
    (Capability::SysPtrace, "SYS_PTRACE"),
    (Capability::SysPacct, "SYS_PACCT"),
    (Capability::SysAdmin, "SYS_ADMIN"),
    (Capability::SysBoot, "SYS_BOOT"),
    (Capability::SysNice, "SYS_NICE"),
    (Capability::SysResource, "SYS_RESOURCE"),
    (Capability::SysTime, "SYS_TIME"),
    (Capability::SysTtyConfig, "SYS_TTY_CONFIG"),
    (Capability::Mknod, "MKNOD"),
    (Capability::Lease, "LEASE"),
    (Capability::AuditWrite, "AUDIT_WRITE"),
    (Capability::AuditControl, "AUDIT_CONTROL"),
    (Capability::Setfcap, "SETFCAP"),
    (Capability::MacOverride, "MAC_OVERRIDE"),
    (Capability::MacAdmin, "MAC_ADMIN"),
    (Capability::Syslog, "SYSLOG"),
    (Capability::WakeAlarm, "WAKE_ALARM"),
    (Capability::BlockSuspend, "BLOCK_SUSPEND"),
    (Capability::AuditRead, "AUDIT_READ"),
    (Capability::Perfmon, "PERFMON"),
    (Capability::Bpf, "BPF"),
    (Capability::CheckpointRestore, "CHECKPOINT_RESTORE"),
];

/// containerd's (and Docker's) default capability set, in its order.
pub const DEFAULT: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability this table knows, in bit order.
pub fn all_known() -> Vec<Capability> {
    TABLE.iter().map(|(c, _)| *c).collect()
}

/// The capabilities whose bits are set in a `/proc/<pid>/status` style bitmap.
pub fn from_bitmap(bits: u64) -> Vec<Capability> {
    TABLE
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1u64 << i) != 0)
        .map(|(_, (c, _))| *c)
        .collect()
}

/// Parses a capability name as CRI or seccomp profiles spell it: `NET_ADMIN`, `net_admin`,
/// `CAP_NET_ADMIN`. `None` for unknown names (and for `ALL`).
pub fn parse(name: &str) -> Option<Capability> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    TABLE.iter().find(|(_, n)| *n == bare).map(|(c, _)| *c)
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

fn parse_list(names: &[String]) -> Result<Vec<Capability>, SpecError> {
    names
        .iter()
        .filter(|n| !is_all(n))
        .map(|n| {
            parse(n).ok_or_else(|| SpecError::UnknownCapability {
                name: n.to_string(),
            })
        })
        .collect()
}

/// The bounding/effective/permitted set of a container, as containerd computes it:
/// the default set; `add: ALL` → every capability the daemon has, `drop: ALL` → none; then the
/// individual adds, then the individual drops. Privileged containers get everything the daemon
/// has regardless of drops.
pub fn compute(
    changes: Option<&CapabilityChanges>,
    privileged: bool,
    daemon: &[Capability],
) -> Result<Vec<Capability>, SpecError> {
    let mut caps: Vec<Capability> = DEFAULT.to_vec();
    if let Some(ch) = changes {
        let add = parse_list(&ch.add)?;
        let drop = parse_list(&ch.drop)?;
        if ch.add.iter().any(|n| is_all(n)) {
            caps = daemon.to_vec();
        }
        if ch.drop.iter().any(|n| is_all(n)) {
            caps.clear();
        }
        for c in add {
            if !caps.contains(&c) {
                caps.push(c);
            }
        }
        caps.retain(|c| !drop.contains(c));
    }
    if privileged {
        caps = daemon.to_vec();
    }
    Ok(caps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn changes(add: &[&str], drop: &[&str]) -> CapabilityChanges {
        CapabilityChanges {
            add: add.iter().map(|s| s.to_string()).collect(),
            drop: drop.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn set(v: &[Capability]) -> HashSet<Capability> {
        v.iter().copied().collect()
    }

    #[test]
    fn bitmap_order_matches_kernel_numbers() {
        assert_eq!(from_bitmap(1 << 21), vec![Capability::SysAdmin]);
        assert_eq!(from_bitmap(1 << 24), vec![Capability::SysResource]);
        assert_eq!(from_bitmap(1 << 40), vec![Capability::CheckpointRestore]);
        // This machine's CapEff: everything but CAP_SYS_RESOURCE.
        let caps = from_bitmap(0x1fffeffffff);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&Capability::SysResource));
    }

    #[test]
    fn parse_accepts_cri_and_kernel_spellings() {
        assert_eq!(parse("NET_ADMIN"), Some(Capability::NetAdmin));
        assert_eq!(parse("cap_net_admin"), Some(Capability::NetAdmin));
        assert_eq!(parse("CAP_SYS_ADMIN"), Some(Capability::SysAdmin));
        assert_eq!(parse("ALL"), None);
        assert_eq!(parse("NOPE"), None);
    }

    #[test]
    fn table_driven_add_drop() {
        let daemon = from_bitmap(0x1fffeffffff);
        let default = set(&DEFAULT);
        let with = |extra: &[Capability]| {
            let mut s = default.clone();
            s.extend(extra.iter().copied());
            s
        };
        let without = |gone: &[Capability]| {
            let mut s = default.clone();
            for c in gone {
                s.remove(c);
            }
            s
        };
        let cases: Vec<(&str, Option<CapabilityChanges>, bool, HashSet<Capability>)> = vec![
            ("no capability message", None, false, default.clone()),
            (
                "empty changes",
                Some(changes(&[], &[])),
                false,
                default.clone(),
            ),
            (
                "add one",
                Some(changes(&["NET_ADMIN"], &[])),
                false,
                with(&[Capability::NetAdmin]),
            ),
            (
                "drop one",
                Some(changes(&[], &["CHOWN"])),
                false,
                without(&[Capability::Chown]),
            ),
            ("add ALL", Some(changes(&["ALL"], &[])), false, set(&daemon)),
            (
                "add ALL drop one",
                Some(changes(&["ALL"], &["CHOWN"])),
                false,
                set(&daemon)
                    .into_iter()
                    .filter(|c| *c != Capability::Chown)
                    .collect(),
            ),
            (
                "drop ALL add one",
                Some(changes(&["NET_BIND_SERVICE"], &["ALL"])),
                false,
                set(&[Capability::NetBindService]),
            ),
            (
                "drop all lower-case",
                Some(changes(&[], &["all"])),
                false,
                set(&[]),
            ),
            (
                "add then drop the same",
                Some(changes(&["SYS_TIME"], &["SYS_TIME"])),
                false,
                default.clone(),
            ),
            (
                "privileged ignores drops",
                Some(changes(&[], &["ALL"])),
                true,
                set(&daemon),
            ),
        ];
        for (name, ch, privileged, want) in cases {
            let got = compute(ch.as_ref(), privileged, &daemon).expect(name);
            assert_eq!(set(&got), want, "{name}");
        }
    }

    #[test]
    fn add_all_uses_the_daemon_set_not_a_hardcoded_list() {
        let daemon = from_bitmap(0x1fffeffffff);
        let got = compute(Some(&changes(&["ALL"], &[])), false, &daemon).expect("compute");
        assert!(!got.contains(&Capability::SysResource));
    }

    #[test]
    fn unknown_capability_is_an_error() {
        let err =
            compute(Some(&changes(&["FLY"], &[])), false, &all_known()).expect_err("unknown cap");
        assert!(matches!(err, SpecError::UnknownCapability { name } if name == "FLY"));
    }
}
