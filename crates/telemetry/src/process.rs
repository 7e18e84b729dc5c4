//! The standard `process_*` metrics of the daemon itself, read from `/proc/self` at scrape time.

/// What `/proc` says about this process; a field is `None` when it could not be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    /// Seconds since the epoch.
    pub start_time_seconds: Option<f64>,
    /// User + system CPU seconds.
    pub cpu_seconds: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
}

impl ProcessStats {
    /// Reads `/proc/self/{stat,statm,fd}` and `/proc/stat` (small reads of procfs).
    pub fn read() -> ProcessStats {
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let page = rustix::param::page_size() as u64;
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let statm = std::fs::read_to_string("/proc/self/statm").ok();
        let mut pages = statm
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(|v| v.parse::<u64>().ok());
        let virt = pages.next().flatten();
        let rss = pages.next().flatten();
        ProcessStats {
            start_time_seconds: match (&fields, btime) {
                (Some(f), Some(b)) if ticks > 0.0 => Some(b as f64 + f.starttime as f64 / ticks),
                _ => None,
            },
            cpu_seconds: fields
                .as_ref()
                .filter(|_| ticks > 0.0)
                .map(|f| (f.utime + f.stime) as f64 / ticks),
            resident_memory_bytes: rss.map(|p| p * page),
            virtual_memory_bytes: virt.map(|p| p * page),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|rd| rd.count() as u64),
        }
    }
}

/// The fields of `/proc/<pid>/stat` we use, in clock ticks.
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn stat_fields(s: &str) -> Option<StatFields> {
    let rest = &s[s.rfind(')')? + 1..];
    // After `)` comes field 3 (state): field N is at index N - 3.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(StatFields {
        utime: n(11)?,
        stime: n(12)?,
        starttime: n(19)?,
    })
}

/// `btime` of `/proc/stat`: the boot time in seconds since the epoch.
fn boot_time(s: &str) -> Option<u64> {
    s.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_odd_command_names() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 75 0 0 20 0 3 0 123456 1000000 200 18446744073709551615";
        assert_eq!(
            stat_fields(line),
            Some(StatFields {
                utime: 250,
                stime: 75,
                starttime: 123456
            })
        );
        assert_eq!(stat_fields("garbage"), None);
    }

    #[test]
    fn boot_time_is_found() {
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1700000000)
        );
        assert_eq!(boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_is_readable() {
        let p = ProcessStats::read();
        assert!(p.resident_memory_bytes.is_some_and(|v| v > 0), "{p:?}");
        assert!(p.open_fds.is_some_and(|v| v >= 3), "{p:?}");
        let start = p.start_time_seconds.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start} vs {now}"
        );
    }
}
