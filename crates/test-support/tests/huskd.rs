//! `Huskd` against a stand-in daemon (a python script that reads `--config`, binds the socket
//! and waits for SIGTERM): temp dirs, config, readiness, stop, kill, restart and cleanup.

use std::path::PathBuf;

use anyhow::Result;
use husk_test_support::{Huskd, HuskdOptions};

const FAKE: &str = r#"#!/usr/bin/env python3
import os, signal, socket, sys, time
cfg = sys.argv[sys.argv.index("--config") + 1]
print("fake huskd", " ".join(sys.argv[1:]), flush=True)
sock = [l.split("=", 1)[1].strip().strip('"') for l in open(cfg) if l.startswith("socket")][0]
if os.path.exists(sock):
    os.unlink(sock)
s = socket.socket(socket.AF_UNIX)
s.bind(sock)
s.listen(16)
signal.signal(signal.SIGTERM, lambda *_: (print("got SIGTERM", flush=True), sys.exit(0)))
while True:
    time.sleep(1)
"#;

fn fake_bin(dir: &std::path::Path) -> Result<Option<PathBuf>> {
    if !husk_test_support::require_system("python3") {
        return Ok(None);
    }
    let p = dir.join("fake-huskd");
    husk_test_support::write_executable(&p, FAKE.as_bytes())?;
    Ok(Some(p))
}

#[tokio::test]
async fn start_stop_restart_and_cleanup() -> Result<()> {
    let bins = tempfile::tempdir()?;
    let Some(bin) = fake_bin(bins.path())? else {
        return Ok(());
    };
    let mut d = Huskd::start(
        HuskdOptions::new(&bin)
            .extra_config("default_runtime = \"crun\"\n[cni]\nconf_dir = \"x\"")
            .extra_config("[registry]\nmax_concurrent_downloads = 2"),
    )?;
    let dir = d.dir().to_path_buf();
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(d.config_path())?)?;
    let socket = d.socket_path().to_string_lossy().into_owned();
    assert_eq!(config["socket"].as_str(), Some(socket.as_str()));
    assert_eq!(config["default_runtime"].as_str(), Some("crun"));
    assert_eq!(config["cni"]["conf_dir"].as_str(), Some("x"));
    let certs = d.certs_dir().to_string_lossy().into_owned();
    assert_eq!(
        config["registry"]["config_path"].as_str(),
        Some(certs.as_str())
    );
    assert_eq!(
        config["registry"]["max_concurrent_downloads"].as_integer(),
        Some(2)
    );
    assert!(d.certs_dir().is_dir() && d.root_dir().is_dir() && d.cni_dir().is_dir());
    d.write_hosts_toml("127.0.0.1:5000", "server = \"http://127.0.0.1:5000\"\n")?;
    assert!(d.certs_dir().join("127.0.0.1:5000/hosts.toml").exists());
    assert!(d.log().contains("--log-level debug"));

    // The connector reaches the socket (the stand-in speaks no HTTP/2, so no RPC is made).
    let _client = d.image_client().await?;

    let first = d.pid();
    d.restart()?;
    assert_ne!(first, d.pid());
    assert!(d.log().contains("got SIGTERM"));
    assert!(d.stop()?.is_some_and(|s| s.success()));
    d.restart()?;
    assert!(d.kill()?.is_some_and(|s| !s.success()));
    assert!(d.processes().is_empty());
    d.restart()?;
    drop(d);
    assert!(!dir.exists(), "temp dir removed on drop");
    Ok(())
}

#[test]
fn start_failure_reports_and_cleans_up() {
    let err = Huskd::start(HuskdOptions::new("/nonexistent/huskd")).err();
    assert!(err.is_some_and(|e| e.to_string().contains("spawn /nonexistent/huskd")));
}
