//! Reading one cgroup's usage from the unified (v2) hierarchy at `<root>/<cgroups path>`.

use std::path::Path;
use std::time::SystemTime;

use crate::CgroupError;
use crate::parse::{self, Keyed, Limit, read_limit, read_u64};
use crate::stats::{Cpu, Memory, Stats, Throttling, derive_memory};
use crate::v1::read_pids;

pub(crate) fn stats(dir: &Path, timestamp: SystemTime) -> Result<Stats, CgroupError> {
    if !dir.is_dir() {
        return Err(CgroupError::NotFound {
            path: dir.to_path_buf(),
        });
    }
    Ok(Stats {
        timestamp,
        cpu: read_cpu(dir)?,
        memory: read_memory(dir)?,
        pids: read_pids(dir)?,
    })
}

fn usec(v: Option<u64>) -> Option<u64> {
    v.map(|us| us.saturating_mul(1000))
}

fn read_cpu(dir: &Path) -> Result<Cpu, CgroupError> {
    // `usage_usec`, `user_usec` and `system_usec` are there even without the cpu controller;
    // the throttling counters only with it.
    let Some(stat) = Keyed::read(&dir.join("cpu.stat"))? else {
        return Ok(Cpu::default());
    };
    let throttling = match stat.get("nr_periods")? {
        Some(nr_periods) => Some(Throttling {
            nr_periods,
            nr_throttled: stat.get("nr_throttled")?.unwrap_or(0),
            throttled_time_nanos: usec(stat.get("throttled_usec")?).unwrap_or(0),
        }),
        None => None,
    };
    Ok(Cpu {
        usage_nanos: usec(stat.get("usage_usec")?),
        user_nanos: usec(stat.get("user_usec")?),
        system_nanos: usec(stat.get("system_usec")?),
        throttling,
    })
}

fn read_memory(dir: &Path) -> Result<Memory, CgroupError> {
    let usage = read_u64(&dir.join("memory.current"))?;
    let stat = Keyed::read(&dir.join("memory.stat"))?;
    let stat_get = |key| parse::get(stat.as_ref(), key);
    let inactive_file = stat_get("inactive_file")?;
    let limit = read_limit(&dir.join("memory.max"))?.and_then(Limit::value);
    let (working_set, available) = derive_memory(usage, inactive_file, limit);
    let events = Keyed::read(&dir.join("memory.events"))?;

    Ok(Memory {
        usage_bytes: usage,
        working_set_bytes: working_set,
        rss_bytes: stat_get("anon")?,
        cache_bytes: stat_get("file")?,
        page_faults: stat_get("pgfault")?,
        major_page_faults: stat_get("pgmajfault")?,
        limit_bytes: limit,
        available_bytes: available,
        swap_usage_bytes: read_u64(&dir.join("memory.swap.current"))?,
        swap_limit_bytes: read_limit(&dir.join("memory.swap.max"))?.and_then(Limit::value),
        oom_kills: parse::get(events.as_ref(), "oom_kill")?,
    })
}
