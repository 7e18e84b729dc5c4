//! `bench`: performance measurements against a live huskd. Each benchmark is one subcommand
//! with its own args struct and runner; `bench pull` times cold pulls (pull + unpack).

use clap::{Args, Subcommand, ValueEnum};
use k8s_cri::v1::{ImageStatusRequest, RemoveImageRequest};
use serde::Serialize;

use crate::cli::{AuthArgs, DataFormat};
use crate::client::Client;
use crate::commands::pull::{PullStats, auth_config, husk_pull};
use crate::commands::{Ctx, image_spec};
use crate::outln;
use crate::output::{human_size, print_data};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Time cold pulls (download + unpack) of an image: remove it, pull it, N times
    Pull(BenchPullArgs),
}

/// How a benchmark reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchFormat {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct BenchPullArgs {
    /// Image reference
    pub image: String,
    /// Number of runs
    #[arg(short = 'n', long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: BenchFormat,
}

/// Runs the benchmark named on the command line.
pub async fn run(ctx: &Ctx, cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Pull(args) => pull(ctx, args).await,
    }
}

/// One timed pull.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullRun {
    pub run: u32,
    pub seconds: f64,
    /// Compressed bytes pulled (`PullDone.size_bytes`).
    pub bytes: u64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub layers: usize,
    /// Layers huskd still had, so the run was not fully cold.
    pub cached_layers: usize,
}

impl PullRun {
    /// The run's figures from a pull's stats.
    pub fn new(run: u32, stats: &PullStats) -> Self {
        let seconds = stats.elapsed.as_secs_f64();
        let bytes = stats.done.size_bytes;
        let mb_per_s = if seconds > 0.0 {
            bytes as f64 / 1e6 / seconds
        } else {
            0.0
        };
        Self {
            run,
            seconds,
            bytes,
            mb_per_s,
            layers: stats.layers,
            cached_layers: stats.cached_layers,
        }
    }
}

/// Mean, minimum and maximum of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for an empty series.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return None;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Self { mean, min, max })
    }
}

/// The machine-readable result of `bench pull -o json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullReport {
    pub benchmark: &'static str,
    pub image: String,
    pub image_ref: String,
    pub runs: Vec<PullRun>,
    pub seconds: Option<Summary>,
    pub mb_per_s: Option<Summary>,
}

impl PullReport {
    /// Summarises the runs.
    pub fn new(image: String, image_ref: String, runs: Vec<PullRun>) -> Self {
        let seconds = Summary::of(runs.iter().map(|r| r.seconds));
        let mb_per_s = Summary::of(runs.iter().map(|r| r.mb_per_s));
        Self {
            benchmark: "pull",
            image,
            image_ref,
            runs,
            seconds,
            mb_per_s,
        }
    }
}

async fn pull(ctx: &Ctx, args: BenchPullArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let auth = auth_config(&args.auth)?;
    let table = args.output == BenchFormat::Table;
    let mut runs = Vec::new();
    let mut image_ref = String::new();
    for run in 1..=args.count {
        remove_if_present(&client, &args.image).await?;
        let request = husk_api::v1::PullImageRequest {
            image: args.image.clone(),
            auth: auth.clone(),
        };
        let stats = husk_pull(&client, request, |_| Ok(())).await?;
        let record = PullRun::new(run, &stats);
        if table {
            outln!("{}", run_line(&record));
        }
        image_ref = stats.done.image_ref;
        runs.push(record);
    }
    let report = PullReport::new(args.image, image_ref, runs);
    match args.output {
        BenchFormat::Json => print_data(DataFormat::Json, &report),
        BenchFormat::Table => {
            crate::output::emit(&summary_text(&report))?;
            Ok(())
        }
    }
}

/// Removes the image (by ID, so every tag goes) so the next pull starts cold.
async fn remove_if_present(client: &Client, image: &str) -> anyhow::Result<()> {
    let request = ImageStatusRequest {
        image: Some(image_spec(image)),
        verbose: false,
    };
    let status = client
        .unary("ImageStatus", client.image().image_status(request))
        .await?;
    if let Some(found) = status.image {
        let request = RemoveImageRequest {
            image: Some(image_spec(&found.id)),
        };
        client
            .unary("RemoveImage", client.image().remove_image(request))
            .await?;
    }
    Ok(())
}

/// `run 1: 1.234 s  12.3 MB/s  (4.5MB, 3 layers)`, noting layers that were not pulled.
pub fn run_line(r: &PullRun) -> String {
    let mut line = format!(
        "run {}: {:.3} s  {:.1} MB/s  ({}, {} layers",
        r.run,
        r.seconds,
        r.mb_per_s,
        human_size(r.bytes),
        r.layers
    );
    if r.cached_layers > 0 {
        line.push_str(&format!(
            ", {} already present: not a cold pull",
            r.cached_layers
        ));
    }
    line.push(')');
    line
}

/// The mean/min/max lines after the runs.
pub fn summary_text(report: &PullReport) -> String {
    let mut out = String::new();
    if let (Some(s), Some(t)) = (report.seconds, report.mb_per_s) {
        out.push_str(&format!(
            "seconds: mean {:.3}  min {:.3}  max {:.3}\n",
            s.mean, s.min, s.max
        ));
        out.push_str(&format!(
            "MB/s:    mean {:.1}  min {:.1}  max {:.1}\n",
            t.mean, t.min, t.max
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_api::v1::PullDone;
    use std::time::Duration;

    fn stats(ms: u64, bytes: u64) -> PullStats {
        PullStats {
            done: PullDone {
                image_id: "sha256:1".into(),
                image_ref: "r@sha256:2".into(),
                size_bytes: bytes,
            },
            layers: 3,
            cached_layers: 0,
            fetched_bytes: bytes,
            elapsed: Duration::from_millis(ms),
        }
    }

    #[test]
    fn throughput() {
        let r = PullRun::new(1, &stats(2000, 10_000_000));
        assert_eq!(r.seconds, 2.0);
        assert_eq!(r.mb_per_s, 5.0);
        assert_eq!(run_line(&r), "run 1: 2.000 s  5.0 MB/s  (10MB, 3 layers)");
    }

    #[test]
    fn summary() {
        assert_eq!(
            Summary::of([1.0, 2.0, 6.0]),
            Some(Summary {
                mean: 3.0,
                min: 1.0,
                max: 6.0
            })
        );
        assert_eq!(Summary::of([]), None);
    }

    #[test]
    fn json_record_shape() {
        let runs = vec![
            PullRun::new(1, &stats(1000, 4_000_000)),
            PullRun::new(2, &stats(2000, 4_000_000)),
        ];
        let report = PullReport::new("busybox".into(), "r@sha256:2".into(), runs);
        let doc = serde_json::to_value(&report).ok();
        assert_eq!(
            doc,
            Some(serde_json::json!({
                "benchmark": "pull",
                "image": "busybox",
                "image_ref": "r@sha256:2",
                "runs": [
                    {"run": 1, "seconds": 1.0, "bytes": 4_000_000, "mb_per_s": 4.0, "layers": 3, "cached_layers": 0},
                    {"run": 2, "seconds": 2.0, "bytes": 4_000_000, "mb_per_s": 2.0, "layers": 3, "cached_layers": 0},
                ],
                "seconds": {"mean": 1.5, "min": 1.0, "max": 2.0},
                "mb_per_s": {"mean": 3.0, "min": 2.0, "max": 4.0},
            }))
        );
        assert_eq!(
            summary_text(&report),
            "seconds: mean 1.500  min 1.000  max 2.000\nMB/s:    mean 3.0  min 2.0  max 4.0\n"
        );
    }
}
