//! Real overlayfs check: layers unpacked side by side and mounted as `lowerdir=L2:L1:L0`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::layers::stack;
use super::*;

/// Unmounts on drop, so a failed assertion never leaves a mount behind.
struct Mounted(PathBuf);

impl Mounted {
    fn overlay(lowers: &[PathBuf], at: &Path) -> Mounted {
        let lowerdir = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!("lowerdir={lowerdir}"))
            .arg(at)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount overlay failed: {status}");
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {dir:?}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn unpack_layers_mount_as_overlay() {
    let t = tempfile::tempdir().unwrap();
    let lowers = stack(
        t.path(),
        &[
            tar_of([
                E::file("base.txt", "base"),
                E::file("del.txt", "old"),
                E::file("dir/a", "a"),
                E::file("dir/b", "b"),
                E::file("opq/old", "old"),
                E::file("redo/old", "old"),
                E::file("hl/src", "lowsrc"),
                E::file("gone/inner", "x"),
            ]),
            tar_of([
                E::file(".wh.del.txt", ""),
                E::file("dir/.wh.a", ""),
                E::file("opq/new", "new"),
                E::file("opq/.wh..wh..opq", ""),
                E::file(".wh.redo", ""),
                E::file("redo/fresh", "fresh"),
                E::file("l1.txt", "l1"),
                E::hardlink("hl/link", "hl/src"),
                E::file(".wh.gone", ""),
            ]),
            tar_of([
                E::file("l2.txt", "l2"),
                E::file("del.txt", "new"),
                E::file("dir/c", "c"),
            ]),
        ],
    );
    let merged = t.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let _m = Mounted::overlay(&lowers, &merged);
    let read =
        |p: &str| std::fs::read_to_string(merged.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(
        names(&merged),
        [
            "base.txt", "del.txt", "dir", "hl", "l1.txt", "l2.txt", "opq", "redo"
        ]
    );
    assert_eq!(
        (read("base.txt"), read("l1.txt"), read("l2.txt")),
        ("base".into(), "l1".into(), "l2".into())
    );
    assert_eq!(read("del.txt"), "new", "re-added above its whiteout");
    assert_eq!(
        names(&merged.join("dir")),
        ["b", "c"],
        "whiteout hides the lower file"
    );
    assert_eq!(
        names(&merged.join("opq")),
        ["new"],
        "opaque dir hides lower children"
    );
    assert_eq!(
        names(&merged.join("redo")),
        ["fresh"],
        "dir re-created over its whiteout is opaque"
    );
    assert_eq!(names(&merged.join("hl")), ["link", "src"]);
    assert_eq!(
        (read("hl/link"), read("hl/src")),
        ("lowsrc".into(), "lowsrc".into())
    );
    assert!(!merged.join("gone").exists());
}
