//! A real Debian `docker-registry` (distribution 2.8) on 127.0.0.1 in a temp dir: no auth,
//! htpasswd (bcrypt) or bearer tokens from an in-process token server, optionally over TLS
//! with a throwaway CA. Pushing images and reading them back live in [`push`](self).

mod push;
mod token;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use token::TokenServer;
pub use token::TokenStats;

use crate::cleanup::terminate;
use crate::oci::digest_hex;

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// `auth.token.service` of token-auth registries (the `aud` of their tokens).
pub const TOKEN_SERVICE: &str = "husk-test-registry";
/// `auth.token.issuer` of token-auth registries.
pub const TOKEN_ISSUER: &str = "husk-test-issuer";

/// How clients must authenticate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Auth {
    /// Anonymous access.
    #[default]
    None,
    /// HTTP Basic against a bcrypt htpasswd file.
    Htpasswd {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
    /// Bearer tokens (the Docker Hub flow) from a token server that checks these credentials.
    Token {
        /// User name.
        user: String,
        /// Password.
        pass: String,
    },
}

/// What [`Registry::start`] sets up.
#[derive(Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Authentication.
    pub auth: Auth,
    /// Serve HTTPS with a certificate for `127.0.0.1` and `localhost` from a fresh CA.
    pub tls: bool,
}

/// A running registry; stopped (SIGTERM, then SIGKILL) and its temp dir removed on drop.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    tls: bool,
    auth: Auth,
    token: Option<TokenServer>,
    client: reqwest::Client,
    /// Authorization header values by scope, reused across requests.
    auth_cache: Mutex<std::collections::HashMap<String, String>>,
}

fn q(p: &Path) -> String {
    serde_json::to_string(&p.to_string_lossy()).unwrap_or_default()
}

/// Writes `ca.crt`, `server.crt`, `server.key` into `dir`.
fn write_tls(dir: &Path) -> Result<()> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "husk-test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key)?;
    std::fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    std::fs::write(dir.join("server.crt"), cert.pem())?;
    std::fs::write(dir.join("server.key"), key.serialize_pem())?;
    Ok(())
}

fn htpasswd_line(user: &str, pass: &str) -> Result<String> {
    let out = Command::new("htpasswd")
        .args(["-Bbn", user, pass])
        .output()
        .context("run htpasswd (apt-get install apache2-utils)")?;
    if !out.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned() + "\n")
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers (200 or 401).
    pub async fn start(opts: RegistryOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("husk-registry-")
            .tempdir()?;
        let d = dir.path();
        std::fs::create_dir_all(d.join("storage"))?;
        let mut client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(300));
        if opts.tls {
            write_tls(d)?;
            let pem = std::fs::read(d.join("ca.crt"))?;
            client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
        }
        let token = match &opts.auth {
            Auth::Token { user, pass } => Some(TokenServer::start(user, pass, d)?),
            _ => None,
        };
        if let Auth::Htpasswd { user, pass } = &opts.auth {
            std::fs::write(d.join("htpasswd"), htpasswd_line(user, pass)?)?;
        }
        let mut reg = Self {
            child: None,
            dir,
            port: 0,
            tls: opts.tls,
            auth: opts.auth,
            token,
            client: client.build()?,
            auth_cache: Mutex::new(Default::default()),
        };
        let mut last_err = None;
        for _ in 0..5 {
            reg.port = crate::free_port();
            match reg.spawn_and_wait().await {
                Ok(()) => return Ok(reg),
                Err(e) => {
                    if let Some(mut c) = reg.child.take() {
                        let _ = terminate(&mut c, Duration::from_secs(2));
                    }
                    if !reg.log().contains("address already in use") {
                        return Err(e.context(format!("registry log:\n{}", reg.log())));
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn config_yaml(&self) -> String {
        let d = self.dir.path();
        let mut y = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{}\n  secret: husk-test-secret\n",
            q(&d.join("storage")),
            self.port
        );
        if self.tls {
            y += &format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                q(&d.join("server.crt")),
                q(&d.join("server.key"))
            );
        }
        match (&self.auth, &self.token) {
            (Auth::Htpasswd { .. }, _) => {
                y += &format!(
                    "auth:\n  htpasswd:\n    realm: husk-test\n    path: {}\n",
                    q(&d.join("htpasswd"))
                );
            }
            (Auth::Token { .. }, Some(t)) => {
                y += &format!(
                    "auth:\n  token:\n    realm: \"{}\"\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    t.realm(),
                    q(t.cert_path())
                );
            }
            _ => {}
        }
        y
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let d = self.dir.path();
        let config = d.join("config.yml");
        std::fs::write(&config, self.config_yaml())?;
        let log = std::fs::File::create(d.join("registry.log"))?;
        let mut cmd = Command::new(REGISTRY_BIN);
        cmd.arg("serve").arg(&config);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {REGISTRY_BIN}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{}/v2/", self.url());
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .map(Child::try_wait)
                .transpose()?
                .flatten()
            {
                bail!("docker-registry exited early: {st}");
            }
            if let Ok(r) = self.client.get(&url).send().await {
                let s = r.status().as_u16();
                if s == 200 || s == 401 {
                    return Ok(());
                }
                bail!("GET /v2/ answered {s}");
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer on {url} within 20s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening address.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// The CA certificate (PEM) that signed the server certificate, when TLS is on.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.tls.then(|| self.dir.path().join("ca.crt"))
    }

    /// A containerd-style `hosts.toml` pointing at this registry (with `ca` when TLS is on).
    pub fn hosts_toml(&self) -> String {
        let mut t = format!(
            "server = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n",
            url = self.url()
        );
        if let Some(ca) = self.ca_cert_path() {
            t += &format!("  ca = {}\n", q(&ca));
        }
        t
    }

    /// The auth mode.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// `(user, password)` when the registry needs credentials.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match &self.auth {
            Auth::None => None,
            Auth::Htpasswd { user, pass } | Auth::Token { user, pass } => Some((user, pass)),
        }
    }

    /// The identity (refresh) token the token server accepts for `grant_type=refresh_token`.
    pub fn identity_token(&self) -> Option<String> {
        self.token.as_ref().map(|t| t.identity_token().to_owned())
    }

    /// The token realm URL (`http://127.0.0.1:PORT/token`).
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(TokenServer::realm)
    }

    /// What the token server has seen so far (all zero without token auth).
    pub fn token_stats(&self) -> TokenStats {
        self.token
            .as_ref()
            .map(TokenServer::stats)
            .unwrap_or_default()
    }

    /// A client trusting this registry's CA (no credentials attached).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The registry's storage root (`storage.filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Where the registry keeps a blob on disk.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest_hex(digest);
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(hex.get(..2).unwrap_or(hex))
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of a stored blob (same size, wrong digest).
    pub fn corrupt_blob(&self, digest: &str) -> Result<()> {
        let p = self.blob_path(digest);
        let mut data = std::fs::read(&p).with_context(|| format!("read {}", p.display()))?;
        let mid = data.len() / 2;
        let b = data.get_mut(mid).context("empty blob")?;
        *b ^= 0xff;
        std::fs::write(&p, data)?;
        Ok(())
    }

    /// The registry's log (stdout + stderr).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.path().join("registry.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The registry's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = terminate(&mut c, Duration::from_secs(5));
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("--- docker-registry log (tail) ---\n{tail}\n---");
        }
        self.token = None;
    }
}
