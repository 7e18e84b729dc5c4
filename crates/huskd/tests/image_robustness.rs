//! Pulls that go wrong: corrupt blobs, dropped connections, a daemon killed half way,
//! malicious layers, concurrent pulls of one image. Nothing broken is ever left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::StreamExt;
use husk_api::v1 as api;
use husk_test_support::{
    CutProxy, ImageBuilder, LayerBuilder, busybox_image, oci::Compression as C,
    oci::big_image_seeded,
};
use tonic::Code;

#[tokio::test]
async fn corrupt_blob_is_rejected_and_not_stored() {
    let reg = registry().await;
    let img = busybox_image(&["true"]).unwrap().build();
    push(&reg, "bad/digest", "v1", &img).await;
    let layer = img.layers.last().unwrap().digest.clone();
    reg.corrupt_blob(&layer).unwrap();
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let err = pull(&mut c, &format!("{}/bad/digest:v1", reg.host()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(
        err.message().contains("digest mismatch"),
        "{}",
        err.message()
    );
    assert!(err.message().contains(&layer), "{}", err.message());
    assert!(list(&mut c).await.is_empty());
    let hex = &layer["sha256:".len()..];
    assert!(
        !blobs(&h).iter().any(|b| b == hex),
        "corrupt blob not committed"
    );
    // The corrupt blob's partial file is dropped (a cancelled sibling download may keep its
    // own partial file for a later resume: that is by design).
    let ingest = h.root_dir().join("content/ingest");
    let left: Vec<String> = std::fs::read_dir(&ingest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|n| n.contains(hex)),
        "corrupt partial download dropped: {left:?}"
    );
}

#[tokio::test]
async fn diff_id_mismatch_is_rejected() {
    let reg = registry().await;
    let img = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("f", "x", 0o644, 0, 0)
                .build(C::Gzip),
        )
        .edit_config(|v| {
            v["rootfs"]["diff_ids"][0] = serde_json::json!(format!("sha256:{}", "ab".repeat(32)));
        })
        .build();
    push(&reg, "bad/diffid", "v1", &img).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let err = pull(&mut c, &format!("{}/bad/diffid:v1", reg.host()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(list(&mut c).await.is_empty());
    assert!(snapshot_dirs(&h).is_empty());
}

#[tokio::test]
async fn dropped_connections_resume_where_they_stopped() {
    let reg = registry().await;
    let img = big_image_seeded(12 << 20, 2, 7).unwrap();
    push(&reg, "big/resume", "v1", &img).await;
    // Every connection is cut after 1 MiB: the in-pull retries make progress but can't finish.
    let proxy = CutProxy::start(reg.addr(), 1 << 20).unwrap();
    let h = huskd();
    mirror(&h, "docker.io", &format!("http://{}", proxy.host()), "");
    let mut c = h.image_client().await.unwrap();
    let err = pull(&mut c, "big/resume:v1").await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(list(&mut c).await.is_empty(), "no broken image");
    assert!(proxy.cuts() >= 3);
    let partial: u64 = std::fs::read_dir(h.root_dir().join("content/ingest"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(partial > 1 << 20, "partial downloads are kept: {partial}");

    // The connection heals: the next pull completes, fetching only what was missing.
    let sent_before = proxy.bytes_to_client();
    proxy.set_cut(None);
    assert_eq!(pull(&mut c, "big/resume:v1").await.unwrap(), img.image_id());
    let sent = proxy.bytes_to_client() - sent_before;
    assert!(
        sent < img.total_size() - partial / 2,
        "resumed: sent {sent} of {} with {partial} already there",
        img.total_size()
    );
    assert_eq!(
        std::fs::read_dir(h.root_dir().join("content/ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn daemon_killed_mid_pull_leaves_no_broken_image() {
    let reg = registry().await;
    let img = big_image_seeded(64 << 20, 4, 9).unwrap();
    push(&reg, "big/kill", "v1", &img).await;
    let mut h = huskd();
    let name = format!("{}/big/kill:v1", reg.host());
    let mut hc = h.husk_client().await.unwrap();
    let mut stream = hc
        .pull_image(api::PullImageRequest {
            image: name.clone(),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner();
    // Kill the daemon as soon as bytes are flowing.
    while let Some(ev) = stream.next().await {
        if let Ok(api::PullEvent {
            event: Some(api::pull_event::Event::Layer(l)),
        }) = ev
            && l.done_bytes > 0
        {
            break;
        }
    }
    h.kill().unwrap();
    h.restart().unwrap();
    let mut c = h.image_client().await.unwrap();
    // The pull may have finished before the kill landed; either way the state is whole.
    if let Some(s) = status(&mut c, &name).await {
        assert_eq!(s.id, img.image_id());
    }
    assert!(
        std::fs::read_dir(h.root_dir().join("snapshots"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp"))
    );
    assert_eq!(pull(&mut c, &name).await.unwrap(), img.image_id());
    assert_eq!(snapshot_dirs(&h).len(), 4);
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_the_work() {
    let reg = registry().await;
    let img = big_image_seeded(16 << 20, 4, 3).unwrap();
    push(&reg, "big/shared", "v1", &img).await;
    let proxy = CutProxy::start(reg.addr(), u64::MAX).unwrap();
    proxy.set_cut(None);
    let h = huskd();
    let name = format!("{}/big/shared:v1", proxy.host());
    let c = h.image_client().await.unwrap();
    let pulls = (0..6).map(|_| {
        let mut c = c.clone();
        let name = name.clone();
        async move { pull(&mut c, &name).await }
    });
    for r in futures::future::join_all(pulls).await {
        assert_eq!(r.unwrap(), img.image_id());
    }
    assert!(
        proxy.bytes_to_client() < img.total_size() + img.total_size() / 2,
        "layers fetched once: {} bytes for a {} byte image",
        proxy.bytes_to_client(),
        img.total_size()
    );
    assert_eq!(snapshot_dirs(&h).len(), 4);
}

#[tokio::test]
async fn malicious_layers_stay_inside_the_snapshot() {
    use husk_test_support::oci::{Entry, EntryKind};
    let raw = |path: &str, kind: EntryKind| Entry {
        path: path.to_string(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: vec![],
    };
    let file = |path: &str| raw(path, EntryKind::File(b"evil".to_vec()));
    let reg = registry().await;
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("victim");
    std::fs::write(&target, "original").unwrap();
    let t = target.display().to_string();
    let layer = LayerBuilder::new()
        .entry(file("../../../../../../tmp/husk-escape-1"))
        .symlink("root-link", "/")
        .entry(file(&format!("root-link{t}")))
        .symlink("up", "../../../../../../../..")
        .entry(file(&format!("up{t}")))
        .entry(raw("hl", EntryKind::Hardlink(t.clone())))
        .build(C::Gzip);
    let img = ImageBuilder::new().layer(layer).build();
    push(&reg, "evil/img", "v1", &img).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let res = pull(&mut c, &format!("{}/evil/img:v1", reg.host())).await;
    // Refused or contained — never written outside.
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "original");
    assert!(!std::path::Path::new("/tmp/husk-escape-1").exists());
    if res.is_ok() {
        assert_eq!(find_in_snapshots(&h, "tmp/husk-escape-1").len(), 1);
    }
}
