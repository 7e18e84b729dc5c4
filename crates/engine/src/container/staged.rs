//! Mount trees husk makes for a container before its runtime runs, under `<bundle>/mounts/<n>`:
//! recursive read-only copies of CRI volumes, for runtimes that cannot make them themselves
//! (crun 1.8 has no `rro`), and idmapped copies of the volumes of a pod with its own user
//! namespace (neither runc 1.1 nor crun 1.8 makes idmapped mounts). The runtime then binds the
//! staged copy, which keeps its flags and idmapping on every submount. Also the idmapped image
//! layers an overlay rootfs of such a pod is made of. Blocking: call from a blocking thread.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use husk_sys::mount_tree::{TreeOptions, stage_tree};

use crate::error::{EngineError, Result};
use crate::spec::input::{MountSpec, Propagation};

/// Where a container's staged trees live.
pub(crate) fn staged_dir(bundle: &Path) -> PathBuf {
    bundle.join("mounts")
}

/// With `stage_rro`, replaces every recursive read-only mount in `mounts` with a staged
/// read-only copy, so that a plain `ro` bind of it is read-only all the way down (mounts whose
/// propagation is not private are left alone: the spec rejects them with a clear error). With
/// `idmap`, every mount is replaced by a copy idmapped through that user namespace. On failure,
/// the trees staged so far stay mounted for [`unstage_all`] to remove.
pub(crate) fn stage_mounts(
    bundle: &Path,
    mounts: &mut [MountSpec],
    stage_rro: bool,
    idmap: Option<BorrowedFd<'_>>,
) -> Result<()> {
    let dir = staged_dir(bundle);
    for (i, m) in mounts.iter_mut().enumerate() {
        let rro = stage_rro
            && m.readonly
            && m.recursive_read_only
            && m.propagation == Propagation::Private;
        if !rro && idmap.is_none() {
            continue;
        }
        let src = PathBuf::from(&m.host_path);
        let target = dir.join(i.to_string());
        let meta = std::fs::metadata(&src).map_err(|e| EngineError::io("stat", &src, e))?;
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        if meta.is_dir() {
            std::fs::create_dir(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        }
        .map_err(|e| EngineError::io("create", &target, e))?;
        stage_tree(
            &src,
            &target,
            &TreeOptions {
                recursive: true,
                readonly: rro,
                idmap,
            },
        )
        .map_err(|e| EngineError::StageMount {
            host_path: src.clone(),
            source: e,
        })?;
        tracing::debug!(src = %src.display(), staged = %target.display(), rro, idmapped = idmap.is_some(), "staged a mount tree");
        m.host_path = target.to_string_lossy().into_owned();
        if rro {
            m.recursive_read_only = false;
        }
    }
    Ok(())
}

/// Unmounts and removes every staged tree of a container. Idempotent. Removing the directory
/// is refused while anything is still mounted there, so a host directory behind a staged bind
/// can never be deleted through it.
pub(crate) fn unstage_all(bundle: &Path) -> Result<()> {
    let dir = staged_dir(bundle);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EngineError::io("read", &dir, e)),
    };
    for entry in entries {
        let p = entry.map_err(|e| EngineError::io("read", &dir, e))?.path();
        husk_sys::mount::unmount_all(&p).map_err(|e| EngineError::io("unmount", &p, e))?;
        if husk_sys::mount::is_mountpoint(&p) {
            return Err(EngineError::io(
                "unmount",
                &p,
                std::io::Error::other("still mounted"),
            ));
        }
        let r = if p.is_dir() {
            std::fs::remove_dir(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io("remove", &p, e)),
        }
    }
    match std::fs::remove_dir(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("remove", &dir, e)),
    }
}

/// Idmapped copies of the layer dirs of an overlay rootfs, at `<dir>/<n>`, for the overlay
/// mount to use as its lower layers (overlayfs itself cannot be idmapped; its layers can).
/// Overlayfs keeps private clones of its layers, so [`release_layers`] may detach these right
/// after the overlay is mounted.
pub(crate) fn idmapped_layers(
    dir: &Path,
    layers: &[PathBuf],
    userns: BorrowedFd<'_>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io("create", dir, e))?;
    let mut out = Vec::with_capacity(layers.len());
    for (i, l) in layers.iter().enumerate() {
        let target = dir.join(i.to_string());
        std::fs::create_dir_all(&target).map_err(|e| EngineError::io("create", &target, e))?;
        stage_tree(
            l,
            &target,
            &TreeOptions {
                recursive: false,
                readonly: true,
                idmap: Some(userns),
            },
        )
        .map_err(|e| EngineError::StageMount {
            host_path: l.clone(),
            source: e,
        })?;
        out.push(target);
    }
    Ok(out)
}

/// Detaches and removes the layer copies of [`idmapped_layers`]. Idempotent.
pub(crate) fn release_layers(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(EngineError::io("read", dir, e)),
    };
    for entry in entries {
        let p = entry.map_err(|e| EngineError::io("read", dir, e))?.path();
        husk_sys::mount::unmount_all(&p).map_err(|e| EngineError::io("unmount", &p, e))?;
        match std::fs::remove_dir(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io("remove", &p, e)),
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::io("remove", dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(host: &Path, ro: bool, rro: bool, propagation: Propagation) -> MountSpec {
        MountSpec {
            container_path: "/v".into(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: ro,
            recursive_read_only: rro,
            propagation,
        }
    }

    #[test]
    fn only_private_recursive_read_only_mounts_are_staged() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let mut mounts = vec![
            spec(dir.path(), true, false, Propagation::Private),
            spec(dir.path(), false, false, Propagation::Private),
            spec(dir.path(), true, true, Propagation::HostToContainer),
        ];
        let before = mounts.clone();
        stage_mounts(&bundle, &mut mounts, true, None).unwrap();
        assert_eq!(mounts, before);
        assert!(!staged_dir(&bundle).exists());
        unstage_all(&bundle).unwrap();
    }

    #[test]
    fn a_missing_source_is_an_error_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("bundle");
        let mut mounts = vec![spec(
            &dir.path().join("absent"),
            true,
            true,
            Propagation::Private,
        )];
        assert!(stage_mounts(&bundle, &mut mounts, true, None).is_err());
        unstage_all(&bundle).unwrap();
        assert!(!staged_dir(&bundle).exists());
    }
}
