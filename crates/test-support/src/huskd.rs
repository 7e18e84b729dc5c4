//! The real `huskd` in a temp root (`root/`, `state/`, `certs.d/`, `cni/`, `config.toml`,
//! `huskd.log`), gRPC clients over its unix socket, and cleanup of whatever it left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use husk_api::v1::husk_client::HuskClient;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cleanup;
pub use crate::free_port;

/// How to start the daemon.
#[derive(Clone, Debug)]
pub struct HuskdOptions {
    /// The binary; tests pass `env!("CARGO_BIN_EXE_huskd")`.
    pub bin: PathBuf,
    /// TOML deep-merged over the generated `config.toml` (its keys win), so top-level keys
    /// and `[registry]` entries may both be given.
    pub extra_config: String,
    /// Environment variables set for the daemon (e.g. `HUSK_FAILPOINTS`), on every (re)start.
    pub env: Vec<(String, String)>,
}

impl HuskdOptions {
    /// Options with no extra config.
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            extra_config: String::new(),
            env: Vec::new(),
        }
    }

    /// Appends TOML to [`HuskdOptions::extra_config`].
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }
}

/// A running daemon. Drop stops it, kills processes left under its dir, unmounts leftovers
/// and removes the dir (printing the daemon log if the test is panicking).
pub struct Huskd {
    opts: HuskdOptions,
    dir: PathBuf,
    child: Option<Child>,
}

impl Huskd {
    /// Creates the temp root, writes the config and starts the daemon (waits ≤ 20 s).
    pub fn start(opts: HuskdOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("husk-test-")
            .tempdir()?
            .keep();
        let mut h = Self {
            opts,
            dir,
            child: None,
        };
        for d in ["root", "state", "certs.d", "cni/net.d"] {
            std::fs::create_dir_all(h.dir.join(d))?;
        }
        let config = h.config_toml()?;
        std::fs::write(h.config_path(), config)?;
        h.spawn()?;
        Ok(h)
    }

    /// The generated config with `extra_config` merged in.
    fn config_toml(&self) -> Result<String> {
        let s = |p: PathBuf| toml::Value::String(p.to_string_lossy().into_owned());
        let mut registry = toml::Table::new();
        registry.insert("config_path".into(), s(self.certs_dir()));
        let mut base = toml::Table::new();
        base.insert("root".into(), s(self.root_dir()));
        base.insert("state_dir".into(), s(self.state_dir()));
        base.insert("socket".into(), s(self.socket_path()));
        base.insert("registry".into(), toml::Value::Table(registry));
        let mut cni = toml::Table::new();
        cni.insert("conf_dir".into(), s(self.cni_dir().join("net.d")));
        base.insert("cni".into(), toml::Value::Table(cni));
        let extra: toml::Table =
            toml::from_str(&self.opts.extra_config).context("HuskdOptions::extra_config")?;
        merge(&mut base, extra);
        Ok(toml::to_string(&base)?)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(&self.opts.bin)
            .arg("--config")
            .arg(self.config_path())
            .args(["--log-level", "debug"])
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.opts.bin.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                bail!("huskd exited during startup ({st}); log:\n{}", self.log());
            }
            if std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("huskd socket not ready after 20s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The temp dir holding everything.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<tmp>/state/husk.sock`.
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir().join("husk.sock")
    }

    /// `<tmp>/root`.
    pub fn root_dir(&self) -> PathBuf {
        self.dir.join("root")
    }

    /// `<tmp>/state`.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// `<tmp>/certs.d` (`[registry] config_path`).
    pub fn certs_dir(&self) -> PathBuf {
        self.dir.join("certs.d")
    }

