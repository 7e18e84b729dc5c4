//! Pod networking through the real CNI plugins (bridge + host-local + portmap): IPs in status,
//! pod-to-pod and host-to-pod traffic, host ports, a failing plugin, a config that appears after
//! start, and create/remove loops that leave nothing behind. Each test uses its own bridge and
//! subnet; nothing routes off the machine (no masquerade, pods get no default route).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use common::*;
use k8s_cri::v1 as cri;
use tonic::Code;

/// A test network: its bridge, subnet, host-local data dir. The bridge goes on drop.
struct TestNet {
    name: String,
    bridge: String,
    prefix: String,
    data_dir: tempfile::TempDir,
}

impl TestNet {
    fn new() -> TestNet {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = (std::process::id() % 200) * 8 + N.fetch_add(1, Ordering::Relaxed) % 8;
        TestNet {
            name: format!("husk-test-{n}"),
            bridge: format!("hkt{n}"),
            prefix: format!("10.{}.{}", 100 + n / 250, n % 250),
            data_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn conflist(&self) -> String {
        format!(
            r#"{{"cniVersion": "1.0.0", "name": "{name}", "plugins": [
                {{"type": "bridge", "bridge": "{br}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
                  "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{p}.0/24"}}]], "dataDir": "{dd}"}}}},
                {{"type": "portmap", "snat": false, "capabilities": {{"portMappings": true}}}}
            ]}}"#,
            name = self.name,
            br = self.bridge,
            p = self.prefix,
            dd = self.data_dir.path().display()
        )
    }

    fn install(&self, h: &husk_test_support::Huskd) {
        let dir = h.cni_dir().join("net.d");
        let _ = std::fs::remove_file(dir.join("99-loopback.conflist"));
        std::fs::write(dir.join("10-test.conflist"), self.conflist()).unwrap();
    }

    /// IP reservation files host-local keeps (one per allocated IP).
    fn reservations(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir.path().join(&self.name))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn veths(&self) -> usize {
        let out = Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    fn iptables_mentions(&self) -> usize {
        let out = Command::new("iptables-save").output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.name))
            .count()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// A plain HTTP/1.0 GET from the host (busybox's static wget crashes in the host's NSS setup).
fn http_get(addr: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &addr.parse().unwrap(),
        std::time::Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or("").to_string(),
        ));
    }
    Ok(body.to_string())
}

async fn net_env() -> (Env, TestNet) {
    let env = Env::new().await;
    let net = TestNet::new();
    net.install(&env.h);
    (env, net)
}

async fn pod_ip(env: &mut Env, pod: &str) -> String {
    env.rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip
}

/// A pod serving `index.html` with busybox httpd on `port`; returns (pod, container).
async fn web_pod(env: &mut Env, name: &str, port: u16, host_port: Option<u16>) -> (String, String) {
    let mut pc = env.pod_config(name);
    if let Some(hp) = host_port {
        pc.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: port as i32,
            host_port: hp as i32,
            host_ip: String::new(),
        }];
    }
    let pod = env.run_pod(pc.clone(), "").await.unwrap();
    let cmd = format!(
        "mkdir -p /www && echo hello-from-{name} > /www/index.html && exec httpd -f -p {port} -h /www"
    );
    let c = env
        .create(&pod, container_config("web", &["sh", "-c", &cmd]), &pc)
        .await
        .unwrap();
    env.start(&c).await.unwrap();
    (pod, c)
}

