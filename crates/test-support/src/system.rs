//! What a test needs from the machine (root, a program, a file). Without it a test skips with a
//! note, unless `HUSK_REQUIRE_SYSTEM=1` (scripts/test.sh sets it: setup.sh installs everything
//! and the script runs as root), where a missing requirement fails the test instead of letting
//! it pass with no assertion run. Also: writing an executable that can be run at once.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Whether `HUSK_REQUIRE_SYSTEM=1` is set.
pub fn system_required() -> bool {
    std::env::var("HUSK_REQUIRE_SYSTEM").as_deref() == Ok("1")
}

/// A requirement the caller found missing: panics under `HUSK_REQUIRE_SYSTEM=1`, else prints a
/// skip note. `what` names it (`"root"`, `"runc in PATH"`, …).
pub fn system_missing(what: &str) {
    assert!(
        !system_required(),
        "{what} is required (HUSK_REQUIRE_SYSTEM=1): run as root after scripts/setup.sh"
    );
    eprintln!("skipping: {what} is unavailable (set HUSK_REQUIRE_SYSTEM=1 to fail instead)");
}

/// Whether the machine has `what`: `"root"` (effective uid 0), a path (contains `/`: it must
/// exist) or a program name (an executable file in `PATH`). When it is missing: see
/// [`system_missing`] (panics under `HUSK_REQUIRE_SYSTEM=1`, else a note and `false`).
pub fn require_system(what: &str) -> bool {
    let ok = if what == "root" {
        rustix::process::geteuid().is_root()
    } else if what.contains('/') {
        Path::new(what).exists()
    } else {
        find_program(what).is_some()
    };
    if !ok {
        let described = if what == "root" || what.contains('/') {
            what.to_string()
        } else {
            format!("{what} in PATH")
        };
        system_missing(&described);
    }
    ok
}

/// A program's path: the first executable regular file `<dir>/<name>` of `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// [`find_program`], or [`system_missing`] (a panic under `HUSK_REQUIRE_SYSTEM=1`) and `None`.
pub fn require_program(name: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        system_missing(&format!("{name} in PATH"));
    }
    found
}

/// Writes an executable (mode 0755) at `path`, ready to be spawned at once.
///
/// A file written by this process cannot safely be exec'd while other threads spawn processes:
/// a child forked while the write descriptor is open holds it until its own `exec` (close-on-exec
/// closes it only then), and exec'ing the file meanwhile fails with ETXTBSY. Renaming does not
/// help (the inode is the same). So the bytes are written by a short-lived `sh` child, and the
/// write descriptor never exists in this process; the result is renamed into place.
pub fn write_executable(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{path:?} names no file")))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut child = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 0755 \"$1\"", "sh"])
        .arg(&tmp)
        .stdin(Stdio::piped())
        .spawn()?;
    let written = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin pipe"))
        .and_then(|mut stdin| stdin.write_all(contents));
    let status = child.wait()?;
    written?;
    if !status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(std::io::Error::other(format!(
            "writing {tmp:?} through sh: {status}"
        )));
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_path() {
        assert!(find_program("sh").is_some());
        assert!(find_program("husk-no-such-program").is_none());
        assert!(require_system("/"));
    }

    #[test]
    fn a_written_executable_runs_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tool");
        write_executable(&p, b"#!/bin/sh\necho ran \"$@\"\n").unwrap();
        let out = Command::new(&p).arg("x").output().unwrap();
        assert_eq!(out.stdout, b"ran x\n");
        write_executable(&p, b"#!/bin/sh\necho again\n").unwrap();
        assert_eq!(Command::new(&p).output().unwrap().stdout, b"again\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