    /// `<tmp>/cni`, for plugin binaries a test provides; huskd's `[cni] conf_dir` is
    /// `<tmp>/cni/net.d` (empty: NetworkReady is false until a test writes a conflist).
    pub fn cni_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// `<tmp>/config.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    /// `<tmp>/huskd.log`.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("huskd.log")
    }

    /// Everything the daemon printed (across restarts).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.log_path()).unwrap_or_default()).into_owned()
    }

    /// The daemon's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Writes `<certs.d>/<host>/hosts.toml`.
    pub fn write_hosts_toml(&self, host: &str, toml: &str) -> Result<()> {
        self.write_certs_file(host, "hosts.toml", toml.as_bytes())
    }

    /// Writes any file (e.g. `ca.crt`) into `<certs.d>/<host>/`.
    pub fn write_certs_file(&self, host: &str, name: &str, data: &[u8]) -> Result<()> {
        let d = self.certs_dir().join(host);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(name), data)?;
        Ok(())
    }

    /// SIGTERM, wait ≤ 10 s, then SIGKILL. `None` if it was not running.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(mut c) => Ok(Some(cleanup::terminate(&mut c, Duration::from_secs(10))?)),
            None => Ok(None),
        }
    }

    /// SIGKILL (a crash), then reap.
    pub fn kill(&mut self) -> Result<Option<ExitStatus>> {
        match self.child.take() {
            Some(mut c) => {
                c.kill()?;
                Ok(Some(c.wait()?))
            }
            None => Ok(None),
        }
    }

    /// Stops the daemon if it runs and starts it again on the same dirs.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn()
    }

    /// Mount points left under the temp dir (should be empty after pods are removed).
    pub fn mounts(&self) -> Vec<PathBuf> {
        cleanup::mounts_under(&self.dir)
    }

    /// Processes other than the daemon whose root, cwd, exe or command line is under the
    /// temp dir (monitors, containers).
    pub fn processes(&self) -> Vec<u32> {
        let me = self.pid();
        cleanup::processes_under(&self.dir)
            .into_iter()
            .filter(|p| Some(*p) != me)
            .collect()
    }

    /// A gRPC channel to the daemon's socket.
    pub async fn channel(&self) -> Result<Channel> {
        channel(&self.socket_path()).await
    }

    /// A CRI `ImageService` client.
    pub async fn image_client(&self) -> Result<ImageServiceClient<Channel>> {
        Ok(ImageServiceClient::new(self.channel().await?))
    }

    /// A CRI `RuntimeService` client.
    pub async fn runtime_client(&self) -> Result<RuntimeServiceClient<Channel>> {
        Ok(RuntimeServiceClient::new(self.channel().await?))
    }

    /// A `husk.v1.Husk` client.
    pub async fn husk_client(&self) -> Result<HuskClient<Channel>> {
        Ok(HuskClient::new(self.channel().await?))
    }
}

impl Drop for Huskd {
    fn drop(&mut self) {
        let _ = self.stop();
        let left = cleanup::processes_under(&self.dir);
        if !left.is_empty() {
            eprintln!("husk-test-support: killing processes left by huskd: {left:?}");
            cleanup::kill_pids(&left);
        }
        // Containers a failed test left running (their monitors are gone by now).
        let ids: Vec<String> = std::fs::read_dir(self.state_dir().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        let (mut left, cgroups) = cleanup::processes_in_cgroups(&ids);
        // Pod PID-namespace inits (`husk-pause`) of pods a failed test left.
        left.extend(
            std::fs::read_dir(self.root_dir().join("sandboxes"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read(e.path()).ok())
                .filter_map(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
                .filter_map(|v| v["infra_pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
                .filter(|p| {
                    std::fs::read_to_string(format!("/proc/{p}/comm"))
                        .is_ok_and(|c| c.trim() == "husk-pause")
                }),
        );
        if !left.is_empty() {
            eprintln!("husk-test-support: killing container processes left by huskd: {left:?}");
            cleanup::kill_pids(&left);
        }
        cleanup::remove_cgroups(&cgroups);
        if std::thread::panicking() {
            eprintln!(
                "--- huskd log ({}) ---\n{}\n--- end of huskd log ---",
                self.dir.display(),
                self.log()
            );
        }
        cleanup::remove_tree(&self.dir);
    }
}

/// Deep-merges `extra` into `base`; tables merge, everything else is replaced.
fn merge(base: &mut toml::Table, extra: toml::Table) {
    for (k, v) in extra {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(e)) => merge(b, e),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// A tonic channel over the unix socket at `path`.
pub async fn channel(path: &Path) -> Result<Channel> {
    let path = path.to_path_buf();
    let ch = Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .context("connect to huskd socket")?;
    Ok(ch)
}

impl HuskdOptions {
    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }
}

impl Huskd {
    /// The options the next (re)start uses: e.g. to set or clear `HUSK_FAILPOINTS` between
    /// restarts.
    pub fn options_mut(&mut self) -> &mut HuskdOptions {
        &mut self.opts
    }

    /// Waits (≤ `timeout`) for the daemon to exit on its own (a failpoint that aborts it) and
    /// reaps it; `None` if it still runs (it is left running) or was not running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        while let Some(c) = self.child.as_mut() {
            if let Some(st) = c.try_wait()? {
                self.child = None;
                return Ok(Some(st));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(None)
    }

    /// Starts the daemon again (after [`Huskd::kill`] or an exit) on the same dirs, with the
    /// current options.
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("huskd is still running");
        }
        self.spawn()
    }
}
