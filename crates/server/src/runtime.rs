//! CRI `RuntimeService` handlers. `Version` and `Status` answer for real; the pod and container
//! RPCs answer `UNIMPLEMENTED` naming the RPC until the engine implements them.

use std::pin::Pin;

use futures::Stream;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::Services;
use crate::status::unimplemented;

pub struct Runtime {
    pub(crate) s: Services,
}

/// The CRI API version husk implements.
pub const CRI_API_VERSION: &str = "v1";

/// Checks that the OCI runtime binary runs: `<path> --version`.
async fn runtime_condition(path: &str, name: &str) -> cri::RuntimeCondition {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio::process::Command::new(path).arg("--version").output(),
    )
    .await;
    let (status, reason, message) = match out {
        Ok(Ok(o)) if o.status.success() => (true, String::new(), String::new()),
        Ok(Ok(o)) => (
            false,
            "RuntimeBinaryFailed".to_string(),
            format!(
                "{path} --version exited with {}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Ok(Err(e)) => (
            false,
            "RuntimeBinaryNotFound".to_string(),
            format!("OCI runtime {name} ({path}) cannot run: {e}"),
        ),
        Err(_) => (
            false,
            "RuntimeBinaryTimeout".to_string(),
            format!("{path} --version did not answer within 5s"),
        ),
    };
    cri::RuntimeCondition {
        r#type: "RuntimeReady".into(),
        status,
        reason,
        message,
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RuntimeService for Runtime {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "husk".into(),
            runtime_version: self.s.info.version.clone(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let info = &self.s.info;
        let runtime = runtime_condition(&info.runtime_path, &info.runtime_name).await;
        let network = cri::RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: false,
            reason: "NetworkPluginNotReady".into(),
            message: "husk does not set up pod networking (CNI) yet".into(),
        };
        let mut verbose = std::collections::HashMap::new();
        if request.get_ref().verbose {
            verbose.insert("config".to_string(), info.config_json.to_string());
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info: verbose,
            runtime_handlers: vec![],
            features: None,
        }))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(unimplemented("GetContainerEvents"))
    }

    async fn run_pod_sandbox(
        &self,
        _r: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        Err(unimplemented("RunPodSandbox"))
    }

    async fn stop_pod_sandbox(
        &self,
        _r: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        Err(unimplemented("StopPodSandbox"))
    }

    async fn remove_pod_sandbox(
        &self,
        _r: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        Err(unimplemented("RemovePodSandbox"))
    }

    async fn pod_sandbox_status(
        &self,
        _r: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        Err(unimplemented("PodSandboxStatus"))
    }

    async fn list_pod_sandbox(
        &self,
        _r: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        Err(unimplemented("ListPodSandbox"))
    }

    async fn create_container(
        &self,
        _r: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        Err(unimplemented("CreateContainer"))
    }

    async fn start_container(
        &self,
        _r: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        Err(unimplemented("StartContainer"))
    }

    async fn stop_container(
        &self,
        _r: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        Err(unimplemented("StopContainer"))
    }

    async fn remove_container(
        &self,
        _r: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        Err(unimplemented("RemoveContainer"))
    }

    async fn list_containers(
        &self,
        _r: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        Err(unimplemented("ListContainers"))
    }

    async fn container_status(
        &self,
        _r: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        Err(unimplemented("ContainerStatus"))
    }

    async fn update_container_resources(
        &self,
        _r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        Err(unimplemented("UpdateContainerResources"))
    }

    async fn reopen_container_log(
        &self,
        _r: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        Err(unimplemented("ReopenContainerLog"))
    }

    async fn exec_sync(
        &self,
        _r: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        Err(unimplemented("ExecSync"))
    }

    async fn exec(
        &self,
        _r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        Err(unimplemented("Exec"))
    }

    async fn attach(
        &self,
        _r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        Err(unimplemented("Attach"))
    }

    async fn port_forward(
        &self,
        _r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        Err(unimplemented("PortForward"))
    }

    async fn container_stats(
        &self,
        _r: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        Err(unimplemented("ContainerStats"))
    }

    async fn list_container_stats(
        &self,
        _r: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        Err(unimplemented("ListContainerStats"))
    }

    async fn pod_sandbox_stats(
        &self,
        _r: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        Err(unimplemented("PodSandboxStats"))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        Err(unimplemented("ListPodSandboxStats"))
    }

    async fn update_runtime_config(
        &self,
        _r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        Err(unimplemented("UpdateRuntimeConfig"))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(unimplemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Err(unimplemented("RuntimeConfig"))
    }
}
