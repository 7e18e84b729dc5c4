//! Shared setup for huskd's integration tests: a real registry, a real huskd in a temp root,
//! and hosts.toml files that point image names at the local registry (never off the machine).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use husk_test_support::{BuiltImage, Huskd, HuskdOptions, Registry, RegistryOptions};
use k8s_cri::v1 as cri;
use tonic::transport::Channel;

pub type ImageClient = cri::image_service_client::ImageServiceClient<Channel>;

pub fn huskd() -> Huskd {
    Huskd::start(HuskdOptions::new(env!("CARGO_BIN_EXE_huskd"))).expect("start huskd")
}

pub async fn registry() -> Registry {
    Registry::start(RegistryOptions::default())
        .await
        .expect("start registry")
}

/// A port on 127.0.0.1 nothing listens on: the "upstream" of mirrored test names, so that a
/// test can never reach a real registry.
pub fn dead_upstream() -> String {
    format!("http://127.0.0.1:{}", husk_test_support::free_port())
}

/// Routes `domain` (e.g. `docker.io`) to `mirror_url` (e.g. `http://127.0.0.1:5000`).
pub fn mirror(h: &Huskd, domain: &str, mirror_url: &str, extra: &str) {
    let toml = format!(
        "server = \"{}\"\n\n[host.\"{mirror_url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n{extra}",
        dead_upstream()
    );
    h.write_hosts_toml(domain, &toml).expect("write hosts.toml");
}

pub async fn push(reg: &Registry, repo: &str, tag: &str, img: &BuiltImage) {
    reg.push_image(repo, tag, img).await.expect("push image");
}

pub fn image_spec(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.into(),
        ..Default::default()
    })
}

pub async fn pull(c: &mut ImageClient, name: &str) -> Result<String, tonic::Status> {
    pull_auth(c, name, None).await
}

pub async fn pull_auth(
    c: &mut ImageClient,
    name: &str,
    auth: Option<cri::AuthConfig>,
) -> Result<String, tonic::Status> {
    c.pull_image(cri::PullImageRequest {
        image: image_spec(name),
        auth,
        sandbox_config: None,
    })
    .await
    .map(|r| r.into_inner().image_ref)
}

pub async fn status(c: &mut ImageClient, name: &str) -> Option<cri::Image> {
    c.image_status(cri::ImageStatusRequest {
        image: image_spec(name),
        verbose: false,
    })
    .await
    .expect("image status")
    .into_inner()
    .image
}

pub async fn list(c: &mut ImageClient) -> Vec<cri::Image> {
    c.list_images(cri::ListImagesRequest { filter: None })
        .await
        .expect("list images")
        .into_inner()
        .images
}

pub async fn remove(c: &mut ImageClient, name: &str) {
    c.remove_image(cri::RemoveImageRequest {
        image: image_spec(name),
    })
    .await
    .expect("remove image");
}

/// Committed snapshot directories (`<root>/snapshots/<n>/fs`).
pub fn snapshot_dirs(h: &Huskd) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(h.root_dir().join("snapshots"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().parse::<u64>().is_ok())
                })
                .map(|p| p.join("fs"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Committed blobs in the content store.
pub fn blobs(h: &Huskd) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(h.root_dir().join("content/blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The snapshot that holds `rel` (searching every snapshot).
pub fn find_in_snapshots(h: &Huskd, rel: &str) -> Vec<PathBuf> {
    snapshot_dirs(h)
        .into_iter()
        .map(|d| d.join(rel))
        .filter(|p| p.symlink_metadata().is_ok())
        .collect()
}

/// Mounts an overlay of `lowers` (top-most first) read-only at a temp dir; unmounted on drop.
pub struct Overlay {
    pub dir: tempfile::TempDir,
}

impl Overlay {
    pub fn mount(lowers: &[&Path]) -> Overlay {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = format!(
            "lowerdir={}",
            lowers
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        );
        let st = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(st.success(), "mount overlay {opts}");
        Overlay { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}
