//! `husk-testimg`: the test-support image builders and registry launcher as a command for
//! scripts (`scripts/demo.sh`, `scripts/bench-pull.sh`): push a busybox or a big benchmark image
//! to a plain-HTTP registry, write an offline archive, or run a local `docker-registry`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Parser, Subcommand, ValueEnum};
use husk_test_support::oci::{big_image, write_docker_save_archive, write_oci_layout_archive};
use husk_test_support::{BuiltImage, busybox_image, free_port};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use rustix::process::{Pid, Signal, kill_process};
use tokio::signal::unix::{SignalKind, signal};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// Test images and a local registry for husk's scripts (dev only).
#[derive(Debug, Parser)]
#[command(name = "husk-testimg", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Build the busybox image (from the host's busybox-static) and push it (plain HTTP)
    Push {
        /// Registry address, HOST:PORT
        #[arg(long)]
        registry: String,
        /// Repository, e.g. library/busybox
        #[arg(long, default_value = "library/busybox")]
        repo: String,
        /// Tag
        #[arg(long, default_value = "latest")]
        tag: String,
        /// The image's Cmd (default: sh); takes the rest of the line, so put it last
        #[arg(long, num_args = 1.., allow_hyphen_values = true, default_values = ["sh"])]
        cmd: Vec<String>,
    },
    /// Build an image of incompressible random data and push it (plain HTTP)
    PushBig {
        /// Registry address, HOST:PORT
        #[arg(long)]
        registry: String,
        /// Repository
        #[arg(long, default_value = "bench/big")]
        repo: String,
        /// Tag
        #[arg(long, default_value = "v1")]
        tag: String,
        /// Total bytes of layer data
        #[arg(long, default_value_t = 200_000_000)]
        bytes: u64,
        /// Number of layers
        #[arg(long, default_value_t = 8)]
        layers: usize,
    },
    /// Write the busybox image as an offline archive
    Archive {
        /// `docker` (classic `docker save`) or `oci` (OCI image layout)
        #[arg(long, value_enum, default_value = "docker")]
        format: ArchiveFormat,
        /// The name recorded in the archive
        #[arg(long, default_value = "busybox:offline")]
        tag: String,
        /// The archive to write
        out: PathBuf,
        /// The image's Cmd (default: sh); takes the rest of the line, so put it last
        #[arg(long, num_args = 1.., allow_hyphen_values = true, default_values = ["sh"])]
        cmd: Vec<String>,
    },
    /// Run a plain-HTTP docker-registry on 127.0.0.1 in the foreground until SIGTERM/SIGINT;
    /// prints `READY <host:port>` once it serves
    Registry {
        /// Directory for its config, storage and log (created if missing)
        #[arg(long)]
        dir: PathBuf,
        /// Port (default: a free one)
        #[arg(long)]
        port: Option<u16>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ArchiveFormat {
    Docker,
    Oci,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("husk-testimg: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Push {
            registry,
            repo,
            tag,
            cmd,
        } => {
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let img = busybox_image(&cmd)?.build();
            push(&registry, &repo, &tag, &img).await?;
            println!(
                "pushed {registry}/{repo}:{tag} ({} layers, {} bytes, manifest {})",
                img.layers.len(),
                img.total_size(),
                img.manifest_digest
            );
        }
        Cmd::PushBig {
            registry,
            repo,
            tag,
            bytes,
            layers,
        } => {
            let img = big_image(bytes, layers)?;
            push(&registry, &repo, &tag, &img).await?;
            println!(
                "pushed {registry}/{repo}:{tag} ({} layers, {} bytes, manifest {})",
                img.layers.len(),
                img.total_size(),
                img.manifest_digest
            );
        }
        Cmd::Archive {
            format,
            tag,
            out,
            cmd,
        } => {
            let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let img = busybox_image(&cmd)?.build();
            match format {
                ArchiveFormat::Docker => write_docker_save_archive(&img, &[&tag], &out)?,
                ArchiveFormat::Oci => write_oci_layout_archive(&img, Some(&tag), &out)?,
            }
            let kind = match format {
                ArchiveFormat::Docker => "docker save",
                ArchiveFormat::Oci => "OCI image layout",
            };
            println!("wrote {} ({kind} archive of {tag})", out.display());
        }
        Cmd::Registry { dir, port } => serve_registry(&dir, port).await?,
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pushing to an anonymous plain-HTTP registry.

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(600))
        .build()?)
}

