//! `create`, `start`, `stop`, `rm`, `ps` and `inspect`: containers over the CRI runtime
//! service.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use k8s_cri::v1::{
    Container, ContainerConfig, ContainerFilter, ContainerState, ContainerStateValue,
    ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ListContainersRequest,
    ListContainersResponse, PodSandboxConfig, RemoveContainerRequest, StartContainerRequest,
    StopContainerRequest,
};

use crate::cli::{DataFormat, Format};
use crate::client::Client;
use crate::commands::listing::{ListArgs, matches, newest_first, parse_labels, pattern};
use crate::commands::run::{PullOpts, ensure_image};
use crate::commands::{Ctx, each_id, pods};
use crate::cri_display::{ago, container_state, container_state_name, name_enum, now_nanos};
use crate::output::{Table, emit, print_data, status_with_info, truncate_id};
use crate::{cri_config, outln};

/// The label kubelet puts the pod name in; crictl's POD column falls back to it.
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// ID of the pod to create the container in
    pub pod_id: String,
    /// Container config file: JSON or YAML `ContainerConfig`, as crictl's
    pub container_config: PathBuf,
    /// The pod's config file (as given to runp)
    pub pod_config: PathBuf,
    #[command(flatten)]
    pub pull: PullOpts,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Container IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Container IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Seconds to wait after the stop signal before killing
    #[arg(short, long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: i64,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Container IDs
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Stop running containers first
    #[arg(short, long)]
    pub force: bool,
    /// Remove all containers
    #[arg(short, long)]
    pub all: bool,
}

/// A container state to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContainerStateArg {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerStateArg {
    fn cri(self) -> ContainerState {
        match self {
            ContainerStateArg::Created => ContainerState::ContainerCreated,
            ContainerStateArg::Running => ContainerState::ContainerRunning,
            ContainerStateArg::Exited => ContainerState::ContainerExited,
            ContainerStateArg::Unknown => ContainerState::ContainerUnknown,
        }
    }
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: only running ones)
    #[arg(short, long)]
    pub all: bool,
    /// Only the container with this ID (or ID prefix, where huskd allows)
    #[arg(long)]
    pub id: Option<String>,
    /// Only containers of this pod
    #[arg(short, long, value_name = "POD_ID")]
    pub pod: Option<String>,
    /// Only containers whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    pub name: Option<String>,
    /// Only containers in this state
    #[arg(short, long, value_enum, ignore_case = true)]
    pub state: Option<ContainerStateArg>,
    #[command(flatten)]
    pub list: ListArgs,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Container IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: DataFormat,
}

/// `huskctl create`: pulls the image when missing, prints the new container's ID.
pub async fn create(ctx: &Ctx, args: CreateArgs) -> anyhow::Result<()> {
    let config: ContainerConfig = cri_config::load(&args.container_config)?;
    let pod_config: PodSandboxConfig = cri_config::load(&args.pod_config)?;
    let client = ctx.connect().await?;
    ensure_image(&client, &config, &pod_config, &args.pull).await?;
    let id = create_container(&client, args.pod_id, config, pod_config).await?;
    outln!("{id}");
    Ok(())
}

/// `CreateContainer`; returns the container ID.
pub async fn create_container(
    client: &Client,
    pod_sandbox_id: String,
    config: ContainerConfig,
    sandbox_config: PodSandboxConfig,
) -> anyhow::Result<String> {
    let request = CreateContainerRequest {
        pod_sandbox_id,
        config: Some(config),
        sandbox_config: Some(sandbox_config),
    };
    let response = client
        .unary(
            "CreateContainer",
            client.runtime().create_container(request),
        )
        .await?;
    Ok(response.container_id)
}

/// `StartContainer`.
pub async fn start_container(client: &Client, id: &str) -> anyhow::Result<()> {
    let request = StartContainerRequest {
        container_id: id.to_string(),
    };
    client
        .unary("StartContainer", client.runtime().start_container(request))
        .await?;
    Ok(())
}

/// `huskctl start`.
pub async fn start(ctx: &Ctx, args: StartArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    each_id(&args.ids, async |id| {
        start_container(&client, id).await?;
        outln!("{id}");
        Ok(())
    })
    .await
}

/// `StopContainer` with a grace period of `timeout` seconds.
async fn stop_container(client: &Client, id: &str, timeout: i64) -> anyhow::Result<()> {
    let request = StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    };
    client
        .unary("StopContainer", client.runtime().stop_container(request))
        .await?;
    Ok(())
}

