//! The operator docs (`docs/*.md`) cannot rot: their shell commands run here, against a real
//! huskd in a temp dir.
//!
//! Every ```sh block of a doc must be preceded by one of these lines:
//! - `<!-- test -->`: run it; it must exit 0;
//! - `<!-- test: exit N -->`: run it; it must exit N;
//! - `<!-- not tested: WHY -->`: not run (it needs a kubelet, kubeadm, systemd, a cluster…).
//!
//! An unmarked ```sh block fails the test. The blocks of one doc run in order, each in its own
//! `bash -euo pipefail`, in one environment: a huskd (debug build, with `huskctl` and
//! `husk-monitor` beside it first in `PATH`), `HUSK_ENDPOINT` set to its socket, a work dir as the
//! current directory, and the node paths and example hosts the docs name replaced in the text
//! by the temp ones (see [`Env::substitutions`]): `/etc/husk/config.toml`, `/etc/husk/certs.d`,
//! `/var/lib/husk`, `/run/husk`, `/etc/cni/net.d`, `/etc/containerd`, `127.0.0.1:9090` (the
//! metrics endpoint), `mirror.internal:5000` and `registry.internal:5443` (local registries),
//! `https://registry-1.docker.io` (a closed local port: nothing leaves the machine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use husk_test_support::{
    Auth, Huskd, HuskdOptions, Registry, RegistryOptions, busybox_image, free_port,
    oci::write_docker_save_archive, require_system,
};

const HUSKD: &str = env!("CARGO_BIN_EXE_huskd");

/// What a block's marker says.
#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Run { exit: i32 },
    Skip,
}

/// One ```sh block: its first line number, marker and text (dedented to its fence).
#[derive(Debug)]
struct Block {
    line: usize,
    mark: Option<Mark>,
    text: String,
}

/// The ```sh blocks of a Markdown text, each with the marker on the line before its fence.
fn blocks(md: &str) -> Vec<Block> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        let indent = lines[i].len() - fence.len();
        if !fence.starts_with("```") {
            i += 1;
            continue;
        }
        let lang = fence.trim_start_matches('`').trim();
        let start = i;
        let mut body = Vec::new();
        i += 1;
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            let l = lines[i];
            body.push(
                l.get(indent.min(l.len() - l.trim_start().len())..)
                    .unwrap_or(l),
            );
            i += 1;
        }
        i += 1;
        if !matches!(lang, "sh" | "bash" | "shell" | "console") {
            continue;
        }
        let marker = lines[..start]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| !l.is_empty())
            .unwrap_or("");
        out.push(Block {
            line: start + 1,
            mark: parse_mark(marker),
            text: body.join("\n") + "\n",
        });
    }
    out
}

fn parse_mark(line: &str) -> Option<Mark> {
    let inner = line.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    if inner == "test" {
        return Some(Mark::Run { exit: 0 });
    }
    if let Some(n) = inner.strip_prefix("test: exit ") {
        return n.trim().parse().ok().map(|exit| Mark::Run { exit });
    }
    inner.starts_with("not tested:").then_some(Mark::Skip)
}

