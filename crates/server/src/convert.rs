//! Conversions between CRI protobuf types and husk's domain types.

use husk_image::{Credentials, ImageRecord};
use k8s_cri::v1 as cri;

use crate::status::ImageErr;

/// A CRI `Image` from an image record.
pub fn image(rec: &ImageRecord) -> cri::Image {
    let (uid, username) = rec.uid_and_username();
    cri::Image {
        id: rec.id.to_string(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: rec.id.to_string(),
            ..Default::default()
        }),
        pinned: rec.pinned,
    }
}

/// Domain credentials from a CRI `AuthConfig`.
pub fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Option<Credentials>, ImageErr> {
    let Some(a) = auth else { return Ok(None) };
    from_fields([
        &a.username,
        &a.password,
        &a.auth,
        &a.server_address,
        &a.identity_token,
        &a.registry_token,
    ])
}

/// Domain credentials from husk's own `AuthConfig` (the same fields as the CRI's).
pub fn husk_credentials(
    auth: Option<&husk_api::v1::AuthConfig>,
) -> Result<Option<Credentials>, ImageErr> {
    let Some(a) = auth else { return Ok(None) };
    from_fields([
        &a.username,
        &a.password,
        &a.auth,
        &a.server_address,
        &a.identity_token,
        &a.registry_token,
    ])
}

fn from_fields(
    [user, pass, auth, server, identity, registry]: [&String; 6],
) -> Result<Option<Credentials>, ImageErr> {
    Ok(Credentials::from_cri(
        user, pass, auth, server, identity, registry,
    )?)
}