/// `huskctl stop`. The call's time limit grows by the grace period.
pub async fn stop(ctx: &Ctx, args: StopArgs) -> anyhow::Result<()> {
    let grace = Duration::from_secs(args.timeout.max(0).unsigned_abs());
    let ctx = Ctx {
        endpoint: ctx.endpoint.clone(),
        timeout: ctx.timeout.map(|t| t + grace),
    };
    let client = ctx.connect().await?;
    each_id(&args.ids, async |id| {
        stop_container(&client, id, args.timeout).await?;
        outln!("{id}");
        Ok(())
    })
    .await
}

/// `ContainerStatus` and its verbose info; an answer without a status is an error.
pub async fn status(
    client: &Client,
    id: &str,
    verbose: bool,
) -> anyhow::Result<(ContainerStatus, HashMap<String, String>)> {
    let request = ContainerStatusRequest {
        container_id: id.to_string(),
        verbose,
    };
    let response = client
        .unary(
            "ContainerStatus",
            client.runtime().container_status(request),
        )
        .await?;
    let status = response
        .status
        .with_context(|| format!("container {id:?} not found"))?;
    Ok((status, response.info))
}

/// `huskctl rm`: refuses running containers unless `-f`, which stops them first.
pub async fn rm(ctx: &Ctx, args: RmArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let ids = if args.all {
        list(&client, ContainerFilter::default())
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect()
    } else {
        args.ids
    };
    each_id(&ids, async |id| {
        let (status, _) = status(&client, id, false).await?;
        if status.state == ContainerState::ContainerRunning as i32 {
            if !args.force {
                bail!("container {id} is running, stop it first (or use rm -f)");
            }
            stop_container(&client, id, 0).await?;
        }
        let request = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        client
            .unary(
                "RemoveContainer",
                client.runtime().remove_container(request),
            )
            .await?;
        outln!("{id}");
        Ok(())
    })
    .await
}

/// `ListContainers`.
pub async fn list(client: &Client, filter: ContainerFilter) -> anyhow::Result<Vec<Container>> {
    let request = ListContainersRequest {
        filter: Some(filter),
    };
    Ok(client
        .unary("ListContainers", client.runtime().list_containers(request))
        .await?
        .containers)
}

/// `huskctl ps`: newest first; only running containers unless `-a` or `--state`.
pub async fn ps(ctx: &Ctx, args: PsArgs) -> anyhow::Result<()> {
    let name = pattern("--name", args.name.as_deref())?;
    let state = match (args.state, args.all) {
        (Some(s), _) => Some(s.cri()),
        (None, false) => Some(ContainerState::ContainerRunning),
        (None, true) => None,
    };
    let filter = ContainerFilter {
        id: args.id.clone().unwrap_or_default(),
        state: state.map(|s| ContainerStateValue { state: s as i32 }),
        pod_sandbox_id: args.pod.clone().unwrap_or_default(),
        label_selector: parse_labels(&args.list.label)?,
    };
    let client = ctx.connect().await?;
    let mut containers = list(&client, filter).await?;
    containers.retain(|c| {
        matches(
            name.as_ref(),
            c.metadata.as_ref().map_or("", |m| m.name.as_str()),
        )
    });
    newest_first(&mut containers, |c| c.created_at, args.list.keep());

    if args.list.quiet {
        let ids: String = containers.iter().map(|c| format!("{}\n", c.id)).collect();
        return Ok(emit(&ids)?);
    }
    match args.output {
        Format::Table => {
            // The POD column: names from ListPodSandbox, if huskd lists pods.
            let pod_names = pods::list(&client, None)
                .await
                .map(|pods| {
                    pods.into_iter()
                        .map(|p| (p.id, p.metadata.unwrap_or_default().name))
                        .collect()
                })
                .unwrap_or_default();
            let table = containers_table(&containers, &pod_names, args.list.no_trunc, now_nanos());
            Ok(emit(&table)?)
        }
        Format::Json => print_data(DataFormat::Json, &list_doc(containers)?),
        Format::Yaml => print_data(DataFormat::Yaml, &list_doc(containers)?),
    }
}

/// `{"containers": [...]}` with states named.
fn list_doc(containers: Vec<Container>) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(ListContainersResponse { containers })?;
    name_enum(&mut doc, "/containers/*/state", container_state_name);
    Ok(doc)
}

