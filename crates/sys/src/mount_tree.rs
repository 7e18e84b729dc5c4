//! Copies of mount trees made with the new mount API: `open_tree(OPEN_TREE_CLONE)` detaches a
//! clone of a path's mounts, `mount_setattr` makes the whole clone read-only and/or idmapped
//! (through a user namespace) and private, and `move_mount` attaches it at a target. The host's
//! own mounts are never changed. Bind mounts of such a clone keep its flags (the kernel copies
//! a mount's flags into its binds), so an OCI runtime that binds the staged path hands the
//! container the read-only or idmapped tree even when the runtime itself cannot make one.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::CWD;
use rustix::mount::{MoveMountFlags, OpenTreeFlags, move_mount, open_tree};

/// `MOUNT_ATTR_RDONLY` (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
/// `MOUNT_ATTR_IDMAP` (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `MS_PRIVATE` as a `mount_attr.propagation` value.
const MS_PRIVATE: u64 = 1 << 18;

/// `struct mount_attr` (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// What to make of the clone.
#[derive(Debug, Default, Clone, Copy)]
pub struct TreeOptions<'a> {
    /// Clone the submounts too (`AT_RECURSIVE`), and apply the attributes to all of them.
    pub recursive: bool,
    /// Every mount of the clone read-only.
    pub readonly: bool,
    /// Idmap the clone through this user namespace (its uid/gid maps).
    pub idmap: Option<BorrowedFd<'a>>,
}

/// Which step of staging a tree failed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("open_tree of {path:?}: {source}")]
    OpenTree { path: PathBuf, source: io::Error },
    #[error("mount_setattr on the clone of {path:?}: {source}")]
    SetAttr { path: PathBuf, source: io::Error },
    #[error("attaching the clone of {path:?} at {target:?}: {source}")]
    Attach {
        path: PathBuf,
        target: PathBuf,
        source: io::Error,
    },
}

impl TreeError {
    /// The underlying OS error.
    pub fn io(&self) -> &io::Error {
        match self {
            TreeError::OpenTree { source, .. }
            | TreeError::SetAttr { source, .. }
            | TreeError::Attach { source, .. } => source,
        }
    }
}

/// Clones the mounts at `src` (following symlinks), applies `opts`, makes them private and
/// attaches the clone at `target` (an existing file or directory, matching `src`'s kind).
/// Undo with [`crate::mount::unmount_all`] on `target`.
pub fn stage_tree(src: &Path, target: &Path, opts: &TreeOptions<'_>) -> Result<(), TreeError> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if opts.recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    let tree = open_tree(CWD, src, flags).map_err(|e| TreeError::OpenTree {
        path: src.to_path_buf(),
        source: e.into(),
    })?;
    let mut attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    if opts.readonly {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    if let Some(ns) = opts.idmap {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = u64::try_from(ns.as_raw_fd()).unwrap_or_default();
    }
    set_attr(&tree, opts.recursive, &attr).map_err(|source| TreeError::SetAttr {
        path: src.to_path_buf(),
        source,
    })?;
    move_mount(
        tree.as_fd(),
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| TreeError::Attach {
        path: src.to_path_buf(),
        target: target.to_path_buf(),
        source: e.into(),
    })
}

fn set_attr(tree: &OwnedFd, recursive: bool, attr: &MountAttr) -> io::Result<()> {
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: mount_setattr(2) reads `size_of::<MountAttr>()` bytes from a valid, initialised
    // `#[repr(C)]` struct that outlives the call; the path is a static NUL-terminated string and
    // the fd is owned and open.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel has `mount_setattr` (5.12+): asked with an invalid fd, a kernel that has
/// it answers EBADF, one that lacks it ENOSYS.
pub fn supported() -> bool {
    let attr = MountAttr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: as in `set_attr`; fd -1 makes the kernel fail before it touches anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount::{tmpfs, unmount_all};

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn the_kernel_has_mount_setattr() {
        assert!(supported());
    }

    #[test]
    fn a_recursive_read_only_clone_leaves_the_source_writable() {
        if !is_root() {
            assert!(
                std::env::var_os("HUSK_REQUIRE_SYSTEM").is_none(),
                "needs root (HUSK_REQUIRE_SYSTEM is set)"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let sub = src.join("sub");
        let target = dir.path().join("target");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        tmpfs(&sub, 1 << 20, 0o755).unwrap();
        stage_tree(
            &src,
            &target,
            &TreeOptions {
                recursive: true,
                readonly: true,
                idmap: None,
            },
        )
        .unwrap();
        let ro = |p: &Path| std::fs::write(p, b"x").unwrap_err().raw_os_error();
        assert_eq!(ro(&target.join("top")), Some(libc::EROFS));
        assert_eq!(ro(&target.join("sub/inner")), Some(libc::EROFS));
        std::fs::write(src.join("top"), b"x").unwrap();
        std::fs::write(sub.join("inner"), b"x").unwrap();
        assert!(
            target.join("sub/inner").exists(),
            "the clone shows the submount"
        );
        unmount_all(&target.join("sub")).unwrap();
        unmount_all(&target).unwrap();
        unmount_all(&sub).unwrap();
    }
}
