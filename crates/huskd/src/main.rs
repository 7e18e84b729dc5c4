//! huskd: the composition root. Reads flags and the config file, sets up logging, opens the
//! stores, serves the CRI and husk's own API on one unix socket, and shuts down cleanly on
//! SIGTERM/SIGINT.
#![forbid(unsafe_code)]

mod cli;
mod config;
mod config_cmd;
mod config_schema;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use husk_engine::{CgroupDriver, Engine, EngineConfig};
use husk_image::{ImageService, ImageServiceConfig};
use husk_server::{DaemonInfo, RpcLogLayer, Services};
use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, DEFAULT_CONFIG, Overrides};

/// How long in-flight RPCs may run after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The husk container runtime daemon (Kubernetes CRI).
#[derive(Parser, Debug)]
#[command(name = "huskd", about, disable_version_flag = true)]
struct Args {
    /// Config file (TOML). A missing default file means defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Persistent state directory (overrides `root`).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state directory (overrides `state_dir`).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// gRPC unix socket (overrides `socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Log level or tracing filter (overrides `log_level`).
    #[arg(long)]
    log_level: Option<String>,
    /// Print the version, the git commit and the runtime handlers found
    #[arg(short = 'V', long)]
    version: bool,
    // Without a subcommand, huskd serves.
    #[command(subcommand)]
    command: Option<cli::Command>,
}

