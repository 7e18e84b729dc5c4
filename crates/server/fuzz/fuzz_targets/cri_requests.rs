//! Fuzz target: arbitrary bytes decoded as a CRI `runtime.v1` (or `husk.v1`) request — the first
//! byte picks the message type — then through husk-server's conversions and the engine's pure
//! validation (pod config rules, the CNI request, OCI spec generation against a fake host,
//! resource updates, id-prefix resolution, filters). Nothing may panic, and every refusal must
//! be a gRPC status with a specific code: never `Internal` or `Unknown` for bad input.
#![no_main]

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use husk_engine::EngineError;
use husk_engine::container::{ContainerConfig, ContainerRecord, ContainerState};
use husk_engine::sandbox::{PodConfig, SandboxRecord, SandboxState};
use husk_engine::spec::{self, HostOps, MountPoint, input as si};
use husk_engine::store::Store;
use husk_image::digest::Digest;
use husk_image::reference::Reference;
use husk_server::{convert, convert_container as cc, convert_pod as cp};
use k8s_cri::v1 as cri;
use libfuzzer_sys::fuzz_target;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};
use prost::Message;
use tonic::{Code, Status};

/// A refusal of bad input must say what is wrong with it, never "internal error".
fn check(s: &Status) {
    assert!(
        matches!(
            s.code(),
            Code::InvalidArgument
                | Code::NotFound
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::OutOfRange
                | Code::Unimplemented
        ),
        "bad input answered with {:?}: {}",
        s.code(),
        s.message()
    );
}

fn engine(e: EngineError) -> Status {
    husk_server::to_status(e.kind(), e.to_string())
}

fn check_engine<T>(r: Result<T, EngineError>) -> Option<T> {
    r.map_err(|e| check(&engine(e))).ok()
}

/// A host whose lookups answer without touching the real machine.
struct FakeHost;

impl HostOps for FakeHost {
    fn resolve_symlink(&self, path: &Path) -> io::Result<PathBuf> {
        Ok(path.to_path_buf())
    }
    fn mount_point(&self, _: &Path) -> io::Result<MountPoint> {
        Ok(MountPoint {
            mount_point: PathBuf::from("/"),
            shared: true,
            slave: false,
        })
    }
    /// Every path under `/dev/` is a character device; anything else is missing.
    fn devices(&self, path: &Path, container_path: &str) -> io::Result<Vec<LinuxDevice>> {
        if !path.starts_with("/dev/") {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such device"));
        }
        let mut d = LinuxDevice::default();
        let at = if container_path.is_empty() {
            path.to_path_buf()
        } else {
            PathBuf::from(container_path)
        };
        d.set_path(at)
            .set_typ(LinuxDeviceType::C)
            .set_major(10)
            .set_minor(229)
            .set_file_mode(Some(0o666))
            .set_uid(Some(0))
            .set_gid(Some(0));
        Ok(vec![d])
    }
    fn host_devices(&self) -> io::Result<Vec<LinuxDevice>> {
        Ok(Vec::new())
    }
    fn apparmor_profile_loaded(&self, _: &str) -> io::Result<bool> {
        Ok(false)
    }
    fn read_file(&self, _: &Path) -> io::Result<Vec<u8>> {
        Err(io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }
    fn hostname(&self) -> String {
        "node-1".into()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    pods: Store<SandboxRecord>,
    containers: Store<ContainerRecord>,
}

/// A READY pod record, built from JSON so that fields added later with a serde default need
/// no change here.
fn sample_pod(id: &str, cfg: PodConfig) -> SandboxRecord {
    let dir = format!("/run/husk/pods/{id}");
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "id": id,
        "runtime_handler": cfg.runtime_handler,
        "config": cfg,
        "state": SandboxState::Ready,
        "created_at": 1,
        "state_dir": dir,
        "netns": format!("{dir}/ns/net"),
        "ipcns": format!("{dir}/ns/ipc"),
        "utsns": format!("{dir}/ns/uts"),
        "pidns": null,
        "infra_pid": null,
        "shm": format!("{dir}/shm"),
        "hostname_file": format!("{dir}/hostname"),
        "hosts_file": format!("{dir}/hosts"),
        "resolv_file": format!("{dir}/resolv.conf"),
        "cgroup_parent": "/kubepods",
        "ips": ["10.88.0.2", "fd00::2"],
        "network_setup": true,
        "network_teardown_pending": false,
    }))
    .expect("a pod record")
}

