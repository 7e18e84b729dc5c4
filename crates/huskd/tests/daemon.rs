//! The daemon itself: Version, Status, every RPC served (bad requests named), socket permissions,
//! clean shutdown, restart with state kept, config errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use husk_test_support::busybox_image;
use k8s_cri::v1 as cri;
use tonic::Code;

#[tokio::test]
async fn version_status_and_bad_requests() {
    let h = huskd();
    let mut rt = h.runtime_client().await.unwrap();
    let v = rt
        .version(cri::VersionRequest {
            version: "v1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "husk");
    assert_eq!(v.runtime_api_version, "v1");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));

    let st = rt
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
    assert!(runtime.status, "{runtime:?}");
    let net = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    // handlers: the default listed under "" too; runc 1.1 makes rro mounts itself, for crun 1.8
    // husk stages them; user namespaces on both (husk makes the idmapped mounts)
    let handler = |name: &str| st.runtime_handlers.iter().find(|h| h.name == name).cloned();
    assert!(handler("").is_some(), "{:?}", st.runtime_handlers);
    for name in ["runc", "crun"] {
        let f = handler(name).unwrap().features.unwrap();
        assert!(f.recursive_read_only_mounts, "{name}");
        assert!(f.user_namespaces, "{name}");
    }
    assert!(st.features.as_ref().unwrap().supplemental_groups_policy);
    rt.update_runtime_config(cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: "10.244.0.0/24".into(),
            }),
        }),
    })
    .await
    .unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&st.info["config"]).unwrap();
    assert_eq!(cfg["root"], h.root_dir().display().to_string());

    // Every RPC is served: empty requests get InvalidArgument naming the missing field.
    let err = rt
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("container_id"), "{}", err.message());
    let d = rt
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    assert!(
        d.iter()
            .any(|m| m.name == "container_memory_working_set_bytes")
    );
    let err = rt.exec(cri::ExecRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("container_id"), "{}", err.message());
    let err = rt
        .port_forward(cri::PortForwardRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("pod_sandbox_id"),
        "{}",
        err.message()
    );
    let rc = rt
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        cri::CgroupDriver::Cgroupfs as i32
    );
}

#[tokio::test]
async fn runtime_not_ready_when_the_binary_is_missing() {
    let h = husk_test_support::Huskd::start(
        husk_test_support::HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
            .extra_config("default_runtime = \"ghost\"\n[runtimes.ghost]\npath = \"/nonexistent/ghost-runtime\"\n"),
    )
    .unwrap();
    let mut rt = h.runtime_client().await.unwrap();
    let st = rt
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let runtime = st
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    assert!(!runtime.status);
    assert!(runtime.message.contains("ghost-runtime"), "{runtime:?}");
}

#[tokio::test]
async fn socket_mode_clean_shutdown_and_restart_keep_images() {
    let reg = registry().await;
    let img = busybox_image(&["true"]).unwrap().build();
    push(&reg, "keep/me", "v1", &img).await;
    let mut h = huskd();
    let sock = h.socket_path();
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
    let name = format!("{}/keep/me:v1", reg.host());
    {
        let mut c = h.image_client().await.unwrap();
        pull(&mut c, &name).await.unwrap();
    }
    let st = h.stop().unwrap().expect("exit status");
    assert!(st.success(), "SIGTERM exits cleanly: {st:?}");
    assert!(!sock.exists(), "socket removed on shutdown");
    h.restart().unwrap();
    let mut c = h.image_client().await.unwrap();
    let s = status(&mut c, &name).await.expect("image survives restart");
    assert_eq!(s.id, img.image_id());
    assert!(h.log().contains("huskd serving"));
}

#[test]
fn bad_config_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown_key = 1\n", "unknown_key"),
        ("[registry]\nconfig_pth = \"/x\"\n", "config_pth"),
        ("root = \"relative/path\"\n", "root"),
        ("root = [\n", "config.toml"),
        ("default_runtime = \"nope\"\n", "nope"),
    ];
    for (text, want) in cases {
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_huskd"))
            .arg("--config")
            .arg(&cfg)
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{text:?}: {err}");
        assert!(
            err.contains(&cfg.display().to_string()),
            "names the file: {err}"
        );
    }
    // an explicit config file that does not exist is an error too
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_huskd"))
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}
