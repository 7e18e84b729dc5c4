//! `huskctl metrics` against a real `/metrics` endpoint (husk-telemetry's, without a daemon).

mod common;

use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

async fn huskctl(args: &[&str], env_url: Option<String>) -> Output {
    let mut c = common::huskctl_command();
    c.args(args);
    if let Some(u) = env_url {
        c.env("HUSK_METRICS_URL", u);
    }
    tokio::process::Command::from(c)
        .output()
        .await
        .expect("run huskctl")
}

fn stdout(o: &Output) -> String {
    common::text(&o.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_prints_and_filters_the_families() {
    let m = Arc::new(husk_telemetry::Metrics::new());
    m.record_rpc("Version", "OK", Duration::from_millis(3));
    m.record_pull_bytes(4096);
    m.set_state_source(|| husk_telemetry::StateCounts {
        containers_running: 2,
        ..Default::default()
    });
    let ep = husk_telemetry::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = format!("http://{}/metrics", ep.local_addr());
    let server = tokio::spawn(ep.serve(m));

    let out = huskctl(&["metrics", "--url", &url], None).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    for line in [
        "# TYPE husk_grpc_requests_total counter",
        "husk_grpc_requests_total{method=\"Version\",code=\"OK\"} 1",
        "# TYPE husk_grpc_request_duration_seconds histogram",
        "husk_image_pull_bytes_total 4096",
        "husk_containers{state=\"running\"} 2",
        "# TYPE process_resident_memory_bytes gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing from:\n{text}"
        );
    }

    // --filter keeps whole families; the URL may come from the environment.
    let out = huskctl(
        &[
            "metrics",
            "--filter",
            "husk_image_pull_",
            "--filter",
            "husk_containers",
        ],
        Some(url.clone()),
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("husk_image_pull_bytes_total 4096\n"),
        "{text}"
    );
    assert!(text.contains("husk_image_pull_duration_seconds_bucket{le=\"+Inf\"} 0\n"));
    assert!(text.contains("husk_containers{state=\"running\"} 2\n"));
    assert!(!text.contains("husk_grpc_"), "{text}");
    assert!(!text.contains("process_"), "{text}");
    assert!(!text.contains("husk_image_pulls_total"), "{text}");

    // A 404 is an error naming the status.
    let out = huskctl(
        &["metrics", "--url", &url.replace("/metrics", "/nope")],
        None,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{out:?}"
    );
    server.abort();
}

#[tokio::test]
async fn metrics_without_an_endpoint_says_how_to_get_one() {
    let port = husk_test_support::free_port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let out = huskctl(&["metrics", "--url", &url], None).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("huskctl: cannot fetch metrics from {url}")),
        "{err}"
    );
    assert!(err.contains("[metrics] address"), "{err}");
}