/// A RUNNING container record, built from JSON like [`sample_pod`].
fn sample_container(id: &str, sandbox: &str, cfg: ContainerConfig) -> ContainerRecord {
    serde_json::from_value(serde_json::json!({
        "version": 1,
        "id": id,
        "sandbox_id": sandbox,
        "registrar_name": format!("{}_{sandbox}", cfg.name),
        "config": cfg,
        "state": ContainerState::Running,
        "image_id": Digest::sha256_of(b"config"),
        "image_ref": "docker.io/library/busybox@sha256:00",
        "runtime_handler": "runc",
        "created_at": 1,
        "started_at": 2,
        "finished_at": 0,
        "pid": 42,
        "exit_code": 0,
        "reason": "",
        "message": "",
        "bundle": format!("/nonexistent/husk/containers/{id}"),
        "monitor_dir": "/nonexistent/husk/s/x",
        "rw_dir": "/nonexistent/husk/rw/x",
        "log_path": null,
        "chain_ids": [Digest::sha256_of(b"layer")],
        "cgroups_path": format!("/kubepods/{id}"),
        "stop_signal": null,
    }))
    .expect("a container record")
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).expect("mkdir");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nwww:x:33:\n").expect("group");
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let pod_cfg = PodConfig {
            name: "web-0".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            labels: labels.clone(),
            ..Default::default()
        };
        let c_cfg = ContainerConfig {
            name: "app".into(),
            image: "busybox".into(),
            labels,
            ..Default::default()
        };
        let (pods_dir, ctrs_dir) = (dir.path().join("pods"), dir.path().join("containers"));
        for (d, recs) in [
            (
                &pods_dir,
                vec![
                    serde_json::to_vec(&sample_pod("abc123", pod_cfg.clone())),
                    serde_json::to_vec(&sample_pod("abd456", pod_cfg)),
                ],
            ),
            (
                &ctrs_dir,
                vec![
                    serde_json::to_vec(&sample_container("c0ffee", "abc123", c_cfg.clone())),
                    serde_json::to_vec(&sample_container("c0ffed", "abd456", c_cfg)),
                ],
            ),
        ] {
            std::fs::create_dir_all(d).expect("mkdir");
            for (i, r) in recs.into_iter().enumerate() {
                std::fs::write(d.join(format!("{i}.json")), r.expect("json")).expect("write");
            }
        }
        Fixture {
            rootfs,
            pods: Store::open(&pods_dir).expect("pods"),
            containers: Store::open(&ctrs_dir).expect("containers"),
            _dir: dir,
        }
    })
}

/// What the handlers do with an id before the engine acts: trim, refuse empty, resolve.
fn container_id(id: &str) {
    let f = fixture();
    if let Some(r) = check_engine(f.containers.resolve("container", id.trim())) {
        assert!(r.id.starts_with(id.trim()));
    }
}

fn pod_id(id: &str) {
    let f = fixture();
    if let Some(r) = check_engine(f.pods.resolve("pod sandbox", id.trim())) {
        assert!(r.id.starts_with(id.trim()));
    }
}

fn image_name(spec: Option<&cri::ImageSpec>) {
    let name = spec.map(|s| s.image.trim()).unwrap_or_default();
    if let Err(source) = Reference::parse(name) {
        let e = husk_image::ImageError::InvalidReference {
            reference: name.to_string(),
            source,
        };
        check(&husk_server::to_status(e.kind(), e.to_string()));
    }
}

