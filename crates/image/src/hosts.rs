//! Registry host configuration in containerd's `hosts.toml` format (`<config_path>/<host>/hosts.toml`,
//! Docker-style `certs.d` certificate directories, `_default`), resolved into the ordered list of
//! endpoints to try for a registry domain.
//!
//! This follows containerd's `core/remotes/docker/config/hosts.go` (`ConfigureHosts`,
//! `HostDirFromRoot`, `parseHostsFile`, `loadCertFiles`) and the CRI plugin's `config_path`
//! handling. Semantics worth knowing:
//!
//! - Directory lookup for `host:port`: `<root>/host_port_`, then `<root>/host:port`, then
//!   `<root>/_default`; the first that exists wins (even if it holds no configuration). With
//!   several roots, each root is searched completely before the next.
//! - In a directory without `hosts.toml` (or with an empty one), `*.crt` files are CA
//!   certificates and `*.cert` (+ `*.key` of the same stem) client certificates for the
//!   upstream, as in Docker's `certs.d`.
//! - `[host."<url>"]` entries are tried in file order, then the upstream (`server`, or the
//!   default upstream when absent: `https://registry-1.docker.io` for `docker.io`, else
//!   `https://<domain>`, and for loopback domains with a port other than 443 `http://<domain>`
//!   with TLS verification off and HTTPS tried first).
//! - URLs without a scheme get `https://`; `/v2` is appended to the URL path unless it already
//!   ends in `/v2` or `override_path = true`.
//! - Capabilities default to pull + resolve + push for every entry (containerd's default; set
//!   `capabilities = ["pull", "resolve"]` on mirrors). The default upstream always gets all three.
//! - Relative `ca` / `client` paths are relative to the directory of the `hosts.toml`.
//! - Unknown keys are ignored (as go-toml does), with a warning so typos are visible.
//! - An `http://` endpoint that also has TLS settings (`ca`, `client`, `skip_verify`) and a port
//!   other than 80 is tried over HTTPS first, falling back to HTTP ([`RegistryHost::https_first`]).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use url::Url;

/// Name of the fallback host directory.
pub const DEFAULT_HOST_DIR: &str = "_default";
/// Name of the configuration file in a host directory.
pub const HOSTS_FILE: &str = "hosts.toml";
/// The canonical Docker Hub domain of references.
const DOCKER_HUB: &str = "docker.io";
/// The host actually serving Docker Hub's registry API.
const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// Why the host configuration for a registry could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum HostsError {
    /// The registry domain cannot name a host directory or URL.
    #[error("invalid registry host {host:?}")]
    InvalidRegistryHost { host: String },
    /// A host directory, `hosts.toml` or certificate file could not be read.
    #[error("failed to read {path:?}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// `hosts.toml` is not valid TOML.
    #[error("failed to parse {path:?}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A key has a value of the wrong type.
    #[error("invalid value for {key} in {path:?}: expected {expected}, found {found}")]
    InvalidValue {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// `capabilities` holds something other than `pull`, `resolve`, `push` (or `referrers`).
    #[error("unknown capability {capability:?} for {key} in {path:?}")]
    UnknownCapability {
        path: PathBuf,
        key: String,
        capability: String,
    },
    /// A `client` entry given as an array is not a `[cert, key]` pair.
    #[error("invalid client certificate pair for {key} in {path:?}: expected 2 paths, found {len}")]
    InvalidClientPair {
        path: PathBuf,
        key: String,
        len: usize,
    },
    /// A `server` or `[host."…"]` URL does not parse.
    #[error("invalid registry URL {server:?} in {path:?}: {source}")]
    InvalidServer {
        path: PathBuf,
        server: String,
        source: url::ParseError,
    },
    /// A `server` or `[host."…"]` URL is not `http` or `https`.
    #[error("unsupported scheme {scheme:?} in registry URL {server:?} in {path:?}")]
    UnsupportedScheme {
        path: PathBuf,
        server: String,
        scheme: String,
    },
    /// `dial_timeout` is not a Go duration such as `"5s"` or `"1m30s"`.
    #[error("invalid dial_timeout {value:?} for {key} in {path:?}")]
    InvalidDialTimeout {
        path: PathBuf,
        key: String,
        value: String,
    },
}

/// What an endpoint may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Fetch blobs, and manifests by digest.
    pub pull: bool,
    /// Resolve a tag to a digest (manifests by tag).
    pub resolve: bool,
    /// Push content.
    pub push: bool,
}

impl Capabilities {
    /// pull + resolve + push.
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
    /// Nothing.
    pub const NONE: Capabilities = Capabilities {
        pull: false,
        resolve: false,
        push: false,
    };

    /// Whether every capability in `other` is also in `self`.
    pub fn has(self, other: Capabilities) -> bool {
        (self.pull || !other.pull) && (self.resolve || !other.resolve) && (self.push || !other.push)
    }
}

/// containerd's default for an entry without `capabilities`: everything.
impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::ALL
    }
}

