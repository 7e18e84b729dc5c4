#!/usr/bin/env python3
"""Writes the seed corpus of the cri_requests target (corpus/cri_requests/): each file is the
target's selector byte followed by a protobuf-encoded request modelled on what the kubelet and
crictl send. Run once by hand when the selector table in fuzz_targets/cri_requests.rs changes:

    protoc --python_out=DIR -I <k8s-cri crate>/proto -I ../../api/proto v1.proto husk.proto
    PYTHONPATH=DIR python3 gen_seeds.py corpus/cri_requests     # needs `pip install protobuf`
"""
import base64, os, sys
import v1_pb2 as c, husk_pb2 as h

out = sys.argv[1]

def pod_config(**kw):
    cfg = c.PodSandboxConfig(
        metadata=c.PodSandboxMetadata(name="nginx-sandbox", namespace="default", uid="hdishd83djaidwnduwk28bcsb", attempt=1),
        hostname="nginx", log_directory="/var/log/pods/default_nginx_hdishd83",
        dns_config=c.DNSConfig(servers=["10.96.0.10"], searches=["default.svc.cluster.local", "svc.cluster.local"], options=["ndots:5"]),
        port_mappings=[c.PortMapping(protocol=c.TCP, container_port=80, host_port=8080, host_ip="127.0.0.1")],
        labels={"app": "nginx", "io.kubernetes.pod.name": "nginx"},
        annotations={"kubernetes.io/ingress-bandwidth": "10M", "kubernetes.io/egress-bandwidth": "1G"},
        linux=c.LinuxPodSandboxConfig(
            cgroup_parent="/kubepods/besteffort/podhdishd83",
            sysctls={"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"},
            security_context=c.LinuxSandboxSecurityContext(
                namespace_options=c.NamespaceOption(network=c.POD, pid=c.CONTAINER, ipc=c.POD),
                run_as_user=c.Int64Value(value=1000))))
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg

def container_config():
    return c.ContainerConfig(
        metadata=c.ContainerMetadata(name="nginx", attempt=0),
        image=c.ImageSpec(image="docker.io/library/nginx:1.27"),
        command=["/docker-entrypoint.sh"], args=["nginx", "-g", "daemon off;"],
        working_dir="/usr/share/nginx/html",
        envs=[c.KeyValue(key="NGINX_PORT", value="80"), c.KeyValue(key="PATH", value="/usr/bin:/bin")],
        mounts=[c.Mount(container_path="/etc/nginx/conf.d", host_path="/var/lib/kubelet/pods/x/volumes/conf", readonly=True,
                        propagation=c.PROPAGATION_HOST_TO_CONTAINER)],
        devices=[c.Device(container_path="/dev/fuse", host_path="/dev/fuse", permissions="rwm")],
        labels={"io.kubernetes.container.name": "nginx"},
        annotations={"io.kubernetes.container.restartCount": "0"},
        log_path="nginx/0.log", stdin=False, tty=False,
        linux=c.LinuxContainerConfig(
            resources=c.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                memory_limit_in_bytes=268435456, oom_score_adj=-997, cpuset_cpus="0-1", cpuset_mems="0",
                hugepage_limits=[c.HugepageLimit(page_size="2MB", limit=0)], unified={"memory.high": "200000000"}),
            security_context=c.LinuxContainerSecurityContext(
                capabilities=c.Capability(add_capabilities=["NET_ADMIN"], drop_capabilities=["ALL"]),
                namespace_options=c.NamespaceOption(network=c.POD, pid=c.CONTAINER, ipc=c.POD),
                run_as_user=c.Int64Value(value=101), run_as_group=c.Int64Value(value=101),
                supplemental_groups=[2000], readonly_rootfs=True, no_new_privs=True,
                masked_paths=["/proc/kcore"], readonly_paths=["/proc/sys"],
                seccomp=c.SecurityProfile(profile_type=c.SecurityProfile.RuntimeDefault),
                apparmor=c.SecurityProfile(profile_type=c.SecurityProfile.Unconfined))))

privileged = container_config()
privileged.linux.security_context.privileged = True
privileged.linux.security_context.seccomp_profile_path = "localhost/profiles/audit.json"
privileged.linux.security_context.ClearField("seccomp")
privileged.linux.security_context.namespace_options.pid = c.TARGET
privileged.linux.security_context.namespace_options.target_id = "c0ffee"
privileged.linux.security_context.run_as_username = "www"

