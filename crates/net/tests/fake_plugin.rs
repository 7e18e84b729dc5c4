//! The CNI protocol against fake plugins (a shell script that records its environment and
//! stdin and answers what the test tells it): chaining, capability args, DEL order, rollback of
//! a failed ADD, timeouts, cache use after a config change, CHECK. No root needed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use husk_net::{
    CniCommand, IpPreference, NetConfig, NetError, Network, PodNetwork, PortMapping, Protocol,
};
use serde_json::{Value, json};

const SCRIPT: &str = r#"#!/bin/sh
name=$(basename "$0")
dir=__DIR__
seq=$(printf %04d "$(ls "$dir/calls" | wc -l)")
base="$dir/calls/$seq-$name-$CNI_COMMAND"
cat > "$base.stdin"
env | grep '^CNI_' | sort > "$base.env"
b="$dir/behave/$name-$CNI_COMMAND"
echo $$ > "$dir/pids/$name-$CNI_COMMAND"
[ -f "$b.sleep" ] && sleep "$(cat "$b.sleep")"
[ -f "$b.stderr" ] && cat "$b.stderr" >&2
[ -f "$b.out" ] && cat "$b.out"
[ -f "$b.exit" ] && exit "$(cat "$b.exit")"
exit 0
"#;

struct Fake {
    dir: tempfile::TempDir,
}

#[derive(Debug)]
struct Call {
    plugin: String,
    command: String,
    env: BTreeMap<String, String>,
    stdin: Value,
}

impl Fake {
    fn new(plugins: &[&str]) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        for d in ["bin", "conf", "calls", "behave", "pids"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let f = Fake { dir };
        for p in plugins {
            f.install(p);
        }
        f
    }

    /// Written so that it can be spawned at once while other tests spawn processes (no
    /// ETXTBSY).
    fn install(&self, plugin: &str) {
        let path = self.path("bin").join(plugin);
        let body = SCRIPT.replace("__DIR__", &self.dir.path().to_string_lossy());
        common::write_executable(&path, body.as_bytes()).unwrap();
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn config(&self, file: &str, text: &Value) {
        fs::write(self.path("conf").join(file), text.to_string()).unwrap();
    }

    fn behave(&self, plugin: &str, command: &str, what: &str, content: &str) {
        fs::write(
            self.path("behave")
                .join(format!("{plugin}-{command}.{what}")),
            content,
        )
        .unwrap();
    }

    fn network(&self, timeout: Duration) -> Network {
        Network::new(NetConfig {
            conf_dir: self.path("conf"),
            bin_dirs: vec![self.path("nobin"), self.path("bin")],
            timeout,
            cache_dir: self.path("cache"),
        })
    }

    fn calls(&self) -> Vec<Call> {
        let mut names: Vec<PathBuf> = fs::read_dir(self.path("calls"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "stdin"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                let mut parts = stem.splitn(2, '-');
                parts.next();
                let rest = parts.next().unwrap();
                let (plugin, command) = rest.rsplit_once('-').unwrap();
                let env = fs::read_to_string(p.with_extension("env"))
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                let stdin = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                Call {
                    plugin: plugin.into(),
                    command: command.into(),
                    env,
                    stdin,
                }
            })
            .collect()
    }

    fn clear_calls(&self) {
        fs::remove_dir_all(self.path("calls")).unwrap();
        fs::create_dir(self.path("calls")).unwrap();
    }

    fn cache_files(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.path("cache")) {
            Ok(d) => d.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn order(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|c| format!("{} {}", c.plugin, c.command))
        .collect()
}

fn result(ip: &str) -> String {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "husk-br"}, {"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": ip, "gateway": "10.99.0.1", "interface": 1}],
        "dns": {}
    })
    .to_string()
}

fn list(name: &str, version: &str, plugins: &[Value]) -> Value {
    json!({"cniVersion": version, "name": name, "plugins": plugins})
}

fn pod(f: &Fake) -> PodNetwork {
    let mut p = PodNetwork::new("sb1", f.path("netns-gone"), "default", "web", "uid-1");
    p.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port: 8080,
        host_ip: None,
    }];
    p
}

