//! `images`, `inspecti` and `imagefsinfo`: the CRI image service's read-only calls.

use anyhow::bail;
use k8s_cri::v1::{
    FilesystemUsage, Image, ImageFilter, ImageFsInfoRequest, ImageFsInfoResponse,
    ImageStatusRequest, ListImagesRequest, ListImagesResponse,
};

use crate::cli::{DataFormat, Format, ImageFsInfoArgs, ImagesArgs, InspectiArgs};
use crate::commands::{Ctx, image_spec};
use crate::output::{
    NONE, Table, emit, format_nanos, human_size, print_data, split_repo_digest, split_repo_tag,
    status_with_info, truncate_id,
};

/// How the `images` table is drawn.
#[derive(Debug, Clone, Copy, Default)]
pub struct TableOpts {
    pub digests: bool,
    pub no_trunc: bool,
}

/// `huskctl images`.
pub async fn list(ctx: &Ctx, args: ImagesArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let request = ListImagesRequest {
        filter: args.image.as_deref().map(|i| ImageFilter {
            image: Some(image_spec(i)),
        }),
    };
    let mut images = client
        .unary("ListImages", client.image().list_images(request))
        .await?
        .images;
    images.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));

    if args.quiet {
        let ids: String = images.iter().map(|i| format!("{}\n", i.id)).collect();
        emit(&ids)?;
        return Ok(());
    }
    match args.output {
        Format::Json => print_data(DataFormat::Json, &ListImagesResponse { images }),
        Format::Yaml => print_data(DataFormat::Yaml, &ListImagesResponse { images }),
        Format::Table if args.verbose => Ok(emit(&verbose_text(&images))?),
        Format::Table => {
            let opts = TableOpts {
                digests: args.digests,
                no_trunc: args.no_trunc,
            };
            Ok(emit(&images_table(&images, opts))?)
        }
    }
}

fn sort_key(image: &Image) -> &str {
    image
        .repo_tags
        .first()
        .or(image.repo_digests.first())
        .unwrap_or(&image.id)
}

/// The `IMAGE  TAG  [DIGEST]  IMAGE ID  SIZE` table: one row per tag, `<none>` when untagged.
pub fn images_table(images: &[Image], opts: TableOpts) -> String {
    let mut header = vec!["IMAGE", "TAG"];
    if opts.digests {
        header.push("DIGEST");
    }
    header.extend(["IMAGE ID", "SIZE"]);
    let mut table = Table::new(&header);
    for image in images {
        let (digest_repo, digest) =
            split_repo_digest(image.repo_digests.first().map(String::as_str));
        let (id, digest) = if opts.no_trunc {
            (image.id.clone(), digest)
        } else {
            let short = if digest == NONE {
                digest
            } else {
                truncate_id(&digest)
            };
            (truncate_id(&image.id), short)
        };
        let size = human_size(image.size);
        let pairs: Vec<(String, String)> = if image.repo_tags.is_empty() {
            vec![(digest_repo, NONE.to_string())]
        } else {
            image.repo_tags.iter().map(|t| split_repo_tag(t)).collect()
        };
        for (repo, tag) in pairs {
            let mut row = vec![repo, tag];
            if opts.digests {
                row.push(digest.clone());
            }
            row.extend([id.clone(), size.clone()]);
            table.push(row);
        }
    }
    table.render()
}

/// `images -v`: every field, one per line, a blank line between images (as crictl).
pub fn verbose_text(images: &[Image]) -> String {
    let mut out = String::new();
    for image in images {
        out.push_str(&format!("ID: {}\n", image.id));
        for tag in &image.repo_tags {
            out.push_str(&format!("RepoTags: {tag}\n"));
        }
        for digest in &image.repo_digests {
            out.push_str(&format!("RepoDigests: {digest}\n"));
        }
        if image.size != 0 {
            out.push_str(&format!("Size: {}\n", image.size));
        }
        if let Some(uid) = &image.uid {
            out.push_str(&format!("Uid: {}\n", uid.value));
        }
        if !image.username.is_empty() {
            out.push_str(&format!("Username: {}\n", image.username));
        }
        if image.pinned {
            out.push_str("Pinned: true\n");
        }
        out.push('\n');
    }
    out
}

/// `huskctl inspecti`: verbose `ImageStatus` of each image as `{"status": …, "info": …}`.
pub async fn inspect(ctx: &Ctx, args: InspectiArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let mut missing = Vec::new();
    for name in &args.images {
        let request = ImageStatusRequest {
            image: Some(image_spec(name)),
            verbose: true,
        };
        let response = client
            .unary("ImageStatus", client.image().image_status(request))
            .await?;
        match &response.image {
            Some(image) => print_data(
                args.output,
                &status_with_info(image, vec![], &response.info)?,
            )?,
            None => missing.push(format!("{name:?}")),
        }
    }
    match missing.as_slice() {
        [] => Ok(()),
        [one] => bail!("image {one} not found"),
        many => bail!("images {} not found", many.join(", ")),
    }
}

/// `huskctl imagefsinfo`.
pub async fn fs_info(ctx: &Ctx, args: ImageFsInfoArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let response = client
        .unary(
            "ImageFsInfo",
            client.image().image_fs_info(ImageFsInfoRequest {}),
        )
        .await?;
    match args.output {
        Format::Json => print_data(DataFormat::Json, &response),
        Format::Yaml => print_data(DataFormat::Yaml, &response),
        Format::Table => Ok(emit(&fs_table(&response))?),
    }
}

