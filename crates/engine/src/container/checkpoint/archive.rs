//! The two tars of a checkpoint: the writable layer as an OCI layer (`rootfs-diff.tar`: overlay
//! whiteouts become `.wh.<name>` files, opaque directories get `.wh..wh..opq`, hard links stay
//! links) and the archive itself, written beside its location and renamed into place only when
//! complete. Both stop at the deadline; a partial file never stays behind.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::EngineError;

/// overlayfs marks a directory that hides the lower layers' one with this xattr.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// OCI layer names for a deleted entry and an opaque directory.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Why a tar could not be written.
#[derive(Debug)]
pub(super) enum ArchiveError {
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The deadline passed.
    Timeout,
}

impl ArchiveError {
    /// The engine's error; `what` names the file being written, `timeout` the limit given.
    pub(super) fn into_engine(self, what: &Path, timeout: Duration) -> EngineError {
        match self {
            ArchiveError::Io { op, path, source } => EngineError::io(op, path, source),
            ArchiveError::Timeout => EngineError::Timeout {
                what: format!("checkpoint: writing {}", what.display()),
                secs: timeout.as_secs(),
            },
        }
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| ArchiveError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn check_deadline(deadline: Instant) -> Result<(), ArchiveError> {
    if Instant::now() > deadline {
        return Err(ArchiveError::Timeout);
    }
    Ok(())
}

/// A new file readable by its owner only (checkpoints hold every memory page of the container).
fn create_private(path: &Path) -> Result<File, ArchiveError> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))
}

/// Names in `dir`, sorted (archives come out the same for the same tree).
fn sorted_names(dir: &Path) -> Result<Vec<OsString>, ArchiveError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        names.push(entry.map_err(io_err("read", dir))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Writes the overlay upper dir `upper` as an OCI layer tar at `out`, leaving out `skip`
/// (paths relative to the rootfs: mount points, whose content lives elsewhere). A missing
/// `upper` is an empty layer.
pub(super) fn write_rootfs_diff(
    upper: &Path,
    skip: &[PathBuf],
    out: &Path,
    deadline: Instant,
) -> Result<(), ArchiveError> {
    let file = create_private(out)?;
    let mut w = DiffWriter {
        tar: tar::Builder::new(BufWriter::new(file)),
        links: HashMap::new(),
        skip,
        deadline,
        out,
    };
    if upper.is_dir() {
        w.walk(upper, Path::new(""))?;
    }
    let buf = w.tar.into_inner().map_err(io_err("write", out))?;
    buf.into_inner()
        .map_err(|e| ArchiveError::Io {
            op: "write",
            path: out.to_path_buf(),
            source: e.into_error(),
        })?
        .sync_all()
        .map_err(io_err("sync", out))
}

struct DiffWriter<'a> {
    tar: tar::Builder<BufWriter<File>>,
    /// First path of each multiply-linked file, by (device, inode).
    links: HashMap<(u64, u64), PathBuf>,
    skip: &'a [PathBuf],
    deadline: Instant,
    out: &'a Path,
}

impl DiffWriter<'_> {
    fn walk(&mut self, dir: &Path, rel: &Path) -> Result<(), ArchiveError> {
        for name in sorted_names(dir)? {
            check_deadline(self.deadline)?;
            let abs = dir.join(&name);
            let rel = rel.join(&name);
            if self.skip.contains(&rel) {
                continue;
            }
            let md = fs::symlink_metadata(&abs).map_err(io_err("stat", &abs))?;
            let ft = md.file_type();
            if ft.is_char_device() && md.rdev() == 0 {
                let mut wh = OsString::from(WHITEOUT_PREFIX);
                wh.push(&name);
                self.marker(&rel.with_file_name(wh), &md)?;
                continue;
            }
            if ft.is_socket() {
                continue; // tar has no sockets; they are recreated by whoever binds them
            }
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&md, tar::HeaderMode::Complete);
            h.set_mode(md.mode() & 0o7777);
            h.set_size(0);
            if ft.is_dir() {
                self.append(&mut h, &rel, io::empty())?;
                if is_opaque(&abs) {
                    self.marker(&rel.join(OPAQUE_MARKER), &md)?;
                }
                self.walk(&abs, &rel)?;
            } else if ft.is_file() {
                if md.nlink() > 1 {
                    let key = (md.dev(), md.ino());
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        let first = first.clone();
                        self.tar
                            .append_link(&mut h, &rel, &first)
                            .map_err(io_err("write", self.out))?;
                        continue;
                    }
                    self.links.insert(key, rel.clone());
                }
                let f = File::open(&abs).map_err(io_err("open", &abs))?;
                h.set_size(md.len());
                // The container is frozen; `take` keeps the entry its declared size anyway.
                self.append(&mut h, &rel, f.take(md.len()))?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&abs).map_err(io_err("readlink", &abs))?;
                self.tar
                    .append_link(&mut h, &rel, &target)
                    .map_err(io_err("write", self.out))?;
            } else {
                if ft.is_char_device() || ft.is_block_device() {
                    h.set_device_major(rustix::fs::major(md.rdev()))
                        .map_err(io_err("write", self.out))?;
                    h.set_device_minor(rustix::fs::minor(md.rdev()))
                        .map_err(io_err("write", self.out))?;
                }
                self.append(&mut h, &rel, io::empty())?;
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        path: &Path,
        data: impl Read,
    ) -> Result<(), ArchiveError> {
        self.tar
            .append_data(h, path, data)
            .map_err(io_err("write", self.out))
    }

    /// An empty regular file: a whiteout or the opaque marker.
    fn marker(&mut self, path: &Path, md: &fs::Metadata) -> Result<(), ArchiveError> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_mtime(md.mtime().max(0) as u64);
        self.append(&mut h, path, io::empty())
    }
}

