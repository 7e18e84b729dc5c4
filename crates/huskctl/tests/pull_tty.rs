//! `huskctl pull` as people see it. On a terminal (a pty made by util-linux `script`, replayed
//! through a small terminal emulator) each layer is one line updated in place with bytes, speed
//! and ETA, and the pull ends with a summary; "Image is up to date" only when nothing was
//! fetched. Without a terminal: plain lines, no escape codes. A fake huskd streams the progress
//! events as a real one does (every layer `waiting` first, progress every few hundred ms).

mod common;
mod screen;

use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use husk_api::v1::husk_server::{Husk, HuskServer};
use husk_api::v1::pull_event::Event;
use husk_api::v1::{
    ImportChunk, ImportImageResponse, LayerPhase, LayerProgress, PullDone, PullEvent, PullResolved,
};
use k8s_cri::v1::{Image, ImageStatusRequest, ImageStatusResponse};
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::Routes;
use tonic::{Request, Response, Status, Streaming};

use common::Reply;

const LAYER_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const LAYER_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const MANIFEST: &str = "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
const SIZE_A: u64 = 120_000_000;
const SIZE_B: u64 = 80_000_000;
/// Columns of the pty.
const WIDTH: usize = 100;

/// The image a pull of `name` (`x:1`, `docker.io/library/x:1`) ends with: one ID per scenario.
fn image_id(name: &str) -> String {
    let short = name.rsplit('/').next().unwrap_or(name);
    let c = short.chars().next().unwrap_or('x');
    format!("sha256:{}", c.to_string().repeat(64))
}

#[derive(Clone, Default)]
struct Fake {
    /// Images huskd has, by tag.
    images: Arc<Mutex<Vec<Image>>>,
}

impl Fake {
    fn add(&self, tag: &str) {
        self.images.lock().expect("lock").push(Image {
            id: image_id(tag),
            repo_tags: vec![tag.into()],
            ..Default::default()
        });
    }
}

#[tonic::async_trait]
impl common::FakeImages for Fake {
    async fn image_status(&self, r: Request<ImageStatusRequest>) -> Reply<ImageStatusResponse> {
        let name = r.into_inner().image.map(|s| s.image).unwrap_or_default();
        let image = self
            .images
            .lock()
            .expect("lock")
            .iter()
            .find(|i| i.repo_tags.iter().any(|t| t.ends_with(&name)))
            .cloned();
        Ok(Response::new(ImageStatusResponse {
            image,
            info: Default::default(),
        }))
    }
}

fn layer(digest: &str, total: u64, done: u64, phase: LayerPhase) -> Result<PullEvent, Status> {
    Ok(PullEvent {
        event: Some(Event::Layer(LayerProgress {
            digest: digest.into(),
            total_bytes: total,
            done_bytes: done,
            phase: phase as i32,
        })),
    })
}

/// What huskd streams for a pull of `name`: `fresh…` downloads both layers, `cached…` has them
/// all, `blobs…` unpacks a layer whose blob it had, `broken…` fails half way.
fn events(name: &str) -> Vec<(u64, Result<PullEvent, Status>)> {
    use LayerPhase::*;
    let resolved = Ok(PullEvent {
        event: Some(Event::Resolved(PullResolved {
            manifest_digest: MANIFEST.into(),
            layers: [(LAYER_A, SIZE_A), (LAYER_B, SIZE_B)]
                .iter()
                .map(|(d, total)| LayerProgress {
                    digest: (*d).into(),
                    total_bytes: *total,
                    done_bytes: 0,
                    phase: Waiting as i32,
                })
                .collect(),
        })),
    });
    let mut ev = vec![(0, resolved)];
    let steps = 12;
    if name.starts_with("fresh") || name.starts_with("broken") {
        // A waiting layer may be reported again before its download starts.
        ev.push((30, layer(LAYER_A, SIZE_A, 0, Waiting)));
        for i in 0..=steps {
            ev.push((60, layer(LAYER_A, SIZE_A, SIZE_A * i / steps, Downloading)));
            if name.starts_with("broken") && i == steps / 2 {
                ev.push((50, Err(Status::unavailable("registry connection reset"))));
                return ev;
            }
            ev.push((0, layer(LAYER_B, SIZE_B, SIZE_B * i / steps, Downloading)));
        }
        for (d, total) in [(LAYER_A, SIZE_A), (LAYER_B, SIZE_B)] {
            ev.push((20, layer(d, total, total, Downloaded)));
        }
        for (d, total) in [(LAYER_A, SIZE_A), (LAYER_B, SIZE_B)] {
            ev.push((100, layer(d, total, total, Extracting)));
            ev.push((150, layer(d, total, total, Done)));
        }
    } else if name.starts_with("blobs") {
        ev.push((50, layer(LAYER_A, SIZE_A, SIZE_A, Downloaded)));
        ev.push((50, layer(LAYER_A, SIZE_A, SIZE_A, Extracting)));
        ev.push((100, layer(LAYER_A, SIZE_A, SIZE_A, Done)));
        ev.push((0, layer(LAYER_B, SIZE_B, SIZE_B, Exists)));
    } else {
        ev.push((50, layer(LAYER_A, SIZE_A, SIZE_A, Exists)));
        ev.push((0, layer(LAYER_B, SIZE_B, SIZE_B, Exists)));
    }
    let repo = format!(
        "docker.io/library/{}",
        name.split(':').next().unwrap_or(name)
    );
    ev.push((
        20,
        Ok(PullEvent {
            event: Some(Event::Done(PullDone {
                image_id: image_id(name),
                image_ref: format!("{repo}@{MANIFEST}"),
                size_bytes: SIZE_A + SIZE_B + 1500,
            })),
        }),
    ));
    ev
}

