//! A pod's own user namespace (CRI `userns_options` mode POD): the rules the kubelet's
//! conformance suite checks, and making it. huskd is multi-threaded and so cannot unshare a user
//! namespace itself: `husk-monitor userns` does, huskd writes its uid/gid maps, the monitor then
//! makes the pod's network/IPC/UTS namespaces inside it (so they belong to it, and containers can
//! mount `/sys` and `/proc`), and huskd pins all of them from `/proc/<pid>/ns/*`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use husk_monitor::userns::UsernsRequest;
use husk_sys::ns::{self, PinRequest};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::{IdMapping, NamespaceMode, PodConfig, UsernsConfig};
use crate::error::{EngineError, Result, blocking};

/// How long making the namespaces may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a pod's user namespace request (containerd's and CRI-O's rules).
pub(crate) fn validate(cfg: &PodConfig) -> Result<()> {
    let Some(u) = &cfg.userns else {
        return Ok(());
    };
    let invalid = |m: String| Err(EngineError::Invalid(m));
    match u.mode {
        NamespaceMode::Node => {
            if !u.uids.is_empty() || !u.gids.is_empty() {
                return invalid("user namespace mode NODE takes no uid/gid mappings".into());
            }
            return Ok(());
        }
        NamespaceMode::Container | NamespaceMode::Target => {
            return invalid(format!(
                "user namespace mode {:?} is not supported (only POD and NODE)",
                u.mode
            ));
        }
        NamespaceMode::Pod => {}
    }
    for (what, maps) in [("uid", &u.uids), ("gid", &u.gids)] {
        let [m] = maps.as_slice() else {
            return invalid(format!(
                "user namespace: exactly one {what} mapping is supported, got {}",
                maps.len()
            ));
        };
        if m.container_id != 0 {
            return invalid(format!(
                "user namespace: container {what} 0 must be mapped (mapping starts at {})",
                m.container_id
            ));
        }
        if m.length == 0 || m.host_id.checked_add(m.length).is_none() {
            return invalid(format!(
                "user namespace: {what} mapping {}:{}:{} is out of range",
                m.container_id, m.host_id, m.length
            ));
        }
    }
    for (what, mode) in [
        ("network", cfg.namespaces.network),
        ("pid", cfg.namespaces.pid),
        ("ipc", cfg.namespaces.ipc),
    ] {
        if mode == NamespaceMode::Node {
            return invalid(format!(
                "a pod with its own user namespace cannot use the host's {what} namespace"
            ));
        }
    }
    Ok(())
}

/// The maps of a pod that has its own user namespace.
pub(crate) fn pod_maps(cfg: &PodConfig) -> Option<&UsernsConfig> {
    cfg.userns.as_ref().filter(|u| u.mode == NamespaceMode::Pod)
}