#[tokio::test]
async fn pods_get_ips_and_reach_each_other_and_the_host_reaches_them() {
    let (mut env, net) = net_env().await;
    let (pod_a, _) = web_pod(&mut env, "a", 8080, None).await;
    let ip_a = pod_ip(&mut env, &pod_a).await;
    assert!(
        ip_a.starts_with(&format!("{}.", net.prefix)),
        "{ip_a} in {}.0/24",
        net.prefix
    );
    let (_, client) = env.run("b", "", &["sleep", "1000"]).await;
    // pod → pod
    let mut body = Vec::new();
    for _ in 0..30 {
        let r = env
            .exec(
                &client,
                &["wget", "-qO-", &format!("http://{ip_a}:8080/")],
                5,
            )
            .await
            .unwrap();
        if r.exit_code == 0 {
            body = r.stdout;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(String::from_utf8_lossy(&body), "hello-from-a\n");
    // host → pod
    assert_eq!(http_get(&format!("{ip_a}:8080")).unwrap(), "hello-from-a\n");
    assert_eq!(net.reservations().len(), 2);
    env.teardown().await;
    assert_eq!(
        net.reservations(),
        Vec::<String>::new(),
        "IPs back in the pool"
    );
    assert_eq!(net.veths(), 0, "no veth left");
}

#[tokio::test]
async fn host_port_mapping() {
    let (mut env, net) = net_env().await;
    let host_port = 20000 + (std::process::id() % 20000) as u16;
    let (_, _) = web_pod(&mut env, "hp", 8080, Some(host_port)).await;
    // The host's address on the pod bridge (the gateway) is a local address: portmap's DNAT
    // for locally generated traffic applies.
    let gw = format!("{}.1", net.prefix);
    let mut body = String::new();
    for _ in 0..30 {
        if let Ok(b) = http_get(&format!("{gw}:{host_port}")) {
            body = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(body, "hello-from-hp\n");
    assert!(
        net.iptables_mentions() > 0,
        "portmap rules exist while the pod runs"
    );
    env.teardown().await;
    assert_eq!(net.iptables_mentions(), 0, "portmap rules removed");
}

#[tokio::test]
async fn a_failing_plugin_fails_the_pod_and_leaves_nothing() {
    let plugins = tempfile::tempdir().unwrap();
    let script = plugins.path().join("husk-fail");
    std::fs::write(
        &script,
        "#!/bin/sh\nif [ \"$CNI_COMMAND\" = VERSION ]; then echo '{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}'; exit 0; fi\n\
         if [ \"$CNI_COMMAND\" = DEL ]; then exit 0; fi\n\
         echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"no route to nowhere\",\"details\":\"test plugin says no\"}'\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let h = husk_test_support::Huskd::start(
        husk_test_support::HuskdOptions::new(env!("CARGO_BIN_EXE_huskd")).extra_config(&format!(
            "[cni]\nbin_dirs = [\"{}\", \"/usr/lib/cni\"]\n",
            plugins.path().display()
        )),
    )
    .unwrap();
    std::fs::write(
        h.cni_dir().join("net.d/10-fail.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "failing", "plugins": [{"type": "husk-fail"}]}"#,
    )
    .unwrap();
    let mut rt = h.runtime_client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "f".into(),
                    uid: "u".into(),
                    namespace: "n".into(),
                    attempt: 0,
                }),
                log_directory: logs.path().display().to_string(),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        err.message().contains("no route to nowhere"),
        "{}",
        err.message()
    );
    assert!(
        err.message().contains("test plugin says no"),
        "{}",
        err.message()
    );
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty());
    let pods_dir = h.state_dir().join("pods");
    assert_eq!(
        std::fs::read_dir(&pods_dir).map(|d| d.count()).unwrap_or(0),
        0,
        "no pod state left"
    );
    assert_no_leaks(&h, &[]);
}

#[tokio::test]
async fn network_ready_follows_the_config_dir() {
    let h = huskd();
    let mut rt = h.runtime_client().await.unwrap();
    let ready = |rt: &mut RuntimeClient| {
        let mut rt = rt.clone();
        async move {
            let st = rt
                .status(cri::StatusRequest { verbose: false })
                .await
                .unwrap()
                .into_inner();
            st.status
                .unwrap()
                .conditions
                .into_iter()
                .find(|c| c.r#type == "NetworkReady")
                .unwrap()
        }
    };
    let c = ready(&mut rt).await;
    assert!(!c.status);
    assert_eq!(c.reason, "NetworkPluginNotReady");
    assert!(c.message.contains("net.d"), "{}", c.message);
    let logs = tempfile::tempdir().unwrap();
    let pc = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // host-network pods still run
    let mut host = pc.clone();
    host.metadata.as_mut().unwrap().name = "hostnet".into();
    host.linux = Some(cri::LinuxPodSandboxConfig {
        security_context: Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(cri::NamespaceOption {
                network: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let hp = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(host),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    // a config appears: ready, and pods run
    let net = TestNet::new();
    net.install(&h);
    let c = ready(&mut rt).await;
    assert!(c.status, "{c:?}");
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    for id in [pod, hp] {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    }
    assert!(net.reservations().is_empty());
    assert_no_leaks(&h, &[]);
}

#[tokio::test]
async fn fifty_pods_leave_nothing_behind() {
    let (mut env, net) = net_env().await;
    let netns_before = std::fs::read_dir("/run/netns")
        .map(|d| d.count())
        .unwrap_or(0);
    let ipt_before = net.iptables_mentions();
    let started = std::time::Instant::now();
    for i in 0..50 {
        let mut pc = env.pod_config(&format!("loop-{i}"));
        pc.port_mappings = vec![cri::PortMapping {
            protocol: cri::Protocol::Tcp as i32,
            container_port: 80,
            host_port: 30000 + (std::process::id() % 1000) as i32 + i,
            host_ip: String::new(),
        }];
        let pod = env.run_pod(pc, "").await.unwrap();
        assert!(!pod_ip(&mut env, &pod).await.is_empty());
        env.remove_pod(&pod).await;
    }
    eprintln!("50 pods with CNI ADD+DEL in {:?}", started.elapsed());
    assert_eq!(net.reservations(), Vec::<String>::new());
    assert_eq!(net.veths(), 0);
    assert_eq!(net.iptables_mentions(), ipt_before);
    assert_eq!(
        std::fs::read_dir("/run/netns")
            .map(|d| d.count())
            .unwrap_or(0),
        netns_before
    );
    env.teardown().await;
    let _ = Path::new("/");
}

#[tokio::test]
async fn a_failed_teardown_is_retried_until_it_succeeds() {
    // A plugin whose DEL fails while a flag file exists; ADD hands out a fixed address.
    let plugins = tempfile::tempdir().unwrap();
    let flag = plugins.path().join("fail-del");
    let script = plugins.path().join("husk-flaky");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat >/dev/null\ncase \"$CNI_COMMAND\" in\n\
             VERSION) echo '{{\"cniVersion\":\"1.0.0\",\"supportedVersions\":[\"1.0.0\"]}}';;\n\
             ADD) echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"eth0\",\"sandbox\":\"'$CNI_NETNS'\"}}],\"ips\":[{{\"address\":\"10.99.0.7/24\",\"interface\":0}}]}}';;\n\
             DEL) if [ -e {flag} ]; then echo '{{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"DEL refused\"}}'; exit 1; fi;;\n\
             esac\n",
            flag = flag.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut h = husk_test_support::Huskd::start(
        husk_test_support::HuskdOptions::new(env!("CARGO_BIN_EXE_huskd")).extra_config(&format!(
            "[cni]\nbin_dirs = [\"{}\"]\n",
            plugins.path().display()
        )),
    )
    .unwrap();
    std::fs::write(
        h.cni_dir().join("net.d/10-flaky.conflist"),
        r#"{"cniVersion": "1.0.0", "name": "flaky", "plugins": [{"type": "husk-flaky"}]}"#,
    )
    .unwrap();
    let mut rt = h.runtime_client().await.unwrap();
    let logs = tempfile::tempdir().unwrap();
    let mut pc = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "p".into(),
            uid: "u".into(),
            namespace: "n".into(),
            attempt: 0,
        }),
        log_directory: logs.path().display().to_string(),
        ..Default::default()
    };
    // bad bandwidth annotations are InvalidArgument, before anything runs
    pc.annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "lots".into());
    let err = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    pc.annotations.clear();
    let pod = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pc),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status = |rt: &mut RuntimeClient, pod: String| {
        let mut rt = rt.clone();
        async move {
            rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: pod,
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };
    assert_eq!(
        status(&mut rt, pod.clone())
            .await
            .status
            .unwrap()
            .network
            .unwrap()
            .ip,
        "10.99.0.7"
    );
    std::fs::write(&flag, "").unwrap();
    let err = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("DEL refused"), "{}", err.message());
    assert!(
        status(&mut rt, pod.clone()).await.info["info"].contains("\"networkTeardownPending\":true")
    );
    // huskd restarts while DEL still fails, then DEL works again: the next start retries it.
    h.kill().unwrap();
    std::fs::remove_file(&flag).unwrap();
    h.restart().unwrap();
    let mut rt = h.runtime_client().await.unwrap();
    let st = status(&mut rt, pod.clone()).await;
    assert!(
        st.info["info"].contains("\"networkTeardownPending\":false"),
        "{:?}",
        st.info
    );
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .unwrap();
    assert_no_leaks(&h, &[]);
}

#[tokio::test]
async fn pod_stats_count_network_traffic_processes_and_containers() {
    let (mut env, _net) = net_env().await;
    let (pod, _) = web_pod(&mut env, "stats", 8080, None).await;
    let ip = pod_ip(&mut env, &pod).await;
    let mut got = String::new();
    for _ in 0..30 {
        if let Ok(b) = http_get(&format!("{ip}:8080")) {
            got = b;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(got, "hello-from-stats\n");
    let s = env
        .rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let linux = s.linux.unwrap();
    let eth0 = linux.network.unwrap().default_interface.unwrap();
    assert_eq!(eth0.name, "eth0");
    assert!(
        eth0.rx_bytes.unwrap().value > 0 && eth0.tx_bytes.unwrap().value > 0,
        "{eth0:?}"
    );
    assert!(linux.process.unwrap().process_count.unwrap().value >= 1);
    assert_eq!(linux.containers.len(), 1);
    assert!(linux.memory.unwrap().working_set_bytes.is_some());
    let all = env
        .rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);
    env.teardown().await;
}

#[tokio::test]
async fn pod_sandbox_metrics_like_cadvisor() {
    let (mut env, _net) = net_env().await;
    let (pod, c) = web_pod(&mut env, "metrics", 8080, None).await;
    let ip = pod_ip(&mut env, &pod).await;
    for _ in 0..30 {
        if http_get(&format!("{ip}:8080")).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = env
        .rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].pod_sandbox_id, pod);
    let rx = m[0]
        .metrics
        .iter()
        .find(|x| x.name == "container_network_receive_bytes_total" && x.label_values[0] == "eth0")
        .unwrap();
    assert!(rx.value.as_ref().unwrap().value > 0);
    assert_eq!(rx.label_values, vec!["eth0", "default", "metrics"]);
    let cm = &m[0].container_metrics[0];
    assert_eq!(cm.container_id, c);
    let ws = cm
        .metrics
        .iter()
        .find(|x| x.name == "container_memory_working_set_bytes")
        .unwrap();
    assert!(ws.value.as_ref().unwrap().value > 0);
    assert_eq!(ws.label_values[0], "web");
    env.teardown().await;
}
