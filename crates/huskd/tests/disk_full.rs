//! A full disk: huskd's root on a small tmpfs. Pulls and imports that run out of space fail
//! with a clear "no space" status and leave no half-written blob, no `*.tmp` snapshot, no temp
//! file and no image record; once the filesystem grows, the same pull resumes its partial
//! download and succeeds. Atomic record writes that hit ENOSPC leave the old file and no temp.
//! Needs root (mount); the tmpfs is unmounted even when a test fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use husk_test_support::oci::{big_image_seeded, write_docker_save_archive};
use husk_test_support::{BuiltImage, Huskd, HuskdOptions, require_system};
use sha2::{Digest as _, Sha256};
use tonic::Code;

/// A tmpfs of a given size at a temp dir; unmounted (lazily if still busy) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("husk-diskfull-")
            .tempdir()
            .unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs of {size} at {:?}", dir.path());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "remount tmpfs to {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(self.path()).status();
        }
    }
}

/// Root, `mount` and the registry binary, or a skip note (a failure under HUSK_REQUIRE_SYSTEM).
fn machine_ok() -> bool {
    require_system("root") && require_system("mount") && require_system("/usr/bin/docker-registry")
}

/// A daemon whose root is the tmpfs.
fn huskd_on(fs: &Tmpfs) -> Huskd {
    let root = fs.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let opts = HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))
        .extra_config(&format!("root = {:?}", root.to_string_lossy()));
    Huskd::start(opts).expect("start huskd")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Committed snapshots holding `rel` (huskd's root is not the launcher's default here).