/// Whether an overlay upper directory hides the lower layers' one.
fn is_opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(dir, OVERLAY_OPAQUE_XATTR, &mut buf[..]), Ok(n) if &buf[..n] == b"y")
}

/// One top-level entry of the archive: a file or a directory tree, under `name`.
#[derive(Debug, Clone)]
pub(super) struct Part {
    src: PathBuf,
    name: &'static str,
}

impl Part {
    pub(super) fn new(src: &Path, name: &'static str) -> Part {
        Part {
            src: src.to_path_buf(),
            name,
        }
    }
}

/// Writes `parts` as an uncompressed tar at `location` (mode 0600), replacing what is there
/// only once the archive is complete and synced. Returns its size.
pub(super) fn write_archive(
    location: &Path,
    parts: &[Part],
    deadline: Instant,
) -> Result<u64, ArchiveError> {
    let dir = location.parent().unwrap_or(Path::new("/"));
    let name = location
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.tmp",
        hex::encode(rand::random::<[u8; 6]>())
    ));
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    let mut tar = tar::Builder::new(BufWriter::new(create_private(&tmp)?));
    tar.follow_symlinks(false);
    for part in parts {
        check_deadline(deadline)?;
        let md = fs::symlink_metadata(&part.src).map_err(io_err("stat", &part.src))?;
        if md.is_dir() {
            append_tree(&mut tar, &part.src, Path::new(part.name), &tmp, deadline)?;
        } else {
            tar.append_path_with_name(&part.src, part.name)
                .map_err(io_err("write", &tmp))?;
        }
    }
    let file = tar
        .into_inner()
        .map_err(io_err("write", &tmp))?
        .into_inner()
        .map_err(|e| ArchiveError::Io {
            op: "write",
            path: tmp.clone(),
            source: e.into_error(),
        })?;
    file.sync_all().map_err(io_err("sync", &tmp))?;
    let size = file.metadata().map_err(io_err("stat", &tmp))?.len();
    fs::rename(&tmp, location).map_err(io_err("rename", location))?;
    guard.0 = None;
    husk_sys::fs::sync_dir(dir).map_err(io_err("sync", dir))?;
    Ok(size)
}

/// A directory and everything below it, under `name`.
fn append_tree(
    tar: &mut tar::Builder<BufWriter<File>>,
    src: &Path,
    name: &Path,
    out: &Path,
    deadline: Instant,
) -> Result<(), ArchiveError> {
    tar.append_dir(name, src).map_err(io_err("write", out))?;
    for entry in sorted_names(src)? {
        check_deadline(deadline)?;
        let (path, inner) = (src.join(&entry), name.join(&entry));
        if fs::symlink_metadata(&path)
            .map_err(io_err("stat", &path))?
            .is_dir()
        {
            append_tree(tar, &path, &inner, out, deadline)?;
        } else {
            tar.append_path_with_name(&path, &inner)
                .map_err(io_err("write", out))?;
        }
    }
    Ok(())
}

