//! Fuzz target: arbitrary bytes as a layer tar into `unpack_layer` on a fresh target with a
//! hostile lower layer; whatever happens, nothing outside the target may change.
#![no_main]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use husk_image::unpack::{UnpackOptions, unpack_layer};
use libfuzzer_sys::fuzz_target;

type Seen = (u32, u64, u64, u32, u32, u64, i64, i64, i64, i64);

fn seen(p: &Path) -> Seen {
    let m = std::fs::symlink_metadata(p).expect("lstat");
    (
        m.mode(),
        m.ino(),
        m.nlink(),
        m.uid(),
        m.gid(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Everything under `dir` except below `skip` (whose own metadata may change).
fn snapshot(dir: &Path, skip: &Path) -> BTreeMap<PathBuf, Option<Seen>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p == skip {
            out.insert(p, None);
            continue;
        }
        let s = seen(&p);
        if std::fs::symlink_metadata(&p).expect("lstat").is_dir() {
            for e in std::fs::read_dir(&p).expect("read_dir") {
                todo.push(e.expect("entry").path());
            }
        }
        out.insert(p, Some(s));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let root = base.join("root");
    let lower = base.join("lower");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::create_dir_all(lower.join("d")).expect("mkdir");
    std::fs::write(base.join("outside-file"), b"sentinel").expect("write");
    std::fs::write(lower.join("d/f"), b"lower").expect("write");
    std::os::unix::fs::symlink("/etc", lower.join("s")).expect("symlink");
    std::os::unix::fs::symlink("../../../..", lower.join("up")).expect("symlink");
    let before = snapshot(tmp.path(), &root);
    let passwd = seen(Path::new("/etc/passwd"));
    let _ = unpack_layer(
        data,
        &root,
        &UnpackOptions {
            lowers: vec![lower],
        },
    );
    assert_eq!(
        before,
        snapshot(tmp.path(), &root),
        "something outside the target changed"
    );
    assert_eq!(passwd, seen(Path::new("/etc/passwd")));
});
