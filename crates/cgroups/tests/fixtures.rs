//! Stats read from hand-written v1 and v2 trees (`tests/fixtures/{v1,v2}`) shaped like real
//! hosts' cgroupfs: every field traced to its file, limits, `max`, missing files, pids, OOM kills.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use husk_cgroups::{CgroupError, Cgroups, Controller, CpuRate, Throttling, V1Mounts, Version};

const MIB: u64 = 1 << 20;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn v1() -> Cgroups {
    let root = fixture("v1");
    Cgroups::new(&root, Version::detect_with_mountinfo(&root, None))
}

fn v2() -> Cgroups {
    let root = fixture("v2");
    Cgroups::new(&root, Version::detect_with_mountinfo(&root, None))
}

#[test]
fn detects_versions_and_v1_mounts() {
    assert_eq!(v2().version(), &Version::V2);
    let root = fixture("v1");
    let Version::V1(mounts) = v1().version().clone() else {
        panic!("v1 fixture detected as v2 (its unified/cgroup.controllers must not count)");
    };
    assert_eq!(
        mounts.get(Controller::Cpu),
        Some(root.join("cpu,cpuacct").as_path())
    );
    assert_eq!(
        mounts.get(Controller::Cpuacct),
        Some(root.join("cpu,cpuacct").as_path())
    );
    assert_eq!(
        mounts.get(Controller::Memory),
        Some(root.join("memory").as_path())
    );
    assert_eq!(
        mounts.get(Controller::Pids),
        Some(root.join("pids").as_path())
    );
    assert_eq!(
        mounts.get(Controller::Blkio),
        Some(root.join("blkio").as_path())
    );
    assert_eq!(mounts.get(Controller::Freezer), None);
    // The real mount table wins over the layout; a fixture root is in no mount table.
    assert_eq!(
        Cgroups::detect(&root).version(),
        &Version::detect_with_mountinfo(&root, None)
    );
}

#[test]
fn v2_limited_container() {
    let s = v2().stats("/kubepods/burstable/pod5678/c1").unwrap();
    assert_eq!(s.cpu.usage_nanos, Some(8_125_612_000));
    assert_eq!(s.cpu.user_nanos, Some(6_235_007_000));
    assert_eq!(s.cpu.system_nanos, Some(1_890_605_000));
    assert_eq!(
        s.cpu.throttling,
        Some(Throttling {
            nr_periods: 4620,
            nr_throttled: 310,
            throttled_time_nanos: 2_918_340_000,
        })
    );
    let m = &s.memory;
    assert_eq!(m.usage_bytes, Some(50 * MIB));
    // working set = memory.current − inactive_file
    assert_eq!(m.working_set_bytes, Some(50 * MIB - 12 * MIB));
    assert_eq!(m.rss_bytes, Some(30 * MIB));
    assert_eq!(m.cache_bytes, Some(18 * MIB));
    assert_eq!(m.page_faults, Some(123_456));
    assert_eq!(m.major_page_faults, Some(12));
    assert_eq!(m.limit_bytes, Some(256 * MIB));
    assert_eq!(m.available_bytes, Some(256 * MIB - 38 * MIB));
    assert_eq!(m.swap_usage_bytes, Some(MIB));
    assert_eq!(m.swap_limit_bytes, Some(512 * MIB));
    assert_eq!(m.swap_available_bytes(), Some(511 * MIB));
    assert_eq!(m.oom_kills, Some(2));
    assert_eq!(s.pids.current, Some(7));
    assert_eq!(s.pids.limit, Some(1024));
}

#[test]
fn v2_max_values_and_floor() {
    let s = v2().stats("/kubepods/burstable/pod5678/c2").unwrap();
    // No cpu controller: usage still there (core cpu.stat), no throttling counters.
    assert_eq!(s.cpu.usage_nanos, Some(2_000_000_000));
    assert_eq!(s.cpu.throttling, None);
    let m = &s.memory;
    assert_eq!(m.usage_bytes, Some(8 * MIB));
    // inactive_file (9 MiB) > memory.current (8 MiB): floored at 0, not wrapped.
    assert_eq!(m.working_set_bytes, Some(0));
    assert_eq!(m.limit_bytes, None, "memory.max \"max\"");
    assert_eq!(m.available_bytes, None);
    assert_eq!(m.swap_usage_bytes, None, "no memory.swap.current");
    assert_eq!(m.swap_limit_bytes, None);
    assert_eq!(m.oom_kills, Some(0));
    assert_eq!(s.pids.current, Some(1));
    assert_eq!(s.pids.limit, None, "pids.max \"max\"");
}