fn snapshots_with(root: &Path, rel: &str) -> Vec<PathBuf> {
    names(&root.join("snapshots"))
        .into_iter()
        .filter(|n| n.parse::<u64>().is_ok())
        .map(|n| root.join("snapshots").join(n).join("fs").join(rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What a failed operation may leave: committed blobs that are whole and verified, partial
/// downloads that are a prefix of their blob (so a retry resumes them), and nothing else —
/// no temp files, no `*.tmp` snapshots, no records that do not parse.
fn assert_clean(root: &Path, img: &BuiltImage) {
    let blobs = root.join("content/blobs/sha256");
    for name in names(&blobs) {
        let data = std::fs::read(blobs.join(&name)).unwrap();
        assert_eq!(sha256_hex(&data), name, "blob {name} is not whole");
    }
    let layer = &img.layers[0];
    for name in names(&root.join("content/ingest")) {
        let hex = name
            .strip_prefix("sha256-")
            .unwrap_or_else(|| panic!("stray file {name:?} in content/ingest"));
        assert_eq!(hex, &layer.digest["sha256:".len()..], "partial of {name}");
        let part = std::fs::read(root.join("content/ingest").join(&name)).unwrap();
        assert!(
            layer.blob.starts_with(&part),
            "partial download {name} ({} bytes) is not a prefix of its blob",
            part.len()
        );
    }
    for name in names(&root.join("snapshots")) {
        assert!(
            name.parse::<u64>().is_ok(),
            "leftover snapshot dir {name:?}"
        );
    }
    assert!(
        names(&root.join("tmp")).is_empty(),
        "scratch files left in tmp/"
    );
    for dir in ["images", "sandboxes", "containers"] {
        for name in names(&root.join(dir)) {
            assert!(!name.starts_with('.'), "temp file {dir}/{name} left behind");
            let data = std::fs::read(root.join(dir).join(&name)).unwrap();
            serde_json::from_slice::<serde_json::Value>(&data)
                .unwrap_or_else(|e| panic!("record {dir}/{name} is torn: {e}"));
        }
    }
}

fn assert_no_space(err: &tonic::Status, allowed: &[Code]) {
    assert!(allowed.contains(&err.code()), "{err:?}");
    assert!(
        err.message().contains("No space left on device"),
        "the status says what happened: {}",
        err.message()
    );
}

/// 12 MiB of incompressible data in one uncompressed layer.
fn big(seed: u64) -> BuiltImage {
    let img = big_image_seeded(12 << 20, 1, seed).unwrap();
    assert!(img.layers[0].size() > 12 << 20);
    img
}

#[tokio::test]
async fn a_pull_onto_a_full_disk_fails_cleanly_and_resumes_once_there_is_room() {
    if !machine_ok() {
        return;
    }
    let fs = Tmpfs::mount("8m");
    let reg = registry().await;
    let img = big(0xd15c);
    push(&reg, "full/disk", "v1", &img).await;
    let name = format!("{}/full/disk:v1", reg.host());
    // A record that exists before the disk fills, to overwrite once it is full.
    let probe = fs.path().join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    std::fs::write(probe.join("victim.json"), b"{\"old\":true}").unwrap();
    let h = huskd_on(&fs);
    let root = fs.path().join("root");
    let mut c = h.image_client().await.unwrap();

    // 8 MiB: the layer download runs out of space.
    let err = pull(&mut c, &name).await.unwrap_err();
    assert_no_space(&err, &[Code::ResourceExhausted]);
    assert!(
        list(&mut c).await.is_empty(),
        "no image after a failed pull"
    );
    assert!(names(&root.join("images")).is_empty());
    assert_clean(&root, &img);
    assert_eq!(
        names(&root.join("content/ingest")).len(),
        1,
        "the partial download is kept for a resume"
    );

    // The disk is full now: an atomic write fails, keeps the old file and leaves no temp file.
    let err = husk_sys::fs::atomic_write(&probe.join("victim.json"), &vec![b' '; 1 << 20])
        .expect_err("a 1 MiB write onto a full tmpfs");
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert_eq!(
        std::fs::read(probe.join("victim.json")).unwrap(),
        b"{\"old\":true}"
    );
    assert_eq!(names(&probe), vec!["victim.json"], "no temp file left");

    // 16 MiB: the download resumes and completes, but unpacking the layer runs out of space.
    fs.resize("16m");
    let err = pull(&mut c, &name).await.unwrap_err();
    assert_no_space(&err, &[Code::ResourceExhausted]);
    assert!(
        h.log().contains("resuming download"),
        "the second pull resumed the partial download"
    );
    assert!(list(&mut c).await.is_empty());
    assert!(
        names(&root.join("snapshots")).is_empty(),
        "no snapshot from a failed unpack"
    );
    assert_clean(&root, &img);
    assert!(
        names(&root.join("content/blobs/sha256")).contains(&img.layers[0].digest[7..].to_string()),
        "the downloaded layer was committed whole"
    );

    // 64 MiB: the same pull succeeds, and the disk holds exactly one good copy of everything.
    fs.resize("64m");
    let id = pull(&mut c, &name).await.expect("pull with room");
    assert_eq!(id, img.image_id());
    let listed = list(&mut c).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].repo_tags, vec![name.clone()]);
    assert_clean(&root, &img);
    assert!(names(&root.join("content/ingest")).is_empty());
    let file = snapshots_with(&root, "data/layer-0.bin");
    assert_eq!(file.len(), 1, "one snapshot holds the layer");
    assert_eq!(std::fs::metadata(&file[0]).unwrap().len(), 12 << 20);
    let records = names(&root.join("images"));
    assert_eq!(records, vec![format!("{}.json", &img.image_id()[7..])]);
    // And after a restart everything is still there.
    let mut h = h;
    h.restart().unwrap();
    let mut c = h.image_client().await.unwrap();
    assert_eq!(status(&mut c, &name).await.unwrap().id, img.image_id());
}

#[tokio::test]
async fn an_import_onto_a_full_disk_fails_cleanly_and_succeeds_once_there_is_room() {
    if !machine_ok() {
        return;
    }
    let fs = Tmpfs::mount("8m");
    let img = big(0xf011);
    let work = tempfile::tempdir().unwrap();
    let tar: PathBuf = work.path().join("big.tar");
    write_docker_save_archive(&img, &["example.com/full/import:v1"], &tar).unwrap();
    let h = huskd_on(&fs);
    let root = fs.path().join("root");
    let mut c = h.image_client().await.unwrap();

    // 8 MiB: the archive itself does not fit in the scratch directory.
    let err = import(&h, &tar).await.unwrap_err();
    assert_no_space(&err, &[Code::ResourceExhausted, Code::Internal]);
    assert!(list(&mut c).await.is_empty());
    assert_clean(&root, &img);

    // 30 MiB: the archive (12) and its layer blob (12) fit, the unpacked layer (12) does not.
    fs.resize("30m");
    let err = import(&h, &tar).await.unwrap_err();
    assert_no_space(&err, &[Code::ResourceExhausted]);
    assert!(list(&mut c).await.is_empty());
    assert!(names(&root.join("snapshots")).is_empty());
    assert_clean(&root, &img);

    // 64 MiB: it goes through.
    fs.resize("64m");
    let res = import(&h, &tar).await.expect("import with room");
    assert_eq!(res.images.len(), 1);
    assert_eq!(res.images[0].id, img.image_id());
    assert_eq!(
        status(&mut c, "example.com/full/import:v1")
            .await
            .unwrap()
            .id,
        img.image_id()
    );
    assert_clean(&root, &img);
    assert_eq!(snapshots_with(&root, "data/layer-0.bin").len(), 1);
}
