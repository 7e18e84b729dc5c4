//! Malicious-layer corpus: each archive tries to create or change something outside the
//! target. Unpacking may succeed (contained) or fail, but must never escape nor panic.

use std::path::Path;

use super::layers::stack;
use super::*;

/// Runs `build(token)` in a fresh sandbox, with optional lower layers, and checks containment.
/// Returns the result and the sandbox for extra assertions.
fn attempt(build: impl FnOnce(&str) -> Vec<E>) -> (Result<UnpackStats, UnpackError>, Sandbox) {
    attempt_with_lowers(&[], build)
}

fn attempt_with_lowers(
    lower_layers: &[Vec<u8>],
    build: impl FnOnce(&str) -> Vec<E>,
) -> (Result<UnpackStats, UnpackError>, Sandbox) {
    let mut sb = Sandbox::new();
    let lowers = if lower_layers.is_empty() {
        Vec::new()
    } else {
        let dir = sb.base.join("lowers");
        std::fs::create_dir(&dir).unwrap();
        stack(&dir, lower_layers)
    };
    sb.rearm();
    let tar = tar_of(build(&sb.token));
    let r = unpack(&tar, &sb.root, &lowers);
    sb.check();
    (r, sb)
}

fn contained(r: &Result<UnpackStats, UnpackError>) {
    assert!(r.is_ok(), "expected contained success, got {r:?}");
}

#[test]
fn unpack_evil_dotdot_names_are_contained() {
    let (r, sb) = attempt(|tok| {
        vec![
            E::file("../escape", "x"),
            E::file(format!("../../../../tmp/{tok}"), "x"),
            E::file(format!("/etc/{tok}"), "x"),
            E::file("a/../../b", "x"),
            E::file(format!("../../../../../../../../../../../{tok}"), "x"),
            E::dir("../outside-dir/").mode(0o777),
            E::file(
                format!("a/b/../../../../../../../{}/../{tok}", "c".repeat(150)),
                "pax",
            ),
        ]
    });
    contained(&r);
    for p in [
        "escape",
        "b",
        "outside-dir",
        &format!("tmp/{}", sb.token),
        &format!("etc/{}", sb.token),
        &sb.token,
    ] {
        assert!(
            sb.root.join(p).exists(),
            "{p} should land inside the target"
        );
    }
}

#[test]
fn unpack_evil_symlink_to_root_then_write_through_it() {
    let (r, sb) = attempt(|tok| {
        vec![
            E::symlink("s", "/"),
            E::file(format!("s/{tok}"), "x"),
            E::file(format!("s/etc/{tok}"), "x"),
            E::symlink("up", "../../.."),
            E::file(format!("up/{tok}-2"), "x"),
            E::file("up/outside-file", "clobber"),
            E::fifo(format!("s/tmp/{tok}")),
        ]
    });
    contained(&r);
    assert!(sb.root.join(&sb.token).is_file());
    assert!(sb.root.join(format!("etc/{}", sb.token)).is_file());
    assert_eq!(
        std::fs::read(sb.root.join("outside-file")).unwrap(),
        b"clobber"
    );
}

#[test]
fn unpack_evil_symlink_chains() {
    let (r, _sb) = attempt(|tok| {
        vec![
            E::symlink("a", "b"),
            E::symlink("b", "../../outside-dir"),
            E::file("a/evil", "x"),
            E::file(format!("a/{tok}"), "x"),
        ]
    });
    assert!(
        r.is_err(),
        "dangling in-root chain cannot be written through: {r:?}"
    );
    let (r, sb) = attempt(|_| {
        vec![
            E::dir("outside-dir/"),
            E::symlink("a", "b"),
            E::symlink("b", "c/../../../outside-dir"),
            E::dir("c/"),
            E::file("a/inner", "clobber"),
            E::symlink("loop1", "loop2"),
            E::symlink("loop2", "loop1"),
        ]
    });
    contained(&r);
    assert_eq!(
        std::fs::read(sb.root.join("outside-dir/inner")).unwrap(),
        b"clobber"
    );
    let (r, _sb) = attempt(|_| vec![E::symlink("loop", "loop"), E::file("loop/x", "x")]);
    assert!(r.is_err());
}

