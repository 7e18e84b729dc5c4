//! Property test: random entry sequences (names with `..`, `/`, whiteouts; symlinks to `/`,
//! `..` and host paths; hardlinks anywhere) over a hostile lower layer never escape the target
//! and never panic.

use proptest::prelude::*;

use super::layers::stack;
use super::{E, Sandbox, tar_of, unpack};

const COMPS: &[&str] = &[
    "a",
    "b",
    "..",
    ".",
    "",
    ".wh.a",
    ".wh..wh..opq",
    "etc",
    "outside-file",
    "s",
    "dev",
];
const TARGETS: &[&str] = &[
    "/",
    "..",
    "../..",
    "../../..",
    "/etc",
    "a",
    "a/b",
    "../outside-file",
    "/tmp",
    "b/..",
    "/proc/self/root",
    ".",
    "../../outside-dir",
    "/etc/passwd",
    "s/..",
    "up/outside-file",
];

fn name() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(prop::sample::select(COMPS), 1..5),
    )
        .prop_map(|(abs, v)| {
            let s = v.join("/");
            if abs { format!("/{s}") } else { s }
        })
}

fn entry() -> impl Strategy<Value = E> {
    let target = prop_oneof![prop::sample::select(TARGETS).prop_map(String::from), name()];
    let mode = prop::sample::select(vec![0o755u32, 0o4755, 0, 0o777, 0o1777, 0o600]);
    (0u8..9, name(), target, mode, any::<bool>()).prop_map(|(kind, name, target, mode, xattr)| {
        let e = match kind {
            0 => E::file(&name, "data"),
            1 => E::dir(format!("{name}/")),
            2 | 3 => E::symlink(&name, &target),
            4 => E::hardlink(&name, &target),
            5 => E::file(
                format!("{name}/.wh.{}", target.rsplit('/').next().unwrap_or("x")),
                "",
            ),
            6 => E::fifo(&name),
            7 => E::chardev(&name, 1, 3),
            _ => E::file(format!("{name}/.wh..wh..opq"), ""),
        };
        let e = e.mode(mode).owner(1000, 1000);
        if xattr {
            e.pax("SCHILY.xattr.user.p", "v")
                .pax("SCHILY.xattr.trusted.overlay.opaque", "y")
        } else {
            e
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn unpack_random_layers_never_escape(entries in prop::collection::vec(entry(), 1..14)) {
        let mut sb = Sandbox::new();
        let dir = sb.base.join("lowers");
        std::fs::create_dir(&dir).unwrap();
        let lowers = stack(&dir, &[tar_of([
            E::symlink("s", "/etc"),
            E::symlink("up", "../../../.."),
            E::file("a/b", "lower"),
            E::file("etc/passwd", "lower passwd"),
            E::dir("dev/").mode(0o1777),
        ])]);
        sb.rearm();
        let _ = unpack(&tar_of(entries), &sb.root, &lowers);
        sb.check();
    }
}