#[tonic::async_trait]
impl Husk for Fake {
    type PullImageStream = Pin<Box<dyn Stream<Item = Result<PullEvent, Status>> + Send>>;

    async fn pull_image(
        &self,
        r: Request<husk_api::v1::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let name = r.into_inner().image;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let fake = self.clone();
        tokio::spawn(async move {
            for (ms, e) in events(&name) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                if matches!(
                    &e,
                    Ok(PullEvent {
                        event: Some(Event::Done(_))
                    })
                ) {
                    fake.add(&format!("docker.io/library/{name}"));
                }
                if tx.send(e).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn import_image(
        &self,
        _: Request<Streaming<ImportChunk>>,
    ) -> Result<Response<ImportImageResponse>, Status> {
        Err(Status::unimplemented("ImportImage"))
    }
}

fn start() -> common::Daemon<Fake> {
    let fake = Fake::default();
    let routes =
        Routes::new(common::image_service(fake.clone())).add_service(HuskServer::new(fake.clone()));
    common::Daemon::start(fake, routes)
}

/// Whether util-linux `script` (Debian: bsdutils, essential) is there to make a pty.
fn have_script() -> bool {
    husk_test_support::require_program("script").is_some()
}

/// Runs huskctl on a pty `WIDTH` columns wide; returns what it wrote there (stdout and stderr
/// both) and its exit code.
async fn on_a_terminal(d: &common::Daemon<Fake>, args: &[&str]) -> (Vec<u8>, Option<i32>) {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut cmd = format!(
        "stty cols {WIDTH} rows 40; exec {} -r {}",
        quote(env!("CARGO_BIN_EXE_huskctl")),
        quote(d.sock.to_str().expect("utf-8 path"))
    );
    for a in args {
        cmd.push(' ');
        cmd.push_str(&quote(a));
    }
    let out = tokio::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .env_remove("HUSK_ENDPOINT")
        .env_remove("CONTAINER_RUNTIME_ENDPOINT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("huskctl under script hung")
        .expect("run script (util-linux)");
    (out.stdout, out.status.code())
}

/// The non-empty lines of the final screen.
fn screen(bytes: &[u8]) -> Vec<String> {
    screen::replay(bytes, WIDTH)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn summary_pattern(name: &str) -> regex::Regex {
    regex::Regex::new(&format!(
        r"^Pulled {} \(200 MB in \d+\.\d s, \d+(\.\d+)? MB/s\)$",
        regex::escape(name)
    ))
    .expect("regex")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_pull_draws_one_line_per_layer_then_a_summary() {
    if !have_script() {
        return;
    }
    let d = start();
    let (raw, code) = on_a_terminal(&d, &["pull", "fresh:1"]).await;
    let lines = screen(&raw);
    assert_eq!(code, Some(0), "{lines:#?}");
    // Bars were drawn and redrawn in place, with speed and time left while downloading.
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("\x1b["), "{text:?}");
    assert!(text.contains("MB/s") && text.contains("ETA"), "{text:?}");
    assert!(text.contains("downloading"), "{text:?}");
    // What stays on screen: each layer once, done, then the summary and the image ID.
    assert_eq!(lines.len(), 4, "{lines:#?}");
    for (line, short, size) in [
        (&lines[0], "aaaaaaaaaaaa", "120.00 MB"),
        (&lines[1], "bbbbbbbbbbbb", "80.00 MB"),
    ] {
        assert!(line.starts_with(short), "{lines:#?}");
        assert!(line.contains("done") && line.contains(size), "{lines:#?}");
    }
    assert!(
        summary_pattern("docker.io/library/fresh:1").is_match(&lines[2]),
        "{lines:#?}"
    );
    assert_eq!(lines[3], format!("Image ID: {}", image_id("fresh")));
    assert!(!lines.iter().any(|l| l.contains("waiting")), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.contains("up to date")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_pull_of_a_present_image_is_up_to_date() {
    if !have_script() {
        return;
    }
    let d = start();
    d.fake.add("docker.io/library/cached:1");
    let (raw, code) = on_a_terminal(&d, &["pull", "cached:1"]).await;
    let lines = screen(&raw);
    assert_eq!(code, Some(0), "{lines:#?}");
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("aaaaaaaaaaaa") && lines[0].contains("exists"));
    assert!(lines[1].starts_with("bbbbbbbbbbbb") && lines[1].contains("exists"));
    assert_eq!(
        lines[2],
        "Image is up to date for docker.io/library/cached:1"
    );
    assert_eq!(lines[3], format!("Image ID: {}", image_id("cached")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_pull_that_fails_leaves_its_layers_once_and_the_error() {
    if !have_script() {
        return;
    }
    let d = start();
    let (raw, code) = on_a_terminal(&d, &["pull", "broken:1"]).await;
    let lines = screen(&raw);
    assert_eq!(code, Some(1), "{lines:#?}");
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].starts_with("aaaaaaaaaaaa"), "{lines:#?}");
    assert!(lines[1].starts_with("bbbbbbbbbbbb"), "{lines:#?}");
    assert_eq!(
        lines[2],
        "huskctl: cannot pull broken:1: registry connection reset"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_progress_on_a_terminal_prints_plain_lines() {
    if !have_script() {
        return;
    }
    let d = start();
    let (raw, code) = on_a_terminal(&d, &["pull", "--no-progress", "fresh:1"]).await;
    assert_eq!(code, Some(0));
    // The pty turns each "\n" into "\r\n"; nothing else is a control sequence.
    let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
    assert!(!screen::has_terminal_control(text.as_bytes()), "{text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "aaaaaaaaaaaa: done (120MB)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piped_pull_prints_one_line_per_layer_and_the_summary() {
    let d = start();
    let out = d.ok(&["pull", "fresh:1"]).await;
    assert!(!screen::has_terminal_control(out.as_bytes()), "{out:?}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "aaaaaaaaaaaa: done (120MB)");
    assert_eq!(lines[1], "bbbbbbbbbbbb: done (80MB)");
    assert!(
        summary_pattern("docker.io/library/fresh:1").is_match(lines[2]),
        "{out}"
    );
    assert_eq!(lines[3], format!("Image ID: {}", image_id("fresh")));

    // Pulled again: the fake now has the image and every layer.
    d.fake.add("docker.io/library/cached:1");
    let out = d.ok(&["pull", "cached:1"]).await;
    assert_eq!(
        out,
        format!(
            "aaaaaaaaaaaa: already exists\nbbbbbbbbbbbb: already exists\n\
             Image is up to date for docker.io/library/cached:1\nImage ID: {}\n",
            image_id("cached")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_image_whose_layers_were_present_is_pulled_not_up_to_date() {
    let d = start();
    let out = d.ok(&["pull", "blobs:1"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert_eq!(lines[0], "aaaaaaaaaaaa: done (120MB)");
    assert_eq!(lines[1], "bbbbbbbbbbbb: already exists");
    let summary =
        regex::Regex::new(r"^Pulled docker\.io/library/blobs:1 \(nothing downloaded, \d+\.\d s\)$")
            .expect("regex");
    assert!(summary.is_match(lines[2]), "{out}");
    assert_eq!(lines[3], format!("Image ID: {}", image_id("blobs")));
    // -q: only the image ID, whatever happened.
    let out = d.ok(&["pull", "-q", "blobs:1"]).await;
    assert_eq!(out, format!("{}\n", image_id("blobs")));
}