/// One endpoint to try for a registry, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHost {
    /// The API root, always ending in `/` so that [`Url::join`] with a relative path appends to
    /// it: `http://127.0.0.1:5000/v2/`, `https://mirror.example/v2/`, or with `override_path`
    /// the configured path (`https://proxy.example/custom/`). Prefer [`RegistryHost::endpoint`],
    /// which also adds the `ns` query parameter containerd sends to mirrors.
    ///
    /// When [`https_first`](Self::https_first) is set this is the `http` URL to fall back to.
    pub url: Url,
    /// What the endpoint may be used for (filter with [`Capabilities::has`]).
    pub capabilities: Capabilities,
    /// Skip TLS server certificate verification.
    pub skip_verify: bool,
    /// Extra CA certificate files (PEM) to trust in addition to the system roots.
    pub ca_files: Vec<PathBuf>,
    /// Client certificates: `(cert, key)`; a `None` key means the cert file also holds the key.
    pub client_certs: Vec<(PathBuf, Option<PathBuf>)>,
    /// Extra request headers, in file order; a name may repeat.
    pub headers: Vec<(String, String)>,
    /// The upstream server (the last entry), as opposed to a `[host]` mirror.
    pub is_upstream: bool,
    /// containerd's HTTP fallback: `url` is `http`, but the endpoint also has TLS settings (or is
    /// an unconfigured loopback registry), so try `https` on the same host and port first, and
    /// use `http` only when the server answers the TLS handshake with plain HTTP.
    pub https_first: bool,
    /// The registry domain to send as `?ns=` because this endpoint is not that registry itself
    /// (a mirror or a different `server`), as containerd does; `None` otherwise.
    pub namespace: Option<String>,
    /// Connect timeout (`dial_timeout`), if configured.
    pub dial_timeout: Option<Duration>,
}

impl RegistryHost {
    /// The URL of `<api root>/<repo_path>/<suffix>`, e.g. `repo_path = "library/busybox"` with
    /// `suffix = "manifests/latest"` or `"blobs/sha256:…"`, plus `?ns=<registry>` for mirrors.
    ///
    /// Paths are joined as containerd does (`path.Join`): empty and `.` segments are dropped;
    /// a trailing `/` on `suffix` (as in `blobs/uploads/`) is kept. Add further query parameters
    /// with `query_pairs_mut()` on the result.
    pub fn endpoint(&self, repo_path: &str, suffix: &str) -> Url {
        let mut segments: Vec<&str> = Vec::new();
        for part in self
            .url
            .path()
            .split('/')
            .chain(repo_path.split('/'))
            .chain(suffix.split('/'))
        {
            match part {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                s => segments.push(s),
            }
        }
        let mut path = format!("/{}", segments.join("/"));
        if suffix.ends_with('/') && path != "/" {
            path.push('/');
        }
        let mut url = self.url.clone();
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        if let Some(ns) = &self.namespace {
            url.query_pairs_mut().append_pair("ns", ns);
        }
        url
    }
}

/// The registry host configuration directories (`config_path` of containerd's CRI plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostsConfig {
    roots: Vec<PathBuf>,
}

impl HostsConfig {
    /// Configuration under one directory, e.g. `/etc/containerd/certs.d`. The directory need
    /// not exist; then every registry gets only its default upstream.
    pub fn new(config_path: impl Into<PathBuf>) -> HostsConfig {
        HostsConfig {
            roots: vec![config_path.into()],
        }
    }

    /// Configuration under several directories, searched in order.
    pub fn from_roots<I, P>(roots: I) -> HostsConfig
    where
        I: IntoIterator<Item = P>,
        P: Into<PathBuf>,
    {
        HostsConfig {
            roots: roots.into_iter().map(Into::into).collect(),
        }
    }

    /// Parses containerd's `config_path` value: a `:`-separated list of directories
    /// (`/etc/containerd/certs.d:/etc/docker/certs.d`). Empty elements are skipped.
    pub fn from_config_path(config_path: &str) -> HostsConfig {
        HostsConfig::from_roots(config_path.split(':').filter(|p| !p.is_empty()))
    }

    /// The directories searched, in order.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The host directory that applies to `registry_domain`, if any.
    pub fn host_dir(&self, registry_domain: &str) -> Result<Option<PathBuf>, HostsError> {
        validate_domain(registry_domain)?;
        for root in &self.roots {
            for candidate in host_paths(root, registry_domain) {
                match std::fs::metadata(&candidate) {
                    Ok(_) => return Ok(Some(candidate)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(HostsError::Io {
                            path: candidate,
                            source,
                        });
                    }
                }
            }
        }
        Ok(None)
    }

    /// The endpoints to try for `registry_domain` (as in a normalised reference: `docker.io`,
    /// `registry.k8s.io`, `127.0.0.1:5000`), mirrors first in file order, the upstream last.
    /// Filter by [`RegistryHost::capabilities`] for the operation at hand.
    ///
    /// Reads the files on every call, so edits apply without a restart (as in containerd).
    pub fn hosts_for(&self, registry_domain: &str) -> Result<Vec<RegistryHost>, HostsError> {
        let mut entries = match self.host_dir(registry_domain)? {
            Some(dir) => {
                tracing::debug!(dir = %dir.display(), registry = registry_domain, "loading host directory");
                load_host_dir(&dir)?
            }
            None => Vec::new(),
        };
        if entries.is_empty() {
            entries.push(Entry::default());
        }
        let last = entries.len() - 1;
        let mut hosts = Vec::with_capacity(entries.len());
        for (i, mut entry) in entries.into_iter().enumerate() {
            let url = match entry.url.take() {
                Some(url) => url,
                None => fill_default_upstream(&mut entry, registry_domain)?,
            };
            hosts.push(entry.into_host(url, registry_domain, i == last));
        }
        Ok(hosts)
    }
}

/// A host entry before conversion; `url` is `None` for the upstream when no `server` is
/// configured (it is then filled with the default upstream).
#[derive(Debug, Clone, Default)]
struct Entry {
    /// The API root, ending in `/`.
    url: Option<Url>,
    /// `host[:port]` as written (containerd compares and splits this, not a normalised form).
    authority: String,
    capabilities: Capabilities,
    skip_verify: Option<bool>,
    ca_files: Option<Vec<PathBuf>>,
    client_certs: Option<Vec<(PathBuf, Option<PathBuf>)>>,
    headers: Vec<(String, String)>,
    dial_timeout: Option<Duration>,
}

