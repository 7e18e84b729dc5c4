//! Command-line grammar: the global flags, one variant per verb and the argument struct of each.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::bench::BenchCommand;
use crate::commands::checkpoint::CheckpointArgs;
use crate::commands::containers::{CreateArgs, InspectArgs, PsArgs, RmArgs, StartArgs, StopArgs};
use crate::commands::events::EventsArgs;
use crate::commands::exec::{AttachArgs, ExecArgs};
use crate::commands::logs::LogsArgs;
use crate::commands::metrics::MetricsArgs;
use crate::commands::pods::{InspectpArgs, PodsArgs, RmpArgs, RunpArgs, StoppArgs};
use crate::commands::port_forward::PortForwardArgs;
use crate::commands::run::RunArgs;
use crate::commands::stats::{StatsArgs, StatspArgs};
use crate::commands::update::UpdateArgs;

/// The default endpoint of huskd.
pub const DEFAULT_ENDPOINT: &str = "unix:///run/husk/husk.sock";

/// huskctl: the husk CLI, crictl-like verbs over huskd's socket.
#[derive(Debug, Parser)]
#[command(
    name = "huskctl",
    version,
    about = "huskctl: the husk container runtime CLI (crictl-like)",
    after_help = "Global options go before the verb: huskctl -r /run/husk/husk.sock images"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that apply to every verb.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// huskd endpoint: unix:///path, a bare socket path or tcp://host:port
    /// [falls back to $CONTAINER_RUNTIME_ENDPOINT, then unix:///run/husk/husk.sock]
    #[arg(short = 'r', long, env = "HUSK_ENDPOINT", value_name = "ENDPOINT")]
    pub endpoint: Option<String>,

    /// Time limit of each call, e.g. 30s, 2m, 500ms; 0 for none (pull and import streams have none)
    #[arg(short = 't', long, default_value = "30s", value_parser = parse_timeout)]
    pub timeout: Timeout,
}

/// A call time limit; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Option<Duration>);

/// Parses `30s`, `2m`, `1h`, `500ms`, `1m30s` or bare seconds (`30`); `0` means no limit.
pub fn parse_timeout(s: &str) -> Result<Timeout, String> {
    let d = parse_duration(s)?;
    Ok(Timeout((!d.is_zero()).then_some(d)))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {s:?} (use ms, s, m or h)"
                ));
            }
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())?;
        rest = tail;
    }
    Ok(total)
}

/// The verbs. Each variant's doc line is its one-line help.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the runtime version information
    Version(VersionArgs),
    /// Show the runtime status and configuration
    Info(InfoArgs),
    /// Pull an image, showing per-layer progress
    Pull(PullArgs),
    /// List images
    #[command(visible_aliases = ["image", "img"])]
    Images(ImagesArgs),
    /// Show the status of one or more images
    Inspecti(InspectiArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Show image filesystem usage
    Imagefsinfo(ImageFsInfoArgs),
    /// Import an OCI image layout or `docker save` archive (tar, optionally gzip)
    Import(ImportArgs),
    /// Run a new pod sandbox from a config file
    Runp(RunpArgs),
    /// Stop one or more pod sandboxes
    Stopp(StoppArgs),
    /// Remove one or more pod sandboxes
    Rmp(RmpArgs),
    /// List pod sandboxes
    Pods(PodsArgs),
    /// Show the status of one or more pod sandboxes
    Inspectp(InspectpArgs),
    /// Create a container in a pod from a config file
    Create(CreateArgs),
    /// Start one or more created containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Show the status of one or more containers
    Inspect(InspectArgs),
    /// Print a container's logs
    Logs(LogsArgs),
    /// Run a command in a running container (-i/-t: interactive, streamed)
    Exec(ExecArgs),
    /// Attach to a running container's main process
    Attach(AttachArgs),
    /// Forward local ports to a pod sandbox
    PortForward(PortForwardArgs),
    /// Show containers' resource usage
    Stats(StatsArgs),
    /// Show pod sandboxes' resource usage
    Statsp(StatspArgs),
    /// Update the resources of one or more running containers
    Update(UpdateArgs),
    /// Checkpoint a running container with CRIU into an archive (it keeps running)
    Checkpoint(CheckpointArgs),
    /// Follow container events (created, started, stopped, deleted)
    Events(EventsArgs),
    /// Pull the image, then run a pod and a container in it
    Run(RunArgs),
    /// Print huskd's Prometheus metrics (its [metrics] endpoint)
    Metrics(MetricsArgs),
    /// Measure runtime performance
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// Output formats of listing verbs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Output formats of verbs that print a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormat {
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format (default: text)
    #[arg(short, long, value_enum)]
    pub output: Option<DataFormat>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: DataFormat,
}

/// Registry credentials, shared by `pull` and `bench pull`.
#[derive(Debug, Clone, Default, Args)]
pub struct AuthArgs {
    /// Registry credentials as USER:PASS
    #[arg(long, value_name = "USER[:PASS]")]
    pub creds: Option<String>,
    /// Registry auth as base64 of USER:PASS
    #[arg(long, value_name = "BASE64")]
    pub auth: Option<String>,
    /// Identity token to obtain a registry access token
    #[arg(long, value_name = "TOKEN")]
    pub identity_token: Option<String>,
    /// Bearer token sent to the registry
    #[arg(long, value_name = "TOKEN")]
    pub registry_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. docker.io/library/busybox:latest
    pub image: String,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Print one line per finished layer instead of progress bars
    #[arg(long)]
    pub no_progress: bool,
    /// Print only the pulled image reference
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only list images matching this reference
    pub image: Option<String>,
    /// Only print image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Do not truncate IDs and digests
    #[arg(long)]
    pub no_trunc: bool,
    /// Show all fields of each image
    #[arg(short, long)]
    pub verbose: bool,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct InspectiArgs {
    /// Image references or IDs
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: DataFormat,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image references or IDs
    #[arg(required_unless_present_any = ["all", "prune"])]
    pub images: Vec<String>,
    /// Remove all images
    #[arg(short, long, conflicts_with_all = ["images", "prune"])]
    pub all: bool,
    /// Remove all images not used by any container
    #[arg(long, conflicts_with = "images")]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct ImageFsInfoArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Archive to import; `-` reads standard input
    pub file: String,
    /// No progress bar; print only the imported names
    #[arg(short, long)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let t = |s| parse_timeout(s).map(|t| t.0);
        assert_eq!(t("30s"), Ok(Some(Duration::from_secs(30))));
        assert_eq!(t("2m"), Ok(Some(Duration::from_secs(120))));
        assert_eq!(t("1m30s"), Ok(Some(Duration::from_secs(90))));
        assert_eq!(t("500ms"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(t("1.5s"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(t("10"), Ok(Some(Duration::from_secs(10))));
        assert_eq!(t("0"), Ok(None));
        assert_eq!(t("0s"), Ok(None));
        assert!(t("5x").is_err());
        assert!(t("").is_err());
        assert!(t("s").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn rmi_needs_a_target() {
        assert!(Cli::try_parse_from(["huskctl", "rmi"]).is_err());
        assert!(Cli::try_parse_from(["huskctl", "rmi", "-a"]).is_ok());
        assert!(Cli::try_parse_from(["huskctl", "rmi", "--prune"]).is_ok());
        assert!(Cli::try_parse_from(["huskctl", "rmi", "-a", "busybox"]).is_err());
    }
}