/// Pushes every blob (skipping those the registry has), then the manifest under `tag`.
async fn push(registry: &str, repo: &str, tag: &str, img: &BuiltImage) -> Result<()> {
    let client = http_client()?;
    let base = url::Url::parse(&format!("http://{registry}"))
        .with_context(|| format!("invalid registry address {registry:?} (want HOST:PORT)"))?;
    for (digest, data) in img.blobs() {
        push_blob(&client, &base, repo, digest, data)
            .await
            .with_context(|| format!("push blob {digest} to {registry}/{repo}"))?;
    }
    let url = base.join(&format!("/v2/{repo}/manifests/{tag}"))?;
    let r = client
        .put(url)
        .header(CONTENT_TYPE, &img.manifest_media_type)
        .body(img.manifest.clone())
        .send()
        .await
        .with_context(|| format!("push manifest to {registry}/{repo}:{tag}"))?;
    let status = r.status();
    ensure!(
        status == StatusCode::CREATED,
        "PUT manifest {repo}:{tag}: {status}: {}",
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

async fn push_blob(
    client: &reqwest::Client,
    base: &url::Url,
    repo: &str,
    digest: &str,
    data: &[u8],
) -> Result<()> {
    let blob = base.join(&format!("/v2/{repo}/blobs/{digest}"))?;
    if client.head(blob).send().await?.status().is_success() {
        return Ok(());
    }
    let start = base.join(&format!("/v2/{repo}/blobs/uploads/"))?;
    let r = client.post(start).send().await?;
    ensure!(
        r.status() == StatusCode::ACCEPTED,
        "start upload: {}",
        r.status()
    );
    let loc = r
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("upload answer without Location")?;
    let mut put = base.join(loc)?;
    put.query_pairs_mut().append_pair("digest", digest);
    let r = client
        .put(put)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await?;
    let status = r.status();
    ensure!(
        status == StatusCode::CREATED,
        "PUT blob: {status}: {}",
        r.text().await.unwrap_or_default()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A foreground registry.

fn registry_config(dir: &Path, port: u16) -> String {
    let q = |p: &Path| serde_json::to_string(&p.to_string_lossy()).unwrap_or_default();
    format!(
        "version: 0.1\nlog:\n  level: info\n  formatter: text\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
         maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: 127.0.0.1:{port}\n  secret: husk-testimg-secret\n",
        q(&dir.join("storage"))
    )
}

enum Started {
    Ready(tokio::process::Child),
    AddrInUse,
}

/// Starts docker-registry on `port` and waits until `GET /v2/` answers 200.
async fn start_registry(dir: &Path, port: u16) -> Result<Started> {
    let config = dir.join("config.yml");
    std::fs::write(&config, registry_config(dir, port))?;
    let log_path = dir.join("registry.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = tokio::process::Command::new(REGISTRY_BIN);
    cmd.arg("serve").arg(&config);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("REGISTRY_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {REGISTRY_BIN} (apt-get install docker-registry)"))?;
    let client = http_client()?;
    let url = format!("http://127.0.0.1:{port}/v2/");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("address already in use") {
                return Ok(Started::AddrInUse);
            }
            bail!("docker-registry exited early ({st}); log:\n{log}");
        }
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(Started::Ready(child));
            }
            stop(&mut child).await;
            bail!("GET {url} answered {}", r.status());
        }
        if Instant::now() > deadline {
            stop(&mut child).await;
            bail!("docker-registry did not answer on {url} within 20s");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// SIGTERM, wait ≤ 5 s, then SIGKILL; always reaps.
async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(Pid::from_raw)
    {
        let _ = kill_process(pid, Signal::TERM);
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

async fn serve_registry(dir: &Path, port: Option<u16>) -> Result<()> {
    std::fs::create_dir_all(dir.join("storage"))
        .with_context(|| format!("create {}", dir.display()))?;
    let dir = std::fs::canonicalize(dir)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (mut child, port) = 'start: {
        for _ in 0..5 {
            let p = port.unwrap_or_else(free_port);
            match start_registry(&dir, p).await? {
                Started::Ready(c) => break 'start (c, p),
                Started::AddrInUse if port.is_some() => bail!("port {p} is already in use"),
                Started::AddrInUse => continue,
            }
        }
        bail!("no free port found for docker-registry");
    };
    println!("READY 127.0.0.1:{port}");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        st = child.wait() => bail!("docker-registry exited unexpectedly ({})", st?),
    }
    stop(&mut child).await;
    Ok(())
}
