//! Pushes built images to a real `docker-registry` (plain, htpasswd, token, TLS) and reads
//! them back; checks the auth flows and that `CutProxy` drops a blob download half way.

use anyhow::{Result, ensure};
use husk_test_support::oci::{MANIFEST_ACCEPT_ALL, sha256_digest};
use husk_test_support::{
    Auth, BuiltImage, Compression, CutProxy, ImageBuilder, IndexBuilder, LayerBuilder, MediaTypes,
    Platform, Registry, RegistryOptions, busybox_image,
};
use reqwest::StatusCode;
use serde_json::Value;

async fn check_image(reg: &Registry, repo: &str, reference: &str, img: &BuiltImage) -> Result<()> {
    let (bytes, ct, digest) = reg.fetch_manifest(repo, reference).await?;
    ensure!(bytes == img.manifest, "manifest bytes differ");
    ensure!(ct == img.manifest_media_type, "content type {ct}");
    ensure!(
        digest.as_deref() == Some(img.manifest_digest.as_str()),
        "digest header {digest:?}"
    );
    ensure!(sha256_digest(&bytes) == img.manifest_digest);
    let m: Value = serde_json::from_slice(&bytes)?;
    let mut digests = vec![
        m["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    ];
    for l in m["layers"].as_array().into_iter().flatten() {
        digests.push(l["digest"].as_str().unwrap_or_default().to_owned());
    }
    ensure!(digests.len() == img.layers.len() + 1);
    for d in digests {
        let blob = reg.fetch_blob(repo, &d).await?;
        ensure!(
            sha256_digest(&blob) == d,
            "blob {d} does not hash to its digest"
        );
        ensure!(reg.blob_path(&d).exists(), "blob_path({d}) missing");
    }
    Ok(())
}

#[tokio::test]
async fn push_and_fetch_every_kind_of_image() -> Result<()> {
    let reg = Registry::start(RegistryOptions::default()).await?;
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    for (i, (mt, c)) in [
        (MediaTypes::Oci, Compression::Gzip),
        (MediaTypes::Oci, Compression::Zstd),
        (MediaTypes::Oci, Compression::None),
        (MediaTypes::Docker, Compression::Gzip),
        (MediaTypes::Docker, Compression::None),
    ]
    .into_iter()
    .enumerate()
    {
        let extra = LayerBuilder::new()
            .file("/extra.txt", format!("image {i}"), 0o644, 0, 0)
            .build(c);
        let img = busybox_image(&["sh", "-c", "echo hi"])?
            .media_types(mt)
            .layer(extra)
            .build();
        reg.push_image("test/busybox", &format!("t{i}"), &img)
            .await?;
        check_image(&reg, "test/busybox", &format!("t{i}"), &img).await?;
        check_image(&reg, "test/busybox", &img.manifest_digest, &img).await?;
    }

    let small = LayerBuilder::new()
        .file("a", "a", 0o644, 0, 0)
        .build(Compression::Gzip);
    for mt in [MediaTypes::Oci, MediaTypes::Docker] {
        let idx = [
            Platform::linux_amd64(),
            Platform::linux_arm64(),
            Platform::linux_arm_v7(),
        ]
        .into_iter()
        .fold(IndexBuilder::new(mt), |b, p| {
            b.image(
                ImageBuilder::new()
                    .media_types(mt)
                    .platform(p)
                    .layer(small.clone())
                    .build(),
            )
        })
        .build();
        reg.push_index("test/multi", "latest", &idx).await?;
        let (bytes, ct, digest) = reg.fetch_manifest("test/multi", "latest").await?;
        assert_eq!(bytes, idx.bytes);
        assert_eq!(ct, idx.media_type);
        assert_eq!(digest.as_deref(), Some(idx.digest.as_str()));
        for img in &idx.images {
            check_image(&reg, "test/multi", &img.manifest_digest, img).await?;
        }
    }

    // A corrupted blob is served with the wrong content.
    let d = &small.digest;
    reg.corrupt_blob(d)?;
    let blob = reg.fetch_blob("test/multi", d).await?;
    assert_ne!(&sha256_digest(&blob), d);
    Ok(())
}

#[tokio::test]
async fn htpasswd_registry_requires_basic_auth() -> Result<()> {
    let auth = Auth::Htpasswd {
        user: "alice".into(),
        pass: "s3cret".into(),
    };
    let reg = Registry::start(RegistryOptions { auth, tls: false }).await?;
    let img = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("x", "x", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    reg.push_image("private/x", "v1", &img).await?;
    let url = format!("{}/v2/private/x/manifests/v1", reg.url());
    let accept = MANIFEST_ACCEPT_ALL.join(", ");
    let r = reg
        .client()
        .get(&url)
        .header("accept", &accept)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let www = r.headers()["www-authenticate"].to_str()?.to_owned();
    assert!(www.starts_with("Basic "), "{www}");
    let r = reg
        .client()
        .get(&url)
        .header("accept", &accept)
        .basic_auth("alice", Some("nope"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = reg
        .client()
        .get(&url)
        .header("accept", &accept)
        .basic_auth("alice", Some("s3cret"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await?.to_vec(), img.manifest);
    Ok(())
}

#[tokio::test]
async fn token_registry_over_tls_uses_the_bearer_flow() -> Result<()> {
    let auth = Auth::Token {
        user: "bob".into(),
        pass: "hunter2".into(),
    };
    let reg = Registry::start(RegistryOptions { auth, tls: true }).await?;
    assert!(reg.url().starts_with("https://"));
    assert!(reg.ca_cert_path().is_some_and(|p| p.exists()));
    let img = busybox_image(&["true"])?.build();
    reg.push_image("library/busybox", "latest", &img).await?;
    let pushed = reg.token_stats();
    assert!(pushed.issued >= 1 && pushed.basic_grants >= 1, "{pushed:?}");
    assert!(
        pushed
            .scopes
            .iter()
            .any(|s| s == "repository:library/busybox:pull,push")
    );

    let url = format!("{}/v2/library/busybox/manifests/latest", reg.url());
    let accept = MANIFEST_ACCEPT_ALL.join(", ");
    let r = reg
        .client()
        .get(&url)
        .header("accept", &accept)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let www = r.headers()["www-authenticate"].to_str()?.to_owned();
    let realm = reg.token_realm().unwrap_or_default();
    assert!(
        www.starts_with(&format!("Bearer realm=\"{realm}\"")),
        "{www}"
    );
    assert!(
        www.contains("scope=\"repository:library/busybox:pull\""),
        "{www}"
    );

    let token_url =
        format!("{realm}?service=husk-test-registry&scope=repository:library/busybox:pull");
    let r = reg.client().get(&token_url).send().await?;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "token without credentials"
    );
    let tok: Value = reg
        .client()
        .get(&token_url)
        .basic_auth("bob", Some("hunter2"))
        .send()
        .await?
        .json()
        .await?;
    let bearer = tok["token"].as_str().unwrap_or_default().to_owned();
    assert_eq!(tok["access_token"].as_str(), Some(bearer.as_str()));
    assert_eq!(tok["expires_in"], 300);
    let r = reg
        .client()
        .get(&url)
        .header("accept", &accept)
        .bearer_auth(&bearer)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await?.to_vec(), img.manifest);

    // A pull-only token does not allow pushing.
    let r = reg
        .client()
        .post(format!("{}/v2/library/busybox/blobs/uploads/", reg.url()))
        .bearer_auth(&bearer)
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // OAuth2 POST grants: refresh token (identity token) and password.
    let identity = reg.identity_token().unwrap_or_default();
    let form = |grant: &[(&str, &str)]| {
        let mut f = vec![
            ("service", "husk-test-registry"),
            ("scope", "repository:library/busybox:pull"),
            ("client_id", "husk"),
        ];
        f.extend_from_slice(grant);
        f.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    for grant in [
        vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", identity.as_str()),
        ],
        vec![
            ("grant_type", "password"),
            ("username", "bob"),
            ("password", "hunter2"),
        ],
    ] {
        let r = reg.client().post(&realm).form(&form(&grant)).send().await?;
        assert_eq!(r.status(), StatusCode::OK);
        let tok: Value = r.json().await?;
        let t = tok["access_token"].as_str().unwrap_or_default().to_owned();
        let r = reg
            .client()
            .get(&url)
            .header("accept", &accept)
            .bearer_auth(&t)
            .send()
            .await?;
        assert_eq!(r.status(), StatusCode::OK);
    }
    let bad = form(&[("grant_type", "refresh_token"), ("refresh_token", "wrong")]);
    assert_eq!(
        reg.client().post(&realm).form(&bad).send().await?.status(),
        StatusCode::UNAUTHORIZED
    );
    let st = reg.token_stats();
    assert_eq!((st.refresh_grants, st.password_grants), (1, 1));
    assert!(st.rejected >= 2);
    Ok(())
}

#[tokio::test]
async fn cut_proxy_drops_a_blob_download() -> Result<()> {
    let reg = Registry::start(RegistryOptions::default()).await?;
    let big = LayerBuilder::new()
        .file("/big", vec![0x5a; 512 * 1024], 0o644, 0, 0)
        .build(Compression::None);
    let img = ImageBuilder::new().layer(big.clone()).build();
    reg.push_image("cut/me", "v1", &img).await?;
    let proxy = CutProxy::start(reg.addr(), 64 * 1024)?;
    let url = format!("http://{}/v2/cut/me/blobs/{}", proxy.host(), big.digest);
    let client = reqwest::Client::builder().no_proxy().build()?;
    let r = client.get(&url).send().await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.bytes().await.is_err(), "body should be cut short");
    assert_eq!(proxy.cuts(), 1);
    proxy.set_cut(None);
    let body = client.get(&url).send().await?.bytes().await?;
    assert_eq!(sha256_digest(&body), big.digest);
    assert!(proxy.connections() >= 2);
    Ok(())
}
