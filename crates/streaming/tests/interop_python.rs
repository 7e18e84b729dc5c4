//! Interop: the Python `websockets` package as the client (skipped when it is missing, unless
//! `HUSK_REQUIRE_INTEROP=1`).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use husk_streaming::{Config, PortForwardRequest};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/ws_client.py");

fn available() -> bool {
    husk_test_support::interop::python_websockets()
}

async fn run(mode: &str, url: &url::Url, arg: Option<&str>) -> Value {
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(SCRIPT).arg(mode).arg(url.as_str());
    if let Some(a) = arg {
        cmd.arg(a);
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn python_websockets_exec_v5() {
    if !available() {
        return;
    }
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let out = run("exec-v5-echo", &url, None).await;
    assert_eq!(out["protocol"], "v5.channel.k8s.io");
    assert_eq!(out["first"], serde_json::json!([1, 0]));
    assert_eq!(out["channels"]["1"], "hello from python");
    assert_eq!(
        out["channels"]["3"],
        r#"{"metadata":{},"status":"Success"}"#
    );
    assert_eq!(out["close_code"], 1000);
}

#[tokio::test]
async fn python_websockets_exec_v4_base64_exit_code() {
    if !available() {
        return;
    }
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "7"], false, true, true, false))
        .unwrap();
    let out = run("exec-v4-base64", &url, None).await;
    assert_eq!(out["protocol"], "v4.base64.channel.k8s.io");
    assert_eq!(out["channels"]["1"], "out");
    assert_eq!(out["channels"]["2"], "err");
    let status: Value = serde_json::from_str(out["channels"]["3"].as_str().unwrap()).unwrap();
    assert_eq!(status["details"]["causes"][0]["message"], "7");
}

#[tokio::test]
async fn python_websockets_port_forward() {
    if !available() {
        return;
    }
    let (server, _) = start(Config::default()).await;
    let echo = echo_server().await;
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "p".into(),
            ports: vec![echo],
        })
        .unwrap();
    let out = run("portforward", &url, Some("echo me")).await;
    assert_eq!(out["data"], "echo me");
    assert_eq!(out["ports"]["0"], echo);
    assert_eq!(out["ports"]["1"], echo);
}

#[tokio::test]
async fn python_websockets_invalid_utf8_closes_1007() {
    if !available() {
        return;
    }
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["hang"], true, true, false, false))
        .unwrap();
    let out = run("bad-frame", &url, None).await;
    assert_eq!(out["close_code"], 1007);
}
