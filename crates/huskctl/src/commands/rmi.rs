//! `rmi`: CRI `RemoveImage` of named images, of all images, or of those no container uses.

use std::collections::HashSet;

use anyhow::bail;
use k8s_cri::v1::{
    Image, ImageStatusRequest, ListContainersRequest, ListImagesRequest, RemoveImageRequest,
};
use tonic::Code;

use crate::cli::RmiArgs;
use crate::client::Client;
use crate::commands::{Ctx, image_spec};
use crate::outln;

/// `huskctl rmi`.
pub async fn rmi(ctx: &Ctx, args: RmiArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let mut errors = Vec::new();
    if args.all || args.prune {
        let in_use = if args.prune {
            images_in_use(&client).await?
        } else {
            HashSet::new()
        };
        let images = client
            .unary(
                "ListImages",
                client
                    .image()
                    .list_images(ListImagesRequest { filter: None }),
            )
            .await?
            .images;
        for image in images.iter().filter(|i| !in_use.contains(&i.id)) {
            remove(&client, &image.id, image, &mut errors).await?;
        }
    } else {
        for name in &args.images {
            let request = ImageStatusRequest {
                image: Some(image_spec(name)),
                verbose: false,
            };
            match client
                .unary("ImageStatus", client.image().image_status(request))
                .await
            {
                Ok(response) => match response.image {
                    Some(image) => remove(&client, name, &image, &mut errors).await?,
                    None => errors.push(format!("image {name:?} not found")),
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("; "));
    }
    Ok(())
}

/// Removes `image` by `reference`, printing `Deleted: <name>` for each name that went away.
/// Removing one tag of a multi-tag image only untags it, so the image is looked up again by ID.
async fn remove(
    client: &Client,
    reference: &str,
    image: &Image,
    errors: &mut Vec<String>,
) -> anyhow::Result<()> {
    let request = RemoveImageRequest {
        image: Some(image_spec(reference)),
    };
    if let Err(e) = client
        .unary("RemoveImage", client.image().remove_image(request))
        .await
    {
        errors.push(e.to_string());
        return Ok(());
    }
    let after = if reference == image.id {
        None
    } else {
        let request = ImageStatusRequest {
            image: Some(image_spec(&image.id)),
            verbose: false,
        };
        client
            .unary("ImageStatus", client.image().image_status(request))
            .await?
            .image
    };
    for name in removed_names(image, after.as_ref()) {
        outln!("Deleted: {name}");
    }
    Ok(())
}

/// The names of `before` that `after` (the same image after a removal, if it still exists)
/// no longer has: every name when the image is gone.
pub fn removed_names<'a>(before: &'a Image, after: Option<&Image>) -> Vec<&'a str> {
    let Some(after) = after else {
        return deleted_names(before);
    };
    let tags: Vec<&str> = before
        .repo_tags
        .iter()
        .filter(|t| !after.repo_tags.contains(t))
        .map(String::as_str)
        .collect();
    if !tags.is_empty() {
        return tags;
    }
    before
        .repo_digests
        .iter()
        .filter(|d| !after.repo_digests.contains(d))
        .map(String::as_str)
        .collect()
}

/// The names printed for a removed image: its tags, else its digests, else its ID.
pub fn deleted_names(image: &Image) -> Vec<&str> {
    if !image.repo_tags.is_empty() {
        image.repo_tags.iter().map(String::as_str).collect()
    } else if !image.repo_digests.is_empty() {
        image.repo_digests.iter().map(String::as_str).collect()
    } else {
        vec![image.id.as_str()]
    }
}

/// IDs of the images used by any container (running or not).
async fn images_in_use(client: &Client) -> anyhow::Result<HashSet<String>> {
    let request = ListContainersRequest { filter: None };
    let containers = match client
        .unary("ListContainers", client.runtime().list_containers(request))
        .await
    {
        Ok(response) => response.containers,
        Err(e) if e.code() == Some(Code::Unimplemented) => {
            bail!(
                "--prune needs container support, and this huskd does not implement ListContainers yet"
            )
        }
        Err(e) => return Err(e.into()),
    };
    let mut ids = HashSet::new();
    for container in containers {
        if !container.image_id.is_empty() {
            ids.insert(container.image_id);
            continue;
        }
        // Older runtimes leave image_id empty: resolve what the container names.
        let name = container
            .image
            .map(|s| s.image)
            .filter(|s| !s.is_empty())
            .unwrap_or(container.image_ref);
        if name.is_empty() {
            continue;
        }
        let request = ImageStatusRequest {
            image: Some(image_spec(&name)),
            verbose: false,
        };
        let status = client
            .unary("ImageStatus", client.image().image_status(request))
            .await?;
        if let Some(image) = status.image {
            ids.insert(image.id);
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_deleted_images() {
        let tagged = Image {
            id: "sha256:1".into(),
            repo_tags: vec!["a:1".into(), "a:2".into()],
            repo_digests: vec!["a@sha256:d".into()],
            ..Default::default()
        };
        assert_eq!(deleted_names(&tagged), ["a:1", "a:2"]);
        let digested = Image {
            repo_tags: vec![],
            ..tagged.clone()
        };
        assert_eq!(deleted_names(&digested), ["a@sha256:d"]);
        let bare = Image {
            id: "sha256:1".into(),
            ..Default::default()
        };
        assert_eq!(deleted_names(&bare), ["sha256:1"]);
    }

    #[test]
    fn untagging_names_only_the_removed_tag() {
        let before = Image {
            id: "sha256:1".into(),
            repo_tags: vec!["a:1".into(), "a:2".into()],
            repo_digests: vec!["a@sha256:d".into()],
            ..Default::default()
        };
        let after = Image {
            repo_tags: vec!["a:1".into()],
            ..before.clone()
        };
        assert_eq!(removed_names(&before, Some(&after)), ["a:2"]);
        assert_eq!(removed_names(&before, None), ["a:1", "a:2"]);
        assert!(removed_names(&before, Some(&before)).is_empty());
    }
}
