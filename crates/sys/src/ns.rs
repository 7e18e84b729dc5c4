//! Pod namespaces without a pause process: a short-lived dedicated thread unshares the network,
//! IPC and UTS namespaces, sets them up (hostname, sysctls, loopback up) and bind-mounts
//! `/proc/thread-self/ns/*` onto pin files; the namespaces live as long as the pins.
#![allow(unsafe_code)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{UnmountFlags, mount_bind, unmount};
use rustix::thread::UnshareFlags;

/// What to create and where to pin it.
#[derive(Debug, Clone, Default)]
pub struct PinRequest {
    /// Pin file for a new network namespace (None: keep the host's).
    pub net: Option<PathBuf>,
    /// Pin file for a new IPC namespace.
    pub ipc: Option<PathBuf>,
    /// Pin file for a new UTS namespace.
    pub uts: Option<PathBuf>,
    /// Set in the new UTS namespace.
    pub hostname: Option<String>,
    /// `key=value` sysctls applied inside the new namespaces (`net.*` to the network one,
    /// `kernel.shm*`/`kernel.msg*`/`kernel.sem`/`fs.mqueue.*` to the IPC one).
    pub sysctls: Vec<(String, String)>,
    /// Bring `lo` up in the new network namespace.
    pub loopback_up: bool,
}

/// Errors of namespace setup, naming the step.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("unshare({flags}): {source}")]
    Unshare { flags: String, source: io::Error },
    #[error("sethostname({hostname:?}): {source}")]
    Hostname { hostname: String, source: io::Error },
    #[error("sysctl {key}={value}: {source}")]
    Sysctl {
        key: String,
        value: String,
        source: io::Error,
    },
    #[error("invalid sysctl name {key:?}")]
    SysctlName { key: String },
    #[error("bringing lo up: {source}")]
    Loopback { source: io::Error },
    #[error("pinning {kind} namespace at {path:?}: {source}")]
    Pin {
        kind: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("namespace thread panicked")]
    Thread,
}

/// Creates the requested namespaces and pins them. On error, pins made so far are removed.
pub fn create_pinned(req: &PinRequest) -> Result<(), NsError> {
    let req = req.clone();
    // A fresh OS thread: unshare affects only it, and it exits right after, so no other code
    // (least of all an async runtime worker) ever runs inside these namespaces.
    std::thread::Builder::new()
        .name("husk-ns".into())
        .spawn(move || in_new_namespaces(&req))
        .map_err(|source| NsError::Unshare {
            flags: "spawn thread".into(),
            source,
        })?
        .join()
        .map_err(|_| NsError::Thread)?
}

fn in_new_namespaces(req: &PinRequest) -> Result<(), NsError> {
    enter_new(req)?;
    let mut pinned: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (kind, path) in [("net", &req.net), ("ipc", &req.ipc), ("uts", &req.uts)] {
            if let Some(p) = path {
                pin(kind, p)?;
                pinned.push(p.clone());
            }
        }
        Ok(())
    })();
    if result.is_err() {
        for p in pinned {
            let _ = unpin(&p);
        }
    }
    result
}

/// Moves the calling thread into new network/IPC/UTS namespaces as `req` asks (its pin paths
/// say which; nothing is pinned) and sets them up: hostname, loopback, sysctls. For a process
/// of its own (`husk-monitor userns`) that pins nothing itself: its parent pins
/// `/proc/<pid>/ns/*`. Not for a thread of a process that must stay in its namespaces.
pub fn enter_new(req: &PinRequest) -> Result<(), NsError> {
    let mut flags = UnshareFlags::empty();
    if req.net.is_some() {
        flags |= UnshareFlags::NEWNET;
    }
    if req.ipc.is_some() {
        flags |= UnshareFlags::NEWIPC;
    }
    if req.uts.is_some() {
        flags |= UnshareFlags::NEWUTS;
    }
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES (fd tables shared across threads);
    // we pass only namespace flags (the callers: a dedicated thread that exits right after, or
    // a process of its own).
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| NsError::Unshare {
        flags: format!("{flags:?}"),
        source: e.into(),
    })?;
    if let (Some(_), Some(h)) = (&req.uts, &req.hostname) {
        rustix::system::sethostname(h.as_bytes()).map_err(|e| NsError::Hostname {
            hostname: h.clone(),
            source: e.into(),
        })?;
    }
    if req.net.is_some() && req.loopback_up {
        loopback_up().map_err(|source| NsError::Loopback { source })?;
    }
    for (k, v) in &req.sysctls {
        write_sysctl(k, v)?;
    }
    Ok(())
}

