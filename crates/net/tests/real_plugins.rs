//! The real CNI plugins (Debian's containernetworking-plugins in /usr/lib/cni): bridge +
//! host-local + portmap into network namespaces pinned by husk-sys. Needs root, the plugins,
//! `ip` and `iptables-save`; skipped with a note otherwise (a failure under
//! `HUSK_REQUIRE_SYSTEM=1`). Each test has its own bridge (`husk-t<N>`) and private subnet
//! (10.213.<N>.0/24, no masquerade, no default route) and removes every netns, veth, bridge,
//! iptables rule and IP reservation it made, also when an assertion fails (guards with Drop).
//! The tests take one lock: they compare host-wide state (`iptables-save`, links) and toggle
//! `ip_forward`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use husk_net::{IpPreference, NetConfig, Network, PodNetwork, PortMapping, Protocol};
use husk_sys::ns::{PinRequest, create_pinned, is_pinned, unpin};

const BIN_DIR: &str = "/usr/lib/cni";
static HOST: Mutex<()> = Mutex::new(());

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd).args(args).output().expect("run command");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Host rules without counters and comments.
fn iptables_rules() -> String {
    let mut all = String::new();
    for cmd in ["iptables-save", "ip6tables-save"] {
        let (_, text) = sh(cmd, &[]);
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let line = match line.split_once(" [") {
                Some((chain, _)) if line.starts_with(':') => chain,
                _ => line,
            };
            all.push_str(line);
            all.push('\n');
        }
    }
    all
}

fn links() -> Vec<String> {
    let (_, text) = sh("ip", &["-o", "link", "show"]);
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect();
    v.sort();
    v
}

/// One test's world: its bridge, dirs, and what the host looked like before.
struct Lab {
    _lock: MutexGuard<'static, ()>,
    n: u8,
    dir: tempfile::TempDir,
    ip_forward: String,
    rules_before: String,
}

