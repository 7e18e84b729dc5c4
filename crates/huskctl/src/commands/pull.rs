//! `pull`: husk's streaming `PullImage` with per-layer progress, falling back to CRI
//! `PullImage` when huskd lacks the husk service. Also the pull loop `bench pull` times.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::bail;
use husk_api::v1::pull_event::Event;
use husk_api::v1::{AuthConfig, LayerPhase, PullDone, PullEvent, PullImageRequest};
use tonic::Code;

use crate::cli::{AuthArgs, PullArgs};
use crate::client::{Client, RpcError};
use crate::commands::pull_progress::PullView;
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
    let mut view = PullView::new(args.no_progress, args.quiet);
    let result = husk_pull(&client, request, |event| view.event(event)).await;
    view.end(result.is_ok());
    // What crictl prints: the CRI `PullImageResponse.image_ref`, which huskd (like containerd)
    // sets to the image ID. The husk stream's digested reference is only a fallback, so both
    // paths print the same thing.
    let image_ref = match result {
        Ok(stats) => {
            let done = stats.done;
            if done.image_id.is_empty() {
                done.image_ref
            } else {
                done.image_id
            }
        }
        Err(e) if is_unimplemented(&e) => cri_pull(&client, &args.image, auth)
            .await
            .map_err(|e| name_image(e, &args.image))?,
        Err(e) => return Err(name_image(e, &args.image)),
    };
    if args.quiet {
        outln!("{image_ref}");
    } else {
        outln!("Image is up to date for {image_ref}");
    }
    Ok(())
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
    let mut layers = 0;
    let mut cached = HashSet::new();
    while let Some(event) = stream.message().await.map_err(status)? {
        observe(&event)?;
        match event.event {
            Some(Event::Resolved(resolved)) => {
                layers = resolved.layers.len();
                for layer in resolved.layers {
                    if layer.phase == LayerPhase::Exists as i32 {
                        cached.insert(layer.digest);
                    }
                }
            }
            Some(Event::Layer(layer)) if layer.phase == LayerPhase::Exists as i32 => {
                cached.insert(layer.digest);
            }
            Some(Event::Done(done)) => {
                return Ok(PullStats {
                    done,
                    layers,
                    cached_layers: cached.len(),
                    elapsed: started.elapsed(),
                });
            }
            _ => {}
        }
    }
    Err(RpcError::Protocol {
        rpc: RPC,
        message: "the stream ended before the pull was done".into(),
    }
    .into())
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