/// RunPodSandbox: conversion, the engine's rules, the CNI request; a record of the result
/// survives persistence and converts back.
fn pod(config: Option<cri::PodSandboxConfig>, handler: String) {
    let cfg = match cp::pod_config(config, handler) {
        Ok(c) => c,
        Err(s) => return check(&s),
    };
    if check_engine(husk_engine::sandbox::lifecycle::validate(&cfg)).is_none() {
        return;
    }
    if cfg.namespaces.network != si::NamespaceMode::Node {
        let netns = Path::new("/run/husk/pods/x/ns/net");
        if check_engine(husk_engine::sandbox::network::pod_network(
            "abc123",
            netns,
            &cfg,
            &cfg.cgroup_parent,
        ))
        .is_none()
        {
            return;
        }
    }
    let rec = sample_pod("abc123", cfg);
    let json = serde_json::to_vec(&rec).expect("serialize pod record");
    let back: SandboxRecord = serde_json::from_slice(&json).expect("reload pod record");
    assert_eq!(back, rec, "pod record changed across persistence");
    let st = cp::pod_status(&rec);
    assert_eq!(st.metadata.map(|m| m.name), Some(rec.config.name.clone()));
    let _ = cp::pod_sandbox(&rec);
    let _ = cp::pod_info(&rec);
}

/// CreateContainer: conversion, then the OCI spec as the engine would generate it.
fn container(config: Option<cri::ContainerConfig>) {
    let cfg = match cc::container_config(config) {
        Ok(c) => c,
        Err(s) => return check(&s),
    };
    let f = fixture();
    let mut settings = cfg.settings.clone();
    let ns = &mut settings.security.namespaces;
    ns.network = si::NamespaceMode::Pod;
    ns.ipc = si::NamespaceMode::Pod;
    if ns.pid == si::NamespaceMode::Pod {
        ns.pid = si::NamespaceMode::Container;
    }
    let target_pid = (ns.pid == si::NamespaceMode::Target).then(|| PathBuf::from("/proc/1/ns/pid"));
    let input = si::SpecInput {
        identity: si::Identity {
            container_id: "c0ffee".into(),
            container_name: cfg.name.clone(),
            sandbox_id: "abc123".into(),
            pod_name: "web-0".into(),
            pod_namespace: "default".into(),
            pod_uid: "uid-1".into(),
            image_name: cfg.image.clone(),
        },
        container: settings,
        pod: si::PodSettings {
            hostname: "web-0".into(),
            privileged: true,
        },
        image: Default::default(),
        sandbox_files: si::SandboxFiles {
            hostname: Some("/run/husk/pods/abc123/hostname".into()),
            hosts: Some("/run/husk/pods/abc123/hosts".into()),
            resolv_conf: Some("/run/husk/pods/abc123/resolv.conf".into()),
            shm: Some("/run/husk/pods/abc123/shm".into()),
        },
        namespaces: si::PodNamespaces {
            network: Some("/run/husk/pods/abc123/ns/net".into()),
            ipc: Some("/run/husk/pods/abc123/ns/ipc".into()),
            uts: Some("/run/husk/pods/abc123/ns/uts".into()),
            pid: None,
            target_pid,
            user: None,
        },
        rootfs: f.rootfs.clone(),
        cgroups_path: "/kubepods/c0ffee".into(),
        host: si::HostInfo::default(),
    };
    if let Err(e) = spec::generate_with(&input, &FakeHost) {
        check(&husk_server::to_status(e.kind(), e.to_string()));
    }
    let rec = sample_container("c0ffee", "abc123", cfg);
    let json = serde_json::to_vec(&rec).expect("serialize container record");
    let back: ContainerRecord = serde_json::from_slice(&json).expect("reload container record");
    assert_eq!(back, rec, "container record changed across persistence");
    let _ = cc::container_status(&rec);
    let _ = cc::container(&rec);
}

