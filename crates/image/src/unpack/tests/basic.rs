//! Entry types, metadata, whiteouts, replacement rules, diff ID and decompression.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::*;
use crate::unpack::{Compression, decompress};

/// A valid `security.capability` (revision 2, effective, CAP_NET_BIND_SERVICE).
const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn lstat(p: &Path) -> std::fs::Metadata {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {p:?}: {e}"))
}

#[test]
fn unpack_every_entry_type_with_metadata() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([
        E::dir("d/")
            .mode(0o750)
            .owner(1000, 1001)
            .mtime(1_500_000_000),
        E::file("d/f", "hello")
            .mode(0o4755)
            .owner(1000, 1000)
            .pax("mtime", "1600000000.25")
            .pax("atime", "1600000001.5")
            .pax("SCHILY.xattr.user.foo", "bar")
            .pax("SCHILY.xattr.security.capability", CAP)
            .pax("SCHILY.xattr.trusted.overlay.opaque", "y")
            .pax("SCHILY.xattr.trusted.overlay.redirect", "/etc"),
        E::symlink("d/l", "../nonexistent/target")
            .owner(1002, 1003)
            .mtime(1_400_000_000),
        E::hardlink("d/h", "d/f")
            .mode(0o4755)
            .owner(1000, 1000)
            .pax("mtime", "1600000000.25")
            .pax("atime", "1600000001.5"),
        E::chardev("d/null", 1, 3).mode(0o666).owner(5, 6),
        E {
            dev: (7, 0),
            ..E::new(b'4', "d/blk")
        }
        .mode(0o660),
        E::fifo("d/fifo").mode(0o1644),
        E::file("big-ids", "x").owner(3_000_000, 4_000_000),
        E::dir("d/sub/")
            .mode(0o2775)
            .pax("SCHILY.xattr.trusted.overlay.opaque", "y"),
    ]);
    let stats = unpack(&tar, t.path(), &[]).unwrap();
    assert_eq!(stats.entries, 9);
    assert_eq!(stats.bytes, 6);

    let d = lstat(&t.path().join("d"));
    assert!(d.is_dir());
    assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 1000, 1001));
    assert_eq!(
        d.mtime(),
        1_500_000_000,
        "directory mtime set after its children"
    );

    let f = lstat(&t.path().join("d/f"));
    assert!(f.is_file());
    assert_eq!(f.mode() & 0o7777, 0o4755, "setuid survives chown");
    assert_eq!((f.uid(), f.gid()), (1000, 1000));
    assert_eq!((f.mtime(), f.mtime_nsec()), (1_600_000_000, 250_000_000));
    assert_eq!((f.atime(), f.atime_nsec()), (1_600_000_001, 500_000_000));
    assert_eq!(std::fs::read(t.path().join("d/f")).unwrap(), b"hello");
    assert_eq!(
        xattr(&t.path().join("d/f"), "user.foo").as_deref(),
        Some(&b"bar"[..])
    );
    assert_eq!(
        xattr(&t.path().join("d/f"), "security.capability").as_deref(),
        Some(&CAP[..])
    );
    assert_eq!(
        xattr(&t.path().join("d/f"), "trusted.overlay.opaque"),
        None,
        "trusted.* never taken from a layer"
    );
    assert_eq!(
        xattr(&t.path().join("d/f"), "trusted.overlay.redirect"),
        None
    );
    assert_eq!(
        xattr(&t.path().join("d/sub"), "trusted.overlay.opaque"),
        None
    );
    assert_eq!(lstat(&t.path().join("d/sub")).mode() & 0o7777, 0o2775);

    let l = lstat(&t.path().join("d/l"));
    assert!(l.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(t.path().join("d/l")).unwrap(),
        Path::new("../nonexistent/target")
    );
    assert_eq!((l.uid(), l.gid(), l.mtime()), (1002, 1003, 1_400_000_000));

    let h = lstat(&t.path().join("d/h"));
    assert_eq!(
        (h.ino(), h.nlink()),
        (f.ino(), 2),
        "hardlink shares the inode"
    );

    let n = lstat(&t.path().join("d/null"));
    assert!(n.file_type().is_char_device());
    assert_eq!(
        (n.rdev(), n.mode() & 0o7777, n.uid(), n.gid()),
        (rustix::fs::makedev(1, 3), 0o666, 5, 6)
    );
    let b = lstat(&t.path().join("d/blk"));
    assert!(b.file_type().is_block_device());
    assert_eq!(
        (b.rdev(), b.mode() & 0o7777),
        (rustix::fs::makedev(7, 0), 0o660)
    );
    let p = lstat(&t.path().join("d/fifo"));
    assert!(p.file_type().is_fifo());
    assert_eq!(p.mode() & 0o7777, 0o1644);

    let big = lstat(&t.path().join("big-ids"));
    assert_eq!(
        (big.uid(), big.gid()),
        (3_000_000, 4_000_000),
        "PAX uid/gid"
    );
}

