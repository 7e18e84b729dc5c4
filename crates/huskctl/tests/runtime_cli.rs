//! The built binary's pod and container verbs against an in-process fake huskd: a CRI
//! RuntimeService + ImageService on a unix socket that keeps pods and containers in memory,
//! writes container logs in the CRI format and records every request it gets.
#![forbid(unsafe_code)]

mod common;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, Records, Reply, cells, json, labels_match};
use k8s_cri::v1::*;
use serde_json::Value;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

#[derive(Default)]
struct State {
    pods: Vec<(PodSandbox, PodSandboxConfig)>,
    containers: Vec<(Container, String)>,
    images: Vec<String>,
    next: usize,
}

#[derive(Clone, Default)]
struct Fake {
    state: Arc<Mutex<State>>,
    calls: Recorder,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().expect("time")
}

/// One CRI log line.
fn log_line(stream: &str, tag: &str, text: &str) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    format!("{ts} {stream} {tag} {text}\n")
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write log");
}

impl Records for Fake {
    fn recorder(&self) -> &Recorder {
        &self.calls
    }
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("lock")
    }

    fn new_id(&self, prefix: char) -> String {
        let mut state = self.state();
        state.next += 1;
        format!("{}{:02}", prefix.to_string().repeat(62), state.next)
    }

    fn set_container_state(&self, id: &str, state: ContainerState) {
        for (c, _) in self.state().containers.iter_mut() {
            if c.id == id {
                c.state = state as i32;
            }
        }
    }

    fn container(&self, id: &str) -> Result<(Container, String), Status> {
        self.state()
            .containers
            .iter()
            .find(|(c, _)| c.id == id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("container {id:?} not found")))
    }

    fn pod(&self, id: &str) -> Result<(PodSandbox, PodSandboxConfig), Status> {
        self.state()
            .pods
            .iter()
            .find(|(p, _)| p.id == id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("pod sandbox {id:?} not found")))
    }
}