/// The message types, in the order of the selector byte.
const KINDS: u8 = 24;

fn run(kind: u8, b: &[u8]) {
    let f = fixture();
    // Undecodable bytes are tonic's to refuse before any handler runs.
    macro_rules! decode {
        ($t:ty) => {
            match <$t>::decode(b) {
                Ok(m) => m,
                Err(_) => return,
            }
        };
    }
    match kind {
        0 => {
            let r = decode!(cri::RunPodSandboxRequest);
            pod(r.config, r.runtime_handler);
        }
        1 => {
            let r = decode!(cri::CreateContainerRequest);
            pod_id(&r.pod_sandbox_id);
            container(r.config);
            pod(r.sandbox_config, String::new());
        }
        2 => {
            let r = decode!(cri::UpdateContainerResourcesRequest);
            container_id(&r.container_id);
            if let Some(res) = r.linux.as_ref().map(cc::resources) {
                let host = si::HostInfo::default();
                if let Err(e) = spec::update_resources(&res, &host) {
                    check(&husk_server::to_status(e.kind(), e.to_string()));
                }
            }
        }
        3 => {
            let r = decode!(cri::ListContainersRequest);
            let filter = cc::container_filter(r.filter);
            for c in f.containers.list() {
                let _ = filter.matches(&c);
            }
        }
        4 => {
            let r = decode!(cri::ListPodSandboxRequest);
            let filter = cp::pod_filter(r.filter);
            for p in f.pods.list() {
                let _ = filter.matches(&p);
            }
        }
        5 => {
            let r = decode!(cri::ListContainerStatsRequest);
            let filter = cc::stats_filter(r.filter);
            for c in f.containers.list() {
                let _ = filter.matches(&c);
            }
        }
        6 => {
            let r = decode!(cri::PullImageRequest);
            image_name(r.image.as_ref());
            if let Err(e) = convert::credentials(r.auth.as_ref()) {
                check(&Status::from(e));
            }
            pod(r.sandbox_config, String::new());
        }
        7 => {
            let r = decode!(cri::ImageStatusRequest);
            image_name(r.image.as_ref());
        }
        8 => {
            let r = decode!(cri::RemoveImageRequest);
            image_name(r.image.as_ref());
        }
        9 => {
            let r = decode!(cri::ListImagesRequest);
            image_name(r.filter.as_ref().and_then(|f| f.image.as_ref()));
        }
        10 => container_id(&decode!(cri::ExecSyncRequest).container_id),
        11 => container_id(&decode!(cri::ExecRequest).container_id),
        12 => container_id(&decode!(cri::AttachRequest).container_id),
        13 => container_id(&decode!(cri::ContainerStatusRequest).container_id),
        14 => container_id(&decode!(cri::StopContainerRequest).container_id),
        15 => container_id(&decode!(cri::StartContainerRequest).container_id),
        16 => container_id(&decode!(cri::RemoveContainerRequest).container_id),
        17 => container_id(&decode!(cri::CheckpointContainerRequest).container_id),
        18 => container_id(&decode!(cri::ReopenContainerLogRequest).container_id),
        19 => pod_id(&decode!(cri::StopPodSandboxRequest).pod_sandbox_id),
        20 => pod_id(&decode!(cri::PodSandboxStatusRequest).pod_sandbox_id),
        21 => pod_id(&decode!(cri::PortForwardRequest).pod_sandbox_id),
        22 => {
            let r = decode!(husk_api::v1::PullImageRequest);
            if let Err(e) = convert::husk_credentials(r.auth.as_ref()) {
                check(&Status::from(e));
            }
        }
        _ => {
            let r = decode!(cri::ListPodSandboxStatsRequest);
            pod_id(&r.filter.unwrap_or_default().id);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    run(kind % KINDS, body);
});
