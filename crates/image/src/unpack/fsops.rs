//! Low-level filesystem operations relative to directory fds: confined `openat2` resolution,
//! non-following stat/remove, and applying ownership, xattrs, mode and times without ever
//! following a symlink in the final component.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{
    AtFlags, CWD, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;

/// The xattr overlayfs reads to decide that a directory hides its lower-layer content.
pub(crate) const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Extended attributes as `(name, value)` pairs.
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Ownership, permission bits, times and xattrs to give a filesystem object.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits including setuid/setgid/sticky (`0o7777`).
    pub(crate) mode: u32,
    pub(crate) atime: Timespec,
    pub(crate) mtime: Timespec,
    /// `(name, value)` pairs; `trusted.*` names are never applied.
    pub(crate) xattrs: Xattrs,
}

impl Meta {
    pub(crate) fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }

    /// Metadata of an existing object (xattrs are filled in separately).
    pub(crate) fn from_stat(st: &Stat) -> Meta {
        Meta {
            uid: st.st_uid,
            gid: st.st_gid,
            mode: st.st_mode & 0o7777,
            atime: Timespec {
                tv_sec: st.st_atime,
                tv_nsec: i64::try_from(st.st_atime_nsec).unwrap_or(0),
            },
            mtime: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: i64::try_from(st.st_mtime_nsec).unwrap_or(0),
            },
            xattrs: Vec::new(),
        }
    }
}

pub(crate) fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

pub(crate) fn is_dir(st: &Stat) -> bool {
    file_type(st) == FileType::Directory
}

/// An overlayfs whiteout: a character device with device number 0:0.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    file_type(st) == FileType::CharacterDevice && st.st_rdev == 0
}

/// `openat2` retried on `EAGAIN` (which `RESOLVE_IN_ROOT`/`RESOLVE_BENEATH` return when a
/// concurrent rename makes the kernel unsure the walk stayed inside).
pub(crate) fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    resolve: ResolveFlags,
) -> Result<OwnedFd, Errno> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, path, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < 32 => tries += 1,
            r => return r,
        }
    }
}

