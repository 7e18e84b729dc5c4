//! husk's own `husk.v1.Husk` service: pulls with progress, archive import.

use std::pin::Pin;

use futures::Stream;
use husk_api::v1 as api;
use husk_image::{LayerPhase, LayerProgress, PullEvent};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::Services;
use crate::convert;
use crate::status::ImageErr;

pub struct Husk {
    pub(crate) s: Services,
}

fn phase(p: LayerPhase) -> api::LayerPhase {
    match p {
        LayerPhase::Waiting => api::LayerPhase::Waiting,
        LayerPhase::Downloading => api::LayerPhase::Downloading,
        LayerPhase::Downloaded => api::LayerPhase::Downloaded,
        LayerPhase::Extracting => api::LayerPhase::Extracting,
        LayerPhase::Done => api::LayerPhase::Done,
        LayerPhase::Exists => api::LayerPhase::Exists,
    }
}

fn layer(l: &LayerProgress) -> api::LayerProgress {
    api::LayerProgress {
        digest: l.digest.to_string(),
        total_bytes: l.total,
        done_bytes: l.done,
        phase: phase(l.phase) as i32,
    }
}

fn event(ev: PullEvent) -> api::PullEvent {
    let e = match ev {
        PullEvent::Resolved {
            manifest_digest,
            layers,
        } => api::pull_event::Event::Resolved(api::PullResolved {
            manifest_digest: manifest_digest.to_string(),
            layers: layers.iter().map(layer).collect(),
        }),
        PullEvent::Layer(l) => api::pull_event::Event::Layer(layer(&l)),
    };
    api::PullEvent { event: Some(e) }
}

type PullStream = Pin<Box<dyn Stream<Item = Result<api::PullEvent, Status>> + Send>>;

#[tonic::async_trait]
impl api::husk_server::Husk for Husk {
    type PullImageStream = PullStream;

    async fn pull_image(
        &self,
        request: Request<api::PullImageRequest>,
    ) -> Result<Response<Self::PullImageStream>, Status> {
        let req = request.into_inner();
        let image = req.image.trim().to_string();
        if image.is_empty() {
            return Err(Status::invalid_argument("image is required"));
        }
        let creds = convert::husk_credentials(req.auth.as_ref())?;
        let (out_tx, out_rx) = tokio::sync::mpsc::channel::<Result<api::PullEvent, Status>>(64);
        let (prog_tx, mut prog_rx) = tokio::sync::mpsc::channel::<PullEvent>(256);
        let images = self.s.images.clone();
        let forward_tx = out_tx.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = prog_rx.recv().await {
                // A client that stopped reading only loses progress, never the pull.
                let _ = forward_tx.try_send(Ok(event(ev)));
            }
        });
        tokio::spawn(async move {
            let res = images.pull(&image, creds, Some(prog_tx)).await;
            let _ = forward.await;
            let last = match res {
                Ok(r) => Ok(api::PullEvent {
                    event: Some(api::pull_event::Event::Done(api::PullDone {
                        image_id: r.image.id.to_string(),
                        image_ref: r.image_ref,
                        size_bytes: r.image.size,
                    })),
                }),
                Err(e) => Err(Status::from(ImageErr(e))),
            };
            let _ = out_tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn import_image(
        &self,
        request: Request<Streaming<api::ImportChunk>>,
    ) -> Result<Response<api::ImportImageResponse>, Status> {
        let mut stream = request.into_inner();
        let dir = self.s.images.tmp_dir().to_path_buf();
        let path = dir.join(format!("import-{}.tar", uuid_like()));
        let result = async {
            let mut f = tokio::fs::File::create(&path)
                .await
                .map_err(|e| Status::internal(format!("creating {}: {e}", path.display())))?;
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                total += chunk.data.len() as u64;
                f.write_all(&chunk.data)
                    .await
                    .map_err(|e| Status::internal(format!("writing {}: {e}", path.display())))?;
            }
            f.flush()
                .await
                .map_err(|e| Status::internal(e.to_string()))?;
            if total == 0 {
                return Err(Status::invalid_argument("empty archive"));
            }
            let recs = self
                .s
                .images
                .import_archive(&path)
                .await
                .map_err(ImageErr)?;
            Ok(api::ImportImageResponse {
                images: recs
                    .iter()
                    .map(|(r, tags)| api::ImportedImage {
                        id: r.id.to_string(),
                        repo_tags: tags.clone(),
                        repo_digests: r.repo_digests.clone(),
                    })
                    .collect(),
            })
        }
        .await;
        let _ = tokio::fs::remove_file(&path).await;
        result.map(Response::new)
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{n}", std::process::id())
}
