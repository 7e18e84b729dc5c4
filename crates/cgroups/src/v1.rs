//! Reading one cgroup's usage from the v1 hierarchies (`cpuacct`, `cpu`, `memory`, `pids`),
//! each at `<mount point>/<cgroups path>`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::parse::{self, Keyed, read_limit, read_u64};
use crate::stats::{Cpu, Memory, Pids, Stats, Throttling, derive_memory};
use crate::{CgroupError, Controller, V1Mounts};

/// `memory.limit_in_bytes` reads `PAGE_COUNTER_MAX × PAGE_SIZE` when unlimited:
/// 9223372036854771712 with 4 KiB pages, a little less with 16/64 KiB pages. No host has
/// 4 EiB of memory, so anything at or above 2^62 means unlimited.
pub const UNLIMITED_THRESHOLD: u64 = 1 << 62;

/// `USER_HZ`: the unit of `cpuacct.stat`, 100 on every architecture Kubernetes runs on.
const USER_HZ: u64 = 100;
const NANOS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// The controllers whose files we read; a cgroup present in none of them does not exist.
const READ: [Controller; 4] = [
    Controller::Cpuacct,
    Controller::Cpu,
    Controller::Memory,
    Controller::Pids,
];

/// The directory of the cgroup at `rel` in `controller`'s hierarchy, if that one is mounted.
pub(crate) fn dir(mounts: &V1Mounts, controller: Controller, rel: &Path) -> Option<PathBuf> {
    mounts.get(controller).map(|m| m.join(rel))
}

pub(crate) fn stats(
    mounts: &V1Mounts,
    rel: &Path,
    timestamp: SystemTime,
) -> Result<Stats, CgroupError> {
    let dirs = READ.map(|c| dir(mounts, c, rel));
    if !dirs.iter().flatten().any(|d| d.is_dir()) {
        let path = dirs
            .iter()
            .flatten()
            .next()
            .cloned()
            .unwrap_or_else(|| rel.to_path_buf());
        return Err(CgroupError::NotFound { path });
    }
    let [cpuacct, cpu, memory, pids] = dirs;
    Ok(Stats {
        timestamp,
        cpu: read_cpu(cpuacct.as_deref(), cpu.as_deref())?,
        memory: memory
            .as_deref()
            .map(read_memory)
            .transpose()?
            .unwrap_or_default(),
        pids: pids
            .as_deref()
            .map(read_pids)
            .transpose()?
            .unwrap_or_default(),
    })
}

fn read_cpu(cpuacct: Option<&Path>, cpu: Option<&Path>) -> Result<Cpu, CgroupError> {
    let mut out = Cpu::default();
    if let Some(dir) = cpuacct {
        out.usage_nanos = read_u64(&dir.join("cpuacct.usage"))?;
        // Nanoseconds since Linux 4.7; `cpuacct.stat` in USER_HZ ticks before.
        out.user_nanos = read_u64(&dir.join("cpuacct.usage_user"))?;
        out.system_nanos = read_u64(&dir.join("cpuacct.usage_sys"))?;
        if (out.user_nanos.is_none() || out.system_nanos.is_none())
            && let Some(stat) = Keyed::read(&dir.join("cpuacct.stat"))?
        {
            let ticks = |key| -> Result<Option<u64>, CgroupError> {
                Ok(stat.get(key)?.map(|t| t.saturating_mul(NANOS_PER_TICK)))
            };
            if out.user_nanos.is_none() {
                out.user_nanos = ticks("user")?;
            }
            if out.system_nanos.is_none() {
                out.system_nanos = ticks("system")?;
            }
        }
    }
    if let Some(dir) = cpu
        && let Some(stat) = Keyed::read(&dir.join("cpu.stat"))?
        && let Some(nr_periods) = stat.get("nr_periods")?
    {
        out.throttling = Some(Throttling {
            nr_periods,
            nr_throttled: stat.get("nr_throttled")?.unwrap_or(0),
            throttled_time_nanos: stat.get("throttled_time")?.unwrap_or(0),
        });
    }
    Ok(out)
}

/// A v1 limit file, `None` when absent or unlimited.
fn read_v1_limit(path: &Path) -> Result<Option<u64>, CgroupError> {
    Ok(read_u64(path)?.filter(|v| *v < UNLIMITED_THRESHOLD))
}

fn read_memory(dir: &Path) -> Result<Memory, CgroupError> {
    let usage = read_u64(&dir.join("memory.usage_in_bytes"))?;
    let stat = Keyed::read(&dir.join("memory.stat"))?;
    // `total_*` include descendants (always so since `use_hierarchy` became the default).
    let stat_any = |keys: &[&str]| stat.as_ref().map_or(Ok(None), |s| s.get_any(keys));
    let inactive_file = stat_any(&["total_inactive_file", "inactive_file"])?;
    let limit = read_v1_limit(&dir.join("memory.limit_in_bytes"))?;
    let (working_set, available) = derive_memory(usage, inactive_file, limit);

    // memsw counts memory + swap; only present with swap accounting enabled.
    let memsw_usage = read_u64(&dir.join("memory.memsw.usage_in_bytes"))?;
    let swap_usage = match (memsw_usage, usage) {
        (Some(total), Some(mem)) => Some(total.saturating_sub(mem)),
        _ => None,
    };
    let memsw_limit = read_v1_limit(&dir.join("memory.memsw.limit_in_bytes"))?;
    let swap_limit = match (memsw_limit, limit) {
        (Some(total), Some(mem)) => Some(total.saturating_sub(mem)),
        _ => None,
    };
    let oom_control = Keyed::read(&dir.join("memory.oom_control"))?;

    Ok(Memory {
        usage_bytes: usage,
        working_set_bytes: working_set,
        rss_bytes: stat_any(&["total_rss", "rss"])?,
        cache_bytes: stat_any(&["total_cache", "cache"])?,
        page_faults: stat_any(&["total_pgfault", "pgfault"])?,
        major_page_faults: stat_any(&["total_pgmajfault", "pgmajfault"])?,
        limit_bytes: limit,
        available_bytes: available,
        swap_usage_bytes: swap_usage,
        swap_limit_bytes: swap_limit,
        // `oom_kill` appeared in Linux 4.13.
        oom_kills: parse::get(oom_control.as_ref(), "oom_kill")?,
    })
}

/// `pids.current` and `pids.max`, the same files in v1 and v2.
pub(crate) fn read_pids(dir: &Path) -> Result<Pids, CgroupError> {
    Ok(Pids {
        current: read_u64(&dir.join("pids.current"))?,
        limit: read_limit(&dir.join("pids.max"))?.and_then(parse::Limit::value),
    })
}