/// Whether `image` is a bare digest (`sha256:<64 hex>`), as kubelet puts image IDs there.
fn is_digest(image: &str) -> bool {
    let Some((algorithm, hex)) = image.split_once(':') else {
        return false;
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `CONTAINER  IMAGE  CREATED  STATE  NAME  ATTEMPT  POD ID  POD`, as crictl.
pub fn containers_table(
    containers: &[Container],
    pod_names: &HashMap<String, String>,
    no_trunc: bool,
    now: i64,
) -> String {
    let mut table = Table::new(&[
        "CONTAINER",
        "IMAGE",
        "CREATED",
        "STATE",
        "NAME",
        "ATTEMPT",
        "POD ID",
        "POD",
    ]);
    for c in containers {
        let meta = c.metadata.clone().unwrap_or_default();
        let mut image = c
            .image
            .as_ref()
            .map_or("", |i| i.image.as_str())
            .to_string();
        let (id, pod_id) = if no_trunc {
            (c.id.clone(), c.pod_sandbox_id.clone())
        } else {
            if is_digest(&image) {
                image = image
                    .split_once(':')
                    .map_or(image.clone(), |(_, hex)| truncate_id(hex));
            }
            (truncate_id(&c.id), truncate_id(&c.pod_sandbox_id))
        };
        let pod = pod_names
            .get(&c.pod_sandbox_id)
            .filter(|n| !n.is_empty())
            .or_else(|| c.labels.get(POD_NAME_LABEL))
            .map_or("unknown", String::as_str);
        table.push(vec![
            id,
            image,
            ago(c.created_at, now),
            container_state(c.state).to_string(),
            meta.name,
            meta.attempt.to_string(),
            pod_id,
            pod.to_string(),
        ]);
    }
    table.render()
}

/// `huskctl inspect`: verbose `ContainerStatus` as `{"status": …, "info": …}`.
pub async fn inspect(ctx: &Ctx, args: InspectArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    each_id(&args.ids, async |id| {
        let (status, info) = status(&client, id, true).await?;
        let mut status = serde_json::to_value(status)?;
        name_enum(&mut status, "/state", container_state_name);
        print_data(args.output, &status_with_info(&status, vec![], &info)?)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{ContainerMetadata, ImageSpec};

    const S: i64 = 1_000_000_000;
    const DIGEST: &str = "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824";

    fn container(
        id: &str,
        pod: &str,
        image: &str,
        state: ContainerState,
        created: i64,
    ) -> Container {
        Container {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            metadata: Some(ContainerMetadata {
                name: "busybox".into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            state: state as i32,
            created_at: created,
            ..Default::default()
        }
    }

    #[test]
    fn table_golden() {
        let mut labelled = container(
            "1111111111111111111111",
            "ffffffffffffffffff",
            DIGEST,
            ContainerState::ContainerExited,
            100 * S,
        );
        labelled
            .labels
            .insert(POD_NAME_LABEL.into(), "web-0".into());
        let containers = [
            container(
                "0123456789abcdef0123",
                "abcdefabcdefabcdef",
                "docker.io/library/busybox:latest",
                ContainerState::ContainerRunning,
                3595 * S,
            ),
            labelled,
            container(
                "2222",
                "nopod",
                "busybox",
                ContainerState::ContainerCreated,
                3600 * S,
            ),
        ];
        let names = HashMap::from([(
            "abcdefabcdefabcdef".to_string(),
            "busybox-sandbox".to_string(),
        )]);
        let golden = "\
CONTAINER           IMAGE                              CREATED                  STATE               NAME                ATTEMPT             POD ID              POD
0123456789abc       docker.io/library/busybox:latest   5 seconds ago            Running             busybox             0                   abcdefabcdefa       busybox-sandbox
1111111111111       a416a98b71e22                      58 minutes ago           Exited              busybox             0                   fffffffffffff       web-0
2222                busybox                            Less than a second ago   Created             busybox             0                   nopod               unknown
";
        assert_eq!(
            containers_table(&containers, &names, false, 3600 * S),
            golden
        );
        let full = containers_table(&containers[1..2], &names, true, 3600 * S);
        assert!(full.contains(DIGEST), "{full}");
        assert!(full.contains("1111111111111111111111   "), "{full}");
    }

    #[test]
    fn digests() {
        assert!(is_digest(DIGEST));
        assert!(!is_digest("sha256:abc"));
        assert!(!is_digest("busybox:latest"));
    }

    #[test]
    fn json_names_states() {
        let doc = list_doc(vec![container(
            "a",
            "p",
            "i",
            ContainerState::ContainerExited,
            0,
        )])
        .expect("doc");
        assert_eq!(doc["containers"][0]["state"], "CONTAINER_EXITED");
    }
}
