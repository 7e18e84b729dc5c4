//! Image references (`busybox`, `registry.k8s.io/pause:3.10`, `repo:tag@sha256:…`), parsed and
//! normalised exactly as Docker and containerd do with `github.com/distribution/reference`
//! (`ParseNormalizedNamed` followed by `TagNameOnly`), plus the familiar short form for display.
//!
//! Grammar (from distribution/reference):
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] path-component ['/' path-component]*
//! domain           := host [':' port-number]
//! host             := domain-name | '[' IPv6address ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! path-component   := /[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*/
//! tag              := /[\w][\w.-]{0,127}/
//! ```
//!
//! Normalisation: the first `/`-separated component is the domain when it is `localhost`,
//! contains `.` or `:`, or has an uppercase letter; otherwise the domain is `docker.io`.
//! `index.docker.io` becomes `docker.io`, and a one-component path on `docker.io` gets the
//! `library/` prefix. A reference with neither tag nor digest gets the tag `latest`.
//!
//! Two deliberate differences from distribution/reference: a 64-hex image ID, bare or
//! `sha256:`-prefixed, is rejected ([`ReferenceError::ImageId`]) rather than read as a name or
//! tag; and a first component that must be a domain but breaks the domain grammar while still
//! matching the path grammar (`foo_bar.com/x`) is rejected instead of yielding an empty domain.
//! As in distribution/reference v0.6, the 255-character limit applies to the path only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::{Digest, DigestError, is_lower_hex};

/// The registry domain of Docker Hub in normalised references.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The legacy Docker Hub domain, normalised to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// The namespace of official images on Docker Hub.
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag given to a reference that has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// The longest repository path (the name without its domain), as `RepositoryNameTotalLengthMax`.
pub const MAX_PATH_LEN: usize = 255;
/// The longest tag.
pub const MAX_TAG_LEN: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The empty string.
    #[error("empty image reference")]
    Empty,
    /// A 64-hex image ID (optionally `sha256:`-prefixed); resolve it against local images.
    #[error("{input:?} is an image id, not a repository reference")]
    ImageId { input: String },
    /// The repository path has uppercase letters.
    #[error("repository name {repository:?} in {input:?} must be lowercase")]
    Uppercase { input: String, repository: String },
    /// The domain is not a hostname, `[IPv6]` address, or either with a port.
    #[error("invalid registry domain {domain:?} in {input:?}")]
    InvalidDomain { input: String, domain: String },
    /// A repository path component breaks the path grammar (or is empty).
    #[error("invalid repository path component {component:?} in {input:?}")]
    InvalidPathComponent { input: String, component: String },
    /// The tag breaks `[\w][\w.-]{0,127}`.
    #[error("invalid tag {tag:?} in {input:?}")]
    InvalidTag { input: String, tag: String },
    /// The digest is malformed or of an unsupported algorithm.
    #[error("invalid digest in {input:?}: {source}")]
    InvalidDigest { input: String, source: DigestError },
    /// The repository path is longer than [`MAX_PATH_LEN`].
    #[error("repository path in {input:?} is {len} characters long, more than {MAX_PATH_LEN}")]
    NameTooLong { input: String, len: usize },
}