/// Moves the calling process into a new user namespace. Sound only in a single-threaded
/// process (the kernel refuses it otherwise): `husk-monitor userns` calls it first thing.
pub fn unshare_user() -> Result<(), NsError> {
    // SAFETY: `unshare_unsafe` is unsafe only for CLONE_FILES (fd tables shared across threads);
    // we pass only CLONE_NEWUSER, which the kernel itself refuses in a multi-threaded process.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) }.map_err(|e| NsError::Unshare {
        flags: "NEWUSER".into(),
        source: e.into(),
    })
}

/// Moves the calling (single-threaded) process into the user namespace pinned at `pin`.
pub fn join_user(pin: &Path) -> io::Result<()> {
    let fd = fs::File::open(pin)?;
    rustix::thread::move_into_link_name_space(
        std::os::fd::AsFd::as_fd(&fd),
        Some(rustix::thread::LinkNameSpaceType::User),
    )?;
    Ok(())
}

/// Writes `/proc/sys/<key>` (dots become slashes) from the calling thread, so that per-namespace
/// sysctls land in that thread's namespaces.
fn write_sysctl(key: &str, value: &str) -> Result<(), NsError> {
    let valid = !key.is_empty()
        && key.split(['.', '/']).all(|c| {
            !c.is_empty()
                && c != ".."
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_-".contains(ch))
        });
    if !valid {
        return Err(NsError::SysctlName { key: key.into() });
    }
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    fs::write(&path, value).map_err(|source| NsError::Sysctl {
        key: key.into(),
        value: value.into(),
        source,
    })
}

fn pin(kind: &'static str, target: &Path) -> Result<(), NsError> {
    let err = |source: io::Error| NsError::Pin {
        kind,
        path: target.to_path_buf(),
        source,
    };
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)
        .map_err(err)?;
    let src = format!("/proc/thread-self/ns/{kind}");
    mount_bind(src.as_str(), target).map_err(|e| err(e.into()))
}

/// Pins an existing namespace file (e.g. `/proc/<pid>/ns/pid`) at `target`.
pub fn pin_existing(src: &Path, target: &Path) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)?;
    mount_bind(src, target).map_err(Into::into)
}

