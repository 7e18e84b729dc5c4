//! `pull`: husk's streaming `PullImage` with per-layer progress, falling back to CRI
//! `PullImage` when huskd lacks the husk service; ends with a summary of what was fetched.
//! Also the pull loop `bench pull` times.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use husk_api::v1::pull_event::Event;
use husk_api::v1::{AuthConfig, LayerPhase, LayerProgress, PullDone, PullEvent, PullImageRequest};
use tonic::Code;

use crate::cli::{AuthArgs, PullArgs};
use crate::client::{Client, RpcError};
use crate::commands::pull_progress::{Outcome, PullView, pulled_name, summary};
use crate::commands::{Ctx, image_spec};
use crate::outln;

/// What one husk pull did.
#[derive(Debug, Clone)]
pub struct PullStats {
    /// The final event.
    pub done: PullDone,
    /// Layers in the manifest.
    pub layers: usize,
    /// Layers huskd already had.
    pub cached_layers: usize,
    /// Layer bytes downloaded by this pull (a resumed download counts what it added).
    pub fetched_bytes: u64,
    /// From sending the request to receiving `done`.
    pub elapsed: Duration,
}

/// `huskctl pull`.
pub async fn pull(ctx: &Ctx, args: PullArgs) -> anyhow::Result<()> {
    let client = ctx.connect().await?;
    let auth = auth_config(&args.auth)?;
    let request = PullImageRequest {
        image: args.image.clone(),
        auth: auth.clone(),
    };
    // What the name meant before: a pull that fetches nothing is "up to date" only if the
    // name already meant the image it ends with.
    let before = if args.quiet {
        None
    } else {
        Some(image_id(&client, &args.image).await)
    };
    let started = Instant::now();
    let mut view = PullView::new(args.no_progress, args.quiet);
    let result = husk_pull(&client, request, |event| view.event(event)).await;
    view.end(result.is_ok());
    // The ID line is what crictl prints: the CRI `PullImageResponse.image_ref`, which huskd
    // (like containerd) sets to the image ID. The husk stream's digested reference is only a
    // fallback, so both paths print the same thing.
    let (image_id, outcome) = match result {
        Ok(stats) => {
            let done = stats.done;
            let name = pulled_name(&args.image, &done.image_ref);
            let id = if done.image_id.is_empty() {
                done.image_ref
            } else {
                done.image_id
            };
            let same = before_is(&before, &id);
            let outcome = Outcome {
                name,
                fetched: Some(stats.fetched_bytes),
                elapsed: stats.elapsed,
                // An unknown "before" (ImageStatus failed) leaves the bytes to decide.
                up_to_date: stats.fetched_bytes == 0 && same != Some(false),
            };
            (id, outcome)
        }
        Err(e) if is_unimplemented(&e) => {
            let id = cri_pull(&client, &args.image, auth)
                .await
                .map_err(|e| name_image(e, &args.image))?;
            let outcome = Outcome {
                name: args.image.clone(),
                fetched: None,
                elapsed: started.elapsed(),
                up_to_date: before_is(&before, &id) == Some(true),
            };
            (id, outcome)
        }
        Err(e) => return Err(name_image(e, &args.image)),
    };
    if args.quiet {
        outln!("{image_id}");
    } else {
        outln!("{}", summary(&outcome));
        outln!("Image ID: {image_id}");
    }
    Ok(())
}

/// Whether the image the name meant before the pull is `id`: `None` when that is unknown.
fn before_is(before: &Option<anyhow::Result<Option<String>>>, id: &str) -> Option<bool> {
    match before {
        Some(Ok(had)) => Some(had.as_deref() == Some(id)),
        _ => None,
    }
}