#[tokio::test]
async fn add_chains_results_and_del_runs_in_reverse_with_the_cached_result() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    f.config(
        "10-net.conflist",
        &list(
            "fakenet",
            "1.0.0",
            &[
                json!({"type": "plug-a", "capabilities": {"portMappings": true}}),
                json!({"type": "plug-b", "capabilities": {"bandwidth": true}, "cniVersion": "0.1.0"}),
            ],
        ),
    );
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    f.behave("plug-b", "ADD", "out", &result("10.99.0.6/24"));
    let net = f.network(Duration::from_secs(10));
    net.status().await.unwrap();
    let req = pod(&f);
    let res = net.setup(&req).await.unwrap();
    assert_eq!(
        res.pod_ips("eth0", IpPreference::Ipv4),
        ["10.99.0.6".parse::<std::net::IpAddr>().unwrap()]
    );

    let calls = f.calls();
    assert_eq!(order(&calls), ["plug-a ADD", "plug-b ADD"]);
    let netns = f.path("netns-gone").to_string_lossy().into_owned();
    let want_env: BTreeMap<String, String> = [
        ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"),
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "sb1"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_PATH", &format!("{}:{}", f.path("nobin").display(), f.path("bin").display())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(calls[0].env, want_env);
    assert_eq!(
        calls[0].stdin,
        json!({"type": "plug-a", "capabilities": {"portMappings": true},
               "name": "fakenet", "cniVersion": "1.0.0",
               "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}})
    );
    // plug-b: the list's version wins, prevResult is plug-a's output, no bandwidth was asked.
    assert_eq!(calls[1].stdin["cniVersion"], "1.0.0");
    assert_eq!(
        calls[1].stdin["prevResult"],
        serde_json::from_str::<Value>(&result("10.99.0.5/24")).unwrap()
    );
    assert!(calls[1].stdin.get("runtimeConfig").is_none());
    assert_eq!(f.cache_files().len(), 1);

    f.clear_calls();
    net.teardown(&req).await.unwrap();
    let calls = f.calls();
    assert_eq!(order(&calls), ["plug-b DEL", "plug-a DEL"]);
    let final_result = serde_json::from_str::<Value>(&result("10.99.0.6/24")).unwrap();
    for c in &calls {
        assert_eq!(c.stdin["prevResult"], final_result, "{}", c.plugin);
        assert_eq!(c.env["CNI_NETNS"], "", "namespace gone: empty CNI_NETNS");
    }
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(f.cache_files().is_empty(), "cache removed after DEL");

    // Again: no cache, so the current config is used, without prevResult. Still fine.
    f.clear_calls();
    net.teardown(&req).await.unwrap();
    let calls = f.calls();
    assert_eq!(order(&calls), ["plug-b DEL", "plug-a DEL"]);
    assert!(calls[0].stdin.get("prevResult").is_none());
}

#[tokio::test]
async fn failed_add_runs_del_through_the_whole_list_in_reverse() {
    let f = Fake::new(&["plug-a", "plug-b", "plug-c"]);
    let plugins = [
        json!({"type": "plug-a"}),
        json!({"type": "plug-b"}),
        json!({"type": "plug-c"}),
    ];
    f.config("10-net.conflist", &list("fakenet", "1.0.0", &plugins));
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    f.behave(
        "plug-b",
        "ADD",
        "out",
        r#"{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"no bridge"}"#,
    );
    f.behave("plug-b", "ADD", "exit", "1");
    let net = f.network(Duration::from_secs(10));
    let err = net.setup(&pod(&f)).await.unwrap_err();
    assert_eq!(err.plugin_code(), Some(7));
    assert_eq!(
        err.to_string(),
        "CNI plugin plug-b ADD on network fakenet failed with code 7: invalid network config (no bridge)"
    );
    let calls = f.calls();
    assert_eq!(
        order(&calls),
        [
            "plug-a ADD",
            "plug-b ADD",
            "plug-c DEL",
            "plug-b DEL",
            "plug-a DEL"
        ]
    );
    assert!(
        calls[2..]
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
    assert!(f.cache_files().is_empty());
}

#[tokio::test]
async fn failed_rollback_keeps_the_cache_for_teardown() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let plugins = [json!({"type": "plug-a"}), json!({"type": "plug-b"})];
    f.config("10-net.conflist", &list("fakenet", "1.0.0", &plugins));
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    f.behave("plug-b", "ADD", "stderr", "kaboom");
    f.behave("plug-b", "ADD", "exit", "2");
    f.behave("plug-a", "DEL", "stderr", "busy");
    f.behave("plug-a", "DEL", "exit", "1");
    let net = f.network(Duration::from_secs(10));
    let err = net.setup(&pod(&f)).await.unwrap_err();
    let NetError::RollbackFailed { add, del } = &err else {
        panic!("{err}")
    };
    assert!(add.to_string().contains("stderr: kaboom"), "{add}");
    assert!(
        del.to_string().contains("plug-a DEL") && del.to_string().contains("busy"),
        "{del}"
    );
    assert_eq!(f.cache_files().len(), 1, "kept for teardown");

    // The config changes meanwhile; teardown still uses what ADD used.
    fs::remove_file(f.path("conf/10-net.conflist")).unwrap();
    f.install("plug-z");
    f.config(
        "05-other.conf",
        &json!({"cniVersion": "1.0.0", "name": "other", "type": "plug-z"}),
    );
    fs::remove_file(f.path("behave/plug-a-DEL.exit")).unwrap();
    f.clear_calls();
    net.teardown(&pod(&f)).await.unwrap();
    let calls = f.calls();
    assert_eq!(order(&calls), ["plug-b DEL", "plug-a DEL"]);
    assert_eq!(calls[0].stdin["name"], "fakenet");
    assert!(
        calls[0].stdin.get("prevResult").is_none(),
        "ADD never completed"
    );
    assert!(f.cache_files().is_empty());
}

#[tokio::test]
async fn timeout_kills_the_plugin_and_its_children() {
    let f = Fake::new(&["plug-a"]);
    f.config(
        "10-net.conflist",
        &list("fakenet", "1.0.0", &[json!({"type": "plug-a"})]),
    );
    f.behave("plug-a", "ADD", "sleep", "30");
    let net = f.network(Duration::from_millis(500));
    let started = Instant::now();
    let err = net.setup(&pod(&f)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(&err, NetError::Timeout { plugin, command: CniCommand::Add, .. } if plugin == "plug-a"),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("timed out after 500ms and was killed"),
        "{err}"
    );
    // The rollback DEL ran; the script and its `sleep` child are gone.
    assert_eq!(order(&f.calls()), ["plug-a ADD", "plug-a DEL"]);
    let pid: i32 = fs::read_to_string(f.path("pids/plug-a-ADD"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let group_alive = || {
        fs::read_dir("/proc").unwrap().flatten().any(|e| {
            fs::read_to_string(e.path().join("stat")).is_ok_and(|s| {
                // After the ")": state, ppid, process group. Zombies hold nothing.
                s.rsplit_once(')').is_some_and(|(_, rest)| {
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    f.len() > 2 && f[0] != "Z" && f[2] == pid.to_string()
                })
            })
        })
    };
    while group_alive() {
        assert!(
            Instant::now() < deadline,
            "plugin process group {pid} still alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn not_ready_until_a_config_appears() {
    let f = Fake::new(&["plug-a"]);
    let net = f.network(Duration::from_secs(10));
    let e = net.status().await.unwrap_err();
    assert_eq!(e.reason, "NetworkPluginNotReady");
    assert!(e.message.contains("no network config found"), "{e}");
    let err = net.setup(&pod(&f)).await.unwrap_err();
    assert!(err.is_not_ready(), "{err}");
    // Teardown without cache or config: nothing to undo.
    net.teardown(&pod(&f)).await.unwrap();

    fs::write(f.path("conf/10-bad.conflist"), "{").unwrap();
    let e = net.status().await.unwrap_err();
    assert!(
        e.message.contains("10-bad.conflist") && e.message.contains("invalid JSON"),
        "{e}"
    );
    f.config(
        "10-bad.conflist",
        &list("fakenet", "1.0.0", &[json!({"type": "plug-missing"})]),
    );
    let e = net.status().await.unwrap_err();
    assert!(
        e.message.contains("\"plug-missing\" of network fakenet"),
        "{e}"
    );
    f.install("plug-missing");
    net.status().await.unwrap();
    assert_eq!(net.config().await.unwrap().name, "fakenet");
}

#[tokio::test]
async fn plugin_errors_are_typed() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let plugins = [json!({"type": "plug-a"}), json!({"type": "plug-b"})];
    f.config("10-net.conflist", &list("fakenet", "1.0.0", &plugins));
    let net = f.network(Duration::from_secs(10));
    net.status().await.unwrap();
    // A plugin that vanished after load.
    fs::remove_file(f.path("bin/plug-b")).unwrap();
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    let err = net.setup(&pod(&f)).await.unwrap_err();
    let NetError::RollbackFailed { add, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        matches!(&**add, NetError::PluginNotFound { plugin, dirs, .. } if plugin == "plug-b" && dirs.len() == 2),
        "{add}"
    );
    assert!(add.to_string().contains("nobin"), "names the dirs: {add}");
    f.install("plug-b");

    // Garbage instead of a result.
    f.behave("plug-a", "ADD", "out", "not json");
    let err = net.setup(&pod(&f)).await.unwrap_err();
    assert!(
        matches!(&err, NetError::InvalidResult { plugin, .. } if plugin == "plug-a"),
        "{err}"
    );
    // Nothing at all.
    f.behave("plug-a", "ADD", "out", "");
    let err = net.setup(&pod(&f)).await.unwrap_err();
    assert!(err.to_string().contains("no output"), "{err}");
    assert!(f.cache_files().is_empty());

    // Invalid requests never reach a plugin.
    f.clear_calls();
    let mut bad = pod(&f);
    bad.ifname = "way-too-long-ifname".into();
    assert!(matches!(
        net.setup(&bad).await,
        Err(NetError::InvalidRequest { .. })
    ));
    assert!(f.calls().is_empty());
}

#[tokio::test]
async fn check_uses_the_cached_result() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let plugins = [json!({"type": "plug-a"}), json!({"type": "plug-b"})];
    f.config("10-net.conflist", &list("fakenet", "0.4.0", &plugins));
    let net = f.network(Duration::from_secs(10));
    let req = pod(&f);
    assert!(matches!(
        net.check(&req).await,
        Err(NetError::NoCachedResult { .. })
    ));
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    f.behave("plug-b", "ADD", "out", &result("10.99.0.6/24"));
    net.setup(&req).await.unwrap();
    f.clear_calls();
    net.check(&req).await.unwrap();
    let calls = f.calls();
    assert_eq!(order(&calls), ["plug-a CHECK", "plug-b CHECK"]);
    assert_eq!(
        calls[0].stdin["prevResult"]["ips"][0]["address"],
        "10.99.0.6/24"
    );
    assert_eq!(calls[0].env["CNI_NETNS"], req.netns.to_string_lossy());
    f.behave(
        "plug-b",
        "CHECK",
        "out",
        r#"{"code":100,"msg":"eth0 has no address"}"#,
    );
    f.behave("plug-b", "CHECK", "exit", "1");
    let err = net.check(&req).await.unwrap_err();
    assert_eq!(err.plugin_code(), Some(100));
    net.teardown(&req).await.unwrap();

    // disableCheck: nothing runs. 0.3.1: CHECK does not exist.
    let mut l = list("fakenet", "1.0.0", &plugins);
    l["disableCheck"] = json!(true);
    f.config("10-net.conflist", &l);
    net.setup(&req).await.unwrap();
    f.clear_calls();
    net.check(&req).await.unwrap();
    assert!(f.calls().is_empty());
    net.teardown(&req).await.unwrap();
    f.config("10-net.conflist", &list("fakenet", "0.3.1", &plugins));
    net.setup(&req).await.unwrap();
    assert!(matches!(
        net.check(&req).await,
        Err(NetError::CheckUnsupported { .. })
    ));
    f.clear_calls();
    net.teardown(&req).await.unwrap();
    // 0.3.1 has no prevResult on DEL.
    assert!(
        f.calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none())
    );
}

#[tokio::test]
async fn a_cancelled_setup_still_finishes_its_plugin_list() {
    let f = Fake::new(&["plug-a", "plug-b"]);
    let plugins = [json!({"type": "plug-a"}), json!({"type": "plug-b"})];
    f.config("10-net.conflist", &list("fakenet", "1.0.0", &plugins));
    f.behave("plug-a", "ADD", "sleep", "0.5");
    f.behave("plug-a", "ADD", "out", &result("10.99.0.5/24"));
    f.behave("plug-b", "ADD", "out", &result("10.99.0.6/24"));
    let net = f.network(Duration::from_secs(10));
    let req = pod(&f);
    let cancelled = tokio::time::timeout(Duration::from_millis(100), net.setup(&req)).await;
    assert!(cancelled.is_err(), "caller gave up");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = f
            .cache_files()
            .first()
            .is_some_and(|p| fs::read_to_string(p).is_ok_and(|s| s.contains("10.99.0.6/24")));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "ADD list did not complete");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(order(&f.calls()), ["plug-a ADD", "plug-b ADD"]);
    // The engine's rollback of the cancelled pod then finds the cache.
    f.clear_calls();
    net.teardown(&req).await.unwrap();
    assert_eq!(order(&f.calls()), ["plug-b DEL", "plug-a DEL"]);
    assert!(f.cache_files().is_empty());
}
