//! `CpuRate`: CPU usage in nanocores from two cumulative samples, as containerd's CRI computes
//! `usage_nano_cores` — Δusage / Δt, kept per container or pod id between stats calls.

use std::collections::HashMap;
use std::time::SystemTime;

const NANOS_PER_SEC: u128 = 1_000_000_000;

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: SystemTime,
    usage_nanos: u64,
}

/// The previous `(timestamp, cumulative usage)` of each id.
///
/// Not synchronised: callers sharing one across threads wrap it in a mutex.
#[derive(Debug, Default)]
pub struct CpuRate {
    prev: HashMap<String, Sample>,
}

impl CpuRate {
    pub fn new() -> CpuRate {
        CpuRate::default()
    }

    /// Records a sample for `id` and returns its usage in nanocores (10⁹ = one CPU busy) since
    /// the previous sample.
    ///
    /// `None` when there is no usable previous sample: the first call for an id, a timestamp
    /// not after the previous one (the previous sample is kept, so the next call still works),
    /// or a counter that went backwards (a new cgroup reused the id; this sample becomes the new
    /// baseline). Never divides by zero, never negative, never overflows.
    pub fn update(&mut self, id: &str, at: SystemTime, usage_nanos: u64) -> Option<u64> {
        let sample = Sample { at, usage_nanos };
        let Some(prev) = self.prev.get_mut(id) else {
            self.prev.insert(id.to_string(), sample);
            return None;
        };
        let elapsed = match at.duration_since(prev.at) {
            Ok(d) if !d.is_zero() => d.as_nanos(),
            Ok(_) => return None,
            Err(_) => {
                // The wall clock stepped back: start over from here.
                *prev = sample;
                return None;
            }
        };
        let Some(used) = usage_nanos.checked_sub(prev.usage_nanos) else {
            *prev = sample;
            return None;
        };
        *prev = sample;
        let rate = u128::from(used) * NANOS_PER_SEC / elapsed;
        Some(u64::try_from(rate).unwrap_or(u64::MAX))
    }

    /// Forgets `id` (its container or pod was removed).
    pub fn remove(&mut self, id: &str) {
        self.prev.remove(id);
    }

    /// Keeps only the ids for which `keep` is true (e.g. those still listed).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.prev.retain(|id, _| keep(id));
    }

    /// How many ids have a previous sample.
    pub fn len(&self) -> usize {
        self.prev.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prev.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    #[test]
    fn two_samples_give_nanocores() {
        let mut r = CpuRate::new();
        assert_eq!(r.update("c", t(0), 1_000), None);
        // 0.5 s of CPU over 1 s: half a core.
        assert_eq!(r.update("c", t(1_000), 500_001_000), Some(500_000_000));
        // 2 s of CPU over 1 s: two cores.
        assert_eq!(r.update("c", t(2_000), 2_500_001_000), Some(2_000_000_000));
        // Idle.
        assert_eq!(r.update("c", t(2_500), 2_500_001_000), Some(0));
    }

    #[test]
    fn ids_are_independent() {
        let mut r = CpuRate::new();
        r.update("a", t(0), 0);
        r.update("b", t(0), 0);
        assert_eq!(r.update("a", t(100), 100_000_000), Some(1_000_000_000));
        assert_eq!(r.update("b", t(100), 10_000_000), Some(100_000_000));
        r.remove("a");
        assert_eq!(r.update("a", t(200), 200_000_000), None);
        r.retain(|id| id == "b");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn same_timestamp_keeps_the_baseline() {
        let mut r = CpuRate::new();
        r.update("c", t(0), 0);
        assert_eq!(r.update("c", t(0), 5), None);
        assert_eq!(r.update("c", t(1_000), 1_000_000_000), Some(1_000_000_000));
    }

    #[test]
    fn clock_or_counter_going_back_resets() {
        let mut r = CpuRate::new();
        r.update("c", t(1_000), 100);
        assert_eq!(r.update("c", t(500), 200), None);
        assert_eq!(r.update("c", t(1_500), 1_000_000_200), Some(1_000_000_000));
        assert_eq!(r.update("c", t(2_500), 50), None);
        assert_eq!(r.update("c", t(3_500), 250_000_050), Some(250_000_000));
    }

    proptest! {
        #[test]
        fn never_panics(samples in proptest::collection::vec((0u64..u64::MAX / 2_000_000, any::<u64>()), 0..30)) {
            let mut r = CpuRate::new();
            for (ms, usage) in samples {
                let _ = r.update("x", SystemTime::UNIX_EPOCH + Duration::from_millis(ms), usage);
            }
        }

        #[test]
        fn constant_rate_is_recovered(cores in 0u64..64, step_ms in 1u64..10_000) {
            let mut r = CpuRate::new();
            let per_ms = cores * 1_000_000;
            r.update("x", t(0), 0);
            let got = r.update("x", t(step_ms), per_ms * step_ms);
            prop_assert_eq!(got, Some(cores * 1_000_000_000));
        }
    }
}
