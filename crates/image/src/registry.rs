//! The registry client (OCI distribution API, pull side): host selection from `hosts.toml`,
//! the bearer-token and basic auth challenge flows, manifest resolution and blob streams with
//! range resume.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use reqwest::{StatusCode, header};

use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::hosts::{HostsConfig, RegistryHost};
use crate::manifest::ACCEPT_MANIFESTS;
use crate::reference::Reference;

const USER_AGENT: &str = concat!("husk/", env!("CARGO_PKG_VERSION"));

/// Registry credentials, as the CRI `AuthConfig` carries them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    pub identity_token: String,
    pub registry_token: String,
    /// When set, the credentials are only sent to this host (as containerd does).
    pub server_address: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Builds credentials from the CRI fields; `auth` is base64 `user:password` and wins over
    /// username/password when set. Returns `None` when nothing is set.
    pub fn from_cri(
        username: &str,
        password: &str,
        auth: &str,
        server_address: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Option<Credentials>> {
        let (mut user, mut pass) = (username.to_string(), password.to_string());
        if !auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| ImageError::InvalidAuth {
                    message: format!("auth is not base64: {e}"),
                })?;
            let s = String::from_utf8(decoded).map_err(|_| ImageError::InvalidAuth {
                message: "auth is not UTF-8".into(),
            })?;
            let (u, p) = s.split_once(':').ok_or_else(|| ImageError::InvalidAuth {
                message: "auth must encode \"username:password\"".into(),
            })?;
            user = u.to_string();
            pass = p.to_string();
        }
        let c = Credentials {
            username: user,
            password: pass,
            identity_token: identity_token.to_string(),
            registry_token: registry_token.to_string(),
            server_address: server_address.to_string(),
        };
        if c.username.is_empty()
            && c.password.is_empty()
            && c.identity_token.is_empty()
            && c.registry_token.is_empty()
        {
            return Ok(None);
        }
        Ok(Some(c))
    }

    /// Whether these credentials may be sent to `host` (an authority such as `127.0.0.1:5000`).
    fn applies_to(&self, host: &str) -> bool {
        if self.server_address.is_empty() {
            return true;
        }
        let sa = self.server_address.trim();
        let sa_host = url::Url::parse(sa)
            .ok()
            .filter(|u| u.has_host())
            .map(|u| authority(&u))
            .unwrap_or_else(|| sa.split('/').next().unwrap_or("").to_string());
        canonical_host(&sa_host) == canonical_host(host)
    }
}

fn canonical_host(h: &str) -> &str {
    match h {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io",
        other => other,
    }
}

