//! Signals as a pollable file descriptor: blocks them for the calling thread and opens a
//! `signalfd(2)` that turns readable while one is pending (used for SIGCHLD by `husk-monitor`).
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

/// A non-blocking, close-on-exec signalfd for a fixed set of signals.
#[derive(Debug)]
pub struct SignalFd {
    fd: OwnedFd,
}

impl SignalFd {
    /// Blocks `signals` in the calling thread (their handlers or default actions stop running)
    /// and returns a descriptor that becomes readable while one of them is pending.
    ///
    /// Call it from a single-threaded process (or before spawning threads): other threads keep
    /// their own masks. `std::process::Command` resets the mask in the children it spawns.
    pub fn new(signals: &[i32]) -> io::Result<Self> {
        // SAFETY: `sigset_t` is plain old data; an all-zero value is a valid (empty) set and
        // `sigemptyset` below initialises it properly anyway.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `sigset_t`.
        if unsafe { libc::sigemptyset(&mut set) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for &signal in signals {
            // SAFETY: `set` is a valid, initialised `sigset_t`; an invalid signal number is
            // reported as an error, not undefined behaviour.
            if unsafe { libc::sigaddset(&mut set, signal) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: `set` is initialised; a null old-set pointer is allowed by pthread_sigmask.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        // SAFETY: -1 asks for a new descriptor; `set` is initialised and only read.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Self { fd })
    }

    /// Reads and discards every pending signal record; returns how many there were.
    pub fn drain(&self) -> io::Result<usize> {
        // `struct signalfd_siginfo` is 128 bytes; read several per call.
        let mut buf = [0u8; 128 * 8];
        let mut count = 0;
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) => return Ok(count),
                Ok(n) => count += n / 128,
                Err(rustix::io::Errno::AGAIN) => return Ok(count),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsFd for SignalFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_signal_is_read_from_the_fd() {
        // Runs on its own test thread: the mask and the thread-directed signal stay here.
        let sfd = SignalFd::new(&[libc::SIGUSR2]).unwrap();
        assert_eq!(sfd.drain().unwrap(), 0);
        // SAFETY: raise(3) sends to the calling thread, which has SIGUSR2 blocked.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR2) }, 0);
        assert_eq!(sfd.drain().unwrap(), 1);
        assert_eq!(sfd.drain().unwrap(), 0);
    }

    #[test]
    fn invalid_signal_is_an_error() {
        assert!(SignalFd::new(&[10_000]).is_err());
    }
}