#[test]
fn v2_cgroup_without_controllers() {
    let c = v2();
    let s = c.stats("/husk/c3").unwrap();
    assert_eq!(s.cpu.usage_nanos, Some(4_917_457_000));
    assert_eq!(s.memory, Default::default());
    assert_eq!(s.pids, Default::default());
    // No pids.current: the cgroup.procs of c3, c3/sub and c3/sub/deeper are counted.
    assert_eq!(c.process_count("/husk/c3").unwrap(), 3);
    assert_eq!(c.process_count("/husk/c3/sub").unwrap(), 1);
}

#[test]
fn v2_pod() {
    let c = v2();
    let s = c.stats("/kubepods/burstable/pod5678").unwrap();
    assert_eq!(s.memory.limit_bytes, None);
    assert_eq!(s.memory.working_set_bytes, Some(60_817_408 - 21_990_232));
    assert_eq!(c.process_count("/kubepods/burstable/pod5678").unwrap(), 8);
}

#[test]
fn v1_limited_container() {
    let s = v1().stats("/kubepods/burstable/pod1234/c1").unwrap();
    assert_eq!(s.cpu.usage_nanos, Some(8_125_612_000));
    // cpuacct.usage_user/usage_sys (ns) win over cpuacct.stat (ticks).
    assert_eq!(s.cpu.user_nanos, Some(6_235_007_000));
    assert_eq!(s.cpu.system_nanos, Some(1_890_605_000));
    assert_eq!(
        s.cpu.throttling,
        Some(Throttling {
            nr_periods: 4620,
            nr_throttled: 310,
            throttled_time_nanos: 2_918_340_123,
        })
    );
    let m = &s.memory;
    assert_eq!(m.usage_bytes, Some(50 * MIB));
    // total_inactive_file (12 MiB), not the cgroup-local inactive_file (4 KiB).
    assert_eq!(m.working_set_bytes, Some(38 * MIB));
    assert_eq!(m.rss_bytes, Some(30 * MIB), "total_rss");
    assert_eq!(m.cache_bytes, Some(18 * MIB), "total_cache");
    assert_eq!(m.page_faults, Some(123_456), "total_pgfault");
    assert_eq!(m.major_page_faults, Some(12), "total_pgmajfault");
    assert_eq!(m.limit_bytes, Some(256 * MIB));
    assert_eq!(m.available_bytes, Some(218 * MIB));
    // memsw.usage − usage; memsw.limit − limit.
    assert_eq!(m.swap_usage_bytes, Some(MIB));
    assert_eq!(m.swap_limit_bytes, Some(512 * MIB));
    assert_eq!(m.oom_kills, Some(2));
    assert_eq!(s.pids.current, Some(7));
    assert_eq!(s.pids.limit, Some(1024));
}

#[test]
fn v1_unlimited_old_kernel_container() {
    let s = v1().stats("/kubepods/burstable/pod1234/c2").unwrap();
    // cpuacct.stat ticks (USER_HZ = 100) when usage_user/usage_sys are absent.
    assert_eq!(s.cpu.usage_nanos, Some(2_000_000_000));
    assert_eq!(s.cpu.user_nanos, Some(1_500_000_000));
    assert_eq!(s.cpu.system_nanos, Some(500_000_000));
    assert_eq!(s.cpu.throttling, Some(Throttling::default()));
    let m = &s.memory;
    assert_eq!(m.usage_bytes, Some(8 * MIB));
    assert_eq!(m.working_set_bytes, Some(0), "floored at 0");
    assert_eq!(m.limit_bytes, None, "9223372036854771712 is unlimited");
    assert_eq!(m.available_bytes, None);
    assert_eq!(m.swap_usage_bytes, None, "no memsw files");
    assert_eq!(m.swap_limit_bytes, None);
    assert_eq!(m.oom_kills, None, "no oom_kill line before Linux 4.13");
    assert_eq!(s.pids.limit, None);
}

