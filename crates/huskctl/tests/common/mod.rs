//! What the tests that run the built huskctl share: a fake huskd on a unix socket in a temp dir
//! ([`Daemon`]), CRI services whose RPCs all answer UNIMPLEMENTED unless a test's fake says
//! otherwise ([`FakeRuntime`], [`FakeImages`]), a log of the requests a fake got ([`Records`]),
//! and helpers to run huskctl and read what it printed.
//!
//! Each test binary includes this module (`mod common;`) and uses only part of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use k8s_cri::v1::image_service_server::{ImageService, ImageServiceServer};
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use k8s_cri::v1::*;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status};

pub type Reply<T> = Result<Response<T>, Status>;

/// What a fake's `GetContainerEvents` answers with.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

/// The answer of an RPC a fake does not serve.
pub fn unimplemented<T>(rpc: &str) -> Reply<T> {
    Err(Status::unimplemented(format!("{rpc} is not implemented")))
}

/// A fake's service, served as the real CRI service: `RuntimeServiceServer::new(Served(fake))`.
#[derive(Clone)]
pub struct Served<F>(pub F);

/// Declares a trait with the unary RPCs of a tonic service, each answering UNIMPLEMENTED unless
/// overridden, and the service for [`Served`] fakes that have the trait; `extra` holds the
/// other (streaming) RPCs, as trait items and as service items.
macro_rules! fake_service {
    (
        $(#[$meta:meta])*
        trait $Fake:ident serves $Service:ident {
            $($method:ident($Req:ident) -> $Resp:ident = $rpc:literal;)*
        }
        extra trait { $($trait_extra:tt)* }
        extra service { $($service_extra:tt)* }
    ) => {
        $(#[$meta])*
        #[tonic::async_trait]
        pub trait $Fake: Send + Sync + 'static {
            $(
                async fn $method(&self, _: Request<$Req>) -> Reply<$Resp> {
                    unimplemented($rpc)
                }
            )*
            $($trait_extra)*
        }

        #[tonic::async_trait]
        impl<F: $Fake> $Service for Served<F> {
            $(
                async fn $method(&self, r: Request<$Req>) -> Reply<$Resp> {
                    $Fake::$method(&self.0, r).await
                }
            )*
            $($service_extra)*
        }
    };
}

fake_service! {
    /// A fake CRI RuntimeService: override the RPCs a test needs.
    trait FakeRuntime serves RuntimeService {
        version(VersionRequest) -> VersionResponse = "Version";
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox";
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox";
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse =
            "RemovePodSandbox";
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse =
            "PodSandboxStatus";
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox";
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer";
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer";
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers";
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
        update_container_resources(UpdateContainerResourcesRequest)
            -> UpdateContainerResourcesResponse = "UpdateContainerResources";
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse =
            "ReopenContainerLog";
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
        exec(ExecRequest) -> ExecResponse = "Exec";
        attach(AttachRequest) -> AttachResponse = "Attach";
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward";
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse =
            "ListContainerStats";
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats";
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse =
            "ListPodSandboxStats";
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse =
            "UpdateRuntimeConfig";
        status(StatusRequest) -> StatusResponse = "Status";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse =
            "CheckpointContainer";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse =
            "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse =
            "ListPodSandboxMetrics";
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse = "RuntimeConfig";
    }
    extra trait {
        async fn get_container_events(&self, _: Request<GetEventsRequest>) -> Reply<EventStream> {
            unimplemented("GetContainerEvents")
        }
    }
    extra service {
        type GetContainerEventsStream = EventStream;

        async fn get_container_events(&self, r: Request<GetEventsRequest>) -> Reply<EventStream> {
            FakeRuntime::get_container_events(&self.0, r).await
        }
    }
}

fake_service! {
    /// A fake CRI ImageService: override the RPCs a test needs.
    trait FakeImages serves ImageService {
        list_images(ListImagesRequest) -> ListImagesResponse = "ListImages";
        image_status(ImageStatusRequest) -> ImageStatusResponse = "ImageStatus";
        pull_image(PullImageRequest) -> PullImageResponse = "PullImage";
        remove_image(RemoveImageRequest) -> RemoveImageResponse = "RemoveImage";
        image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse = "ImageFsInfo";
    }
    extra trait {}
    extra service {}
}

/// `fake` as the CRI RuntimeService.
pub fn runtime_service<F: FakeRuntime>(fake: F) -> RuntimeServiceServer<Served<F>> {
    RuntimeServiceServer::new(Served(fake))
}

/// `fake` as the CRI ImageService.
pub fn image_service<F: FakeImages>(fake: F) -> ImageServiceServer<Served<F>> {
    ImageServiceServer::new(Served(fake))
}

/// Whether `labels` has every pair of a CRI label selector.
pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The requests a fake got, as JSON, each with the name of its RPC.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<(String, Value)>>>);

