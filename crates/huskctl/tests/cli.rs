//! The built binary without a daemon: help text, and the errors for a missing or dead socket.

mod common;

use std::process::Output;

fn huskctl(args: &[&str]) -> Output {
    common::huskctl_command()
        .args(args)
        .output()
        .expect("run huskctl")
}

fn stderr(out: &Output) -> String {
    common::text(&out.stderr)
}

#[test]
fn help_lists_the_verbs() {
    let out = huskctl(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for verb in [
        "version",
        "info",
        "pull",
        "images",
        "inspecti",
        "rmi",
        "imagefsinfo",
        "import",
        "bench",
    ] {
        assert!(
            help.contains(&format!("\n  {verb} ")),
            "{verb} missing from:\n{help}"
        );
    }
    let out = huskctl(&["bench", "--help"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pull"));
}

#[test]
fn missing_socket_gives_a_helpful_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("husk.sock");
    let endpoint = format!("unix://{}", sock.display());
    let out = huskctl(&["-r", &endpoint, "version"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "huskctl: cannot connect to huskd at {}: No such file or directory \
             (is huskd running? start it with: huskd --config /etc/husk/config.toml)\n",
            sock.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn default_endpoint_is_named() {
    if std::path::Path::new("/run/husk/husk.sock").exists() {
        return; // a real huskd is running here
    }
    let out = huskctl(&["images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("huskctl: cannot connect to huskd at /run/husk/husk.sock: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn dead_socket_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
    let out = huskctl(&["--endpoint", sock.to_str().expect("utf-8"), "images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(": Connection refused (is huskd running?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn cri_env_var_is_honoured() {
    let out = common::huskctl_command()
        .arg("images")
        .env("CONTAINER_RUNTIME_ENDPOINT", "unix:///nonexistent/cri.sock")
        .output()
        .expect("run huskctl");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("at /nonexistent/cri.sock: No such file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_usage_is_reported_by_clap() {
    let out = huskctl(&["rmi"]);
    assert_eq!(out.status.code(), Some(2));
    let out = huskctl(&["-r", "npipe:////./pipe/x", "images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unsupported endpoint scheme"),
        "{}",
        stderr(&out)
    );
}