#[test]
fn unpack_long_names_gnu_and_pax() {
    let long_dir = "a".repeat(120);
    let long_file = format!("{long_dir}/{}", "f".repeat(150));
    let long_target = format!("/{}", "t".repeat(200));
    // GNU long name/link records, as written by the tar crate's builder.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o600);
    // Left empty on purpose: Go reads empty numeric fields as 0, and so must we.
    h.as_gnu_mut().unwrap().uid = [0; 8];
    b.append_data(&mut h, &long_file, &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, format!("{long_dir}/gnu-link"), &long_target)
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    b.append_link(
        &mut h,
        format!("{long_dir}/{}", "g".repeat(110)),
        &long_file,
    )
    .unwrap();
    let mut tar = b.into_inner().unwrap();
    tar.truncate(tar.len() - 1024);
    // PAX path/linkpath records.
    tar.extend(tar_of([
        E::file(format!("{long_dir}/{}", "p".repeat(140)), "pax"),
        E::symlink(format!("{long_dir}/pax-link"), &long_target),
    ]));
    let t = tempfile::tempdir().unwrap();
    unpack(&tar, t.path(), &[]).unwrap();
    assert_eq!(std::fs::read(t.path().join(&long_file)).unwrap(), b"abc");
    assert_eq!(
        std::fs::read(t.path().join(&long_dir).join("p".repeat(140))).unwrap(),
        b"pax"
    );
    for l in ["gnu-link", "pax-link"] {
        assert_eq!(
            std::fs::read_link(t.path().join(&long_dir).join(l)).unwrap(),
            Path::new(&long_target)
        );
    }
    let g = lstat(&t.path().join(&long_dir).join("g".repeat(110)));
    assert_eq!(g.ino(), lstat(&t.path().join(&long_file)).ino());
}