fn authority(u: &url::Url) -> String {
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

struct CachedToken {
    header: String,
    expires: Instant,
}

/// A token's lifetime when the token server gives none (the distribution spec's default).
const DEFAULT_TOKEN_TTL: u64 = 60;
/// The longest a token is cached, whatever its `expires_in` says.
const MAX_TOKEN_TTL: u64 = 24 * 3600;

/// When a token fetched at `now` stops being used: its `expires_in` (seconds; absent or not a
/// number: 60) clamped to 10 s … 24 h, less 5 s of margin. A huge, negative or fractional
/// value never overflows the clock.
fn token_expiry(now: Instant, expires_in: Option<&serde_json::Value>) -> Instant {
    let secs = match expires_in {
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            // Negative → 0, fractions truncated, huge floats saturate.
            .unwrap_or_else(|| n.as_f64().map_or(DEFAULT_TOKEN_TTL, |f| f as u64)),
        _ => DEFAULT_TOKEN_TTL,
    };
    let ttl = Duration::from_secs(secs.clamp(10, MAX_TOKEN_TTL) - 5);
    now.checked_add(ttl).unwrap_or(now)
}

/// A shared client: HTTP connections per host, cached tokens.
pub struct RegistryClient {
    hosts: HostsConfig,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

/// What to use a host for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Resolve,
    Pull,
}

/// A blob response ready to stream.
pub struct BlobResponse {
    pub response: reqwest::Response,
    /// The server honoured our range request: the body starts at the requested offset.
    pub resumed: bool,
    pub host: String,
}

impl RegistryClient {
    pub fn new(hosts: HostsConfig) -> Self {
        RegistryClient {
            hosts,
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// A handle for one repository, with the credentials of one pull.
    pub fn repo(&self, reference: &Reference, creds: Option<Credentials>) -> Result<Repo<'_>> {
        let hosts = self
            .hosts
            .hosts_for(reference.domain())
            .map_err(|source| ImageError::Hosts { source })?;
        Ok(Repo {
            client: self,
            reference: reference.clone(),
            hosts,
            creds,
        })
    }

    fn http_client(&self, host: &RegistryHost) -> Result<reqwest::Client> {
        let key = format!(
            "{}|{}|{:?}|{:?}",
            authority(&host.url),
            host.skip_verify,
            host.ca_files,
            host.client_certs
        );
        if let Some(c) = lock(&self.clients).get(&key) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::limited(10))
            .danger_accept_invalid_certs(host.skip_verify);
        for ca in &host.ca_files {
            let pem = std::fs::read(ca).map_err(|e| ImageError::io("read CA", ca, e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ImageError::RegistryUnreachable {
                    host: authority(&host.url),
                    message: format!("bad CA file {}: {e}", ca.display()),
                }
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let Some((cert, key)) = host.client_certs.first() {
            let mut pem = std::fs::read(cert).map_err(|e| ImageError::io("read", cert, e))?;
            if let Some(key) = key {
                pem.extend(std::fs::read(key).map_err(|e| ImageError::io("read", key, e))?);
            }
            let id =
                reqwest::Identity::from_pem(&pem).map_err(|e| ImageError::RegistryUnreachable {
                    host: authority(&host.url),
                    message: format!("bad client certificate {}: {e}", cert.display()),
                })?;
            b = b.identity(id);
        }
        let c = b.build().map_err(|e| ImageError::RegistryUnreachable {
            host: authority(&host.url),
            message: format!("building HTTP client: {e}"),
        })?;
        lock(&self.clients).insert(key, c.clone());
        Ok(c)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One repository on its registry hosts.
pub struct Repo<'a> {
    client: &'a RegistryClient,
    reference: Reference,
    hosts: Vec<RegistryHost>,
    creds: Option<Credentials>,
}

impl Repo<'_> {
    /// Resolves the reference (tag or digest) to a manifest: its digest, media type and bytes.
    /// A digest reference is verified against the bytes.
    pub async fn resolve(&self) -> Result<(Digest, String, Bytes)> {
        let object = self.reference.object();
        let (resp, _) = self
            .get(
                Purpose::Resolve,
                &format!("manifests/{object}"),
                ACCEPT_MANIFESTS,
                None,
            )
            .await?;
        let (mt, body) = read_manifest_body(resp, &self.reference.to_string()).await?;
        let computed = Digest::sha256_of(&body);
        if let Some(want) = self.reference.digest()
            && want != &computed
        {
            return Err(ImageError::DigestMismatch {
                expected: want.to_string(),
                actual: computed.to_string(),
            });
        }
        Ok((computed, mt, body))
    }

    /// Fetches a manifest by digest, verified.
    pub async fn fetch_manifest(&self, digest: &Digest) -> Result<(String, Bytes)> {
        let (resp, _) = self
            .get(
                Purpose::Pull,
                &format!("manifests/{digest}"),
                ACCEPT_MANIFESTS,
                None,
            )
            .await?;
        let (mt, body) = read_manifest_body(resp, &digest.to_string()).await?;
        crate::content::verify(digest, &body)?;
        Ok((mt, body))
    }

    /// Starts downloading a blob, from `offset` when > 0 (a resumed download).
    pub async fn fetch_blob(&self, digest: &Digest, offset: u64) -> Result<BlobResponse> {
        let range = (offset > 0).then(|| format!("bytes={offset}-"));
        let (response, host) = self
            .get(
                Purpose::Pull,
                &format!("blobs/{digest}"),
                "*/*",
                range.as_deref(),
            )
            .await?;
        let resumed = response.status() == StatusCode::PARTIAL_CONTENT;
        Ok(BlobResponse {
            response,
            resumed,
            host,
        })
    }

    /// GET `suffix` from the first host that has it.
    async fn get(
        &self,
        purpose: Purpose,
        suffix: &str,
        accept: &str,
        range: Option<&str>,
    ) -> Result<(reqwest::Response, String)> {
        let mut tried = Vec::new();
        let mut last_err: Option<ImageError> = None;
        let mut all_not_found = true;
        for host in &self.hosts {
            let ok = match purpose {
                Purpose::Resolve => host.capabilities.resolve,
                Purpose::Pull => host.capabilities.pull,
            };
            if !ok {
                continue;
            }
            let url = host.endpoint(self.reference.path(), suffix);
            let name = authority(&host.url);
            match self.send(host, &url, accept, range).await {
                Ok(resp) if resp.status().is_success() => return Ok((resp, name)),
                Ok(resp)
                    if resp.status() == StatusCode::RANGE_NOT_SATISFIABLE && range.is_some() =>
                {
                    // What we have is not a prefix the server accepts: start over from 0.
                    return Box::pin(self.get(purpose, suffix, accept, None)).await;
                }
                Ok(resp) if resp.status() == StatusCode::NOT_FOUND => {
                    tracing::debug!(%url, "not found on host");
                    tried.push(format!("{name}: not found"));
                }
                Ok(resp) => {
                    all_not_found = false;
                    let status = resp.status().as_u16();
                    let message = error_body(resp).await;
                    tracing::debug!(%url, status, %message, "registry host failed");
                    tried.push(format!("{name}: {status}"));
                    last_err = Some(ImageError::RegistryStatus {
                        host: name,
                        url: url.to_string(),
                        status,
                        message,
                    });
                }
                Err(e) => {
                    all_not_found = false;
                    tracing::debug!(%url, error = %e, "registry host failed");
                    tried.push(format!("{name}: {e}"));
                    last_err = Some(e);
                }
            }
        }
        if all_not_found || last_err.is_none() {
            return Err(ImageError::ManifestNotFound {
                reference: if let Some(blob) = suffix.strip_prefix("blobs/") {
                    format!("{}@{}", self.reference.repository(), blob)
                } else {
                    self.reference.to_string()
                },
                tried: if tried.is_empty() {
                    "no host with the needed capability".into()
                } else {
                    tried.join("; ")
                },
            });
        }
        Err(last_err.unwrap_or_else(|| ImageError::RegistryUnreachable {
            host: self.reference.domain().to_string(),
            message: "no registry host configured".into(),
        }))
    }

    /// One request with the auth dance: on a 401, answer the challenge and retry once.
    async fn send(
        &self,
        host: &RegistryHost,
        url: &url::Url,
        accept: &str,
        range: Option<&str>,
    ) -> Result<reqwest::Response> {
        let http = self.client.http_client(host)?;
        let name = authority(&host.url);
        let scope = format!("repository:{}:pull", self.reference.path());
        let creds = self.creds.as_ref().filter(|c| c.applies_to(&name));
        let mut auth = self.cached_token(&name, &scope);
        for attempt in 0..2 {
            let mut req = http.get(url.clone()).header(header::ACCEPT, accept);
            for (k, v) in &host.headers {
                req = req.header(k.as_str(), v.as_str());
            }
            if let Some(r) = range {
                req = req.header(header::RANGE, r);
            }
            if let Some(a) = &auth {
                req = req.header(header::AUTHORIZATION, a.as_str());
            }
            let resp = req
                .send()
                .await
                .map_err(|e| ImageError::RegistryUnreachable {
                    host: name.clone(),
                    message: error_chain(&e),
                })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(parse_challenge)
                .next();
            if attempt == 1 {
                let body = error_body(resp).await;
                return Err(ImageError::AuthFailed {
                    host: name,
                    message: format!("registry rejected the credentials: {body}"),
                });
            }
            let Some(challenge) = challenge else {
                return Err(ImageError::AuthFailed {
                    host: name,
                    message: "401 without a usable WWW-Authenticate challenge".into(),
                });
            };
            auth = Some(
                self.authorize(&http, &name, &scope, &challenge, creds)
                    .await?,
            );
        }
        Err(ImageError::AuthFailed {
            host: name,
            message: "authorization loop".into(),
        })
    }

    fn cached_token(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = lock(&self.client.tokens);
        tokens
            .get(&(host.to_string(), scope.to_string()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.header.clone())
    }

    async fn authorize(
        &self,
        http: &reqwest::Client,
        host: &str,
        scope: &str,
        challenge: &Challenge,
        creds: Option<&Credentials>,
    ) -> Result<String> {
        let fail = |message: String| ImageError::AuthFailed {
            host: host.to_string(),
            message,
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let c = creds.filter(|c| !c.username.is_empty()).ok_or_else(|| {
                    fail("registry requires basic auth and no credentials were given".into())
                })?;
                let v = base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.username, c.password));
                Ok(format!("Basic {v}"))
            }
            "bearer" => {
                if let Some(c) = creds.filter(|c| !c.registry_token.is_empty()) {
                    return Ok(format!("Bearer {}", c.registry_token));
                }
                let realm = challenge
                    .params
                    .get("realm")
                    .ok_or_else(|| fail("bearer challenge without realm".into()))?;
                let realm = url::Url::parse(realm)
                    .map_err(|e| fail(format!("bad token realm {realm:?}: {e}")))?;
                let service = challenge.params.get("service").cloned().unwrap_or_default();
                let resp = if let Some(c) = creds.filter(|c| !c.identity_token.is_empty()) {
                    let form = [
                        ("grant_type", "refresh_token"),
                        ("refresh_token", c.identity_token.as_str()),
                        ("service", service.as_str()),
                        ("scope", scope),
                        ("client_id", "husk"),
                    ];
                    http.post(realm.clone()).form(&form).send().await
                } else {
                    let mut u = realm.clone();
                    {
                        let mut q = u.query_pairs_mut();
                        if !service.is_empty() {
                            q.append_pair("service", &service);
                        }
                        q.append_pair("scope", scope);
                    }
                    let mut req = http.get(u);
                    if let Some(c) = creds.filter(|c| !c.username.is_empty()) {
                        req = req.basic_auth(&c.username, Some(&c.password));
                    }
                    req.send().await
                };
                let resp = resp.map_err(|e| ImageError::RegistryUnreachable {
                    host: authority(&realm),
                    message: format!("token server: {}", error_chain(&e)),
                })?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = error_body(resp).await;
                    return Err(fail(format!(
                        "token server {} answered {status}: {body}",
                        authority(&realm)
                    )));
                }
                #[derive(serde::Deserialize)]
                struct TokenResponse {
                    #[serde(default)]
                    token: String,
                    #[serde(default)]
                    access_token: String,
                    #[serde(default)]
                    expires_in: Option<serde_json::Value>,
                }
                let t: TokenResponse = resp
                    .json()
                    .await
                    .map_err(|e| fail(format!("bad token response: {e}")))?;
                let token = if t.access_token.is_empty() {
                    t.token
                } else {
                    t.access_token
                };
                if token.is_empty() {
                    return Err(fail("token server returned no token".into()));
                }
                let header = format!("Bearer {token}");
                lock(&self.client.tokens).insert(
                    (host.to_string(), scope.to_string()),
                    CachedToken {
                        header: header.clone(),
                        expires: token_expiry(Instant::now(), t.expires_in.as_ref()),
                    },
                );
                Ok(header)
            }
            other => Err(fail(format!("unsupported auth scheme {other:?}"))),
        }
    }
}

async fn read_manifest_body(resp: reqwest::Response, what: &str) -> Result<(String, Bytes)> {
    let mt = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if resp
        .content_length()
        .is_some_and(|l| l > crate::content::MAX_METADATA_BLOB)
    {
        return Err(ImageError::InvalidContent {
            what: "manifest",
            digest: what.to_string(),
            message: "too large".into(),
        });
    }
    let body = resp
        .bytes()
        .await
        .map_err(|e| ImageError::RegistryUnreachable {
            host: what.to_string(),
            message: error_chain(&e),
        })?;
    husk_telemetry::record_pull_bytes(body.len() as u64);
    Ok((mt, body))
}

async fn error_body(resp: reqwest::Response) -> String {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().take(512).collect();
    if text.trim().is_empty() {
        status.to_string()
    } else {
        text.trim().to_string()
    }
}

/// The full cause chain of an error, on one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, PartialEq)]
struct Challenge {
    scheme: String,
    params: HashMap<String, String>,
}

/// Parses `Bearer realm="https://auth",service="registry",scope="repository:x:pull"`.
fn parse_challenge(h: &str) -> Option<Challenge> {
    let h = h.trim();
    let (scheme, rest) = match h.find(' ') {
        Some(i) => (&h[..i], &h[i + 1..]),
        None => (h, ""),
    };
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.next().is_none() {
            break;
        }
        let mut val = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => break,
                    c => val.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                val.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), val);
    }
    if scheme.is_empty() {
        return None;
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_parsing() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.docker.io/token");
        assert_eq!(c.params["service"], "registry.docker.io");
        assert_eq!(c.params["scope"], "repository:library/busybox:pull,push");
        let b = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(b.scheme, "basic");
        assert_eq!(b.params["realm"], "Registry Realm");
    }

    #[test]
    fn token_lifetimes_are_clamped() {
        let now = Instant::now();
        let at = |v: serde_json::Value| token_expiry(now, Some(&v)) - now;
        let secs = Duration::from_secs;
        assert_eq!(token_expiry(now, None) - now, secs(55));
        assert_eq!(at(serde_json::json!(300)), secs(295));
        assert_eq!(at(serde_json::json!(0)), secs(5));
        assert_eq!(at(serde_json::json!(-3)), secs(5));
        assert_eq!(at(serde_json::json!(120.9)), secs(115));
        assert_eq!(at(serde_json::json!("300")), secs(55));
        for huge in [
            serde_json::json!(u64::MAX),
            serde_json::json!(i64::MAX),
            serde_json::json!(1e300),
        ] {
            assert_eq!(at(huge), secs(MAX_TOKEN_TTL - 5));
        }
    }

    #[test]
    fn cri_auth_is_decoded() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        let c = Credentials::from_cri("", "", &auth, "", "", "")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("alice", "s3cr:et")
        );
        assert!(
            Credentials::from_cri("", "", "", "", "", "")
                .unwrap()
                .is_none()
        );
        assert!(Credentials::from_cri("", "", "!!", "", "", "").is_err());
    }

    #[test]
    fn credentials_follow_server_address() {
        let mut c = Credentials {
            username: "u".into(),
            ..Default::default()
        };
        assert!(c.applies_to("anything:5000"));
        c.server_address = "https://index.docker.io/v1/".into();
        assert!(c.applies_to("registry-1.docker.io"));
        assert!(!c.applies_to("127.0.0.1:5000"));
        c.server_address = "127.0.0.1:5000".into();
        assert!(c.applies_to("127.0.0.1:5000"));
    }
}