#[test]
fn unpack_evil_dir_and_symlink_swaps() {
    let (r, sb) = attempt(|_| {
        vec![
            E::symlink("x", ".."),
            E::dir("x/").mode(0o777).owner(1234, 1234),
            E::symlink("t", "../.."),
            E::dir("t/").mode(0o700).mtime(5),
            E::symlink("t", "../.."),
            E::dir("./").mode(0o700).owner(99, 99),
            E::dir("/").mode(0o777),
            E::symlink("victim", "/etc/passwd"),
            E::file("victim", "replaces the symlink, not the target"),
        ]
    });
    contained(&r);
    assert!(sb.root.join("x").is_dir());
    assert_eq!(
        std::fs::read(sb.root.join("victim")).unwrap(),
        b"replaces the symlink, not the target"
    );
    let (r, _) = attempt(|tok| {
        vec![
            E::dir("d/").mtime(1),
            E::symlink("d", "/etc"),
            E::file(format!("d/{tok}"), "x"),
        ]
    });
    assert!(r.is_err(), "d -> /etc is dangling in-root: {r:?}");
    let (r, _) = attempt(|tok| {
        vec![
            E::symlink("p", "/proc/self/root/etc"),
            E::file(format!("p/{tok}"), "x"),
        ]
    });
    assert!(
        r.is_err(),
        "/proc/self/root resolves in-root and does not exist: {r:?}"
    );
    let (r, sb) = attempt(|tok| {
        vec![
            E::dir("etc/"),
            E::symlink("d", "/etc"),
            E::file(format!("d/{tok}"), "x"),
            E::dir("t/").mtime(5),
            E::symlink("t", "../.."),
        ]
    });
    contained(&r);
    assert!(sb.root.join(format!("etc/{}", sb.token)).is_file());
}

