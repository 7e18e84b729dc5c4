//! The `/metrics` endpoint read by an independent implementation: Python's `prometheus_client`
//! scrapes it twice over HTTP, as a text 0.0.4 scraper (no `Accept`) and as Prometheus does
//! (`Accept: application/openmetrics-text…`), and parses each answer with its own parser (the
//! OpenMetrics one is strict: it rejects a malformed exposition, a missing `# EOF`, a unit
//! that is not the name's suffix). Both must carry the same families and samples.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use husk_telemetry::{Metrics, Operation, PullPhase, StateCounts};
use serde_json::Value;

const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROMETHEUS = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
              "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
out = {}
for key, accept, parse in [("text", None, parse_text), ("openmetrics", PROMETHEUS, parse_om)]:
    req = urllib.request.Request(sys.argv[1], headers={"Accept": accept} if accept else {})
    with opener.open(req) as r:
        ctype, body = r.headers["Content-Type"], r.read().decode()
    families = [
        {"name": f.name, "type": f.type, "unit": f.unit, "help": f.documentation,
         "samples": [{"name": s.name, "labels": s.labels, "value": s.value} for s in f.samples]}
        for f in parse(body)
    ]
    out[key] = {"content_type": ctype, "families": families}
print(json.dumps(out))
"#;

fn python_parses() -> bool {
    Command::new("python3")
        .args([
            "-c",
            "import prometheus_client.parser, prometheus_client.openmetrics.parser",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `name{sorted labels}` → value, with `le` spelled as a number (`1` and `1.0` alike).
fn samples(scrape: &Value) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for f in scrape["families"].as_array().expect("families") {
        for s in f["samples"].as_array().expect("samples") {
            let mut labels: Vec<String> = s["labels"]
                .as_object()
                .expect("labels")
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().expect("a label value");
                    match (k.as_str(), v.parse::<f64>()) {
                        ("le", Ok(le)) => format!("le={le}"),
                        _ => format!("{k}={v:?}"),
                    }
                })
                .collect();
            labels.sort();
            let name = s["name"].as_str().expect("a sample name");
            let value = s["value"].as_f64().expect("a value");
            out.insert(format!("{name}{{{}}}", labels.join(",")), value);
        }
    }
    out
}

/// family name → (type, unit, help).
fn families(scrape: &Value) -> BTreeMap<String, (String, String, String)> {
    scrape["families"]
        .as_array()
        .expect("families")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("name"), (s("type"), s("unit"), s("help")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_prometheus_client_parses_both_formats_alike() {
    if !python_parses() {
        husk_test_support::system_missing("python3 with the prometheus_client package");
        return;
    }
    let m = Arc::new(Metrics::new());
    m.record_rpc("Version", "OK", Duration::from_millis(2));
    m.record_rpc("RunPodSandbox", "DeadlineExceeded", Duration::from_secs(3));
    m.record_rpc("we\"ird\\na\nme", "Unknown", Duration::ZERO);
    m.record_pull_bytes(4096);
    m.record_pull(true, Duration::from_millis(700));
    m.record_oom_kill();
    m.record_operation(Operation::ContainerStart, Duration::from_millis(40), true);
    m.record_operation(
        Operation::ImagePull(PullPhase::Unpack),
        Duration::from_secs(2),
        false,
    );
    m.set_state_source(|| StateCounts {
        containers_running: 3,
        sandboxes_ready: 2,
        ..Default::default()
    });
    let ep = husk_telemetry::bind("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let url = format!("http://{}/metrics", ep.local_addr());
    let server = tokio::spawn(ep.serve(m));

    let out = tokio::process::Command::new("python3")
        .args(["-c", SCRAPE, &url])
        .output()
        .await
        .expect("run python3");
    server.abort();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("JSON from python");
    let (text, om) = (&parsed["text"], &parsed["openmetrics"]);
    assert_eq!(
        text["content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        om["content_type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );

    // The same families, typed alike; OpenMetrics declares the units.
    let (tf, of) = (families(text), families(om));
    let names = |f: &BTreeMap<String, (String, String, String)>| -> Vec<String> {
        f.keys().cloned().collect()
    };
    assert_eq!(names(&tf), names(&of));
    let want = [
        ("husk_grpc_requests", "counter", ""),
        ("husk_grpc_request_duration_seconds", "histogram", "seconds"),
        ("husk_image_pull_bytes", "counter", "bytes"),
        ("husk_image_pulls", "counter", ""),
        ("husk_image_pull_duration_seconds", "histogram", "seconds"),
        ("husk_container_oom_kills", "counter", ""),
        ("husk_operation_duration_seconds", "histogram", "seconds"),
        ("husk_operation_errors", "counter", ""),
        ("husk_containers", "gauge", ""),
        ("husk_pod_sandboxes", "gauge", ""),
        ("process_cpu_seconds", "counter", "seconds"),
        ("process_open_fds", "gauge", ""),
        ("process_resident_memory_bytes", "gauge", "bytes"),
        ("process_start_time_seconds", "gauge", "seconds"),
        ("process_virtual_memory_bytes", "gauge", "bytes"),
    ];
    assert_eq!(tf.len(), want.len(), "{tf:?}");
    for (name, kind, unit) in want {
        let (t, o) = (&tf[name], &of[name]);
        assert_eq!((t.0.as_str(), o.0.as_str()), (kind, kind), "{name}");
        assert_eq!(o.1, unit, "{name}");
        assert_eq!(t.2, o.2, "{name}: the same help");
        assert!(
            t.2.ends_with('.') && !t.2.ends_with(".."),
            "{name}: {}",
            t.2
        );
    }

    // The same samples; the process's own values move between the two scrapes.
    let (ts, os) = (samples(text), samples(om));
    let keys = |s: &BTreeMap<String, f64>| -> Vec<String> { s.keys().cloned().collect() };
    assert_eq!(keys(&ts), keys(&os));
    for (k, v) in &ts {
        if !k.starts_with("process_") {
            assert_eq!(os[k], *v, "{k}");
        }
    }
    for (series, value) in [
        (
            r#"husk_grpc_requests_total{code="OK",method="Version"}"#,
            1.0,
        ),
        (
            r#"husk_grpc_requests_total{code="Unknown",method="we\"ird\\na\nme"}"#,
            1.0,
        ),
        (
            r#"husk_grpc_request_duration_seconds_bucket{le=2.5,method="RunPodSandbox"}"#,
            0.0,
        ),
        (
            r#"husk_grpc_request_duration_seconds_bucket{le=5,method="RunPodSandbox"}"#,
            1.0,
        ),
        ("husk_image_pull_bytes_total{}", 4096.0),
        (r#"husk_image_pulls_total{result="failure"}"#, 0.0),
        (r#"husk_image_pulls_total{result="success"}"#, 1.0),
        ("husk_image_pull_duration_seconds_sum{}", 0.7),
        ("husk_container_oom_kills_total{}", 1.0),
        (
            r#"husk_operation_duration_seconds_count{operation="container_start"}"#,
            1.0,
        ),
        (
            r#"husk_operation_errors_total{operation="image_pull",phase="unpack"}"#,
            1.0,
        ),
        (r#"husk_containers{state="running"}"#, 3.0),
        (r#"husk_pod_sandboxes{state="ready"}"#, 2.0),
    ] {
        assert_eq!(ts.get(series), Some(&value), "{series} in {ts:#?}");
    }
    assert!(ts["process_resident_memory_bytes{}"] > 0.0);
    assert!(ts.contains_key("process_cpu_seconds_total{}"));
}
