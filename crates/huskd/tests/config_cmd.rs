//! The huskd binary's own commands: `config default` (commented, valid, the defaults),
//! `config check` (every bad key and value with its line; exit codes), `--version` (commit and
//! runtime handlers), and that flags without a subcommand still start the daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

const HUSKD: &str = env!("CARGO_BIN_EXE_huskd");

fn huskd(args: &[&str]) -> Output {
    Command::new(HUSKD)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run huskd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn config_default_is_commented_and_checks_clean() {
    let out = huskd(&["config", "default"]);
    assert!(out.status.success());
    let conf = text(&out.stdout);
    // Every section and the keys an operator changes first, each under a comment.
    for k in [
        "root = \"/var/lib/husk\"",
        "socket = \"/run/husk/husk.sock\"",
        "cgroup_driver = \"cgroupfs\"",
        "[registry]",
        "config_path = \"/etc/husk/certs.d\"",
        "[cni]",
        "[runtimes.crun]",
        "[stream]",
        "[metrics]",
        "# address = \"127.0.0.1:9090\"",
        "# default_runtime = \"crun\"",
    ] {
        let i = conf
            .lines()
            .position(|l| l == k)
            .unwrap_or_else(|| panic!("{k:?} missing:\n{conf}"));
        let above = conf.lines().nth(i - 1).unwrap();
        assert!(above.starts_with("# "), "{k:?} has no comment:\n{conf}");
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("config.toml");
    std::fs::write(&f, &conf).unwrap();
    let out = huskd(&["config", "check", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{}: ok\n", f.display()));
}

#[test]
fn config_check_names_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        "root = \"var/lib/husk\"\n\
         log_levle = \"debug\"\n\
         \n\
         [registry]\n\
         max_concurrent_downloads = 0\n\
         mirrors = [\"http://127.0.0.1:5000\"]\n\
         \n\
         [stream]\n\
         port = \"10010\"\n\
         enable_tls = \"yes\"\n\
         \n\
         [metrics]\n\
         address = \"localhost:9090\"\n",
    )
    .unwrap();
    let out = huskd(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let p = f.display();
    for want in [
        format!("{p}:1: root = \"var/lib/husk\": must be an absolute path"),
        format!("{p}:2: unknown key \"log_levle\" (did you mean \"log_level\"?)"),
        format!("{p}:5: registry.max_concurrent_downloads = 0: must be at least 1"),
        format!("{p}:6: unknown key \"registry.mirrors\""),
        format!("{p}:9: stream.port = \"10010\": expected an integer from 0 to 65535"),
        format!("{p}:10: stream.enable_tls = \"yes\": expected true or false"),
        format!("{p}:13: metrics.address = \"localhost:9090\": not an IP address and port"),
        format!("{p}: 7 problems"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    // The daemon refuses the same file, naming the first problem and the file.
    let out = huskd(&["--config", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad.toml"),
        "{}",
        text(&out.stderr)
    );

    // Not TOML at all: one message with the line.
    std::fs::write(&f, "root = \"/a\"\n[stream\nport = 1\n").unwrap();
    let out = huskd(&["config", "check", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(&format!("{p}:2: not valid TOML")),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_check_takes_the_config_flag_and_reports_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(&f, "[cni]\nip_preference = \"ipv6\"\n").unwrap();
    let out = huskd(&["--config", f.to_str().unwrap(), "config", "check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(": ok\n"));
    let missing = dir.path().join("nope.toml");
    let out = huskd(&["config", "check", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_names_the_commit_and_the_runtime_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake-runtime");
    husk_test_support::write_executable(&fake, b"#!/bin/sh\necho 'fake version 9.9'\necho more\n")
        .unwrap();
    let f = dir.path().join("c.toml");
    std::fs::write(
        &f,
        format!(
            "default_runtime = \"fake\"\n[runtimes.fake]\npath = \"{}\"\n\
             [runtimes.gone]\npath = \"/nonexistent/runtime\"\n",
            fake.display()
        ),
    )
    .unwrap();
    let out = huskd(&["--config", f.to_str().unwrap(), "--version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = text(&out.stdout);
    let first = v.lines().next().unwrap();
    let want = format!("huskd {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(first.starts_with(&want) && first.ends_with(')'), "{v}");
    let commit = &first[want.len()..first.len() - 1];
    assert!(
        commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
        "{commit:?}"
    );
    assert!(
        v.contains(&format!("runtime handlers ({}):", f.display())),
        "{v}"
    );
    assert!(
        v.contains(&format!(
            "  fake (default): {}: fake version 9.9\n",
            fake.display()
        )),
        "{v}"
    );
    assert!(
        v.contains("  gone: /nonexistent/runtime: not found\n"),
        "{v}"
    );
    // -V is the same, and the defaults apply without a config file.
    let out = huskd(&[
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "-V",
    ]);
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(v.contains("runtime handlers (the defaults;"), "{v}");
    assert!(v.contains("  runc") && v.contains("  crun"), "{v}");
}

#[test]
fn without_a_subcommand_the_flags_still_start_the_daemon() {
    // A bad --log-level is refused by the daemon's own config check: the flags are parsed
    // and reach it exactly as before.
    let dir = tempfile::tempdir().unwrap();
    let out = huskd(&[
        "--config",
        dir.path().join("none.toml").to_str().unwrap(),
        "--root",
        "/r",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("reading config file"),
        "{}",
        text(&out.stderr)
    );
    let out = huskd(&[
        "--root",
        "relative",
        "--socket",
        "/tmp/x.sock",
        "--state-dir",
        "/tmp/s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("root = \"relative\": must be an absolute path"),
        "{}",
        text(&out.stderr)
    );
    let help = text(&huskd(&["--help"]).stdout);
    for flag in [
        "--config",
        "--root",
        "--state-dir",
        "--socket",
        "--log-level",
        "--version",
        "config",
    ] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
    // The hidden packaging command is not in the help.
    assert!(!help.contains("__generate-docs"), "{help}");
}

#[test]
fn generated_docs_hold_completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    let out = huskd(&["__generate-docs", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let read = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert!(read("completions/huskd.bash").contains("--state-dir"));
    assert!(read("completions/_huskd").starts_with("#compdef huskd"));
    assert!(read("completions/huskd.fish").contains("state-dir"));
    let man = read("man/huskd.8");
    assert!(man.contains(".TH huskd 8"), "{man}");
    assert!(man.contains("state\\-dir"), "{man}");
    assert!(read("man/huskd-config-check.8").contains("huskd\\-config\\-check"));
    assert!(!dir.path().join("man/huskd-__generate-docs.8").exists());
    assert!(!dir.path().join("man/huskd-help.8").exists());
    assert!(!dir.path().join("man/huskd-config-help.8").exists());
    if std::path::Path::new("/usr/bin/bash").exists() {
        let st = Command::new("bash")
            .arg("-n")
            .arg(dir.path().join("completions/huskd.bash"))
            .status()
            .unwrap();
        assert!(st.success());
    }
}