/// Removes a file unless disarmed (set to `None`).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `(name, type, link target)` of each entry.
    fn entries(tar_file: &Path) -> Vec<(String, tar::EntryType, String)> {
        let mut a = tar::Archive::new(File::open(tar_file).unwrap());
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, e.header().entry_type(), link)
            })
            .collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn rootfs_diff_is_an_oci_layer() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("upper");
        fs::create_dir_all(upper.join("data/sub")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("data/file"), b"hello").unwrap();
        fs::write(upper.join("data/sub/deep"), b"x").unwrap();
        fs::hard_link(upper.join("data/file"), upper.join("data/link")).unwrap();
        std::os::unix::fs::symlink("file", upper.join("data/sym")).unwrap();
        fs::write(upper.join("etc/hosts"), b"").unwrap(); // a mount point
        let root = rustix::process::geteuid().is_root();
        if root {
            // Whiteouts and opaque directories need CAP_MKNOD and CAP_SYS_ADMIN.
            rustix::fs::mknodat(
                rustix::fs::CWD,
                upper.join("data/gone"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                0,
            )
            .unwrap();
            rustix::fs::setxattr(
                upper.join("data/sub"),
                OVERLAY_OPAQUE_XATTR,
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        let out = d.path().join("rootfs-diff.tar");
        write_rootfs_diff(&upper, &[PathBuf::from("etc/hosts")], &out, later()).unwrap();
        let got = entries(&out);
        let find = |n: &str| got.iter().find(|(name, _, _)| name == n).cloned();
        assert_eq!(find("data").unwrap().1, tar::EntryType::Directory);
        assert_eq!(find("data/file").unwrap().1, tar::EntryType::Regular);
        let link = find("data/link").unwrap();
        assert_eq!(
            (link.1, link.2.as_str()),
            (tar::EntryType::Link, "data/file")
        );
        let sym = find("data/sym").unwrap();
        assert_eq!((sym.1, sym.2.as_str()), (tar::EntryType::Symlink, "file"));
        assert!(find("data/sub/deep").is_some());
        assert!(find("etc").is_some());
        assert!(find("etc/hosts").is_none(), "mount points are left out");
        if root {
            assert_eq!(find("data/.wh.gone").unwrap().1, tar::EntryType::Regular);
            assert!(find("data/gone").is_none());
            let names: Vec<&str> = got.iter().map(|(n, _, _)| n.as_str()).collect();
            let sub = names.iter().position(|n| *n == "data/sub").unwrap();
            assert_eq!(names[sub + 1], "data/sub/.wh..wh..opq", "{names:?}");
        }
        // The file content is there, and a missing upper is an empty layer.
        let mut a = tar::Archive::new(File::open(&out).unwrap());
        let mut e = a
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path().unwrap() == Path::new("data/file"))
            .unwrap();
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        let empty = d.path().join("empty.tar");
        write_rootfs_diff(&d.path().join("nope"), &[], &empty, later()).unwrap();
        assert!(entries(&empty).is_empty());
    }

    #[test]
    fn archive_replaces_the_location_only_when_complete() {
        let d = tempfile::tempdir().unwrap();
        let images = d.path().join("work/checkpoint");
        fs::create_dir_all(&images).unwrap();
        fs::write(images.join("inventory.img"), b"inv").unwrap();
        fs::write(images.join("pstree.img"), b"ps").unwrap();
        fs::write(d.path().join("work/config.dump"), b"{}").unwrap();
        let out_dir = d.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let location = out_dir.join("c.tar");
        fs::write(&location, b"old").unwrap();
        let parts = [
            Part::new(&images, "checkpoint"),
            Part::new(&d.path().join("work/config.dump"), "config.dump"),
        ];
        let size = write_archive(&location, &parts, later()).unwrap();
        assert_eq!(size, fs::metadata(&location).unwrap().len());
        assert_eq!(fs::metadata(&location).unwrap().mode() & 0o777, 0o600);
        let names: Vec<String> = entries(&location).into_iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "checkpoint",
                "checkpoint/inventory.img",
                "checkpoint/pstree.img",
                "config.dump"
            ]
        );
        // Past the deadline: nothing is written, the old archive stays, no temp file is left.
        let e = write_archive(&location, &parts, Instant::now() - Duration::from_secs(1));
        assert!(matches!(e, Err(ArchiveError::Timeout)), "{e:?}");
        assert_eq!(
            fs::read_dir(&out_dir).unwrap().count(),
            1,
            "only the archive"
        );
        assert_eq!(names.len(), entries(&location).len());
        // A missing part is an error, and leaves nothing behind either.
        let e = write_archive(
            &out_dir.join("new.tar"),
            &[Part::new(&d.path().join("missing"), "x")],
            later(),
        );
        assert!(matches!(e, Err(ArchiveError::Io { .. })), "{e:?}");
        assert_eq!(fs::read_dir(&out_dir).unwrap().count(), 1);
    }
}
