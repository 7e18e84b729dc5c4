//! Sweep decisions, on a made-up host.

use super::*;

const STATE: &str = "/run/husk";

fn id(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

fn proc(pid: i32, comm: &str, cwd: &str, argv: &[&str]) -> Proc {
    Proc {
        pid,
        comm: comm.into(),
        cwd: Some(cwd.into()),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        mnt_ns: None,
    }
}

fn cni(pod: &str) -> CacheEntry {
    CacheEntry {
        network: "net".into(),
        pod_id: pod.into(),
        ifname: "eth0".into(),
    }
}

#[test]
fn only_what_no_record_names_goes_in_a_safe_order() {
    let (pa, pb, ca, cb) = (id('a'), id('b'), id('c'), id('d'));
    let known = Known {
        pods: [(pa.clone(), Some(100))].into_iter().collect(),
        containers: [ca.clone()].into_iter().collect(),
    };
    let monitor = |c: &str| format!("{STATE}/containers/{c}/monitor.json");
    let found = Found {
        pod_dirs: vec![pa.clone(), pb.clone()],
        container_dirs: vec![ca.clone(), cb.clone()],
        monitor_dirs: vec![ca[..16].into(), cb[..16].into()],
        rw_dirs: vec![ca.clone(), cb.clone()],
        runtime_containers: vec![("runc".into(), ca.clone()), ("crun".into(), cb.clone())],
        cni: vec![cni(&pa), cni(&pb)],
        monitors: vec![
            // The init pod a's record names; a second one in its dir; pod b's init.
            proc(
                100,
                "husk-pause",
                &format!("{STATE}/pods/{pa}"),
                &["husk-monitor", "pause"],
            ),
            proc(
                101,
                "husk-pause",
                &format!("{STATE}/pods/{pa}"),
                &["husk-monitor", "pause"],
            ),
            proc(
                102,
                "husk-pause",
                &format!("{STATE}/pods/{pb}"),
                &["husk-monitor", "pause"],
            ),
            // A userns helper found by its argument.
            proc(
                103,
                "husk-monitor",
                "/",
                &[
                    "/usr/bin/husk-monitor",
                    "pause",
                    "--userns",
                    &format!("{STATE}/pods/{pb}/ns/user"),
                ],
            ),
            // Container monitors: known, unknown.
            proc(
                200,
                "husk-monitor",
                "/",
                &["/usr/bin/husk-monitor", "--config", &monitor(&ca)],
            ),
            proc(
                201,
                "husk-monitor",
                "/",
                &["/usr/bin/husk-monitor", "--config", &monitor(&cb)],
            ),
            // Someone else's: another state dir; a pause of an old huskd (cwd elsewhere).
            proc(
                300,
                "husk-monitor",
                "/",
                &[
                    "husk-monitor",
                    "--config",
                    "/other/containers/x/monitor.json",
                ],
            ),
            proc(301, "husk-pause", "/root", &["husk-monitor", "pause"]),
        ],
        moved_aside: Default::default(),
    };
    let got = orphans(&found, &known, Path::new(STATE));
    let pids: Vec<i32> = got
        .iter()
        .filter_map(|o| match o {
            Orphan::Process { proc, .. } => Some(proc.pid),
            _ => None,
        })
        .collect();
    assert_eq!(pids, vec![101, 102, 103, 201]);
    let rest: Vec<&Orphan> = got
        .iter()
        .filter(|o| !matches!(o, Orphan::Process { .. }))
        .collect();
    assert_eq!(
        rest,
        vec![
            &Orphan::Cni(cni(&pb)),
            &Orphan::RuntimeContainer {
                handler: "crun".into(),
                id: cb.clone()
            },
            &Orphan::PodDir(pb.clone()),
            &Orphan::ContainerDir(cb.clone()),
            &Orphan::MonitorDir(cb[..16].into()),
            &Orphan::RwDir(cb.clone()),
        ]
    );
    // Order: CNI first, then runtime containers, processes, dirs.
    let kind = |o: &Orphan| match o {
        Orphan::Cni(_) => 0,
        Orphan::RuntimeContainer { .. } => 1,
        Orphan::Process { .. } => 2,
        _ => 3,
    };
    assert!(
        got.windows(2).all(|w| kind(&w[0]) <= kind(&w[1])),
        "{got:#?}"
    );
}

#[test]
fn a_host_of_known_objects_is_left_alone() {
    let (p, c) = (id('a'), id('c'));
    let known = Known {
        pods: [(p.clone(), None)].into_iter().collect(),
        containers: [c.clone()].into_iter().collect(),
    };
    let found = Found {
        pod_dirs: vec![p.clone()],
        container_dirs: vec![c.clone()],
        monitor_dirs: vec![c[..16].into()],
        rw_dirs: vec![c.clone()],
        runtime_containers: vec![("runc".into(), c.clone())],
        cni: vec![cni(&p)],
        monitors: vec![],
        moved_aside: Default::default(),
    };
    assert!(orphans(&found, &known, Path::new(STATE)).is_empty());
    assert_eq!(SweepReport::default().total(), 0);
}
