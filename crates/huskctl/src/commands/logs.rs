//! `logs`: print a container's log file (its `log_path` from `ContainerStatus`), stdout lines to
//! stdout and stderr lines to stderr, as crictl does; `-f` follows it while the container runs.

use std::io::{BufWriter, Stderr, Stdout, Write as _};

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use k8s_cri::v1::ContainerState;
use tonic::Code;

use crate::cli::parse_timeout;
use crate::client::{Client, RpcError};
use crate::commands::Ctx;
use crate::commands::containers::status;
use crate::cri_log::{Liveness, Options, Sink, Stream, read_log};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Container ID
    pub id: String,
    /// Keep printing new lines while the container runs
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines (-1: all)
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Prefix each line with its time (RFC 3339)
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only lines since a time (2024-01-02T15:04:05Z) or a duration ago (10s, 5m, 1h)
    #[arg(long, value_name = "TIME|DURATION")]
    pub since: Option<String>,
}

/// `huskctl logs`.
pub async fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let client = ctx.connect().await?;
    let (status, _) = status(&client, &args.id, false).await?;
    if status.log_path.is_empty() {
        bail!("container {} has no log path", args.id);
    }
    let opts = Options {
        tail: usize::try_from(args.tail).ok(),
        since,
        timestamps: args.timestamps,
        follow: args.follow,
        ..Options::default()
    };
    let mut sink = StdSink::default();
    let mut live = StillRunning {
        client: &client,
        id: &args.id,
    };
    let stats = read_log(status.log_path.as_ref(), &opts, &mut sink, &mut live).await?;
    if stats.malformed > 0 {
        eprintln!(
            "huskctl: warning: skipped {} line(s) of {} not in the CRI log format",
            stats.malformed, status.log_path
        );
    }
    Ok(())
}

/// `--since`: an RFC 3339 time, or a duration back from now.
pub fn parse_since(s: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let back = parse_timeout(s)
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| {
            format!("invalid --since {s:?}: use a time (2024-01-02T15:04:05Z) or a duration (5m)")
        })?
        .0
        .unwrap_or_default();
    let back = chrono::Duration::from_std(back).context("--since is too far back")?;
    Ok(Utc::now() - back)
}

/// Asks huskd whether the container still runs; a removed container does not.
struct StillRunning<'a> {
    client: &'a Client,
    id: &'a str,
}

impl Liveness for StillRunning<'_> {
    async fn running(&mut self) -> anyhow::Result<bool> {
        match status(self.client, self.id, false).await {
            Ok((s, _)) => Ok(s.state == ContainerState::ContainerRunning as i32),
            Err(e)
                if e.downcast_ref::<RpcError>().and_then(RpcError::code)
                    == Some(Code::NotFound) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Buffered stdout and stderr; switching streams flushes the other, keeping their order.
struct StdSink {
    out: BufWriter<Stdout>,
    err: BufWriter<Stderr>,
    last: Option<Stream>,
}

impl Default for StdSink {
    fn default() -> Self {
        StdSink {
            out: BufWriter::new(std::io::stdout()),
            err: BufWriter::new(std::io::stderr()),
            last: None,
        }
    }
}

impl Sink for StdSink {
    fn write(&mut self, stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
        if self.last.is_some_and(|last| last != stream) {
            self.flush()?;
        }
        self.last = Some(stream);
        match stream {
            Stream::Stdout => self.out.write_all(bytes),
            Stream::Stderr => self.err.write_all(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_values() {
        let t = parse_since("2024-01-02T15:04:05Z").expect("time");
        assert_eq!(t.to_rfc3339(), "2024-01-02T15:04:05+00:00");
        let t = parse_since("2024-01-02T17:04:05+02:00").expect("time");
        assert_eq!(t.to_rfc3339(), "2024-01-02T15:04:05+00:00");
        let ago = Utc::now() - parse_since("5m").expect("duration");
        assert!(
            ago.num_seconds() >= 299 && ago.num_seconds() <= 301,
            "{ago}"
        );
        assert!(parse_since("yesterday").is_err());
    }
}
