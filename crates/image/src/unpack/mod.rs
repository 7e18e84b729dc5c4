//! Applying an image layer to an overlay snapshot directory, safely: decompression, OCI
//! whiteouts turned into overlayfs whiteouts/opaque directories, hardlinks copied up from
//! parent layers, and the diff ID of the uncompressed stream. Every filesystem operation is
//! relative to a directory fd of the target, with parents resolved by
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` and final components never followed,
//! so a malicious layer cannot write outside the target.

mod entry;
mod fsops;
mod layers;
mod path;

#[cfg(test)]
mod tests;

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Compression of a layer blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From an OCI/Docker layer media type; unknown (or encrypted) types are an error.
    pub fn from_media_type(media_type: &str) -> Result<Compression, UnpackError> {
        let base = media_type.split(';').next().unwrap_or("").trim();
        match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            _ => Err(UnpackError::UnsupportedMediaType {
                media_type: media_type.to_string(),
            }),
        }
    }

    /// Sniffs the magic bytes of a blob (for docker-save archives, whose layers have no media
    /// type): gzip `1f 8b`, zstd `28 b5 2f fd`, anything else is taken as a plain tar.
    pub fn detect(first_bytes: &[u8]) -> Compression {
        if first_bytes.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if first_bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `reader` in the decompressor for `c` (multi-member gzip and multi-frame zstd are read
/// to the end, as Go's readers do).
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    c: Compression,
) -> Result<Box<dyn Read + 'a>, UnpackError> {
    Ok(match c {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(reader).map_err(|source| {
                UnpackError::Decompressor {
                    compression: c,
                    source,
                }
            })?)
        }
    })
}

/// How to apply a layer.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// The parent snapshot directories, top-most (layer N-1) first: consulted to copy up
    /// hardlink targets and the metadata of directories this layer creates implicitly.
    pub lowers: Vec<PathBuf>,
}

/// What applying a layer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// Tar entries read (extension headers excluded).
    pub entries: u64,
    /// Regular file bytes written.
    pub bytes: u64,
    /// `sha256:<hex>` of the whole uncompressed stream, to compare with `rootfs.diff_ids`.
    pub diff_id: String,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("unsupported layer media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    #[error("failed to start {compression:?} decompression")]
    Decompressor {
        compression: Compression,
        source: io::Error,
    },
    #[error("failed to open layer directory {path:?}")]
    OpenLayer { path: PathBuf, source: io::Error },
    #[error("failed to read the layer tar stream")]
    Tar { source: io::Error },
    #[error("failed to read the content of {path:?} from the layer")]
    ReadEntry { path: PathBuf, source: io::Error },
    #[error("{path:?} is truncated: {actual} of {expected} bytes")]
    TruncatedEntry {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error("invalid {field} in the tar header of {path:?}")]
    InvalidHeader {
        path: PathBuf,
        field: &'static str,
        source: io::Error,
    },
    #[error("owner id {id} of {path:?} does not fit in 32 bits")]
    IdOutOfRange { path: PathBuf, id: u64 },
    #[error("unsupported tar entry type {kind:?} for {path:?}")]
    UnsupportedEntryType { path: PathBuf, kind: char },
    #[error("invalid whiteout {path:?}")]
    InvalidWhiteout { path: PathBuf },
    #[error(
        "hardlink {path:?} points to {target:?}, which is in neither this layer nor its parents"
    )]
    HardlinkTargetMissing { path: PathBuf, target: PathBuf },
    #[error("hardlink {path:?} points to a directory")]
    HardlinkToDirectory { path: PathBuf },
    #[error("failed to {op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl UnpackError {
    /// Whether the layer failed because the filesystem (or a quota) is full.
    pub fn is_no_space(&self) -> bool {
        match self {
            UnpackError::Io { source, .. }
            | UnpackError::OpenLayer { source, .. }
            | UnpackError::Tar { source }
            | UnpackError::ReadEntry { source, .. } => crate::error::is_no_space(source),
            _ => false,
        }
    }
}

/// Hashes everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Extracts the (decompressed) layer tar `tar_stream` into `target`, an empty directory that
/// becomes one overlayfs layer above `opts.lowers`. Nothing is ever created or changed outside
/// `target`, whatever the archive holds; the stream is read to its end so the returned diff ID
/// covers all of it.
pub fn unpack_layer<R: Read>(
    tar_stream: R,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats, UnpackError> {
    let layers = layers::Layers::open(target, &opts.lowers)?;
    let hashing = HashingReader {
        inner: tar_stream,
        hasher: Sha256::new(),
    };
    let mut archive = tar::Archive::new(BufReader::with_capacity(64 * 1024, hashing));
    let mut applier = entry::Applier::new(&layers);
    for e in archive
        .entries()
        .map_err(|source| UnpackError::Tar { source })?
    {
        let mut e = e.map_err(|source| UnpackError::Tar { source })?;
        applier.apply(&mut e)?;
    }
    let (entries, bytes) = (applier.entries, applier.bytes);
    applier.finish()?;
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|source| UnpackError::Tar { source })?;
    let digest = rest.into_inner().hasher.finalize();
    tracing::debug!(target = ?target, entries, bytes, "layer unpacked");
    Ok(UnpackStats {
        entries,
        bytes,
        diff_id: format!("sha256:{}", hex::encode(digest)),
    })
}
