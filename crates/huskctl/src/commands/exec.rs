//! `exec`: run a command in a container with `ExecSync`, pass on its output and exit code.
//! Streaming exec (`-i`/`-t`) is not there yet.

use std::io::Write as _;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use k8s_cri::v1::ExecSyncRequest;

use crate::client::RpcError;
use crate::commands::{Ctx, Exit};

/// Slack over `--timeout` before huskctl gives up waiting for huskd's answer.
const ANSWER_SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Run the command synchronously (the only mode so far; accepted for crictl compatibility)
    #[arg(short, long)]
    pub sync: bool,
    /// Keep stdin open (not supported yet)
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a TTY (not supported yet)
    #[arg(short, long)]
    pub tty: bool,
    /// Seconds after which the command is stopped (0: no limit)
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub timeout: i64,
    /// Container ID
    pub id: String,
    /// The command and its arguments
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `huskctl exec`: exits with the command's exit code.
pub async fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<()> {
    if args.interactive || args.tty {
        bail!(
            "interactive exec (-i/-t) is not supported yet; \
             run the command without -i/-t (huskctl exec -s ID CMD...)"
        );
    }
    if args.timeout < 0 {
        bail!("--timeout must not be negative");
    }
    let client = ctx.connect().await?;
    let request = ExecSyncRequest {
        container_id: args.id,
        cmd: args.cmd,
        timeout: args.timeout,
    };
    // Without --timeout the command may run as long as it likes, so the call has no limit.
    let limit =
        (args.timeout > 0).then(|| Duration::from_secs(args.timeout.unsigned_abs()) + ANSWER_SLACK);
    let mut runtime = client.runtime();
    let call = runtime.exec_sync(request);
    let result = match limit {
        Some(after) => tokio::time::timeout(after, call)
            .await
            .map_err(|_| RpcError::Timeout {
                rpc: "ExecSync",
                after,
            })?,
        None => call.await,
    };
    let response = result
        .map_err(|status| RpcError::Status {
            rpc: "ExecSync",
            status,
        })?
        .into_inner();
    {
        let mut out = std::io::stdout().lock();
        out.write_all(&response.stdout)?;
        out.flush()?;
    }
    {
        let mut err = std::io::stderr().lock();
        err.write_all(&response.stderr)?;
        err.flush()?;
    }
    match response.exit_code {
        0 => Ok(()),
        code => Err(Exit(u8::try_from(code).unwrap_or(255)).into()),
    }
}
