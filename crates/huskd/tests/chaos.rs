//! Chaos: the real huskd, CNI (bridge, host-local, portmap), runc and crun under churn (pods
//! with host ports and containers created, started, stopped and removed at random), with huskd
//! SIGKILLed at random moments and restarted each time. Sentinel containers print a counter
//! every 100 ms throughout; containers that exit during an outage must report their exit code
//! after it. At the end, once everything is removed through the CRI, nothing may be left on the
//! host. Bounded in time and count; the RNG is seeded (`HUSK_CHAOS_SEED` replays a run).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use k8s_cri::v1 as cri;

/// How many times huskd is killed.
const KILLS: usize = 15;
/// Churn tasks running side by side (so that kills land in concurrent operations).
const WORKERS: u64 = 2;
/// The churn phase ends after this long even if fewer kills happened (then the test fails).
const CHAOS_LIMIT: Duration = Duration::from_secs(110);
/// At most this many churn operations.
const MAX_OPS: usize = 3000;
/// Churn keeps at most this many pods.
const MAX_PODS: usize = 6;

/// splitmix64: small, seedable, good enough to pick moments and actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicUsize,
    failed: AtomicUsize,
}

/// Everything the churn task needs, independent of the daemon's lifetime.
struct Churn {
    socket: PathBuf,
    pod_template: cri::PodSandboxConfig,
    port_base: u16,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
}

async fn connect(socket: &std::path::Path) -> RuntimeClient {
    loop {
        if let Ok(ch) = husk_test_support::channel(socket).await {
            return RuntimeClient::new(ch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn churn_pod(template: &cri::PodSandboxConfig, n: u64, port: u16) -> cri::PodSandboxConfig {
    let mut pc = template.clone();
    let name = format!("churn-{n}");
    pc.metadata = Some(cri::PodSandboxMetadata {
        name: name.clone(),
        uid: format!("uid-{name}"),
        namespace: "chaos".into(),
        attempt: 0,
    });
    pc.hostname = name;
    pc.port_mappings[0].host_port = port as i32;
    pc
}

impl Churn {
    /// Runs random lifecycle operations until told to stop; errors (the daemon is down, an
    /// object is gone) are expected and only counted.
    async fn run(self, seed: u64, worker: u64) {
        let mut rng = Rng(seed ^ (0x5eed + worker));
        let mut rt = connect(&self.socket).await;
        let mut n = worker * 1_000_000;
        while !self.stop.load(Ordering::Relaxed) && self.counts.ok.load(Ordering::Relaxed) < MAX_OPS
        {
            let listed = async {
                let pods = rt
                    .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
                    .await?
                    .into_inner()
                    .items;
                let cs = rt
                    .list_containers(cri::ListContainersRequest { filter: None })
                    .await?
                    .into_inner()
                    .containers;
                Ok::<_, tonic::Status>((pods, cs))
            }
            .await;
            let Ok((pods, cs)) = listed else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                rt = connect(&self.socket).await;
                continue;
            };
            let churn = |name: &str| name.starts_with("churn-");
            let pods: Vec<_> = pods
                .into_iter()
                .filter(|p| p.metadata.as_ref().is_some_and(|m| churn(&m.name)))
                .collect();
            let ready: Vec<_> = pods
                .iter()
                .filter(|p| p.state == cri::PodSandboxState::SandboxReady as i32)
                .collect();
            let cs: Vec<_> = cs
                .into_iter()
                .filter(|c| pods.iter().any(|p| p.id == c.pod_sandbox_id))
                .collect();
            let in_state = |s: cri::ContainerState| -> Vec<&cri::Container> {
                cs.iter().filter(|c| c.state == s as i32).collect()
            };
            let (created, running, exited) = (
                in_state(cri::ContainerState::ContainerCreated),
                in_state(cri::ContainerState::ContainerRunning),
                in_state(cri::ContainerState::ContainerExited),
            );
            let pick = |v: &[&cri::Container], rng: &mut Rng| {
                v[rng.below(v.len() as u64) as usize].id.clone()
            };
            n += 1;
            let r: Result<(), tonic::Status> = match rng.below(10) {
                0 | 1 if pods.len() < MAX_PODS => {
                    let handler = RUNTIMES[rng.below(2) as usize];
                    let port = self.port_base + (n % 50 + 50 * worker) as u16;
                    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(churn_pod(&self.pod_template, n, port)),
                        runtime_handler: handler.into(),
                    })
                    .await
                    .map(drop)
                }
                2 | 3 if !ready.is_empty() => {
                    let p = ready[rng.below(ready.len() as u64) as usize];
                    let cmd: Vec<String> = if rng.below(3) == 0 {
                        vec!["sh".into(), "-c".into(), "sleep 0.3; exit 7".into()]
                    } else {
                        vec!["sleep".into(), "1000".into()]
                    };
                    let mut cc = container_config(&format!("c{n}"), &[]);
                    cc.command = cmd;
                    rt.create_container(cri::CreateContainerRequest {
                        pod_sandbox_id: p.id.clone(),
                        config: Some(cc),
                        sandbox_config: None,
                    })
                    .await
                    .map(drop)
                }
                4 if !created.is_empty() => rt
                    .start_container(cri::StartContainerRequest {
                        container_id: pick(&created, &mut rng),
                    })
                    .await
                    .map(drop),
                5 if !running.is_empty() => rt
                    .stop_container(cri::StopContainerRequest {
                        container_id: pick(&running, &mut rng),
                        timeout: rng.below(2) as i64,
                    })
                    .await
                    .map(drop),
                6 if !exited.is_empty() || !created.is_empty() => {
                    let all: Vec<&cri::Container> =
                        exited.iter().chain(&created).copied().collect();
                    rt.remove_container(cri::RemoveContainerRequest {
                        container_id: pick(&all, &mut rng),
                    })
                    .await
                    .map(drop)
                }
                7 if !ready.is_empty() => rt
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: ready[rng.below(ready.len() as u64) as usize].id.clone(),
                    })
                    .await
                    .map(drop),
                8 | 9 if !pods.is_empty() && (pods.len() >= MAX_PODS || rng.below(2) == 0) => {
                    let p = &pods[rng.below(pods.len() as u64) as usize];
                    let r = rt
                        .stop_pod_sandbox(cri::StopPodSandboxRequest {
                            pod_sandbox_id: p.id.clone(),
                        })
                        .await;
                    match r {
                        Ok(_) => rt
                            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                                pod_sandbox_id: p.id.clone(),
                            })
                            .await
                            .map(drop),
                        Err(e) => Err(e),
                    }
                }
                _ => continue,
            };
            match r {
                Ok(()) => {
                    self.counts.ok.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if rng.below(4) == 0 {
                tokio::time::sleep(rng.millis(0, 150)).await;
            }
        }
    }
}

