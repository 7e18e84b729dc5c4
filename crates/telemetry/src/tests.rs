//! The exposition as a whole: golden texts in both formats, escaping, the series cap, the
//! scrape-time families and the process-wide registry.

use super::*;

const GOLDEN_TEXT: &str = r#"# HELP husk_grpc_requests_total gRPC requests handled, by method and gRPC status code.
# TYPE husk_grpc_requests_total counter
husk_grpc_requests_total{method="ContainerStatus",code="NotFound"} 1
husk_grpc_requests_total{method="Version",code="OK"} 2
# HELP husk_grpc_request_duration_seconds Time from a gRPC request's arrival to the end of its response, by method.
# TYPE husk_grpc_request_duration_seconds histogram
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.0005"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.001"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.0025"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.005"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.01"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.025"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.05"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.1"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.25"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="0.5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="1"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="2.5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="5"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="10"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="30"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="60"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="120"} 0
husk_grpc_request_duration_seconds_bucket{method="ContainerStatus",le="+Inf"} 1
husk_grpc_request_duration_seconds_sum{method="ContainerStatus"} 300.0
husk_grpc_request_duration_seconds_count{method="ContainerStatus"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.0005"} 0
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.001"} 0
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.0025"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.005"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.01"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.025"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.05"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.1"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.25"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="0.5"} 1
husk_grpc_request_duration_seconds_bucket{method="Version",le="1"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="2.5"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="5"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="10"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="30"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="60"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="120"} 2
husk_grpc_request_duration_seconds_bucket{method="Version",le="+Inf"} 2
husk_grpc_request_duration_seconds_sum{method="Version"} 1.002
husk_grpc_request_duration_seconds_count{method="Version"} 2
# HELP husk_image_pull_bytes_total Bytes received from registries by image pulls.
# TYPE husk_image_pull_bytes_total counter
husk_image_pull_bytes_total 1536
# HELP husk_image_pulls_total Image pulls, by result.
# TYPE husk_image_pulls_total counter
husk_image_pulls_total{result="failure"} 1
husk_image_pulls_total{result="success"} 1
# HELP husk_image_pull_duration_seconds Duration of image pulls, successful or not.
# TYPE husk_image_pull_duration_seconds histogram
husk_image_pull_duration_seconds_bucket{le="0.1"} 0
husk_image_pull_duration_seconds_bucket{le="0.25"} 1
husk_image_pull_duration_seconds_bucket{le="0.5"} 1
husk_image_pull_duration_seconds_bucket{le="1"} 1
husk_image_pull_duration_seconds_bucket{le="2.5"} 1
husk_image_pull_duration_seconds_bucket{le="5"} 1
husk_image_pull_duration_seconds_bucket{le="10"} 1
husk_image_pull_duration_seconds_bucket{le="30"} 1
husk_image_pull_duration_seconds_bucket{le="60"} 1
husk_image_pull_duration_seconds_bucket{le="120"} 2
husk_image_pull_duration_seconds_bucket{le="300"} 2
husk_image_pull_duration_seconds_bucket{le="600"} 2
husk_image_pull_duration_seconds_bucket{le="1800"} 2
husk_image_pull_duration_seconds_bucket{le="+Inf"} 2
husk_image_pull_duration_seconds_sum 120.25
husk_image_pull_duration_seconds_count 2
# HELP husk_container_oom_kills_total Containers that exited killed by the OOM killer.
# TYPE husk_container_oom_kills_total counter
husk_container_oom_kills_total 1
# HELP husk_operation_duration_seconds Duration of CRI lifecycle steps, successful or not, by operation (and phase).
# TYPE husk_operation_duration_seconds histogram
# HELP husk_operation_errors_total CRI lifecycle steps that failed, by operation (and phase).
# TYPE husk_operation_errors_total counter
# HELP husk_containers Containers, by state.
# TYPE husk_containers gauge
husk_containers{state="created"} 1
husk_containers{state="exited"} 3
husk_containers{state="running"} 2
husk_containers{state="unknown"} 0
# HELP husk_pod_sandboxes Pod sandboxes, by state.
# TYPE husk_pod_sandboxes gauge
husk_pod_sandboxes{state="notready"} 1
husk_pod_sandboxes{state="ready"} 4
"#;

/// What [`GOLDEN_TEXT`] records.
fn recorded() -> Metrics {
    let m = Metrics::new();
    m.record_rpc("Version", "OK", Duration::from_millis(2));
    m.record_rpc("Version", "OK", Duration::from_secs(1));
    m.record_rpc("ContainerStatus", "NotFound", Duration::from_secs(300));
    m.record_pull_bytes(1024);
    m.record_pull_bytes(512);
    m.record_pull(true, Duration::from_millis(250));
    m.record_pull(false, Duration::from_secs(120));
    m.record_oom_kill();
    m.set_state_source(|| StateCounts {
        containers_created: 1,
        containers_running: 2,
        containers_exited: 3,
        containers_unknown: 0,
        sandboxes_ready: 4,
        sandboxes_notready: 1,
    });
    m
}

#[test]
fn text_exposition_matches_the_golden_text() {
    let text = recorded().render_with(None);
    assert_eq!(text, GOLDEN_TEXT, "got:\n{text}");
}

#[test]
fn openmetrics_exposition_has_the_same_samples() {
    let m = recorded();
    let om = m.render_as(Format::OpenMetrics, None);
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    // Counters are named without `_total` in the metadata, units are declared.
    for meta in [
        "# HELP husk_grpc_requests gRPC requests handled, by method and gRPC status code.\n",
        "# TYPE husk_grpc_requests counter\n",
        "# TYPE husk_grpc_request_duration_seconds histogram\n",
        "# UNIT husk_grpc_request_duration_seconds seconds\n",
        "# TYPE husk_image_pull_bytes counter\n# UNIT husk_image_pull_bytes bytes\n",
        "# TYPE husk_image_pulls counter\n",
        "# TYPE husk_container_oom_kills counter\n",
        "# TYPE husk_containers gauge\n",
    ] {
        assert!(om.contains(meta), "{meta:?} missing from:\n{om}");
    }
    // Sample for sample the same series and values, whatever the float spelling and the
    // label order (the OpenMetrics encoder writes `le` first).
    let samples = |t: &str| -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = t
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
                let mut labels: Vec<String> = labels
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .map(|l| match l.strip_prefix("le=") {
                        // `le="1"` in text 0.0.4 (as Go writes it), `le="1.0"` in OpenMetrics.
                        Some(le) => {
                            let le: f64 = le.trim_matches('"').parse().expect("a float le");
                            format!("le={le}")
                        }
                        None => l.to_string(),
                    })
                    .collect();
                labels.sort();
                let series = format!("{name}{{{}}}", labels.join(","));
                (series, value.parse().expect("a float value"))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let text = m.render_with(None);
    assert_eq!(samples(&om), samples(&text));
    assert_eq!(samples(&text).len(), 68);
}

#[test]
fn operations_are_labelled_by_step_and_phase() {
    let m = Metrics::new();
    m.record_operation(Operation::ContainerStart, Duration::from_millis(40), true);
    m.record_operation(Operation::ContainerStart, Duration::from_millis(3), false);
    let pull = Operation::ImagePull(PullPhase::Download);
    m.record_operation(pull, Duration::from_secs(7), true);
    let text = m.render_with(None);
    for line in [
        "husk_operation_duration_seconds_bucket{operation=\"container_start\",le=\"0.005\"} 1\n",
        "husk_operation_duration_seconds_bucket{operation=\"container_start\",le=\"0.05\"} 2\n",
        "husk_operation_duration_seconds_count{operation=\"container_start\"} 2\n",
        "husk_operation_duration_seconds_bucket{operation=\"image_pull\",phase=\"download\",le=\"5\"} 0\n",
        "husk_operation_duration_seconds_bucket{operation=\"image_pull\",phase=\"download\",le=\"10\"} 1\n",
        "husk_operation_duration_seconds_sum{operation=\"image_pull\",phase=\"download\"} 7.0\n",
        "husk_operation_errors_total{operation=\"container_start\"} 1\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("husk_operation_errors_total{operation=\"image_pull\""),
        "{text}"
    );
    let om = m.render_as(Format::OpenMetrics, None);
    assert!(
        om.contains("# TYPE husk_operation_errors counter\n"),
        "{om}"
    );
    assert!(
        om.contains(
            "husk_operation_duration_seconds_count{operation=\"image_pull\",phase=\"download\"} 1\n"
        ),
        "{om}"
    );
    let names: Vec<_> = Operation::ALL
        .iter()
        .map(|o| (o.name(), o.phase()))
        .collect();
    assert_eq!(names[0], ("sandbox_network_setup", None));
    assert_eq!(names[8], ("image_pull", Some("unpack")));
}

#[test]
fn label_values_are_escaped_in_series() {
    let m = Metrics::new();
    m.record_rpc("we\"ird\\na\nme", "OK", Duration::ZERO);
    for format in [Format::Text, Format::OpenMetrics] {
        let text = m.render_as(format, None);
        assert!(
            text.contains(
                "husk_grpc_requests_total{method=\"we\\\"ird\\\\na\\nme\",code=\"OK\"} 1\n"
            ),
            "{text}"
        );
    }
}

#[test]
fn series_are_capped() {
    let m = Metrics::new();
    for i in 0..MAX_SERIES + 10 {
        m.record_rpc(&format!("M{i}"), "Unimplemented", Duration::ZERO);
    }
    m.record_rpc("M0", "Unimplemented", Duration::ZERO);
    assert_eq!(m.rpc_requests.len(), MAX_SERIES);
    assert_eq!(m.rpc_durations.len(), MAX_SERIES);
    let text = m.render_with(None);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("husk_grpc_requests_total{"))
            .count(),
        MAX_SERIES
    );
    assert!(text.contains("husk_grpc_requests_total{method=\"M0\",code=\"Unimplemented\"} 2\n"));
    assert!(!text.contains("method=\"M1009\""), "{text}");
}

