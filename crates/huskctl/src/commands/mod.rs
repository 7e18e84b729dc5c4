//! The verbs: dispatch from the parsed command line to one module per verb group.

pub mod bench;
pub mod images;
pub mod import;
pub mod info;
pub mod pull;
pub mod pull_progress;
pub mod rmi;

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
    }
}

/// A CRI image spec naming `image`.
pub fn image_spec(image: &str) -> ImageSpec {
    ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
