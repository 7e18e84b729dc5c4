//! The built binary against an in-process fake huskd (CRI image service + husk service on a
//! unix socket): checks each image verb end to end over the real proto types.

mod common;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use futures::Stream;
use husk_api::v1::husk_server::{Husk, HuskServer};
use husk_api::v1::pull_event::Event;
use husk_api::v1::{
    ImportChunk, ImportImageResponse, ImportedImage, LayerPhase, LayerProgress, PullDone,
    PullEvent, PullResolved,
};
use k8s_cri::v1::{
    FilesystemIdentifier, FilesystemUsage, Image, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageStatusRequest, ImageStatusResponse, ListImagesRequest, ListImagesResponse,
    PullImageRequest, PullImageResponse, RemoveImageRequest, RemoveImageResponse, UInt64Value,
};
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use common::Reply;

const LAYER_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LAYER_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const IMAGE_ID: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
const MANIFEST: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

#[derive(Clone, Default)]
struct Fake {
    images: Arc<Mutex<Vec<Image>>>,
}

impl Fake {
    fn images(&self) -> std::sync::MutexGuard<'_, Vec<Image>> {
        self.images.lock().expect("lock")
    }

    fn find(&self, name: &str) -> Option<Image> {
        self.images().iter().find(|i| matches(i, name)).cloned()
    }

    fn add_pulled(&self, name: &str) -> Image {
        let repo = name.rsplit_once(':').map_or(name, |(r, _)| r);
        let image = Image {
            id: IMAGE_ID.into(),
            repo_tags: vec![name.into()],
            repo_digests: vec![format!("{repo}@{MANIFEST}")],
            size: 2_219_949,
            ..Default::default()
        };
        let mut images = self.images();
        images.retain(|i| i.id != IMAGE_ID);
        images.push(image.clone());
        image
    }
}

fn matches(image: &Image, name: &str) -> bool {
    image.id == name
        || image.repo_tags.iter().any(|t| t == name)
        || image.repo_digests.iter().any(|d| d == name)
}

fn spec_name(spec: Option<k8s_cri::v1::ImageSpec>) -> String {
    spec.map(|s| s.image).unwrap_or_default()
}

#[tonic::async_trait]
impl common::FakeImages for Fake {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> Reply<ListImagesResponse> {
        let filter = r
            .into_inner()
            .filter
            .map(|f| spec_name(f.image))
            .unwrap_or_default();
        let images = self
            .images()
            .iter()
            .filter(|i| filter.is_empty() || matches(i, &filter))
            .cloned()
            .collect();
        Ok(Response::new(ListImagesResponse { images }))
    }

    async fn image_status(&self, r: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let r = r.into_inner();
        let image = self.find(&spec_name(r.image));
        let mut info = std::collections::HashMap::new();
        if r.verbose && image.is_some() {
            info.insert(
                "info".to_string(),
                r#"{"chainID":"sha256:feed","snapshotter":"overlayfs"}"#.to_string(),
            );
        }
        Ok(Response::new(ImageStatusResponse { image, info }))
    }

    async fn pull_image(&self, r: Request<PullImageRequest>) -> Reply<PullImageResponse> {
        let image = self.add_pulled(&spec_name(r.into_inner().image));
        Ok(Response::new(PullImageResponse {
            image_ref: image.id,
        }))
    }

    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> Reply<RemoveImageResponse> {
        let name = spec_name(r.into_inner().image);
        self.images().retain(|i| !matches(i, &name));
        Ok(Response::new(RemoveImageResponse {}))
    }

    async fn image_fs_info(&self, _: Request<ImageFsInfoRequest>) -> Reply<ImageFsInfoResponse> {
        Ok(Response::new(ImageFsInfoResponse {
            image_filesystems: vec![FilesystemUsage {
                timestamp: 1_700_000_000_000_000_000,
                fs_id: Some(FilesystemIdentifier {
                    mountpoint: "/var/lib/husk".into(),
                }),
                used_bytes: Some(UInt64Value { value: 4_500_000 }),
                inodes_used: Some(UInt64Value { value: 42 }),
            }],
            container_filesystems: vec![],
        }))
    }
}

fn layer(digest: &str, done: u64, phase: LayerPhase) -> LayerProgress {
    LayerProgress {
        digest: digest.into(),
        total_bytes: 1000,
        done_bytes: done,
        phase: phase as i32,
    }
}

fn event(e: Event) -> Result<PullEvent, Status> {
    Ok(PullEvent { event: Some(e) })
}