impl Lab {
    /// None (test skipped, with a note) without root, the plugins or the tools.
    fn new(n: u8, extra_plugins: &[serde_json::Value]) -> Option<Lab> {
        let plugins = ["bridge", "host-local", "portmap"].map(|p| format!("{BIN_DIR}/{p}"));
        let needs = ["root", "ip", "iptables-save", "ip6tables-save"];
        if !needs
            .into_iter()
            .chain(plugins.iter().map(String::as_str))
            .all(common::require_system)
        {
            return None;
        }
        let lock = HOST.lock().unwrap_or_else(PoisonError::into_inner);
        let bridge = format!("husk-t{n}");
        if links().contains(&bridge) {
            eprintln!("removing {bridge} left by an earlier run");
            let _ = sh("ip", &["link", "del", &bridge]);
        }
        let subnet = format!("10.213.{n}.");
        assert!(
            !sh("ip", &["-br", "addr"]).1.contains(&subnet),
            "{subnet}0/24 in use"
        );
        let lab = Lab {
            _lock: lock,
            n,
            dir: tempfile::tempdir().unwrap(),
            ip_forward: fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
            rules_before: iptables_rules(),
        };
        for d in ["conf", "ipam", "cache", "pins", "www", "bin"] {
            fs::create_dir(lab.dir.path().join(d)).unwrap();
        }
        let mut plugins = vec![
            serde_json::json!({"type": "bridge", "bridge": bridge, "isGateway": true,
                "ipMasq": false, "hairpinMode": true,
                "ipam": {"type": "host-local", "dataDir": lab.path("ipam"),
                         "ranges": [[{"subnet": format!("10.213.{n}.0/24")}]]}}),
            serde_json::json!({"type": "portmap", "capabilities": {"portMappings": true}}),
        ];
        plugins.extend(extra_plugins.iter().cloned());
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": lab.network_name(),
            "plugins": plugins,
        });
        fs::write(lab.path("conf").join("10-husk.conflist"), conf.to_string()).unwrap();
        Some(lab)
    }

    fn network_name(&self) -> String {
        format!("husk-net-t{}", self.n)
    }

    fn bridge(&self) -> String {
        format!("husk-t{}", self.n)
    }

    fn gateway(&self) -> String {
        format!("10.213.{}.1", self.n)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn network(&self) -> Network {
        Network::new(NetConfig {
            conf_dir: self.path("conf"),
            bin_dirs: vec![BIN_DIR.into(), self.path("bin")],
            timeout: Duration::from_secs(30),
            cache_dir: self.path("cache"),
        })
    }

    /// IP files host-local holds (not its `lock` / `last_reserved_ip.*`).
    fn reservations(&self) -> Vec<String> {
        let dir = self.path("ipam").join(self.network_name());
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// iptables lines of this network: portmap's comments name it, its rules name the subnet.
    fn our_rules(&self) -> Vec<String> {
        let tag = format!("\"{}\\\"", self.network_name());
        let subnet = format!("10.213.{}.", self.n);
        iptables_rules()
            .lines()
            .filter(|l| l.contains(&tag) || l.contains(&subnet))
            .map(str::to_string)
            .collect()
    }

    /// Veths enslaved to our bridge.
    fn ports(&self) -> Vec<String> {
        let (_, text) = sh("ip", &["-o", "link", "show", "master", &self.bridge()]);
        text.lines()
            .filter_map(|l| l.split(':').nth(1))
            .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
            .filter(|n| !n.is_empty())
            .collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for port in self.ports() {
            let _ = sh("ip", &["link", "del", &port]);
        }
        let _ = sh("ip", &["link", "del", &self.bridge()]);
        for (save, cmd) in [
            ("iptables-save", "iptables"),
            ("ip6tables-save", "ip6tables"),
        ] {
            self.clean_iptables(save, cmd);
        }
        // The bridge plugin (isGateway) turns forwarding on; turn it back off unless another
        // bridge (someone else's pod network, which may route) exists.
        let (_, bridges) = sh("ip", &["-o", "link", "show", "type", "bridge"]);
        if bridges.trim().is_empty() {
            let _ = fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        }
    }
}

/// One `-A` line of `iptables-save`.
struct Rule {
    table: String,
    chain: String,
    line: String,
    args: Vec<String>,
}

fn saved_rules(save: &str) -> (Vec<Rule>, Vec<(String, String)>) {
    let (_, text) = sh(save, &[]);
    let (mut table, mut rules, mut chains) = (String::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_string();
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let args = split_rule(rule);
            rules.push(Rule {
                table: table.clone(),
                chain: args.first().cloned().unwrap_or_default(),
                line: line.to_string(),
                args,
            });
        } else if let Some(chain) = line.strip_prefix(':') {
            let name = chain.split(' ').next().unwrap_or("").to_string();
            chains.push((table.clone(), name));
        }
    }
    (rules, chains)
}