fn doc(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A huskd to run a doc's blocks against, and the registries they name.
struct Env {
    huskd: Huskd,
    work: PathBuf,
    metrics: String,
    mirror: Option<Registry>,
    private: Option<Registry>,
    dead: String,
}

impl Env {
    fn start() -> Option<Env> {
        let bin_dir = Path::new(HUSKD).parent().unwrap();
        if !require_system("root") || !require_system(&bin_dir.join("huskctl").to_string_lossy()) {
            return None;
        }
        let metrics = format!("127.0.0.1:{}", free_port());
        let huskd = Huskd::start(
            HuskdOptions::new(HUSKD).extra_config(&format!("[metrics]\naddress = \"{metrics}\"")),
        )
        .expect("start huskd");
        let work = huskd.dir().join("work");
        std::fs::create_dir_all(&work).unwrap();
        Some(Env {
            huskd,
            work,
            metrics,
            mirror: None,
            private: None,
            dead: format!("http://127.0.0.1:{}", free_port()),
        })
    }

    /// `mirror.internal:5000` (plain, `library/busybox:latest`) and `registry.internal:5443`
    /// (TLS, alice/s3cret, `team/app:1.0`), with the private one's CA as `registry-ca.crt`.
    async fn with_registries(mut self) -> Option<Env> {
        if !require_system("/usr/bin/docker-registry") || !require_system("htpasswd") {
            return None;
        }
        let mirror = Registry::start(RegistryOptions::default()).await.unwrap();
        let img = busybox_image(&["sh"]).unwrap().build();
        mirror
            .push_image("library/busybox", "latest", &img)
            .await
            .unwrap();
        let private = Registry::start(RegistryOptions {
            auth: Auth::Htpasswd {
                user: "alice".into(),
                pass: "s3cret".into(),
            },
            tls: true,
        })
        .await
        .unwrap();
        private.push_image("team/app", "1.0", &img).await.unwrap();
        std::fs::copy(
            private.ca_cert_path().unwrap(),
            self.work.join("registry-ca.crt"),
        )
        .unwrap();
        self.mirror = Some(mirror);
        self.private = Some(private);
        Some(self)
    }

    /// What the docs name, and what it is here; longest first, so that a path is replaced
    /// before its parent.
    fn substitutions(&self) -> Vec<(String, String)> {
        let h = &self.huskd;
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut v = vec![
            ("/etc/husk/config.toml".to_string(), s(h.config_path())),
            ("/etc/husk/certs.d".into(), s(h.certs_dir())),
            ("/etc/cni/net.d".into(), s(h.cni_dir().join("net.d"))),
            ("/etc/containerd".into(), s(h.dir().join("containerd"))),
            ("/var/lib/husk".into(), s(h.root_dir())),
            ("/run/husk/husk.sock".into(), s(h.socket_path())),
            ("/run/husk".into(), s(h.state_dir())),
            ("127.0.0.1:9090".into(), self.metrics.clone()),
            ("https://registry-1.docker.io".into(), self.dead.clone()),
        ];
        if let Some(m) = &self.mirror {
            v.push(("mirror.internal:5000".into(), m.host()));
        }
        if let Some(p) = &self.private {
            v.push(("registry.internal:5443".into(), p.host()));
        }
        v
    }

    /// Runs every marked block of `name` in order; fails on an unmarked one.
    fn run_doc(&self, name: &str) {
        let md = doc(name);
        let blocks = blocks(&md);
        assert!(!blocks.is_empty(), "{name} has no sh blocks");
        let path = format!(
            "{}:{}",
            Path::new(HUSKD).parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut ran = 0;
        for b in &blocks {
            let exit = match &b.mark {
                None => panic!(
                    "{name}:{}: a ```sh block needs <!-- test -->, <!-- test: exit N --> or \
                     <!-- not tested: why --> on the line before it",
                    b.line
                ),
                Some(Mark::Skip) => continue,
                Some(Mark::Run { exit }) => *exit,
            };
            let mut script = b.text.clone();
            for (from, to) in self.substitutions() {
                script = script.replace(&from, &to);
            }
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(&self.work)
                .env("PATH", &path)
                .env(
                    "HUSK_ENDPOINT",
                    format!("unix://{}", self.huskd.socket_path().display()),
                )
                .env_remove("CONTAINER_RUNTIME_ENDPOINT")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(
                out.status.code(),
                Some(exit),
                "{name}:{}: the block exited with {} instead of {exit}\n--- as written:\n{}\
                 --- as run:\n{script}--- stdout:\n{}--- stderr:\n{}",
                b.line,
                out.status,
                b.text,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            ran += 1;
        }
        assert!(ran > 0, "{name}: no block is run");
    }
}

#[tokio::test]
async fn kubelet_md() {
    let Some(env) = Env::start() else { return };
    env.run_doc("kubelet.md");
}

#[tokio::test]
async fn registries_md() {
    let Some(env) = Env::start() else { return };
    let Some(env) = env.with_registries().await else {
        return;
    };
    env.run_doc("registries.md");
}

#[tokio::test]
async fn troubleshooting_md() {
    let Some(env) = Env::start() else { return };
    env.run_doc("troubleshooting.md");
}

#[tokio::test]
async fn migrating_from_containerd_md() {
    let Some(env) = Env::start() else { return };
    // A containerd node's certs.d, and an archive exported from it.
    let certs = env.huskd.dir().join("containerd/certs.d/docker.io");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        certs.join("hosts.toml"),
        format!(
            "server = \"{}\"\n\n[host.\"http://127.0.0.1:{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            env.dead,
            free_port()
        ),
    )
    .unwrap();
    let img = busybox_image(&["sh"]).unwrap().build();
    write_docker_save_archive(&img, &["team/app:1.0"], &env.work.join("images.tar")).unwrap();
    env.run_doc("migrating-from-containerd.md");
    let copied = env.huskd.certs_dir().join("docker.io/hosts.toml");
    assert!(copied.is_file(), "{} was not copied", copied.display());
}

#[test]
fn markers_are_parsed() {
    let md = "text\n<!-- test -->\n```sh\necho a\n```\n\n<!-- test: exit 1 -->\n\n```sh\nfalse\n```\n\
              ```sh\nunmarked\n```\n<!-- not tested: needs kubeadm -->\n```sh\nkubeadm init\n```\n\
              ```toml\na = 1\n```\n1. step\n\n   <!-- test -->\n   ```sh\n   cat <<EOF\n   x\n   EOF\n   ```\n";
    let b = blocks(md);
    let marks: Vec<Option<Mark>> = b.iter().map(|b| b.mark.clone()).collect();
    assert_eq!(
        marks,
        [
            Some(Mark::Run { exit: 0 }),
            Some(Mark::Run { exit: 1 }),
            None,
            Some(Mark::Skip),
            Some(Mark::Run { exit: 0 }),
        ]
    );
    assert_eq!(b[0].text, "echo a\n");
    assert_eq!(b[0].line, 3);
    assert_eq!(b[4].text, "cat <<EOF\nx\nEOF\n");
    // Every doc is there and has runnable blocks.
    for name in [
        "kubelet.md",
        "registries.md",
        "troubleshooting.md",
        "migrating-from-containerd.md",
    ] {
        assert!(
            blocks(&doc(name))
                .iter()
                .any(|b| matches!(b.mark, Some(Mark::Run { .. }))),
            "{name}"
        );
    }
}
