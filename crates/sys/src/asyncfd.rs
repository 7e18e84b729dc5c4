//! Registering owned file descriptors (a pty master, for one) with tokio's reactor.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;

/// Registers `fd` (which should be non-blocking) for readiness with the current tokio runtime.
/// Must be called from within a tokio runtime.
#[allow(unsafe_code)]
pub fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` is a valid, open descriptor that the `AsyncFd` owns for its whole
    // life (nobody else can close it), and its `as_raw_fd` always returns that same descriptor.
    unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pipe_becomes_readable() {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::NONBLOCK).unwrap();
        let afd = register(r).unwrap();
        rustix::io::write(&w, b"x").unwrap();
        let mut guard = afd.readable().await.unwrap();
        let mut buf = [0u8; 4];
        let n = guard
            .try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(io::Error::from))
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"x");
    }
}