/// The ID of the image `name` means now, `None` when there is none (CRI `ImageStatus`).
async fn image_id(client: &Client, name: &str) -> anyhow::Result<Option<String>> {
    let request = k8s_cri::v1::ImageStatusRequest {
        image: Some(image_spec(name)),
        verbose: false,
    };
    let response = client
        .image()
        .image_status(request)
        .await
        .map_err(|status| RpcError::Status {
            rpc: "ImageStatus",
            status,
        })?;
    Ok(response.into_inner().image.map(|i| i.id))
}

/// Prefixes `cannot pull <image>` unless the error already names the image.
fn name_image(e: anyhow::Error, image: &str) -> anyhow::Error {
    if format!("{e:#}").contains(image) {
        e
    } else {
        e.context(format!("cannot pull {image}"))
    }
}

fn is_unimplemented(e: &anyhow::Error) -> bool {
    e.downcast_ref::<RpcError>().and_then(RpcError::code) == Some(Code::Unimplemented)
}

/// Runs husk `PullImage` to its `done` event, handing every event to `observe`. No time limit.
pub async fn husk_pull(
    client: &Client,
    request: PullImageRequest,
    mut observe: impl FnMut(&PullEvent) -> std::io::Result<()>,
) -> anyhow::Result<PullStats> {
    const RPC: &str = "PullImage";
    let started = Instant::now();
    let status = |status| RpcError::Status { rpc: RPC, status };
    let mut stream = client
        .husk()
        .pull_image(request)
        .await
        .map_err(status)?
        .into_inner();
    let mut tally = Tally::default();
    while let Some(event) = stream.message().await.map_err(status)? {
        observe(&event)?;
        match event.event {
            Some(Event::Resolved(resolved)) => {
                tally.layers = resolved.layers.len();
                resolved.layers.iter().for_each(|l| tally.layer(l));
            }
            Some(Event::Layer(layer)) => tally.layer(&layer),
            Some(Event::Done(done)) => {
                return Ok(PullStats {
                    done,
                    layers: tally.layers,
                    cached_layers: tally.cached(),
                    fetched_bytes: tally.fetched(),
                    elapsed: started.elapsed(),
                });
            }
            None => {}
        }
    }
    Err(RpcError::Protocol {
        rpc: RPC,
        message: "the stream ended before the pull was done".into(),
    }
    .into())
}

/// What the events say each layer went through.
#[derive(Debug, Default)]
struct Tally {
    layers: usize,
    by_digest: HashMap<String, LayerTally>,
}

#[derive(Debug, Default)]
struct LayerTally {
    exists: bool,
    /// Bytes present when the download started (a resumed one starts past 0).
    download_from: Option<u64>,
    /// The furthest a download got.
    download_to: u64,
}

impl Tally {
    fn layer(&mut self, l: &LayerProgress) {
        let t = self.by_digest.entry(l.digest.clone()).or_default();
        match LayerPhase::try_from(l.phase) {
            Ok(LayerPhase::Exists) => t.exists = true,
            Ok(LayerPhase::Downloading) => {
                t.download_from.get_or_insert(l.done_bytes);
                t.download_to = t.download_to.max(l.done_bytes);
            }
            // Past a download: all of it is there (its last progress events may have been
            // dropped on the way).
            Ok(LayerPhase::Downloaded | LayerPhase::Extracting | LayerPhase::Done)
                if t.download_from.is_some() =>
            {
                t.download_to = t.download_to.max(l.done_bytes.max(l.total_bytes));
            }
            _ => {}
        }
    }

    fn cached(&self) -> usize {
        self.by_digest.values().filter(|t| t.exists).count()
    }

    fn fetched(&self) -> u64 {
        self.by_digest
            .values()
            .filter_map(|t| Some(t.download_to.saturating_sub(t.download_from?)))
            .sum()
    }
}

