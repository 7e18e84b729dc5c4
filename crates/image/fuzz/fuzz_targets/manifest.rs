//! Fuzz target: arbitrary bytes as a manifest, an index or an image config (first byte picks
//! the media type the registry claims) through husk-image's parsing, platform selection,
//! descriptor checks and chain-ID computation. Nothing may panic.
#![no_main]

use husk_image::digest::Digest;
use husk_image::manifest::{
    self, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_SCHEMA1, ImageConfig, ManifestKind, OCI_INDEX,
    OCI_MANIFEST, Platform,
};
use husk_image::unpack::Compression;
use libfuzzer_sys::fuzz_target;

const MEDIA_TYPES: [&str; 8] = [
    "",
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_LIST,
    DOCKER_SCHEMA1,
    "application/json; charset=utf-8",
    "text/plain",
];

fn platforms() -> [Platform; 4] {
    let p = |os: &str, arch: &str, variant: Option<&str>| Platform {
        os: os.into(),
        architecture: arch.into(),
        variant: variant.map(Into::into),
        ..Platform::host()
    };
    [
        Platform::host(),
        p("linux", "arm64", Some("v8")),
        p("linux", "arm", Some("v7")),
        p("windows", "amd64", None),
    ]
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, doc)) = data.split_first() else {
        return;
    };
    let digest = Digest::sha256_of(doc);
    let mt = MEDIA_TYPES[usize::from(pick) % MEDIA_TYPES.len()];
    match manifest::parse_manifest(&digest, mt, doc) {
        Ok(ManifestKind::Image(m)) => {
            let _ = m.config.digest("config");
            let _ = m.config.size("config");
            for l in &m.layers {
                let _ = l.digest("layer");
                let _ = l.size("layer");
                let _ = Compression::from_media_type(&l.media_type);
                let _ = manifest::is_layer_media_type(&l.media_type);
            }
        }
        Ok(ManifestKind::Index(i)) => {
            for want in platforms() {
                if let Ok(d) = manifest::select_platform(&digest, &i, &want) {
                    assert!(d.platform.as_ref().is_some_and(|p| want.match_score(p) > 0));
                    let _ = d.digest("manifest");
                    let _ = d.size("manifest");
                }
                for d in &i.manifests {
                    let _ = d
                        .platform
                        .as_ref()
                        .map(|p| (p.to_string(), want.match_score(p)));
                }
            }
        }
        Err(e) => {
            let _ = (e.kind(), e.to_string());
        }
    }
    if let Ok(c) = ImageConfig::parse(&digest, doc)
        && let Ok(ids) = c.diff_ids(&digest)
    {
        let chains = manifest::chain_ids(&ids);
        assert_eq!(chains.len(), ids.len());
        assert_eq!(
            chains.first(),
            ids.first(),
            "the first chain id is the first diff id"
        );
    }
    let _ = Compression::detect(doc);
});