impl Entry {
    fn into_host(self, url: Url, registry_domain: &str, is_upstream: bool) -> RegistryHost {
        let explicit_tls =
            self.ca_files.is_some() || self.client_certs.is_some() || self.skip_verify.is_some();
        let port = split_host_port(&self.authority).1;
        let https_first = url.scheme() == "http" && explicit_tls && port != Some("80");
        let namespace =
            is_proxy(&self.authority, registry_domain).then(|| registry_domain.to_owned());
        RegistryHost {
            url,
            capabilities: self.capabilities,
            skip_verify: self.skip_verify.unwrap_or(false),
            ca_files: self.ca_files.unwrap_or_default(),
            client_certs: self.client_certs.unwrap_or_default(),
            headers: self.headers,
            is_upstream,
            https_first,
            namespace,
            dial_timeout: self.dial_timeout,
        }
    }
}

/// containerd `isProxy`: the endpoint is not the registry itself.
fn is_proxy(authority: &str, registry_domain: &str) -> bool {
    let authority = authority.to_ascii_lowercase();
    let domain = registry_domain.to_ascii_lowercase();
    authority != domain && !(domain == DOCKER_HUB && authority == DOCKER_HUB_REGISTRY)
}

/// containerd's defaults for an upstream without `server` (in `ConfigureHosts`); returns its URL.
fn fill_default_upstream(entry: &mut Entry, domain: &str) -> Result<Url, HostsError> {
    let scheme = if domain == DOCKER_HUB {
        entry.authority = DOCKER_HUB_REGISTRY.to_owned();
        "https"
    } else if is_localhost(domain) {
        entry.authority = domain.to_owned();
        let port = split_host_port(domain).1;
        if port != Some("80") {
            entry.skip_verify = Some(true);
        }
        if matches!(port, None | Some("443")) {
            "https"
        } else {
            // Ambiguous port: http, with HTTPS tried first (`https_first`, as skip_verify is set).
            "http"
        }
    } else {
        entry.authority = domain.to_owned();
        "https"
    };
    entry.capabilities = Capabilities::ALL;
    Url::parse(&format!("{scheme}://{}/v2/", entry.authority)).map_err(|_| {
        HostsError::InvalidRegistryHost {
            host: domain.to_owned(),
        }
    })
}

/// containerd `docker.IsLocalhost`: `localhost` or a loopback IP, with or without port.
pub fn is_localhost(domain: &str) -> bool {
    let host = match split_host_port(domain) {
        (h, Some(_)) => h,
        _ => domain,
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Go `net.SplitHostPort`, leniently: `(host, Some(port))` when there is a port, else
/// `(input, None)`. Brackets of an IPv6 host are removed.
fn split_host_port(hostport: &str) -> (&str, Option<&str>) {
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']')
            && let Some(port) = after.strip_prefix(':')
        {
            return (host, Some(port));
        }
        return (hostport, None);
    }
    match hostport.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (hostport, None),
    }
}

fn validate_domain(domain: &str) -> Result<(), HostsError> {
    let ok = !domain.is_empty()
        && !domain.starts_with('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(HostsError::InvalidRegistryHost {
            host: domain.to_owned(),
        })
    }
}

/// containerd `hostPaths` (Unix): `host_port_` (when there is a port), `host`, `_default`.
fn host_paths(root: &Path, host: &str) -> Vec<PathBuf> {
    let mut paths = Vec::with_capacity(3);
    if let Some(idx) = host.rfind(':')
        && idx > 0
    {
        paths.push(root.join(format!("{}_{}_", &host[..idx], &host[idx + 1..])));
    }
    paths.push(root.join(host));
    paths.push(root.join(DEFAULT_HOST_DIR));
    paths
}

/// containerd `loadHostDir`.
fn load_host_dir(dir: &Path) -> Result<Vec<Entry>, HostsError> {
    let file = dir.join(HOSTS_FILE);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(HostsError::Io { path: file, source }),
    };
    if text.is_empty() {
        return load_cert_files(dir);
    }
    parse_hosts_file(dir, &file, &text)
}

/// containerd `loadCertFiles`: Docker's `certs.d` layout, for the upstream.
fn load_cert_files(dir: &Path) -> Result<Vec<Entry>, HostsError> {
    let io_err = |path: &Path, source| HostsError::Io {
        path: path.to_owned(),
        source,
    };
    let mut names = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for entry in rd {
                let entry = entry.map_err(|e| io_err(dir, e))?;
                let is_dir = entry
                    .file_type()
                    .map_err(|e| io_err(&entry.path(), e))?
                    .is_dir();
                if !is_dir {
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir, e)),
    }
    names.sort();
    let mut entry = Entry::default();
    for name in &names {
        if name.ends_with(".crt") {
            entry
                .ca_files
                .get_or_insert_with(Vec::new)
                .push(dir.join(name));
        }
        if let Some(stem) = name.strip_suffix(".cert") {
            let key = dir.join(format!("{stem}.key"));
            let key = match std::fs::metadata(&key) {
                Ok(_) => Some(key),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(io_err(&key, e)),
            };
            entry
                .client_certs
                .get_or_insert_with(Vec::new)
                .push((dir.join(name), key));
        }
    }
    Ok(vec![entry])
}

