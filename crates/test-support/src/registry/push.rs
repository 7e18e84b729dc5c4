//! The distribution push/pull API as a client: blob uploads (POST then monolithic PUT, HEAD to
//! skip existing), manifest PUTs, and GETs — answering Basic and Bearer challenges itself.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::Registry;
use crate::oci::{BuiltImage, BuiltIndex, MANIFEST_ACCEPT_ALL, sha256_digest};

/// Parses `Scheme k="v", k2=v2` (quoted values may contain commas).
pub(crate) fn parse_challenge(h: &str) -> (String, HashMap<String, String>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (scheme.to_ascii_lowercase(), params)
}

fn scope(repo: &str, push: bool) -> String {
    format!(
        "repository:{repo}:{}",
        if push { "pull,push" } else { "pull" }
    )
}

impl Registry {
    fn basic_header(&self) -> Result<String> {
        let (u, p) = self
            .credentials()
            .context("registry asked for credentials; none set")?;
        Ok(format!("Basic {}", STANDARD.encode(format!("{u}:{p}"))))
    }

    /// Answers a 401 challenge: the value for the `Authorization` header.
    async fn answer(&self, challenge: &str, scope: &str) -> Result<String> {
        let (scheme, params) = parse_challenge(challenge);
        match scheme.as_str() {
            "basic" => self.basic_header(),
            "bearer" => {
                let realm = params
                    .get("realm")
                    .context("bearer challenge without realm")?;
                let mut url = url::Url::parse(realm)?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = params.get("service") {
                        q.append_pair("service", s);
                    }
                    // Ask for our scope (pushes want pull,push even when the first challenge,
                    // e.g. for a HEAD, names only pull) plus the challenge's if it differs.
                    q.append_pair("scope", scope);
                    if let Some(s) = params.get("scope").filter(|s| s.as_str() != scope) {
                        q.append_pair("scope", s);
                    }
                }
                let mut rb = self.client.get(url);
                if self.credentials().is_some() {
                    rb = rb.header(AUTHORIZATION, self.basic_header()?);
                }
                let resp = rb.send().await.context("token request")?;
                let status = resp.status();
                let body: serde_json::Value = resp.json().await.context("token response")?;
                ensure!(
                    status.is_success(),
                    "token server answered {status}: {body}"
                );
                let tok = body["token"]
                    .as_str()
                    .or(body["access_token"].as_str())
                    .context("token response without token")?;
                Ok(format!("Bearer {tok}"))
            }
            other => bail!("unsupported auth scheme {other:?} in {challenge:?}"),
        }
    }

    /// Sends the request built by `build`, answering one auth challenge if needed.
    async fn send(&self, scope: &str, build: impl Fn() -> RequestBuilder) -> Result<Response> {
        let cached = self
            .auth_cache
            .lock()
            .ok()
            .and_then(|c| c.get(scope).cloned());
        let mut auth = cached;
        for attempt in 0..2 {
            let mut rb = build();
            if let Some(a) = &auth {
                rb = rb.header(AUTHORIZATION, a);
            }
            let resp = rb.send().await?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .context("401 without WWW-Authenticate")?
                .to_owned();
            let a = self.answer(&challenge, scope).await?;
            if let Ok(mut c) = self.auth_cache.lock() {
                c.insert(scope.to_owned(), a.clone());
            }
            auth = Some(a);
        }
        bail!("unreachable: auth retry loop ended")
    }

    /// An authenticated GET of `path` (e.g. `/v2/<repo>/manifests/<ref>`) with pull scope.
    pub async fn get(&self, repo: &str, path: &str, accept: &[&str]) -> Result<Response> {
        let url = format!("{}{path}", self.url());
        let accept = accept.join(", ");
        self.send(&scope(repo, false), || {
            let rb = self.client.get(&url);
            if accept.is_empty() {
                rb
            } else {
                rb.header(ACCEPT, &accept)
            }
        })
        .await
    }

    /// Fetches a manifest: `(bytes, Content-Type, Docker-Content-Digest)`.
    pub async fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Option<String>)> {
        let r = self
            .get(
                repo,
                &format!("/v2/{repo}/manifests/{reference}"),
                MANIFEST_ACCEPT_ALL,
            )
            .await?;
        ensure!(
            r.status().is_success(),
            "GET manifest {repo}:{reference}: {}",
            r.status()
        );
        let header = |n: &str| {
            r.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let ct = header("content-type").unwrap_or_default();
        let digest = header("docker-content-digest");
        Ok((r.bytes().await?.to_vec(), ct, digest))
    }

    /// Fetches a blob's bytes.
    pub async fn fetch_blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>> {
        let r = self
            .get(repo, &format!("/v2/{repo}/blobs/{digest}"), &[])
            .await?;
        ensure!(r.status().is_success(), "GET blob {digest}: {}", r.status());
        Ok(r.bytes().await?.to_vec())
    }

    /// Uploads a blob unless the registry already has it.
    pub async fn push_blob(&self, repo: &str, digest: &str, data: &[u8]) -> Result<()> {
        let sc = scope(repo, true);
        let blob_url = format!("{}/v2/{repo}/blobs/{digest}", self.url());
        if self
            .send(&sc, || self.client.head(&blob_url))
            .await?
            .status()
            .is_success()
        {
            return Ok(());
        }
        let start_url = format!("{}/v2/{repo}/blobs/uploads/", self.url());
        let r = self.send(&sc, || self.client.post(&start_url)).await?;
        ensure!(
            r.status() == StatusCode::ACCEPTED,
            "start upload {digest}: {}",
            r.status()
        );
        let loc = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("upload without Location")?;
        let mut put_url = url::Url::parse(&self.url())?.join(loc)?;
        put_url.query_pairs_mut().append_pair("digest", digest);
        let body = bytes::Bytes::copy_from_slice(data);
        let r = self
            .send(&sc, || {
                self.client
                    .put(put_url.clone())
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .body(body.clone())
            })
            .await?;
        let status = r.status();
        ensure!(
            status == StatusCode::CREATED,
            "PUT blob {digest}: {status}: {}",
            r.text().await?
        );
        Ok(())
    }

    /// Uploads a manifest under `reference` (a tag or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.url());
        let body = bytes::Bytes::copy_from_slice(bytes);
        let r = self
            .send(&scope(repo, true), || {
                self.client
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(body.clone())
            })
            .await?;
        let status = r.status();
        ensure!(
            status == StatusCode::CREATED,
            "PUT manifest {repo}:{reference}: {status}: {}",
            r.text().await?
        );
        Ok(sha256_digest(bytes))
    }

    /// Pushes an image's blobs, then its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, img: &BuiltImage) -> Result<()> {
        for (digest, data) in img.blobs() {
            self.push_blob(repo, digest, data).await?;
        }
        self.push_manifest(repo, tag, &img.manifest, &img.manifest_media_type)
            .await?;
        Ok(())
    }

    /// Pushes every child image by digest, then the index under `tag`.
    pub async fn push_index(&self, repo: &str, tag: &str, idx: &BuiltIndex) -> Result<()> {
        for img in &idx.images {
            self.push_image(repo, &img.manifest_digest, img).await?;
        }
        self.push_manifest(repo, tag, &idx.bytes, &idx.media_type)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "http://127.0.0.1:1/token");
        assert_eq!(p["service"], "svc");
        assert_eq!(p["scope"], "repository:a/b:pull,push");
        let (s, p) = parse_challenge(r#"Basic realm=x"#);
        assert_eq!((s.as_str(), p["realm"].as_str()), ("basic", "x"));
    }
}