/// A normalised image reference: always has a domain and a path, and a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input` (`busybox` → `docker.io/library/busybox:latest`).
    ///
    /// Rejects image IDs ([`is_image_id`]) with [`ReferenceError::ImageId`]. Note that Docker's
    /// `ParseNormalizedNamed` would read `sha256:<64 hex>` as the repository `sha256` with that
    /// tag; we treat it as an ID, as Docker's `ParseAnyReference` does.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_image_id(input) {
            return Err(ReferenceError::ImageId {
                input: input.to_owned(),
            });
        }
        let (domain, remainder) = split_docker_domain(input);

        // Docker checks the repository part (up to the first ':') for uppercase first.
        let remote = remainder.split(':').next().unwrap_or_default();
        if remote.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase {
                input: input.to_owned(),
                repository: remote.to_owned(),
            });
        }

        if !is_valid_domain(domain) {
            return Err(ReferenceError::InvalidDomain {
                input: input.to_owned(),
                domain: domain.to_owned(),
            });
        }

        let (name_tag, digest_str) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_tag.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (name_tag, None),
        };
        for component in path.split('/') {
            if !is_valid_path_component(component) {
                return Err(ReferenceError::InvalidPathComponent {
                    input: input.to_owned(),
                    component: component.to_owned(),
                });
            }
        }
        if let Some(tag) = tag
            && !is_valid_tag(tag)
        {
            return Err(ReferenceError::InvalidTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
            });
        }
        if let Some(d) = digest_str
            && !is_reference_digest(d)
        {
            return Err(ReferenceError::InvalidDigest {
                input: input.to_owned(),
                source: DigestError::InvalidFormat {
                    input: d.to_owned(),
                },
            });
        }
        if path.len() > MAX_PATH_LEN {
            return Err(ReferenceError::NameTooLong {
                input: input.to_owned(),
                len: path.len(),
            });
        }
        let digest = digest_str
            .map(Digest::parse)
            .transpose()
            .map_err(|source| ReferenceError::InvalidDigest {
                input: input.to_owned(),
                source,
            })?;
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Reference {
            domain: domain.to_owned(),
            path: path.to_owned(),
            tag,
            digest,
        })
    }

    /// The registry domain, e.g. `docker.io` or `127.0.0.1:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any (`latest` is filled in when there was neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// `repository:tag` when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag
            .as_ref()
            .map(|t| format!("{}/{}:{t}", self.domain, self.path))
    }

    /// `repository@digest` for any digest (typically the one a tag resolved to).
    pub fn with_digest(&self, digest: &Digest) -> String {
        format!("{}/{}@{digest}", self.domain, self.path)
    }

    /// What to ask the registry's `manifests/` endpoint for: the digest if there is one
    /// (a tag next to a digest is ignored, as containerd does), else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// The short form Docker shows (`FamiliarString`): `busybox:latest`, `user/app:v1`,
    /// `registry.k8s.io/pause:3.10`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The short repository name Docker shows (`FamiliarName`): `busybox`, `user/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_owned(),
            _ => self.path.clone(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Reference, ReferenceError> {
        Reference::parse(s)
    }
}

impl Serialize for Reference {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Reference {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Reference, D::Error> {
        let s = String::deserialize(deserializer)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether `s` is an image ID: 64 lowercase hex characters, optionally prefixed `sha256:`.
pub fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() == 64 && is_lower_hex(hex)
}

/// distribution/reference `splitDockerDomain`: the domain and the rest (path, tag, digest).
fn split_docker_domain(name: &str) -> (&str, String) {
    let Some((maybe_domain, rest)) = name.split_once('/') else {
        return (DEFAULT_DOMAIN, format!("{OFFICIAL_REPO_PREFIX}{name}"));
    };
    let (domain, remote) = if maybe_domain == "localhost" {
        (maybe_domain, rest)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, rest)
    } else if maybe_domain.contains(['.', ':'])
        || maybe_domain.bytes().any(|b| b.is_ascii_uppercase())
    {
        (maybe_domain, rest)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain, format!("{OFFICIAL_REPO_PREFIX}{remote}"));
    }
    (domain, remote.to_owned())
}

/// `host [':' port]` where host is a domain name or a bracketed IPv6 address.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return false;
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("[v6]", Some(port)),
                None => return false,
            },
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host == "[v6]" || host.split('.').all(is_valid_domain_component)
}