#[tonic::async_trait]
impl common::FakeRuntime for Fake {
    async fn run_pod_sandbox(
        &self,
        r: Request<RunPodSandboxRequest>,
    ) -> Reply<RunPodSandboxResponse> {
        let r = r.into_inner();
        self.record("RunPodSandbox", &r);
        let config = r.config.unwrap_or_default();
        let id = self.new_id('a');
        let pod = PodSandbox {
            id: id.clone(),
            metadata: config.metadata.clone(),
            state: PodSandboxState::SandboxReady as i32,
            created_at: now(),
            labels: config.labels.clone(),
            annotations: config.annotations.clone(),
            runtime_handler: r.runtime_handler,
        };
        self.state().pods.push((pod, config));
        Ok(Response::new(RunPodSandboxResponse { pod_sandbox_id: id }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> Reply<StopPodSandboxResponse> {
        let r = r.into_inner();
        self.record("StopPodSandbox", &r);
        self.pod(&r.pod_sandbox_id)?;
        let mut state = self.state();
        for (p, _) in state
            .pods
            .iter_mut()
            .filter(|(p, _)| p.id == r.pod_sandbox_id)
        {
            p.state = PodSandboxState::SandboxNotready as i32;
        }
        for (c, _) in state
            .containers
            .iter_mut()
            .filter(|(c, _)| c.pod_sandbox_id == r.pod_sandbox_id)
        {
            c.state = ContainerState::ContainerExited as i32;
        }
        Ok(Response::new(StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> Reply<RemovePodSandboxResponse> {
        let r = r.into_inner();
        self.record("RemovePodSandbox", &r);
        self.pod(&r.pod_sandbox_id)?;
        let mut state = self.state();
        state.pods.retain(|(p, _)| p.id != r.pod_sandbox_id);
        state
            .containers
            .retain(|(c, _)| c.pod_sandbox_id != r.pod_sandbox_id);
        Ok(Response::new(RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> Reply<PodSandboxStatusResponse> {
        let r = r.into_inner();
        self.record("PodSandboxStatus", &r);
        let (pod, config) = self.pod(&r.pod_sandbox_id)?;
        let namespaces = config
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options);
        let status = PodSandboxStatus {
            id: pod.id,
            metadata: pod.metadata,
            state: pod.state,
            created_at: pod.created_at,
            network: Some(PodSandboxNetworkStatus {
                ip: "10.88.0.7".into(),
                additional_ips: vec![],
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: namespaces,
                }),
            }),
            labels: pod.labels,
            annotations: pod.annotations,
            runtime_handler: pod.runtime_handler,
        };
        let mut info = HashMap::new();
        if r.verbose {
            info.insert("info".to_string(), r#"{"pid":4242}"#.to_string());
        }
        Ok(Response::new(PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: vec![],
            timestamp: now(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> Reply<ListPodSandboxResponse> {
        let r = r.into_inner();
        self.record("ListPodSandbox", &r);
        let filter = r.filter.unwrap_or_default();
        let items = self
            .state()
            .pods
            .iter()
            .map(|(p, _)| p.clone())
            .filter(|p| p.id.starts_with(&filter.id))
            .filter(|p| filter.state.is_none_or(|s| s.state == p.state))
            .filter(|p| labels_match(&p.labels, &filter.label_selector))
            .collect();
        Ok(Response::new(ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> Reply<CreateContainerResponse> {
        let r = r.into_inner();
        self.record("CreateContainer", &r);
        let (_, pod_config) = self.pod(&r.pod_sandbox_id)?;
        let config = r.config.unwrap_or_default();
        let id = self.new_id('c');
        let log_path = Path::new(&pod_config.log_directory)
            .join(&config.log_path)
            .display()
            .to_string();
        let container = Container {
            id: id.clone(),
            pod_sandbox_id: r.pod_sandbox_id,
            metadata: config.metadata,
            image: config.image,
            image_ref: "sha256:0123".into(),
            state: ContainerState::ContainerCreated as i32,
            created_at: now(),
            labels: config.labels,
            annotations: config.annotations,
            image_id: String::new(),
        };
        self.state().containers.push((container, log_path));
        Ok(Response::new(CreateContainerResponse { container_id: id }))
    }

    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> Reply<StartContainerResponse> {
        let r = r.into_inner();
        self.record("StartContainer", &r);
        let (container, log_path) = self.container(&r.container_id)?;
        if container
            .image
            .as_ref()
            .is_some_and(|i| i.image == "broken")
        {
            return Err(Status::failed_precondition("the image has no entrypoint"));
        }
        let log = [
            log_line("stdout", "F", "hello from husk"),
            log_line("stderr", "P", "warning: "),
            log_line("stderr", "F", "fake runtime"),
            log_line("stdout", "F", "bye"),
        ];
        append(Path::new(&log_path), &log.concat());
        self.set_container_state(&r.container_id, ContainerState::ContainerRunning);
        Ok(Response::new(StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<StopContainerRequest>,
    ) -> Reply<StopContainerResponse> {
        let r = r.into_inner();
        self.record("StopContainer", &r);
        self.container(&r.container_id)?;
        self.set_container_state(&r.container_id, ContainerState::ContainerExited);
        Ok(Response::new(StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> Reply<RemoveContainerResponse> {
        let r = r.into_inner();
        self.record("RemoveContainer", &r);
        self.container(&r.container_id)?;
        self.state()
            .containers
            .retain(|(c, _)| c.id != r.container_id);
        Ok(Response::new(RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> Reply<ListContainersResponse> {
        let r = r.into_inner();
        self.record("ListContainers", &r);
        let filter = r.filter.unwrap_or_default();
        let containers = self
            .state()
            .containers
            .iter()
            .map(|(c, _)| c.clone())
            .filter(|c| c.id.starts_with(&filter.id))
            .filter(|c| c.pod_sandbox_id.starts_with(&filter.pod_sandbox_id))
            .filter(|c| filter.state.is_none_or(|s| s.state == c.state))
            .filter(|c| labels_match(&c.labels, &filter.label_selector))
            .collect();
        Ok(Response::new(ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> Reply<ContainerStatusResponse> {
        let r = r.into_inner();
        self.record("ContainerStatus", &r);
        let (c, log_path) = self.container(&r.container_id)?;
        let status = ContainerStatus {
            id: c.id,
            metadata: c.metadata,
            state: c.state,
            created_at: c.created_at,
            image: c.image,
            image_ref: c.image_ref,
            labels: c.labels,
            log_path,
            ..Default::default()
        };
        let mut info = HashMap::new();
        if r.verbose {
            info.insert("info".to_string(), r#"{"pid":4343,"sandboxID":"x"}"#.into());
        }
        Ok(Response::new(ContainerStatusResponse {
            status: Some(status),
            info,
        }))
    }

    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> Reply<ExecSyncResponse> {
        let r = r.into_inner();
        self.record("ExecSync", &r);
        self.container(&r.container_id)?;
        let response = match r.cmd.first().map(String::as_str) {
            Some("fail") => ExecSyncResponse {
                stdout: b"partial output\n".to_vec(),
                stderr: b"boom\n".to_vec(),
                exit_code: 3,
            },
            _ => ExecSyncResponse {
                stdout: format!("ran: {}\n", r.cmd.join("|")).into_bytes(),
                stderr: Vec::new(),
                exit_code: 0,
            },
        };
        Ok(Response::new(response))
    }
}

#[tonic::async_trait]
impl common::FakeImages for Fake {
    async fn image_status(&self, r: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let r = r.into_inner();
        self.record("ImageStatus", &r);
        let name = r.image.map(|i| i.image).unwrap_or_default();
        let image = self.state().images.contains(&name).then(|| Image {
            id: "sha256:0123".into(),
            repo_tags: vec![name],
            ..Default::default()
        });
        Ok(Response::new(ImageStatusResponse {
            image,
            info: HashMap::new(),
        }))
    }

    async fn pull_image(&self, r: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let r = r.into_inner();
        self.record("PullImage", &r);
        let name = r.image.map(|i| i.image).unwrap_or_default();
        self.state().images.push(name);
        Ok(Response::new(PullImageResponse {
            image_ref: "sha256:0123".into(),
        }))
    }
}

/// A fake huskd in a temp dir (which also holds the configs and logs) until dropped.
type Daemon = common::Daemon<Fake>;

/// A fake huskd with or without the RuntimeService (the ImageService is always served).
async fn start(with_runtime: bool) -> Daemon {
    let fake = Fake::default();
    let mut routes = Routes::new(common::image_service(fake.clone()));
    if with_runtime {
        routes = routes.add_service(common::runtime_service(fake.clone()));
    }
    Daemon::start(fake, routes)
}

impl Daemon {
    /// Writes a file in the temp dir; returns its path as a string.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir().join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }

    fn logs_dir(&self) -> String {
        self.dir().join("logs").display().to_string()
    }

    /// A pod config in crictl's snake_case JSON.
    fn pod_json(&self, name: &str) -> String {
        let text = format!(
            r#"{{"metadata": {{"name": "{name}", "namespace": "default", "attempt": 1,
                "uid": "hdishd83djaidwnduwk28bcsb"}},
               "log_directory": "{}", "labels": {{"app": "{name}"}}, "linux": {{}}}}"#,
            self.logs_dir()
        );
        self.file(&format!("{name}.json"), &text)
    }

    /// A container config in camelCase YAML.
    fn container_yaml(&self, name: &str, image: &str) -> String {
        let text = format!(
            "metadata:\n  name: {name}\nimage:\n  image: {image}\n\
             command: [sh, -c, 'echo hello from husk']\nlogPath: {name}.log\n\
             labels:\n  tier: web\nlinux: {{}}\n"
        );
        self.file(&format!("{name}.yaml"), &text)
    }

    /// `runp` + `create` + `start`; returns (pod ID, container ID).
    async fn running_container(&self, name: &str) -> (String, String) {
        std::fs::create_dir_all(self.logs_dir()).expect("logs dir");
        let pod_config = self.pod_json(&format!("{name}-sandbox"));
        let pod = self.ok(&["runp", &pod_config]).await.trim().to_string();
        let config = self.container_yaml(name, "busybox");
        let ctr = self
            .ok(&["create", &pod, &config, &pod_config])
            .await
            .trim()
            .to_string();
        self.ok(&["start", &ctr]).await;
        (pod, ctr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runp_pods_inspectp_stopp_rmp() {
    let d = start(true).await;
    // camelCase YAML, enum names, a label key that must stay as written.
    let config = d.file(
        "pod.yaml",
        "metadata: {name: nginx-sandbox, namespace: default, attempt: 1, uid: u1}\n\
         logDirectory: /tmp\n\
         labels: {someLabel: x}\n\
         linux:\n  securityContext:\n    namespaceOptions: {network: NODE, pid: POD}\n    \
         seccomp: {profileType: RuntimeDefault}\n",
    );
    let id = d.ok(&["runp", "--runtime", "runc", &config]).await;
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    let sent = &d.fake.requests("RunPodSandbox")[0];
    assert_eq!(sent["runtime_handler"], "runc");
    assert_eq!(sent["config"]["metadata"]["name"], "nginx-sandbox");
    assert_eq!(sent["config"]["log_directory"], "/tmp");
    assert_eq!(sent["config"]["labels"]["someLabel"], "x");
    let sc = &sent["config"]["linux"]["security_context"];
    assert_eq!(sc["namespace_options"]["network"], 2);
    assert_eq!(sc["namespace_options"]["pid"], 0);
    assert_eq!(sc["seccomp"]["profile_type"], 0);
    assert_eq!(sc["run_as_user"], Value::Null);

    let other = d.pod_json("web");
    let web = d.ok(&["runp", &other]).await.trim().to_string();

    let table = d.ok(&["pods"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "POD ID",
            "CREATED",
            "STATE",
            "NAME",
            "NAMESPACE",
            "ATTEMPT",
            "RUNTIME"
        ]
    );
    assert_eq!(lines.len(), 3, "{table}");
    // Newest first.
    let row = cells(lines[1]);
    assert_eq!(row[0], &web[..13]);
    assert!(row[1].ends_with(" ago"), "{table}");
    assert_eq!(row[2..], ["Ready", "web", "default", "1", "(default)"]);
    assert_eq!(cells(lines[2])[6], "runc");

    assert_eq!(d.ok(&["pods", "-q"]).await, format!("{web}\n{id}\n"));
    assert_eq!(d.ok(&["pods", "-q", "--latest"]).await, format!("{web}\n"));
    assert_eq!(
        d.ok(&["pods", "-q", "--name", "^ngi"]).await,
        format!("{id}\n")
    );
    assert_eq!(d.ok(&["pods", "-q", "--namespace", "kube"]).await, "");
    assert!(d.ok(&["pods", "--no-trunc"]).await.contains(&id));

    d.fake.clear_requests();
    assert_eq!(
        d.ok(&[
            "pods", "-q", "--label", "app=web", "--state", "READY", "--id", "a"
        ])
        .await,
        format!("{web}\n")
    );
    let filter = &d.fake.requests("ListPodSandbox")[0]["filter"];
    assert_eq!(filter["label_selector"]["app"], "web");
    assert_eq!(filter["state"]["state"], 0);
    assert_eq!(filter["id"], "a");

    let doc = json(&d.ok(&["pods", "-o", "json"]).await);
    assert_eq!(doc["items"][0]["state"], "SANDBOX_READY");
    assert_eq!(doc["items"][1]["metadata"]["name"], "nginx-sandbox");
    let yaml = d.ok(&["pods", "-o", "yaml"]).await;
    assert!(yaml.contains("state: SANDBOX_READY"), "{yaml}");

    let doc = json(&d.ok(&["inspectp", &id]).await);
    assert_eq!(doc["status"]["id"], id.as_str());
    assert_eq!(doc["status"]["state"], "SANDBOX_READY");
    assert_eq!(
        doc["status"]["linux"]["namespaces"]["options"]["network"],
        "NODE"
    );
    assert_eq!(doc["info"]["pid"], 4242);
    assert_eq!(d.fake.requests("PodSandboxStatus")[0]["verbose"], true);

    let err = d.fails(&["rmp", &id]).await;
    assert_eq!(
        err,
        format!("huskctl: pod sandbox {id} is running, stop it first (or use rmp -f)\n")
    );
    assert_eq!(
        d.ok(&["stopp", &id]).await,
        format!("Stopped sandbox {id}\n")
    );
    assert_eq!(
        d.ok(&["pods", "-q", "--state", "notready"]).await,
        format!("{id}\n")
    );
    assert_eq!(d.ok(&["rmp", &id]).await, format!("Removed sandbox {id}\n"));

    // Several IDs: every failure is reported, the rest still happen.
    let out = d.huskctl(&["rmp", "-f", "nosuch", &web]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Removed sandbox {web}\n")
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "huskctl: pod sandbox \"nosuch\" not found\n"
    );
    assert_eq!(d.ok(&["pods", "-q"]).await, "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_start_ps_inspect_stop_rm() {
    let d = start(true).await;
    std::fs::create_dir_all(d.logs_dir()).expect("logs dir");
    let pod_config = d.pod_json("busybox-sandbox");
    let pod = d.ok(&["runp", &pod_config]).await.trim().to_string();
    let config = d.container_yaml("busybox", "busybox");

    // The image is missing: create pulls it first, with the pod config.
    d.fake.clear_requests();
    let ctr = d.ok(&["create", &pod, &config, &pod_config]).await;
    let ctr = ctr.trim().to_string();
    assert_eq!(
        d.fake.rpcs(),
        ["ImageStatus", "PullImage", "CreateContainer"]
    );
    let pull = &d.fake.requests("PullImage")[0];
    assert_eq!(pull["image"]["image"], "busybox");
    assert_eq!(
        pull["sandbox_config"]["metadata"]["name"],
        "busybox-sandbox"
    );
    let create = &d.fake.requests("CreateContainer")[0];
    assert_eq!(create["pod_sandbox_id"], pod.as_str());
    assert_eq!(create["config"]["log_path"], "busybox.log");
    assert_eq!(
        create["config"]["command"],
        serde_json::json!(["sh", "-c", "echo hello from husk"])
    );
    assert_eq!(create["config"]["labels"]["tier"], "web");
    assert_eq!(
        create["sandbox_config"]["log_directory"],
        d.logs_dir().as_str()
    );

    // Present now: no second pull; --no-pull skips even the check.
    d.fake.clear_requests();
    let second = d.ok(&["create", &pod, &config, &pod_config]).await;
    assert_eq!(d.fake.rpcs(), ["ImageStatus", "CreateContainer"]);
    d.fake.clear_requests();
    d.ok(&["create", "--no-pull", &pod, &config, &pod_config])
        .await;
    assert_eq!(d.fake.rpcs(), ["CreateContainer"]);

    // Without -a, ps lists running containers only (nothing yet).
    assert_eq!(d.ok(&["ps", "-q"]).await, "");
    let state = &d.fake.requests("ListContainers")[0]["filter"]["state"];
    assert_eq!(state["state"], 1);

    assert_eq!(d.ok(&["start", &ctr]).await, format!("{ctr}\n"));
    assert_eq!(
        d.fake.requests("StartContainer")[0]["container_id"],
        ctr.as_str()
    );

    let table = d.ok(&["ps"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "CONTAINER",
            "IMAGE",
            "CREATED",
            "STATE",
            "NAME",
            "ATTEMPT",
            "POD ID",
            "POD"
        ]
    );
    assert_eq!(lines.len(), 2, "{table}");
    let row = cells(lines[1]);
    assert_eq!(row[0], &ctr[..13]);
    assert_eq!(row[1], "busybox");
    assert!(row[2].ends_with(" ago"), "{table}");
    assert_eq!(
        row[3..],
        ["Running", "busybox", "0", &pod[..13], "busybox-sandbox"]
    );

    let all = d.ok(&["ps", "-a", "-q"]).await;
    assert_eq!(all.lines().count(), 3, "{all}");
    assert_eq!(
        d.ok(&["ps", "-a", "-q", "--latest"]).await.lines().count(),
        1
    );
    assert_eq!(
        d.ok(&["ps", "-q", "--state", "created"])
            .await
            .lines()
            .count(),
        2
    );
    assert_eq!(d.ok(&["ps", "-a", "-q", "--name", "^nomatch"]).await, "");
    d.fake.clear_requests();
    d.ok(&[
        "ps", "-a", "--pod", &pod, "--label", "tier=web", "--id", "c",
    ])
    .await;
    let filter = &d.fake.requests("ListContainers")[0]["filter"];
    assert_eq!(filter["pod_sandbox_id"], pod.as_str());
    assert_eq!(filter["label_selector"]["tier"], "web");
    assert_eq!(filter["id"], "c");
    assert_eq!(filter["state"], Value::Null);
    assert!(d.ok(&["ps", "--no-trunc"]).await.contains(&ctr));

    let doc = json(&d.ok(&["ps", "-o", "json"]).await);
    assert_eq!(doc["containers"][0]["id"], ctr.as_str());
    assert_eq!(doc["containers"][0]["state"], "CONTAINER_RUNNING");

    let doc = json(&d.ok(&["inspect", &ctr]).await);
    assert_eq!(doc["status"]["state"], "CONTAINER_RUNNING");
    assert_eq!(doc["status"]["metadata"]["name"], "busybox");
    assert_eq!(doc["info"]["pid"], 4343);
    let yaml = d.ok(&["inspect", "-o", "yaml", &ctr]).await;
    assert!(yaml.starts_with("status:\n"), "{yaml}");

    let err = d.fails(&["rm", &ctr]).await;
    assert_eq!(
        err,
        format!("huskctl: container {ctr} is running, stop it first (or use rm -f)\n")
    );
    assert_eq!(d.ok(&["stop", "-t", "5", &ctr]).await, format!("{ctr}\n"));
    assert_eq!(d.fake.requests("StopContainer")[0]["timeout"], 5);
    assert_eq!(d.ok(&["rm", &ctr]).await, format!("{ctr}\n"));

    let second = second.trim();
    d.ok(&["start", second]).await;
    d.fake.clear_requests();
    assert_eq!(d.ok(&["rm", "-f", second]).await, format!("{second}\n"));
    assert_eq!(
        d.fake.rpcs(),
        ["ContainerStatus", "StopContainer", "RemoveContainer"]
    );
    assert_eq!(d.fake.requests("StopContainer")[0]["timeout"], 0);
    assert_eq!(d.ok(&["rm", "-a"]).await.lines().count(), 1);
    assert_eq!(d.ok(&["ps", "-a", "-q"]).await, "");

    let err = d.fails(&["inspect", "nosuch"]).await;
    assert_eq!(err, "huskctl: container \"nosuch\" not found\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_split_streams() {
    let d = start(true).await;
    let (_, ctr) = d.running_container("busybox").await;

    let out = d.huskctl(&["logs", &ctr]).await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello from husk\nbye\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "warning: fake runtime\n"
    );

    assert_eq!(d.ok(&["logs", "--tail", "1", &ctr]).await, "bye\n");
    let stamped = d.ok(&["logs", "-t", &ctr]).await;
    let first = stamped.lines().next().unwrap_or_default();
    let (ts, text) = first.split_once(' ').expect("timestamp prefix");
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{first}");
    assert_eq!(text, "hello from husk");
    assert_eq!(
        d.ok(&["logs", "--since", "2000-01-01T00:00:00Z", &ctr])
            .await,
        "hello from husk\nbye\n"
    );
    assert_eq!(
        d.ok(&["logs", "--since", "2999-01-01T00:00:00Z", &ctr])
            .await,
        ""
    );

    let err = d.fails(&["logs", "nosuch"]).await;
    assert_eq!(err, "huskctl: container \"nosuch\" not found\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_until_the_container_exits() {
    let d = start(true).await;
    let (_, ctr) = d.running_container("busybox").await;
    let log = Path::new(&d.logs_dir()).join("busybox.log");

    let child = d
        .command(&["logs", "-f", "--tail", "1", &ctr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn huskctl");
    tokio::time::sleep(Duration::from_millis(300)).await;
    append(&log, &log_line("stdout", "P", "more "));
    tokio::time::sleep(Duration::from_millis(200)).await;
    append(&log, &log_line("stdout", "F", "output"));
    append(&log, &log_line("stderr", "F", "an error"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The container's last line, then its exit.
    append(&log, &log_line("stdout", "F", "last words"));
    d.fake
        .set_container_state(&ctr, ContainerState::ContainerExited);

    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("logs -f ends after the container exits")
        .expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bye\nmore output\nlast words\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "an error\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_passes_output_and_exit_code() {
    let d = start(true).await;
    let (_, ctr) = d.running_container("busybox").await;

    let out = d.ok(&["exec", "-s", &ctr, "sh", "-c", "echo hi"]).await;
    assert_eq!(out, "ran: sh|-c|echo hi\n");
    let sent = &d.fake.requests("ExecSync")[0];
    assert_eq!(sent["container_id"], ctr.as_str());
    assert_eq!(sent["timeout"], 0);

    d.ok(&["exec", "--timeout", "7", &ctr, "ls", "-la"]).await;
    let sent = &d.fake.requests("ExecSync")[1];
    assert_eq!(sent["timeout"], 7);
    assert_eq!(sent["cmd"], serde_json::json!(["ls", "-la"]));

    let out = d.huskctl(&["exec", &ctr, "fail"]).await;
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial output\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "boom\n");

    // -i/-t stream through the CRI Exec RPC, which this fake does not serve
    // (tests/stream_cli.rs covers the streaming itself).
    let err = d.fails(&["exec", "-it", &ctr, "sh"]).await;
    assert!(err.contains("huskd does not implement Exec"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_pulls_runs_creates_starts() {
    let d = start(true).await;
    std::fs::create_dir_all(d.logs_dir()).expect("logs dir");
    let pod_config = d.pod_json("run-sandbox");
    let config = d.container_yaml("app", "busybox");

    let id = d
        .ok(&["run", "--runtime", "kata", &config, &pod_config])
        .await;
    let id = id.trim();
    assert_eq!(
        d.fake.rpcs(),
        [
            "ImageStatus",
            "PullImage",
            "RunPodSandbox",
            "CreateContainer",
            "StartContainer"
        ]
    );
    assert_eq!(
        d.fake.requests("RunPodSandbox")[0]["runtime_handler"],
        "kata"
    );
    assert_eq!(d.fake.requests("StartContainer")[0]["container_id"], id);
    assert_eq!(d.ok(&["ps", "-q"]).await, format!("{id}\n"));

    // A failed start removes the pod it made.
    d.fake.clear_requests();
    let broken = d.container_yaml("broken", "broken");
    let err = d.fails(&["run", "--no-pull", &broken, &pod_config]).await;
    let pod = d.fake.requests("RunPodSandbox")[0].clone();
    assert!(pod.is_object());
    let removed = &d.fake.requests("RemovePodSandbox")[0]["pod_sandbox_id"];
    let removed = removed.as_str().unwrap_or_default();
    assert_eq!(
        err,
        format!("huskctl: the image has no entrypoint (pod {removed} was removed)\n")
    );
    assert_eq!(d.ok(&["pods", "-q"]).await.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_and_examples() {
    let d = start(true).await;
    let bad = d.file(
        "bad.json",
        r#"{"metadata": {"name": "x", "attempt": "one"}}"#,
    );
    let err = d.fails(&["runp", &bad]).await;
    assert_eq!(
        err,
        format!("huskctl: {bad}: metadata.attempt: expected a number, found \"one\"\n")
    );
    assert!(d.fake.requests("RunPodSandbox").is_empty());

    let odd = d.file(
        "odd.json",
        r#"{"metadata": {"name": "x"}, "colour": "red"}"#,
    );
    let out = d.huskctl(&["runp", &odd]).await;
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("huskctl: warning: {odd}: unknown field \"colour\" ignored\n")
    );

    let err = d.fails(&["runp", "/nonexistent/pod.json"]).await;
    assert_eq!(
        err,
        "huskctl: cannot read /nonexistent/pod.json: No such file or directory (os error 2)\n"
    );

    // The shipped examples are accepted as they are.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let pod = examples.join("pod.json").display().to_string();
    let id = d.ok(&["runp", &pod]).await;
    let sent = d.fake.requests("RunPodSandbox");
    let sent = sent.last().expect("sent");
    assert_eq!(sent["config"]["log_directory"], "/tmp/husk-demo-logs");
    let container = examples.join("container.json").display().to_string();
    d.ok(&["create", "--no-pull", id.trim(), &container, &pod])
        .await;
    let sent = &d.fake.requests("CreateContainer")[0]["config"];
    assert_eq!(sent["image"]["image"], "busybox");
    assert_eq!(
        sent["command"],
        serde_json::json!(["sh", "-c", "echo hello from husk; sleep 1"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_runtime_is_named() {
    let d = start(false).await;
    let err = d.fails(&["ps"]).await;
    assert_eq!(err, "huskctl: huskd does not implement ListContainers\n");
    let err = d.fails(&["stopp", "x"]).await;
    assert_eq!(err, "huskctl: huskd does not implement StopPodSandbox\n");
}
