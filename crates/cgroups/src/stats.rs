//! The resource usage of one cgroup, as the kubelet asks for it through CRI stats. Every field is
//! optional: a controller that is not enabled, or a container that exited mid-read, leaves `None`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// One sample of a cgroup's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// When the sample was taken (just before the files were read).
    pub timestamp: SystemTime,
    pub cpu: Cpu,
    pub memory: Memory,
    pub pids: Pids,
}

/// CPU time, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cpu {
    /// Total CPU time (v1 `cpuacct.usage`; v2 `cpu.stat` `usage_usec` × 1000).
    pub usage_nanos: Option<u64>,
    /// Time in user mode (v1 `cpuacct.usage_user` or `cpuacct.stat`; v2 `user_usec` × 1000).
    pub user_nanos: Option<u64>,
    /// Time in kernel mode (v1 `cpuacct.usage_sys` or `cpuacct.stat`; v2 `system_usec` × 1000).
    pub system_nanos: Option<u64>,
    /// CFS bandwidth throttling (`cpu.stat`), when the cpu controller is enabled.
    pub throttling: Option<Throttling>,
}

/// CFS bandwidth throttling counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    /// Enforcement periods that have elapsed.
    pub nr_periods: u64,
    /// Periods in which the group was throttled.
    pub nr_throttled: u64,
    /// Total time throttled (v1 `throttled_time`; v2 `throttled_usec` × 1000).
    pub throttled_time_nanos: u64,
}

/// Memory, in bytes unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Charged memory, page cache included (v1 `memory.usage_in_bytes`; v2 `memory.current`).
    pub usage_bytes: Option<u64>,
    /// What the kubelet evicts on (cadvisor's rule): usage − inactive file cache, floored at 0
    /// (v1 `total_inactive_file`; v2 `inactive_file` of `memory.stat`).
    pub working_set_bytes: Option<u64>,
    /// Anonymous memory (v1 `total_rss`; v2 `anon`).
    pub rss_bytes: Option<u64>,
    /// Page cache (v1 `total_cache`; v2 `file`).
    pub cache_bytes: Option<u64>,
    /// Page faults (v1 `total_pgfault`; v2 `pgfault`).
    pub page_faults: Option<u64>,
    /// Major page faults (v1 `total_pgmajfault`; v2 `pgmajfault`).
    pub major_page_faults: Option<u64>,
    /// The hard limit; `None` when unlimited (v1 `memory.limit_in_bytes`; v2 `memory.max`).
    pub limit_bytes: Option<u64>,
    /// `limit − working set` (floored at 0) when there is a limit.
    pub available_bytes: Option<u64>,
    /// Swap in use (v1 `memory.memsw.usage_in_bytes − usage`; v2 `memory.swap.current`).
    pub swap_usage_bytes: Option<u64>,
    /// The swap limit (v1 `memsw.limit − limit`; v2 `memory.swap.max`); `None` when unlimited.
    pub swap_limit_bytes: Option<u64>,
    /// Processes killed by the OOM killer in this cgroup (v1 `memory.oom_control`; v2
    /// `memory.events`, both `oom_kill`).
    pub oom_kills: Option<u64>,
}

impl Memory {
    /// Swap still available under the swap limit, when there is one.
    pub fn swap_available_bytes(&self) -> Option<u64> {
        Some(
            self.swap_limit_bytes?
                .saturating_sub(self.swap_usage_bytes.unwrap_or(0)),
        )
    }
}

/// Tasks (processes and threads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pids {
    /// Tasks in the cgroup and its descendants (`pids.current`).
    pub current: Option<u64>,
    /// `pids.max`; `None` when `max`.
    pub limit: Option<u64>,
}

/// cadvisor's working set: usage minus inactive file pages, never below 0.
pub fn working_set(usage: u64, inactive_file: Option<u64>) -> u64 {
    usage.saturating_sub(inactive_file.unwrap_or(0))
}

/// The memory fields derived from raw readings, shared by v1 and v2.
pub(crate) fn derive_memory(
    usage: Option<u64>,
    inactive_file: Option<u64>,
    limit: Option<u64>,
) -> (Option<u64>, Option<u64>) {
    let working_set = usage.map(|u| working_set(u, inactive_file));
    let available = match (limit, working_set) {
        (Some(l), Some(ws)) => Some(l.saturating_sub(ws)),
        _ => None,
    };
    (working_set, available)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn working_set_floors_at_zero() {
        assert_eq!(working_set(100, Some(30)), 70);
        assert_eq!(working_set(100, Some(300)), 0);
        assert_eq!(working_set(100, None), 100);
    }

    #[test]
    fn available_needs_a_limit() {
        assert_eq!(
            derive_memory(Some(100), Some(40), Some(200)),
            (Some(60), Some(140))
        );
        assert_eq!(derive_memory(Some(100), Some(40), None), (Some(60), None));
        assert_eq!(
            derive_memory(Some(300), None, Some(200)),
            (Some(300), Some(0))
        );
        assert_eq!(derive_memory(None, Some(40), Some(200)), (None, None));
    }

    #[test]
    fn swap_available() {
        let m = Memory {
            swap_limit_bytes: Some(100),
            swap_usage_bytes: Some(30),
            ..Memory::default()
        };
        assert_eq!(m.swap_available_bytes(), Some(70));
        assert_eq!(Memory::default().swap_available_bytes(), None);
    }

    proptest! {
        #[test]
        fn derived_fields_stay_in_range(u in any::<u64>(), i in any::<Option<u64>>(), l in any::<Option<u64>>()) {
            let (ws, avail) = derive_memory(Some(u), i, l);
            let ws = ws.unwrap_or(u64::MAX);
            prop_assert!(ws <= u);
            if let (Some(l), Some(a)) = (l, avail) {
                prop_assert!(a <= l);
            }
        }
    }
}
