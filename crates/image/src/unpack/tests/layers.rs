//! Interplay with parent layers: hardlink copy-up through the merged view and metadata of
//! implicitly created directories.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::*;

/// Unpacks `layers` (bottom first) into sibling dirs `l0`, `l1`, … of `dir`, each on top of
/// the previous ones, and returns their paths top-most first (ready for `lowers`).
pub(in crate::unpack) fn stack(dir: &Path, layers: &[Vec<u8>]) -> Vec<PathBuf> {
    let mut lowers: Vec<PathBuf> = Vec::new();
    for (i, tar) in layers.iter().enumerate() {
        let d = dir.join(format!("l{i}"));
        std::fs::create_dir(&d).unwrap();
        unpack(tar, &d, &lowers).unwrap_or_else(|e| panic!("layer {i}: {e:?}"));
        lowers.insert(0, d);
    }
    lowers
}

#[test]
fn unpack_hardlink_copies_up_from_lower() {
    let t = tempfile::tempdir().unwrap();
    let lowers = stack(
        t.path(),
        &[
            tar_of([
                E::dir("usr/").mode(0o755),
                E::dir("usr/bin/").mode(0o751).owner(3, 4),
                E::file("usr/bin/tool", "tool bytes")
                    .mode(0o4711)
                    .owner(5, 6)
                    .mtime(1_234_567_890)
                    .pax("SCHILY.xattr.user.origin", "l0"),
                E::dir("real/"),
                E::file("real/f", "via symlink"),
                E::file("gone", "deleted above"),
            ]),
            tar_of([E::symlink("lnk", "/real"), E::file(".wh.gone", "")]),
        ],
    );
    let root = t.path().join("new");
    std::fs::create_dir(&root).unwrap();
    let tar = tar_of([
        E::hardlink("bin2/tool2", "usr/bin/tool")
            .mode(0o4711)
            .owner(5, 6)
            .mtime(1_234_567_890),
        E::hardlink("f2", "lnk/f").mode(0o644),
    ]);
    unpack(&tar, &root, &lowers).unwrap();
    let up = std::fs::symlink_metadata(root.join("usr/bin/tool")).unwrap();
    assert_eq!(
        std::fs::read(root.join("usr/bin/tool")).unwrap(),
        b"tool bytes"
    );
    assert_eq!(
        (up.mode() & 0o7777, up.uid(), up.gid(), up.mtime()),
        (0o4711, 5, 6, 1_234_567_890)
    );
    assert_eq!(
        xattr(&root.join("usr/bin/tool"), "user.origin").as_deref(),
        Some(&b"l0"[..])
    );
    assert_eq!(
        std::fs::symlink_metadata(root.join("bin2/tool2"))
            .unwrap()
            .ino(),
        up.ino()
    );
    let bin = std::fs::symlink_metadata(root.join("usr/bin")).unwrap();
    assert_eq!(
        (bin.mode() & 0o7777, bin.uid(), bin.gid()),
        (0o751, 3, 4),
        "copied-up parent keeps lower metadata"
    );
    // `lnk` (layer 1) → `/real` (layer 0): resolved in the merged view, copied up at its real path.
    assert_eq!(std::fs::read(root.join("real/f")).unwrap(), b"via symlink");
    assert_eq!(
        std::fs::symlink_metadata(root.join("f2")).unwrap().ino(),
        std::fs::symlink_metadata(root.join("real/f"))
            .unwrap()
            .ino()
    );
    assert!(
        std::fs::symlink_metadata(root.join("lnk")).is_err(),
        "the symlink itself stays below"
    );

    let root2 = t.path().join("new2");
    std::fs::create_dir(&root2).unwrap();
    let err = unpack(&tar_of([E::hardlink("h", "gone")]), &root2, &lowers).unwrap_err();
    assert!(
        matches!(err, UnpackError::HardlinkTargetMissing { .. }),
        "a whited-out target is missing: {err:?}"
    );
    let err = unpack(&tar_of([E::hardlink("h", "usr/bin")]), &root2, &lowers).unwrap_err();
    assert!(
        matches!(err, UnpackError::HardlinkToDirectory { .. }),
        "{err:?}"
    );
}

#[test]
fn unpack_opaque_lower_dir_hides_hardlink_target() {
    let t = tempfile::tempdir().unwrap();
    let lowers = stack(
        t.path(),
        &[
            tar_of([E::file("d/old", "old")]),
            tar_of([E::file("d/.wh..wh..opq", ""), E::file("d/new", "new")]),
        ],
    );
    let root = t.path().join("new");
    std::fs::create_dir(&root).unwrap();
    let err = unpack(&tar_of([E::hardlink("h", "d/old")]), &root, &lowers).unwrap_err();
    assert!(
        matches!(err, UnpackError::HardlinkTargetMissing { .. }),
        "{err:?}"
    );
    unpack(&tar_of([E::hardlink("h", "d/new")]), &root, &lowers).unwrap();
    assert_eq!(std::fs::read(root.join("h")).unwrap(), b"new");
}

#[test]
fn unpack_implicit_parent_copies_lower_dir_metadata() {
    let t = tempfile::tempdir().unwrap();
    let lowers = stack(
        t.path(),
        &[
            tar_of([
                E::dir("tmp/").mode(0o1777),
                E::dir("opt/").mode(0o700).owner(7, 8),
            ]),
            tar_of([E::dir("opt/")
                .mode(0o750)
                .owner(9, 9)
                .pax("SCHILY.xattr.user.k", "v")]),
        ],
    );
    let root = t.path().join("new");
    std::fs::create_dir(&root).unwrap();
    unpack(
        &tar_of([
            E::file("tmp/x", "x"),
            E::file("opt/y", "y"),
            E::file("fresh/z", "z"),
        ]),
        &root,
        &lowers,
    )
    .unwrap();
    let m = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(m("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(
        (m("opt").mode() & 0o7777, m("opt").uid(), m("opt").gid()),
        (0o750, 9, 9),
        "top-most lower wins"
    );
    assert_eq!(
        xattr(&root.join("opt"), "user.k").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!((m("fresh").mode() & 0o7777, m("fresh").uid()), (0o755, 0));
}
