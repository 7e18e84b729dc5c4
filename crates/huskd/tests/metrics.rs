//! The Prometheus endpoint of a real huskd: `[metrics] address` turns it on; RPCs, pulls and
//! containers show in `/metrics`; without the table nothing serves it; bad addresses stop huskd.

mod common;

use common::*;
use futures::StreamExt as _;
use husk_test_support::{Huskd, HuskdOptions};
use k8s_cri::v1 as cri;

fn start_with_metrics(port: u16) -> Huskd {
    Huskd::start(
        HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
            .extra_config(&format!("[metrics]\naddress = \"127.0.0.1:{port}\"\n")),
    )
    .expect("start huskd")
}

async fn scrape(port: u16) -> String {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("scrape /metrics");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    resp.text().await.expect("read /metrics")
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("a number"))
}

fn must(text: &str, series: &str) -> f64 {
    value(text, series).unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_rpcs_pulls_and_containers() {
    let port = husk_test_support::free_port();
    let reg = registry().await;
    let busybox = husk_test_support::busybox_image(&["sh"]).unwrap().build();
    push(&reg, "library/busybox", "latest", &busybox).await;
    let h = start_with_metrics(port);
    assert!(
        h.log().contains(&format!("127.0.0.1:{port}")) && h.log().contains("metrics endpoint"),
        "{}",
        h.log()
    );
    mirror(&h, "docker.io", &reg.url(), "");
    std::fs::write(
        h.cni_dir().join("net.d/99-loopback.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}"#,
    )
    .unwrap();
    let mut rt = h.runtime_client().await.unwrap();
    let mut img = h.image_client().await.unwrap();

    // Before any RPC: the families are there, the counters at zero.
    let text = scrape(port).await;
    assert!(text.contains("# TYPE husk_grpc_requests_total counter\n"));
    assert!(text.contains("# TYPE husk_grpc_request_duration_seconds histogram\n"));
    assert_eq!(must(&text, "husk_image_pull_bytes_total"), 0.0);
    assert_eq!(must(&text, "husk_container_oom_kills_total"), 0.0);
    assert_eq!(must(&text, "husk_containers{state=\"running\"}"), 0.0);
    assert_eq!(must(&text, "husk_pod_sandboxes{state=\"ready\"}"), 0.0);
    assert!(must(&text, "process_start_time_seconds") > 1.6e9);
    assert!(must(&text, "process_resident_memory_bytes") > 0.0);

    rt.version(cri::VersionRequest {
        version: "v1".into(),
    })
    .await
    .unwrap();
    let err = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: "nonexistent".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    pull(&mut img, "busybox").await.unwrap();
    let err = pull(&mut img, "docker.io/library/missing:v1")
        .await
        .unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    // husk.v1's streaming pull: the error travels in the trailers.
    let mut hc = h.husk_client().await.unwrap();
    let req = husk_api::v1::PullImageRequest {
        image: "docker.io/library/missing:v2".into(),
        auth: None,
    };
    let code = match hc.pull_image(req).await {
        Err(s) => s.code(),
        Ok(r) => {
            let mut events = r.into_inner();
            loop {
                match events.next().await {
                    Some(Ok(_)) => continue,
                    Some(Err(s)) => break s.code(),
                    None => panic!("pull of a missing image succeeded"),
                }
            }
        }
    };
    // (The test's mirror answers 404, then the dead upstream refuses: Unavailable.)
    assert_ne!(code, tonic::Code::Ok);

    let text = scrape(port).await;
    assert_eq!(
        must(
            &text,
            "husk_grpc_requests_total{method=\"Version\",code=\"OK\"}"
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            "husk_grpc_requests_total{method=\"ContainerStatus\",code=\"NotFound\"}"
        ),
        1.0
    );
    assert_eq!(
        must(
            &text,
            "husk_grpc_requests_total{method=\"PullImage\",code=\"OK\"}"
        ),
        1.0
    );
    let failed_pulls: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("husk_grpc_requests_total{method=\"PullImage\",code=")
                && !l.contains("code=\"OK\"")
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(failed_pulls, 1.0, "{text}");
    assert_eq!(
        must(
            &text,
            &format!("husk_grpc_requests_total{{method=\"Husk/PullImage\",code=\"{code:?}\"}}")
        ),
        1.0
    );
    for m in ["Version", "ContainerStatus"] {
        assert_eq!(
            must(
                &text,
                &format!("husk_grpc_request_duration_seconds_count{{method=\"{m}\"}}")
            ),
            1.0
        );
        assert_eq!(
            must(
                &text,
                &format!("husk_grpc_request_duration_seconds_bucket{{method=\"{m}\",le=\"+Inf\"}}")
            ),
            1.0
        );
        // A Version call takes well under 2.5 s.
        assert_eq!(
            must(
                &text,
                &format!("husk_grpc_request_duration_seconds_bucket{{method=\"{m}\",le=\"2.5\"}}")
            ),
            1.0
        );
    }
    assert_eq!(
        must(
            &text,
            "husk_grpc_request_duration_seconds_count{method=\"PullImage\"}"
        ),
        2.0
    );
    // Every byte fetched is in the content store: the pull fetched exactly its blobs.
    let stored: u64 = blobs(&h)
        .iter()
        .map(|b| {
            std::fs::metadata(h.root_dir().join("content/blobs/sha256").join(b))
                .unwrap()
                .len()
        })
        .sum();
    let pulled = must(&text, "husk_image_pull_bytes_total");
    assert!(pulled > 0.0);
    assert_eq!(pulled, stored as f64, "{text}");
    assert_eq!(
        must(&text, "husk_image_pulls_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(
        must(&text, "husk_image_pulls_total{result=\"failure\"}"),
        2.0
    );
    assert_eq!(must(&text, "husk_image_pull_duration_seconds_count"), 3.0);
    assert_eq!(
        must(
            &text,
            "husk_image_pull_duration_seconds_bucket{le=\"+Inf\"}"
        ),
        3.0
    );

    // A running container and its pod show in the gauges at the next scrape.
    let mut env = Env {
        reg,
        h,
        rt,
        img,
        logs: tempfile::tempdir().unwrap(),
    };
    let (_pod, c) = env.run("metrics", RUNTIMES[0], &["sleep", "100"]).await;
    let text = scrape(port).await;
    assert_eq!(
        must(&text, "husk_containers{state=\"running\"}"),
        1.0,
        "{text}"
    );
    assert_eq!(must(&text, "husk_containers{state=\"created\"}"), 0.0);
    assert_eq!(must(&text, "husk_pod_sandboxes{state=\"ready\"}"), 1.0);
    assert_eq!(
        must(
            &text,
            "husk_grpc_requests_total{method=\"RunPodSandbox\",code=\"OK\"}"
        ),
        1.0
    );
    env.rt
        .stop_container(cri::StopContainerRequest {
            container_id: c.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
    env.wait_exited(&c).await;
    let text = scrape(port).await;
    assert_eq!(must(&text, "husk_containers{state=\"running\"}"), 0.0);
    assert_eq!(must(&text, "husk_containers{state=\"exited\"}"), 1.0);

    // An OOM kill is counted once its exit is recorded.
    let pc = env.pod_config("metrics-oom");
    let pod = env.run_pod(pc.clone(), RUNTIMES[0]).await.unwrap();
    let mut cc = container_config("hog", &["sh", "-c", "head -c 200m /dev/zero | tail"]);
    cc.linux.as_mut().unwrap().resources = Some(cri::LinuxContainerResources {
        memory_limit_in_bytes: 32 * 1024 * 1024,
        ..Default::default()
    });
    let hog = env.create(&pod, cc, &pc).await.unwrap();
    env.start(&hog).await.unwrap();
    assert_eq!(env.wait_exited(&hog).await.reason, "OOMKilled");
    let mut oom = 0.0;
    for _ in 0..50 {
        oom = must(&scrape(port).await, "husk_container_oom_kills_total");
        if oom > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(oom, 1.0);
    env.teardown().await;
}

/// The TCP sockets huskd (`pid`) listens on: inodes of its socket fds matched against
/// `/proc/net/tcp{,6}` LISTEN entries.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("huskd's fds")
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address st ... inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                let port = f[1].rsplit(':').next().unwrap_or_default();
                ports.push(u16::from_str_radix(port, 16).expect("a hex port"));
            }
        }
    }
    ports
}

#[tokio::test]
async fn without_the_table_nothing_serves_metrics() {
    let h = huskd();
    assert!(!h.log().contains("metrics endpoint"), "{}", h.log());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    // Whatever else huskd listens on (the streaming server), none of it is a metrics endpoint.
    for port in listening_ports(h.pid().unwrap()) {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            let text = r.text().await.unwrap_or_default();
            assert!(!text.contains("husk_grpc_requests_total"), "port {port}");
        }
    }
    // With the table, the endpoint is among the listening sockets (the check above works).
    let port = husk_test_support::free_port();
    let h2 = start_with_metrics(port);
    assert!(listening_ports(h2.pid().unwrap()).contains(&port));
}

#[tokio::test]
async fn a_bad_or_taken_address_stops_huskd_naming_the_key() {
    let e = Huskd::start(
        HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
            .extra_config("[metrics]\naddress = \"localhost:9090\"\n"),
    )
    .err()
    .expect("huskd must refuse the address")
    .to_string();
    assert!(e.contains("metrics.address = \"localhost:9090\""), "{e}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = Huskd::start(
        HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
            .extra_config(&format!("[metrics]\naddress = \"{addr}\"\n")),
    )
    .err()
    .expect("huskd must fail on a taken address")
    .to_string();
    assert!(
        e.contains("metrics.address") && e.contains(&addr.to_string()),
        "{e}"
    );
}
