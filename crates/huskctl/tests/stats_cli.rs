//! The built binary's `stats`, `statsp`, `update` and `events` against an in-process fake
//! CRI RuntimeService on a unix socket that serves canned stats and events and records every
//! request it gets.
#![forbid(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{EventStream, Recorder, Records, Reply, cells, labels_match};
use k8s_cri::v1::*;
use serde_json::{Value, json};
use tonic::service::Routes;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct State {
    containers: Vec<ContainerStats>,
    pods: Vec<PodSandboxStats>,
    events: Vec<ContainerEventResponse>,
    /// Ends the event stream with this error instead of cleanly.
    events_error: Option<Status>,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    calls: Recorder,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }
}

impl Records for Fake {
    fn recorder(&self) -> &Recorder {
        &self.calls
    }
}

#[tonic::async_trait]
impl common::FakeRuntime for Fake {
    async fn update_container_resources(
        &self,
        r: Request<UpdateContainerResourcesRequest>,
    ) -> Reply<UpdateContainerResourcesResponse> {
        let r = r.into_inner();
        self.record("UpdateContainerResources", &r);
        let known = self.state().containers.iter().any(|s| {
            s.attributes
                .as_ref()
                .is_some_and(|a| a.id == r.container_id)
        });
        if !known {
            return Err(Status::not_found(format!(
                "container {:?} not found",
                r.container_id
            )));
        }
        Ok(Response::new(UpdateContainerResourcesResponse {}))
    }

    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> Reply<ContainerStatsResponse> {
        let r = r.into_inner();
        self.record("ContainerStats", &r);
        let stats = self
            .state()
            .containers
            .iter()
            .find(|s| {
                s.attributes
                    .as_ref()
                    .is_some_and(|a| a.id == r.container_id)
            })
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("container {:?} not found", r.container_id))
            })?;
        Ok(Response::new(ContainerStatsResponse { stats: Some(stats) }))
    }

    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> Reply<ListContainerStatsResponse> {
        let r = r.into_inner();
        self.record("ListContainerStats", &r);
        let filter = r.filter.unwrap_or_default();
        let pods: HashMap<String, String> = self
            .state()
            .pods
            .iter()
            .flat_map(|p| {
                let pod = p.attributes.clone().unwrap_or_default().id;
                p.linux.iter().flat_map(move |l| {
                    let pod = pod.clone();
                    l.containers
                        .iter()
                        .map(move |c| (c.attributes.clone().unwrap_or_default().id, pod.clone()))
                })
            })
            .collect();
        let stats = self
            .state()
            .containers
            .iter()
            .filter(|s| {
                let a = s.attributes.clone().unwrap_or_default();
                (filter.id.is_empty() || a.id == filter.id)
                    && (filter.pod_sandbox_id.is_empty()
                        || pods.get(&a.id) == Some(&filter.pod_sandbox_id))
                    && labels_match(&a.labels, &filter.label_selector)
            })
            .cloned()
            .collect();
        Ok(Response::new(ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> Reply<PodSandboxStatsResponse> {
        let r = r.into_inner();
        self.record("PodSandboxStats", &r);
        let stats = self
            .state()
            .pods
            .iter()
            .find(|s| {
                s.attributes
                    .as_ref()
                    .is_some_and(|a| a.id == r.pod_sandbox_id)
            })
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!("pod sandbox {:?} not found", r.pod_sandbox_id))
            })?;
        Ok(Response::new(PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> Reply<ListPodSandboxStatsResponse> {
        let r = r.into_inner();
        self.record("ListPodSandboxStats", &r);
        let filter = r.filter.unwrap_or_default();
        let stats = self
            .state()
            .pods
            .iter()
            .filter(|s| {
                let a = s.attributes.clone().unwrap_or_default();
                (filter.id.is_empty() || a.id == filter.id)
                    && labels_match(&a.labels, &filter.label_selector)
            })
            .cloned()
            .collect();
        Ok(Response::new(ListPodSandboxStatsResponse { stats }))
    }

    async fn get_container_events(&self, r: Request<GetEventsRequest>) -> Reply<EventStream> {
        self.record("GetContainerEvents", &r.into_inner());
        let state = self.state();
        let events: Vec<_> = state.events.iter().cloned().map(Ok).collect();
        let tail = state.events_error.clone().map(Err);
        Ok(Response::new(Box::pin(futures::stream::iter(
            events.into_iter().chain(tail),
        ))))
    }
}

type Daemon = common::Daemon<Fake>;

/// A fake huskd serving `fake` as its RuntimeService.
async fn start(fake: Fake) -> Daemon {
    let routes = Routes::new(common::runtime_service(fake.clone()));
    Daemon::start(fake, routes)
}

const WEB: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
const IDLE: &str = "c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2c2";
const POD: &str = "p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1p1";
const POD2: &str = "p2p2p2p2p2p2p2p2p2p2p2p2p2p2p2p2";

fn v(value: u64) -> Option<UInt64Value> {
    Some(UInt64Value { value })
}

fn container_stats(id: &str, name: &str, tier: &str, nano_cores: u64, mem: u64) -> ContainerStats {
    ContainerStats {
        attributes: Some(ContainerAttributes {
            id: id.into(),
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            labels: HashMap::from([("tier".to_string(), tier.to_string())]),
            annotations: HashMap::new(),
        }),
        cpu: Some(CpuUsage {
            timestamp: 1,
            usage_nano_cores: v(nano_cores),
            usage_core_nano_seconds: v(nano_cores * 10),
        }),
        memory: Some(MemoryUsage {
            working_set_bytes: v(mem),
            ..Default::default()
        }),
        writable_layer: Some(FilesystemUsage {
            used_bytes: v(mem / 100),
            inodes_used: v(mem / 1_000_000),
            ..Default::default()
        }),
        swap: None,
    }
}

fn pod_stats(id: &str, name: &str, containers: Vec<ContainerStats>) -> PodSandboxStats {
    PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                namespace: "default".into(),
                ..Default::default()
            }),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            annotations: HashMap::new(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: Some(CpuUsage {
                usage_nano_cores: v(123_456_789),
                ..Default::default()
            }),
            memory: Some(MemoryUsage {
                working_set_bytes: v(48_000_000),
                ..Default::default()
            }),
            network: Some(NetworkUsage {
                default_interface: Some(NetworkInterfaceUsage {
                    name: "eth0".into(),
                    rx_bytes: v(2_500),
                    tx_bytes: v(1_200_000),
                    ..Default::default()
                }),
                interfaces: vec![],
                timestamp: 1,
            }),
            process: Some(ProcessUsage {
                process_count: v(4),
                timestamp: 1,
            }),
            containers,
        }),
        windows: None,
    }
}