/// A fake that records its requests; the methods tests use to check them.
pub trait Records {
    fn recorder(&self) -> &Recorder;

    fn record<T: Serialize>(&self, rpc: &str, request: &T) {
        let value = serde_json::to_value(request).expect("serialize request");
        self.log().push((rpc.to_string(), value));
    }

    /// The requests made to `rpc`, oldest first.
    fn requests(&self, rpc: &str) -> Vec<Value> {
        self.log()
            .iter()
            .filter(|(r, _)| r == rpc)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The RPCs called, oldest first.
    fn rpcs(&self) -> Vec<String> {
        self.log().iter().map(|(r, _)| r.clone()).collect()
    }

    fn clear_requests(&self) {
        self.log().clear();
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Vec<(String, Value)>> {
        self.recorder().0.lock().expect("lock")
    }
}

/// The built huskctl, blind to the endpoints set in the environment the tests run in.
pub fn huskctl_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_huskctl"));
    cmd.env_remove("HUSK_ENDPOINT")
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
        .env_remove("HUSK_METRICS_URL");
    cmd
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A JSON document, or a panic showing the text.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Table cells: columns are at least 3 spaces apart, cells never hold 3 spaces.
pub fn cells(line: &str) -> Vec<&str> {
    line.split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// A fake huskd serving gRPC on `husk.sock` in a temp dir, until dropped.
pub struct Daemon<F> {
    dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub fake: F,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl<F> Drop for Daemon<F> {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl<F> Daemon<F> {
    /// Serves `routes` (built over `fake`) on a new socket.
    pub fn start(fake: F, routes: Routes) -> Daemon<F> {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("husk.sock");
        let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
        let router = tonic::transport::Server::builder().add_routes(routes);
        let server = tokio::spawn(async move {
            router
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await
                .expect("serve");
        });
        Daemon {
            dir,
            sock,
            fake,
            tasks: vec![server],
        }
    }

    /// Aborts `task` too when the daemon is dropped.
    pub fn keep(&mut self, task: tokio::task::JoinHandle<()>) {
        self.tasks.push(task);
    }

    /// The temp dir, which also holds the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// huskctl pointed at this daemon, killed if dropped unfinished.
    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(huskctl_command());
        cmd.arg("-r").arg(&self.sock).args(args).kill_on_drop(true);
        cmd
    }

    /// Runs huskctl with no stdin.
    pub async fn huskctl(&self, args: &[&str]) -> Output {
        self.run(args, None).await
    }

    /// Runs huskctl with `input` on its stdin.
    pub async fn huskctl_with_input(&self, args: &[&str], input: &[u8]) -> Output {
        self.run(args, Some(input)).await
    }

    async fn run(&self, args: &[&str], input: Option<&[u8]>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn huskctl");
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(data).await.expect("write stdin");
        }
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("huskctl {args:?} hung"))
            .expect("run huskctl")
    }

    /// Runs huskctl, expecting success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        succeeded(args, &self.huskctl(args).await)
    }

    /// Runs huskctl with `input` on its stdin, expecting success; returns stdout.
    pub async fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        succeeded(args, &self.huskctl_with_input(args, input).await)
    }

    /// Runs huskctl, expecting exit status 1; returns stderr.
    pub async fn fails(&self, args: &[&str]) -> String {
        failed(args, &self.huskctl(args).await).1
    }

    /// Runs huskctl with `input` on its stdin, expecting exit status 1; returns stderr.
    pub async fn fails_with_input(&self, args: &[&str], input: &[u8]) -> String {
        failed(args, &self.huskctl_with_input(args, input).await).1
    }

    /// Runs huskctl, expecting exit status 1; returns (stdout, stderr).
    pub async fn fails_with_output(&self, args: &[&str]) -> (String, String) {
        failed(args, &self.huskctl(args).await)
    }
}

fn succeeded(args: &[&str], out: &Output) -> String {
    assert!(
        out.status.success(),
        "huskctl {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn failed(args: &[&str], out: &Output) -> (String, String) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "huskctl {args:?}: stdout {}",
        text(&out.stdout)
    );
    (text(&out.stdout), text(&out.stderr))
}
