//! One tar entry: reading its header (type, owner, mode, PAX times and xattrs) and applying
//! it to the layer — files, directories, links, devices, and OCI whiteouts turned into
//! overlayfs whiteouts and opaque directories.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::UnpackError;
use super::fsops::{self, Apply, Meta, Node};
use super::layers::{Layers, io_err};
use super::path::{self, RelPath, Whiteout};

/// Times beyond this (the largest `time.Time` in Unix nanoseconds, as containerd bounds
/// them) are replaced by the epoch, as are times before it.
const MAX_SECS: i64 = i64::MAX / 1_000_000_000;

/// The kind of object an entry creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Char,
    Block,
    Fifo,
}

/// Applies entries to a layer and remembers directory times for the end.
pub(crate) struct Applier<'l> {
    layers: &'l Layers,
    buf: Vec<u8>,
    dirs: Vec<(RelPath, Timestamps)>,
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

impl<'l> Applier<'l> {
    pub(crate) fn new(layers: &'l Layers) -> Applier<'l> {
        Applier {
            layers,
            buf: vec![0; 128 * 1024],
            dirs: Vec::new(),
            entries: 0,
            bytes: 0,
        }
    }

    pub(crate) fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        self.entries += 1;
        let raw_path = entry.path_bytes().into_owned();
        let path = RelPath::clean(&raw_path);
        let hdr = entry.header();
        let kind = match hdr.entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // Old tars mark directories with a trailing slash on a type '\0' entry.
                if hdr.as_bytes()[156] == 0 && raw_path.ends_with(b"/") {
                    Kind::Dir
                } else {
                    Kind::File
                }
            }
            EntryType::Directory => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link => Kind::Hardlink,
            EntryType::Char => Kind::Char,
            EntryType::Block => Kind::Block,
            EntryType::Fifo => Kind::Fifo,
            EntryType::XGlobalHeader => {
                tracing::debug!("pax global header ignored");
                return Ok(());
            }
            other => {
                return Err(UnpackError::UnsupportedEntryType {
                    path: path.display(),
                    kind: char::from(other.as_byte()),
                });
            }
        };
        let Some(name) = path.name() else {
            tracing::debug!(name = %String::from_utf8_lossy(&raw_path), "entry resolving to the layer root ignored");
            return Ok(());
        };
        match path::classify(name) {
            Whiteout::No => {}
            Whiteout::Opaque => return self.opaque(&path.parent()),
            Whiteout::Meta => {
                tracing::debug!(path = ?path.display(), "whiteout metadata entry skipped");
                return Ok(());
            }
            Whiteout::Delete(victim) => {
                let victim = victim.to_os_string();
                return self.whiteout(&path.parent(), &victim);
            }
            Whiteout::Invalid => {
                return Err(UnpackError::InvalidWhiteout {
                    path: path.display(),
                });
            }
        }
        let meta = read_meta(entry, &path)?;
        match kind {
            Kind::File => self.file(entry, &path, &meta),
            Kind::Dir => self.dir(&path, &meta),
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                self.create(&path, &meta, FileType::Symlink, |dir, name| {
                    rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, name)
                })
            }
            Kind::Hardlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                self.hardlink(&path, &RelPath::clean(&target), &meta)
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let hdr = entry.header();
                let p = &path;
                let bad = |field| {
                    move |source| UnpackError::InvalidHeader {
                        path: p.display(),
                        field,
                        source,
                    }
                };
                let (ft, dev) = match kind {
                    Kind::Char | Kind::Block => {
                        let major = hdr
                            .device_major()
                            .map_err(bad("device major"))?
                            .unwrap_or(0);
                        let minor = hdr
                            .device_minor()
                            .map_err(bad("device minor"))?
                            .unwrap_or(0);
                        let ft = if kind == Kind::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                    _ => (FileType::Fifo, 0),
                };
                let mode = Mode::from_raw_mode(meta.mode);
                self.create(&path, &meta, ft, |dir, name| {
                    rustix::fs::mknodat(dir, name, ft, mode, dev)
                })
            }
        }
    }

    /// Sets directory times, now that nothing will be created in them any more. A directory
    /// since replaced by something else (or now behind a symlink) is left alone.
    pub(crate) fn finish(self) -> Result<(), UnpackError> {
        for (path, ts) in &self.dirs {
            let Some(name) = path.name() else { continue };
            let Ok(dir) = self.layers.open_dir(&path.parent()) else {
                continue;
            };
            match fsops::stat_at(dir.as_fd(), name) {
                Ok(Some(st)) if fsops::is_dir(&st) => {
                    fsops::set_times(Node::At(dir.as_fd(), name), ts)
                        .map_err(io_err("set times of", path))?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Regular file: whatever was there is removed, then the file is created with `O_EXCL`
    /// (so never through a symlink) and filled from the tar.
    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &RelPath,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent_of(path)?;
        fsops::remove_all(dir.as_fd(), name).map_err(io_err("remove existing", path))?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err("create", path))?;
        let mut file = std::fs::File::from(fd);
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(UnpackError::ReadEntry {
                        path: path.display(),
                        source,
                    });
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|source| UnpackError::Io {
                    op: "write",
                    path: path.display(),
                    source,
                })?;
            written += n as u64;
        }
        if written != entry.size() {
            return Err(UnpackError::TruncatedEntry {
                path: path.display(),
                expected: entry.size(),
                actual: written,
            });
        }
        self.bytes += written;
        fsops::apply_meta(
            Node::Fd(file.as_fd()),
            meta,
            FileType::RegularFile,
            Apply::ALL,
        )
        .map_err(io_err("set metadata of", path))
    }

    /// Directory: an existing directory is kept (its metadata updated), anything else replaced.
    /// A directory replacing a whiteout is opaque: the lower one was deleted, not merged.
    fn dir(&mut self, path: &RelPath, meta: &Meta) -> Result<(), UnpackError> {
        let (dir, name) = self.parent_of(path)?;
        let mut opaque = false;
        match fsops::stat_at(dir.as_fd(), name).map_err(io_err("stat", path))? {
            Some(st) if fsops::is_dir(&st) => {}
            existing => {
                if let Some(st) = existing {
                    opaque = fsops::is_whiteout(&st);
                    fsops::remove_all(dir.as_fd(), name)
                        .map_err(io_err("remove existing", path))?;
                }
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700))
                    .map_err(io_err("mkdir", path))?;
            }
        }
        let d = fsops::open_subdir(dir.as_fd(), name).map_err(io_err("open", path))?;
        if opaque {
            fsops::set_opaque(d.as_fd()).map_err(io_err("set opaque xattr on", path))?;
        }
        fsops::apply_meta(
            Node::Fd(d.as_fd()),
            meta,
            FileType::Directory,
            Apply::NO_TIMES,
        )
        .map_err(io_err("set metadata of", path))?;
        self.dirs.push((path.clone(), meta.timestamps()));
        Ok(())
    }

    /// Symlinks, devices and FIFOs: replace what is there, create with `make`, set metadata.
    fn create(
        &mut self,
        path: &RelPath,
        meta: &Meta,
        ft: FileType,
        make: impl FnOnce(BorrowedFd<'_>, &OsStr) -> Result<(), Errno>,
    ) -> Result<(), UnpackError> {
        let (dir, name) = self.parent_of(path)?;
        fsops::remove_all(dir.as_fd(), name).map_err(io_err("remove existing", path))?;
        make(dir.as_fd(), name).map_err(io_err("create", path))?;
        fsops::apply_meta(Node::At(dir.as_fd(), name), meta, ft, Apply::ALL)
            .map_err(io_err("set metadata of", path))
    }

    /// Hardlink: the target is found (and copied up from a parent layer if need be) before
    /// anything at `path` is removed; then `linkat(AT_EMPTY_PATH)` links the very inode found.
    /// Like containerd, the entry's metadata is applied to the linked inode — except that it is
    /// only chowned if the owner differs, so a no-op chown does not strip its capabilities.
    fn hardlink(
        &mut self,
        path: &RelPath,
        target: &RelPath,
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        let tfd = self.hardlink_target(path, target)?;
        let tst = rustix::fs::fstat(&tfd).map_err(io_err("stat", target))?;
        let ft = fsops::file_type(&tst);
        if ft == FileType::Directory {
            return Err(UnpackError::HardlinkToDirectory {
                path: path.display(),
            });
        }
        let (dir, name) = self.parent_of(path)?;
        match fsops::stat_at(dir.as_fd(), name).map_err(io_err("stat", path))? {
            Some(st) if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino => {}
            existing => {
                if existing.is_some() {
                    fsops::remove_all(dir.as_fd(), name)
                        .map_err(io_err("remove existing", path))?;
                }
                rustix::fs::linkat(&tfd, "", &dir, name, AtFlags::EMPTY_PATH)
                    .map_err(io_err("link", path))?;
            }
        }
        let chown = (tst.st_uid, tst.st_gid) != (meta.uid, meta.gid);
        fsops::apply_meta(
            Node::At(dir.as_fd(), name),
            meta,
            ft,
            Apply { chown, times: true },
        )
        .map_err(io_err("set metadata of", path))
    }

    /// Opens (`O_PATH`, not following the final symlink) what a hardlink names: in this layer
    /// first (symlinks in its parents resolved in-root), else in the merged view of the parent
    /// layers, copying it up into this layer.
    fn hardlink_target(&self, path: &RelPath, target: &RelPath) -> Result<OwnedFd, UnpackError> {
        let missing = || UnpackError::HardlinkTargetMissing {
            path: path.display(),
            target: target.display(),
        };
        let Some(name) = target.name() else {
            return Err(missing());
        };
        let open = |dir: &OwnedFd| {
            rustix::fs::openat(
                dir,
                name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
        };
        match self.layers.open_dir(&target.parent()) {
            Ok(dir) => match open(&dir) {
                Ok(fd) => {
                    let st = rustix::fs::fstat(&fd).map_err(io_err("stat", target))?;
                    if fsops::is_whiteout(&st) {
                        return Err(missing());
                    }
                    return Ok(fd);
                }
                Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err("open hardlink target", target)(e)),
            },
            Err(Errno::NOENT | Errno::NOTDIR) => {}
            Err(e) => return Err(io_err("open hardlink target", target)(e)),
        }
        let (idx, real) = match self.layers.resolve_merged(target) {
            Ok(Some(found)) => found,
            Ok(None) | Err(Errno::LOOP) => return Err(missing()),
            Err(e) => return Err(io_err("resolve hardlink target", target)(e)),
        };
        if idx > 0 {
            self.layers.copy_up(idx, &real)?;
        }
        let Some(real_name) = real.name() else {
            return Err(missing());
        };
        let dir = self
            .layers
            .open_dir(&real.parent())
            .map_err(io_err("open hardlink target", &real))?;
        rustix::fs::openat(
            &dir,
            real_name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open hardlink target", &real))
    }

    /// `.wh.victim` in `parent`: an overlay whiteout (char device 0:0, mode 0, root-owned)
    /// hides `victim` of the lower layers. Per the OCI layer spec a whiteout never deletes an
    /// entry of its own layer, whatever the order: an existing non-directory already hides the
    /// lower one, and an existing directory is made opaque instead.
    fn whiteout(&mut self, parent: &RelPath, victim: &OsStr) -> Result<(), UnpackError> {
        let path = parent.join(victim);
        let dir = self.layers.ensure_dir(parent)?;
        match fsops::stat_at(dir.as_fd(), victim).map_err(io_err("stat", &path))? {
            None => rustix::fs::mknodat(&dir, victim, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(io_err("create whiteout", &path)),
            Some(st) if fsops::is_dir(&st) => {
                let d = fsops::open_subdir(dir.as_fd(), victim).map_err(io_err("open", &path))?;
                fsops::set_opaque(d.as_fd()).map_err(io_err("set opaque xattr on", &path))
            }
            Some(_) => Ok(()),
        }
    }

    /// `.wh..wh..opq` in `dir`: `dir` (created if missing) hides its lower-layer content; its
    /// entries from this layer, before or after the marker, stay.
    fn opaque(&mut self, dir: &RelPath) -> Result<(), UnpackError> {
        let d = self.layers.ensure_dir(dir)?;
        let rd = rustix::fs::openat(
            &d,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err("open", dir))?;
        fsops::set_opaque(rd.as_fd()).map_err(io_err("set opaque xattr on", dir))
    }

    /// The directory that holds `path` (created if missing) and the final name.
    fn parent_of<'p>(
        &self,
        path: &'p RelPath,
    ) -> Result<(OwnedFd, &'p std::ffi::OsStr), UnpackError> {
        let name = path.name().ok_or_else(|| UnpackError::Io {
            op: "create",
            path: path.display(),
            source: fsops::to_io(Errno::EXIST),
        })?;
        Ok((self.layers.ensure_dir(&path.parent())?, name))
    }
}

/// Owner, mode, times and xattrs of an entry: ustar/GNU fields, overridden by PAX records
/// (`uid`/`gid` are applied by the tar crate; `mtime`/`atime` with fractions and
/// `SCHILY.xattr.*` here).
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, path: &RelPath) -> Result<Meta, UnpackError> {
    let bad = |field: &'static str| {
        move |source| UnpackError::InvalidHeader {
            path: path.display(),
            field,
            source,
        }
    };
    let mut pax_mtime = None;
    let mut pax_atime = None;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(bad("pax records"))? {
        for ext in exts {
            let ext = ext.map_err(bad("pax records"))?;
            let key = ext.key_bytes();
            if key == b"mtime" {
                pax_mtime = parse_pax_time(ext.value_bytes());
            } else if key == b"atime" {
                pax_atime = parse_pax_time(ext.value_bytes());
            } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    let hdr = entry.header();
    let id = |v: u64| {
        u32::try_from(v).map_err(|_| UnpackError::IdOutOfRange {
            path: path.display(),
            id: v,
        })
    };
    let old = hdr.as_old();
    let uid = id(numeric(hdr.uid(), &old.uid).map_err(bad("uid"))?)?;
    let gid = id(numeric(hdr.gid(), &old.gid).map_err(bad("gid"))?)?;
    let mode = numeric(hdr.mode().map(u64::from), &old.mode).map_err(bad("mode"))? as u32 & 0o7777;
    let mtime = match pax_mtime {
        Some(t) => t,
        None => bound(
            i64::try_from(numeric(hdr.mtime(), &old.mtime).map_err(bad("mtime"))?).unwrap_or(-1),
            0,
        ),
    };
    let gnu_atime = hdr
        .as_gnu()
        .and_then(|g| g.atime().ok())
        .filter(|t| *t != 0)
        .map(|t| bound(i64::try_from(t).unwrap_or(-1), 0));
    // containerd uses the later of atime and mtime.
    let atime = match pax_atime.or(gnu_atime) {
        Some(a) if (a.tv_sec, a.tv_nsec) > (mtime.tv_sec, mtime.tv_nsec) => a,
        _ => mtime,
    };
    Ok(Meta {
        uid,
        gid,
        mode,
        atime,
        mtime,
        xattrs,
    })
}

/// A numeric header field; an empty one (all NUL or spaces) reads as 0, as Go's reader does.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    match parsed {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        r => r,
    }
}

/// The epoch for times out of containerd's range, else the time itself.
fn bound(secs: i64, nsecs: i64) -> Timespec {
    if (0..=MAX_SECS).contains(&secs) {
        Timespec {
            tv_sec: secs,
            tv_nsec: nsecs,
        }
    } else {
        Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        }
    }
}

/// Parses a PAX time, `secs[.fraction]`, possibly negative; `None` if malformed.
fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if neg {
        return Some(bound(-1, 0));
    }
    let secs: i64 = secs.parse().unwrap_or(i64::MAX);
    let mut nanos = 0i64;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(bound(secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpack_pax_times() {
        let t = |s: &str| parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(
            t("1700000000.123456789123"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(t("-5.5"), Some((0, 0)));
        assert_eq!(t("99999999999999999999999"), Some((0, 0)));
        assert_eq!(t("abc"), None);
        assert_eq!(t(""), None);
        assert_eq!(t("1.x"), None);
    }
}