#[test]
fn unpack_whiteouts_become_overlay_whiteouts() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([
        E::file("a/.wh.b", ""),
        E::file("a/x", "x"),
        E::file("o/keep-before", "1"),
        E::file("o/.wh..wh..opq", ""),
        E::file("o/keep-after", "2"),
        E::file("new/deep/.wh..wh..opq", ""),
        E::dir(".wh..wh.plnk/"),
        E::file(".wh.top", ""),
    ]);
    unpack(&tar, t.path(), &[]).unwrap();
    for w in ["a/b", "top"] {
        let m = lstat(&t.path().join(w));
        assert!(m.file_type().is_char_device(), "{w} is a whiteout");
        assert_eq!(
            (m.rdev(), m.mode() & 0o7777, m.uid(), m.gid()),
            (0, 0, 0, 0)
        );
    }
    assert!(!t.path().join("a/.wh.b").exists());
    assert_eq!(
        xattr(&t.path().join("o"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(std::fs::read(t.path().join("o/keep-before")).unwrap(), b"1");
    assert_eq!(std::fs::read(t.path().join("o/keep-after")).unwrap(), b"2");
    assert!(!t.path().join("o/.wh..wh..opq").exists());
    assert_eq!(
        xattr(&t.path().join("new/deep"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(
        !t.path().join(".wh..wh.plnk").exists(),
        "aufs metadata skipped"
    );
    assert_eq!(xattr(&t.path().join("a"), "trusted.overlay.opaque"), None);
}

#[test]
fn unpack_whiteout_never_deletes_entries_of_its_own_layer() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([
        E::file(".wh.later", ""),
        E::file("later", "file after its whiteout"),
        E::file("earlier", "file before its whiteout"),
        E::file(".wh.earlier", ""),
        E::dir("dir-earlier/"),
        E::file("dir-earlier/child", "c"),
        E::file(".wh.dir-earlier", ""),
        E::file(".wh.dir-later", ""),
        E::dir("dir-later/"),
        E::file(".wh.parent-later", ""),
        E::file("parent-later/child", "c"),
    ]);
    unpack(&tar, t.path(), &[]).unwrap();
    assert_eq!(
        std::fs::read(t.path().join("later")).unwrap(),
        b"file after its whiteout"
    );
    assert_eq!(
        std::fs::read(t.path().join("earlier")).unwrap(),
        b"file before its whiteout"
    );
    for d in ["dir-earlier", "dir-later", "parent-later"] {
        assert!(lstat(&t.path().join(d)).is_dir());
        assert_eq!(
            xattr(&t.path().join(d), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{d} hides the lower one"
        );
    }
    assert!(t.path().join("dir-earlier/child").is_file());
    assert!(t.path().join("parent-later/child").is_file());
    assert_eq!(lstat(&t.path().join("parent-later")).mode() & 0o7777, 0o755);
}

#[test]
fn unpack_replacement_rules() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([
        E::file("f2d", "file"),
        E::dir("f2d/").mode(0o700),
        E::dir("d2f/"),
        E::file("d2f/child/deeper", "x"),
        E::file("d2f", "now a file"),
        E::symlink("s2d", "/"),
        E::dir("s2d/").mode(0o711),
        E::dir("keep/").mode(0o755).owner(1, 1),
        E::file("keep/child", "c"),
        E::dir("keep/").mode(0o700).owner(2, 2),
        E::file("f2f", "one").mode(0o600),
        E::file("f2f", "two").mode(0o640),
        E::file("f2s", "x"),
        E::symlink("f2s", "target"),
        E::dir("d2s/"),
        E::file("d2s/c", "c"),
        E::symlink("d2s", "/etc"),
    ]);
    unpack(&tar, t.path(), &[]).unwrap();
    let m = lstat(&t.path().join("f2d"));
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o700);
    assert_eq!(std::fs::read(t.path().join("d2f")).unwrap(), b"now a file");
    let s = lstat(&t.path().join("s2d"));
    assert!(s.is_dir());
    assert_eq!(s.mode() & 0o7777, 0o711);
    let k = lstat(&t.path().join("keep"));
    assert_eq!((k.mode() & 0o7777, k.uid(), k.gid()), (0o700, 2, 2));
    assert_eq!(
        std::fs::read(t.path().join("keep/child")).unwrap(),
        b"c",
        "dir over dir merges"
    );
    assert_eq!(std::fs::read(t.path().join("f2f")).unwrap(), b"two");
    assert_eq!(lstat(&t.path().join("f2f")).mode() & 0o7777, 0o640);
    assert_eq!(
        std::fs::read_link(t.path().join("f2s")).unwrap(),
        Path::new("target")
    );
    assert_eq!(
        std::fs::read_link(t.path().join("d2s")).unwrap(),
        Path::new("/etc")
    );
}

#[test]
fn unpack_missing_parents_and_root_entry() {
    let t = tempfile::tempdir().unwrap();
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = lstat(t.path());
    let tar = tar_of([
        E::dir("./").mode(0o700).owner(1234, 1234),
        E::file("x/y/z", "z"),
        E::dir("/").mode(0o777),
    ]);
    unpack(&tar, t.path(), &[]).unwrap();
    let after = lstat(t.path());
    assert_eq!(
        (after.mode(), after.uid()),
        (before.mode(), before.uid()),
        "root entries are ignored, as containerd does"
    );
    for d in ["x", "x/y"] {
        let m = lstat(&t.path().join(d));
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
    }
}

#[test]
fn unpack_hardlink_within_layer_and_to_symlink() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([
        E::file("bin/busybox", "bb").mode(0o755),
        E::hardlink("bin/sh", "bin/busybox").mode(0o755),
        E::hardlink("usr/bin/env", "/bin/busybox").mode(0o755),
        E::symlink("lnk", "bin/busybox"),
        E::hardlink("lnk2", "lnk"),
        E::hardlink("bin/busybox", "bin/busybox").mode(0o755),
    ]);
    unpack(&tar, t.path(), &[]).unwrap();
    let ino = lstat(&t.path().join("bin/busybox")).ino();
    assert_eq!(lstat(&t.path().join("bin/sh")).ino(), ino);
    assert_eq!(lstat(&t.path().join("usr/bin/env")).ino(), ino);
    assert_eq!(lstat(&t.path().join("bin/busybox")).nlink(), 3);
    let l2 = lstat(&t.path().join("lnk2"));
    assert!(
        l2.file_type().is_symlink(),
        "a hardlink to a symlink links the symlink"
    );
    assert_eq!(l2.ino(), lstat(&t.path().join("lnk")).ino());
}

#[test]
fn unpack_hardlink_to_missing_target_fails() {
    let t = tempfile::tempdir().unwrap();
    let tar = tar_of([E::hardlink("h", "nowhere/file")]);
    let err = unpack(&tar, t.path(), &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::HardlinkTargetMissing { .. }),
        "{err:?}"
    );
    let tar = tar_of([
        E::file("f", "x"),
        E::file(".wh.f2", ""),
        E::hardlink("h", "f2"),
    ]);
    let err = unpack(&tar, t.path(), &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::HardlinkTargetMissing { .. }),
        "{err:?}"
    );
}