fn map_text(maps: &[IdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// Makes the user namespace at `user_pin` and, inside it, the namespaces `req` names; pins
/// them all. On error nothing stays pinned. The helper works in `pod_dir` (how the sweep knows
/// one an earlier huskd left behind).
pub(crate) async fn create_pinned(
    monitor_bin: &Path,
    pod_dir: &Path,
    user_pin: &Path,
    maps: &UsernsConfig,
    req: &PinRequest,
) -> Result<()> {
    let r = tokio::time::timeout(TIMEOUT, create(monitor_bin, pod_dir, user_pin, maps, req)).await;
    let r = r.unwrap_or_else(|_| {
        Err(EngineError::Timeout {
            what: "making the pod's user namespace".into(),
            secs: TIMEOUT.as_secs(),
        })
    });
    if r.is_err() {
        let pins = all_pins(user_pin, req);
        let _ = blocking(move || {
            for p in &pins {
                let _ = ns::unpin(p);
            }
            Ok(())
        })
        .await;
    }
    r
}

fn all_pins(user_pin: &Path, req: &PinRequest) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = [&req.net, &req.ipc, &req.uts]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    v.push(user_pin.to_path_buf());
    v
}

async fn create(
    monitor_bin: &Path,
    pod_dir: &Path,
    user_pin: &Path,
    maps: &UsernsConfig,
    req: &PinRequest,
) -> Result<()> {
    let mon = |m: String| EngineError::Monitor(format!("husk-monitor userns: {m}"));
    let mut child = tokio::process::Command::new(monitor_bin)
        .arg("userns")
        .current_dir(pod_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| EngineError::io("spawn", monitor_bin, e))?;
    let pid = child.id().ok_or_else(|| mon("exited at once".into()))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(mon("no pipes".into()));
    };
    let mut lines = BufReader::new(stdout).lines();
    let request = UsernsRequest {
        net: req.net.is_some(),
        ipc: req.ipc.is_some(),
        uts: req.uts.is_some(),
        hostname: req.hostname.clone(),
        sysctls: req.sysctls.clone(),
        loopback_up: req.loopback_up,
    };
    let mut line = serde_json::to_string(&request).map_err(|e| mon(e.to_string()))?;
    line.push('\n');
    let io = |e: std::io::Error| mon(e.to_string());
    stdin.write_all(line.as_bytes()).await.map_err(io)?;
    expect(&mut lines, "ready").await?;

    let (uid_map, gid_map) = (map_text(&maps.uids), map_text(&maps.gids));
    blocking(move || {
        for (file, text) in [("uid_map", uid_map), ("gid_map", gid_map)] {
            let p = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&p, text).map_err(|e| EngineError::io("write", &p, e))?;
        }
        Ok(())
    })
    .await?;
    stdin.write_all(b"go\n").await.map_err(io)?;
    expect(&mut lines, "done").await?;

    let mut pins: Vec<(&'static str, PathBuf)> = vec![("user", user_pin.to_path_buf())];
    for (kind, p) in [("net", &req.net), ("ipc", &req.ipc), ("uts", &req.uts)] {
        if let Some(p) = p {
            pins.push((kind, p.clone()));
        }
    }
    blocking(move || {
        for (kind, target) in &pins {
            let src = PathBuf::from(format!("/proc/{pid}/ns/{kind}"));
            ns::pin_existing(&src, target).map_err(|e| EngineError::io("pin", target, e))?;
        }
        Ok(())
    })
    .await?;
    drop(stdin);
    let _ = child.wait().await;
    Ok(())
}

async fn expect(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: &str,
) -> Result<()> {
    match lines.next_line().await {
        Ok(Some(l)) if l == want => Ok(()),
        Ok(Some(l)) => Err(EngineError::Monitor(format!(
            "husk-monitor userns: {}",
            l.strip_prefix("error: ").unwrap_or(&l)
        ))),
        Ok(None) => Err(EngineError::Monitor(format!(
            "husk-monitor userns exited before {want:?}"
        ))),
        Err(e) => Err(EngineError::Monitor(format!("husk-monitor userns: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(mode: NamespaceMode, uids: Vec<IdMapping>, gids: Vec<IdMapping>) -> PodConfig {
        PodConfig {
            userns: Some(UsernsConfig { mode, uids, gids }),
            ..Default::default()
        }
    }

    fn m(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            container_id,
            host_id,
            length,
        }
    }

    #[test]
    fn the_rules_of_the_conformance_suite() {
        let ok = vec![m(0, 1000, 100_000)];
        assert!(validate(&pod(NamespaceMode::Pod, ok.clone(), ok.clone())).is_ok());
        assert!(validate(&pod(NamespaceMode::Node, vec![], vec![])).is_ok());
        assert!(validate(&PodConfig::default()).is_ok());
        let two = vec![m(0, 1000, 100_000), m(0, 2000, 100_000)];
        let bad = [
            pod(NamespaceMode::Pod, two.clone(), two),
            pod(NamespaceMode::Pod, vec![m(1, 1000, 100_000)], ok.clone()),
            pod(NamespaceMode::Pod, ok.clone(), vec![]),
            pod(NamespaceMode::Pod, vec![m(0, u32::MAX, 2)], ok.clone()),
            pod(NamespaceMode::Pod, vec![m(0, 1000, 0)], ok.clone()),
            pod(NamespaceMode::Container, vec![], vec![]),
            pod(NamespaceMode::Target, vec![], vec![]),
            pod(NamespaceMode::Node, ok.clone(), ok.clone()),
        ];
        for p in bad {
            let e = validate(&p).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidArgument, "{e}");
        }
        let mut host_net = pod(NamespaceMode::Pod, ok.clone(), ok);
        host_net.namespaces.network = NamespaceMode::Node;
        assert!(validate(&host_net).is_err());
    }

    #[test]
    fn maps_are_written_as_the_kernel_reads_them() {
        assert_eq!(
            map_text(&[m(0, 1000, 65536), m(65536, 5000, 1)]),
            "0 1000 65536\n65536 5000 1\n"
        );
    }
}
