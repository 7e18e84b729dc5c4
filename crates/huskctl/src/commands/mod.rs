//! The verbs: dispatch from the parsed command line to one module per verb group.

pub mod bench;
pub mod checkpoint;
pub mod containers;
pub mod events;
pub mod exec;
pub mod images;
pub mod import;
pub mod info;
pub mod listing;
pub mod logs;
pub mod metrics;
pub mod pods;
pub mod port_forward;
pub mod pull;
pub mod pull_progress;
pub mod rmi;
pub mod run;
pub mod session;
pub mod stats;
pub mod update;

use std::fmt;
use std::time::Duration;

use k8s_cri::v1::ImageSpec;

use crate::cli::{Cli, Command};
use crate::client::{Client, Endpoint, resolve_endpoint};

/// What every verb gets: where huskd is and the per-call time limit.
pub struct Ctx {
    pub endpoint: Endpoint,
    pub timeout: Option<Duration>,
}

impl Ctx {
    /// Connects to huskd.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(&self.endpoint, self.timeout).await
    }
}

/// Runs the verb named on the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cri_env = std::env::var("CONTAINER_RUNTIME_ENDPOINT").ok();
    let ctx = Ctx {
        endpoint: resolve_endpoint(cli.global.endpoint.as_deref(), cri_env.as_deref())?,
        timeout: cli.global.timeout.0,
    };
    match cli.command {
        Command::Version(args) => info::version(&ctx, args).await,
        Command::Info(args) => info::info(&ctx, args).await,
        Command::Pull(args) => pull::pull(&ctx, args).await,
        Command::Images(args) => images::list(&ctx, args).await,
        Command::Inspecti(args) => images::inspect(&ctx, args).await,
        Command::Rmi(args) => rmi::rmi(&ctx, args).await,
        Command::Imagefsinfo(args) => images::fs_info(&ctx, args).await,
        Command::Import(args) => import::import(&ctx, args).await,
        Command::Bench(cmd) => bench::run(&ctx, cmd).await,
        Command::Runp(args) => pods::runp(&ctx, args).await,
        Command::Stopp(args) => pods::stopp(&ctx, args).await,
        Command::Rmp(args) => pods::rmp(&ctx, args).await,
        Command::Pods(args) => pods::pods(&ctx, args).await,
        Command::Inspectp(args) => pods::inspectp(&ctx, args).await,
        Command::Create(args) => containers::create(&ctx, args).await,
        Command::Start(args) => containers::start(&ctx, args).await,
        Command::Stop(args) => containers::stop(&ctx, args).await,
        Command::Rm(args) => containers::rm(&ctx, args).await,
        Command::Ps(args) => containers::ps(&ctx, args).await,
        Command::Inspect(args) => containers::inspect(&ctx, args).await,
        Command::Logs(args) => logs::logs(&ctx, args).await,
        Command::Exec(args) => exec::exec(&ctx, args).await,
        Command::Attach(args) => exec::attach(&ctx, args).await,
        Command::PortForward(args) => port_forward::port_forward(&ctx, args).await,
        Command::Stats(args) => stats::stats(&ctx, args).await,
        Command::Statsp(args) => stats::statsp(&ctx, args).await,
        Command::Update(args) => update::update(&ctx, args).await,
        Command::Checkpoint(args) => checkpoint::checkpoint(&ctx, args).await,
        Command::Events(args) => events::events(&ctx, args).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Metrics(args) => metrics::metrics(&ctx, args).await,
    }
}

/// Ends huskctl with this exit code and no message (`exec` passing on the command's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Runs `op` on each ID in turn, carrying on past failures (as crictl's `stop`, `rm`…). Every
/// failure but the last is printed here; the last is returned for `main` to print, so each
/// shows once as `huskctl: …` and the exit status is 1 if any failed.
pub async fn each_id(
    ids: &[String],
    mut op: impl AsyncFnMut(&str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failure: Option<anyhow::Error> = None;
    for id in ids {
        if let Err(e) = op(id).await {
            if let Some(earlier) = failure.take() {
                eprintln!("huskctl: {earlier:#}");
            }
            if is_broken_pipe(&e) {
                return Err(e);
            }
            failure = Some(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Whether `e` is stdout closing early (`huskctl ps | head`).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A CRI image spec naming `image`.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