fn is_valid_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if b.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn is_valid_tag(t: &str) -> bool {
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b[1..].iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// The reference grammar's digest:
/// `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}`.
/// What passes is then validated by [`Digest::parse`].
fn is_reference_digest(d: &str) -> bool {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const H: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    const ID: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

    fn ok(input: &str) -> Reference {
        match Reference::parse(input) {
            Ok(r) => r,
            Err(e) => panic!("{input:?} should parse: {e}"),
        }
    }

    /// (input, normalised string). Cases from distribution/reference's normalize_test.go and
    /// reference_test.go (as seen through ParseNormalizedNamed + TagNameOnly), plus our own.
    #[test]
    fn good_references() {
        let sha = format!("sha256:{H}");
        let sha512 = format!("sha512:{}", "f".repeat(128));
        let long_path = format!("{}a", "a/".repeat(127));
        let cases: Vec<(String, String)> = vec![
            ("busybox".into(), "docker.io/library/busybox:latest".into()),
            ("user/app".into(), "docker.io/user/app:latest".into()),
            ("index.docker.io/x".into(), "docker.io/library/x:latest".into()),
            ("localhost:5000/a/b:v1".into(), "localhost:5000/a/b:v1".into()),
            ("localhost/foo".into(), "localhost/foo:latest".into()),
            (format!("127.0.0.1:5000/x@{sha}"), format!("127.0.0.1:5000/x@{sha}")),
            ("registry.k8s.io/pause:3.10".into(), "registry.k8s.io/pause:3.10".into()),
            (format!("repo:tag@{sha}"), format!("docker.io/library/repo:tag@{sha}")),
            ("docker/docker".into(), "docker.io/docker/docker:latest".into()),
            ("library/debian".into(), "docker.io/library/debian:latest".into()),
            ("debian".into(), "docker.io/library/debian:latest".into()),
            ("docker.io/docker/docker".into(), "docker.io/docker/docker:latest".into()),
            ("docker.io/library/debian".into(), "docker.io/library/debian:latest".into()),
            ("docker.io/debian".into(), "docker.io/library/debian:latest".into()),
            ("index.docker.io/docker/docker".into(), "docker.io/docker/docker:latest".into()),
            ("index.docker.io/library/debian".into(), "docker.io/library/debian:latest".into()),
            ("index.docker.io/debian".into(), "docker.io/library/debian:latest".into()),
            ("127.0.0.1:5000/docker/docker".into(), "127.0.0.1:5000/docker/docker:latest".into()),
            ("127.0.0.1:5000/library/debian".into(), "127.0.0.1:5000/library/debian:latest".into()),
            ("127.0.0.1:5000/debian".into(), "127.0.0.1:5000/debian:latest".into()),
            ("192.168.0.1".into(), "docker.io/library/192.168.0.1:latest".into()),
            ("192.168.0.1:80".into(), "docker.io/library/192.168.0.1:80".into()),
            ("192.168.0.1:8/debian".into(), "192.168.0.1:8/debian:latest".into()),
            ("192.168.0.2:25000/debian".into(), "192.168.0.2:25000/debian:latest".into()),
            (
                "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev".into(),
                "docker.io/library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest".into(),
            ),
            ("[fc00::1]:5000/docker".into(), "[fc00::1]:5000/docker:latest".into()),
            ("[fc00::1]:5000/docker/docker".into(), "[fc00::1]:5000/docker/docker:latest".into()),
            (
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian".into(),
                "[fc00:1:2:3:4:5:6:7]:5000/library/debian:latest".into(),
            ),
            (format!("docker.io/{ID}"), format!("docker.io/library/{ID}:latest")),
            ("Docker/docker".into(), "Docker/docker:latest".into()),
            ("DOCKER/docker".into(), "DOCKER/docker:latest".into()),
            ("docker-rules/docker".into(), "docker.io/docker-rules/docker:latest".into()),
            ("docker---rules/docker".into(), "docker.io/docker---rules/docker:latest".into()),
            ("doc/docker".into(), "docker.io/doc/docker:latest".into()),
            ("d/docker".into(), "docker.io/d/docker:latest".into()),
            ("jess/t".into(), "docker.io/jess/t:latest".into()),
            ("dock__er/docker".into(), "docker.io/dock__er/docker:latest".into()),
            ("a.b-c/e".into(), "a.b-c/e:latest".into()),
            ("test_com".into(), "docker.io/library/test_com:latest".into()),
            ("test.com:tag".into(), "docker.io/library/test.com:tag".into()),
            ("test.com:5000".into(), "docker.io/library/test.com:5000".into()),
            ("test.com/repo:tag".into(), "test.com/repo:tag".into()),
            ("test:5000/repo".into(), "test:5000/repo:latest".into()),
            ("test:5000/repo:tag".into(), "test:5000/repo:tag".into()),
            (format!("test:5000/repo@{sha}"), format!("test:5000/repo@{sha}")),
            (format!("test:5000/repo:tag@{sha}"), format!("test:5000/repo:tag@{sha}")),
            ("lowercase:Uppercase".into(), "docker.io/library/lowercase:Uppercase".into()),
            ("sub-dom1.foo.com/bar/baz/quux".into(), "sub-dom1.foo.com/bar/baz/quux:latest".into()),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com".into(),
                "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            ),
            ("xn--n3h.com/myimage:xn--n3h.com".into(), "xn--n3h.com/myimage:xn--n3h.com".into()),
            (
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
                format!("xn--7o8h.com/myimage:xn--7o8h.com@{sha512}"),
            ),
            ("foo_bar.com:8080".into(), "docker.io/library/foo_bar.com:8080".into()),
            ("foo/foo_bar.com:8080".into(), "docker.io/foo/foo_bar.com:8080".into()),
            ("192.168.1.1/repo".into(), "192.168.1.1/repo:latest".into()),
            ("192.168.1.1:5000/repo:5050".into(), "192.168.1.1:5000/repo:5050".into()),
            ("[2001:db8::1]/repo".into(), "[2001:db8::1]/repo:latest".into()),
            ("[2001:db8:1:2:3:4:5:6]/repo:tag".into(), "[2001:db8:1:2:3:4:5:6]/repo:tag".into()),
            (format!("[2001:db8::1]:5000/repo@{sha}"), format!("[2001:db8::1]:5000/repo@{sha}")),
            ("[2001:db8::]:5000/repo".into(), "[2001:db8::]:5000/repo:latest".into()),
            ("[::1]:5000/repo".into(), "[::1]:5000/repo:latest".into()),
            ("localhost:5000".into(), "docker.io/library/localhost:5000".into()),
            ("localhost".into(), "docker.io/library/localhost:latest".into()),
            (
                format!("{long_path}:tag-puts-this-over-max"),
                format!("docker.io/{long_path}:tag-puts-this-over-max"),
            ),
            (format!("example.com/{}", "a".repeat(255)), format!("example.com/{}:latest", "a".repeat(255))),
            (format!("busybox:{}", "t".repeat(128)), format!("docker.io/library/busybox:{}", "t".repeat(128))),
        ];
        for (input, want) in cases {
            let r = ok(&input);
            assert_eq!(r.to_string(), want, "input {input:?}");
            assert_eq!(
                ok(&want),
                r,
                "normalised form of {input:?} must parse to the same"
            );
        }
    }

    type Check = fn(&ReferenceError) -> bool;

    #[test]
    fn bad_references() {
        use ReferenceError as E;
        let long_ns = "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker";
        let cases: Vec<(String, Check)> = vec![
            ("".into(), |e| matches!(e, E::Empty)),
            (ID.into(), |e| matches!(e, E::ImageId { .. })),
            (format!("sha256:{ID}"), |e| matches!(e, E::ImageId { .. })),
            ("https://github.com/docker/docker".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("docker/Docker".into(), |e| matches!(e, E::Uppercase { .. })),
            ("-docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("-docker/docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("-docker.io/docker/docker".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("docker///docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("docker.io/docker/Docker".into(), |e| {
                matches!(e, E::Uppercase { .. })
            }),
            ("docker.io/docker///docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("[fc00::1]".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("[fc00::1]:5000".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("fc00::1:5000/debian".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("[fe80::1%eth0]:5000/debian".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("[2001:db8:3:4::192.0.2.33]:5000/debian".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("[fe80::1%@invalidzone]:5000/repo".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("[2001:db8::1]".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("[2001:db8::1]:5000".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("[2001:db8::1]:tag".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("docker-/docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("-docker-/docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("____/____".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("_docker/_docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("dock..er/docker".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("dock_.er/docker".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("dock-.er/docker".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("dock___er/docker".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("docker/".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("docker.io/".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            (long_ns.into(), |e| matches!(e, E::NameTooLong { .. })),
            (format!("{}a:tag", "a/".repeat(128)), |e| {
                matches!(e, E::NameTooLong { .. })
            }),
            (format!("example.com/{}", "a".repeat(256)), |e| {
                matches!(e, E::NameTooLong { .. })
            }),
            (":justtag".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            (format!("@sha256:{H}"), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            (format!("repo@sha256:{}", "f".repeat(34)), |e| {
                matches!(
                    e,
                    E::InvalidDigest {
                        source: DigestError::InvalidLength { .. },
                        ..
                    }
                )
            }),
            (format!("validname@invaliddigest:{H}"), |e| {
                matches!(
                    e,
                    E::InvalidDigest {
                        source: DigestError::Unsupported { .. },
                        ..
                    }
                )
            }),
            (format!("repo@sha256:{}", H.to_uppercase()), |e| {
                matches!(
                    e,
                    E::InvalidDigest {
                        source: DigestError::InvalidFormat { .. },
                        ..
                    }
                )
            }),
            ("repo@sha256:zzzz".into(), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            (format!("repo@SHA256:{H}"), |e| {
                matches!(e, E::Uppercase { .. })
            }),
            (format!("repo@sha256:{H}@sha256:{H}"), |e| {
                matches!(e, E::InvalidDigest { .. })
            }),
            ("Uppercase:tag".into(), |e| matches!(e, E::Uppercase { .. })),
            ("test:5000/Uppercase/lowercase:tag".into(), |e| {
                matches!(e, E::Uppercase { .. })
            }),
            ("aa/asdf$$^/aa".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
            ("repo:tag:tag2".into(), |e| {
                matches!(e, E::InvalidTag { .. })
            }),
            ("repo:-tag".into(), |e| matches!(e, E::InvalidTag { .. })),
            ("repo:".into(), |e| matches!(e, E::InvalidTag { .. })),
            (format!("repo:{}", "t".repeat(129)), |e| {
                matches!(e, E::InvalidTag { .. })
            }),
            ("foo_bar.com/x".into(), |e| {
                matches!(e, E::InvalidDomain { .. })
            }),
            ("host:/x".into(), |e| matches!(e, E::InvalidDomain { .. })),
            ("host:5x/x".into(), |e| matches!(e, E::InvalidDomain { .. })),
            ("a..b/x".into(), |e| matches!(e, E::InvalidDomain { .. })),
            ("busy box".into(), |e| {
                matches!(e, E::InvalidPathComponent { .. })
            }),
        ];
        for (input, check) in cases {
            match Reference::parse(&input) {
                Ok(r) => panic!("{input:?} should not parse, got {r}"),
                Err(e) => assert!(check(&e), "{input:?}: unexpected error {e:?}"),
            }
        }
    }

    /// TestParseRepositoryInfo: (path, familiar, full, ambiguous, domain).
    #[test]
    fn repository_info() {
        let cases = [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (path, familiar, full, ambiguous, domain) in cases {
            for input in [familiar, full, ambiguous] {
                if input.is_empty() {
                    continue;
                }
                let r = ok(input);
                assert_eq!(r.familiar_name(), familiar, "{input}");
                assert_eq!(r.repository(), full, "{input}");
                assert_eq!(r.domain(), domain, "{input}");
                assert_eq!(r.path(), path, "{input}");
                assert_eq!(r.familiar(), format!("{familiar}:latest"), "{input}");
            }
        }
    }

    #[test]
    fn tag_and_digest() {
        let short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        let r = ok(short);
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
        assert_eq!(r.familiar(), short);
        assert_eq!(r.tag(), Some("latest"));
        let d = r.digest().map(ToString::to_string);
        assert_eq!(d.as_deref(), short.split_once('@').map(|(_, d)| d));
        assert_eq!(
            r.object(),
            short.split_once('@').map(|(_, d)| d).unwrap_or_default()
        );
        assert_eq!(
            r.tagged().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
    }

    #[test]
    fn accessors() {
        let r = ok("busybox");
        assert_eq!(r.domain(), "docker.io");
        assert_eq!(r.path(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.digest(), None);
        assert_eq!(r.repository(), "docker.io/library/busybox");
        assert_eq!(
            r.tagged().as_deref(),
            Some("docker.io/library/busybox:latest")
        );
        assert_eq!(r.object(), "latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let d = Digest::sha256_of(b"x");
        assert_eq!(r.with_digest(&d), format!("docker.io/library/busybox@{d}"));

        let r = ok(&format!("127.0.0.1:5000/x@{d}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.tagged(), None);
        assert_eq!(r.object(), d.to_string());
        assert_eq!(r.familiar(), format!("127.0.0.1:5000/x@{d}"));

        let r: Reference = "registry.k8s.io/pause:3.10".parse().unwrap();
        assert_eq!(r.familiar(), "registry.k8s.io/pause:3.10");
        assert_eq!(
            ok("docker.io/library/foo/bar:v1").familiar(),
            "library/foo/bar:v1"
        );
        assert_eq!(ok("user/app:v1").familiar(), "user/app:v1");
    }

    #[test]
    fn image_ids() {
        assert!(is_image_id(ID));
        assert!(is_image_id(&format!("sha256:{ID}")));
        assert!(!is_image_id(&ID.to_uppercase()));
        assert!(!is_image_id(&ID[1..]));
        assert!(!is_image_id(&format!("sha512:{ID}")));
        assert!(!is_image_id("busybox"));
    }

    #[test]
    fn serde_as_string() {
        let r = ok("busybox");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(json, "\"docker.io/library/busybox:latest\"");
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
        assert!(serde_json::from_str::<Reference>("\"Nope:x\"").is_err());
    }

    fn path_component(first: bool) -> impl Strategy<Value = String> {
        // The first component of a domain-less name must not look like a domain.
        if first {
            "[a-z0-9]{1,5}((_|__|-{1,3})[a-z0-9]{1,5}){0,2}".boxed()
        } else {
            "[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,5}){0,2}".boxed()
        }
    }

    fn domain() -> impl Strategy<Value = Option<String>> {
        prop_oneof![
            Just(None),
            Just(Some("localhost".to_owned())),
            Just(Some("docker.io".to_owned())),
            Just(Some("index.docker.io".to_owned())),
            "localhost:[0-9]{1,5}".prop_map(Some),
            "[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,4}[a-z0-9])?){1,2}(:[0-9]{1,5})?"
                .prop_map(Some),
            "[A-Z][A-Za-z0-9]{0,5}".prop_map(Some),
            "\\[[0-9a-f]{1,4}::[0-9a-f]{0,4}\\](:[0-9]{2,5})?".prop_map(Some),
        ]
    }

    fn reference_string() -> impl Strategy<Value = String> {
        (
            domain(),
            path_component(true),
            prop::collection::vec(path_component(false), 0..4),
            prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
            prop::option::of("[0-9a-f]{64}"),
        )
            .prop_map(|(domain, first, rest, tag, digest)| {
                let mut s = String::new();
                if let Some(d) = domain {
                    s.push_str(&d);
                    s.push('/');
                }
                s.push_str(&first);
                for c in rest {
                    s.push('/');
                    s.push_str(&c);
                }
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(&t);
                }
                if let Some(h) = digest {
                    s.push_str("@sha256:");
                    s.push_str(&h);
                }
                s
            })
    }

    proptest! {
        #[test]
        fn round_trips(input in reference_string()) {
            let r = Reference::parse(&input);
            prop_assert!(r.is_ok(), "{input:?}: {r:?}");
            let r = r.unwrap();
            prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r.clone()));
            prop_assert_eq!(Reference::parse(&r.familiar()), Ok(r.clone()));
            prop_assert!(r.tag().is_some() || r.digest().is_some());
        }

        #[test]
        fn never_panics(input in "\\PC{0,80}") {
            if let Ok(r) = Reference::parse(&input) {
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
            }
        }

        #[test]
        fn never_panics_on_reference_alphabet(input in "[a-zA-Z0-9:/@._\\-\\[\\]]{0,40}") {
            if let Ok(r) = Reference::parse(&input) {
                prop_assert_eq!(Reference::parse(&r.to_string()), Ok(r));
            }
        }
    }
}
