//! Layer tarballs built entry by entry (files, dirs, links, devices, fifos, xattrs, whiteouts),
//! written by hand so tests can also produce hostile entries (`../x`, absolute paths).

use std::io::Write;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use super::{Compression, media};

/// Modification time stamped on every entry, so equal layers have equal digests.
const MTIME: u64 = 1_700_000_000;

/// What an [`Entry`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with its contents.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink to the target.
    Symlink(String),
    /// A hard link to another entry's path (as written in the tar).
    Hardlink(String),
    /// A character device.
    CharDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// One tar entry. `path` is written verbatim (no normalisation), so tests may use hostile paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path in the tar, e.g. `etc/passwd` or `bin/` for a directory.
    pub path: String,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time (seconds since the epoch).
    pub mtime: u64,
    /// Extended attributes, written as PAX `SCHILY.xattr.<name>` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

/// A built layer blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The (possibly compressed) blob as stored in a registry.
    pub blob: Vec<u8>,
    /// `sha256:` of `blob`.
    pub digest: String,
    /// `sha256:` of the uncompressed tar (what `rootfs.diff_ids` lists).
    pub diff_id: String,
    /// Layer media type (OCI by default; [`super::ImageBuilder`] maps it for Docker images).
    pub media_type: String,
    /// How `blob` is compressed.
    pub compression: Compression,
}

impl Layer {
    /// Size of the blob in bytes.
    pub fn size(&self) -> u64 {
        self.blob.len() as u64
    }

    /// The OCI descriptor `{mediaType, digest, size}`.
    pub fn descriptor(&self) -> serde_json::Value {
        super::descriptor(&self.media_type, &self.digest, self.blob.len())
    }

    /// The uncompressed tar.
    pub fn uncompressed(&self) -> Result<Vec<u8>> {
        decompress(&self.blob, self.compression)
    }
}

/// Builds a layer tar. Paths given to the helpers may start with `/`; it is stripped.
/// Every helper consumes and returns the builder so calls chain.
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    entries: Vec<Entry>,
}

fn rel(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

impl LayerBuilder {
    /// An empty layer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entries so far.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Adds a raw entry; its path is used exactly as given.
    pub fn entry(mut self, entry: Entry) -> Self {
        self.entries.push(entry);
        self
    }

    fn push(self, path: String, kind: EntryKind, mode: u32, uid: u64, gid: u64) -> Self {
        self.entry(Entry {
            path,
            kind,
            mode,
            uid,
            gid,
            mtime: MTIME,
            xattrs: Vec::new(),
        })
    }

    /// A regular file.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>, mode: u32, uid: u64, gid: u64) -> Self {
        self.push(rel(path), EntryKind::File(data.into()), mode, uid, gid)
    }

    /// A directory (written with a trailing `/`).
    pub fn dir(self, path: &str, mode: u32, uid: u64, gid: u64) -> Self {
        let mut p = rel(path);
        if !p.ends_with('/') {
            p.push('/');
        }
        self.push(p, EntryKind::Dir, mode, uid, gid)
    }

    /// A symlink owned by root.
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(
            rel(path),
            EntryKind::Symlink(target.to_owned()),
            0o777,
            0,
            0,
        )
    }

    /// A hard link to `target` (another path in this layer or a lower one).
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(rel(path), EntryKind::Hardlink(rel(target)), 0o644, 0, 0)
    }

    /// A character device owned by root.
    pub fn char_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        self.push(
            rel(path),
            EntryKind::CharDevice { major, minor },
            mode,
            0,
            0,
        )
    }

    /// A block device owned by root.
    pub fn block_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        self.push(
            rel(path),
            EntryKind::BlockDevice { major, minor },
            mode,
            0,
            0,
        )
    }

    /// A fifo owned by root.
    pub fn fifo(self, path: &str, mode: u32) -> Self {
        self.push(rel(path), EntryKind::Fifo, mode, 0, 0)
    }

    /// Sets an extended attribute on the most recently added entry (no-op when empty).
    pub fn xattr(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        if let Some(last) = self.entries.last_mut() {
            last.xattrs.push((name.to_owned(), value.into()));
        }
        self
    }

    /// A whiteout deleting `path` from lower layers: `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Self {
        let p = rel(path);
        let p = p.trim_end_matches('/');
        let wh = match p.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/.wh.{name}"),
            None => format!(".wh.{p}"),
        };
        self.push(wh, EntryKind::File(Vec::new()), 0o644, 0, 0)
    }

    /// An opaque-directory marker hiding everything below `dir` in lower layers.
    pub fn opaque(self, dir: &str) -> Self {
        let d = rel(dir);
        let d = d.trim_end_matches('/');
        let p = if d.is_empty() {
            ".wh..wh..opq".to_owned()
        } else {
            format!("{d}/.wh..wh..opq")
        };
        self.push(p, EntryKind::File(Vec::new()), 0o644, 0, 0)
    }

    /// The uncompressed tar stream.
    pub fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            write_entry(&mut out, e);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// Builds the layer blob with an OCI media type.
    pub fn build(&self, compression: Compression) -> Layer {
        layer_from_tar(self.tar(), compression)
    }
}