#[test]
fn unpack_diff_id_covers_the_whole_stream() {
    let t = tempfile::tempdir().unwrap();
    let mut tar = tar_of([E::file("a", "a"), E::dir("b/")]);
    // Writers pad to a record size; anything after the end marker is part of the blob.
    tar.extend(std::iter::repeat_n(0u8, 8192));
    tar.extend_from_slice(b"trailing bytes");
    let stats = unpack(&tar, t.path(), &[]).unwrap();
    assert_eq!(
        stats.diff_id,
        format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
    );
    assert_eq!(stats.entries, 2);
}

#[test]
fn unpack_through_gzip_and_zstd() {
    let tar = tar_of([E::file("etc/os-release", "ID=husk\n")]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    for (blob, c) in [
        (gz, Compression::Gzip),
        (zst, Compression::Zstd),
        (tar.clone(), Compression::None),
    ] {
        assert_eq!(Compression::detect(&blob), c);
        let t = tempfile::tempdir().unwrap();
        let r = decompress(&blob[..], c).unwrap();
        let stats = unpack_layer(r, t.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(
            stats.diff_id,
            format!("sha256:{}", hex::encode(Sha256::digest(&tar)))
        );
        assert_eq!(
            std::fs::read(t.path().join("etc/os-release")).unwrap(),
            b"ID=husk\n"
        );
    }
    let mut out = Vec::new();
    decompress(&b"not gzip"[..], Compression::Gzip)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
}

#[test]
fn unpack_media_types() {
    use Compression::*;
    for (mt, c) in [
        ("application/vnd.oci.image.layer.v1.tar", None),
        ("application/vnd.oci.image.layer.v1.tar+gzip", Gzip),
        ("application/vnd.oci.image.layer.v1.tar+zstd", Zstd),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            None,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Gzip,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Zstd,
        ),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", Gzip),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Gzip,
        ),
    ] {
        assert_eq!(Compression::from_media_type(mt).unwrap(), c, "{mt}");
    }
    for mt in [
        "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        "application/json",
        "",
    ] {
        assert!(matches!(
            Compression::from_media_type(mt),
            Err(UnpackError::UnsupportedMediaType { .. })
        ));
    }
    assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Gzip);
    assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]), Zstd);
    assert_eq!(Compression::detect(b"usta"), None);
    assert_eq!(Compression::detect(&[]), None);
}

#[test]
fn unpack_rejects_bad_entries() {
    let t = tempfile::tempdir().unwrap();
    let err = unpack(&tar_of([E::new(b'V', "label")]), t.path(), &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::UnsupportedEntryType { kind: 'V', .. }),
        "{err:?}"
    );
    let err = unpack(&tar_of([E::file("a/.wh..", "")]), t.path(), &[]).unwrap_err();
    assert!(
        matches!(err, UnpackError::InvalidWhiteout { .. }),
        "{err:?}"
    );
    let mut truncated = tar_of([E::file("big", vec![7u8; 5000])]);
    truncated.truncate(512 + 1000);
    let err = unpack(&truncated, t.path(), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::TruncatedEntry { .. }
                | UnpackError::ReadEntry { .. }
                | UnpackError::Tar { .. }
        ),
        "{err:?}"
    );
    let mut bad_sum = tar_of([E::file("x", "x")]);
    bad_sum[0] ^= 1;
    assert!(matches!(
        unpack(&bad_sum, t.path(), &[]),
        Err(UnpackError::Tar { .. })
    ));
}