/// Opens `path` below `root` as an `O_PATH` directory, resolving every symlink as if `root`
/// were `/` (so `..` and absolute links cannot leave it) and refusing magic links.
pub(crate) fn open_dir_in_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY,
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Opens `path` below `layer` as an `O_PATH` directory without following any symlink at all:
/// used for lower layers once a path has been resolved to a real one.
pub(crate) fn open_dir_beneath(layer: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, Errno> {
    openat2(
        layer,
        path,
        OFlags::PATH | OFlags::DIRECTORY,
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Stat>, Errno> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens directory `name` in `dir` for reading (never through a symlink).
pub(crate) fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes `name` from `dir`, recursively if it is a directory, never following symlinks.
/// Iterative, so a very deep tree cannot overflow the stack.
pub(crate) fn remove_all(dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let Some(st) = stat_at(dir, name)? else {
        return Ok(());
    };
    if !is_dir(&st) {
        return rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
    let mut stack: Vec<(Dir, OsString)> = vec![(Dir::new(open_subdir(dir, name)?)?, name.into())];
    loop {
        let Some((current, _)) = stack.last_mut() else {
            return Ok(());
        };
        match current.read() {
            Some(Err(e)) => return Err(e),
            Some(Ok(ent)) => {
                let child = OsStr::from_bytes(ent.file_name().to_bytes());
                if child == "." || child == ".." {
                    continue;
                }
                let cfd = current.fd()?;
                let child_is_dir = match ent.file_type() {
                    FileType::Directory => true,
                    FileType::Unknown => stat_at(cfd, child)?.is_some_and(|s| is_dir(&s)),
                    _ => false,
                };
                if child_is_dir {
                    let sub = Dir::new(open_subdir(cfd, child)?)?;
                    let child = child.to_os_string();
                    stack.push((sub, child));
                } else {
                    rustix::fs::unlinkat(cfd, child, AtFlags::empty())?;
                }
            }
            None => {
                let Some((_, done)) = stack.pop() else {
                    return Ok(());
                };
                match stack.last() {
                    Some((p, _)) => rustix::fs::unlinkat(p.fd()?, &done, AtFlags::REMOVEDIR)?,
                    None => {
                        rustix::fs::unlinkat(dir, &done, AtFlags::REMOVEDIR)?;
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// `/proc/self/fd/<fd>`: the magic link that reaches exactly the object behind `fd`.
pub(crate) fn proc_fd(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// `/proc/self/fd/<dir>/<name>`: lets the `l*xattr` calls (which take paths) act on `name`
/// in an already resolved directory without following `name` itself.
pub(crate) fn proc_at(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = proc_fd(dir).into_os_string();
    p.push("/");
    p.push(name);
    PathBuf::from(p)
}

/// Where metadata is applied: an open (non-`O_PATH`) fd, or a name in a directory.
#[derive(Clone, Copy)]
pub(crate) enum Node<'a> {
    Fd(BorrowedFd<'a>),
    At(BorrowedFd<'a>, &'a OsStr),
}

/// Sets the xattrs of `meta` on `node`. `trusted.*` (overlayfs' own `trusted.overlay.*`
/// included) is never taken from a layer; unsupported ones are skipped, as containerd does.
pub(crate) fn set_xattrs(
    node: Node<'_>,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    ft: FileType,
) -> Result<(), Errno> {
    for (name, value) in xattrs {
        if name.starts_with(b"trusted.") {
            tracing::debug!(xattr = %String::from_utf8_lossy(name), "skipping trusted xattr from layer");
            continue;
        }
        let name = OsStr::from_bytes(name);
        let r = match node {
            Node::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
            Node::At(dir, n) => {
                rustix::fs::lsetxattr(proc_at(dir, n), name, value, XattrFlags::empty())
            }
        };
        match r {
            Ok(()) => {}
            Err(Errno::NOTSUP) => {
                tracing::warn!(xattr = ?name, "xattr not supported by the snapshot filesystem, skipped");
            }
            Err(Errno::PERM)
                if name.as_bytes().starts_with(b"user.")
                    && ft != FileType::RegularFile
                    && ft != FileType::Directory =>
            {
                tracing::warn!(xattr = ?name, "user xattr on a special file, skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// chmod without following a symlink: symlinks have no mode of their own on Linux, so they
/// are left alone; anything else is reached through its `O_PATH` fd's magic link.
fn chmod_nofollow(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<(), Errno> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    if file_type(&rustix::fs::fstat(&fd)?) == FileType::Symlink {
        return Ok(());
    }
    rustix::fs::chmodat(
        CWD,
        proc_fd(fd.as_fd()),
        Mode::from_raw_mode(mode),
        AtFlags::empty(),
    )
}

/// Which parts of [`Meta`] [`apply_meta`] applies besides xattrs and mode.
#[derive(Clone, Copy)]
pub(crate) struct Apply {
    /// chown even if the owner is already right (it also clears setuid and capabilities).
    pub(crate) chown: bool,
    pub(crate) times: bool,
}

impl Apply {
    pub(crate) const ALL: Apply = Apply {
        chown: true,
        times: true,
    };
    /// Directories: times come after their children are written.
    pub(crate) const NO_TIMES: Apply = Apply {
        chown: true,
        times: false,
    };
}

/// Applies ownership, then xattrs (a chown clears `security.capability`), then the mode (a
/// chown clears setuid/setgid), then atime/mtime.
pub(crate) fn apply_meta(
    node: Node<'_>,
    meta: &Meta,
    ft: FileType,
    what: Apply,
) -> Result<(), Errno> {
    let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
    if what.chown {
        match node {
            Node::Fd(fd) => rustix::fs::fchown(fd, uid, gid)?,
            Node::At(dir, name) => {
                rustix::fs::chownat(dir, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)?
            }
        }
    }
    set_xattrs(node, &meta.xattrs, ft)?;
    if ft != FileType::Symlink {
        match node {
            Node::Fd(fd) => rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))?,
            Node::At(dir, name) => chmod_nofollow(dir, name, meta.mode)?,
        }
    }
    if what.times {
        set_times(node, &meta.timestamps())?;
    }
    Ok(())
}

pub(crate) fn set_times(node: Node<'_>, ts: &Timestamps) -> Result<(), Errno> {
    match node {
        Node::Fd(fd) => rustix::fs::futimens(fd, ts),
        Node::At(dir, name) => rustix::fs::utimensat(dir, name, ts, AtFlags::SYMLINK_NOFOLLOW),
    }
}

/// Marks an open directory opaque for overlayfs.
pub(crate) fn set_opaque(dir: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::fs::fsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
}

/// Whether an open (`O_PATH` is fine) directory carries `trusted.overlay.opaque=y`.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>) -> Result<bool, Errno> {
    let mut buf = [0u8; 8];
    match rustix::fs::getxattr(proc_fd(dir), OVERLAY_OPAQUE_XATTR, &mut buf[..]) {
        Ok(n) => Ok(&buf[..n] == b"y"),
        Err(Errno::NODATA | Errno::NOTSUP | Errno::RANGE) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads every xattr of `name` in `dir` (not following it), except `trusted.*`.
pub(crate) fn read_xattrs(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Xattrs, Errno> {
    let path = proc_at(dir, name);
    let list = match read_sized(|buf| rustix::fs::llistxattr(&path, buf)) {
        Ok(l) => l,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for key in list.split(|b| *b == 0).filter(|k| !k.is_empty()) {
        if key.starts_with(b"trusted.") {
            continue;
        }
        let k = OsStr::from_bytes(key);
        match read_sized(|buf| rustix::fs::lgetxattr(&path, k, buf)) {
            Ok(v) => out.push((key.to_vec(), v)),
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Calls a `*xattr` getter with a growing buffer until the value fits.
fn read_sized(mut f: impl FnMut(&mut [u8]) -> Result<usize, Errno>) -> Result<Vec<u8>, Errno> {
    let mut size = 256;
    loop {
        let mut buf = vec![0u8; size];
        match f(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) if size < (1 << 20) => size *= 4,
            Err(e) => return Err(e),
        }
    }
}

/// Reads the target of symlink `name` in `dir`, verbatim.
pub(crate) fn read_link(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OsString, Errno> {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(OsString::from_vec(target.into_bytes()))
}

/// Path of an open fd relative to `root_real` (the real path of the layer root), if it is
/// inside it.
pub(crate) fn rel_path_of(fd: BorrowedFd<'_>, root_real: &Path) -> Option<super::path::RelPath> {
    let real = std::fs::read_link(proc_fd(fd)).ok()?;
    let rel = real.strip_prefix(root_real).ok()?;
    Some(super::path::RelPath::clean(rel.as_os_str().as_bytes()))
}

pub(crate) fn to_io(e: Errno) -> io::Error {
    io::Error::from(e)
}
