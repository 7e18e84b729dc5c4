//! Mounts husk makes on the host: overlay root filesystems, the pod's `/dev/shm` tmpfs, and
//! their teardown. Thin, typed wrappers over rustix so callers can't pass a wrong flag soup.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, unmount};

/// A mount that failed, with what was asked.
#[derive(Debug, thiserror::Error)]
#[error("mount {fstype} on {target:?} ({options}): {source}")]
pub struct MountError {
    pub fstype: &'static str,
    pub target: PathBuf,
    pub options: String,
    pub source: io::Error,
}

/// Mounts an overlay at `target`: `lowers` top-most first; `upper`/`work` for a writable one.
pub fn overlay(
    lowers: &[PathBuf],
    upper_work: Option<(&Path, &Path)>,
    target: &Path,
) -> Result<(), MountError> {
    let lower = lowers
        .iter()
        .map(|p| escape(&p.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(":");
    let mut options = format!("lowerdir={lower}");
    if let Some((u, w)) = upper_work {
        options.push_str(&format!(
            ",upperdir={},workdir={}",
            escape(&u.to_string_lossy()),
            escape(&w.to_string_lossy())
        ));
    }
    // Overlay needs two lowers for a read-only mount; a single-layer image mounted read-only
    // gets a private empty dir as the second lower by the caller when needed.
    do_mount("overlay", "overlay", target, MountFlags::empty(), &options)
}

/// Mounts a tmpfs (the pod's `/dev/shm`).
pub fn tmpfs(target: &Path, size_bytes: u64, mode: u32) -> Result<(), MountError> {
    let options = format!("mode={mode:o},size={size_bytes}");
    do_mount(
        "tmpfs",
        "shm",
        target,
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        &options,
    )
}

fn do_mount(
    fstype: &'static str,
    source: &str,
    target: &Path,
    flags: MountFlags,
    options: &str,
) -> Result<(), MountError> {
    let data = std::ffi::CString::new(options).map_err(|_| MountError {
        fstype,
        target: target.to_path_buf(),
        options: options.to_string(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount options"),
    })?;
    mount(source, target, fstype, flags, data.as_c_str()).map_err(|e| MountError {
        fstype,
        target: target.to_path_buf(),
        options: options.to_string(),
        source: e.into(),
    })
}

/// Commas and colons separate overlay options and layers: escape them in paths.
fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Unmounts `target` (lazily, so a busy mount can't wedge teardown). Not mounted is fine.
pub fn unmount_all(target: &Path) -> io::Result<()> {
    loop {
        match unmount(target, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            Ok(()) => continue, // stacked mounts: peel them all
            Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mountpoint(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want)
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_and_tmpfs_mount_and_unmount() {
        let d = tempfile::tempdir().unwrap();
        let (l1, l2, up, work, mnt) = (
            d.path().join("l1"),
            d.path().join("l2"),
            d.path().join("up"),
            d.path().join("work"),
            d.path().join("mnt"),
        );
        for p in [&l1, &l2, &up, &work, &mnt] {
            std::fs::create_dir(p).unwrap();
        }
        std::fs::write(l1.join("a"), "top").unwrap();
        std::fs::write(l2.join("a"), "bottom").unwrap();
        std::fs::write(l2.join("b"), "b").unwrap();
        overlay(&[l1.clone(), l2.clone()], Some((&up, &work)), &mnt).unwrap();
        assert!(is_mountpoint(&mnt));
        assert_eq!(std::fs::read_to_string(mnt.join("a")).unwrap(), "top");
        std::fs::write(mnt.join("c"), "new").unwrap();
        assert!(up.join("c").exists());
        unmount_all(&mnt).unwrap();
        unmount_all(&mnt).unwrap();
        assert!(!is_mountpoint(&mnt));

        tmpfs(&mnt, 1 << 20, 0o1777).unwrap();
        assert!(is_mountpoint(&mnt));
        unmount_all(&mnt).unwrap();
        assert!(!is_mountpoint(&mnt));
    }

    #[test]
    fn bad_overlay_reports_the_options() {
        let d = tempfile::tempdir().unwrap();
        let err = overlay(&[d.path().join("missing")], None, d.path()).unwrap_err();
        assert!(err.to_string().contains("lowerdir="), "{err}");
    }
}