#[tonic::async_trait]
impl Husk for Fake {
    type PullImageStream = Pin<Box<dyn Stream<Item = Result<PullEvent, Status>> + Send>>;

    async fn pull_image(
        &self,
        r: Request<husk_api::v1::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let r = r.into_inner();
        if r.image.starts_with("nosuch") {
            return Err(Status::not_found(format!("image {:?} not found", r.image)));
        }
        if r.auth
            .as_ref()
            .is_some_and(|a| a.username != "me" || a.password != "pw")
        {
            return Err(Status::unauthenticated("bad credentials"));
        }
        let image = self.add_pulled(&r.image);
        let events = vec![
            event(Event::Resolved(PullResolved {
                manifest_digest: MANIFEST.into(),
                layers: vec![
                    layer(LAYER_A, 0, LayerPhase::Waiting),
                    layer(LAYER_B, 0, LayerPhase::Exists),
                ],
            })),
            event(Event::Layer(layer(LAYER_A, 500, LayerPhase::Downloading))),
            event(Event::Layer(layer(LAYER_A, 1000, LayerPhase::Extracting))),
            event(Event::Layer(layer(LAYER_A, 1000, LayerPhase::Done))),
            event(Event::Done(PullDone {
                image_id: image.id,
                image_ref: image.repo_digests[0].clone(),
                size_bytes: 1000,
            })),
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(events))))
    }

    async fn import_image(
        &self,
        r: Request<Streaming<ImportChunk>>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        let mut stream = r.into_inner();
        let (mut bytes, mut chunks) = (0, 0);
        while let Some(chunk) = stream.message().await? {
            assert!(chunk.data.len() <= 1024 * 1024);
            bytes += chunk.data.len();
            chunks += 1;
        }
        Ok(Response::new(ImportImageResponse {
            images: vec![
                ImportedImage {
                    id: "sha256:1".into(),
                    repo_tags: vec!["example.com/a:v1".into()],
                    repo_digests: vec![],
                },
                ImportedImage {
                    id: format!("sha256:{bytes}-bytes-in-{chunks}"),
                    repo_tags: vec![],
                    repo_digests: vec![],
                },
            ],
        }))
    }
}

type Daemon = common::Daemon<Fake>;

