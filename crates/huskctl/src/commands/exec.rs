//! `exec`: run a command in a container, passing on its output and exit code: with `ExecSync`
//! by default, or streaming through the CRI `Exec` URL with `-i`/`-t`. `attach`: the same
//! streaming session on a container's main process, through `Attach`.

use std::io::Write as _;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use k8s_cri::v1::{AttachRequest, ExecRequest, ExecSyncRequest};

use crate::client::RpcError;
use crate::commands::session::{self, Streams};
use crate::commands::{Ctx, Exit};

/// Slack over `--timeout` before huskctl gives up waiting for huskd's answer.
const ANSWER_SLACK: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
#[command(
    after_help = "Without -i/-t the command runs with ExecSync (output arrives when it ends); \
                  with -i and/or -t it streams (CRI Exec). huskctl exits with the command's \
                  exit code."
)]
pub struct ExecArgs {
    /// Run the command with ExecSync (the default without -i/-t)
    #[arg(short, long, conflicts_with_all = ["interactive", "tty"])]
    pub sync: bool,
    /// Stream stdin to the command (its end closes the command's stdin)
    #[arg(short, long)]
    pub interactive: bool,
    /// Run the command in a TTY (stderr is merged into stdout; raw mode when stdin is a terminal)
    #[arg(short, long)]
    pub tty: bool,
    /// Seconds after which the command is stopped (0: no limit; ExecSync only)
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        conflicts_with_all = ["interactive", "tty"]
    )]
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
        return exec_streaming(ctx, args).await;
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

/// `huskctl exec -i/-t`: the CRI `Exec` URL, streamed.
async fn exec_streaming(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let streams = Streams {
        stdin: args.interactive,
        tty: args.tty,
    };
    let mut runtime = client.runtime();
    let response = client
        .unary("Exec", runtime.exec(exec_request(args)))
        .await?;
    let code = session::run(&response.url, streams).await?;
    session::exit_with(code)
}

fn exec_request(args: ExecArgs) -> ExecRequest {
    ExecRequest {
        container_id: args.id,
        cmd: args.cmd,
        tty: args.tty,
        stdin: args.interactive,
        stdout: true,
        stderr: !args.tty,
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Ends when the container exits (huskctl then exits with its exit code) or when \
                  huskctl is stopped; with -t on a terminal, ctrl-C goes to the container."
)]
pub struct AttachArgs {
    /// Stream stdin to the container
    #[arg(short, long)]
    pub interactive: bool,
    /// The container has a TTY (stderr is merged into stdout; raw mode when stdin is a terminal)
    #[arg(short, long)]
    pub tty: bool,
    /// Container ID
    pub id: String,
}

/// `huskctl attach`: the CRI `Attach` URL, streamed.
pub async fn attach(ctx: &Ctx, args: AttachArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let streams = Streams {
        stdin: args.interactive,
        tty: args.tty,
    };
    let request = AttachRequest {
        container_id: args.id,
        stdin: args.interactive,
        tty: args.tty,
        stdout: true,
        stderr: !args.tty,
    };
    let mut runtime = client.runtime();
    let response = client.unary("Attach", runtime.attach(request)).await?;
    let code = session::run(&response.url, streams).await?;
    session::exit_with(code)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn exec_args(argv: &[&str]) -> Result<ExecArgs, clap::Error> {
        let mut full = vec!["huskctl", "exec"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full)?.command {
            Command::Exec(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn exec_flags() {
        let a = exec_args(&["-it", "c1", "sh", "-c", "echo hi"]).unwrap();
        assert!(a.interactive && a.tty && !a.sync);
        assert_eq!(a.cmd, ["sh", "-c", "echo hi"]);
        let r = exec_request(a);
        assert!(r.stdin && r.tty && r.stdout && !r.stderr);
        let r = exec_request(exec_args(&["-i", "c1", "cat"]).unwrap());
        assert!(r.stdin && !r.tty && r.stdout && r.stderr);
        let r = exec_request(exec_args(&["-t", "c1", "top"]).unwrap());
        assert!(!r.stdin && r.tty && r.stdout && !r.stderr);
        // Flags after the command belong to it.
        let a = exec_args(&["c1", "ls", "-t"]).unwrap();
        assert!(!a.tty);
        assert_eq!(a.cmd, ["ls", "-t"]);
        assert!(exec_args(&["-s", "-i", "c1", "cat"]).is_err());
        assert!(exec_args(&["--timeout", "5", "-t", "c1", "cat"]).is_err());
        assert!(exec_args(&["--timeout", "5", "c1", "cat"]).is_ok());
        assert!(exec_args(&["-i", "c1"]).is_err(), "a command is required");
    }

    #[test]
    fn attach_flags() {
        let parse = |argv: &[&str]| {
            let mut full = vec!["huskctl", "attach"];
            full.extend_from_slice(argv);
            match Cli::try_parse_from(full).map(|c| c.command) {
                Ok(Command::Attach(a)) => Some((a.interactive, a.tty, a.id)),
                _ => None,
            }
        };
        assert_eq!(parse(&["-it", "c1"]), Some((true, true, "c1".into())));
        assert_eq!(parse(&["c1"]), Some((false, false, "c1".into())));
        assert_eq!(parse(&[]), None);
    }
}
