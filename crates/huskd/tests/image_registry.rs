//! Registry access through huskd: containerd-style hosts.toml mirrors, basic and bearer-token
//! auth from the CRI AuthConfig, TLS with a private CA, and clear errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use common::*;
use husk_test_support::{Auth, Registry, RegistryOptions, busybox_image};
use k8s_cri::v1 as cri;
use tonic::Code;

async fn reg_with(auth: Auth, tls: bool) -> Registry {
    Registry::start(RegistryOptions { auth, tls })
        .await
        .expect("registry")
}

fn small_image() -> husk_test_support::BuiltImage {
    busybox_image(&["true"]).unwrap().build()
}

#[tokio::test]
async fn mirror_serves_registry_k8s_io_names() {
    let reg = registry().await;
    let img = small_image();
    push(&reg, "pause", "3.10", &img).await;
    let h = huskd();
    mirror(&h, "registry.k8s.io", &reg.url(), "");
    let mut c = h.image_client().await.unwrap();
    assert_eq!(
        pull(&mut c, "registry.k8s.io/pause:3.10").await.unwrap(),
        img.image_id()
    );
    assert_eq!(
        status(&mut c, "registry.k8s.io/pause:3.10")
            .await
            .unwrap()
            .repo_tags,
        vec!["registry.k8s.io/pause:3.10"]
    );
    // Without the mirror the (dead) upstream answers nothing: a clear Unavailable.
    h.write_hosts_toml(
        "registry.k8s.io",
        &format!("server = \"{}\"\n", dead_upstream()),
    )
    .unwrap();
    let err = pull(&mut c, "registry.k8s.io/pause:3.10")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("127.0.0.1"), "{}", err.message());
}

#[tokio::test]
async fn mirror_with_override_path_and_ns_fallthrough() {
    let reg = registry().await;
    let img = small_image();
    push(&reg, "library/busybox", "1.36", &img).await;
    let h = huskd();
    // first host has no such repo (404 on a path prefix), the second is the real one
    let toml = format!(
        "server = \"{}\"\n[host.\"{}/v2/nothing-here\"]\n  capabilities = [\"pull\", \"resolve\"]\n  override_path = true\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        dead_upstream(),
        reg.url(),
        reg.url()
    );
    h.write_hosts_toml("docker.io", &toml).unwrap();
    let mut c = h.image_client().await.unwrap();
    assert_eq!(pull(&mut c, "busybox:1.36").await.unwrap(), img.image_id());
}

fn basic_auth(user: &str, pass: &str) -> Option<cri::AuthConfig> {
    Some(cri::AuthConfig {
        username: user.into(),
        password: pass.into(),
        ..Default::default()
    })
}

#[tokio::test]
async fn htpasswd_basic_auth() {
    let reg = reg_with(
        Auth::Htpasswd {
            user: "alice".into(),
            pass: "wonder".into(),
        },
        false,
    )
    .await;
    let img = small_image();
    push(&reg, "private/app", "v1", &img).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let name = format!("{}/private/app:v1", reg.host());

    let err = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains(&reg.host()), "{}", err.message());

    let err = pull_auth(&mut c, &name, basic_auth("alice", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    assert_eq!(
        pull_auth(&mut c, &name, basic_auth("alice", "wonder"))
            .await
            .unwrap(),
        img.image_id()
    );
    remove(&mut c, &name).await;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:wonder");
    let cfg = cri::AuthConfig {
        auth,
        server_address: reg.host(),
        ..Default::default()
    };
    assert_eq!(
        pull_auth(&mut c, &name, Some(cfg)).await.unwrap(),
        img.image_id()
    );
    // credentials for another server are not sent
    remove(&mut c, &name).await;
    let cfg = cri::AuthConfig {
        username: "alice".into(),
        password: "wonder".into(),
        server_address: "other.example:5000".into(),
        ..Default::default()
    };
    let err = pull_auth(&mut c, &name, Some(cfg)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn bearer_token_flow_with_password_and_identity_token() {
    let reg = reg_with(
        Auth::Token {
            user: "bob".into(),
            pass: "builder".into(),
        },
        false,
    )
    .await;
    let img = small_image();
    push(&reg, "team/app", "v1", &img).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let name = format!("{}/team/app:v1", reg.host());

    let err = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let before = reg.token_stats();
    assert_eq!(
        pull_auth(&mut c, &name, basic_auth("bob", "builder"))
            .await
            .unwrap(),
        img.image_id()
    );
    let after = reg.token_stats();
    assert!(
        after.issued > before.issued,
        "a token was issued: {after:?}"
    );
    assert!(after.basic_grants > before.basic_grants);

    remove(&mut c, &name).await;
    // A fresh daemon, so that no cached token helps: the identity (refresh) token grant.
    drop(c);
    drop(h);
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let cfg = cri::AuthConfig {
        identity_token: reg.identity_token().unwrap(),
        ..Default::default()
    };
    assert_eq!(
        pull_auth(&mut c, &name, Some(cfg)).await.unwrap(),
        img.image_id()
    );
    assert!(reg.token_stats().refresh_grants > after.refresh_grants);
}

#[tokio::test]
async fn tls_registry_with_private_ca() {
    let reg = reg_with(Auth::None, true).await;
    let img = small_image();
    push(&reg, "secure/app", "v1", &img).await;
    let h = huskd();
    let name = format!("{}/secure/app:v1", reg.host());
    let mut c = h.image_client().await.unwrap();

    // https without trusting the CA: refused, and the error says why
    h.write_hosts_toml(
        &reg.host(),
        &format!("server = \"https://{}\"\n", reg.host()),
    )
    .unwrap();
    let err = pull(&mut c, &name).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().to_lowercase().contains("certificate"),
        "{}",
        err.message()
    );

    // with the CA from hosts.toml
    let ca = reg.ca_cert_path().unwrap();
    h.write_certs_file(&reg.host(), "ca.crt", &std::fs::read(&ca).unwrap())
        .unwrap();
    h.write_hosts_toml(
        &reg.host(),
        &format!("server = \"https://{}\"\nca = \"ca.crt\"\n", reg.host()),
    )
    .unwrap();
    assert_eq!(pull(&mut c, &name).await.unwrap(), img.image_id());

    // skip_verify also works
    remove(&mut c, &name).await;
    h.write_hosts_toml(
        &reg.host(),
        &format!("server = \"https://{}\"\nskip_verify = true\n", reg.host()),
    )
    .unwrap();
    assert_eq!(pull(&mut c, &name).await.unwrap(), img.image_id());
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let reg = registry().await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let err = pull(&mut c, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = pull(&mut c, "Not A Reference!").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("Not A Reference!"),
        "{}",
        err.message()
    );
    let missing = format!("{}/no/such:image", reg.host());
    let err = pull(&mut c, &missing).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("no/such:image"), "{}", err.message());
    assert!(status(&mut c, "no/such:image").await.is_none());
    let err = c
        .image_status(cri::ImageStatusRequest {
            image: None,
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .remove_image(cri::RemoveImageRequest {
            image: image_spec(" "),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // a broken hosts.toml is reported, not ignored
    h.write_hosts_toml(&reg.host(), "server = [broken").unwrap();
    let err = pull(&mut c, &format!("{}/x:y", reg.host()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("hosts.toml"), "{}", err.message());
    // nothing was stored by any of this
    assert!(list(&mut c).await.is_empty());
}