/// containerd `parseHostsFile`: the `[host]` entries in file order, then the upstream.
fn parse_hosts_file(dir: &Path, file: &Path, text: &str) -> Result<Vec<Entry>, HostsError> {
    let doc: Node = toml::from_str(text).map_err(|source| HostsError::Parse {
        path: file.to_owned(),
        source,
    })?;
    let cx = Cx { dir, file };
    let Node::Table(items) = doc else {
        return Err(cx.invalid("the document", "table", &doc));
    };
    let mut server: Option<String> = None;
    let mut root = FileConfig::default();
    let mut hosts = Vec::new();
    for (key, value) in items {
        match key.as_str() {
            "server" => server = Some(cx.string(&value, "server")?),
            "host" => {
                let Node::Table(entries) = value else {
                    return Err(cx.invalid("host", "table", &value));
                };
                for (name, config) in entries {
                    let config = cx.file_config(config, &format!("host.{name:?}"))?;
                    hosts.push(cx.entry(&name, &config)?);
                }
            }
            _ => root.set(&cx, &key, value, "")?,
        }
    }
    // Without `server`, the upstream is filled in later with containerd's defaults (which
    // also reset its capabilities to all).
    hosts.push(match server.as_deref() {
        Some(s) if !s.is_empty() => cx.entry(s, &root)?,
        _ => cx.entry_without_server(&root),
    });
    Ok(hosts)
}

/// The keys shared by the top level and `[host."…"]` tables (containerd `hostFileConfig`).
#[derive(Debug, Default)]
struct FileConfig {
    capabilities: Option<Capabilities>,
    ca: Option<Vec<PathBuf>>,
    client: Option<Vec<(PathBuf, Option<PathBuf>)>>,
    skip_verify: Option<bool>,
    headers: Vec<(String, String)>,
    override_path: bool,
    dial_timeout: Option<Duration>,
}

impl FileConfig {
    /// Applies one key of a host table; `prefix` names the table for messages.
    fn set(&mut self, cx: &Cx<'_>, key: &str, value: Node, prefix: &str) -> Result<(), HostsError> {
        let name = if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        };
        match key {
            "capabilities" => self.capabilities = cx.capabilities(&value, &name)?,
            "ca" => self.ca = Some(cx.ca(&value, &name)?),
            "client" => self.client = cx.client(&value, &name)?,
            "skip_verify" => self.skip_verify = Some(cx.boolean(&value, &name)?),
            "override_path" => self.override_path = cx.boolean(&value, &name)?,
            "header" => self.headers = cx.headers(&value, &name)?,
            "dial_timeout" => {
                let s = cx.string(&value, &name)?;
                if !s.is_empty() {
                    let d =
                        parse_go_duration(&s).ok_or_else(|| HostsError::InvalidDialTimeout {
                            path: cx.file.to_owned(),
                            key: name.clone(),
                            value: s.clone(),
                        })?;
                    self.dial_timeout = Some(d);
                }
            }
            _ => {
                tracing::warn!(file = %cx.file.display(), key = %name, "ignoring unknown key in hosts.toml");
            }
        }
        Ok(())
    }
}

/// Where we are, for resolving relative paths and naming the file in errors.
struct Cx<'a> {
    dir: &'a Path,
    file: &'a Path,
}

