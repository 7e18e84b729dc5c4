//! `run`: pull the image if missing, then `RunPodSandbox`, `CreateContainer` and
//! `StartContainer`, as `crictl run`. Also the pull-if-missing step `create` shares.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use k8s_cri::v1::{ContainerConfig, ImageStatusRequest, PodSandboxConfig, PullImageRequest};

use crate::cli::AuthArgs;
use crate::client::{Client, RpcError};
use crate::commands::Ctx;
use crate::commands::containers::{create_container, start_container};
use crate::commands::pods::{remove_pod, run_pod, stop_pod};
use crate::commands::pull::auth_config;
use crate::{cri_config, outln};

/// When `create` and `run` pull the container's image.
#[derive(Debug, Clone, Default, Args)]
pub struct PullOpts {
    /// Do not pull the image when it is missing
    #[arg(long)]
    pub no_pull: bool,
    /// Pull the image even when present (wins over --no-pull)
    #[arg(long)]
    pub with_pull: bool,
    #[command(flatten)]
    pub auth: AuthArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container config file: JSON or YAML `ContainerConfig`, as crictl's
    pub container_config: PathBuf,
    /// Pod sandbox config file: JSON or YAML `PodSandboxConfig`, as crictl's
    pub pod_config: PathBuf,
    /// Runtime handler to run the pod with (default: huskd's default)
    #[arg(short, long, value_name = "HANDLER")]
    pub runtime: Option<String>,
    #[command(flatten)]
    pub pull: PullOpts,
}

/// `huskctl run`: prints the started container's ID. If a step after `RunPodSandbox` fails,
/// the new pod is stopped and removed.
pub async fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<()> {
    let config: ContainerConfig = cri_config::load(&args.container_config)?;
    let pod_config: PodSandboxConfig = cri_config::load(&args.pod_config)?;
    let client = ctx.connect().await?;
    ensure_image(&client, &config, &pod_config, &args.pull).await?;
    let pod_id = run_pod(
        &client,
        pod_config.clone(),
        args.runtime.unwrap_or_default(),
    )
    .await?;
    let started = async {
        let id = create_container(&client, pod_id.clone(), config, pod_config).await?;
        start_container(&client, &id).await?;
        anyhow::Ok(id)
    }
    .await;
    match started {
        Ok(id) => {
            outln!("{id}");
            Ok(())
        }
        Err(e) => {
            let cleanup = async {
                stop_pod(&client, &pod_id).await?;
                remove_pod(&client, &pod_id).await
            }
            .await;
            Err(match cleanup {
                Ok(()) => anyhow::anyhow!("{e:#} (pod {pod_id} was removed)"),
                Err(c) => anyhow::anyhow!("{e:#} (pod {pod_id} was left behind: {c:#})"),
            })
        }
    }
}

/// Pulls the container's image (with the pod config, as crictl) when huskd lacks it, or always
/// with `--with-pull`; never with `--no-pull`. The pull has no time limit.
pub async fn ensure_image(
    client: &Client,
    config: &ContainerConfig,
    pod_config: &PodSandboxConfig,
    opts: &PullOpts,
) -> anyhow::Result<()> {
    let spec = config
        .image
        .clone()
        .filter(|i| !i.image.is_empty())
        .context("the container config names no image (image.image)")?;
    if opts.no_pull && !opts.with_pull {
        return Ok(());
    }
    if !opts.with_pull {
        let request = ImageStatusRequest {
            image: Some(spec.clone()),
            verbose: false,
        };
        let status = client
            .unary("ImageStatus", client.image().image_status(request))
            .await?;
        if status.image.is_some() {
            return Ok(());
        }
    }
    let auth = auth_config(&opts.auth)?.map(|a| k8s_cri::v1::AuthConfig {
        username: a.username,
        password: a.password,
        auth: a.auth,
        server_address: a.server_address,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
    });
    let request = PullImageRequest {
        image: Some(spec),
        auth,
        sandbox_config: Some(pod_config.clone()),
    };
    client
        .image()
        .pull_image(request)
        .await
        .map_err(|status| RpcError::Status {
            rpc: "PullImage",
            status,
        })?;
    Ok(())
}