userns_pod = pod_config()
userns_pod.linux.security_context.namespace_options.userns_options.CopyFrom(
    c.UserNamespace(mode=c.POD, uids=[c.IDMapping(host_id=65536, container_id=0, length=65536)],
                    gids=[c.IDMapping(host_id=65536, container_id=0, length=65536)]))
hostnet_pod = pod_config()
hostnet_pod.linux.security_context.namespace_options.network = c.NODE
hostnet_pod.linux.sysctls.clear()
hostnet_pod.linux.sysctls["kernel.msgmax"] = "65536"

auth = c.AuthConfig(auth=base64.b64encode(b"user:secret").decode(), server_address="registry.example:5000")
seeds = [
    (0, "run_pod", c.RunPodSandboxRequest(config=pod_config(), runtime_handler="runc")),
    (0, "run_pod_userns", c.RunPodSandboxRequest(config=userns_pod, runtime_handler="crun")),
    (0, "run_pod_hostnet", c.RunPodSandboxRequest(config=hostnet_pod)),
    (1, "create_container", c.CreateContainerRequest(pod_sandbox_id="abc123", config=container_config(), sandbox_config=pod_config())),
    (1, "create_privileged", c.CreateContainerRequest(pod_sandbox_id="abc", config=privileged)),
    (2, "update_resources", c.UpdateContainerResourcesRequest(container_id="c0ffee",
        linux=c.LinuxContainerResources(cpu_quota=20000, cpu_period=100000, memory_limit_in_bytes=134217728, memory_swap_limit_in_bytes=268435456))),
    (3, "list_containers", c.ListContainersRequest(filter=c.ContainerFilter(id="c0f", state=c.ContainerStateValue(state=c.CONTAINER_RUNNING),
        pod_sandbox_id="abc", label_selector={"app": "web"}))),
    (4, "list_pods", c.ListPodSandboxRequest(filter=c.PodSandboxFilter(state=c.PodSandboxStateValue(state=c.SANDBOX_READY), label_selector={"app": "web"}))),
    (5, "list_stats", c.ListContainerStatsRequest(filter=c.ContainerStatsFilter(pod_sandbox_id="abd"))),
    (6, "pull", c.PullImageRequest(image=c.ImageSpec(image="registry.example:5000/library/busybox:1.36"), auth=auth, sandbox_config=pod_config())),
    (6, "pull_digest", c.PullImageRequest(image=c.ImageSpec(image="busybox@sha256:" + "ab" * 32),
        auth=c.AuthConfig(username="u", password="p", identity_token="tok"))),
    (7, "image_status", c.ImageStatusRequest(image=c.ImageSpec(image="sha256:" + "cd" * 32), verbose=True)),
    (8, "remove_image", c.RemoveImageRequest(image=c.ImageSpec(image="localhost:5000/a/b/c:v1"))),
    (9, "list_images", c.ListImagesRequest(filter=c.ImageFilter(image=c.ImageSpec(image="docker.io/library/nginx")))),
    (10, "exec_sync", c.ExecSyncRequest(container_id="c0ffee", cmd=["sh", "-c", "echo hi"], timeout=5)),
    (11, "exec", c.ExecRequest(container_id="c0f", cmd=["sh"], tty=True, stdin=True, stdout=True)),
    (12, "attach", c.AttachRequest(container_id="c0ffed", stdin=True, stdout=True, stderr=True)),
    (13, "container_status", c.ContainerStatusRequest(container_id="c0ffe", verbose=True)),
    (14, "stop_container", c.StopContainerRequest(container_id="c0ffee", timeout=10)),
    (17, "checkpoint", c.CheckpointContainerRequest(container_id="c0ffee", location="/var/lib/kubelet/checkpoints/x.tar", timeout=30)),
    (19, "stop_pod", c.StopPodSandboxRequest(pod_sandbox_id="abd456")),
    (21, "port_forward", c.PortForwardRequest(pod_sandbox_id="abc", port=[80, 8080])),
    (22, "husk_pull", h.PullImageRequest(image="busybox", auth=h.AuthConfig(auth=base64.b64encode(b"a:b").decode()))),
    (23, "list_pod_stats", c.ListPodSandboxStatsRequest(filter=c.PodSandboxStatsFilter(id="ab", label_selector={"app": "web"}))),
]
for kind, name, msg in seeds:
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([kind]) + msg.SerializeToString())
print(len(seeds), "seeds")
