//! What a test needs from the machine (root, a program, a file): a copy of
//! `husk_test_support::system`, as this crate does not depend on husk-test-support. Without it
//! a test skips with a note, unless `HUSK_REQUIRE_SYSTEM=1` (scripts/test.sh), where it fails.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A requirement found missing: panics under `HUSK_REQUIRE_SYSTEM=1`, else prints a skip note.
pub fn system_missing(what: &str) {
    assert!(
        std::env::var("HUSK_REQUIRE_SYSTEM").as_deref() != Ok("1"),
        "{what} is required (HUSK_REQUIRE_SYSTEM=1): run as root after scripts/setup.sh"
    );
    eprintln!("skipping: {what} is unavailable (set HUSK_REQUIRE_SYSTEM=1 to fail instead)");
}

/// Whether the machine has `what`: `"root"`, a path (contains `/`) or a program in `PATH`;
/// when missing, see [`system_missing`].
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

/// The first executable regular file `<dir>/<name>` of `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// [`find_program`], or [`system_missing`] and `None`.
pub fn require_program(name: &str) -> Option<PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        system_missing(&format!("{name} in PATH"));
    }
    found
}

/// Writes an executable (0755) that can be spawned at once: the bytes are written by a
/// short-lived `sh`, so no write descriptor of it ever exists in this process for a concurrent
/// fork to inherit (which makes exec'ing it fail with ETXTBSY; a rename would not help, the
/// inode is the same); then renamed into place.
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