impl Cx<'_> {
    fn invalid(&self, key: &str, expected: &'static str, found: &Node) -> HostsError {
        HostsError::InvalidValue {
            path: self.file.to_owned(),
            key: key.to_owned(),
            expected,
            found: found.type_name(),
        }
    }

    fn abs(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn string(&self, v: &Node, key: &str) -> Result<String, HostsError> {
        match v {
            Node::Str(s) => Ok(s.clone()),
            other => Err(self.invalid(key, "string", other)),
        }
    }

    fn boolean(&self, v: &Node, key: &str) -> Result<bool, HostsError> {
        match v {
            Node::Bool(b) => Ok(*b),
            other => Err(self.invalid(key, "boolean", other)),
        }
    }

    fn strings(&self, v: &Node, key: &str) -> Result<Vec<String>, HostsError> {
        match v {
            Node::Array(items) => items.iter().map(|i| self.string(i, key)).collect(),
            other => Err(self.invalid(key, "array of strings", other)),
        }
    }

    fn file_config(&self, v: Node, prefix: &str) -> Result<FileConfig, HostsError> {
        let Node::Table(items) = v else {
            return Err(self.invalid(prefix, "table", &v));
        };
        let mut config = FileConfig::default();
        for (key, value) in items {
            config.set(self, &key, value, prefix)?;
        }
        Ok(config)
    }

    fn capabilities(&self, v: &Node, key: &str) -> Result<Option<Capabilities>, HostsError> {
        let names = self.strings(v, key)?;
        if names.is_empty() {
            return Ok(None);
        }
        let mut caps = Capabilities::NONE;
        for name in names {
            match name.to_ascii_lowercase().as_str() {
                "pull" => caps.pull = true,
                "resolve" => caps.resolve = true,
                "push" => caps.push = true,
                // Newer containerd (OCI referrers API); we have no use for it yet.
                "referrers" => {}
                _ => {
                    return Err(HostsError::UnknownCapability {
                        path: self.file.to_owned(),
                        key: key.to_owned(),
                        capability: name,
                    });
                }
            }
        }
        Ok(Some(caps))
    }

    fn ca(&self, v: &Node, key: &str) -> Result<Vec<PathBuf>, HostsError> {
        match v {
            Node::Str(s) => Ok(vec![self.abs(s)]),
            Node::Array(_) => Ok(self.strings(v, key)?.iter().map(|s| self.abs(s)).collect()),
            other => Err(self.invalid(key, "string or array of strings", other)),
        }
    }

    #[allow(clippy::type_complexity)]
    fn client(
        &self,
        v: &Node,
        key: &str,
    ) -> Result<Option<Vec<(PathBuf, Option<PathBuf>)>>, HostsError> {
        let items = match v {
            Node::Str(s) => return Ok(Some(vec![(self.abs(s), None)])),
            Node::Array(items) => items,
            other => {
                return Err(self.invalid(
                    key,
                    "string, array of strings or of [cert, key] pairs",
                    other,
                ));
            }
        };
        let mut pairs = Vec::new();
        for item in items {
            match item {
                Node::Str(s) => pairs.push((self.abs(s), None)),
                Node::Array(_) => {
                    let pair = self.strings(item, key)?;
                    let [cert, key_file] = pair.as_slice() else {
                        return Err(HostsError::InvalidClientPair {
                            path: self.file.to_owned(),
                            key: key.to_owned(),
                            len: pair.len(),
                        });
                    };
                    let key_file = (!key_file.is_empty()).then(|| self.abs(key_file));
                    pairs.push((self.abs(cert), key_file));
                }
                other => return Err(self.invalid(key, "string or [cert, key] pair", other)),
            }
        }
        // containerd leaves the client list unset (no explicit TLS) for an empty array.
        Ok((!pairs.is_empty()).then_some(pairs))
    }

    fn headers(&self, v: &Node, key: &str) -> Result<Vec<(String, String)>, HostsError> {
        let Node::Table(items) = v else {
            return Err(self.invalid(key, "table", v));
        };
        let mut headers = Vec::new();
        for (name, value) in items {
            let item_key = format!("{key}.{name}");
            match value {
                Node::Str(s) => headers.push((name.clone(), s.clone())),
                Node::Array(_) => {
                    for s in self.strings(value, &item_key)? {
                        headers.push((name.clone(), s));
                    }
                }
                other => return Err(self.invalid(&item_key, "string or array of strings", other)),
            }
        }
        Ok(headers)
    }

    /// containerd `parseHostConfig` for an entry with a URL (`server` or a `[host]` key).
    fn entry(&self, server: &str, config: &FileConfig) -> Result<Entry, HostsError> {
        let with_scheme = if server.contains("://") {
            server.to_owned()
        } else {
            format!("https://{server}")
        };
        let url = Url::parse(&with_scheme).map_err(|source| HostsError::InvalidServer {
            path: self.file.to_owned(),
            server: server.to_owned(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HostsError::UnsupportedScheme {
                path: self.file.to_owned(),
                server: server.to_owned(),
                scheme: url.scheme().to_owned(),
            });
        }
        let invalid = |source| HostsError::InvalidServer {
            path: self.file.to_owned(),
            server: server.to_owned(),
            source,
        };
        let authority = raw_authority(&with_scheme);
        if authority.is_empty() {
            return Err(invalid(url::ParseError::EmptyHost));
        }
        // Go `path.Clean`, then `/v2` unless already there or `override_path`.
        let segments: Vec<&str> = url
            .path()
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let mut path = if segments.is_empty() {
            String::new()
        } else {
            format!("/{}", segments.join("/"))
        };
        if !config.override_path && !path.ends_with("/v2") {
            path.push_str("/v2");
        }
        path.push('/');
        // Only scheme, host and path count (containerd ignores user info, query and fragment).
        let root = Url::parse(&format!("{}://{authority}{path}", url.scheme())).map_err(invalid)?;
        let mut entry = self.entry_without_server(config);
        entry.url = Some(root);
        entry.authority = authority.to_owned();
        Ok(entry)
    }

    fn entry_without_server(&self, config: &FileConfig) -> Entry {
        Entry {
            url: None,
            authority: String::new(),
            capabilities: config.capabilities.unwrap_or(Capabilities::ALL),
            skip_verify: config.skip_verify,
            ca_files: config.ca.clone(),
            client_certs: config.client.clone(),
            headers: config.headers.clone(),
            dial_timeout: config.dial_timeout,
        }
    }
}

/// `host[:port]` of `scheme://[userinfo@]host[:port][/path]`, as written.
fn raw_authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    authority.rsplit_once('@').map_or(authority, |(_, h)| h)
}

/// Go `time.ParseDuration` for non-negative durations (`300ms`, `1.5s`, `1m30s`, `0`).
fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after) = rest.split_at(int_len);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let n = a.bytes().take_while(u8::is_ascii_digit).count();
                a.split_at(n)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        let value: f64 = format!(
            "{}.{}",
            if int_part.is_empty() { "0" } else { int_part },
            if frac_part.is_empty() { "0" } else { frac_part }
        )
        .parse()
        .ok()?;
        total += value * nanos_per_unit;
        rest = after;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return None;
    }
    Some(Duration::from_nanos(total as u64))
}

