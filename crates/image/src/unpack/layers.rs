//! The layer being written (a directory fd everything is resolved in) and its parent layers:
//! creating missing parents, looking paths up in the merged overlay view (whiteouts, opaque
//! directories, symlinks resolved as if the merged root were `/`) and copying a lower file up.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::UnpackError;
use super::fsops::{self, Apply, Meta, Node};
use super::path::RelPath;

/// Symlinks followed while resolving one hardlink target before giving up (as `ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// An open layer directory and its path (for error messages).
struct Layer {
    path: PathBuf,
    fd: OwnedFd,
}

/// The layer being unpacked (index 0 in lookups) and its parents, top-most first.
pub(crate) struct Layers {
    root: Layer,
    /// Real path of the root, to map an fd back to a layer-relative path.
    root_real: Option<PathBuf>,
    lowers: Vec<Layer>,
}

/// Builds an `UnpackError::Io` for an operation on a layer path.
pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a RelPath,
) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Io {
        op,
        path: path.display(),
        source: fsops::to_io(e),
    }
}

fn open_layer(path: &Path) -> Result<Layer, UnpackError> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenLayer {
        path: path.to_path_buf(),
        source: fsops::to_io(e),
    })?;
    Ok(Layer {
        path: path.to_path_buf(),
        fd,
    })
}