/// Compresses a finished tar into a [`Layer`].
pub(crate) fn layer_from_tar(tar: Vec<u8>, compression: Compression) -> Layer {
    let diff_id = super::sha256_digest(&tar);
    let blob = match compression {
        Compression::None => tar,
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            // Writing into a Vec cannot fail.
            let _ = enc.write_all(&tar);
            enc.finish().unwrap_or_default()
        }
        Compression::Zstd => zstd::encode_all(&tar[..], 3).unwrap_or_default(),
    };
    let digest = if compression == Compression::None {
        diff_id.clone()
    } else {
        format!("sha256:{}", hex::encode(Sha256::digest(&blob)))
    };
    let media_type = match compression {
        Compression::None => media::OCI_LAYER,
        Compression::Gzip => media::OCI_LAYER_GZIP,
        Compression::Zstd => media::OCI_LAYER_ZSTD,
    };
    Layer {
        blob,
        digest,
        diff_id,
        media_type: media_type.to_owned(),
        compression,
    }
}

/// Decompresses a layer blob.
pub(crate) fn decompress(blob: &[u8], compression: Compression) -> Result<Vec<u8>> {
    use std::io::Read;
    Ok(match compression {
        Compression::None => blob.to_vec(),
        Compression::Gzip => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(blob)
                .read_to_end(&mut out)
                .context("gunzip layer")?;
            out
        }
        Compression::Zstd => zstd::decode_all(blob).context("unzstd layer")?,
    })
}

fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    // "<len> <key>=<value>\n" where <len> counts the whole record including itself.
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn truncated(s: &str, max: usize) -> &[u8] {
    &s.as_bytes()[..s.len().min(max)]
}