/// A TOML value (scalars other than strings and booleans reduced to their type) that keeps
/// tables in document order (the `toml` crate's own `Table` sorts
/// keys unless its `preserve_order` feature is on; its deserializer visits in document order).
#[derive(Debug, Clone)]
enum Node {
    Str(String),
    Int,
    Float,
    Bool(bool),
    Array(Vec<Node>),
    Table(Vec<(String, Node)>),
}

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Str(_) => "string",
            Node::Int => "integer",
            Node::Float => "float",
            Node::Bool(_) => "boolean",
            Node::Array(_) => "array",
            Node::Table(items) => {
                if items.len() == 1 && items[0].0.starts_with("$__toml_private") {
                    "datetime"
                } else {
                    "table"
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a TOML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Int)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Int)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Float)
    }

    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            items.push((k, v));
        }
        Ok(Node::Table(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, dir: &str, file: &str, text: &str) -> PathBuf {
        let d = root.join(dir);
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(file), text).unwrap();
        d
    }

    fn hosts(root: &Path, domain: &str) -> Vec<RegistryHost> {
        HostsConfig::new(root).hosts_for(domain).unwrap()
    }

    fn urls(hosts: &[RegistryHost]) -> Vec<&str> {
        hosts.iter().map(|h| h.url.as_str()).collect()
    }

    const PULL_RESOLVE: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: false,
    };

    #[test]
    fn no_directory_gives_default_upstreams() {
        let cfg = HostsConfig::new("/nonexistent/husk/certs.d");
        let h = cfg.hosts_for("docker.io").unwrap();
        assert_eq!(urls(&h), ["https://registry-1.docker.io/v2/"]);
        let up = &h[0];
        assert!(up.is_upstream);
        assert_eq!(up.capabilities, Capabilities::ALL);
        assert_eq!(up.namespace, None);
        assert!(!up.skip_verify && !up.https_first);
        assert!(up.ca_files.is_empty() && up.client_certs.is_empty() && up.headers.is_empty());
        assert_eq!(
            up.endpoint("library/busybox", "manifests/latest").as_str(),
            "https://registry-1.docker.io/v2/library/busybox/manifests/latest"
        );

        let h = cfg.hosts_for("registry.k8s.io").unwrap();
        assert_eq!(urls(&h), ["https://registry.k8s.io/v2/"]);
        assert_eq!(h[0].namespace, None);
        assert_eq!(cfg.host_dir("docker.io").unwrap(), None);
    }

    #[test]
    fn localhost_defaults_to_http_with_https_first() {
        let cfg = HostsConfig::new("/nonexistent");
        let h = cfg.hosts_for("127.0.0.1:5000").unwrap();
        assert_eq!(urls(&h), ["http://127.0.0.1:5000/v2/"]);
        assert!(h[0].skip_verify);
        assert!(h[0].https_first);
        assert_eq!(h[0].namespace, None);

        let h = cfg.hosts_for("localhost:5000").unwrap();
        assert_eq!(urls(&h), ["http://localhost:5000/v2/"]);
        let h = cfg.hosts_for("[::1]:5000").unwrap();
        assert_eq!(urls(&h), ["http://[::1]:5000/v2/"]);
        assert!(h[0].https_first);

        // Port 80: plain HTTP, unambiguous.
        let h = cfg.hosts_for("localhost:80").unwrap();
        assert_eq!(h[0].url.scheme(), "http");
        assert!(!h[0].skip_verify && !h[0].https_first);

        // No port or 443: HTTPS only, without verification.
        for d in ["localhost", "127.0.0.1", "localhost:443"] {
            let h = cfg.hosts_for(d).unwrap();
            assert_eq!(h[0].url.scheme(), "https", "{d}");
            assert!(h[0].skip_verify && !h[0].https_first, "{d}");
        }

        // Not loopback: HTTPS.
        let h = cfg.hosts_for("10.0.0.1:5000").unwrap();
        assert_eq!(urls(&h), ["https://10.0.0.1:5000/v2/"]);
        assert!(!h[0].skip_verify);
        assert!(is_localhost("127.1.2.3:5000"));
        assert!(!is_localhost("localhost.example.com"));
    }

    #[test]
    fn mirror_and_server() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "docker.io",
            HOSTS_FILE,
            r#"
server = "https://registry-1.docker.io"

[host."https://mirror.example.com"]
  capabilities = ["pull", "resolve"]
"#,
        );
        let h = hosts(tmp.path(), "docker.io");
        assert_eq!(
            urls(&h),
            [
                "https://mirror.example.com/v2/",
                "https://registry-1.docker.io/v2/"
            ]
        );
        assert_eq!(h[0].capabilities, PULL_RESOLVE);
        assert!(!h[0].is_upstream);
        assert_eq!(h[0].namespace.as_deref(), Some("docker.io"));
        assert_eq!(
            h[0].endpoint("library/busybox", "manifests/latest")
                .as_str(),
            "https://mirror.example.com/v2/library/busybox/manifests/latest?ns=docker.io"
        );
        assert_eq!(h[1].capabilities, Capabilities::ALL);
        assert!(h[1].is_upstream);
        assert_eq!(h[1].namespace, None);
        assert!(h[1].capabilities.has(PULL_RESOLVE));
        assert!(!h[0].capabilities.has(Capabilities::ALL));
    }

    #[test]
    fn hosts_keep_file_order() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "registry.k8s.io",
            HOSTS_FILE,
            r#"
[host."https://zeta.example"]
[host."https://alpha.example"]
  capabilities = ["pull"]
[host."https://mu.example"]
[host."https://zeta.example".header]
  x-order = "late subtable"
"#,
        );
        let h = hosts(tmp.path(), "registry.k8s.io");
        assert_eq!(
            urls(&h),
            [
                "https://zeta.example/v2/",
                "https://alpha.example/v2/",
                "https://mu.example/v2/",
                "https://registry.k8s.io/v2/",
            ]
        );
        assert_eq!(
            h[0].headers,
            [("x-order".to_owned(), "late subtable".to_owned())]
        );
        assert!(h[1].capabilities.pull);
        assert!(!h[1].capabilities.resolve);
        // Entries without capabilities get containerd's default: all.
        assert_eq!(h[2].capabilities, Capabilities::ALL);
        assert_eq!(h[3].namespace, None);
        assert_eq!(h[2].namespace.as_deref(), Some("registry.k8s.io"));
    }

    #[test]
    fn paths_and_override_path() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "quay.io",
            HOSTS_FILE,
            r#"
server = "https://quay.io"
[host."https://proxy.example/custom/path"]
  override_path = true
