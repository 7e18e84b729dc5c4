//! CRI `ImageService` handlers: validate, call the image service, convert.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService as CriImageService;
use tonic::{Request, Response, Status};

use crate::Services;
use crate::convert;
use crate::status::ImageErr;

pub struct Images {
    pub(crate) s: Services,
}

fn image_arg(spec: Option<&cri::ImageSpec>) -> Result<String, Status> {
    let name = spec.map(|s| s.image.trim()).unwrap_or_default();
    if name.is_empty() {
        return Err(Status::invalid_argument(
            "image spec is required: image must name an image",
        ));
    }
    Ok(name.to_string())
}

/// Whether `rec` matches a ListImages filter: the image a status query would find, or, for a
/// filter without tag or digest, any tag or digest of that repository.
fn matches_filter(
    svc: &husk_image::ImageService,
    filter: &str,
    rec: &husk_image::ImageRecord,
) -> bool {
    if let Ok(Some(found)) = svc.status(filter)
        && found.id == rec.id
    {
        return true;
    }
    let last = filter.rsplit('/').next().unwrap_or(filter);
    if last.contains(':') || last.contains('@') {
        return false;
    }
    let Ok(r) = husk_image::reference::Reference::parse(filter) else {
        return false;
    };
    let repo = r.repository();
    rec.repo_tags
        .iter()
        .chain(rec.repo_digests.iter())
        .any(|t| {
            t.strip_prefix(&repo)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@'))
        })
}

#[tonic::async_trait]
impl CriImageService for Images {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let filter = request
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .unwrap_or_default();
        let svc = &self.s.images;
        let images = svc
            .list()
            .iter()
            .filter(|r| filter.is_empty() || matches_filter(svc, &filter, r))
            .map(convert::image)
            .collect();
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = request.into_inner();
        let name = image_arg(req.image.as_ref())?;
        let Some(rec) = self.s.images.status(&name).map_err(ImageErr)? else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let mut info = HashMap::new();
        if req.verbose {
            let config = self.s.images.config_json(&rec).map_err(ImageErr)?;
            let v = serde_json::json!({
                "id": rec.id.to_string(),
                "manifestDigest": rec.manifest.to_string(),
                "chainID": rec.layers.last().map(|l| l.chain_id.to_string()),
                "layers": rec.layers.iter().map(|l| serde_json::json!({
                    "digest": l.digest.to_string(),
                    "size": l.size,
                    "mediaType": l.media_type,
                    "diffID": l.diff_id.to_string(),
                })).collect::<Vec<_>>(),
                "imageSpec": config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(Response::new(cri::ImageStatusResponse {
            image: Some(convert::image(&rec)),
            info,
        }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = request.into_inner();
        let name = image_arg(req.image.as_ref())?;
        let creds = convert::credentials(req.auth.as_ref())?;
        let res = self
            .s
            .images
            .pull(&name, creds, None)
            .await
            .map_err(ImageErr)?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: res.image.id.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = image_arg(request.get_ref().image.as_ref())?;
        self.s.images.remove(&name).await.map_err(ImageErr)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let svc = self.s.images.clone();
        let usage = tokio::task::spawn_blocking(move || svc.fs_usage())
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(ImageErr)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: now,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: usage.mountpoint.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value {
                    value: usage.used_bytes,
                }),
                inodes_used: Some(cri::UInt64Value {
                    value: usage.inodes_used,
                }),
            }],
            container_filesystems: vec![],
        }))
    }
}
