//! Independent client implementations for interop tests: Python's `websockets` and the npm
//! `spdy-transport` package. Without them a test skips, unless `HUSK_REQUIRE_INTEROP=1`
//! (CI sets it: scripts/setup.sh installs both).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

fn missing(what: &str) {
    assert!(
        std::env::var("HUSK_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{what} is required (HUSK_REQUIRE_INTEROP=1)"
    );
    eprintln!("skipping: {what} is unavailable");
}

/// Whether `python3` has the `websockets` package.
pub fn python_websockets() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        missing("python3 with `websockets` (pip install websockets)");
    }
    ok
}

/// The directory whose `node_modules` holds `spdy-transport@3`, installed with npm under
/// `tmp` (a test's `CARGO_TARGET_TMPDIR`) on first use.
pub fn spdy_transport(tmp: &Path) -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = DIR
        .get_or_init(|| {
            let dir = tmp.join("spdy-transport");
            if dir
                .join("node_modules/spdy-transport/package.json")
                .exists()
            {
                return Some(dir);
            }
            std::fs::create_dir_all(&dir).ok()?;
            let ok = std::process::Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&dir)
                .arg("spdy-transport@3")
                .status()
                .is_ok_and(|s| s.success());
            ok.then_some(dir)
        })
        .clone();
    if found.is_none() {
        missing("node with npm's `spdy-transport`");
    }
    found
}