[host."https://prefix.example/cache/"]
[host."https://v2.example/v2"]
[host."mirror.example:5000"]
"#,
        );
        let h = hosts(tmp.path(), "quay.io");
        assert_eq!(
            urls(&h),
            [
                "https://proxy.example/custom/path/",
                "https://prefix.example/cache/v2/",
                "https://v2.example/v2/",
                "https://mirror.example:5000/v2/",
                "https://quay.io/v2/",
            ]
        );
        assert_eq!(
            h[0].endpoint("org/app", "blobs/sha256:abc").as_str(),
            "https://proxy.example/custom/path/org/app/blobs/sha256:abc?ns=quay.io"
        );
        assert_eq!(
            h[1].endpoint("org/app", "blobs/uploads/").as_str(),
            "https://prefix.example/cache/v2/org/app/blobs/uploads/?ns=quay.io"
        );
        // Url::join works on the API root because it ends in '/'.
        assert_eq!(
            h[4].url.join("org/app/manifests/v1").unwrap().as_str(),
            "https://quay.io/v2/org/app/manifests/v1"
        );
    }

    #[test]
    fn ca_client_and_headers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write(
            tmp.path(),
            "myregistry.io:5000",
            HOSTS_FILE,
            r#"
server = "https://myregistry.io:5000"
ca = "ca.pem"
client = [["client.cert", "client.key"], "/abs/both.pem"]
skip_verify = false

[header]
  x-custom = "1"
  x-multi = ["a", "b"]

[host."https://mirror.example"]
  ca = ["/etc/ssl/a.pem", "sub/b.pem"]
  client = "combined.pem"
  skip_verify = true
"#,
        );
        let h = hosts(tmp.path(), "myregistry.io:5000");
        assert_eq!(
            urls(&h),
            [
                "https://mirror.example/v2/",
                "https://myregistry.io:5000/v2/"
            ]
        );
        let (m, up) = (&h[0], &h[1]);
        assert_eq!(
            m.ca_files,
            [PathBuf::from("/etc/ssl/a.pem"), dir.join("sub/b.pem")]
        );
        assert_eq!(m.client_certs, [(dir.join("combined.pem"), None)]);
        assert!(m.skip_verify);
        assert!(m.headers.is_empty());
        assert_eq!(up.ca_files, [dir.join("ca.pem")]);
        assert_eq!(
            up.client_certs,
            [
                (dir.join("client.cert"), Some(dir.join("client.key"))),
                (PathBuf::from("/abs/both.pem"), None),
            ]
        );
        assert!(!up.skip_verify);
        let header = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            up.headers,
            [
                header("x-custom", "1"),
                header("x-multi", "a"),
                header("x-multi", "b")
            ]
        );
    }

    #[test]
    fn http_with_tls_settings_tries_https_first() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "reg.example",
            HOSTS_FILE,
            r#"
server = "http://reg.example:5000"
[host."http://plain.example:5000"]
[host."http://tls.example:5000"]
  skip_verify = true
[host."http://tls80.example:80"]
  ca = "ca.pem"