impl Lab {
    /// Removes what this test's network left in iptables: rules naming the network (portmap's
    /// comments) and the per-pod chains they jump to; portmap's shared CNI-HOSTPORT-* chains
    /// too when they are new and no pod of anyone uses them any more.
    fn clean_iptables(&self, save: &str, cmd: &str) {
        let run = |table: &str, op: &str, args: &[String]| {
            let mut all = vec!["-t".to_string(), table.to_string(), op.to_string()];
            all.extend(args.iter().cloned());
            let refs: Vec<&str> = all.iter().map(String::as_str).collect();
            sh(cmd, &refs)
        };
        let tag = format!("\"{}\\\"", self.network_name());
        let (rules, _) = saved_rules(save);
        let mut targets = Vec::new();
        for r in rules.iter().filter(|r| r.line.contains(&tag)) {
            run(&r.table, "-D", &r.args);
            if let Some(i) = r.args.iter().position(|a| a == "-j") {
                let target = r.args.get(i + 1).cloned().unwrap_or_default();
                if target.starts_with("CNI-") && !target.starts_with("CNI-HOSTPORT-") {
                    targets.push((r.table.clone(), target));
                }
            }
        }
        for (table, chain) in &targets {
            run(table, "-F", std::slice::from_ref(chain));
            run(table, "-X", std::slice::from_ref(chain));
        }
        // portmap's shared chains, if this test created them and nobody uses them: removed in
        // one iptables-restore transaction, which fails as a whole (removing nothing) if another
        // pod's rule appeared in them meanwhile.
        let (rules, chains) = saved_rules(save);
        let shared: Vec<&(String, String)> = chains
            .iter()
            .filter(|(_, c)| {
                c.starts_with("CNI-HOSTPORT-") && !self.rules_before.contains(&format!(":{c}"))
            })
            .collect();
        if shared.is_empty() || rules.iter().any(|r| r.chain == "CNI-HOSTPORT-DNAT") {
            return;
        }
        let is_shared = |t: &str, c: &str| shared.iter().any(|(st, sc)| st == t && sc == c);
        let mut script = String::new();
        for table in ["nat", "filter", "mangle"] {
            let mut ops = Vec::new();
            for r in rules.iter().filter(|r| r.table == table) {
                let jumps = r
                    .args
                    .windows(2)
                    .any(|w| w[0] == "-j" && is_shared(table, &w[1]));
                if is_shared(table, &r.chain) || jumps && !self.rules_before.contains(&r.line) {
                    ops.push(format!("-D {}", &r.line[3..]));
                }
            }
            for (_, c) in shared.iter().filter(|(t, _)| t == table) {
                ops.push(format!("-X {c}"));
            }
            if !ops.is_empty() {
                script.push_str(&format!("*{table}\n{}\nCOMMIT\n", ops.join("\n")));
            }
        }
        let restore = format!("{cmd}-restore");
        let child = Command::new(&restore)
            .arg("--noflush")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(mut child) = child {
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(script.as_bytes());
            }
            let _ = child.wait();
        }
    }
}

