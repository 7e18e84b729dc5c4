//! Tests of user resolution against temporary rootfs trees, including hostile symlinks.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::*;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken-line-without-fields
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:root,alice
audio:x:29:alice,bob
alice:x:1000:alice
bob:x:1001:
video:x:44:bob
";

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(d.path().join("etc")).expect("etc");
    fs::write(d.path().join("etc/passwd"), PASSWD).expect("passwd");
    fs::write(d.path().join("etc/group"), GROUP).expect("group");
    d
}

fn sc() -> SecurityContext {
    SecurityContext::default()
}

fn run(root: &Path, sc: &SecurityContext, image: &str) -> Result<ResolvedUser, SpecError> {
    resolve(root, sc, Some(image))
}

fn user(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
    ResolvedUser {
        uid,
        gid,
        additional_gids: gids.to_vec(),
    }
}

#[test]
fn table_driven_resolution() {
    let root = rootfs();
    let with = |f: &dyn Fn(&mut SecurityContext)| {
        let mut s = sc();
        f(&mut s);
        s
    };
    let cases: Vec<(&str, SecurityContext, &str, ResolvedUser)> = vec![
        (
            "nothing set: root with root's groups",
            sc(),
            "",
            user(0, 0, &[0, 10]),
        ),
        (
            "image numeric uid",
            sc(),
            "1000",
            user(1000, 1000, &[10, 29, 1000]),
        ),
        ("image name", sc(), "bob", user(1001, 1001, &[29, 44, 1001])),
        (
            "image uid absent from passwd gets gid 0",
            sc(),
            "4242",
            user(4242, 0, &[0]),
        ),
        (
            "image uid:gid taken verbatim",
            sc(),
            "1000:5000",
            user(1000, 5000, &[10, 29, 5000]),
        ),
        (
            "image name:group",
            sc(),
            "alice:audio",
            user(1000, 29, &[10, 29]),
        ),
        ("image uid:group", sc(), "77:video", user(77, 44, &[44])),
        (
            "run_as_user overrides image",
            with(&|s| s.run_as_user = Some(1001)),
            "alice",
            user(1001, 1001, &[29, 44, 1001]),
        ),
        (
            "run_as_username overrides run_as_user",
            with(&|s| {
                s.run_as_user = Some(1001);
                s.run_as_username = "alice".into();
            }),
            "",
            user(1000, 1000, &[10, 29, 1000]),
        ),
        (
            "run_as_group",
            with(&|s| {
                s.run_as_user = Some(1000);
                s.run_as_group = Some(3000);
            }),
            "",
            user(1000, 3000, &[10, 29, 3000]),
        ),
        (
            "supplemental groups merged",
            with(&|s| {
                s.run_as_user = Some(1001);
                s.supplemental_groups = vec![5, 29];
            }),
            "",
            user(1001, 1001, &[5, 29, 44, 1001]),
        ),
        (
            "strict policy ignores /etc/group",
            with(&|s| {
                s.run_as_user = Some(1001);
                s.supplemental_groups = vec![5];
                s.supplemental_groups_policy = SupplementalGroupsPolicy::Strict;
            }),
            "",
            user(1001, 1001, &[5, 1001]),
        ),
    ];
    for (name, sc, image, want) in cases {
        let got = run(root.path(), &sc, image).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut want = want;
        want.additional_gids.sort_unstable();
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn errors() {
    let root = rootfs();
    let mut only_group = sc();
    only_group.run_as_group = Some(5);
    let mut missing_name = sc();
    missing_name.run_as_username = "mallory".into();
    let mut negative = sc();
    negative.run_as_user = Some(-1);
    let mut bad_supplemental = sc();
    bad_supplemental.supplemental_groups = vec![-3];
    type Case = (
        &'static str,
        SecurityContext,
        &'static str,
        fn(&SpecError) -> bool,
    );
    let cases: Vec<Case> = vec![
        ("group without user", only_group, "", |e| {
            matches!(e, SpecError::GroupWithoutUser { gid: 5 })
        }),
        (
            "unknown username",
            missing_name,
            "",
            |e| matches!(e, SpecError::UserNotFound { name } if name == "mallory"),
        ),
        ("unknown image user", sc(), "mallory", |e| {
            matches!(e, SpecError::UserNotFound { .. })
        }),
        (
            "unknown group",
            sc(),
            "alice:nogroup",
            |e| matches!(e, SpecError::GroupNotFound { name } if name == "nogroup"),
        ),
        ("too many colons", sc(), "a:b:c", |e| {
            matches!(e, SpecError::InvalidUser { .. })
        }),
        ("uid out of range", sc(), "99999999999", |e| {
            matches!(e, SpecError::InvalidUser { .. })
        }),
        ("gid out of range", sc(), "1:4294967296", |e| {
            matches!(e, SpecError::InvalidUser { .. })
        }),
        ("negative run_as_user", negative, "", |e| {
            matches!(e, SpecError::InvalidUser { .. })
        }),
        ("negative supplemental group", bad_supplemental, "", |e| {
            matches!(e, SpecError::InvalidSupplementalGroup { gid: -3 })
        }),
    ];
    for (name, sc, image, check) in cases {
        let err = run(root.path(), &sc, image).expect_err(name);
        assert!(check(&err), "{name}: {err:?}");
    }
}

#[test]
fn rootfs_without_passwd() {
    let d = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        run(d.path(), &sc(), "123").expect("uid"),
        user(123, 0, &[0])
    );
    assert!(matches!(
        run(d.path(), &sc(), "alice"),
        Err(SpecError::UserNotFound { .. })
    ));
}

#[test]
fn absolute_symlink_resolves_inside_the_rootfs() {
    let outside = tempfile::tempdir().expect("outside");
    let host_passwd = outside.path().join("passwd");
    fs::write(&host_passwd, "alice:x:0:0::/:/bin/sh\n").expect("host passwd");

    let root = tempfile::tempdir().expect("rootfs");
    fs::create_dir_all(root.path().join("etc")).expect("etc");
    symlink(&host_passwd, root.path().join("etc/passwd")).expect("symlink");

    // The target does not exist inside the rootfs: no user, not the host's uid 0.
    let mut s = sc();
    s.run_as_username = "alice".into();
    assert!(matches!(
        run(root.path(), &s, ""),
        Err(SpecError::UserNotFound { .. })
    ));

    // The same absolute path inside the rootfs is what gets read.
    let inner = root
        .path()
        .join(host_passwd.strip_prefix("/").expect("absolute"));
    fs::create_dir_all(inner.parent().expect("parent")).expect("inner dir");
    fs::write(&inner, "alice:x:1234:1234::/:/bin/sh\n").expect("inner passwd");
    assert_eq!(run(root.path(), &s, "").expect("alice").uid, 1234);
}

#[test]
fn dotdot_symlink_cannot_climb_out() {
    let root = rootfs();
    // A relative climb from /etc far above the root lands on the rootfs' /group.
    fs::remove_file(root.path().join("etc/group")).expect("rm group");
    symlink(
        "../../../../../../../../group",
        root.path().join("etc/group"),
    )
    .expect("symlink");
    fs::write(root.path().join("group"), "inside:x:77:alice\n").expect("inside group");
    let got = run(root.path(), &sc(), "alice").expect("alice");
    assert_eq!(got.additional_gids, vec![77, 1000]);
}

#[test]
fn non_regular_passwd_is_refused() {
    let root = tempfile::tempdir().expect("rootfs");
    fs::create_dir_all(root.path().join("etc/passwd")).expect("dir passwd");
    assert!(matches!(
        run(root.path(), &sc(), "alice"),
        Err(SpecError::ReadRootfsFile {
            file: "etc/passwd",
            ..
        })
    ));
}
