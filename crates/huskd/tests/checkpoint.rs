//! CheckpointContainer on runc and crun: the archive of a running busybox (CRIU images,
//! config.dump, spec.dump, rootfs-diff.tar) where CRIU works on this host, the clear
//! FailedPrecondition where it cannot (crun built without CRIU, a CRIU too old for the kernel,
//! no `criu` in the runtime's PATH), request validation, the time limit, and that the container
//! keeps running and nothing is left behind on every path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use husk_test_support::Huskd;
use k8s_cri::v1 as cri;
use tonic::Code;

/// What a checkpoint with a runtime must give on this host.
#[derive(Debug)]
enum Expect {
    /// A complete archive.
    Archive,
    /// FailedPrecondition whose message contains this.
    Unavailable(&'static str),
}

/// Whether CRIU works here at all (`criu check`: it fails when it cannot read this kernel).
fn criu_works() -> bool {
    Command::new("criu")
        .arg("check")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn expectation(runtime: &str) -> Expect {
    if runtime == "crun" {
        let version = Command::new("crun").arg("--version").output().unwrap();
        if !String::from_utf8_lossy(&version.stdout).contains("+CRIU") {
            return Expect::Unavailable("built without CRIU support");
        }
    }
    if criu_works() {
        Expect::Archive
    } else {
        Expect::Unavailable("CRIU cannot run on this kernel")
    }
}

async fn checkpoint(
    env: &mut Env,
    id: &str,
    location: &str,
    timeout: i64,
) -> Result<(), tonic::Status> {
    env.rt
        .checkpoint_container(cri::CheckpointContainerRequest {
            container_id: id.into(),
            location: location.into(),
            timeout,
        })
        .await
        .map(drop)
}

/// Names in a tar file (through the system's `tar`, an independent reader).
fn tar_list(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -tf {archive:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect()
}

/// One member of a tar file.
fn tar_member(archive: &Path, name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(archive)
        .arg(name)
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -xOf {archive:?} {name}: {out:?}");
    out.stdout
}

/// The container runs and its state (a file it wrote) is intact.
async fn assert_still_running(env: &mut Env, id: &str) {
    let s = env.status(id).await;
    assert_eq!(
        s.state,
        cri::ContainerState::ContainerRunning as i32,
        "{s:?}"
    );
    let out = env.exec(id, &["cat", "/state.txt"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "counted 42\n");
}

/// No work directory of a checkpoint is left in huskd's scratch dir, nor a partial archive.
fn assert_no_scratch(h: &Huskd, out_dir: &Path) {
    let tmp = h.root_dir().join("tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("checkpoint-"))
        .collect();
    assert!(left.is_empty(), "work dirs left in {tmp:?}: {left:?}");
    let partial: Vec<_> = std::fs::read_dir(out_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        partial.is_empty(),
        "partial archives in {out_dir:?}: {partial:?}"
    );
}

/// A busybox that writes some state, deletes an image file, then sleeps.
const WORKLOAD: &[&str] = &[
    "sh",
    "-c",
    "echo counted 42 > /state.txt; rm /etc/husk-release; exec sleep 1000",
];

#[tokio::test]
async fn checkpoint_of_a_running_busybox_on_both_runtimes() {
    let mut env = Env::new().await;
    let out = tempfile::tempdir().unwrap();
    for rt in RUNTIMES {
        let (_, c) = env.run(&format!("ckpt-{rt}"), rt, WORKLOAD).await;
        // The workload has written its state before the checkpoint.
        let deadline = Instant::now() + Duration::from_secs(10);
        while env
            .exec(&c, &["test", "-f", "/state.txt"], 5)
            .await
            .unwrap()
            .exit_code
            != 0
        {
            assert!(Instant::now() < deadline, "{rt}: workload did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let location = out.path().join(format!("{rt}.tar"));
        let result = checkpoint(&mut env, &c, location.to_str().unwrap(), 120).await;
        match expectation(rt) {
            Expect::Archive => {
                result.unwrap_or_else(|e| panic!("{rt}: {e:?}"));
                let meta = std::fs::metadata(&location).unwrap();
                assert!(meta.len() > 0, "{rt}: empty archive");
                assert_eq!(meta.permissions().mode() & 0o777, 0o600);
                let names = tar_list(&location);
                for want in [
                    "checkpoint",
                    "checkpoint/inventory.img",
                    "checkpoint/pstree.img",
                    "config.dump",
                    "spec.dump",
                    "status.dump",
                    "rootfs-diff.tar",
                ] {
                    assert!(
                        names.iter().any(|n| n == want),
                        "{rt}: no {want} in {names:?}"
                    );
                }
                assert!(
                    names.iter().any(|n| n.starts_with("checkpoint/pages-")),
                    "{rt}: no memory pages in {names:?}"
                );
                let config: serde_json::Value =
                    serde_json::from_slice(&tar_member(&location, "config.dump")).unwrap();
                assert_eq!(config["id"], c.as_str());
                assert_eq!(config["runtime"], rt);
                assert_eq!(
                    config["rootfsImageName"],
                    "docker.io/library/busybox:latest"
                );
                let spec: serde_json::Value =
                    serde_json::from_slice(&tar_member(&location, "spec.dump")).unwrap();
                assert_eq!(
                    spec["annotations"]["io.kubernetes.cri.container-name"],
                    "main"
                );
                let diff_file = out.path().join(format!("{rt}-diff.tar"));
                std::fs::write(&diff_file, tar_member(&location, "rootfs-diff.tar")).unwrap();
                let diff = tar_list(&diff_file);
                assert!(diff.iter().any(|n| n == "state.txt"), "{rt}: {diff:?}");
                assert!(
                    diff.iter().any(|n| n == "etc/.wh.husk-release"),
                    "{rt}: deletion not a whiteout: {diff:?}"
                );
                eprintln!("{rt}: checkpoint archive of {} bytes", meta.len());
            }
            Expect::Unavailable(reason) => {
                let e = result.expect_err(rt);
                assert_eq!(e.code(), Code::FailedPrecondition, "{rt}: {e:?}");
                assert!(e.message().contains(reason), "{rt}: {e:?}");
                assert!(e.message().contains(&c), "{rt}: {e:?}");
                assert!(!location.exists(), "{rt}: archive written despite {e:?}");
                eprintln!("{rt}: CRIU cannot checkpoint on this host: {}", e.message());
            }
        }
        assert_still_running(&mut env, &c).await;
        assert_no_scratch(&env.h, out.path());
    }
    env.teardown().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_specific_codes() {
    let mut env = Env::new().await;
    let out = tempfile::tempdir().unwrap();
    let (_, c) = env.run("ckpt-bad", "runc", WORKLOAD).await;
    let abs = out.path().join("c.tar");
    let abs = abs.to_str().unwrap();
    let missing_dir = out.path().join("no/such/dir/c.tar");
    for (id, location, timeout, code) in [
        (c.as_str(), "c.tar", 0, Code::InvalidArgument),
        (c.as_str(), "./relative/c.tar", 0, Code::InvalidArgument),
        (c.as_str(), "", 0, Code::InvalidArgument),
        (
            c.as_str(),
            missing_dir.to_str().unwrap(),
            0,
            Code::InvalidArgument,
        ),
        (
            c.as_str(),
            out.path().to_str().unwrap(),
            0,
            Code::InvalidArgument,
        ),
        (c.as_str(), abs, -1, Code::InvalidArgument),
        ("", abs, 0, Code::InvalidArgument),
        ("0123456789abcdef-unknown", abs, 0, Code::NotFound),
    ] {
        let e = checkpoint(&mut env, id, location, timeout)
            .await
            .expect_err(location);
        assert_eq!(e.code(), code, "{id:?} {location:?} {timeout}: {e:?}");
    }
    assert!(!Path::new(abs).exists());
    assert_still_running(&mut env, &c).await;

    // Only a running container can be checkpointed.
    let (_, done) = env.run("ckpt-exited", "runc", &["true"]).await;
    env.wait_exited(&done).await;
    let e = checkpoint(&mut env, &done, abs, 0).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("running"), "{e:?}");
    assert_no_scratch(&env.h, out.path());
    env.teardown().await;
}

/// The runtime found in PATH (absolute).
fn which(bin: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{bin} not in PATH"))
}

/// An executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// The archive made around a stand-in for CRIU (see `fake_criu` in the test below).
fn assert_fake_archive(location: &Path, id: &str, scratch: &Path) {
    let meta = std::fs::metadata(location).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let names = tar_list(location);
    assert_eq!(
        names,
        [
            "checkpoint",
            "checkpoint/inventory.img",
            "checkpoint/pages-1.img",
            "checkpoint/pstree.img",
            "checkpoint/state-at-dump.json",
            "config.dump",
            "spec.dump",
            "status.dump",
            "status",
            "rootfs-diff.tar",
            "dump.log",
            "stats-dump",
            "container.log",
        ]
    );
    assert_eq!(
        tar_member(location, "checkpoint/pstree.img"),
        b"fake pstree"
    );
    // The container was frozen while "CRIU" dumped it.
    let state: serde_json::Value =
        serde_json::from_slice(&tar_member(location, "checkpoint/state-at-dump.json")).unwrap();
    assert_eq!(state["status"], "paused", "{state}");
    let config: serde_json::Value =
        serde_json::from_slice(&tar_member(location, "config.dump")).unwrap();
    assert_eq!(config["id"], id);
    assert_eq!(config["name"], "main_ckpt-fake_default_uid-ckpt-fake_0");
    assert_eq!(config["runtime"], "fakecriu");
    assert_eq!(config["rootfsImage"], "busybox");
    assert_eq!(
        config["rootfsImageName"],
        "docker.io/library/busybox:latest"
    );
    assert!(
        config["rootfsImageRef"]
            .as_str()
            .unwrap()
            .starts_with("docker.io/library/busybox@sha256:"),
        "{config}"
    );
    assert_eq!(config["restored"], false);
    for t in ["createdTime", "checkpointedTime"] {
        let v = config[t].as_str().unwrap();
        assert!(v.starts_with("20") && v.ends_with('Z'), "{t}: {v}");
    }
    let status: serde_json::Value =
        serde_json::from_slice(&tar_member(location, "status.dump")).unwrap();
    assert_eq!(status["id"], id);
    assert_eq!(status["metadata"]["name"], "main");
    assert_eq!(
        status["state"],
        cri::ContainerState::ContainerRunning as i32
    );
    assert_eq!(status["image"]["image"], "busybox");
    let containerd: serde_json::Value =
        serde_json::from_slice(&tar_member(location, "status")).unwrap();
    assert!(containerd["Pid"].as_u64().unwrap() > 0, "{containerd}");
    let spec: serde_json::Value =
        serde_json::from_slice(&tar_member(location, "spec.dump")).unwrap();
    assert_eq!(
        spec["annotations"]["io.kubernetes.cri.container-name"],
        "main"
    );
    // The writable layer: the new file, the deletion as a whiteout, no mount points.
    let diff_file = scratch.join("fake-diff.tar");
    std::fs::write(&diff_file, tar_member(location, "rootfs-diff.tar")).unwrap();
    let diff = tar_list(&diff_file);
    assert!(diff.iter().any(|n| n == "state.txt"), "{diff:?}");
    assert!(diff.iter().any(|n| n == "etc/.wh.husk-release"), "{diff:?}");
    for mount_point in [
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
        "proc",
        "dev",
    ] {
        assert!(
            !diff.iter().any(|n| n == mount_point),
            "{mount_point} in {diff:?}"
        );
    }
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&diff_file)
        .arg("state.txt")
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"counted 42\n");
}

#[tokio::test]
async fn archive_missing_criu_and_the_time_limit_through_wrapped_runtimes() {
    let bin = tempfile::tempdir().unwrap();
    let runc = which("runc");
    // runc as a kubelet host without the criu package would run it.
    let no_path = "/usr/bin:/bin";
    assert!(
        std::env::split_paths(no_path).all(|d| !d.join("criu").exists()),
        "criu is in {no_path}"
    );
    let nocriu = script(
        bin.path(),
        "runc-nocriu",
        &format!(
            "PATH={no_path}; export PATH\nexec {} \"$@\"",
            runc.display()
        ),
    );
    // runc whose checkpoint never finishes (the others verbs are runc's).
    let slow = script(
        bin.path(),
        "runc-slow-checkpoint",
        &format!(
            "for a in \"$@\"; do [ \"$a\" = checkpoint ] && exec sleep 60; done\nexec {} \"$@\"",
            runc.display()
        ),
    );
    // A stand-in for CRIU, which cannot run on every kernel this is tested on: `checkpoint`
    // writes placeholder images (and the container's state as the runtime sees it then) where
    // runc would; every other verb is runc's. It exercises everything around CRIU: the freeze,
    // the writable layer, the metadata, the archive, the thaw.
    let fake_criu = script(
        bin.path(),
        "runc-fake-criu",
        &format!(
            r#"runc={runc}
root=; img=; work=; prev=; ckpt=
for a in "$@"; do
  case "$prev" in --root) root=$a;; --image-path) img=$a;; --work-path) work=$a;; esac
  [ "$a" = checkpoint ] && ckpt=1
  prev=$a
done
if [ -n "$ckpt" ]; then
  printf 'fake inventory' > "$img/inventory.img"
  printf 'fake pstree' > "$img/pstree.img"
  printf 'fake pages' > "$img/pages-1.img"
  "$runc" --root "$root" state "$prev" > "$img/state-at-dump.json" || exit 1
  echo '(00.000001) fake dump' > "$work/dump.log"
  printf 'fake stats' > "$work/stats-dump"
  exit 0
fi
exec "$runc" "$@""#,
            runc = runc.display()
        ),
    );
    let config = format!(
        "[runtimes.runc]\npath = \"runc\"\n[runtimes.crun]\npath = \"crun\"\n\
         [runtimes.nocriu]\npath = \"{}\"\n[runtimes.slow]\npath = \"{}\"\n\
         [runtimes.fakecriu]\npath = \"{}\"\n",
        nocriu.display(),
        slow.display(),
        fake_criu.display()
    );
    let mut env = Env::with_config(&config).await;
    let out = tempfile::tempdir().unwrap();

    // The whole archive, around the stand-in; an existing file at the location is replaced.
    let (_, f) = env.run("ckpt-fake", "fakecriu", WORKLOAD).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while env
        .exec(&f, &["test", "-f", "/state.txt"], 5)
        .await
        .unwrap()
        .exit_code
        != 0
    {
        assert!(Instant::now() < deadline, "workload did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let location = out.path().join("fake.tar");
    std::fs::write(&location, b"an older checkpoint").unwrap();
    checkpoint(&mut env, &f, location.to_str().unwrap(), 0)
        .await
        .unwrap();
    assert_fake_archive(&location, &f, out.path());
    assert_still_running(&mut env, &f).await;
    assert_no_scratch(&env.h, out.path());
    std::fs::remove_file(&location).unwrap();

    // No criu in the runtime's PATH: FailedPrecondition saying so.
    let (_, c) = env.run("ckpt-nocriu", "nocriu", WORKLOAD).await;
    let location = out.path().join("nocriu.tar");
    let e = checkpoint(&mut env, &c, location.to_str().unwrap(), 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("CRIU is not installed"), "{e:?}");
    assert!(!location.exists());
    assert_still_running(&mut env, &c).await;
    assert_no_scratch(&env.h, out.path());

    // The same through huskctl: its error names CRIU, exit status 1.
    let huskctl = Path::new(env!("CARGO_BIN_EXE_huskd")).with_file_name("huskctl");
    assert!(
        huskctl.exists(),
        "build the binaries first: cargo build --workspace --bins"
    );
    let o = Command::new(&huskctl)
        .arg("-r")
        .arg(env.h.socket_path())
        .args(["checkpoint", "--timeout", "60", &c])
        .arg(&location)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stderr.contains("CRIU is not installed"), "{stderr}");
    assert!(!location.exists());

    // A checkpoint past its time limit: DeadlineExceeded soon after, the container thawed.
    let (_, s) = env.run("ckpt-slow", "slow", WORKLOAD).await;
    let location = out.path().join("slow.tar");
    let started = Instant::now();
    let e = checkpoint(&mut env, &s, location.to_str().unwrap(), 2)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!location.exists());
    assert_still_running(&mut env, &s).await;
    assert_no_scratch(&env.h, out.path());
    env.teardown().await;
    drop(bin);
}
