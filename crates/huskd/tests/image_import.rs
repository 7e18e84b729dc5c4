//! Offline import of OCI image-layout and `docker save` archives through husk's own API, and
//! pull progress over the streaming pull.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures::StreamExt;
use husk_api::v1 as api;
use husk_test_support::{
    ImageBuilder, IndexBuilder, LayerBuilder, MediaTypes, Platform, busybox_image,
    oci::{Compression, write_docker_save_archive, write_oci_layout_archive},
};
use tonic::Code;

#[tokio::test]
async fn import_docker_save_archive() {
    let img = busybox_image(&["echo", "imported"]).unwrap().build();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("busybox.tar");
    write_docker_save_archive(&img, &["busybox:offline", "example.com/tools/bb:1"], &tar).unwrap();
    let h = huskd();
    let res = import(&h, &tar).await.unwrap();
    assert_eq!(res.images.len(), 1);
    assert_eq!(res.images[0].id, img.image_id());
    let mut tags = res.images[0].repo_tags.clone();
    tags.sort();
    assert_eq!(
        tags,
        vec![
            "docker.io/library/busybox:offline",
            "example.com/tools/bb:1"
        ]
    );
    let mut c = h.image_client().await.unwrap();
    let s = status(&mut c, "busybox:offline").await.unwrap();
    assert_eq!(s.id, img.image_id());
    let bb = find_in_snapshots(&h, "bin/busybox");
    assert_eq!(
        std::fs::read(&bb[0]).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    // importing again is idempotent
    let again = import(&h, &tar).await.unwrap();
    assert_eq!(again.images[0].id, img.image_id());
    assert_eq!(list(&mut c).await.len(), 1);
    assert_eq!(snapshot_dirs(&h).len(), img.layers.len());
}

#[tokio::test]
async fn import_oci_layout_with_index_and_zstd() {
    let mk = |p: Platform, m: &str| {
        ImageBuilder::new()
            .platform(p)
            .layer(
                LayerBuilder::new()
                    .file("arch", m, 0o644, 0, 0)
                    .build(Compression::Zstd),
            )
            .build()
    };
    let idx = IndexBuilder::new(MediaTypes::Oci)
        .image(mk(Platform::linux_arm64(), "arm64"))
        .image(mk(Platform::linux_amd64(), "amd64"))
        .build();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("oci.tar");
    write_oci_layout_archive(&idx, Some("registry.local/multi:2"), &tar).unwrap();
    let h = huskd();
    let res = import(&h, &tar).await.unwrap();
    let want = idx.image_for(&Platform::host()).unwrap();
    assert_eq!(res.images[0].id, want.image_id());
    assert_eq!(res.images[0].repo_tags, vec!["registry.local/multi:2"]);
    let arch = find_in_snapshots(&h, "arch");
    assert_eq!(std::fs::read_to_string(&arch[0]).unwrap(), "amd64");
}

#[tokio::test]
async fn garbage_and_tampered_archives_are_refused() {
    let h = huskd();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.tar");
    std::fs::write(
        &junk,
        b"this is not a tar archive at all, not even close........",
    )
    .unwrap();
    let err = import(&h, &junk).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // an OCI layout whose blob does not match its name
    let img = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("f", "x", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    let good = dir.path().join("good.tar");
    write_oci_layout_archive(&img, Some("x/y:z"), &good).unwrap();
    let mut bytes = std::fs::read(&good).unwrap();
    let needle = b"x\0"; // no: flip a byte inside the gzip layer instead
    let _ = needle;
    let layer = &img.layers[0].blob;
    let pos = bytes
        .windows(layer.len())
        .position(|w| w == layer.as_slice())
        .expect("layer blob inside the archive");
    bytes[pos + layer.len() / 2] ^= 0xff;
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, bytes).unwrap();
    let err = import(&h, &bad).await.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    let mut c = h.image_client().await.unwrap();
    assert!(list(&mut c).await.is_empty());
}

#[tokio::test]
async fn streaming_pull_reports_layer_progress() {
    let reg = registry().await;
    let img = busybox_image(&["true"]).unwrap().build();
    push(&reg, "progress/bb", "v1", &img).await;
    let h = huskd();
    let mut hc = h.husk_client().await.unwrap();
    let name = format!("{}/progress/bb:v1", reg.host());
    let run = |hc: &mut husk_api::v1::husk_client::HuskClient<tonic::transport::Channel>| {
        let mut hc = hc.clone();
        let name = name.clone();
        async move {
            let mut s = hc
                .pull_image(api::PullImageRequest {
                    image: name,
                    auth: None,
                })
                .await
                .unwrap()
                .into_inner();
            let mut evs = vec![];
            while let Some(e) = s.next().await {
                evs.push(e.unwrap().event.unwrap());
            }
            evs
        }
    };
    let evs = run(&mut hc).await;
    let api::pull_event::Event::Resolved(r) = &evs[0] else {
        panic!("{evs:?}")
    };
    assert_eq!(r.layers.len(), img.layers.len());
    assert_eq!(r.manifest_digest, img.manifest_digest);
    let api::pull_event::Event::Done(d) = evs.last().unwrap() else {
        panic!("{evs:?}")
    };
    assert_eq!(d.image_id, img.image_id());
    assert_eq!(d.size_bytes, img.total_size());
    for l in &img.layers {
        assert!(
            evs.iter()
                .any(|e| matches!(e, api::pull_event::Event::Layer(p)
                if p.digest == l.digest && p.phase == api::LayerPhase::Done as i32)),
            "layer {} reported done",
            l.digest
        );
    }
    // a second pull finds everything present
    let evs = run(&mut hc).await;
    assert!(
        evs.iter()
            .any(|e| matches!(e, api::pull_event::Event::Layer(p)
        if p.phase == api::LayerPhase::Exists as i32))
    );
    // errors end the stream with a status
    let mut s = hc
        .pull_image(api::PullImageRequest {
            image: format!("{}/nope:1", reg.host()),
            auth: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(e) = s.next().await {
        last = Some(e);
    }
    assert_eq!(last.unwrap().unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn importing_a_pulled_image_adds_names_only() {
    let reg = registry().await;
    let img = busybox_image(&["true"]).unwrap().build();
    push(&reg, "library/busybox", "latest", &img).await;
    let h = huskd();
    mirror(&h, "docker.io", &reg.url(), "");
    let mut c = h.image_client().await.unwrap();
    pull(&mut c, "busybox").await.unwrap();
    let before = status(&mut c, "busybox").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("bb.tar");
    write_docker_save_archive(&img, &["busybox:offline"], &tar).unwrap();
    let res = import(&h, &tar).await.unwrap();
    assert_eq!(res.images[0].id, before.id);
    assert_eq!(
        res.images[0].repo_tags,
        vec!["docker.io/library/busybox:offline"],
        "only the archive's names"
    );
    let after = status(&mut c, "busybox").await.unwrap();
    assert_eq!(after.size, before.size, "the pulled record keeps its size");
    assert_eq!(after.repo_tags.len(), 2);
    assert!(after.repo_digests.contains(&before.repo_digests[0]));
}

/// `[registry] max_import_bytes` bounds an archive as received and the tar inside a compressed
/// one; more is RESOURCE_EXHAUSTED, and nothing of the refused import stays behind.
#[tokio::test]
async fn imports_over_the_size_limit_are_resource_exhausted() {
    const LIMIT: u64 = 256 << 10;
    let h = husk_test_support::Huskd::start(
        husk_test_support::HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
            .extra_config(&format!("[registry]\nmax_import_bytes = {LIMIT}\n")),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = h.image_client().await.unwrap();

    // Under the limit: imported.
    let small = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("hello", "hi", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    let small_tar = dir.path().join("small.tar");
    write_docker_save_archive(&small, &["small:1"], &small_tar).unwrap();
    assert!(std::fs::metadata(&small_tar).unwrap().len() < LIMIT);
    let res = import(&h, &small_tar).await.unwrap();
    assert_eq!(res.images[0].id, small.image_id());

    // Over it as sent: busybox is a megabyte or more.
    let big = busybox_image(&["sh"]).unwrap().build();
    let big_tar = dir.path().join("big.tar");
    write_docker_save_archive(&big, &["big:1"], &big_tar).unwrap();
    assert!(std::fs::metadata(&big_tar).unwrap().len() > LIMIT);
    let err = import(&h, &big_tar).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("import limit"), "{err:?}");

    // Small as sent, over it once decompressed: a megabyte of zeros in an uncompressed layer,
    // the archive gzipped.
    let zeros = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("zeros", vec![0u8; 1 << 20], 0o644, 0, 0)
                .build(Compression::None),
        )
        .build();
    let zeros_tar = dir.path().join("zeros.tar");
    write_docker_save_archive(&zeros, &["zeros:1"], &zeros_tar).unwrap();
    let gz = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&zeros_tar)
        .status()
        .unwrap();
    assert!(gz.success());
    let zeros_gz = dir.path().join("zeros.tar.gz");
    assert!(std::fs::metadata(&zeros_gz).unwrap().len() < LIMIT);
    let err = import(&h, &zeros_gz).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    let names: Vec<Vec<String>> = list(&mut c)
        .await
        .into_iter()
        .map(|i| i.repo_tags)
        .collect();
    assert_eq!(names, [["docker.io/library/small:1"]]);
    let ingest = h.root_dir().join("content/ingest");
    let left: Vec<_> = std::fs::read_dir(&ingest).unwrap().flatten().collect();
    assert!(
        left.is_empty(),
        "partial blobs left in {ingest:?}: {left:?}"
    );
    let tmp: Vec<_> = std::fs::read_dir(h.root_dir().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.is_empty(), "received archives left: {tmp:?}");
}
