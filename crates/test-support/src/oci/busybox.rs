//! A minimal runnable rootfs from the host's static busybox: applet symlinks, users, groups.

use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

use super::{Compression, ImageBuilder, Layer, LayerBuilder};

const BUSYBOX: &str = "/bin/busybox";

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
app:x:1000:1000:app:/home/app:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";

const GROUP: &str = "root:x:0:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n";

struct Host {
    binary: Vec<u8>,
    applets: Vec<String>,
}

static HOST: OnceLock<Host> = OnceLock::new();
static BUSYBOX_GZIP: OnceLock<Layer> = OnceLock::new();

fn host() -> Result<&'static Host> {
    if let Some(h) = HOST.get() {
        return Ok(h);
    }
    let binary = std::fs::read(BUSYBOX)
        .with_context(|| format!("read {BUSYBOX} (apt-get install busybox-static)"))?;
    let out = std::process::Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .with_context(|| format!("run {BUSYBOX} --list"))?;
    if !out.status.success() {
        bail!("{BUSYBOX} --list failed: {}", out.status);
    }
    let applets = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_owned)
        .collect();
    Ok(HOST.get_or_init(|| Host { binary, applets }))
}

/// A rootfs layer: `/bin/busybox` (from the host's busybox-static) with a symlink in `/bin`
/// for every applet, `/etc/passwd` (root 0, app 1000 with home `/home/app`, nobody 65534),
/// `/etc/group` (root, app 1000, extra 2000 with member app, nogroup 65534), `/tmp` 1777,
/// `/home/app` owned by 1000:1000, and empty `/proc`, `/sys`, `/dev`, `/root`, `/var`, `/run`.
pub fn busybox_layer() -> Result<LayerBuilder> {
    let h = host()?;
    let mut b = LayerBuilder::new().dir("/bin", 0o755, 0, 0).file(
        "/bin/busybox",
        h.binary.clone(),
        0o755,
        0,
        0,
    );
    for applet in &h.applets {
        b = b.symlink(&format!("/bin/{applet}"), "busybox");
    }
    b = b
        .dir("/etc", 0o755, 0, 0)
        .file("/etc/passwd", PASSWD, 0o644, 0, 0)
        .file("/etc/group", GROUP, 0o644, 0, 0)
        .dir("/tmp", 0o1777, 0, 0)
        .dir("/home", 0o755, 0, 0)
        .dir("/home/app", 0o755, 1000, 1000)
        .dir("/root", 0o700, 0, 0);
    for d in ["/proc", "/sys", "/dev", "/var", "/run"] {
        b = b.dir(d, 0o755, 0, 0);
    }
    Ok(b)
}

fn busybox_gzip() -> Result<Layer> {
    if let Some(l) = BUSYBOX_GZIP.get() {
        return Ok(l.clone());
    }
    let l = busybox_layer()?.build(Compression::Gzip);
    Ok(BUSYBOX_GZIP.get_or_init(|| l).clone())
}

/// A runnable image: the gzip [`busybox_layer`] plus a small second layer
/// (`/etc/husk-release`, `/home/app/hello.txt` owned by app), `PATH` set and `Cmd` = `cmd`.
pub fn busybox_image(cmd: &[&str]) -> Result<ImageBuilder> {
    let second = LayerBuilder::new()
        .file(
            "/etc/husk-release",
            "husk-test-support busybox image\n",
            0o644,
            0,
            0,
        )
        .file(
            "/home/app/hello.txt",
            "hello from layer 2\n",
            0o644,
            1000,
            1000,
        )
        .build(Compression::Gzip);
    Ok(ImageBuilder::new()
        .layer(busybox_gzip()?)
        .layer(second)
        .env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .cmd(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_layer_has_applets_and_users() -> Result<()> {
        let tar = busybox_layer()?.tar();
        let mut ar = tar::Archive::new(&tar[..]);
        let mut names = Vec::new();
        for e in ar.entries()? {
            let e = e?;
            let p = e.path()?.to_string_lossy().into_owned();
            if p == "home/app/" {
                assert_eq!(e.header().uid()?, 1000);
            }
            if p == "tmp/" {
                assert_eq!(e.header().mode()?, 0o1777);
            }
            names.push(p);
        }
        for want in [
            "bin/busybox",
            "bin/sh",
            "bin/ls",
            "bin/sleep",
            "etc/passwd",
            "etc/group",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        let img = busybox_image(&["sleep", "1"])?.build();
        assert_eq!(img.layers.len(), 2);
        Ok(())
    }
}