/// Splits an `iptables-save` rule into arguments, keeping quoted strings (with `\"` escapes)
/// whole.
fn split_rule(rule: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = rule.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// A pinned network namespace, unpinned on drop.
struct Netns(PathBuf);

impl Netns {
    fn new(lab: &Lab, name: &str) -> Netns {
        let path = lab.path("pins").join(name);
        create_pinned(&PinRequest {
            net: Some(path.clone()),
            loopback_up: true,
            ..Default::default()
        })
        .unwrap();
        Netns(path)
    }

    fn run(&self, args: &[&str]) -> (bool, String) {
        let mut all = vec![format!("--net={}", self.0.display())];
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        sh("nsenter", &refs)
    }

    fn remove(&self) {
        unpin(&self.0).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = unpin(&self.0);
    }
}

/// A background process, killed on drop.
struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pod(id: &str, ns: &Netns) -> PodNetwork {
    PodNetwork::new(id, &ns.0, "default", id, format!("uid-{id}"))
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wget(ns: Option<&Netns>, url: &str) -> (bool, String) {
    // (busybox 1.35's `wget -T` crashes; `timeout` bounds it instead.)
    let args = ["timeout", "5", "busybox", "wget", "-q", "-O", "-", url];
    match ns {
        Some(ns) => ns.run(&args),
        None => sh(args[0], &args[1..]),
    }
}

#[tokio::test]
async fn two_pods_get_addresses_talk_and_expose_a_host_port() {
    let Some(lab) = Lab::new(1, &[]) else { return };
    let net = lab.network();
    net.status().await.unwrap();
    let (ns_a, ns_b) = (Netns::new(&lab, "a"), Netns::new(&lab, "b"));
    let mut req_a = pod("pod-a", &ns_a);
    req_a.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 8080,
        host_port: 18080,
        host_ip: None,
    }];
    let req_b = pod("pod-b", &ns_b);

    let res_a = net.setup(&req_a).await.unwrap();
    let res_b = net.setup(&req_b).await.unwrap();
    let ip_a = res_a.pod_ips("eth0", IpPreference::Ipv4)[0];
    let ip_b = res_b.pod_ips("eth0", IpPreference::Ipv4)[0];
    assert_ne!(ip_a, ip_b);
    for ip in [ip_a, ip_b] {
        assert!(ip.to_string().starts_with("10.213.1."), "{ip}");
    }
    assert_eq!(
        res_a.ips[0].gateway.map(|g| g.to_string()),
        Some(lab.gateway())
    );
    let (ok, addr) = ns_a.run(&["ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(ok && addr.contains(&format!("{ip_a}/24")), "{addr}");
    let mut reserved = lab.reservations();
    reserved.sort();
    let mut want = vec![ip_a.to_string(), ip_b.to_string()];
    want.sort();
    assert_eq!(reserved, want);
    assert_eq!(lab.ports().len(), 2);
    // CHECK: fine for pod B. (portmap 1.1.1's CHECK wrongly looks for an IPv6 DNAT chain on
    // IPv4-only pods with port mappings and fails with code 999; not ours to fix.)
    net.check(&req_b).await.unwrap();

    // Pod B reaches pod A's server over the bridge.
    fs::write(lab.path("www/index.html"), "hello from a\n").unwrap();
    let www = lab.path("www");
    let server = Bg(Command::new("nsenter")
        .arg(format!("--net={}", ns_a.0.display()))
        .args(["busybox", "httpd", "-f", "-p", "8080", "-h"])
        .arg(&www)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let url = format!("http://{ip_a}:8080/");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = wget(Some(&ns_b), &url);
        if got.1 == "hello from a\n" {
            break;
        }
        if Instant::now() > deadline {
            let diag = [
                ns_a.run(&["ip", "addr"]).1,
                ns_b.run(&["ip", "route"]).1,
                ns_a.run(&["busybox", "netstat", "-ltn"]).1,
                sh("ip", &["-d", "link", "show", "master", &lab.bridge()]).1,
            ];
            panic!("pod B cannot reach pod A: {got:?}\n{}", diag.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // The host port: from the host to the bridge's address (DNAT in nat OUTPUT).
    let via_bridge = wget(None, &format!("http://{}:18080/", lab.gateway()));
    assert_eq!(via_bridge, (true, "hello from a\n".into()));
    // From pod B to the gateway's host port (DNAT in PREROUTING, hairpin not needed).
    let from_b = wget(Some(&ns_b), &format!("http://{}:18080/", lab.gateway()));
    assert_eq!(from_b, (true, "hello from a\n".into()));
    // From pod A to itself through the host port (hairpin mode + portmap's SNAT).
    let hairpin = wget(Some(&ns_a), &format!("http://{}:18080/", lab.gateway()));
    assert_eq!(hairpin, (true, "hello from a\n".into()));
    // 127.0.0.1 works as well: portmap sets route_localnet on the bridge and masquerades.
    let localhost = wget(None, "http://127.0.0.1:18080/");
    assert_eq!(localhost, (true, "hello from a\n".into()));
    // The host's own address on eth0 does not: the pod has no route back to it (no default
    // route, no masquerade) — by design of this test network.
    drop(server);

    net.teardown(&req_a).await.unwrap();
    assert_eq!(lab.reservations(), [ip_b.to_string()]);
    assert_eq!(lab.ports().len(), 1);
    let (_, addr) = ns_a.run(&["ip", "-o", "link", "show"]);
    assert!(!addr.contains("eth0"), "veth gone from pod A: {addr}");
    assert!(!wget(None, &format!("http://{}:18080/", lab.gateway())).0);
    net.teardown(&req_a).await.unwrap();

    // Pod B's namespace goes first (as after a crash): DEL with CNI_NETNS="" still releases
    // the IP, and the kernel removes the veth with the namespace.
    ns_b.remove();
    assert!(!is_pinned(&ns_b.0));
    net.teardown(&req_b).await.unwrap();
    assert!(lab.reservations().is_empty());
    eventually("pod B's veth to disappear", || lab.ports().is_empty());
    assert_eq!(fs::read_dir(lab.path("cache")).unwrap().count(), 0);
}

/// One pod's setup and teardown; returns the host-side veth names the result named.
async fn cycle(lab: &Lab, net: &Network, i: usize) -> Vec<String> {
    let ns = Netns::new(lab, &format!("p{i}"));
    let mut req = pod(&format!("cycle-{i}"), &ns);
    req.port_mappings = vec![PortMapping {
        protocol: Protocol::Udp,
        container_port: 53,
        host_port: 15353,
        host_ip: Some("10.213.2.1".parse().unwrap()),
    }];
    let res = net.setup(&req).await.unwrap();
    assert_eq!(res.pod_ips("eth0", IpPreference::Ipv4).len(), 1);
    assert!(
        !lab.our_rules().is_empty(),
        "portmap rules while the pod lives"
    );
    net.teardown(&req).await.unwrap();
    ns.remove();
    res.interfaces
        .iter()
        .filter(|i| i.sandbox.is_none() && i.name.starts_with("veth"))
        .map(|i| i.name.clone())
        .collect()
}

#[tokio::test]
async fn twenty_cycles_leave_nothing_behind() {
    let Some(lab) = Lab::new(2, &[]) else { return };
    let net = lab.network();
    let mut veths = Vec::new();
    // The first cycle creates the bridge and portmap's shared chains; they stay.
    veths.extend(cycle(&lab, &net, 0).await);
    let rules = iptables_rules();
    for i in 1..=20 {
        veths.extend(cycle(&lab, &net, i).await);
    }
    assert_eq!(veths.len(), 21);
    // Host-wide rules are compared when nobody else changed them meanwhile (other suites may
    // run CNI at the same time); this network's own rules always.
    let after = iptables_rules();
    if after != rules {
        eprintln!("iptables changed by someone else during the test:\n{rules}\n---\n{after}");
    }
    assert_eq!(
        lab.our_rules(),
        Vec::<String>::new(),
        "iptables rules leaked"
    );
    eventually("veths to disappear", || {
        let now = links();
        lab.ports().is_empty()
            && !veths
                .iter()
                .any(|v| now.iter().any(|l| l.starts_with(v.as_str())))
    });
    assert!(lab.reservations().is_empty());
    assert_eq!(fs::read_dir(lab.path("cache")).unwrap().count(), 0);
    assert_eq!(fs::read_dir(lab.path("pins")).unwrap().count(), 0);
    let pins = lab.path("pins").to_string_lossy().into_owned();
    let now = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!now.contains(&pins), "netns pins still mounted");
}

#[tokio::test]
async fn failed_add_is_rolled_back_by_the_real_plugins() {
    // A third plugin (a script) fails its ADD: portmap, bridge and host-local are undone.
    let extra = [serde_json::json!({"type": "husk-fail"})];
    let Some(lab) = Lab::new(3, &extra) else {
        return;
    };
    let script = "#!/bin/sh\n[ \"$CNI_COMMAND\" = ADD ] || exit 0\n\
                  echo '{\"code\":100,\"msg\":\"refused\"}'; exit 1\n";
    common::write_executable(&lab.path("bin/husk-fail"), script.as_bytes()).unwrap();
    let net = lab.network();
    // Warm up portmap's top-level chains, then compare.
    let ns = Netns::new(&lab, "a");
    let mut req = pod("pod-rollback", &ns);
    req.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port: 18081,
        host_ip: None,
    }];
    let _ = net.setup(&req).await;
    let err = net.setup(&req).await.unwrap_err();
    assert_eq!(err.plugin_code(), Some(100), "{err}");
    assert!(err.to_string().contains("husk-fail ADD"), "{err}");
    assert!(lab.reservations().is_empty(), "IP released");
    assert!(lab.ports().is_empty(), "veth removed");
    assert_eq!(
        lab.our_rules(),
        Vec::<String>::new(),
        "portmap rules removed"
    );
    assert_eq!(fs::read_dir(lab.path("cache")).unwrap().count(), 0);
    let (_, addr) = ns.run(&["ip", "-o", "link", "show"]);
    assert!(!addr.contains("eth0"), "{addr}");
}