fn main() {
    let mut args = Args::parse();
    if args.version || args.command.is_some() {
        let command = args.command.take();
        let code = cli::run(command, args.version, args.config.as_deref(), || {
            <Args as clap::CommandFactory>::command()
        });
        std::process::exit(code);
    }
    if let Err(e) = run(args) {
        eprintln!("huskd: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let explicit = args.config.is_some();
    let path = args.config.clone().unwrap_or_else(|| DEFAULT_CONFIG.into());
    let ov = Overrides {
        root: args.root,
        state_dir: args.state_dir,
        socket: args.socket,
        log_level: args.log_level,
    };
    let cfg = Config::load(&path, explicit, &ov)?;
    init_tracing(&cfg);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("huskd")
        .build()
        .context("starting the async runtime")?;
    let res = rt.block_on(serve(cfg));
    // Don't wait for abandoned work (a pull whose client went away) to finish.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    res
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{},h2=warn,hyper=warn,tower=warn,rustls=warn",
        cfg.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cfg.log_format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn mkdir(p: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", p.display()))
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    mkdir(&cfg.root, 0o711)?;
    mkdir(&cfg.state_dir, 0o711)?;
    let sock_dir = cfg
        .socket
        .parent()
        .context("socket path has no parent directory")?;
    if sock_dir != cfg.state_dir {
        // Private, unless the state or the root lies below it: containers in user namespaces
        // resolve paths there with unmapped ids and need to search it (never list it).
        let below = cfg.state_dir.starts_with(sock_dir) || cfg.root.starts_with(sock_dir);
        mkdir(sock_dir, if below { 0o711 } else { 0o700 })?;
    }
    // The Prometheus endpoint is bound first (a taken address stops huskd at once) and
    // recording starts before recovery, which may find OOM kills.
    let metrics = match cfg.metrics.socket_addr() {
        Some(addr) => Some((
            husk_telemetry::bind(addr)
                .await
                .context("metrics.address")?,
            husk_telemetry::install(),
        )),
        None => None,
    };
    let runtime_name = cfg.default_runtime_name();
    let runtime_path = cfg
        .runtimes
        .get(&runtime_name)
        .map(|r| r.path.clone())
        .unwrap_or_else(|| runtime_name.clone());
    let runtime_path = config::find_binary(&runtime_path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or(runtime_path);

    let mut icfg = ImageServiceConfig::new(&cfg.root, &cfg.registry.config_path);
    icfg.max_concurrent_downloads = cfg.registry.max_concurrent_downloads;
    icfg.max_import_bytes = cfg.registry.max_import_bytes;
    let images = Arc::new(
        tokio::task::spawn_blocking(move || ImageService::open(icfg))
            .await?
            .context("opening the image store")?,
    );
    husk_sys::process::become_subreaper().context("becoming a child subreaper")?;
    let ecfg = engine_config(&cfg, &runtime_name)?;
    let engine = {
        let images = images.clone();
        Arc::new(
            tokio::task::spawn_blocking(move || Engine::open(ecfg, images))
                .await?
                .context("opening the pod and container store")?,
        )
    };
    engine
        .recover()
        .await
        .context("recovering pods and containers")?;
    spawn_reaper(&cfg);
    if let Some((endpoint, m)) = metrics {
        serve_metrics(endpoint, m, &engine);
    }
    let streaming = start_streaming(&cfg, engine.clone())?;
    let services = Services {
        streaming,
        engine,
        images,
        info: Arc::new(DaemonInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            config_json: serde_json::to_value(&cfg)?,
            runtime_path,
            runtime_name: runtime_name.clone(),
        }),
    };

    // A stale socket of a dead daemon is replaced; a live daemon is not.
    if cfg.socket.exists() {
        if std::os::unix::net::UnixStream::connect(&cfg.socket).is_ok() {
            bail!("another daemon is serving on {}", cfg.socket.display());
        }
        std::fs::remove_file(&cfg.socket)
            .with_context(|| format!("removing stale socket {}", cfg.socket.display()))?;
    }
    let listener = UnixListener::bind(&cfg.socket)
        .with_context(|| format!("binding {}", cfg.socket.display()))?;
    std::fs::set_permissions(&cfg.socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", cfg.socket.display()))?;

    tracing::info!(
        socket = %cfg.socket.display(),
        root = %cfg.root.display(),
        runtime = %runtime_name,
        version = env!("CARGO_PKG_VERSION"),
        "huskd serving"
    );

    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut stop_rx2 = stop_rx.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = stop_tx.send(true);
    });
    let server = tonic::transport::Server::builder()
        .layer(RpcLogLayer)
        .add_service(services.runtime_server())
        .add_service(services.image_server())
        .add_service(services.husk_server())
        // gRPC C-core and grpc-java clients send the socket's path as :authority, which h2
        // rejects: the shim rewrites it.
        .serve_with_incoming_shutdown(husk_server::uds_authority::incoming(listener), async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
    // Clients (the kubelet) keep connections open: in-flight RPCs get a grace period, then we go.
    let result = tokio::select! {
        r = server => r.context("gRPC server"),
        _ = async {
            let _ = stop_rx2.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}: closing them");
            Ok(())
        }
    };
    let _ = std::fs::remove_file(&cfg.socket);
    result?;
    tracing::info!("huskd stopped");
    Ok(())
}

/// Binds the streaming server (exec, attach, port-forward) and serves it in the background.
fn start_streaming(cfg: &Config, engine: Arc<Engine>) -> anyhow::Result<husk_streaming::Server> {
    let ip: std::net::IpAddr = cfg.stream.address.parse().context("stream.address")?;
    let tls = if cfg.stream.enable_tls {
        let (cert, key) = match (&cfg.stream.tls_cert_file, &cfg.stream.tls_key_file) {
            (Some(c), Some(k)) => (
                std::fs::read(c)
                    .with_context(|| format!("stream.tls_cert_file {}", c.display()))?,
                std::fs::read(k).with_context(|| format!("stream.tls_key_file {}", k.display()))?,
            ),
            // As containerd: without files, a self-signed certificate for this host.
            _ => {
                let mut names = vec!["localhost".to_string(), ip.to_string()];
                if let Ok(h) = rustix::system::uname().nodename().to_str() {
                    names.push(h.to_string());
                }
                let c = rcgen::generate_simple_self_signed(names)
                    .context("generating the streaming server's certificate")?;
                (
                    c.cert.pem().into_bytes(),
                    c.key_pair.serialize_pem().into_bytes(),
                )
            }
        };
        Some(husk_streaming::tls_config(&cert, &key).context("stream TLS")?)
    } else {
        None
    };
    let scfg = husk_streaming::Config {
        addr: std::net::SocketAddr::new(ip, cfg.stream.port),
        tls,
        ..Default::default()
    };
    let server = husk_streaming::Server::new(scfg, husk_server::EngineBackend::new(engine))
        .context("starting the streaming server")?;
    tracing::info!(addr = %server.addr(), tls = cfg.stream.enable_tls, "streaming server bound");
    let s = server.clone();
    tokio::spawn(async move {
        if let Err(e) = s.serve().await {
            tracing::error!(error = %e, "streaming server stopped");
        }
    });
    Ok(server)
}

/// The engine's settings from the daemon's config.
fn engine_config(cfg: &Config, default_runtime: &str) -> anyhow::Result<EngineConfig> {
    let mut runtimes = std::collections::BTreeMap::new();
    for (name, rt) in &cfg.runtimes {
        let path = config::find_binary(&rt.path).unwrap_or_else(|| PathBuf::from(&rt.path));
        runtimes.insert(
            name.clone(),
            husk_oci::RuntimeConfig {
                systemd_cgroup: cfg.cgroup_driver == "systemd",
                ..husk_oci::RuntimeConfig::new(
                    name.clone(),
                    path,
                    cfg.state_dir.join("runtimes").join(name),
                )
            },
        );
    }
    let monitor_bin = match &cfg.monitor_path {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("husk-monitor")))
            .filter(|p| p.is_file())
            .or_else(|| config::find_binary("husk-monitor"))
            .context("husk-monitor not found next to huskd nor in PATH (set monitor_path)")?,
    };
    Ok(EngineConfig {
        root: cfg.root.clone(),
        state_dir: cfg.state_dir.clone(),
        runtimes,
        default_runtime: default_runtime.to_string(),
        monitor_bin,
        cgroup_driver: if cfg.cgroup_driver == "systemd" {
            CgroupDriver::Systemd
        } else {
            CgroupDriver::Cgroupfs
        },
        default_cgroup_parent: cfg.default_cgroup_parent.clone(),
        ip_preference: if cfg.cni.ip_preference == "ipv6" {
            husk_net::IpPreference::Ipv6
        } else {
            husk_net::IpPreference::Ipv4
        },
        net: husk_net::NetConfig {
            conf_dir: cfg.cni.conf_dir.clone(),
            bin_dirs: cfg.cni.bin_dirs.clone(),
            timeout: husk_net::DEFAULT_TIMEOUT,
            cache_dir: cfg.root.join("cni/results"),
        },
        host_resolv_conf: "/etc/resolv.conf".into(),
        shm_size: 64 << 20,
    })
}