#[test]
fn v1_cgroup_in_some_hierarchies_only() {
    let c = v1();
    let s = c.stats("/husk/c3").unwrap();
    assert_eq!(s.cpu, Default::default());
    assert_eq!(s.pids, Default::default());
    assert_eq!(s.memory.usage_bytes, Some(MIB));
    // No memory.stat: nothing to subtract.
    assert_eq!(s.memory.working_set_bytes, Some(MIB));
    assert_eq!(s.memory.limit_bytes, None);
    assert_eq!(s.memory.swap_usage_bytes, Some(0));
    assert_eq!(s.memory.swap_limit_bytes, None);
    // Not in the pids hierarchy: counted from the memory hierarchy's cgroup.procs, recursively.
    assert_eq!(c.process_count("/husk/c3").unwrap(), 3);
}

#[test]
fn v1_pod_uses_pids_current() {
    let c = v1();
    assert_eq!(c.process_count("/kubepods/burstable/pod1234").unwrap(), 8);
    let s = c.stats("/kubepods/burstable/pod1234").unwrap();
    assert_eq!(s.cpu.usage_nanos, Some(10_125_612_000));
    assert_eq!(
        s.memory,
        Default::default(),
        "memory files absent: all None"
    );
}

#[test]
fn v1_controller_not_mounted() {
    let root = fixture("v1");
    let mut mounts = V1Mounts::new();
    mounts.insert(Controller::Memory, root.join("memory"));
    let c = Cgroups::new(&root, Version::V1(mounts));
    let s = c.stats("/kubepods/burstable/pod1234/c1").unwrap();
    assert_eq!(s.cpu, Default::default());
    assert_eq!(s.pids, Default::default());
    assert_eq!(s.memory.usage_bytes, Some(50 * MIB));
    assert_eq!(
        c.process_count("/kubepods/burstable/pod1234/c1").unwrap(),
        2
    );

    let none = Cgroups::new(&root, Version::V1(V1Mounts::new()));
    assert!(matches!(
        none.stats("/husk/c3"),
        Err(CgroupError::NotFound { .. })
    ));
    assert!(matches!(
        none.process_count("/husk/c3"),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn missing_cgroup_is_not_found() {
    for c in [v1(), v2()] {
        let err = c.stats("/kubepods/burstable/pod1234/gone").unwrap_err();
        let CgroupError::NotFound { path } = &err else {
            panic!("{err:?}");
        };
        assert!(
            path.ends_with("kubepods/burstable/pod1234/gone"),
            "{path:?}"
        );
        assert!(err.to_string().contains("gone"));
        assert!(matches!(
            c.process_count("/nope"),
            Err(CgroupError::NotFound { .. })
        ));
        assert!(matches!(
            c.stats("../../etc"),
            Err(CgroupError::InvalidPath { .. })
        ));
    }
}

#[test]
fn malformed_file_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cgroup.controllers"), "memory\n").unwrap();
    let cg = dir.path().join("bad");
    std::fs::create_dir(&cg).unwrap();
    std::fs::write(cg.join("memory.current"), "lots\n").unwrap();
    let c = Cgroups::detect(dir.path());
    assert_eq!(c.version(), &Version::V2);
    let err = c.stats("/bad").unwrap_err();
    let CgroupError::Parse { path, what } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(path, &cg.join("memory.current"));
    assert_eq!(what, "lots");
}

#[test]
fn stats_serialise_and_feed_cpu_rate() {
    let c = v2();
    let a = c.stats("/kubepods/burstable/pod5678/c1").unwrap();
    let json = serde_json::to_string(&a).unwrap();
    let back: husk_cgroups::Stats = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);

    // Same files twice: the second sample shows zero nanocores, not a division by zero.
    let mut rate = CpuRate::new();
    assert_eq!(
        rate.update("c1", a.timestamp, a.cpu.usage_nanos.unwrap()),
        None
    );
    std::thread::sleep(std::time::Duration::from_millis(2));
    let b = c.stats("/kubepods/burstable/pod5678/c1").unwrap();
    assert!(b.timestamp > a.timestamp);
    assert_eq!(
        rate.update("c1", b.timestamp, b.cpu.usage_nanos.unwrap()),
        Some(0)
    );
}
