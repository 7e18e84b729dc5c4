//! Resources (cpu, memory + swap, hugepages, unified) as containerd's `WithResources`, and the
//! process `oom_score_adj`, never below the daemon's own when it lacks `CAP_SYS_RESOURCE`.

use std::collections::HashMap;

use oci_spec::runtime::{
    LinuxCpu, LinuxDeviceCgroup, LinuxHugepageLimit, LinuxMemory, LinuxResources,
};

use super::error::SpecError;
use super::input::{HostInfo, Resources};

fn positive(field: &'static str, value: i64) -> Result<Option<u64>, SpecError> {
    match value {
        0 => Ok(None),
        v if v > 0 => Ok(u64::try_from(v).ok()),
        v => Err(SpecError::InvalidResource { field, value: v }),
    }
}

/// `linux.resources`: the device rules plus what the CRI resources set (zero means unset).
pub(crate) fn build(
    res: Option<&Resources>,
    host: &HostInfo,
    device_rules: Vec<LinuxDeviceCgroup>,
) -> Result<LinuxResources, SpecError> {
    let mut out = LinuxResources::default();
    out.set_devices(Some(device_rules));
    let Some(r) = res else {
        return Ok(out);
    };

    let mut cpu = LinuxCpu::default();
    cpu.set_period(positive("cpu_period", r.cpu_period)?)
        .set_shares(positive("cpu_shares", r.cpu_shares)?)
        .set_quota((r.cpu_quota != 0).then_some(r.cpu_quota))
        .set_cpus((!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()))
        .set_mems((!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()));
    out.set_cpu(Some(cpu));

    let mut mem = LinuxMemory::default();
    if r.memory_limit_in_bytes != 0 {
        mem.set_limit(Some(r.memory_limit_in_bytes));
        // Swap equal to the limit: no swapping unless asked for.
        if r.memory_swap_limit_in_bytes == 0 && host.swap_controller {
            mem.set_swap(Some(r.memory_limit_in_bytes));
        }
    }
    if r.memory_swap_limit_in_bytes != 0 && host.swap_controller {
        mem.set_swap(Some(r.memory_swap_limit_in_bytes));
    }
    out.set_memory(Some(mem));

    if !r.hugepage_limits.is_empty() {
        if host.hugetlb_controller {
            let limits = r
                .hugepage_limits
                .iter()
                .map(|h| {
                    let mut l = LinuxHugepageLimit::default();
                    l.set_page_size(h.page_size.clone())
                        .set_limit(i64::try_from(h.limit).unwrap_or(i64::MAX));
                    l
                })
                .collect();
            out.set_hugepage_limits(Some(limits));
        } else {
            // containerd's default `tolerate_missing_hugetlb_controller = true`.
            tracing::warn!("hugetlb cgroup controller is absent, skipping huge pages limits");
        }
    }

    if !r.unified.is_empty() {
        let unified: HashMap<String, String> = r
            .unified
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.set_unified(Some(unified));
    }
    Ok(out)
}

/// `process.oomScoreAdj`: unset without CRI resources; clamped to the daemon's own value when
/// it cannot lower it (no `CAP_SYS_RESOURCE`).
pub(crate) fn oom_score_adj(
    res: Option<&Resources>,
    host: &HostInfo,
) -> Result<Option<i32>, SpecError> {
    let Some(r) = res else { return Ok(None) };
    let adj = i32::try_from(r.oom_score_adj)
        .ok()
        .filter(|a| (-1000..=1000).contains(a))
        .ok_or(SpecError::InvalidResource {
            field: "oom_score_adj",
            value: r.oom_score_adj,
        })?;
    if !host.has_cap_sys_resource && adj < host.oom_score_adj {
        return Ok(Some(host.oom_score_adj));
    }
    Ok(Some(adj))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::input::HugepageLimit;

    fn res() -> Resources {
        Resources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn none_means_only_device_rules() {
        let got = build(None, &HostInfo::default(), vec![]).expect("build");
        assert_eq!(got.devices(), &Some(vec![]));
        assert!(got.cpu().is_none() && got.memory().is_none());
    }

    #[test]
    fn cpu_and_memory() {
        let got = build(Some(&res()), &HostInfo::default(), vec![]).expect("build");
        let cpu = got.cpu().clone().expect("cpu");
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = got.memory().expect("memory");
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(64 << 20));
    }

    #[test]
    fn swap_rules() {
        let mut host = HostInfo::default();
        let mut r = res();
        r.memory_swap_limit_in_bytes = 128 << 20;
        let mem = build(Some(&r), &host, vec![])
            .expect("build")
            .memory()
            .expect("mem");
        assert_eq!(mem.swap(), Some(128 << 20));
        host.swap_controller = false;
        let mem = build(Some(&r), &host, vec![])
            .expect("build")
            .memory()
            .expect("mem");
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), None));
    }

    #[test]
    fn zero_is_unset_and_negative_is_invalid() {
        let got = build(Some(&Resources::default()), &HostInfo::default(), vec![]).expect("b");
        let cpu = got.cpu().clone().expect("cpu");
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares()),
            (None, None, None)
        );
        let mut r = res();
        r.cpu_shares = -2;
        assert!(matches!(
            build(Some(&r), &HostInfo::default(), vec![]),
            Err(SpecError::InvalidResource {
                field: "cpu_shares",
                ..
            })
        ));
        r.cpu_shares = 0;
        r.cpu_quota = -1;
        let got = build(Some(&r), &HostInfo::default(), vec![]).expect("quota -1");
        assert_eq!(got.cpu().clone().expect("cpu").quota(), Some(-1));
    }

    #[test]
    fn hugepages_and_unified() {
        let mut r = res();
        r.hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: 4 << 21,
        }];
        r.unified = [("memory.high".to_string(), "1G".to_string())].into();
        let mut host = HostInfo::default();
        let got = build(Some(&r), &host, vec![]).expect("build");
        let hp = got.hugepage_limits().clone().expect("hugepages");
        assert_eq!(
            (hp[0].page_size().as_str(), hp[0].limit()),
            ("2MB", 4 << 21)
        );
        assert_eq!(
            got.unified()
                .as_ref()
                .and_then(|u| u.get("memory.high"))
                .map(String::as_str),
            Some("1G")
        );
        // Like containerd: unified is passed through on v1 too; hugepages are skipped
        // without the controller.
        host.cgroup_v2 = false;
        host.hugetlb_controller = false;
        let got = build(Some(&r), &host, vec![]).expect("build");
        assert!(got.hugepage_limits().is_none());
        assert!(got.unified().is_some());
    }

    #[test]
    fn oom_score_adj_clamp() {
        let with_cap = HostInfo {
            oom_score_adj: -500,
            ..Default::default()
        };
        let without_cap = HostInfo {
            has_cap_sys_resource: false,
            oom_score_adj: -500,
            ..Default::default()
        };
        let adj = |v: i64| Resources {
            oom_score_adj: v,
            ..Default::default()
        };
        let cases = [
            (&with_cap, Some(-998), Some(-998)),
            (&without_cap, Some(-998), Some(-500)),
            (&without_cap, Some(1000), Some(1000)),
            (&without_cap, Some(-500), Some(-500)),
            (&without_cap, None, None),
        ];
        for (host, input, want) in cases {
            let r = input.map(adj);
            assert_eq!(
                oom_score_adj(r.as_ref(), host).expect("adj"),
                want,
                "{input:?}"
            );
        }
        assert!(oom_score_adj(Some(&adj(1001)), &with_cap).is_err());
        assert!(oom_score_adj(Some(&adj(i64::MIN)), &with_cap).is_err());
    }
}
