//! Unpack tests (they run as root: devices, chown, trusted xattrs, overlay mounts): a raw tar
//! writer that can forge any name, and a sandbox that proves nothing outside the target moved.

mod basic;
mod layers;
mod malicious;
mod overlay;
mod prop;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{UnpackError, UnpackOptions, UnpackStats, unpack_layer};

/// One raw tar entry; names and link names are written byte for byte (no validation).
#[derive(Clone, Debug)]
pub(super) struct E {
    pub name: Vec<u8>,
    pub kind: u8,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    pub pax: Vec<(String, Vec<u8>)>,
}

impl E {
    pub fn new(kind: u8, name: impl AsRef<[u8]>) -> E {
        E {
            name: name.as_ref().to_vec(),
            kind,
            link: Vec::new(),
            data: Vec::new(),
            mode: if kind == b'5' { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> E {
        E {
            data: data.as_ref().to_vec(),
            ..E::new(b'0', name)
        }
    }
    pub fn dir(name: impl AsRef<[u8]>) -> E {
        E::new(b'5', name)
    }
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        E {
            link: target.as_ref().to_vec(),
            mode: 0o777,
            ..E::new(b'2', name)
        }
    }
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> E {
        E {
            link: target.as_ref().to_vec(),
            ..E::new(b'1', name)
        }
    }
    pub fn chardev(name: impl AsRef<[u8]>, major: u32, minor: u32) -> E {
        E {
            dev: (major, minor),
            ..E::new(b'3', name)
        }
    }
    pub fn fifo(name: impl AsRef<[u8]>) -> E {
        E::new(b'6', name)
    }
    pub fn mode(mut self, mode: u32) -> E {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> E {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> E {
        self.mtime = mtime;
        self
    }
    pub fn pax(mut self, key: &str, value: impl AsRef<[u8]>) -> E {
        self.pax.push((key.to_string(), value.as_ref().to_vec()));
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn push_block(buf: &mut Vec<u8>, data: &[u8]) {
    buf.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    buf.extend(std::iter::repeat_n(0u8, pad));
}

fn raw_header(name: &[u8], kind: u8, link: &[u8], size: usize, e: &E) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size as u64);
    h.set_mode(e.mode);
    h.set_uid(e.uid.min(0o7777777));
    h.set_gid(e.gid.min(0o7777777));
    h.set_mtime(e.mtime);
    h.set_entry_type(tar::EntryType::new(kind));
    if kind == b'3' || kind == b'4' {
        h.set_device_major(e.dev.0).expect("ustar device major");
        h.set_device_minor(e.dev.1).expect("ustar device minor");
    }
    let old = h.as_old_mut();
    let n = name.len().min(100);
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    old.linkname[..l].copy_from_slice(&link[..l]);
    h.set_cksum();
    h
}

/// Builds tar streams entry by entry.
#[derive(Default)]
pub(super) struct Tar {
    buf: Vec<u8>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar::default()
    }
    pub fn add(&mut self, e: E) -> &mut Tar {
        let mut pax = Vec::new();
        if e.name.len() > 100 {
            pax.extend(pax_record("path", &e.name));
        }
        if e.link.len() > 100 {
            pax.extend(pax_record("linkpath", &e.link));
        }
        if e.uid > 0o7777777 {
            pax.extend(pax_record("uid", e.uid.to_string().as_bytes()));
        }
        if e.gid > 0o7777777 {
            pax.extend(pax_record("gid", e.gid.to_string().as_bytes()));
        }
        for (k, v) in &e.pax {
            pax.extend(pax_record(k, v));
        }
        if !pax.is_empty() {
            let h = raw_header(b"PaxHeaders/x", b'x', b"", pax.len(), &E::new(b'x', ""));
            self.buf.extend_from_slice(h.as_bytes());
            push_block(&mut self.buf, &pax);
        }
        let h = raw_header(&e.name, e.kind, &e.link, e.data.len(), &e);
        self.buf.extend_from_slice(h.as_bytes());
        push_block(&mut self.buf, &e.data);
        self
    }
    pub fn all(&mut self, es: impl IntoIterator<Item = E>) -> &mut Tar {
        for e in es {
            self.add(e);
        }
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

pub(super) fn tar_of(es: impl IntoIterator<Item = E>) -> Vec<u8> {
    Tar::new().all(es).finish()
}

pub(super) fn unpack(
    tar: &[u8],
    target: &Path,
    lowers: &[PathBuf],
) -> Result<UnpackStats, UnpackError> {
    unpack_layer(
        tar,
        target,
        &UnpackOptions {
            lowers: lowers.to_vec(),
        },
    )
}

/// What is compared of each object outside the target.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Seen {
    mode: u32,
    ino: u64,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    link: Option<PathBuf>,
    content: Option<Vec<u8>>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn seen(p: &Path) -> Seen {
    let m = std::fs::symlink_metadata(p).expect("lstat");
    let mut names = [0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut names[..]).unwrap_or(0);
    let xattrs = names[..n]
        .split(|b| *b == 0)
        .filter(|k| !k.is_empty())
        .map(|k| {
            let key = String::from_utf8_lossy(k).into_owned();
            let mut v = [0u8; 4096];
            let len = rustix::fs::lgetxattr(p, k, &mut v[..]).unwrap_or(0);
            (key, v[..len].to_vec())
        })
        .collect();
    Seen {
        mode: m.mode(),
        ino: m.ino(),
        nlink: m.nlink(),
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        link: m
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(p).expect("readlink")),
        content: m
            .file_type()
            .is_file()
            .then(|| std::fs::read(p).expect("read")),
        xattrs,
    }
}

/// Snapshot of everything under `dir` except the subtree `skip`.
pub(super) fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let s = seen(&p);
        let is_dir = std::fs::symlink_metadata(&p).expect("lstat").is_dir();
        out.insert(p.clone(), s);
        if is_dir && p != skip {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("dir entry").path());
            }
        }
    }
    out
}