fn header_for(path: &str, size: u64, mode: u32, uid: u64, gid: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    let name = truncated(path, 100);
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_mode(mode);
    h.set_uid(uid.min(0o7777777));
    h.set_gid(gid.min(0o7777777));
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

fn append(out: &mut Vec<u8>, header: &tar::Header, data: &[u8]) {
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

fn write_entry(out: &mut Vec<u8>, e: &Entry) {
    let link = match &e.kind {
        EntryKind::Symlink(t) | EntryKind::Hardlink(t) => Some(t.as_str()),
        _ => None,
    };
    let mut pax = Vec::new();
    if e.path.len() > 100 {
        pax_record(&mut pax, "path", e.path.as_bytes());
    }
    if let Some(l) = link.filter(|l| l.len() > 100) {
        pax_record(&mut pax, "linkpath", l.as_bytes());
    }
    if e.uid > 0o7777777 {
        pax_record(&mut pax, "uid", e.uid.to_string().as_bytes());
    }
    if e.gid > 0o7777777 {
        pax_record(&mut pax, "gid", e.gid.to_string().as_bytes());
    }
    for (k, v) in &e.xattrs {
        pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
    }
    if !pax.is_empty() {
        let name = format!(
            "PaxHeaders/{}",
            String::from_utf8_lossy(truncated(&e.path, 80))
        );
        let mut h = header_for(&name, pax.len() as u64, 0o644, 0, 0, e.mtime);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        append(out, &h, &pax);
    }
    let data: &[u8] = match &e.kind {
        EntryKind::File(d) => d,
        _ => &[],
    };
    let mut h = header_for(&e.path, data.len() as u64, e.mode, e.uid, e.gid, e.mtime);
    let ty = match &e.kind {
        EntryKind::File(_) => tar::EntryType::Regular,
        EntryKind::Dir => tar::EntryType::Directory,
        EntryKind::Symlink(_) => tar::EntryType::Symlink,
        EntryKind::Hardlink(_) => tar::EntryType::Link,
        EntryKind::CharDevice { .. } => tar::EntryType::Char,
        EntryKind::BlockDevice { .. } => tar::EntryType::Block,
        EntryKind::Fifo => tar::EntryType::Fifo,
    };
    h.set_entry_type(ty);
    if let Some(l) = link {
        let l = truncated(l, 100);
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l);
    }
    if let EntryKind::CharDevice { major, minor } | EntryKind::BlockDevice { major, minor } = e.kind
    {
        // Only fails for old-style headers; ours is ustar.
        let _ = h.set_device_major(major);
        let _ = h.set_device_minor(minor);
    }
    h.set_cksum();
    append(out, &h, data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_with_the_tar_crate() -> Result<()> {
        let long = format!("d/{}", "x".repeat(150));
        let layer = LayerBuilder::new()
            .dir("/etc", 0o755, 0, 0)
            .file("/etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644, 0, 0)
            .xattr("user.test", "v1")
            .symlink("/etc/link", "passwd")
            .hardlink("/etc/hard", "/etc/passwd")
            .char_device("/dev/null", 1, 3, 0o666)
            .block_device("/dev/loop9", 7, 9, 0o660)
            .fifo("/run/fifo", 0o600)
            .whiteout("/etc/gone")
            .opaque("/var")
            .file(&long, "long", 0o600, 70_000_000, 5)
            .entry(Entry {
                path: "../evil".into(),
                kind: EntryKind::File(b"x".to_vec()),
                mode: 0o644,
                uid: 0,
                gid: 0,
                mtime: 0,
                xattrs: vec![],
            })
            .build(Compression::Gzip);
        assert_ne!(layer.digest, layer.diff_id);
        let tar = layer.uncompressed()?;
        assert_eq!(crate::oci::sha256_digest(&tar), layer.diff_id);
        let mut ar = tar::Archive::new(&tar[..]);
        let mut seen = Vec::new();
        for e in ar.entries()? {
            let mut e = e?;
            let path = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let ty = e.header().entry_type();
            if path == "etc/passwd" {
                let xattrs: Vec<_> = e
                    .pax_extensions()?
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.ok())
                    .map(|x| (x.key().unwrap_or("").to_owned(), x.value_bytes().to_vec()))
                    .collect();
                assert_eq!(
                    xattrs,
                    vec![("SCHILY.xattr.user.test".to_owned(), b"v1".to_vec())]
                );
            }
            if path == long {
                assert_eq!(e.header().uid()?, 70_000_000, "PAX uid wins");
                assert_eq!(e.header().gid()?, 5);
            }
            if path == "dev/null" {
                assert_eq!(e.header().device_major()?, Some(1));
                assert_eq!(e.header().device_minor()?, Some(3));
            }
            if path == "etc/hard" {
                assert_eq!(e.link_name_bytes().as_deref(), Some(&b"etc/passwd"[..]));
            }
            seen.push((path, ty));
        }
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/passwd",
                "etc/link",
                "etc/hard",
                "dev/null",
                "dev/loop9",
                "run/fifo",
                "etc/.wh.gone",
                "var/.wh..wh..opq",
                long.as_str(),
                "../evil"
            ]
        );
        assert_eq!(seen[6].1, tar::EntryType::Fifo);
        assert_eq!(seen[5].1, tar::EntryType::Block);
        Ok(())
    }

    #[test]
    fn builds_are_deterministic_and_compress() -> Result<()> {
        let b = LayerBuilder::new().file("a", vec![b'a'; 100_000], 0o644, 0, 0);
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (l1, l2) = (b.build(c), b.build(c));
            assert_eq!(l1, l2);
            assert_eq!(l1.uncompressed()?, b.tar());
            assert_eq!(l1.diff_id, crate::oci::sha256_digest(&b.tar()));
            if c != Compression::None {
                assert!(l1.blob.len() < 10_000);
            }
        }
        Ok(())
    }
}
