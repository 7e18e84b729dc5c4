//! An in-process registry token server (the Docker Hub bearer flow): `GET /token` with HTTP
//! Basic credentials and `POST /token` (OAuth2 password or refresh-token grant) answer with
//! ES256 JWTs carrying an `x5c` chain that distribution verifies against `rootcertbundle`.
//! Runs on its own thread and runtime, so it serves even while a test blocks.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{TOKEN_ISSUER, TOKEN_SERVICE};

/// What the token server has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// Every HTTP request received.
    pub requests: u64,
    /// Tokens handed out.
    pub issued: u64,
    /// Requests refused (bad or missing credentials, bad grant).
    pub rejected: u64,
    /// `GET /token` answered with a token.
    pub basic_grants: u64,
    /// `POST /token` `grant_type=password` answered with a token.
    pub password_grants: u64,
    /// `POST /token` `grant_type=refresh_token` answered with a token.
    pub refresh_grants: u64,
    /// Scopes of every issued token, in order.
    pub scopes: Vec<String>,
}

struct Issuer {
    key: EcdsaKeyPair,
    cert_b64: String,
    rng: SystemRandom,
    user: String,
    pass: String,
    identity_token: String,
    jti: AtomicU64,
    stats: Mutex<TokenStats>,
}

pub(crate) struct TokenServer {
    addr: SocketAddr,
    cert_path: PathBuf,
    issuer: Arc<Issuer>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TokenServer {
    /// Generates the signing key and certificate (written to `dir/token.crt`) and serves.
    pub(crate) fn start(user: &str, pass: &str, dir: &Path) -> Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "husk-test token signer");
        let cert = params.self_signed(&key)?;
        let cert_path = dir.join("token.crt");
        std::fs::write(&cert_path, cert.pem())?;
        let rng = SystemRandom::new();
        let signing =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der(), &rng)
                .map_err(|e| anyhow::anyhow!("load token signing key: {e}"))?;
        let issuer = Arc::new(Issuer {
            key: signing,
            cert_b64: STANDARD.encode(cert.der()),
            rng,
            user: user.to_owned(),
            pass: pass.to_owned(),
            identity_token: format!("husk-identity-{}", std::process::id()),
            jti: AtomicU64::new(0),
            stats: Mutex::new(TokenStats::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let iss = issuer.clone();
        let thread = std::thread::Builder::new()
            .name("husk-token-server".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = l.accept() => if let Ok((s, _)) = acc {
                                tokio::spawn(serve(s, iss.clone()));
                            },
                        }
                    }
                });
            })?;
        Ok(Self {
            addr,
            cert_path,
            issuer,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub(crate) fn identity_token(&self) -> &str {
        &self.issuer.identity_token
    }

    pub(crate) fn stats(&self) -> TokenStats {
        self.issuer
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Vec<u8>,
}

async fn read_request(s: &mut TcpStream) -> Result<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            bail!("request head too large");
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed before end of headers");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default();
    let url = url::Url::parse(&format!("http://x{target}")).context("request target")?;
    let mut authorization = None;
    let mut len = 0usize;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(v.trim().to_owned()),
                "content-length" => len = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = buf[head_end..].to_vec();
    while body.len() < len.min(1 << 20) {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Request {
        method,
        path: url.path().to_owned(),
        query: url.query_pairs().into_owned().collect(),
        authorization,
        body,
    })
}

async fn serve(mut s: TcpStream, iss: Arc<Issuer>) {
    let Ok(req) = read_request(&mut s).await else {
        return;
    };
    let (status, extra, body) = iss.respond(&req);
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = s.write_all(resp.as_bytes()).await;
    let _ = s.shutdown().await;
}

/// `type:name:a,b` → `{type, name, actions}`; names never contain `:` but may contain `/`.
fn access_entry(scope: &str) -> Option<serde_json::Value> {
    let (ty, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({ "type": ty, "name": name, "actions": actions }))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

type Reply = (u16, String, String);

impl Issuer {
    fn reject(&self, status: u16, extra: &str, error: &str) -> Reply {
        if let Ok(mut s) = self.stats.lock() {
            s.rejected += 1;
        }
        (
            status,
            extra.to_owned(),
            json!({ "error": error }).to_string(),
        )
    }

    fn basic_ok(&self, header: Option<&str>) -> bool {
        let Some(b64) = header.and_then(|h| h.strip_prefix("Basic ").or(h.strip_prefix("basic ")))
        else {
            return false;
        };
        let decoded = STANDARD.decode(b64.trim()).unwrap_or_default();
        decoded == format!("{}:{}", self.user, self.pass).as_bytes()
    }

    fn respond(&self, req: &Request) -> Reply {
        if let Ok(mut s) = self.stats.lock() {
            s.requests += 1;
        }
        if req.path != "/token" {
            return self.reject(404, "", "not found");
        }
        let challenge = "WWW-Authenticate: Basic realm=\"husk-test-token\"\r\n";
        let get = |params: &[(String, String)], key: &str| {
            params
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let scopes_of = |params: &[(String, String)]| -> Vec<String> {
            params
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
                .filter(|s| !s.is_empty())
                .collect()
        };
        match req.method.as_str() {
            "GET" => {
                if !self.basic_ok(req.authorization.as_deref()) {
                    return self.reject(401, challenge, "unauthorized");
                }
                let service = get(&req.query, "service");
                self.issue(service, scopes_of(&req.query), false, |s| {
                    s.basic_grants += 1
                })
            }
            "POST" => {
                let form: Vec<(String, String)> = url::form_urlencoded::parse(&req.body)
                    .into_owned()
                    .collect();
                let service = get(&form, "service");
                let scopes = scopes_of(&form);
                match get(&form, "grant_type").as_deref() {
                    Some("password") => {
                        let ok = get(&form, "username").as_deref() == Some(&self.user)
                            && get(&form, "password").as_deref() == Some(&self.pass);
                        if !ok {
                            return self.reject(401, "", "invalid_grant");
                        }
                        let offline = get(&form, "access_type").as_deref() == Some("offline");
                        self.issue(service, scopes, offline, |s| s.password_grants += 1)
                    }
                    Some("refresh_token") => {
                        if get(&form, "refresh_token").as_deref() != Some(&self.identity_token) {
                            return self.reject(401, "", "invalid_grant");
                        }
                        self.issue(service, scopes, false, |s| s.refresh_grants += 1)
                    }
                    _ => self.reject(400, "", "unsupported_grant_type"),
                }
            }
            _ => self.reject(404, "", "not found"),
        }
    }

    fn issue(
        &self,
        service: Option<String>,
        scopes: Vec<String>,
        with_refresh: bool,
        count: impl FnOnce(&mut TokenStats),
    ) -> Reply {
        let access: Vec<_> = scopes.iter().filter_map(|s| access_entry(s)).collect();
        let service = service.unwrap_or_else(|| TOKEN_SERVICE.to_owned());
        let Ok(token) = self.sign(&service, access) else {
            return self.reject(400, "", "signing failed");
        };
        if let Ok(mut s) = self.stats.lock() {
            s.issued += 1;
            s.scopes.extend(scopes);
            count(&mut s);
        }
        let mut body = json!({ "token": token, "access_token": token, "expires_in": 300 });
        if with_refresh {
            body["refresh_token"] = json!(self.identity_token);
        }
        (200, String::new(), body.to_string())
    }

    /// A compact JWS: base64url(header).base64url(claims).base64url(r||s).
    fn sign(&self, service: &str, access: Vec<serde_json::Value>) -> Result<String> {
        let t = now();
        let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [self.cert_b64] });
        let claims = json!({
            "iss": TOKEN_ISSUER,
            "sub": self.user,
            "aud": service,
            "exp": t + 300,
            "nbf": t.saturating_sub(1),
            "iat": t,
            "jti": format!("husk-{}", self.jti.fetch_add(1, Ordering::Relaxed)),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map_err(|e| anyhow::anyhow!("sign token: {e}"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_entries_parse() {
        assert_eq!(
            access_entry("repository:a/b:pull,push"),
            Some(json!({"type": "repository", "name": "a/b", "actions": ["pull", "push"]}))
        );
        assert_eq!(
            access_entry("registry:catalog:*"),
            Some(json!({"type": "registry", "name": "catalog", "actions": ["*"]}))
        );
        assert_eq!(access_entry("bogus"), None);
    }
}