/// A temp tree `<tmp>/base/root` (the target) with sentinel files and a lower layer around it;
/// `check` asserts that nothing outside `root` changed, and neither did `/etc/passwd` nor any
/// well-known place where an escape named `token` could land.
pub(super) struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub base: PathBuf,
    pub root: PathBuf,
    pub token: String,
    before: BTreeMap<PathBuf, Seen>,
    passwd: Seen,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().join("base");
        let root = base.join("root");
        std::fs::create_dir_all(&root).expect("mkdir root");
        std::fs::write(base.join("outside-file"), b"sentinel").expect("write sentinel");
        std::fs::create_dir(base.join("outside-dir")).expect("mkdir sentinel dir");
        std::fs::write(base.join("outside-dir/inner"), b"inner").expect("write sentinel");
        std::fs::write(tmp.path().join("outside-file"), b"sentinel2").expect("write sentinel");
        let token = format!(
            "husk-escape-{}-{}",
            std::process::id(),
            tmp.path().file_name().expect("name").to_string_lossy()
        );
        let mut s = Sandbox {
            tmp,
            base,
            root,
            token,
            before: BTreeMap::new(),
            passwd: seen(Path::new("/etc/passwd")),
        };
        s.rearm();
        s
    }

    /// Takes the "before" snapshot again (after the test prepared lowers outside `root`).
    pub fn rearm(&mut self) {
        self.before = snapshot(self.tmp.path(), &self.root);
        self.passwd = seen(Path::new("/etc/passwd"));
    }

    pub fn check(&self) {
        let after = snapshot(self.tmp.path(), &self.root);
        for (p, b) in &self.before {
            let a = after.get(p);
            if p == &self.root || p == &self.base {
                // The root's own metadata may legitimately change (opaque xattr, times); base
                // must keep its listing, which the per-entry comparison below checks.
                assert!(a.is_some(), "{p:?} vanished");
                continue;
            }
            assert_eq!(Some(b), a, "{p:?} changed outside the target");
        }
        for p in after.keys() {
            assert!(
                self.before.contains_key(p),
                "{p:?} was created outside the target"
            );
        }
        let base_before = &self.before[&self.base];
        let base_after = &after[&self.base];
        assert_eq!(base_before.mtime, base_after.mtime, "base modified");
        assert_eq!(
            base_before.xattrs, base_after.xattrs,
            "base xattrs modified"
        );
        assert_eq!(base_before.mode, base_after.mode, "base mode modified");
        let passwd = seen(Path::new("/etc/passwd"));
        assert_eq!(
            (passwd.ino, passwd.nlink, passwd.mtime, passwd.ctime),
            (
                self.passwd.ino,
                self.passwd.nlink,
                self.passwd.mtime,
                self.passwd.ctime
            )
        );
        for dir in ["/", "/tmp", "/etc", "/dev", "/root", "/var/tmp"] {
            let p = Path::new(dir).join(&self.token);
            assert!(
                std::fs::symlink_metadata(&p).is_err(),
                "{p:?} exists: escaped"
            );
        }
        let tmp_parent = self.tmp.path().parent().expect("parent");
        assert!(std::fs::symlink_metadata(tmp_parent.join(&self.token)).is_err());
    }
}

/// Reads one xattr (not following symlinks).
pub(super) fn xattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut v = [0u8; 4096];
    rustix::fs::lgetxattr(p, name, &mut v[..])
        .ok()
        .map(|n| v[..n].to_vec())
}
