//! Content digests (`sha256:<hex>`, `sha512:<hex>`): parsing with the OCI grammar, display,
//! serde as a string, and streaming hashing/verification.
//!
//! Validation follows `github.com/opencontainers/go-digest` (`Digest.Validate`): a digest whose
//! algorithm looks registered but is not one we implement is *unsupported*; the encoded part of
//! a supported algorithm must be lowercase hex of exactly the hash size.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest as _;

/// A hash algorithm we can compute and verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm of OCI content.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears in a digest string (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The length of the hex encoding of this algorithm's hash.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a usable digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not of the form `algorithm:encoded` with the OCI character sets.
    #[error("invalid digest format {input:?}")]
    InvalidFormat { input: String },
    /// Well formed, but an algorithm we do not implement (e.g. `sha384`, `blake3`).
    #[error("unsupported digest algorithm {algorithm:?} in {input:?}")]
    Unsupported { input: String, algorithm: String },
    /// A supported algorithm with an encoded part of the wrong length.
    #[error(
        "invalid digest length in {input:?}: {algorithm} needs {expected} hex characters, got {actual}"
    )]
    InvalidLength {
        input: String,
        algorithm: Algorithm,
        expected: usize,
        actual: usize,
    },
    /// Content did not hash to the digest it was verified against.
    #[error("content hashes to {actual}, expected {expected}")]
    Mismatch { expected: Digest, actual: Digest },
}

