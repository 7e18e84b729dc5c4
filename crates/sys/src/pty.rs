//! Terminals handed over by OCI runtimes: receiving the pty master from a console socket
//! (`--console-socket`, one `SCM_RIGHTS` message) and sizing it.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

/// Receives one file descriptor (the pty master) from a connected unix socket. On a
/// non-blocking socket with nothing to read this is `WouldBlock`.
pub fn recv_fd(conn: impl AsFd) -> io::Result<OwnedFd> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    // The runtime sends the terminal's name along; we only want the descriptor.
    let mut name = [0u8; 512];
    let mut iov = [io::IoSliceMut::new(&mut name)];
    rustix::net::recvmsg(conn, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "no file descriptor in the message",
    ))
}

/// Sets a terminal's size: `cols` columns by `rows` rows.
pub fn set_size(pty: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(pty, size).map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_passed_descriptor_arrives_and_a_plain_message_is_refused() {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        let fds = [file.as_fd()];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
        rustix::net::sendmsg(
            &a,
            &[io::IoSlice::new(b"/dev/pts/0")],
            &mut control,
            SendFlags::empty(),
        )
        .unwrap();
        let fd = recv_fd(&b).unwrap();
        let got = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ));
        assert_eq!(got.unwrap(), std::path::Path::new("/dev/null"));
        std::io::Write::write_all(&mut &a, b"no fd").unwrap();
        assert_eq!(recv_fd(&b).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn sizing_something_that_is_no_terminal_fails() {
        let f = std::fs::File::open("/dev/null").unwrap();
        assert!(set_size(&f, 80, 24).is_err());
    }
}