/// Serves `/metrics`, with container and pod counts taken from the engine at scrape time.
fn serve_metrics(
    endpoint: husk_telemetry::Endpoint,
    metrics: Arc<husk_telemetry::Metrics>,
    engine: &Arc<Engine>,
) {
    use husk_engine::container::{ContainerFilter, ContainerState};
    use husk_engine::sandbox::{SandboxFilter, SandboxState};
    let engine = Arc::downgrade(engine);
    metrics.set_state_source(move || {
        let mut n = husk_telemetry::StateCounts::default();
        let Some(engine) = engine.upgrade() else {
            return n;
        };
        for c in engine.list_containers(&ContainerFilter::default()) {
            *match c.state {
                ContainerState::Created => &mut n.containers_created,
                ContainerState::Running => &mut n.containers_running,
                ContainerState::Exited => &mut n.containers_exited,
                ContainerState::Unknown => &mut n.containers_unknown,
            } += 1;
        }
        for s in engine.list_pod_sandboxes(&SandboxFilter::default()) {
            *match s.state {
                SandboxState::Ready => &mut n.sandboxes_ready,
                SandboxState::NotReady => &mut n.sandboxes_notready,
            } += 1;
        }
        n
    });
    tracing::info!(address = %endpoint.local_addr(), "metrics endpoint serving /metrics");
    tokio::spawn(endpoint.serve(metrics));
}

/// As a child subreaper we inherit orphans (e.g. processes of a container whose monitor died):
/// reap them on every SIGCHLD and every few seconds. Processes we spawn and wait for ourselves
/// (runtimes, monitors) are left to their waiters.
fn spawn_reaper(cfg: &Config) {
    let mut skip: Vec<String> = vec!["husk-monitor".into(), "runc".into(), "crun".into()];
    for rt in cfg.runtimes.values() {
        if let Some(name) = std::path::Path::new(&rt.path).file_name() {
            skip.push(name.to_string_lossy().chars().take(15).collect());
        }
    }
    tokio::spawn(async move {
        let Ok(mut sigchld) = signal(SignalKind::child()) else {
            return;
        };
        loop {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), sigchld.recv()).await;
            let skip = skip.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let s: Vec<&str> = skip.iter().map(String::as_str).collect();
                husk_sys::process::reap_orphans(&s)
            })
            .await;
        }
    });
}