/// Two containers (one busy, one idle) in one pod, and a second, empty pod.
fn fake() -> Fake {
    let web = container_stats(WEB, "web", "front", 25_000_000, 12_500_000);
    let idle = container_stats(IDLE, "idle", "back", 0, 0);
    let fake = Fake::default();
    {
        let mut state = fake.state();
        state.containers = vec![web.clone(), idle.clone()];
        state.pods = vec![
            pod_stats(POD, "web-sandbox", vec![web, idle]),
            pod_stats(POD2, "empty-sandbox", vec![]),
        ];
    }
    fake
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_lists_filters_and_renders() {
    let d = start(fake()).await;

    // Default: ListContainerStats with an empty filter; only the busy container shows.
    let out = d.ok(&["stats"]).await;
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        cells(lines[0]),
        ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]
    );
    assert_eq!(
        cells(lines[1]),
        ["c1c1c1c1c1c1c", "web", "2.50", "12.5MB", "125kB", "12"]
    );
    assert_eq!(
        d.fake.requests("ListContainerStats"),
        [json!({"filter": {"id": "", "pod_sandbox_id": "", "label_selector": {}}})]
    );

    // -a shows idle containers too.
    let out = d.ok(&["stats", "-a"]).await;
    let idle = out
        .lines()
        .find(|l| l.starts_with("c2c2"))
        .expect("idle row");
    assert_eq!(
        cells(idle),
        ["c2c2c2c2c2c2c", "idle", "0.00", "0B", "0B", "0"]
    );

    // --pod and --label go into the filter.
    d.fake.clear_requests();
    let out = d
        .ok(&["stats", "-a", "--pod", POD, "--label", "tier=back"])
        .await;
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("idle"), "{out}");
    assert_eq!(
        d.fake.requests("ListContainerStats"),
        [json!({"filter": {"id": "", "pod_sandbox_id": POD,
                           "label_selector": {"tier": "back"}}})]
    );

    // IDs: one ContainerStats call each, no listing.
    d.fake.clear_requests();
    let out = d.ok(&["stats", "-a", "-o", "json", WEB, IDLE]).await;
    assert_eq!(d.fake.rpcs(), ["ContainerStats", "ContainerStats"]);
    assert_eq!(
        d.fake.requests("ContainerStats"),
        [json!({"container_id": WEB}), json!({"container_id": IDLE})]
    );
    let doc = common::json(&out);
    let stats = doc["stats"].as_array().expect("stats array");
    assert_eq!(stats.len(), 2);
    assert_eq!(stats[0]["attributes"]["id"], WEB);
    assert_eq!(stats[0]["cpu"]["usage_nano_cores"]["value"], 25_000_000);
    assert_eq!(stats[1]["attributes"]["metadata"]["name"], "idle");

    // YAML.
    let out = d.ok(&["stats", "-o", "yaml"]).await;
    let doc: Value = serde_yaml::from_str(&out).expect("yaml");
    assert_eq!(
        doc["stats"][0]["memory"]["working_set_bytes"]["value"],
        12_500_000
    );
    assert_eq!(doc["stats"].as_array().map(Vec::len), Some(1));

    // Unknown ID: huskd's message, exit 1.
    let err = d.fails(&["stats", "nope"]).await;
    assert!(err.contains("container \"nope\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statsp_lists_filters_and_renders() {
    let d = start(fake()).await;

    let out = d.ok(&["statsp"]).await;
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        cells(lines[0]),
        ["POD", "NAME", "CPU %", "MEM", "PROCESSES", "RX", "TX"]
    );
    assert_eq!(
        cells(lines[1]),
        [
            "p1p1p1p1p1p1p",
            "web-sandbox",
            "12.35",
            "48MB",
            "4",
            "2.5kB",
            "1.2MB"
        ]
    );
    assert_eq!(cells(lines[2])[1], "empty-sandbox");
    assert_eq!(
        d.fake.requests("ListPodSandboxStats"),
        [json!({"filter": {"id": "", "label_selector": {}}})]
    );

    d.fake.clear_requests();
    let out = d.ok(&["statsp", "--label", "app=empty-sandbox"]).await;
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("empty-sandbox"), "{out}");
    assert_eq!(
        d.fake.requests("ListPodSandboxStats"),
        [json!({"filter": {"id": "", "label_selector": {"app": "empty-sandbox"}}})]
    );

    d.fake.clear_requests();
    let out = d.ok(&["statsp", "-o", "json", POD]).await;
    assert_eq!(d.fake.rpcs(), ["PodSandboxStats"]);
    assert_eq!(
        d.fake.requests("PodSandboxStats"),
        [json!({"pod_sandbox_id": POD})]
    );
    let doc = common::json(&out);
    assert_eq!(doc["stats"][0]["attributes"]["id"], POD);
    assert_eq!(
        doc["stats"][0]["linux"]["network"]["default_interface"]["rx_bytes"]["value"],
        2_500
    );
    assert_eq!(
        doc["stats"][0]["linux"]["containers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let err = d.fails(&["statsp", "nope"]).await;
    assert!(err.contains("pod sandbox \"nope\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_sends_linux_resources() {
    let d = start(fake()).await;

    let out = d
        .ok(&[
            "update",
            WEB,
            IDLE,
            "--memory",
            "64m",
            "--cpu-shares",
            "512",
            "--cpu-period",
            "100000",
            "--cpu-quota",
            "50000",
            "--cpuset-cpus",
            "0-1",
            "--cpuset-mems",
            "0",
        ])
        .await;
    assert_eq!(out, format!("{WEB}\n{IDLE}\n"));
    let requests = d.fake.requests("UpdateContainerResources");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["container_id"], WEB);
    assert_eq!(requests[1]["container_id"], IDLE);
    let linux = &requests[0]["linux"];
    assert_eq!(linux["memory_limit_in_bytes"], 64 * 1024 * 1024);
    assert_eq!(linux["cpu_shares"], 512);
    assert_eq!(linux["cpu_period"], 100_000);
    assert_eq!(linux["cpu_quota"], 50_000);
    assert_eq!(linux["cpuset_cpus"], "0-1");
    assert_eq!(linux["cpuset_mems"], "0");
    assert_eq!(requests[0]["windows"], Value::Null);

    // Unset flags are zero or empty.
    d.fake.clear_requests();
    d.ok(&["update", WEB, "--memory", "1048576"]).await;
    let requests = d.fake.requests("UpdateContainerResources");
    let linux = &requests[0]["linux"];
    assert_eq!(linux["memory_limit_in_bytes"], 1_048_576);
    assert_eq!(linux["cpu_shares"], 0);
    assert_eq!(linux["cpu_period"], 0);
    assert_eq!(linux["cpu_quota"], 0);
    assert_eq!(linux["cpuset_cpus"], "");
    assert_eq!(linux["cpuset_mems"], "");

    // An unknown ID fails, the others are still updated.
    d.fake.clear_requests();
    let (out, err) = d
        .fails_with_output(&["update", "nope", WEB, "--cpu-shares", "2"])
        .await;
    assert_eq!(out, format!("{WEB}\n"));
    assert!(err.contains("container \"nope\" not found"), "{err}");
    assert_eq!(d.fake.requests("UpdateContainerResources").len(), 2);

    // A bad size is a usage error; nothing is sent.
    d.fake.clear_requests();
    let out = d.huskctl(&["update", WEB, "--memory", "12x"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(d.fake.rpcs().is_empty());
}

fn event(kind: ContainerEventType, container: &str, pod: &str, at: i64) -> ContainerEventResponse {
    ContainerEventResponse {
        container_id: container.into(),
        container_event_type: kind as i32,
        created_at: at,
        pod_sandbox_status: Some(PodSandboxStatus {
            id: pod.into(),
            ..Default::default()
        }),
        containers_statuses: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_print_until_the_stream_ends() {
    let fake = fake();
    let s = 1_000_000_000;
    fake.state().events = vec![
        event(
            ContainerEventType::ContainerCreatedEvent,
            WEB,
            POD,
            1_700_000_000 * s,
        ),
        event(
            ContainerEventType::ContainerStartedEvent,
            WEB,
            POD,
            1_700_000_001 * s,
        ),
        event(
            ContainerEventType::ContainerStoppedEvent,
            WEB,
            POD,
            1_700_000_062 * s,
        ),
        event(
            ContainerEventType::ContainerDeletedEvent,
            WEB,
            POD,
            1_700_000_063 * s,
        ),
    ];
    let d = start(fake).await;

    let out = d.ok(&["events"]).await;
    assert_eq!(
        out,
        "\
2023-11-14T22:13:20Z CREATED container=c1c1c1c1c1c1c pod=p1p1p1p1p1p1p
2023-11-14T22:13:21Z STARTED container=c1c1c1c1c1c1c pod=p1p1p1p1p1p1p
2023-11-14T22:14:22Z STOPPED container=c1c1c1c1c1c1c pod=p1p1p1p1p1p1p
2023-11-14T22:14:23Z DELETED container=c1c1c1c1c1c1c pod=p1p1p1p1p1p1p
"
    );
    assert_eq!(d.fake.requests("GetContainerEvents"), [json!({})]);

    let out = d.ok(&["events", "-o", "json"]).await;
    let docs: Vec<Value> = out.lines().map(common::json).collect();
    assert_eq!(docs.len(), 4, "{out}");
    assert_eq!(docs[0]["container_event_type"], "CONTAINER_CREATED_EVENT");
    assert_eq!(docs[2]["container_event_type"], "CONTAINER_STOPPED_EVENT");
    assert_eq!(docs[0]["container_id"], WEB);
    assert_eq!(docs[0]["pod_sandbox_status"]["id"], POD);
    assert_eq!(docs[3]["created_at"], 1_700_000_063 * s);

    // A broken stream: the events so far are printed, then the error, exit 1.
    d.fake.state().events_error = Some(Status::internal("event bus closed"));
    let (out, err) = d.fails_with_output(&["events"]).await;
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(err.contains("event bus closed"), "{err}");
    assert!(err.contains("GetContainerEvents"), "{err}");
}
