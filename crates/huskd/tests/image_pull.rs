//! Pulling through the real huskd from a real registry: normalisation, mirrors, unpacked
//! files, whiteouts, shared layers, media types, platform selection, status, list, remove.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::*;
use husk_test_support::{
    Compression, ImageBuilder, IndexBuilder, LayerBuilder, MediaTypes, Platform, busybox_image,
};
use k8s_cri::v1 as cri;

#[tokio::test]
async fn pull_busybox_through_a_mirror_and_inspect_it() {
    let reg = registry().await;
    let img = busybox_image(&["sh", "-c", "echo hi"])
        .unwrap()
        .user("1000")
        .build();
    push(&reg, "library/busybox", "latest", &img).await;
    let h = huskd();
    mirror(&h, "docker.io", &reg.url(), "");
    let mut c = h.image_client().await.unwrap();

    let id = pull(&mut c, "busybox").await.expect("pull busybox");
    assert_eq!(id, img.image_id());

    let listed = list(&mut c).await;
    assert_eq!(listed.len(), 1);
    let i = &listed[0];
    assert_eq!(i.repo_tags, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(
        i.repo_digests,
        vec![format!("docker.io/library/busybox@{}", img.manifest_digest)]
    );
    assert_eq!(i.size, img.total_size());
    assert_eq!(i.uid.as_ref().map(|u| u.value), Some(1000));

    // Every way of naming it finds it.
    let short = &img.image_id()[7..19];
    for name in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox:latest",
        img.image_id(),
        &img.image_id()["sha256:".len()..],
        short,
        &format!("busybox@{}", img.manifest_digest),
    ] {
        let s = status(&mut c, name).await;
        assert_eq!(
            s.map(|s| s.id),
            Some(img.image_id().to_string()),
            "lookup by {name}"
        );
    }
    assert!(status(&mut c, "busybox:other").await.is_none());

    // Verbose status carries the image config.
    let v = c
        .image_status(cri::ImageStatusRequest {
            image: image_spec("busybox"),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&v.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["User"], "1000");
    assert_eq!(info["imageSpec"]["config"]["Cmd"][2], "echo hi");

    // The busybox binary is unpacked byte for byte, applets are symlinks, owners kept.
    let bb = find_in_snapshots(&h, "bin/busybox");
    assert_eq!(bb.len(), 1);
    assert_eq!(
        std::fs::read(&bb[0]).unwrap(),
        std::fs::read("/bin/busybox").unwrap()
    );
    assert_eq!(std::fs::metadata(&bb[0]).unwrap().mode() & 0o777, 0o755);
    let sh = find_in_snapshots(&h, "bin/sh");
    assert!(sh[0].symlink_metadata().unwrap().file_type().is_symlink());
    let home = find_in_snapshots(&h, "home/app");
    assert_eq!(home[0].metadata().unwrap().uid(), 1000);
    let tmp = find_in_snapshots(&h, "tmp");
    assert_eq!(tmp[0].metadata().unwrap().mode() & 0o7777, 0o1777);

    // Pulling by the registry's own host name works too (localhost defaults to plain HTTP).
    let direct = format!("{}/library/busybox:latest", reg.host());
    assert_eq!(pull(&mut c, &direct).await.unwrap(), img.image_id());
    let s = status(&mut c, "busybox").await.unwrap();
    assert_eq!(s.repo_tags.len(), 2, "{:?}", s.repo_tags);
    assert_eq!(snapshot_dirs(&h).len(), 2, "no layer unpacked twice");
}

#[tokio::test]
async fn whiteouts_opaque_dirs_and_shared_layers() {
    let reg = registry().await;
    let base = LayerBuilder::new()
        .file("a", "a", 0o644, 0, 0)
        .file("keep", "k", 0o644, 0, 0)
        .dir("d", 0o755, 0, 0)
        .file("d/x", "x", 0o644, 0, 0)
        .file("d/y", "y", 0o644, 0, 0)
        .build(Compression::Gzip);
    let top1 = LayerBuilder::new()
        .whiteout("a")
        .opaque("d")
        .file("d/z", "z", 0o600, 7, 8)
        .build(Compression::Gzip);
    let top2 = LayerBuilder::new()
        .file("other", "o", 0o644, 0, 0)
        .build(Compression::Gzip);
    let one = ImageBuilder::new().layer(base.clone()).layer(top1).build();
    let two = ImageBuilder::new().layer(base).layer(top2).build();
    push(&reg, "test/one", "v1", &one).await;
    push(&reg, "test/two", "v1", &two).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    pull(&mut c, &format!("{}/test/one:v1", reg.host()))
        .await
        .unwrap();
    pull(&mut c, &format!("{}/test/two:v1", reg.host()))
        .await
        .unwrap();
    // three distinct layers, the shared base unpacked once
    assert_eq!(snapshot_dirs(&h).len(), 3);
    assert_eq!(find_in_snapshots(&h, "d/x").len(), 1);

    // the whiteout is an overlay whiteout, the opaque dir carries the xattr
    let wh = find_in_snapshots(&h, "d/z")[0]
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("a");
    let md = wh.symlink_metadata().unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0);
    let opaque = find_in_snapshots(&h, "d/z")[0]
        .parent()
        .unwrap()
        .to_path_buf();
    let x = xattr_get(&opaque, "trusted.overlay.opaque");
    assert_eq!(x.as_deref(), Some(&b"y"[..]));

    // and overlayfs merges them as the image means
    let top = find_in_snapshots(&h, "d/z")[0]
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let bottom = find_in_snapshots(&h, "d/x")[0]
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let ov = Overlay::mount(&[&top, &bottom]);
    assert!(!ov.path().join("a").exists());
    assert!(ov.path().join("keep").exists());
    let mut names: Vec<_> = std::fs::read_dir(ov.path().join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["z"]);
    let z = ov.path().join("d/z").metadata().unwrap();
    assert_eq!((z.uid(), z.gid(), z.mode() & 0o777), (7, 8, 0o600));
}