/// Removes a pin: lazy unmount, then delete the file. Missing pins are fine.
pub fn unpin(target: &Path) -> io::Result<()> {
    match unmount(target, UnmountFlags::DETACH) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOENT => {}
        Err(e) => return Err(e.into()),
    }
    match fs::remove_file(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether `path` is a live namespace pin (an nsfs bind mount).
pub fn is_pinned(path: &Path) -> bool {
    rustix::fs::statfs(path)
        .map(|s| s.f_type as u64 == 0x6e73_6673) // NSFS_MAGIC
        .unwrap_or(false)
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    use rustix::net::{AddressFamily, SocketType, socket};
    let sock = socket(AddressFamily::INET, SocketType::DGRAM, None)?;
    let mut req: libc::ifreq = {
        // SAFETY: ifreq is a plain C struct for which all-zero bytes are a valid value.
        unsafe { std::mem::zeroed() }
    };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: SIOCGIFFLAGS reads the flags of the interface named in `req` into `req`; the fd is
    // a live socket and `req` a properly sized, initialised ifreq that outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: after SIOCGIFFLAGS the union holds ifru_flags.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads `/proc/thread-self/net/<file>` inside the network namespace pinned at `pin` (from a
/// short-lived thread that joins it, so no other code ever runs in that namespace).
pub fn read_net_file(pin: &Path, file: &str) -> io::Result<String> {
    let pin = pin.to_path_buf();
    let file = file.to_string();
    std::thread::Builder::new()
        .name("husk-netns".into())
        .spawn(move || -> io::Result<String> {
            let fd = fs::File::open(&pin)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            fs::read_to_string(format!("/proc/thread-self/net/{file}"))
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

/// Opens a TCP connection to `addr` from inside the network namespace pinned at `pin` (from a
/// short-lived thread that joins it; the socket stays in that namespace, as with
/// `kubectl port-forward`).
pub fn connect_in(
    pin: &Path,
    addr: std::net::SocketAddr,
    timeout: std::time::Duration,
) -> io::Result<std::net::TcpStream> {
    let pin = pin.to_path_buf();
    std::thread::Builder::new()
        .name("husk-netns".into())
        .spawn(move || -> io::Result<std::net::TcpStream> {
            let fd = fs::File::open(&pin)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            std::net::TcpStream::connect_timeout(&addr, timeout)
        })?
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_live_namespaces_and_unpins() {
        let d = tempfile::tempdir().unwrap();
        let req = PinRequest {
            net: Some(d.path().join("net")),
            ipc: Some(d.path().join("ipc")),
            uts: Some(d.path().join("uts")),
            hostname: Some("pod-host".into()),
            sysctls: vec![("net.ipv4.ip_unprivileged_port_start".into(), "77".into())],
            loopback_up: true,
        };
        create_pinned(&req).unwrap();
        for k in ["net", "ipc", "uts"] {
            assert!(is_pinned(&d.path().join(k)), "{k}");
        }
        let host_net = fs::read_link("/proc/self/ns/net").unwrap();
        // Look inside with nsenter: hostname, sysctl, lo up.
        let run = |args: &[&str]| {
            let out = std::process::Command::new("nsenter")
                .arg(format!("--net={}", d.path().join("net").display()))
                .arg(format!("--uts={}", d.path().join("uts").display()))
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(run(&["hostname"]), "pod-host");
        assert_eq!(
            run(&["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]),
            "77"
        );
        assert!(
            run(&["cat", "/sys/class/net/lo/flags"]).ends_with('9'),
            "lo up"
        );
        assert_eq!(
            fs::read_link("/proc/self/ns/net").unwrap(),
            host_net,
            "our netns untouched"
        );
        for k in ["net", "ipc", "uts"] {
            unpin(&d.path().join(k)).unwrap();
            unpin(&d.path().join(k)).unwrap();
            assert!(!d.path().join(k).exists());
        }
    }

    #[test]
    fn connects_inside_a_pinned_namespace_only() {
        use std::io::{Read, Write};
        let d = tempfile::tempdir().unwrap();
        let pin = d.path().join("net");
        create_pinned(&PinRequest {
            net: Some(pin.clone()),
            loopback_up: true,
            ..Default::default()
        })
        .unwrap();
        // A listener inside the namespace, bound from another netns thread.
        let pin2 = pin.clone();
        let listener = std::thread::spawn(move || {
            let f = fs::File::open(&pin2).unwrap();
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&f),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            std::net::TcpListener::bind("127.0.0.1:0").unwrap()
        })
        .join()
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::time::Duration::from_secs(5);
        // Not reachable from the host's loopback...
        assert!(std::net::TcpStream::connect_timeout(&addr, t).is_err());
        // ...but from inside.
        let mut c = connect_in(&pin, addr, t).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        drop((c, s, listener));
        // A closed port is refused.
        let err = connect_in(&pin, addr, t).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
        unpin(&pin).unwrap();
    }

    #[test]
    fn bad_sysctl_fails_and_leaves_no_pin() {
        let d = tempfile::tempdir().unwrap();
        let req = PinRequest {
            net: Some(d.path().join("net")),
            sysctls: vec![("net.no.such.key".into(), "1".into())],
            ..Default::default()
        };
        assert!(matches!(create_pinned(&req), Err(NsError::Sysctl { .. })));
        assert!(!d.path().join("net").exists());
        let req = PinRequest {
            net: Some(d.path().join("net")),
            sysctls: vec![("../../etc/passwd".into(), "1".into())],
            ..Default::default()
        };
        assert!(matches!(
            create_pinned(&req),
            Err(NsError::SysctlName { .. })
        ));
    }
}