#[test]
fn unpack_evil_hardlinks() {
    let (r, _) = attempt(|_| vec![E::hardlink("h", "/etc/passwd")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, _) = attempt(|_| vec![E::hardlink("h", "../../outside-file")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, _) = attempt(|_| vec![E::symlink("s", "../.."), E::hardlink("h", "s/outside-file")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, _) = attempt(|_| vec![E::symlink("s", "/etc"), E::hardlink("h", "s/passwd")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, _) = attempt(|_| vec![E::hardlink("h", "/"), E::hardlink("h2", ".")]);
    assert!(r.is_err());
    // Through a symlinked directory to a file inside: linked in-root.
    let (r, sb) = attempt(|_| {
        vec![
            E::file("etc/passwd", "inner"),
            E::symlink("s", "/etc"),
            E::hardlink("h", "s/passwd"),
            E::symlink("sp", "/etc/passwd"),
            E::hardlink("h2", "sp"),
        ]
    });
    contained(&r);
    assert_eq!(std::fs::read(sb.root.join("h")).unwrap(), b"inner");
    assert_eq!(
        std::fs::read_link(sb.root.join("h2")).unwrap(),
        Path::new("/etc/passwd"),
        "links the symlink itself"
    );
}

#[test]
fn unpack_evil_hardlinks_through_lower_layers() {
    let lowers = [tar_of([
        E::symlink("s", "/etc"),
        E::symlink("up", "../../../.."),
        E::symlink("pw", "/etc/passwd"),
        E::dir("etc/"),
    ])];
    let (r, _) = attempt_with_lowers(&lowers, |_| vec![E::hardlink("h", "s/passwd")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, _) = attempt_with_lowers(&lowers, |_| vec![E::hardlink("h", "up/outside-file")]);
    assert!(
        matches!(r, Err(UnpackError::HardlinkTargetMissing { .. })),
        "{r:?}"
    );
    let (r, sb) = attempt_with_lowers(&lowers, |_| vec![E::hardlink("h", "pw")]);
    contained(&r);
    assert_eq!(
        std::fs::read_link(sb.root.join("h")).unwrap(),
        Path::new("/etc/passwd")
    );
}

#[test]
fn unpack_evil_whiteouts_and_opaque_markers() {
    let (r, sb) = attempt(|_| {
        vec![
            E::file("../.wh.outside-file", ""),
            E::symlink("s", ".."),
            E::file("s/.wh.outside-dir", ""),
            E::symlink("o", "../../.."),
            E::file("o/.wh..wh..opq", ""),
        ]
    });
    contained(&r);
    assert!(std::fs::symlink_metadata(sb.root.join("outside-file")).is_ok());
    assert_eq!(
        xattr(&sb.root, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "opaque marker landed on the target"
    );
    let (r, _) = attempt(|_| vec![E::file(".wh..", "")]);
    assert!(
        matches!(r, Err(UnpackError::InvalidWhiteout { .. })),
        "{r:?}"
    );
    let (r, _) = attempt(|_| vec![E::file("a/.wh...", "")]);
    assert!(
        matches!(r, Err(UnpackError::InvalidWhiteout { .. })),
        "{r:?}"
    );
}

#[test]
fn unpack_evil_devices_through_symlinked_parents() {
    let (r, sb) = attempt(|tok| {
        vec![
            E::symlink("dev", "/dev"),
            E::chardev(format!("dev/{tok}"), 1, 3),
            E::symlink("up", "../../.."),
            E::chardev(format!("up/{tok}"), 8, 0),
            E {
                dev: (8, 0),
                ..E::new(b'4', format!("../../{tok}-blk"))
            },
        ]
    });
    assert!(r.is_err(), "dev -> /dev is dangling in-root: {r:?}");
    drop(sb);
    let (r, sb) = attempt(|tok| {
        vec![
            E::dir("dev/"),
            E::symlink("d", "/dev"),
            E::chardev(format!("d/{tok}"), 1, 3),
            E::symlink("up", "../../.."),
            E::chardev(format!("up/{tok}-2"), 8, 0),
        ]
    });
    contained(&r);
    assert!(std::fs::symlink_metadata(sb.root.join(format!("dev/{}", sb.token))).is_ok());
}

#[test]
fn unpack_evil_xattrs_and_times_not_through_symlinks() {
    let (r, sb) = attempt(|_| {
        vec![
            E::symlink("s", "../outside-file")
                .pax("SCHILY.xattr.user.evil", "1")
                .mtime(1),
            E::symlink("d", "..")
                .pax("SCHILY.xattr.trusted.overlay.opaque", "y")
                .mtime(2),
            E::symlink("abs", "/etc/passwd").owner(1234, 1234).mtime(3),
            E::dir("dd/").mtime(4),
            E::symlink("dd", ".."),
        ]
    });
    // user.* on a symlink is refused by the kernel and skipped; trusted.* is never applied;
    // owner and times land on the links themselves.
    contained(&r);
    let m = |p: &str| std::fs::symlink_metadata(sb.root.join(p)).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (
            m("s").mtime(),
            m("d").mtime(),
            m("abs").mtime(),
            m("abs").uid()
        ),
        (1, 2, 3, 1234)
    );
    assert_eq!(xattr(&sb.root.join("d"), "trusted.overlay.opaque"), None);
}

#[test]
fn unpack_evil_names_with_nul_and_huge_paths() {
    let (r, _) = attempt(|_| vec![E::file("a", "x").pax("path", b"../a\0/../../etc/x")]);
    let _ = r;
    let (r, _) = attempt(|_| {
        vec![
            E::file("x".repeat(300), "x"),
            E::file(format!("{}/f", "d/".repeat(3000)), "x"),
        ]
    });
    assert!(r.is_err(), "over-long names fail: {r:?}");
}