"#,
        );
        let h = hosts(tmp.path(), "reg.example");
        let flags: Vec<bool> = h.iter().map(|h| h.https_first).collect();
        assert_eq!(flags, [false, true, false, false]);
        assert_eq!(h[0].url.scheme(), "http");
        assert_eq!(h[3].namespace.as_deref(), Some("reg.example"));
    }

    #[test]
    fn default_directory_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            DEFAULT_HOST_DIR,
            HOSTS_FILE,
            "server = \"https://mirror.internal\"\n",
        );
        write(
            tmp.path(),
            "ghcr.io",
            HOSTS_FILE,
            "[host.\"https://ghcr-mirror\"]\n",
        );
        let h = hosts(tmp.path(), "quay.io");
        assert_eq!(urls(&h), ["https://mirror.internal/v2/"]);
        assert!(h[0].is_upstream);
        assert_eq!(h[0].namespace.as_deref(), Some("quay.io"));
        // A registry's own directory wins over _default.
        let h = hosts(tmp.path(), "ghcr.io");
        assert_eq!(urls(&h), ["https://ghcr-mirror/v2/", "https://ghcr.io/v2/"]);
    }

    #[test]
    fn docker_hub_upstream_without_server() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "docker.io",
            HOSTS_FILE,
            "capabilities = [\"pull\"]\n[host.\"https://mirror\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        );
        let h = hosts(tmp.path(), "docker.io");
        assert_eq!(
            urls(&h),
            ["https://mirror/v2/", "https://registry-1.docker.io/v2/"]
        );
        // containerd resets the default upstream's capabilities.
        assert_eq!(h[1].capabilities, Capabilities::ALL);
        assert_eq!(h[1].namespace, None);
        // ... but keeps them with an explicit server.
        write(
            tmp.path(),
            "docker.io",
            HOSTS_FILE,
            "server = \"https://registry-1.docker.io\"\ncapabilities = [\"pull\"]\n",
        );
        let h = hosts(tmp.path(), "docker.io");
        assert!(!h[0].capabilities.push);
    }

    #[test]
    fn port_directory_names() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "127.0.0.1:5000",
            HOSTS_FILE,
            "server = \"http://colon\"\n",
        );
        let h = hosts(tmp.path(), "127.0.0.1:5000");
        assert_eq!(urls(&h), ["http://colon/v2/"]);
        write(
            tmp.path(),
            "127.0.0.1_5000_",
            HOSTS_FILE,
            "server = \"http://underscore\"\n",
        );
        let h = hosts(tmp.path(), "127.0.0.1:5000");
        assert_eq!(urls(&h), ["http://underscore/v2/"]);
        assert_eq!(h[0].namespace.as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn docker_certs_d_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("myregistry.io:5000");
        fs::create_dir_all(dir.join("subdir.crt")).unwrap();
        for f in [
            "ca.crt",
            "client.cert",
            "client.key",
            "solo.cert",
            "notes.txt",
        ] {
            fs::write(dir.join(f), "x").unwrap();
        }
        let h = hosts(tmp.path(), "myregistry.io:5000");
        assert_eq!(urls(&h), ["https://myregistry.io:5000/v2/"]);
        assert_eq!(h[0].ca_files, [dir.join("ca.crt")]);
        assert_eq!(
            h[0].client_certs,
            [
                (dir.join("client.cert"), Some(dir.join("client.key"))),
                (dir.join("solo.cert"), None),
            ]
        );

        // An empty hosts.toml also falls back to the certificate files.
        fs::write(dir.join(HOSTS_FILE), "").unwrap();
        assert_eq!(
            hosts(tmp.path(), "myregistry.io:5000")[0].ca_files,
            [dir.join("ca.crt")]
        );

        // An existing but empty directory still shadows _default.
        write(
            tmp.path(),
            DEFAULT_HOST_DIR,
            HOSTS_FILE,
            "server = \"https://elsewhere\"\n",
        );
        fs::create_dir_all(tmp.path().join("empty.io")).unwrap();
        assert_eq!(
            urls(&hosts(tmp.path(), "empty.io")),
            ["https://empty.io/v2/"]
        );
    }

    type Check = fn(&HostsError) -> bool;

    #[test]
    fn errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write(
            tmp.path(),
            "bad.io",
            HOSTS_FILE,
            "server = \"https://x\n[host\n",
        );
        let err = HostsConfig::new(tmp.path())
            .hosts_for("bad.io")
            .unwrap_err();
        match &err {
            HostsError::Parse { path, .. } => assert_eq!(path, &dir.join(HOSTS_FILE)),
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains("bad.io/hosts.toml"), "{err}");

        let cases: &[(&str, Check)] = &[
            ("skip_verify = \"yes\"\n", |e| {
                matches!(e, HostsError::InvalidValue { .. })
            }),
            ("capabilities = [\"pull\", \"fly\"]\n", |e| {
                matches!(e, HostsError::UnknownCapability { .. })
            }),
            ("capabilities = \"pull\"\n", |e| {
                matches!(e, HostsError::InvalidValue { .. })
            }),
            ("ca = 3\n", |e| {
                matches!(
                    e,
                    HostsError::InvalidValue {
                        found: "integer",
                        ..
                    }
                )
            }),
            ("client = [[\"a\"]]\n", |e| {
                matches!(e, HostsError::InvalidClientPair { len: 1, .. })
            }),
            ("[header]\nx = 1\n", |e| {
                matches!(e, HostsError::InvalidValue { .. })
            }),
            ("server = \"https://\"\n", |e| {
                matches!(e, HostsError::InvalidServer { .. })
            }),
            ("server = \"ftp://x\"\n", |e| {
                matches!(e, HostsError::UnsupportedScheme { .. })
            }),
            ("dial_timeout = \"soon\"\n", |e| {
                matches!(e, HostsError::InvalidDialTimeout { .. })
            }),
            ("host = 1\n", |e| {
                matches!(e, HostsError::InvalidValue { .. })
            }),
        ];
        for (text, check) in cases {
            write(tmp.path(), "bad.io", HOSTS_FILE, text);
            let err = HostsConfig::new(tmp.path())
                .hosts_for("bad.io")
                .unwrap_err();
            assert!(check(&err), "{text:?}: {err:?}");
            assert!(err.to_string().contains("hosts.toml"), "{err}");
        }

        for d in ["", "../etc", "a/b", ".hidden"] {
            assert!(matches!(
                HostsConfig::new(tmp.path()).hosts_for(d),
                Err(HostsError::InvalidRegistryHost { .. })
            ));
        }
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "x.io",
            HOSTS_FILE,
            "future_key = 1\n[host.\"https://m\"]\n  dial_addr = \"unix:///x\"\n  whatever = { a = 1 }\n",
        );
        assert_eq!(
            urls(&hosts(tmp.path(), "x.io")),
            ["https://m/v2/", "https://x.io/v2/"]
        );
    }

    #[test]
    fn dial_timeout() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "x.io", HOSTS_FILE, "dial_timeout = \"1m30s\"\n");
        assert_eq!(
            hosts(tmp.path(), "x.io")[0].dial_timeout,
            Some(Duration::from_secs(90))
        );
        let cases = [
            ("0", Some(Duration::ZERO)),
            ("300ms", Some(Duration::from_millis(300))),
            ("1.5s", Some(Duration::from_millis(1500))),
            (".5h", Some(Duration::from_secs(1800))),
            ("2h45m", Some(Duration::from_secs(9900))),
            ("10us", Some(Duration::from_micros(10))),
            ("10µs", Some(Duration::from_micros(10))),
            ("7ns", Some(Duration::from_nanos(7))),
            ("", None),
            ("5", None),
            ("s", None),
            ("1d", None),
            ("-1s", None),
            (".s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_go_duration(s), want, "{s:?}");
        }
    }

    #[test]
    fn several_roots() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        write(
            b.path(),
            "x.io",
            HOSTS_FILE,
            "server = \"https://from-b\"\n",
        );
        let list = format!("{}::{}", a.path().display(), b.path().display());
        let cfg = HostsConfig::from_config_path(&list);
        assert_eq!(cfg.roots().len(), 2);
        assert_eq!(
            urls(&cfg.hosts_for("x.io").unwrap()),
            ["https://from-b/v2/"]
        );
        // The first root with any match (here its _default) wins.
        write(
            a.path(),
            DEFAULT_HOST_DIR,
            HOSTS_FILE,
            "server = \"https://from-a\"\n",
        );
        assert_eq!(
            urls(&cfg.hosts_for("x.io").unwrap()),
            ["https://from-a/v2/"]
        );
    }
}