/// A validated content digest, e.g. `sha256:2cf24dba…`.
///
/// Ordering and hashing are by algorithm then hex, which matches ordering by the string form.
/// Serialises to and from its string form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(input: &str) -> Result<Digest, DigestError> {
        let invalid = || DigestError::InvalidFormat {
            input: input.to_owned(),
        };
        let (name, encoded) = input.split_once(':').ok_or_else(invalid)?;
        if name.is_empty() || encoded.is_empty() {
            return Err(invalid());
        }
        let Some(algorithm) = Algorithm::from_name(name) else {
            if is_oci_algorithm(name) && is_oci_encoded(encoded) {
                return Err(DigestError::Unsupported {
                    input: input.to_owned(),
                    algorithm: name.to_owned(),
                });
            }
            return Err(invalid());
        };
        if encoded.len() != algorithm.hex_len() {
            return Err(DigestError::InvalidLength {
                input: input.to_owned(),
                algorithm,
                expected: algorithm.hex_len(),
                actual: encoded.len(),
            });
        }
        if !is_lower_hex(encoded) {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }

    /// Builds a digest from an algorithm and its hex encoding, validating the encoding.
    pub fn from_hex(algorithm: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        Digest::parse(&format!("{algorithm}:{hex}"))
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: impl AsRef<[u8]>) -> Digest {
        let mut d = Digester::sha256();
        d.update(bytes.as_ref());
        d.finish()
    }

    /// The algorithm name (`"sha256"`), as used in paths and digest strings.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm.as_str()
    }

    /// The algorithm as an enum.
    pub fn algorithm_kind(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex encoding of the hash (no `algorithm:` prefix).
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A hasher of this digest's algorithm whose result is compared with this digest.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            expected: self.clone(),
            digester: Digester::new(self.algorithm),
        }
    }

    /// Checks that `bytes` hash to this digest.
    pub fn verify(&self, bytes: impl AsRef<[u8]>) -> Result<(), DigestError> {
        let mut v = self.verifier();
        v.update(bytes.as_ref());
        v.finish()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[derive(Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// A streaming hasher producing a [`Digest`]. Also an [`std::io::Write`] sink, so it works with
/// `io::copy` and tee-style readers.
#[derive(Clone)]
pub struct Digester {
    hasher: Hasher,
}

impl Digester {
    /// A hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Digester {
        let hasher = match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Digester { hasher }
    }

    /// A SHA-256 hasher.
    pub fn sha256() -> Digester {
        Digester::new(Algorithm::Sha256)
    }

    /// Feeds more content.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self.hasher {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.hasher {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        };
        f.debug_struct("Digester")
            .field("algorithm", &algorithm)
            .finish_non_exhaustive()
    }
}

impl std::io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hashes streamed content and compares it with an expected digest at the end.
#[derive(Debug, Clone)]
pub struct Verifier {
    expected: Digest,
    digester: Digester,
}

impl Verifier {
    /// Feeds more content.
    pub fn update(&mut self, data: &[u8]) {
        self.digester.update(data);
    }

    /// The digest the content must hash to.
    pub fn expected(&self) -> &Digest {
        &self.expected
    }

    /// `Ok` when the content fed so far hashes to the expected digest.
    pub fn finish(self) -> Result<(), DigestError> {
        let actual = self.digester.finish();
        if actual == self.expected {
            Ok(())
        } else {
            Err(DigestError::Mismatch {
                expected: self.expected,
                actual,
            })
        }
    }
}

impl std::io::Write for Verifier {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `[a-z0-9]+(?:[.+_-][a-z0-9]+)*` — the OCI algorithm grammar.
fn is_oci_algorithm(s: &str) -> bool {
    !s.is_empty()
        && s.split(['.', '+', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `[a-zA-Z0-9=_-]+` — the OCI encoded grammar.
fn is_oci_encoded(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_displays() {
        let d = Digest::parse(HELLO).unwrap();
        assert_eq!(d.algorithm(), "sha256");
        assert_eq!(d.algorithm_kind(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.to_string(), HELLO);
        assert_eq!(HELLO.parse::<Digest>().unwrap(), d);
        let long = format!("sha512:{}", "f".repeat(128));
        assert_eq!(Digest::parse(&long).unwrap().to_string(), long);
    }

    #[test]
    fn hashes() {
        assert_eq!(Digest::sha256_of(b"hello").to_string(), HELLO);
        let mut d = Digester::sha256();
        d.update(b"hel");
        d.update(b"lo");
        assert_eq!(d.finish().to_string(), HELLO);
        let mut d = Digester::new(Algorithm::Sha512);
        std::io::Write::write_all(&mut d, b"").unwrap();
        assert!(
            d.finish()
                .to_string()
                .starts_with("sha512:cf83e1357eefb8bd")
        );
    }

    #[test]
    fn verifies() {
        let d = Digest::parse(HELLO).unwrap();
        assert!(d.verify(b"hello").is_ok());
        let mut v = d.verifier();
        v.update(b"hell");
        assert!(matches!(v.finish(), Err(DigestError::Mismatch { .. })));
    }

    #[test]
    fn rejects_bad_digests() {
        let f64 = "f".repeat(64);
        let cases: &[(&str, &str)] = &[
            ("", "format"),
            ("sha256", "format"),
            ("sha256:", "format"),
            (":abc", "format"),
            (&format!("sha256:{}", "f".repeat(34)), "length"),
            (&format!("sha256:{}", "F".repeat(64)), "format"),
            (&format!("sha256:{}g", "f".repeat(63)), "format"),
            (&format!("sha512:{f64}"), "length"),
            (&format!("sha384:{f64}"), "unsupported"),
            (&format!("invaliddigest:{f64}"), "unsupported"),
            (&format!("sha256+b64u:{f64}"), "unsupported"),
            (&format!("SHA256:{f64}"), "format"),
            (&format!("sha256!:{f64}"), "format"),
            (&format!("sha256:{f64}:"), "length"),
        ];
        for (input, want) in cases {
            let err = Digest::parse(input).unwrap_err();
            let got = match err {
                DigestError::InvalidFormat { .. } => "format",
                DigestError::Unsupported { .. } => "unsupported",
                DigestError::InvalidLength { .. } => "length",
                DigestError::Mismatch { .. } => "mismatch",
            };
            assert_eq!(got, *want, "{input:?}: {err}");
        }
    }

    #[test]
    fn serde_as_string() {
        let d = Digest::parse(HELLO).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{HELLO}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }

    #[test]
    fn ordering_matches_strings() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::parse(&format!("sha512:{}", "0".repeat(128))).unwrap();
        let mut v = [c, b, a];
        v.sort();
        let mut s: Vec<String> = v.iter().map(ToString::to_string).collect();
        let sorted = s.clone();
        s.sort();
        assert_eq!(s, sorted);
    }
}
