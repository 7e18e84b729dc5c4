//! `runp`, `stopp`, `rmp`, `pods` and `inspectp`: pod sandboxes over the CRI runtime service.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use k8s_cri::v1::{
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox, PodSandboxConfig, PodSandboxFilter,
    PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest, RemovePodSandboxRequest,
    RunPodSandboxRequest, StopPodSandboxRequest,
};

use crate::cli::{DataFormat, Format};
use crate::client::Client;
use crate::commands::listing::{ListArgs, matches, newest_first, parse_labels, pattern};
use crate::commands::{Ctx, each_id};
use crate::cri_display::{
    ago, name_enum, namespace_mode_name, now_nanos, pod_state, pod_state_name,
};
use crate::output::{Table, emit, print_data, status_with_info, truncate_id};
use crate::{cri_config, outln};

#[derive(Debug, Args)]
pub struct RunpArgs {
    /// Pod sandbox config file: JSON or YAML `PodSandboxConfig`, as crictl's
    pub config: PathBuf,
    /// Runtime handler to run the pod with (default: huskd's default)
    #[arg(short, long, value_name = "HANDLER")]
    pub runtime: Option<String>,
}

#[derive(Debug, Args)]
pub struct StoppArgs {
    /// Pod IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmpArgs {
    /// Pod IDs
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Stop the pods first if they are running
    #[arg(short, long)]
    pub force: bool,
    /// Remove all pods
    #[arg(short, long)]
    pub all: bool,
}

/// A pod state to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PodStateArg {
    Ready,
    #[value(name = "notready")]
    NotReady,
}

#[derive(Debug, Args)]
pub struct PodsArgs {
    /// Only the pod with this ID (or ID prefix, where huskd allows)
    #[arg(long)]
    pub id: Option<String>,
    /// Only pods whose name matches this regular expression
    #[arg(long, value_name = "REGEX")]
    pub name: Option<String>,
    /// Only pods whose namespace matches this regular expression
    #[arg(long, value_name = "REGEX")]
    pub namespace: Option<String>,
    /// Only pods in this state
    #[arg(short, long, value_enum, ignore_case = true)]
    pub state: Option<PodStateArg>,
    #[command(flatten)]
    pub list: ListArgs,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct InspectpArgs {
    /// Pod IDs
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: DataFormat,
}

/// `huskctl runp`: prints the new pod's ID.
pub async fn runp(ctx: &Ctx, args: RunpArgs) -> anyhow::Result<()> {
    let config: PodSandboxConfig = cri_config::load(&args.config)?;
    let client = ctx.connect().await?;
    let id = run_pod(&client, config, args.runtime.unwrap_or_default()).await?;
    outln!("{id}");
    Ok(())
}

/// `RunPodSandbox`; returns the pod ID.
pub async fn run_pod(
    client: &Client,
    config: PodSandboxConfig,
    runtime_handler: String,
) -> anyhow::Result<String> {
    let request = RunPodSandboxRequest {
        config: Some(config),
        runtime_handler,
    };
    let response = client
        .unary("RunPodSandbox", client.runtime().run_pod_sandbox(request))
        .await?;
    Ok(response.pod_sandbox_id)
}

/// `StopPodSandbox`.
pub async fn stop_pod(client: &Client, id: &str) -> anyhow::Result<()> {
    let request = StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    client
        .unary("StopPodSandbox", client.runtime().stop_pod_sandbox(request))
        .await?;
    Ok(())
}

/// `RemovePodSandbox`.
pub async fn remove_pod(client: &Client, id: &str) -> anyhow::Result<()> {
    let request = RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    client
        .unary(
            "RemovePodSandbox",
            client.runtime().remove_pod_sandbox(request),
        )
        .await?;
    Ok(())
}

/// `huskctl stopp`.
pub async fn stopp(ctx: &Ctx, args: StoppArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    each_id(&args.ids, async |id| {
        stop_pod(&client, id).await?;
        outln!("Stopped sandbox {id}");
        Ok(())
    })
    .await
}

/// `huskctl rmp`: refuses ready pods unless `-f`, which stops them first.
pub async fn rmp(ctx: &Ctx, args: RmpArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let ids = if args.all {
        list(&client, None)
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect()
    } else {
        args.ids
    };
    each_id(&ids, async |id| {
        if args.force {
            stop_pod(&client, id).await?;
        } else {
            let request = PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            };
            let status = client
                .unary(
                    "PodSandboxStatus",
                    client.runtime().pod_sandbox_status(request),
                )
                .await?;
            if status
                .status
                .is_some_and(|s| s.state == PodSandboxState::SandboxReady as i32)
            {
                bail!("pod sandbox {id} is running, stop it first (or use rmp -f)");
            }
        }
        remove_pod(&client, id).await?;
        outln!("Removed sandbox {id}");
        Ok(())
    })
    .await
}

/// `ListPodSandbox`.
pub async fn list(
    client: &Client,
    filter: Option<PodSandboxFilter>,
) -> anyhow::Result<Vec<PodSandbox>> {
    let request = ListPodSandboxRequest { filter };
    Ok(client
        .unary("ListPodSandbox", client.runtime().list_pod_sandbox(request))
        .await?
        .items)
}

