//! `import`: streams an image archive to husk `ImportImage` in 1 MiB chunks with a byte
//! progress bar, then names the images huskd imported.

use std::io::IsTerminal as _;

use anyhow::{Context as _, anyhow};
use husk_api::v1::{ImportChunk, ImportedImage};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::mpsc;

use crate::cli::ImportArgs;
use crate::client::RpcError;
use crate::commands::Ctx;
use crate::output::emit;

/// Size of one `ImportChunk`.
pub const CHUNK: usize = 1024 * 1024;

/// `huskctl import FILE`.
pub async fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<()> {
    let (source, len): (Box<dyn AsyncRead + Send + Unpin>, Option<u64>) = if args.file == "-" {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(&args.file)
            .await
            .with_context(|| format!("cannot open {}", args.file))?;
        let len = file.metadata().await.ok().map(|m| m.len());
        (Box::new(file), len)
    };
    let client = ctx.connect().await?;
    let bar = progress_bar(len, args.quiet);

    // A reader task feeds the request stream; its error (if any) explains a failed import best.
    let (tx, rx) = mpsc::channel::<ImportChunk>(4);
    let reader = tokio::spawn(send_chunks(source, tx, bar.clone()));
    let chunks =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let result = client.husk().import_image(chunks).await;
    let read = reader
        .await
        .map_err(|e| anyhow!("reading {}: {e}", args.file))?;
    bar.finish_and_clear();
    read.with_context(|| format!("cannot read {}", args.file))?;
    let images = result
        .map_err(|status| RpcError::Status {
            rpc: "ImportImage",
            status,
        })?
        .into_inner()
        .images;
    emit(&imported_text(&images, args.quiet))?;
    Ok(())
}

/// Reads `source` in full chunks and sends them until EOF or until huskd stops listening.
async fn send_chunks(
    mut source: Box<dyn AsyncRead + Send + Unpin>,
    tx: mpsc::Sender<ImportChunk>,
    bar: ProgressBar,
) -> std::io::Result<u64> {
    let mut sent = 0;
    loop {
        let mut data = Vec::with_capacity(CHUNK);
        (&mut source)
            .take(CHUNK as u64)
            .read_to_end(&mut data)
            .await?;
        if data.is_empty() {
            return Ok(sent);
        }
        let n = data.len() as u64;
        if tx.send(ImportChunk { data }).await.is_err() {
            // huskd ended the call early; its status says why.
            return Ok(sent);
        }
        sent += n;
        bar.inc(n);
    }
}

fn progress_bar(len: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet || !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            "importing [{bar:40.cyan/blue}] {bytes:>10} / {total_bytes:<10} {bytes_per_sec}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{spinner} importing {bytes} {bytes_per_sec}",
        ),
    };
    bar.set_draw_target(ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `Imported <name>` for each tag of each image (its ID when untagged); bare names with `-q`.
pub fn imported_text(images: &[ImportedImage], quiet: bool) -> String {
    let mut out = String::new();
    for image in images {
        let names: Vec<&str> = if image.repo_tags.is_empty() {
            vec![image.id.as_str()]
        } else {
            image.repo_tags.iter().map(String::as_str).collect()
        };
        for name in names {
            if !quiet {
                out.push_str("Imported ");
            }
            out.push_str(name);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_names() {
        let images = vec![
            ImportedImage {
                id: "sha256:1".into(),
                repo_tags: vec!["a:1".into(), "b:2".into()],
                repo_digests: vec![],
            },
            ImportedImage {
                id: "sha256:2".into(),
                repo_tags: vec![],
                repo_digests: vec![],
            },
        ];
        assert_eq!(
            imported_text(&images, false),
            "Imported a:1\nImported b:2\nImported sha256:2\n"
        );
        assert_eq!(imported_text(&images, true), "a:1\nb:2\nsha256:2\n");
    }

    #[tokio::test]
    async fn chunks_are_full_mebibytes() {
        let data = vec![7u8; CHUNK * 2 + 10];
        let (tx, mut rx) = mpsc::channel(8);
        let sent = send_chunks(
            Box::new(std::io::Cursor::new(data)),
            tx,
            ProgressBar::hidden(),
        )
        .await
        .ok();
        assert_eq!(sent, Some((CHUNK * 2 + 10) as u64));
        let mut sizes = Vec::new();
        while let Some(c) = rx.recv().await {
            sizes.push(c.data.len());
        }
        assert_eq!(sizes, [CHUNK, CHUNK, 10]);
    }
}
