//! Shared setup for huskd's integration tests: a real registry, a real huskd in a temp root,
//! and hosts.toml files that point image names at the local registry (never off the machine).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod ws;

use std::path::{Path, PathBuf};

use husk_test_support::{BuiltImage, Huskd, HuskdOptions, Registry, RegistryOptions};
use k8s_cri::v1 as cri;
use tonic::transport::Channel;

pub type ImageClient = cri::image_service_client::ImageServiceClient<Channel>;

pub fn huskd() -> Huskd {
    Huskd::start(HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))).expect("start huskd")
}

pub async fn registry() -> Registry {
    Registry::start(RegistryOptions::default())
        .await
        .expect("start registry")
}

/// A port on 127.0.0.1 nothing listens on: the "upstream" of mirrored test names, so that a
/// test can never reach a real registry.
pub fn dead_upstream() -> String {
    format!("http://127.0.0.1:{}", husk_test_support::free_port())
}

/// Routes `domain` (e.g. `docker.io`) to `mirror_url` (e.g. `http://127.0.0.1:5000`).
pub fn mirror(h: &Huskd, domain: &str, mirror_url: &str, extra: &str) {
    let toml = format!(
        "server = \"{}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{extra}",
        dead_upstream()
    );
    h.write_hosts_toml(domain, &toml).expect("write hosts.toml");
}

pub async fn push(reg: &Registry, repo: &str, tag: &str, img: &BuiltImage) {
    reg.push_image(repo, tag, img).await.expect("push image");
}

pub fn image_spec(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.into(),
        ..Default::default()
    })
}

pub async fn pull(c: &mut ImageClient, name: &str) -> Result<String, tonic::Status> {
    pull_auth(c, name, None).await
}

