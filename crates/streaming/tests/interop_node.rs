//! Interop: the npm `spdy-transport` package as the SPDY/3.1 client. It is installed with npm
//! into the target dir on first use; without node/npm the tests skip, unless
//! `HUSK_REQUIRE_INTEROP=1`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::*;
use husk_streaming::{Config, PortForwardRequest};
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/spdy_client.js");

/// The directory whose `node_modules` holds spdy-transport, installing it once.
fn spdy_transport() -> Option<PathBuf> {
    husk_test_support::interop::spdy_transport(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")))
}

async fn run(dir: &PathBuf, mode: &str, url: &url::Url, args: &[&str]) -> Value {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(SCRIPT).arg(mode).arg(url.as_str()).args(args);
    cmd.env("SPDY_TRANSPORT", dir);
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), cmd.output())
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
async fn spdy_transport_exec_echo() {
    let Some(dir) = spdy_transport() else { return };
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let out = run(&dir, "exec-echo", &url, &["hello from node"]).await;
    assert_eq!(out["protocol"], "v4.channel.k8s.io");
    assert_eq!(out["stdout"], "hello from node");
    assert_eq!(out["status"], r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn spdy_transport_exec_exit_code() {
    let Some(dir) = spdy_transport() else { return };
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["exit", "5"], false, true, true, false))
        .unwrap();
    let out = run(&dir, "exec-exit", &url, &[]).await;
    assert_eq!(out["stdout"], "out");
    assert_eq!(out["stderr"], "err");
    assert_eq!(out["status"]["details"]["causes"][0]["message"], "5");
}

#[tokio::test]
async fn spdy_transport_exec_32_megabytes_with_flow_control() {
    let Some(dir) = spdy_transport() else { return };
    let (server, _) = start(Config::default()).await;
    let url = server
        .get_exec(exec_req(&["echo"], true, true, false, false))
        .unwrap();
    let out = run(&dir, "exec-big", &url, &["32"]).await;
    assert_eq!(out["bytes"], 32 << 20);
    assert_eq!(out["sent"], out["received"]);
    assert_eq!(out["status"], r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn spdy_transport_port_forward() {
    let Some(dir) = spdy_transport() else { return };
    let (server, _) = start(Config::default()).await;
    let echo = echo_server().await;
    let url = server
        .get_port_forward(PortForwardRequest {
            pod_id: "p".into(),
            ports: vec![],
        })
        .unwrap();
    let out = run(
        &dir,
        "portforward",
        &url,
        &["round trip", &echo.to_string()],
    )
    .await;
    assert_eq!(out["protocol"], "portforward.k8s.io");
    assert_eq!(out["data"], "round trip");
    assert_eq!(out["error"], "");
}
