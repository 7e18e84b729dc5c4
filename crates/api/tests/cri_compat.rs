//! Wire compatibility of husk's CRI bindings (cri-api v0.36) with what older and newer kubelets
//! send: messages encoded by a 1.32 client (the `k8s-cri` 0.11 crate, used here only as that
//! client's encoder) decode into ours with every field kept, ours decode back into 1.32's with
//! the 1.33+ fields skipped as unknown, and 1.36-only fields survive a round trip.

use husk_api::runtime::v1 as new;
use k8s_cri::v1 as old;
use prost::Message;

fn reencode<A: Message, B: Message + Default>(a: &A) -> B {
    B::decode(a.encode_to_vec().as_slice()).expect("decodes")
}

fn old_pod_config() -> old::PodSandboxConfig {
    old::PodSandboxConfig {
        metadata: Some(old::PodSandboxMetadata {
            name: "web".into(),
            uid: "uid-1".into(),
            namespace: "default".into(),
            attempt: 2,
        }),
        hostname: "web-0".into(),
        log_directory: "/var/log/pods/web".into(),
        dns_config: Some(old::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        port_mappings: vec![old::PortMapping {
            protocol: old::Protocol::Udp as i32,
            container_port: 53,
            host_port: 5353,
            host_ip: "127.0.0.1".into(),
        }],
        labels: [("app".to_string(), "web".to_string())].into(),
        annotations: [("a".to_string(), "b".to_string())].into(),
        linux: Some(old::LinuxPodSandboxConfig {
            cgroup_parent: "/kubepods/pod1".into(),
            security_context: Some(old::LinuxSandboxSecurityContext {
                namespace_options: Some(old::NamespaceOption {
                    network: old::NamespaceMode::Pod as i32,
                    pid: old::NamespaceMode::Container as i32,
                    ipc: old::NamespaceMode::Pod as i32,
                    target_id: String::new(),
                    userns_options: Some(old::UserNamespace {
                        mode: old::NamespaceMode::Pod as i32,
                        uids: vec![old::IdMapping {
                            host_id: 65536,
                            container_id: 0,
                            length: 65536,
                        }],
                        gids: vec![old::IdMapping {
                            host_id: 65536,
                            container_id: 0,
                            length: 65536,
                        }],
                    }),
                }),
                run_as_user: Some(old::Int64Value { value: 1000 }),
                supplemental_groups: vec![5, 6],
                privileged: false,
                ..Default::default()
            }),
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            ..Default::default()
        }),
        windows: None,
    }
}

#[test]
fn a_132_run_pod_sandbox_request_keeps_every_field() {
    let req = old::RunPodSandboxRequest {
        config: Some(old_pod_config()),
        runtime_handler: "crun".into(),
    };
    let ours: new::RunPodSandboxRequest = reencode(&req);
    assert_eq!(ours.runtime_handler, "crun");
    let c = ours.config.as_ref().unwrap();
    assert_eq!(c.metadata.as_ref().unwrap().attempt, 2);
    assert_eq!(c.port_mappings[0].protocol, new::Protocol::Udp as i32);
    assert_eq!(c.port_mappings[0].host_ip, "127.0.0.1");
    let sc = c.linux.as_ref().unwrap().security_context.as_ref().unwrap();
    let ns = sc.namespace_options.as_ref().unwrap();
    assert_eq!(ns.pid, new::NamespaceMode::Container as i32);
    let u = ns.userns_options.as_ref().unwrap();
    assert_eq!((u.uids[0].host_id, u.uids[0].length), (65536, 65536));
    assert_eq!(sc.supplemental_groups, [5, 6]);
    assert_eq!(sc.run_as_user.unwrap().value, 1000);
    // and back: a 1.32 runtime would read exactly what it sent
    let back: old::RunPodSandboxRequest = reencode(&ours);
    assert_eq!(back, req);
}

#[test]
fn a_132_create_container_request_keeps_every_field() {
    let req = old::CreateContainerRequest {
        pod_sandbox_id: "pod".into(),
        sandbox_config: Some(old_pod_config()),
        config: Some(old::ContainerConfig {
            metadata: Some(old::ContainerMetadata {
                name: "c".into(),
                attempt: 1,
            }),
            image: Some(old::ImageSpec {
                image: "busybox".into(),
                user_specified_image: "busybox:latest".into(),
                runtime_handler: "runc".into(),
                ..Default::default()
            }),
            command: vec!["sh".into()],
            args: vec!["-c".into(), "true".into()],
            working_dir: "/w".into(),
            envs: vec![old::KeyValue {
                key: "K".into(),
                value: "V".into(),
            }],
            mounts: vec![old::Mount {
                container_path: "/data".into(),
                host_path: "/srv".into(),
                readonly: true,
                recursive_read_only: true,
                propagation: old::MountPropagation::PropagationHostToContainer as i32,
                image: Some(old::ImageSpec {
                    image: "sha256:abc".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            stdin: true,
            stdin_once: true,
            tty: false,
            log_path: "c.log".into(),
            linux: Some(old::LinuxContainerConfig {
                resources: Some(old::LinuxContainerResources {
                    cpu_quota: 50_000,
                    memory_limit_in_bytes: 1 << 26,
                    unified: [("memory.high".to_string(), "1G".to_string())].into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let ours: new::CreateContainerRequest = reencode(&req);
    let c = ours.config.as_ref().unwrap();
    assert_eq!(
        c.image.as_ref().unwrap().user_specified_image,
        "busybox:latest"
    );
    let m = &c.mounts[0];
    assert!(m.readonly && m.recursive_read_only);
    assert_eq!(m.image.as_ref().unwrap().image, "sha256:abc");
    let r = c.linux.as_ref().unwrap().resources.as_ref().unwrap();
    assert_eq!((r.cpu_quota, r.memory_limit_in_bytes), (50_000, 1 << 26));
    // 1.33+ fields are absent, so zero
    assert_eq!(c.stop_signal, new::Signal::RuntimeDefault as i32);
    let back: old::CreateContainerRequest = reencode(&ours);
    assert_eq!(back, req);
}

#[test]
fn fields_of_136_survive_and_a_132_reader_skips_them() {
    // a 1.36 kubelet asks for SIGUSR1 on stop and mounts an image sub-path
    let cfg = new::ContainerConfig {
        metadata: Some(new::ContainerMetadata {
            name: "c".into(),
            attempt: 0,
        }),
        stop_signal: new::Signal::Sigusr1 as i32,
        mounts: vec![new::Mount {
            container_path: "/img".into(),
            image: Some(new::ImageSpec {
                image: "registry.k8s.io/kube-proxy:v1.36.0".into(),
                ..Default::default()
            }),
            image_sub_path: "etc".into(),
            readonly: true,
            ..Default::default()
        }],
        ..Default::default()
    };
    let again: new::ContainerConfig = reencode(&cfg);
    assert_eq!(again, cfg);
    let old_view: old::ContainerConfig = reencode(&cfg);
    assert_eq!(old_view.metadata.unwrap().name, "c");
    assert_eq!(old_view.mounts[0].container_path, "/img");
    // a 1.32 response decodes into ours with the newer response fields empty
    let st = old::StatusResponse {
        status: Some(old::RuntimeStatus {
            conditions: vec![old::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                ..Default::default()
            }],
        }),
        runtime_handlers: vec![old::RuntimeHandler {
            name: "crun".into(),
            features: Some(old::RuntimeHandlerFeatures {
                recursive_read_only_mounts: true,
                user_namespaces: true,
            }),
        }],
        ..Default::default()
    };
    let ours: new::StatusResponse = reencode(&st);
    assert!(ours.runtime_handlers[0].features.unwrap().user_namespaces);
    let back: old::StatusResponse = reencode(&ours);
    assert_eq!(back, st);
}

#[test]
fn the_services_keep_their_wire_names() {
    // the gRPC paths the kubelet calls are package.Service/Method
    use new::image_service_server::SERVICE_NAME as IMAGE;
    use new::runtime_service_server::SERVICE_NAME as RUNTIME;
    assert_eq!(RUNTIME, "runtime.v1.RuntimeService");
    assert_eq!(IMAGE, "runtime.v1.ImageService");
}