/// CRI `PullImage` (no progress); returns the image reference huskd reports.
async fn cri_pull(
    client: &Client,
    image: &str,
    auth: Option<AuthConfig>,
) -> anyhow::Result<String> {
    let request = k8s_cri::v1::PullImageRequest {
        image: Some(image_spec(image)),
        auth: auth.map(|a| k8s_cri::v1::AuthConfig {
            username: a.username,
            password: a.password,
            auth: a.auth,
            server_address: a.server_address,
            identity_token: a.identity_token,
            registry_token: a.registry_token,
        }),
        sandbox_config: None,
    };
    let response = client
        .image()
        .pull_image(request)
        .await
        .map_err(|status| RpcError::Status {
            rpc: "PullImage",
            status,
        })?;
    Ok(response.into_inner().image_ref)
}

/// The registry credentials from the command line, `None` when none were given.
pub fn auth_config(args: &AuthArgs) -> anyhow::Result<Option<AuthConfig>> {
    let mut auth = AuthConfig::default();
    if let Some(creds) = &args.creds {
        let Some((user, pass)) = creds.split_once(':') else {
            bail!("--creds needs USER:PASS (huskctl does not prompt for the password)");
        };
        if user.is_empty() {
            bail!("--creds needs a user name before ':'");
        }
        auth.username = user.to_string();
        auth.password = pass.to_string();
    }
    auth.auth = args.auth.clone().unwrap_or_default();
    auth.identity_token = args.identity_token.clone().unwrap_or_default();
    auth.registry_token = args.registry_token.clone().unwrap_or_default();
    Ok((auth != AuthConfig::default()).then_some(auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_image() {
        let e = name_image(anyhow::anyhow!("bad credentials"), "x:1");
        assert_eq!(format!("{e:#}"), "cannot pull x:1: bad credentials");
        let e = name_image(anyhow::anyhow!("image \"x:1\" not found"), "x:1");
        assert_eq!(format!("{e:#}"), "image \"x:1\" not found");
    }

    fn progress(digest: &str, phase: LayerPhase, done: u64) -> LayerProgress {
        LayerProgress {
            digest: digest.into(),
            total_bytes: 1000,
            done_bytes: done,
            phase: phase as i32,
        }
    }

    #[test]
    fn the_tally_counts_bytes_downloaded_by_this_pull() {
        use LayerPhase::*;
        let mut t = Tally::default();
        for (d, phase, done) in [
            ("a", Waiting, 0),
            ("b", Waiting, 0),
            ("c", Waiting, 0),
            ("d", Waiting, 0),
            // a: a fresh download whose last progress events were dropped.
            ("a", Downloading, 0),
            ("a", Downloading, 600),
            ("a", Extracting, 1000),
            ("a", Done, 1000),
            // b: resumed from 400.
            ("b", Downloading, 400),
            ("b", Downloading, 1000),
            ("b", Downloaded, 1000),
            // c: its blob was there, only unpacked; d: already a snapshot.
            ("c", Downloaded, 1000),
            ("c", Done, 1000),
            ("d", Exists, 1000),
        ] {
            t.layer(&progress(d, phase, done));
        }
        assert_eq!(t.fetched(), 1000 + 600);
        assert_eq!(t.cached(), 1);
        let mut none = Tally::default();
        none.layer(&progress("d", Exists, 1000));
        assert_eq!(none.fetched(), 0);
    }

    #[test]
    fn credentials() {
        let creds = |c: &str| AuthArgs {
            creds: Some(c.into()),
            ..Default::default()
        };
        let a = auth_config(&creds("me:p:w")).ok().flatten();
        assert_eq!(
            a.as_ref()
                .map(|a| (a.username.as_str(), a.password.as_str())),
            Some(("me", "p:w"))
        );
        assert!(auth_config(&creds("me")).is_err());
        assert!(auth_config(&creds(":pw")).is_err());
        assert_eq!(auth_config(&AuthArgs::default()).ok(), Some(None));
        let token = AuthArgs {
            registry_token: Some("t".into()),
            ..Default::default()
        };
        assert_eq!(
            auth_config(&token).ok().flatten().map(|a| a.registry_token),
            Some("t".into())
        );
    }
}
