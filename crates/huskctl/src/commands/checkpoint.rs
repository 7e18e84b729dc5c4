//! `checkpoint`: dump a running container with CRIU into an archive (`CheckpointContainer`); the
//! container keeps running.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use k8s_cri::v1::CheckpointContainerRequest;

use crate::client::RpcError;
use crate::commands::Ctx;
use crate::outln;

/// What huskd uses when no `--timeout` is given (the CRI default).
const SERVER_DEFAULT: Duration = Duration::from_secs(300);
/// Extra time the call gets over the checkpoint's own limit (the reply must come back).
const MARGIN: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    /// Seconds the checkpoint may take (0: huskd's default, 300)
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub timeout: u64,
    /// Container ID
    pub container: String,
    /// Where to write the archive (a tar; a relative path is taken from the current directory)
    pub location: PathBuf,
}

/// `huskctl checkpoint`: prints the archive's path.
pub async fn checkpoint(ctx: &Ctx, args: CheckpointArgs) -> anyhow::Result<()> {
    let location = std::path::absolute(&args.location)
        .with_context(|| format!("invalid location {}", args.location.display()))?;
    let client = ctx.connect().await?;
    let request = CheckpointContainerRequest {
        container_id: args.container.clone(),
        location: location.to_string_lossy().into_owned(),
        timeout: i64::try_from(args.timeout).context("--timeout is too large")?,
    };
    // The per-call limit must not cut the checkpoint short: it gets the checkpoint's own limit
    // plus a margin, unless the global limit is longer (or none).
    let own = if args.timeout == 0 {
        SERVER_DEFAULT
    } else {
        Duration::from_secs(args.timeout)
    } + MARGIN;
    let limit = ctx.timeout.map(|global| global.max(own));
    let mut runtime = client.runtime();
    let call = runtime.checkpoint_container(request);
    let rpc = "CheckpointContainer";
    let result = match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .map_err(|_| RpcError::Timeout { rpc, after: limit })?,
        None => call.await,
    };
    result.map_err(|status| RpcError::Status { rpc, status })?;
    outln!("{}", location.display());
    Ok(())
}