#[test]
fn without_a_state_source_there_are_no_gauges_and_process_stats_render() {
    let m = Metrics::new();
    let text = m.render();
    assert!(!text.contains("husk_containers"), "{text}");
    for family in [
        "process_start_time_seconds",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_virtual_memory_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family}: {text}"
        );
    }
    let om = m.render_as(Format::OpenMetrics, Some(&ProcessStats::read()));
    for meta in [
        "# TYPE process_cpu_seconds counter\n# UNIT process_cpu_seconds seconds\n",
        "# TYPE process_start_time_seconds gauge\n# UNIT process_start_time_seconds seconds\n",
        "# TYPE process_open_fds gauge\nprocess_open_fds ",
    ] {
        assert!(om.contains(meta), "{meta:?} missing from:\n{om}");
    }
    assert!(om.contains("\nprocess_cpu_seconds_total "), "{om}");
    assert!(om.ends_with("\n# EOF\n"), "{om}");
}

#[test]
fn process_families_keep_their_names_and_help() {
    let p = ProcessStats {
        start_time_seconds: Some(1_700_000_000.5),
        cpu_seconds: Some(1.25),
        resident_memory_bytes: Some(4096),
        virtual_memory_bytes: Some(8192),
        open_fds: Some(9),
    };
    let text = Metrics::new().render_with(Some(&p));
    let process = &text[text.find("# HELP process_").expect("process families")..];
    assert_eq!(
        process,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
         # TYPE process_cpu_seconds_total counter\n\
         process_cpu_seconds_total 1.25\n\
         # HELP process_open_fds Number of open file descriptors.\n\
         # TYPE process_open_fds gauge\n\
         process_open_fds 9\n\
         # HELP process_resident_memory_bytes Resident memory size in bytes.\n\
         # TYPE process_resident_memory_bytes gauge\n\
         process_resident_memory_bytes 4096\n\
         # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n\
         # TYPE process_start_time_seconds gauge\n\
         process_start_time_seconds 1700000000.5\n\
         # HELP process_virtual_memory_bytes Virtual memory size in bytes.\n\
         # TYPE process_virtual_memory_bytes gauge\n\
         process_virtual_memory_bytes 8192\n"
    );
}