impl Layers {
    pub(crate) fn open(target: &Path, lowers: &[PathBuf]) -> Result<Layers, UnpackError> {
        let root = open_layer(target)?;
        let root_real = std::fs::read_link(fsops::proc_fd(root.fd.as_fd())).ok();
        let lowers = lowers
            .iter()
            .map(|p| open_layer(p))
            .collect::<Result<_, _>>()?;
        Ok(Layers {
            root,
            root_real,
            lowers,
        })
    }

    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.fd.as_fd()
    }

    /// Opens directory `path` of this layer (`O_PATH`), symlinks resolved in-root.
    pub(crate) fn open_dir(&self, path: &RelPath) -> Result<OwnedFd, Errno> {
        fsops::open_dir_in_root(self.root(), &path.to_path())
    }

    /// Opens directory `path` of this layer, creating what is missing as containerd does:
    /// mode 0755, owned by root, unless a lower layer has that directory, whose owner, mode,
    /// times and xattrs are then copied (otherwise the new upper directory would mask them in
    /// the merged view). A whiteout in the way becomes an opaque directory.
    pub(crate) fn ensure_dir(&self, path: &RelPath) -> Result<OwnedFd, UnpackError> {
        match self.open_dir(path) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT | Errno::NOTDIR) => {}
            Err(e) => return Err(io_err("resolve directory", path)(e)),
        }
        let mut cur = self
            .open_dir(&RelPath::root())
            .map_err(io_err("open", &RelPath::root()))?;
        for (i, name) in path.components().iter().enumerate() {
            let prefix = path.prefix(i + 1);
            let open_err = match self.open_dir(&prefix) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(e @ (Errno::NOENT | Errno::NOTDIR)) => e,
                Err(e) => return Err(io_err("resolve directory", &prefix)(e)),
            };
            // `cur` is the (resolved) directory holding `name`, which is missing or not a dir.
            let err = io_err("create parent directory", &prefix);
            let existing = fsops::stat_at(cur.as_fd(), name).map_err(io_err("stat", &prefix))?;
            let whiteout = match existing {
                None => false,
                Some(st) if fsops::is_whiteout(&st) => {
                    rustix::fs::unlinkat(&cur, name.as_os_str(), rustix::fs::AtFlags::empty())
                        .map_err(io_err("remove whiteout", &prefix))?;
                    true
                }
                // A dangling symlink (or one to a non-directory) is not followed to create
                // its target; containerd would create it, we refuse.
                Some(st) if fsops::file_type(&st) == FileType::Symlink => {
                    return Err(err(open_err));
                }
                Some(_) => return Err(err(Errno::NOTDIR)),
            };
            rustix::fs::mkdirat(&cur, name.as_os_str(), Mode::from_raw_mode(0o755))
                .map_err(io_err("mkdir", &prefix))?;
            let dir = fsops::open_subdir(cur.as_fd(), name).map_err(io_err("open", &prefix))?;
            rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o755))
                .map_err(io_err("chmod", &prefix))?;
            if whiteout {
                // The lower directory was deleted; the new one must not merge with it.
                fsops::set_opaque(dir.as_fd()).map_err(io_err("set opaque xattr on", &prefix))?;
            } else if let Some(real) = self
                .root_real
                .as_deref()
                .and_then(|r| fsops::rel_path_of(dir.as_fd(), r))
            {
                self.copy_dir_info(&real, dir.as_fd())?;
            }
            cur = rustix::fs::openat(
                &cur,
                name.as_os_str(),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err("open", &prefix))?;
        }
        Ok(cur)
    }

    /// Copies owner, mode, times and xattrs of the directory the lower layers show at `path`
    /// onto `dst` (a directory just created in this layer, opened for reading), if they show
    /// one.
    fn copy_dir_info(&self, path: &RelPath, dst: BorrowedFd<'_>) -> Result<(), UnpackError> {
        let lowers: Vec<BorrowedFd<'_>> = self.lowers.iter().map(|l| l.fd.as_fd()).collect();
        let Some((idx, st)) =
            lookup(&lowers, path).map_err(io_err("look up in parent layers", path))?
        else {
            return Ok(());
        };
        if !fsops::is_dir(&st) {
            return Ok(());
        }
        let lower = &self.lowers[idx];
        let lower_err = |e| UnpackError::Io {
            op: "read parent layer directory",
            path: lower.path.join(path.to_path()),
            source: fsops::to_io(e),
        };
        let src = fsops::open_dir_beneath(lower.fd.as_fd(), &path.to_path()).map_err(lower_err)?;
        let mut meta = Meta::from_stat(&st);
        meta.xattrs = fsops::read_xattrs(src.as_fd(), OsStr::new(".")).map_err(lower_err)?;
        fsops::apply_meta(Node::Fd(dst), &meta, FileType::Directory, Apply::ALL)
            .map_err(io_err("copy parent directory metadata to", path))
    }

    /// All layers, this one first.
    fn all(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.root())
            .chain(self.lowers.iter().map(|l| l.fd.as_fd()))
            .collect()
    }

    /// Resolves `path` in the merged view of this layer over its parents, following symlinks
    /// (absolute ones and `..` stay inside the merged root) except in the final component.
    /// Returns the layer index (0 = this layer) that provides the object and its real path.
    pub(crate) fn resolve_merged(&self, path: &RelPath) -> Result<Option<(usize, RelPath)>, Errno> {
        let layers = self.all();
        let mut resolved: Vec<OsString> = Vec::new();
        let mut queue: VecDeque<OsString> = path.components().iter().cloned().collect();
        let mut links = 0;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                resolved.pop();
                continue;
            }
            let cand = RelPath::from_components(&resolved).join(&c);
            let Some((idx, st)) = lookup(&layers, &cand)? else {
                return Ok(None);
            };
            let last = queue.iter().all(|c| c.is_empty() || c == ".");
            if last {
                return Ok(Some((idx, cand)));
            }
            match fsops::file_type(&st) {
                FileType::Directory => resolved.push(c),
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let parent = fsops::open_dir_beneath(layers[idx], &cand.parent().to_path())?;
                    let target = fsops::read_link(parent.as_fd(), &c)?;
                    let bytes = target.as_bytes();
                    if bytes.starts_with(b"/") {
                        resolved.clear();
                    }
                    for part in bytes.split(|b| *b == b'/').rev() {
                        queue.push_front(OsStr::from_bytes(part).to_os_string());
                    }
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Copies the object at real path `path` of layer `idx` (≥ 1) up into this layer, as
    /// overlayfs does before it can link to it: content, owner, mode, xattrs and times.
    pub(crate) fn copy_up(&self, idx: usize, path: &RelPath) -> Result<(), UnpackError> {
        let Some(lower) = idx.checked_sub(1).and_then(|i| self.lowers.get(i)) else {
            return Ok(());
        };
        let Some(name) = path.name() else {
            return Err(UnpackError::Io {
                op: "copy up",
                path: path.display(),
                source: fsops::to_io(Errno::ISDIR),
            });
        };
        let lower_path = lower.path.join(path.to_path());
        let lower_err = |e| UnpackError::Io {
            op: "read parent layer file",
            path: lower_path.clone(),
            source: fsops::to_io(e),
        };
        let src_dir = fsops::open_dir_beneath(lower.fd.as_fd(), &path.parent().to_path())
            .map_err(lower_err)?;
        let st = rustix::fs::statat(&src_dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(lower_err)?;
        let mut meta = Meta::from_stat(&st);
        meta.xattrs = fsops::read_xattrs(src_dir.as_fd(), name).map_err(lower_err)?;
        let dst_dir = self.ensure_dir(&path.parent())?;
        let err = io_err("copy up", path);
        let ft = fsops::file_type(&st);
        tracing::debug!(path = ?path.display(), layer = ?lower.path, "copying up hardlink target");
        match ft {
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    &src_dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(lower_err)?;
                let dst = rustix::fs::openat(
                    &dst_dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(err)?;
                let mut src = std::fs::File::from(src);
                let mut dst = std::fs::File::from(dst);
                std::io::copy(&mut src, &mut dst).map_err(|source| UnpackError::Io {
                    op: "copy up",
                    path: path.display(),
                    source,
                })?;
                fsops::apply_meta(Node::Fd(dst.as_fd()), &meta, ft, Apply::ALL)
                    .map_err(io_err("copy up metadata of", path))
            }
            FileType::Symlink => {
                let target = fsops::read_link(src_dir.as_fd(), name).map_err(lower_err)?;
                rustix::fs::symlinkat(target.as_os_str(), &dst_dir, name).map_err(err)?;
                fsops::apply_meta(Node::At(dst_dir.as_fd(), name), &meta, ft, Apply::ALL)
                    .map_err(io_err("copy up metadata of", path))
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(
                    &dst_dir,
                    name,
                    ft,
                    Mode::from_raw_mode(meta.mode),
                    st.st_rdev,
                )
                .map_err(err)?;
                fsops::apply_meta(Node::At(dst_dir.as_fd(), name), &meta, ft, Apply::ALL)
                    .map_err(io_err("copy up metadata of", path))
            }
            _ => Err(UnpackError::HardlinkToDirectory {
                path: path.display(),
            }),
        }
    }
}

/// `lstat` of `path` in one layer without following any symlink; `None` if absent (or if a
/// component is not a plain directory in that layer).
fn lstat_in(layer: BorrowedFd<'_>, path: &RelPath) -> Result<Option<Stat>, Errno> {
    let Some(name) = path.name() else {
        return rustix::fs::fstat(layer).map(Some);
    };
    let dir = match fsops::open_dir_beneath(layer, &path.parent().to_path()) {
        Ok(d) => d,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    fsops::stat_at(dir.as_fd(), name)
}

fn opaque_in(layer: BorrowedFd<'_>, path: &RelPath) -> Result<bool, Errno> {
    let dir = fsops::open_dir_beneath(layer, &path.to_path())?;
    fsops::is_opaque(dir.as_fd())
}

/// Looks `path` up lexically (no symlink followed) across `layers`, top-most first, with
/// overlayfs' rules: the top-most layer holding a name defines it; a whiteout hides it; a
/// directory merges with the same directory below until an opaque directory or a non-directory
/// stops the merge. Returns the defining layer's index and its `lstat`.
pub(crate) fn lookup(
    layers: &[BorrowedFd<'_>],
    path: &RelPath,
) -> Result<Option<(usize, Stat)>, Errno> {
    let mut active: Vec<usize> = (0..layers.len()).collect();
    let n = path.components().len();
    for i in 0..n {
        let prefix = path.prefix(i + 1);
        let mut defining: Option<(usize, Stat)> = None;
        let mut next = Vec::new();
        for &l in &active {
            let Some(st) = lstat_in(layers[l], &prefix)? else {
                continue;
            };
            if fsops::is_whiteout(&st) {
                break;
            }
            let dir = fsops::is_dir(&st);
            if defining.is_none() {
                defining = Some((l, st));
            }
            if !dir {
                break;
            }
            next.push(l);
            if opaque_in(layers[l], &prefix)? {
                break;
            }
        }
        let Some((l, st)) = defining else {
            return Ok(None);
        };
        if i + 1 == n {
            return Ok(Some((l, st)));
        }
        if !fsops::is_dir(&st) {
            return Ok(None);
        }
        active = next;
    }
    Ok(None)
}