/// A fake huskd, with or without the husk service.
async fn start(with_husk: bool) -> Daemon {
    let fake = Fake::default();
    let mut routes = Routes::new(common::image_service(fake.clone()));
    if with_husk {
        routes = routes.add_service(HuskServer::new(fake.clone()));
    }
    Daemon::start(fake, routes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_list_inspect_remove() {
    let d = start(true).await;
    let busybox = "docker.io/library/busybox:latest";

    let empty = d.ok(&["images"]).await;
    assert_eq!(
        empty,
        "IMAGE               TAG                 IMAGE ID            SIZE\n"
    );

    // Not a terminal: a line per layer in place, then what the pull fetched and the image ID.
    let pulled = d.ok(&["pull", busybox]).await;
    let lines: Vec<&str> = pulled.lines().collect();
    assert_eq!(lines.len(), 4, "{pulled}");
    assert_eq!(lines[0], "bbbbbbbbbbbb: already exists");
    assert_eq!(lines[1], "aaaaaaaaaaaa: done (1kB)");
    // Layer a was fetched from 500 of its 1000 bytes.
    assert!(
        lines[2].starts_with(&format!("Pulled {busybox} (500 B in ")) && lines[2].ends_with("/s)"),
        "{pulled}"
    );
    assert_eq!(lines[3], format!("Image ID: {IMAGE_ID}"));

    let table = d.ok(&["images"]).await;
    assert_eq!(
        table,
        "IMAGE                       TAG                 IMAGE ID            SIZE\n\
         docker.io/library/busybox   latest              ccccccccccccc       2.22MB\n"
    );
    assert_eq!(d.ok(&["images", "-q"]).await, format!("{IMAGE_ID}\n"));
    assert_eq!(d.ok(&["images", "-q", "nosuch"]).await, "");

    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["images", "-o", "json"]).await).expect("json");
    assert_eq!(json["images"][0]["id"], IMAGE_ID);
    assert_eq!(json["images"][0]["repo_tags"][0], busybox);

    let yaml = d.ok(&["images", "-o", "yaml"]).await;
    assert!(yaml.contains(&format!("id: {IMAGE_ID}")), "{yaml}");

    let inspect: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspecti", busybox]).await).expect("json");
    assert_eq!(inspect["status"]["id"], IMAGE_ID);
    assert_eq!(inspect["info"]["snapshotter"], "overlayfs");

    let err = d.fails(&["inspecti", "nosuch:1"]).await;
    assert_eq!(err, "huskctl: image \"nosuch:1\" not found\n");

    let err = d.fails(&["rmi", "--prune"]).await;
    assert!(err.contains("--prune needs container support"), "{err}");

    let removed = d.ok(&["rmi", busybox]).await;
    assert_eq!(removed, format!("Deleted: {busybox}\n"));
    assert!(d.fake.images().is_empty());

    let err = d.fails(&["rmi", busybox]).await;
    assert_eq!(err, format!("huskctl: image \"{busybox}\" not found\n"));

    d.ok(&["pull", "-q", "a:1"]).await;
    let removed = d.ok(&["rmi", "-a"]).await;
    assert_eq!(removed, "Deleted: a:1\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_errors_and_credentials() {
    let d = start(true).await;
    let err = d.fails(&["pull", "nosuch:latest"]).await;
    assert_eq!(err, "huskctl: image \"nosuch:latest\" not found\n");
    let err = d.fails(&["pull", "--creds", "me:wrong", "x:1"]).await;
    assert_eq!(err, "huskctl: cannot pull x:1: bad credentials\n");
    let out = d.ok(&["pull", "-q", "--creds", "me:pw", "x:1"]).await;
    assert_eq!(out, format!("{IMAGE_ID}\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_falls_back_to_cri() {
    let d = start(false).await;
    // CRI PullImage reports no bytes: the summary says how long it took.
    let out = d.ok(&["pull", "x:1"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("Pulled x:1 (") && lines[0].ends_with(" s)"),
        "{out}"
    );
    assert_eq!(lines[1], format!("Image ID: {IMAGE_ID}"));
    // The name already meant that image: up to date.
    let out = d.ok(&["pull", "x:1"]).await;
    assert_eq!(
        out,
        format!("Image is up to date for x:1\nImage ID: {IMAGE_ID}\n")
    );
    let err = d.fails_with_input(&["import", "-"], b"tar").await;
    assert_eq!(err, "huskctl: huskd does not implement ImportImage\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unserved_runtime_service_is_unimplemented() {
    let d = start(true).await;
    let err = d.fails(&["version"]).await;
    assert_eq!(err, "huskctl: huskd does not implement Version\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagefsinfo_formats() {
    let d = start(true).await;
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["imagefsinfo"]).await).expect("json");
    assert_eq!(
        json["image_filesystems"][0]["fs_id"]["mountpoint"],
        "/var/lib/husk"
    );
    let table = d.ok(&["imagefsinfo", "-o", "table"]).await;
    assert!(
        table.contains("image               /var/lib/husk       4.5MB"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_streams_chunks() {
    let d = start(true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("image.tar");
    let size = 2 * 1024 * 1024 + 5;
    std::fs::write(&archive, vec![0u8; size]).expect("write");
    let out = d.ok(&["import", archive.to_str().expect("utf-8")]).await;
    assert_eq!(
        out,
        format!("Imported example.com/a:v1\nImported sha256:{size}-bytes-in-3\n")
    );

    let out = d.ok_with_input(&["import", "-q", "-"], &[1u8; 10]).await;
    assert_eq!(out, "example.com/a:v1\nsha256:10-bytes-in-1\n");

    let err = d.fails(&["import", "/nonexistent.tar"]).await;
    assert_eq!(
        err,
        "huskctl: cannot open /nonexistent.tar: No such file or directory (os error 2)\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_pull_reports_json() {
    let d = start(true).await;
    let out = d
        .ok(&["bench", "pull", "-n", "2", "-o", "json", "x:1"])
        .await;
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["benchmark"], "pull");
    assert_eq!(report["runs"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["runs"][1]["bytes"], 1000);
    assert_eq!(report["runs"][1]["cached_layers"], 1);
    assert!(
        report["mb_per_s"]["mean"].as_f64().is_some_and(|v| v > 0.0),
        "{out}"
    );

    let out = d.ok(&["bench", "pull", "--count", "1", "x:1"]).await;
    assert!(out.starts_with("run 1: "), "{out}");
    assert!(out.contains("1 already present: not a cold pull"), "{out}");
    assert!(out.contains("\nseconds: mean "), "{out}");
}