/// `huskctl pods`: newest first.
pub async fn pods(ctx: &Ctx, args: PodsArgs) -> anyhow::Result<()> {
    let name = pattern("--name", args.name.as_deref())?;
    let namespace = pattern("--namespace", args.namespace.as_deref())?;
    let filter = PodSandboxFilter {
        id: args.id.clone().unwrap_or_default(),
        state: args.state.map(|s| PodSandboxStateValue {
            state: match s {
                PodStateArg::Ready => PodSandboxState::SandboxReady,
                PodStateArg::NotReady => PodSandboxState::SandboxNotready,
            } as i32,
        }),
        label_selector: parse_labels(&args.list.label)?,
    };
    let client = ctx.connect().await?;
    let mut items = list(&client, Some(filter)).await?;
    items.retain(|p| {
        let meta = p.metadata.clone().unwrap_or_default();
        matches(name.as_ref(), &meta.name) && matches(namespace.as_ref(), &meta.namespace)
    });
    newest_first(&mut items, |p| p.created_at, args.list.keep());

    if args.list.quiet {
        let ids: String = items.iter().map(|p| format!("{}\n", p.id)).collect();
        return Ok(emit(&ids)?);
    }
    match args.output {
        Format::Table => Ok(emit(&pods_table(&items, args.list.no_trunc, now_nanos()))?),
        Format::Json => print_data(DataFormat::Json, &list_doc(items)?),
        Format::Yaml => print_data(DataFormat::Yaml, &list_doc(items)?),
    }
}

/// `{"items": [...]}` with states named.
fn list_doc(items: Vec<PodSandbox>) -> anyhow::Result<serde_json::Value> {
    let mut doc = serde_json::to_value(ListPodSandboxResponse { items })?;
    name_enum(&mut doc, "/items/*/state", pod_state_name);
    Ok(doc)
}

/// `POD ID  CREATED  STATE  NAME  NAMESPACE  ATTEMPT  RUNTIME`, as crictl.
pub fn pods_table(pods: &[PodSandbox], no_trunc: bool, now: i64) -> String {
    let mut table = Table::new(&[
        "POD ID",
        "CREATED",
        "STATE",
        "NAME",
        "NAMESPACE",
        "ATTEMPT",
        "RUNTIME",
    ]);
    for pod in pods {
        let meta = pod.metadata.clone().unwrap_or_default();
        let id = if no_trunc {
            pod.id.clone()
        } else {
            truncate_id(&pod.id)
        };
        let runtime = if pod.runtime_handler.is_empty() {
            "(default)".to_string()
        } else {
            pod.runtime_handler.clone()
        };
        table.push(vec![
            id,
            ago(pod.created_at, now),
            pod_state(pod.state).to_string(),
            meta.name,
            meta.namespace,
            meta.attempt.to_string(),
            runtime,
        ]);
    }
    table.render()
}

/// `huskctl inspectp`: verbose `PodSandboxStatus` as `{"status": …, "info": …}`.
pub async fn inspectp(ctx: &Ctx, args: InspectpArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    each_id(&args.ids, async |id| {
        let request = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        };
        let response = client
            .unary(
                "PodSandboxStatus",
                client.runtime().pod_sandbox_status(request),
            )
            .await?;
        let Some(status) = response.status else {
            bail!("pod sandbox {id:?} not found");
        };
        let mut status = serde_json::to_value(status)?;
        name_enum(&mut status, "/state", pod_state_name);
        for ns in ["network", "pid", "ipc"] {
            let pointer = format!("/linux/namespaces/options/{ns}");
            name_enum(&mut status, &pointer, namespace_mode_name);
        }
        print_data(
            args.output,
            &status_with_info(&status, vec![], &response.info)?,
        )
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::PodSandboxMetadata;

    const S: i64 = 1_000_000_000;

    fn pod(id: &str, name: &str, state: PodSandboxState, created: i64) -> PodSandbox {
        PodSandbox {
            id: id.into(),
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: "uid".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            state: state as i32,
            created_at: created,
            ..Default::default()
        }
    }

    #[test]
    fn table_golden() {
        let mut runc = pod(
            "0123456789abcdef0123456789abcdef",
            "busybox-sandbox",
            PodSandboxState::SandboxNotready,
            1000 * S,
        );
        runc.runtime_handler = "runc".into();
        let pods = [
            pod(
                "fedcba9876543210",
                "nginx",
                PodSandboxState::SandboxReady,
                1095 * S,
            ),
            runc,
        ];
        let golden = "\
POD ID              CREATED              STATE               NAME                NAMESPACE           ATTEMPT             RUNTIME
fedcba9876543       5 seconds ago        Ready               nginx               default             1                   (default)
0123456789abc       About a minute ago   NotReady            busybox-sandbox     default             1                   runc
";
        assert_eq!(pods_table(&pods, false, 1100 * S), golden);
        let full = pods_table(&pods[1..], true, 1100 * S);
        assert!(
            full.contains("0123456789abcdef0123456789abcdef   "),
            "{full}"
        );
    }

    #[test]
    fn json_names_states() {
        let doc = list_doc(vec![pod("a", "n", PodSandboxState::SandboxNotready, 0)]).expect("doc");
        assert_eq!(doc["items"][0]["state"], "SANDBOX_NOTREADY");
        assert_eq!(doc["items"][0]["metadata"]["name"], "n");
    }
}