#[test]
fn global_recording_is_a_no_op_until_installed() {
    // The only test touching the process-wide registry.
    record_rpc("Version", "OK", Duration::ZERO);
    record_pull_bytes(10);
    record_oom_kill();
    drop(pull_timer());
    record_operation(Operation::ExecSync, Duration::ZERO, false);
    drop(operation_timer(Operation::ContainerCreate));
    assert!(global().is_none());
    let m = install();
    assert!(Arc::ptr_eq(&m, &install()));
    record_rpc("Version", "OK", Duration::ZERO);
    record_pull_bytes(10);
    record_oom_kill();
    drop(pull_timer());
    pull_timer().succeeded();
    operation_timer(Operation::ContainerCreate).succeeded();
    drop(operation_timer(Operation::ContainerCreate));
    let ok = futures_lite_block_on(timed(Operation::ExecSync, async { Ok::<_, ()>(1) }));
    assert_eq!(ok, Ok(1));
    let err = futures_lite_block_on(timed(Operation::ExecSync, async { Err::<(), _>("no") }));
    assert_eq!(err, Err("no"));
    let text = m.render_with(None);
    for line in [
        "husk_grpc_requests_total{method=\"Version\",code=\"OK\"} 1\n",
        "husk_image_pull_bytes_total 10\n",
        "husk_container_oom_kills_total 1\n",
        "husk_image_pulls_total{result=\"failure\"} 1\n",
        "husk_image_pulls_total{result=\"success\"} 1\n",
        "husk_image_pull_duration_seconds_count 2\n",
        "husk_operation_duration_seconds_count{operation=\"container_create\"} 2\n",
        "husk_operation_errors_total{operation=\"container_create\"} 1\n",
        "husk_operation_duration_seconds_count{operation=\"exec_sync\"} 2\n",
        "husk_operation_errors_total{operation=\"exec_sync\"} 1\n",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
}

/// Runs a future that never waits (the ones above) to completion on this thread.
fn futures_lite_block_on<F: std::future::Future>(fut: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(fut)
}