/// `TYPE  MOUNTPOINT  USED  INODES  TIMESTAMP`, image filesystems first.
pub fn fs_table(response: &ImageFsInfoResponse) -> String {
    let mut table = Table::new(&["TYPE", "MOUNTPOINT", "USED", "INODES", "TIMESTAMP"]);
    let tagged = response
        .image_filesystems
        .iter()
        .map(|f| ("image", f))
        .chain(
            response
                .container_filesystems
                .iter()
                .map(|f| ("container", f)),
        );
    for (kind, fs) in tagged {
        table.push(fs_row(kind, fs));
    }
    table.render()
}

fn fs_row(kind: &str, fs: &FilesystemUsage) -> Vec<String> {
    let mountpoint = fs
        .fs_id
        .as_ref()
        .map_or(NONE.to_string(), |id| id.mountpoint.clone());
    let used = fs
        .used_bytes
        .as_ref()
        .map_or(NONE.to_string(), |u| human_size(u.value));
    let inodes = fs
        .inodes_used
        .as_ref()
        .map_or(NONE.to_string(), |u| u.value.to_string());
    vec![
        kind.to_string(),
        mountpoint,
        used,
        inodes,
        format_nanos(fs.timestamp),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_cri::v1::{FilesystemIdentifier, UInt64Value};

    const ID: &str = "sha256:a416a98b71e224a31ee99cff8e16063554498227d2b696152a9c3e0aa65e5824";
    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn images() -> Vec<Image> {
        vec![
            Image {
                id: ID.into(),
                repo_tags: vec![
                    "docker.io/library/busybox:latest".into(),
                    "localhost:5000/busybox:v1".into(),
                ],
                repo_digests: vec![format!("docker.io/library/busybox@{DIGEST}")],
                size: 2_219_949,
                ..Default::default()
            },
            Image {
                id: "sha256:ffffeeeeddddccccbbbbaaaa".into(),
                repo_digests: vec![format!("quay.io/x/y@{DIGEST}")],
                size: 999,
                ..Default::default()
            },
        ]
    }

    #[test]
    fn table_one_row_per_tag() {
        let golden = "\
IMAGE                       TAG                 IMAGE ID            SIZE
docker.io/library/busybox   latest              a416a98b71e22       2.22MB
localhost:5000/busybox      v1                  a416a98b71e22       2.22MB
quay.io/x/y                 <none>              ffffeeeeddddc       999B
";
        assert_eq!(images_table(&images(), TableOpts::default()), golden);
    }

    #[test]
    fn table_with_digests() {
        let golden = "\
IMAGE                       TAG                 DIGEST              IMAGE ID            SIZE
docker.io/library/busybox   latest              0123456789abc       a416a98b71e22       2.22MB
localhost:5000/busybox      v1                  0123456789abc       a416a98b71e22       2.22MB
quay.io/x/y                 <none>              0123456789abc       ffffeeeeddddc       999B
";
        let opts = TableOpts {
            digests: true,
            no_trunc: false,
        };
        assert_eq!(images_table(&images(), opts), golden);
    }

    #[test]
    fn no_trunc_keeps_full_ids() {
        let out = images_table(
            &images()[..1],
            TableOpts {
                digests: true,
                no_trunc: true,
            },
        );
        assert!(out.contains(ID), "{out}");
        assert!(out.contains(DIGEST), "{out}");
    }

    #[test]
    fn untagged_and_undigested() {
        let image = Image {
            id: "sha256:abc".into(),
            size: 1000,
            ..Default::default()
        };
        let out = images_table(&[image], TableOpts::default());
        assert_eq!(
            out.lines().nth(1),
            Some("<none>              <none>              abc                 1kB")
        );
    }

    #[test]
    fn verbose_lists_fields() {
        let out = verbose_text(&images()[..1]);
        assert_eq!(
            out,
            format!(
                "ID: {ID}\nRepoTags: docker.io/library/busybox:latest\n\
                 RepoTags: localhost:5000/busybox:v1\n\
                 RepoDigests: docker.io/library/busybox@{DIGEST}\nSize: 2219949\n\n"
            )
        );
    }

    #[test]
    fn json_shape() {
        let doc = serde_json::to_value(ListImagesResponse { images: images() }).ok();
        let first = doc.as_ref().and_then(|d| d.pointer("/images/0"));
        assert_eq!(
            first.and_then(|i| i.get("id")),
            Some(&serde_json::json!(ID))
        );
        assert_eq!(
            first.and_then(|i| i.get("size")),
            Some(&serde_json::json!(2_219_949))
        );
        assert_eq!(
            first.and_then(|i| i.pointer("/repo_tags/1")),
            Some(&serde_json::json!("localhost:5000/busybox:v1"))
        );
    }

    #[test]
    fn fs_table_rows() {
        let usage = FilesystemUsage {
            timestamp: 1_700_000_000_000_000_000,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: "/var/lib/husk/images".into(),
            }),
            used_bytes: Some(UInt64Value { value: 4_500_000 }),
            inodes_used: Some(UInt64Value { value: 42 }),
        };
        let response = ImageFsInfoResponse {
            image_filesystems: vec![usage],
            container_filesystems: vec![],
        };
        let golden = "\
TYPE                MOUNTPOINT             USED                INODES              TIMESTAMP
image               /var/lib/husk/images   4.5MB               42                  2023-11-14T22:13:20Z
";
        assert_eq!(fs_table(&response), golden);
    }
}
