//! CRI `RuntimeService` handlers: validate, convert, call the engine (or, for Exec, Attach and
//! PortForward, hand out a streaming URL).

use std::pin::Pin;

use futures::Stream;
use k8s_cri::v1 as cri;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use crate::Services;
use husk_engine::{CgroupDriver, EngineError};

use crate::status::EngineErr;
use crate::{convert_container, convert_pod};

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

/// A streaming-server refusal as a gRPC status.
fn streaming_err(e: husk_streaming::Error) -> Status {
    match e {
        husk_streaming::Error::InvalidRequest(m) => Status::invalid_argument(m),
        husk_streaming::Error::TooManyRequests(_) => Status::resource_exhausted(e.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// Runs a lifecycle operation in its own task: a client that gives up (a cancelled RPC) must
/// not cut a multi-step operation, or its rollback, in half.
async fn detached<T, F, Fut>(
    engine: &std::sync::Arc<husk_engine::Engine>,
    f: F,
) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(std::sync::Arc<husk_engine::Engine>) -> Fut,
    Fut: std::future::Future<Output = Result<T, EngineError>> + Send + 'static,
{
    tokio::spawn(f(engine.clone()))
        .await
        .map_err(|e| Status::internal(format!("lifecycle task failed: {e}")))?
        .map_err(|e| EngineErr(e).into())
}

/// A CRI event with the pod's status and its containers' statuses as they are now.
fn event_response(
    engine: &husk_engine::Engine,
    ev: &husk_engine::events::LifecycleEvent,
) -> cri::ContainerEventResponse {
    use husk_engine::events::EventKind;
    let kind = match ev.kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    let pod = engine.pod_sandbox(&ev.sandbox_id).ok();
    let containers = husk_engine::container::ContainerFilter {
        sandbox_id: ev.sandbox_id.clone(),
        ..Default::default()
    };
    cri::ContainerEventResponse {
        container_id: ev.id.clone(),
        container_event_type: kind as i32,
        created_at: ev.at,
        pod_sandbox_status: pod.as_ref().map(convert_pod::pod_status),
        containers_statuses: engine
            .list_containers(&containers)
            .iter()
            .map(convert_container::container_status)
            .collect(),
    }
}

fn required_id<'a>(id: &'a str, field: &str) -> Result<&'a str, Status> {
    let id = id.trim();
    if id.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(id)
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
        let network = match self.s.engine.network_status().await {
            Ok(()) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(e) => cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: e.reason.into(),
                message: e.message,
            },
        };
        let mut verbose = std::collections::HashMap::new();
        if request.get_ref().verbose {
            verbose.insert("config".to_string(), info.config_json.to_string());
        }
        let features = self.s.engine.handler_features().await;
        let default = self.s.engine.config().default_runtime.clone();
        let handler = |name: String, f: &husk_engine::HandlerFeatures| cri::RuntimeHandler {
            name,
            features: Some(cri::RuntimeHandlerFeatures {
                recursive_read_only_mounts: f.recursive_read_only_mounts,
                user_namespaces: f.user_namespaces,
            }),
        };
        // The default handler is listed under "" too, as the kubelet looks it up that way.
        let mut runtime_handlers: Vec<_> = features
            .iter()
            .filter(|f| f.name == default)
            .map(|f| handler(String::new(), f))
            .collect();
        runtime_handlers.extend(features.iter().map(|f| handler(f.name.clone(), f)));
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime, network],
            }),
            info: verbose,
            runtime_handlers,
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let cfg = convert_pod::pod_config(req.config, req.runtime_handler)?;
        let rec = self
            .s
            .engine
            .run_pod_sandbox(cfg)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: rec.id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = required_id(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?;
        let id = id.to_string();
        detached(
            &self.s.engine,
            |e| async move { e.stop_pod_sandbox(&id).await },
        )
        .await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = required_id(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?;
        self.s
            .engine
            .remove_pod_sandbox(id)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let id = required_id(&req.pod_sandbox_id, "pod_sandbox_id")?;
        let rec = self.s.engine.pod_sandbox(id).map_err(EngineErr)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert_pod::pod_status(&rec)),
            info: if req.verbose {
                convert_pod::pod_info(&rec)
            } else {
                Default::default()
            },
            containers_statuses: vec![],
            timestamp: 0,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let f = convert_pod::pod_filter(request.into_inner().filter);
        let items = self
            .s
            .engine
            .list_pod_sandboxes(&f)
            .iter()
            .map(convert_pod::pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let pod = required_id(&req.pod_sandbox_id, "pod_sandbox_id")?.to_string();
        let cfg = convert_container::container_config(req.config)?;
        let rec = self
            .s
            .engine
            .create_container(&pod, cfg)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: rec.id,
        }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = required_id(&request.get_ref().container_id, "container_id")?;
        let id = id.to_string();
        detached(
            &self.s.engine,
            |e| async move { e.start_container(&id).await },
        )
        .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.get_ref();
        let id = required_id(&req.container_id, "container_id")?;
        if req.timeout < 0 {
            return Err(Status::invalid_argument("timeout must not be negative"));
        }
        self.s
            .engine
            .stop_container(id, req.timeout)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = required_id(&request.get_ref().container_id, "container_id")?;
        self.s
            .engine
            .remove_container(id)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let f = convert_container::container_filter(request.into_inner().filter);
        let containers = self
            .s
            .engine
            .list_containers(&f)
            .iter()
            .map(convert_container::container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let id = required_id(&req.container_id, "container_id")?;
        let rec = self.s.engine.container(id).map_err(EngineErr)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert_container::container_status(&rec)),
            info: if req.verbose {
                convert_container::container_info(&rec)
            } else {
                Default::default()
            },
        }))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let id = required_id(&req.container_id, "container_id")?;
        if req.timeout < 0 {
            return Err(Status::invalid_argument("timeout must not be negative"));
        }
        let out = self
            .s
            .engine
            .exec_sync(id, &req.cmd, req.timeout)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        let driver = match self.s.engine.config().cgroup_driver {
            CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
            CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let id = required_id(&req.container_id, "container_id")?.to_string();
        let res = req
            .linux
            .as_ref()
            .map(convert_container::resources)
            .ok_or_else(|| Status::invalid_argument("linux resources are required"))?;
        detached(&self.s.engine, |e| async move {
            e.update_container_resources(&id, res).await
        })
        .await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = required_id(&request.get_ref().container_id, "container_id")?;
        self.s
            .engine
            .reopen_container_log(id)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = required_id(&request.get_ref().container_id, "container_id")?;
        let u = self.s.engine.container_stats(id).await.map_err(EngineErr)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(convert_container::container_stats(&u)),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let f = convert_container::stats_filter(request.into_inner().filter);
        let all = self
            .s
            .engine
            .list_container_stats(&f)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::ListContainerStatsResponse {
            stats: all.iter().map(convert_container::container_stats).collect(),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = required_id(&request.get_ref().pod_sandbox_id, "pod_sandbox_id")?;
        let u = self
            .s
            .engine
            .pod_sandbox_stats(id)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(convert_pod::pod_stats(&u)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let filter = husk_engine::sandbox::SandboxFilter {
            id_prefix: f.id,
            state: None,
            labels: convert_pod::btree(&f.label_selector),
        };
        let all = self
            .s
            .engine
            .list_pod_sandbox_stats(&filter)
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse {
            stats: all.iter().map(convert_pod::pod_stats).collect(),
        }))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: crate::metrics::descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        let all = self
            .s
            .engine
            .list_pod_sandbox_stats(&Default::default())
            .await
            .map_err(EngineErr)?;
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics: all.iter().map(crate::metrics::pod_metrics).collect(),
        }))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let mut rx = self.s.engine.subscribe();
        let engine = self.s.engine.clone();
        let (tx, out) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match rx.recv().await {
                    Ok(ev) => {
                        if tx.send(Ok(event_response(&engine, &ev))).await.is_err() {
                            break;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        // Too slow: end this subscriber's stream rather than buffer without end.
                        let _ = tx.try_send(Err(Status::resource_exhausted(format!(
                            "event subscriber fell {n} events behind; subscribe again"
                        ))));
                        break;
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(out),
        )))
    }

    async fn exec(
        &self,
        r: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let r = r.into_inner();
        required_id(&r.container_id, "container_id")?;
        if r.cmd.is_empty() || r.cmd[0].is_empty() {
            return Err(Status::invalid_argument("cmd must not be empty"));
        }
        // The kubelet's id may be a prefix; the URL names the full one.
        let id = self
            .s
            .engine
            .check_running(&r.container_id, "exec")
            .map_err(EngineErr)?
            .id;
        let url = self
            .s
            .streaming
            .get_exec(husk_streaming::ExecRequest {
                container_id: id,
                cmd: r.cmd,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(streaming_err)?;
        Ok(Response::new(cri::ExecResponse { url: url.into() }))
    }

    async fn attach(
        &self,
        r: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let r = r.into_inner();
        required_id(&r.container_id, "container_id")?;
        let rec = self
            .s
            .engine
            .check_attach(&r.container_id, r.stdin)
            .map_err(EngineErr)?;
        let url = self
            .s
            .streaming
            .get_attach(husk_streaming::AttachRequest {
                container_id: rec.id,
                tty: r.tty,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
            })
            .map_err(streaming_err)?;
        Ok(Response::new(cri::AttachResponse { url: url.into() }))
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let r = r.into_inner();
        required_id(&r.pod_sandbox_id, "pod_sandbox_id")?;
        let pod = self
            .s
            .engine
            .check_port_forward(&r.pod_sandbox_id)
            .map_err(EngineErr)?;
        let mut ports = Vec::with_capacity(r.port.len());
        for p in r.port {
            match u16::try_from(p) {
                Ok(p) if p > 0 => ports.push(p),
                _ => return Err(Status::invalid_argument(format!("invalid port {p}"))),
            }
        }
        let url = self
            .s
            .streaming
            .get_port_forward(husk_streaming::PortForwardRequest {
                pod_id: pod.id,
                ports,
            })
            .map_err(streaming_err)?;
        Ok(Response::new(cri::PortForwardResponse { url: url.into() }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // The pod CIDR is the CNI plugins' business (their IPAM config); it is accepted and
        // logged, as containerd does without a CNI config template.
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(pod_cidr = %cidr, "runtime config updated");
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn checkpoint_container(
        &self,
        request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        let req = request.into_inner();
        let id = required_id(&req.container_id, "container_id")?.to_string();
        if req.location.is_empty() {
            return Err(Status::invalid_argument("location is required"));
        }
        let location = std::path::PathBuf::from(&req.location);
        if !location.is_absolute() {
            return Err(Status::invalid_argument(format!(
                "location {:?} must be an absolute path",
                req.location
            )));
        }
        // 0 = the runtime's default (CRI); the whole checkpoint, archive included, is bounded.
        let timeout = match req.timeout {
            t if t < 0 => return Err(Status::invalid_argument("timeout must not be negative")),
            0 => husk_engine::container::DEFAULT_CHECKPOINT_TIMEOUT,
            t => std::time::Duration::from_secs(t as u64),
        };
        detached(&self.s.engine, move |e| async move {
            e.checkpoint_container(&id, &location, timeout).await
        })
        .await?;
        Ok(Response::new(cri::CheckpointContainerResponse {}))
    }
}