pub async fn pull_auth(
    c: &mut ImageClient,
    name: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    c.pull_image(cri::PullImageRequest {
        image: image_spec(name),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

pub async fn status(c: &mut ImageClient, name: &str) -> Option<cri::Image> {
    c.image_status(cri::ImageStatusRequest {
        image: image_spec(name),
        verbose: false,
    })
    .await
    .expect("image status")
    .into_inner()
    .image
}

pub async fn list(c: &mut ImageClient) -> Vec<cri::Image> {
    c.list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("list images")
        .into_inner()
        .images
}

pub async fn remove(c: &mut ImageClient, name: &str) {
    c.remove_image(cri::RemoveImageRequest {
        image: image_spec(name),
    })
    .await
    .expect("remove image");
}

/// Committed snapshot directories (`<root>/snapshots/<n>/fs`).
pub fn snapshot_dirs(h: &Huskd) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(h.root_dir().join("snapshots"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().parse::<u64>().is_ok())
                })
                .map(|p| p.join("fs"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Committed blobs in the content store.
pub fn blobs(h: &Huskd) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(h.root_dir().join("content/blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The snapshot that holds `rel` (searching every snapshot).
pub fn find_in_snapshots(h: &Huskd, rel: &str) -> Vec<PathBuf> {
    snapshot_dirs(h)
        .into_iter()
        .map(|d| d.join(rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Mounts an overlay of `lowers` (top-most first) read-only at a temp dir; unmounted on drop.
pub struct Overlay {
    pub dir: tempfile::TempDir,
}

impl Overlay {
    pub fn mount(lowers: &[&Path]) -> Overlay {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        let st = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount overlay {opts}");
        Overlay { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

// ---- pods and containers -------------------------------------------------------------------

pub type RuntimeClient = cri::runtime_service_client::RuntimeServiceClient<Channel>;

/// Both OCI runtimes every lifecycle test runs against.
pub const RUNTIMES: [&str; 2] = ["runc", "crun"];

/// A daemon with busybox (`docker.io/library/busybox:latest`) already pulled from a local
/// registry.
pub struct Env {
    pub reg: husk_test_support::Registry,
    pub h: Huskd,
    pub rt: RuntimeClient,
    pub img: ImageClient,
    pub logs: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        Self::with_config("").await
    }

    /// Like [`Env::new`], with `extra` TOML merged into huskd's config.
    pub async fn with_config(extra: &str) -> Env {
        let reg = registry().await;
        let busybox = husk_test_support::busybox_image(&["sh"]).unwrap().build();
        push(&reg, "library/busybox", "latest", &busybox).await;
        let h = Huskd::start(HuskdOptions::new(env!("CARGO_BIN_EXE_huskd")).extra_config(extra))
            .expect("start huskd");
        mirror(&h, "docker.io", &reg.url(), "");
        // Pods get their own network namespace with only lo (the network tests use bridges).
        std::fs::write(
            h.cni_dir().join("net.d/99-loopback.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "lo-only", "plugins": [{"type": "loopback"}]}"#,
        )
        .unwrap();
        let mut img = h.image_client().await.unwrap();
        pull(&mut img, "busybox").await.unwrap();
        let rt = h.runtime_client().await.unwrap();
        Env {
            reg,
            h,
            rt,
            img,
            logs: tempfile::tempdir().unwrap(),
        }
    }

    pub fn pod_config(&self, name: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.logs.path().join(name).display().to_string(),
            linux: Some(cri::LinuxPodSandboxConfig {
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(kubelet_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_pod(
        &mut self,
        cfg: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        self.rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(cfg),
                runtime_handler: handler.into(),
            })
            .await
            .map(|r| r.into_inner().pod_sandbox_id)
    }

    pub async fn create(
        &mut self,
        pod: &str,
        cfg: cri::ContainerConfig,
        pod_cfg: &cri::PodSandboxConfig,
    ) -> Result<String, tonic::Status> {
        self.rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(cfg),
                sandbox_config: Some(pod_cfg.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn start(&mut self, id: &str) -> Result<(), tonic::Status> {
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map(|_| ())
    }

    pub async fn status(&mut self, id: &str) -> cri::ContainerStatus {
        self.rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap()
    }

    /// Waits until the container is EXITED (≤ 20 s).
    pub async fn wait_exited(&mut self, id: &str) -> cri::ContainerStatus {
        for _ in 0..200 {
            let s = self.status(id).await;
            if s.state == cri::ContainerState::ContainerExited as i32 {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("container {id} did not exit: {:?}", self.status(id).await);
    }

    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, tonic::Status> {
        self.rt
            .exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Runs a pod with one container running `cmd` and starts it; returns (pod, container).
    pub async fn run(&mut self, name: &str, handler: &str, cmd: &[&str]) -> (String, String) {
        let pc = self.pod_config(name);
        let pod = self.run_pod(pc.clone(), handler).await.unwrap();
        let c = self
            .create(&pod, container_config("main", cmd), &pc)
            .await
            .unwrap();
        self.start(&c).await.unwrap();
        (pod, c)
    }

    /// Log lines (content only) of a container.
    pub async fn log(&mut self, id: &str) -> Vec<String> {
        let s = self.status(id).await;
        read_cri_log(Path::new(&s.log_path))
    }

    pub async fn remove_pod(&mut self, pod: &str) {
        self.rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .unwrap();
        self.rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.into(),
            })
            .await
            .unwrap();
    }

    /// Removes every pod and checks nothing is left: mounts, namespace pins, runtime state,
    /// cgroups, processes.
    pub async fn teardown(mut self) {
        let pods = self
            .rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        let containers: Vec<String> = self
            .rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers
            .into_iter()
            .map(|c| c.id)
            .collect();
        for p in pods {
            self.remove_pod(&p.id).await;
        }
        assert_no_leaks(&self.h, &containers);
        drop(self.reg);
    }
}

pub fn container_config(name: &str, cmd: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: image_spec("busybox"),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(kubelet_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the kubelet sends by default: pod network and IPC, the container's own pid namespace.
pub fn kubelet_namespaces() -> cri::NamespaceOption {
    cri::NamespaceOption {
        network: cri::NamespaceMode::Pod as i32,
        pid: cri::NamespaceMode::Container as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Contents of the CRI log lines (`<ts> <stream> <F|P> <content>`), partials joined.
pub fn read_cri_log(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = Vec::new();
    let mut partial = String::new();
    for line in text.lines() {
        let mut it = line.splitn(4, ' ');
        let (_ts, _stream, tag) = (it.next(), it.next(), it.next());
        let content = it.next().unwrap_or("");
        partial.push_str(content);
        if tag == Some("F") {
            out.push(std::mem::take(&mut partial));
        }
    }
    out
}

/// Nothing of the daemon's pods and containers remains on the host.
pub fn assert_no_leaks(h: &Huskd, container_ids: &[String]) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = h.dir().display().to_string();
    let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&dir)).collect();
    assert!(leaked.is_empty(), "mounts left: {leaked:#?}");
    for id in container_ids {
        for ctl in [
            "memory", "cpu", "pids", "devices", "freezer", "blkio", "cpuset",
        ] {
            let p = Path::new("/sys/fs/cgroup").join(ctl).join("husk").join(id);
            assert!(!p.exists(), "cgroup left: {}", p.display());
        }
        let out = std::process::Command::new("pgrep")
            .arg("-f")
            .arg(id)
            .output()
            .unwrap();
        let pids = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(pids.is_empty(), "processes left for {id}: {pids}");
    }
    assert!(
        h.processes().is_empty(),
        "processes under the test dir: {:?}",
        h.processes()
    );
}

// ---- crash tests (failpoints.rs, chaos.rs) ---------------------------------------------------

/// What the crash tests need: root, both runtimes, `ip`, `iptables-save` and the CNI plugins.
/// Missing: a skip note (false), or a failure under `HUSK_REQUIRE_SYSTEM=1`.
pub fn crash_test_system() -> bool {
    [
        "root",
        "runc",
        "crun",
        "ip",
        "iptables-save",
        "/usr/lib/cni/bridge",
        "/usr/lib/cni/host-local",
        "/usr/lib/cni/portmap",
    ]
    .iter()
    .all(|w| husk_test_support::require_system(w))
}

/// A bridge network of a crash test (bridge + host-local + portmap, no masquerade, pods get no
/// default route) with its own bridge, subnet, host-local data dir and pod cgroup parent; the
/// bridge and the cgroup parent go on drop.
pub struct CrashNet {
    pub name: String,
    pub bridge: String,
    /// `10.x.y`: the subnet is `<prefix>.0/24`.
    pub prefix: String,
    pub data_dir: tempfile::TempDir,
    /// Every pod's cgroup parent (cgroupfs), so leaked container cgroups can be found.
    pub cgroup_parent: String,
}

/// The cgroup v1 controllers containers get directories in.
const CGROUP_CONTROLLERS: [&str; 7] = [
    "memory", "cpu", "pids", "devices", "freezer", "blkio", "cpuset",
];

impl CrashNet {
    /// `slot` tells the networks of one test process apart (0..8).
    pub fn new(slot: u32) -> CrashNet {
        let n = (std::process::id() % 200) * 8 + slot % 8;
        CrashNet {
            name: format!("husk-crash-{n}"),
            bridge: format!("hkc{n}"),
            prefix: format!("10.{}.{}", 150 + n / 250, n % 250),
            data_dir: tempfile::tempdir().unwrap(),
            cgroup_parent: format!("/husk-crash-{n}"),
        }
    }

    pub fn conflist(&self) -> String {
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

    /// Makes this the daemon's only network.
    pub fn install(&self, h: &Huskd) {
        let dir = h.cni_dir().join("net.d");
        let _ = std::fs::remove_file(dir.join("99-loopback.conflist"));
        std::fs::write(dir.join("10-crash.conflist"), self.conflist()).unwrap();
    }

    /// A pod on this network: its own cgroup parent, a shared PID namespace (so it has a
    /// `pause` init), and a host port when asked.
    pub fn pod_config(
        &self,
        env: &Env,
        name: &str,
        host_port: Option<u16>,
    ) -> cri::PodSandboxConfig {
        let mut pc = env.pod_config(name);
        let linux = pc.linux.get_or_insert_default();
        linux.cgroup_parent = self.cgroup_parent.clone();
        linux
            .security_context
            .get_or_insert_default()
            .namespace_options = Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Pod as i32,
            ..kubelet_namespaces()
        });
        if let Some(hp) = host_port {
            pc.port_mappings = vec![cri::PortMapping {
                protocol: cri::Protocol::Tcp as i32,
                container_port: 8080,
                host_port: hp as i32,
                host_ip: String::new(),
            }];
        }
        pc
    }

    /// IP reservations host-local holds (one file per allocated IP).
    pub fn reservations(&self) -> Vec<String> {
        std::fs::read_dir(self.data_dir.path().join(&self.name))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Interfaces enslaved to the bridge (the pods' veths).
    pub fn veths(&self) -> Vec<String> {
        let out = std::process::Command::new("ip")
            .args(["-o", "link", "show", "master", &self.bridge])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split(':').nth(1).unwrap_or(l).trim().to_string())
            .collect()
    }

    /// iptables rules (any table) naming the network or an address of the subnet: portmap's
    /// DNAT chains and their jumps.
    pub fn nat_rules(&self) -> Vec<String> {
        let out = std::process::Command::new("iptables-save")
            .output()
            .unwrap();
        let subnet = format!("{}.", self.prefix);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&self.name) || l.contains(&subnet))
            .map(str::to_string)
            .collect()
    }

    /// Container cgroups left under the pods' cgroup parent.
    pub fn cgroups(&self) -> Vec<PathBuf> {
        let rel = self.cgroup_parent.trim_start_matches('/');
        CGROUP_CONTROLLERS
            .iter()
            .flat_map(|c| {
                std::fs::read_dir(Path::new("/sys/fs/cgroup").join(c).join(rel))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
            })
            .collect()
    }

    /// Everything of the daemon's pods and containers still on the host, described; empty
    /// when nothing leaked. Call once everything is removed through the CRI.
    pub fn leaks(&self, h: &Huskd) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(
            h.mounts()
                .into_iter()
                .map(|m| format!("mount {}", m.display())),
        );
        for (what, dir) in [
            ("pod state dir", h.state_dir().join("pods")),
            ("container bundle", h.state_dir().join("containers")),
            ("monitor dir", h.state_dir().join("s")),
            ("writable layer", h.root_dir().join("rw")),
            ("CNI cache entry", h.root_dir().join("cni/results")),
            ("pod record", h.root_dir().join("sandboxes")),
            ("container record", h.root_dir().join("containers")),
        ] {
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                // Sockets of exec sessions live in s/ too; records moved aside stay for a human.
                if n.starts_with('.') || n.ends_with(".sock") || n.ends_with(".corrupt") {
                    continue;
                }
                out.push(format!("{what} {}", e.path().display()));
            }
        }
        out.extend(
            self.reservations()
                .into_iter()
                .map(|ip| format!("IP reservation {ip}")),
        );
        out.extend(self.veths().into_iter().map(|v| format!("veth {v}")));
        out.extend(
            self.nat_rules()
                .into_iter()
                .map(|r| format!("iptables rule {r}")),
        );
        out.extend(
            self.cgroups()
                .into_iter()
                .map(|c| format!("cgroup {}", c.display())),
        );
        for p in h.processes() {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            out.push(format!("process {p} {cmd}"));
        }
        for rt in RUNTIMES {
            let root = h.state_dir().join("runtimes").join(rt);
            if !root.exists() {
                continue;
            }
            let o = std::process::Command::new(rt)
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"])
                .output()
                .unwrap();
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                out.push(format!("{rt} container {id}"));
            }
        }
        out
    }

    /// Removes every pod and container the daemon lists, through the CRI.
    pub async fn remove_all(rt: &mut RuntimeClient) {
        let containers = rt
            .list_containers(cri::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers;
        for c in containers {
            rt.remove_container(cri::RemoveContainerRequest { container_id: c.id })
                .await
                .unwrap();
        }
        let pods = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items;
        for p in pods {
            rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: p.id.clone(),
            })
            .await
            .unwrap();
            rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: p.id,
            })
            .await
            .unwrap();
        }
    }
}

impl Drop for CrashNet {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let rel = self.cgroup_parent.trim_start_matches('/');
        for c in CGROUP_CONTROLLERS {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(c).join(rel));
        }
    }
}

/// Streams the archive at `path` into husk.v1 ImportImage in 256 KiB chunks.
pub async fn import(
    h: &Huskd,
    path: &Path,
) -> Result<husk_api::v1::ImportImageResponse, tonic::Status> {
    let data = std::fs::read(path).unwrap();
    let chunks: Vec<husk_api::v1::ImportChunk> = data
        .chunks(256 * 1024)
        .map(|c| husk_api::v1::ImportChunk { data: c.to_vec() })
        .collect();
    let mut hc = h.husk_client().await.unwrap();
    hc.import_image(tokio_stream::iter(chunks))
        .await
        .map(|r| r.into_inner())
}