/// The counter lines of a sentinel's log: there must be no gap.
fn counter_gaps(lines: &[String]) -> Vec<String> {
    let mut gaps = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.trim().parse::<usize>().ok() != Some(i) {
            gaps.push(format!("line {i}: {l:?}"));
            break;
        }
    }
    gaps
}

async fn container_named(rt: &mut RuntimeClient, name: &str) -> Option<cri::Container> {
    rt.list_containers(cri::ListContainersRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .containers
        .into_iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == name))
}

#[tokio::test]
async fn huskd_survives_random_kills_under_churn() {
    if !crash_test_system() {
        return;
    }
    let seed = std::env::var("HUSK_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chaos: seed {seed} (HUSK_CHAOS_SEED={seed} replays this run)");
    let mut rng = Rng(seed);
    let test_started = Instant::now();
    let mut env = Env::new().await;
    let net = CrashNet::new(4);
    net.install(&env.h);
    let port_base = 50000 + (std::process::id() % 100) as u16 * 100;

    // Sentinels, one per runtime, and a probe pod per runtime for exits during outages.
    let ticker = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done";
    let mut sentinels = Vec::new();
    let mut probe_pods = Vec::new();
    for (i, h) in RUNTIMES.into_iter().enumerate() {
        let pc = net.pod_config(
            &env,
            &format!("sentinel-{h}"),
            Some(port_base - 1 - i as u16),
        );
        let pod = env.run_pod(pc.clone(), h).await.unwrap();
        let c = env
            .create(
                &pod,
                container_config(&format!("tick-{h}"), &["sh", "-c", ticker]),
                &pc,
            )
            .await
            .unwrap();
        env.start(&c).await.unwrap();
        sentinels.push((h, c));
        let pc = net.pod_config(&env, &format!("probe-{h}"), None);
        let pod = env.run_pod(pc.clone(), h).await.unwrap();
        probe_pods.push((h, pod, pc));
    }

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut template = net.pod_config(&env, "template", Some(1));
    template.log_directory = env.logs.path().join("churn").display().to_string();
    let churn_tasks: Vec<_> = (0..WORKERS)
        .map(|w| {
            let churn = Churn {
                socket: env.h.socket_path(),
                pod_template: template.clone(),
                port_base,
                counts: counts.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(churn.run(seed, w))
        })
        .collect();

    let mut kills = 0;
    let mut probes_checked = 0;
    let chaos_started = Instant::now();
    while kills < KILLS && chaos_started.elapsed() < CHAOS_LIMIT {
        tokio::time::sleep(rng.millis(1000, 4500)).await;
        // Every third kill: a container that exits during the outage.
        let probe = (kills % 3 == 2).then(|| {
            let i = (kills / 3) % RUNTIMES.len();
            probe_pods[i].clone()
        });
        let mut probe_id = None;
        if let Some((h, pod, pc)) = &probe {
            let name = format!("exit3-{h}-{kills}");
            let c = env
                .create(
                    pod,
                    container_config(&name, &["sh", "-c", "sleep 1; exit 3"]),
                    pc,
                )
                .await
                .unwrap();
            env.start(&c).await.unwrap();
            probe_id = Some(c);
        }
        env.h.kill().unwrap();
        kills += 1;
        let outage = if probe.is_some() {
            rng.millis(1600, 2500)
        } else {
            rng.millis(100, 1500)
        };
        tokio::time::sleep(outage).await;
        if let Err(e) = env.h.start_again() {
            panic!("chaos (seed {seed}): huskd did not come back after kill {kills}: {e:#}");
        }
        env.rt = env.h.runtime_client().await.unwrap();
        if let Some(c) = &probe_id {
            let s = env.status(c).await;
            assert_eq!(
                s.state,
                cri::ContainerState::ContainerExited as i32,
                "seed {seed}: exited during the outage: {s:?}"
            );
            assert_eq!(s.exit_code, 3, "seed {seed}: its exit code: {s:?}");
            assert_eq!(s.reason, "Error", "seed {seed}: {s:?}");
            probes_checked += 1;
            env.rt
                .remove_container(cri::RemoveContainerRequest {
                    container_id: c.clone(),
                })
                .await
                .unwrap();
        }
        for (h, c) in &sentinels {
            let s = env.status(c).await;
            assert_eq!(
                s.state,
                cri::ContainerState::ContainerRunning as i32,
                "seed {seed}: sentinel on {h} after kill {kills}: {s:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in churn_tasks {
        t.await.unwrap();
    }
    let chaos_secs = chaos_started.elapsed().as_secs_f64();
    assert!(
        kills >= 10,
        "seed {seed}: only {kills} kills in {chaos_secs:.0}s"
    );

    // The sentinels ran through it all and their logs have every line.
    let mut sentinel_lines = Vec::new();
    for (h, c) in &sentinels {
        let log = env.log(c).await;
        let gaps = counter_gaps(&log);
        assert!(
            gaps.is_empty(),
            "seed {seed}: sentinel on {h}: counter broken: {gaps:?}"
        );
        assert!(
            log.len() as f64 >= chaos_secs * 5.0,
            "seed {seed}: sentinel on {h} printed only {} lines in {chaos_secs:.0}s",
            log.len()
        );
        sentinel_lines.push(log.len());
    }
    // One more check that the daemon still works: a pod and a container.
    let (h, pod, pc) = &probe_pods[0];
    let c = env
        .create(pod, container_config("final", &["sh", "-c", "exit 0"]), pc)
        .await
        .unwrap();
    env.start(&c).await.unwrap();
    assert_eq!(env.wait_exited(&c).await.exit_code, 0, "{h}");
    assert!(container_named(&mut env.rt, "final").await.is_some());

    // What the restarts found to finish or undo (from the daemon's log).
    let log = env.h.log();
    let count = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    eprintln!(
        "chaos: recovery: {} pods and {} containers recovered ({} half-made pods and {} containers \
         rolled back), {} sweep removals",
        count("recovering pod"),
        count("recovering container"),
        count("half-made pod rolled back"),
        count("half-made container rolled back"),
        count("sweep: ")
    );

    CrashNet::remove_all(&mut env.rt).await;
    let leaks = net.leaks(&env.h);
    eprintln!(
        "chaos: seed {seed}: {kills} kills survived, {} operations done ({} failed while huskd was down or objects went away), \
         {probes_checked} exits during outages reported, sentinel lines {sentinel_lines:?}, {} leaks found, {:.0}s",
        counts.ok.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        leaks.len(),
        test_started.elapsed().as_secs_f64()
    );
    assert!(
        leaks.is_empty(),
        "seed {seed}: left on the host: {leaks:#?}"
    );
}