fn xattr_get(p: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(p, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[tokio::test]
async fn compressions_docker_media_types_and_platform_index() {
    let reg = registry().await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let mut n = 0;
    for mt in [MediaTypes::Oci, MediaTypes::Docker] {
        for comp in [Compression::Gzip, Compression::Zstd, Compression::None] {
            n += 1;
            let content = format!("{n}");
            let img = ImageBuilder::new()
                .media_types(mt)
                .layer(
                    LayerBuilder::new()
                        .file("marker", content.clone(), 0o644, 0, 0)
                        .build(comp),
                )
                .build();
            let name = format!("{}/media/img{n}:t", reg.host());
            push(&reg, &format!("media/img{n}"), "t", &img).await;
            let id = pull(&mut c, &name)
                .await
                .unwrap_or_else(|e| panic!("{mt:?} {comp:?}: {e}"));
            assert_eq!(id, img.image_id());
        }
    }
    let markers: Vec<String> = find_in_snapshots(&h, "marker")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(markers.len(), n);

    // A multi-arch index: the amd64 (host) image is chosen.
    let arch_img = |p: Platform, mark: &str| {
        ImageBuilder::new()
            .platform(p)
            .layer(
                LayerBuilder::new()
                    .file("arch", mark, 0o644, 0, 0)
                    .build(Compression::Gzip),
            )
            .build()
    };
    for mt in [MediaTypes::Oci, MediaTypes::Docker] {
        let idx = IndexBuilder::new(mt)
            .image(arch_img(Platform::linux_arm64(), "arm64"))
            .image(arch_img(Platform::linux_amd64(), "amd64"))
            .image(arch_img(Platform::linux_arm_v7(), "armv7"))
            .build();
        let repo = format!("multi/{mt:?}").to_lowercase();
        reg.push_index(&repo, "latest", &idx).await.unwrap();
        let want = idx
            .image_for(&Platform::host())
            .unwrap()
            .image_id()
            .to_string();
        let id = pull(&mut c, &format!("{}/{repo}", reg.host()))
            .await
            .unwrap();
        assert_eq!(id, want);
        let s = status(&mut c, &id).await.unwrap();
        // both indexes carry the same amd64 image: one image, a digest reference per index
        assert!(
            s.repo_digests
                .contains(&format!("{}/{repo}@{}", reg.host(), idx.digest))
        );
    }
    let arches: Vec<String> = find_in_snapshots(&h, "arch")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(arches.iter().all(|a| a == "amd64"), "{arches:?}");
}

#[tokio::test]
async fn remove_untags_then_frees_space() {
    let reg = registry().await;
    let shared = LayerBuilder::new()
        .file("big", vec![7u8; 1 << 20], 0o644, 0, 0)
        .build(Compression::Gzip);
    let a = ImageBuilder::new()
        .layer(shared.clone())
        .layer(
            LayerBuilder::new()
                .file("a", "a", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    let b = ImageBuilder::new()
        .layer(shared)
        .layer(
            LayerBuilder::new()
                .file("b", "b", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    push(&reg, "rm/a", "one", &a).await;
    push(&reg, "rm/a", "two", &a).await;
    push(&reg, "rm/b", "v", &b).await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let host = reg.host();
    for n in ["rm/a:one", "rm/a:two", "rm/b:v"] {
        pull(&mut c, &format!("{host}/{n}")).await.unwrap();
    }
    let usage = |c: &mut ImageClient| {
        let mut c = c.clone();
        async move {
            c.image_fs_info(cri::ImageFsInfoRequest {})
                .await
                .unwrap()
                .into_inner()
                .image_filesystems[0]
                .clone()
        }
    };
    let before = usage(&mut c).await;
    assert!(before.used_bytes.unwrap().value > 1 << 20, "{before:?}");
    assert!(before.inodes_used.unwrap().value >= 3);
    assert!(before.fs_id.unwrap().mountpoint.ends_with("snapshots"));
    assert_eq!(snapshot_dirs(&h).len(), 3);

    // by tag, while another tag remains: untag only
    remove(&mut c, &format!("{host}/rm/a:one")).await;
    let s = status(&mut c, a.image_id()).await.unwrap();
    assert_eq!(s.repo_tags, vec![format!("{host}/rm/a:two")]);
    assert_eq!(snapshot_dirs(&h).len(), 3);

    // last tag: the image goes; the shared layer stays for b
    remove(&mut c, &format!("{host}/rm/a:two")).await;
    assert!(status(&mut c, a.image_id()).await.is_none());
    assert_eq!(snapshot_dirs(&h).len(), 2);
    assert_eq!(find_in_snapshots(&h, "big").len(), 1);
    assert!(
        !blobs(&h)
            .iter()
            .any(|d| a.manifest_digest.ends_with(d.as_str()))
    );
    let mid = usage(&mut c).await;
    assert!(mid.used_bytes.unwrap().value < before.used_bytes.unwrap().value);

    // by id: everything is freed; removing again is fine
    remove(&mut c, b.image_id()).await;
    remove(&mut c, b.image_id()).await;
    remove(&mut c, "never/was:here").await;
    assert!(list(&mut c).await.is_empty());
    assert!(snapshot_dirs(&h).is_empty());
    assert!(blobs(&h).is_empty(), "{:?}", blobs(&h));
    assert_eq!(usage(&mut c).await.used_bytes.unwrap().value, 0);
}

#[tokio::test]
async fn a_tag_moves_to_the_newly_pulled_image() {
    let reg = registry().await;
    let v1 = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("v", "1", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    let v2 = ImageBuilder::new()
        .layer(
            LayerBuilder::new()
                .file("v", "2", 0o644, 0, 0)
                .build(Compression::Gzip),
        )
        .build();
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let name = format!("{}/app:latest", reg.host());
    push(&reg, "app", "latest", &v1).await;
    pull(&mut c, &name).await.unwrap();
    push(&reg, "app", "latest", &v2).await;
    assert_eq!(pull(&mut c, &name).await.unwrap(), v2.image_id());
    assert_eq!(status(&mut c, &name).await.unwrap().id, v2.image_id());
    let old = status(&mut c, v1.image_id()).await.unwrap();
    assert!(old.repo_tags.is_empty());
    assert_eq!(
        old.repo_digests.len(),
        1,
        "the old image keeps its digest reference"
    );
}

#[tokio::test]
async fn list_images_filter() {
    let reg = registry().await;
    let h = huskd();
    let mut c = h.image_client().await.unwrap();
    let mk = |s: &str| {
        ImageBuilder::new()
            .layer(
                LayerBuilder::new()
                    .file("f", s, 0o644, 0, 0)
                    .build(Compression::Gzip),
            )
            .build()
    };
    let (x, y) = (mk("x"), mk("y"));
    push(&reg, "f/x", "1", &x).await;
    push(&reg, "f/y", "1", &y).await;
    let host = reg.host();
    pull(&mut c, &format!("{host}/f/x:1")).await.unwrap();
    pull(&mut c, &format!("{host}/f/y:1")).await.unwrap();
    let filtered = |f: String| {
        let mut c = c.clone();
        async move {
            c.list_images(cri::ListImagesRequest {
                filter: Some(cri::ImageFilter {
                    image: image_spec(&f),
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .images
            .into_iter()
            .map(|i| i.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        filtered(format!("{host}/f/x")).await,
        vec![x.image_id().to_string()]
    );
    assert_eq!(
        filtered(format!("{host}/f/y:1")).await,
        vec![y.image_id().to_string()]
    );
    assert_eq!(
        filtered(y.image_id().to_string()).await,
        vec![y.image_id().to_string()]
    );
    assert!(filtered(format!("{host}/f/z")).await.is_empty());
    assert_eq!(list(&mut c).await.len(), 2);
}
