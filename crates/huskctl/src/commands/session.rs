//! Driving an exec/attach streaming session from the terminal: stdin → the session (EOF closes
//! it), its stdout/stderr → ours; with `-t` on a terminal, raw mode for the session's length
//! and the window size sent at start and on every SIGWINCH.

use std::io::{self, Read as _};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use anyhow::Context as _;
use husk_streaming::client::{self, ExecOptions, Resizer};
use rustix::termios::{self, OptionalActions, Termios};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use crate::commands::Exit;

/// Which streams a session has, as requested from huskd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Streams {
    /// Our stdin is sent (`-i`).
    pub stdin: bool,
    /// The remote side has a terminal (`-t`).
    pub tty: bool,
}

/// Runs the session at `url` (from `Exec` or `Attach`) on our stdio; Ok with the remote exit
/// code, or an `Exit` error when a signal ended a raw-mode session.
pub async fn run(url: &str, streams: Streams) -> anyhow::Result<i32> {
    let session = client::exec(url, &ExecOptions::default())
        .await
        .context("opening the streaming session")?;
    // Raw mode only makes sense when our keystrokes go to the remote terminal.
    let raw = if streams.tty && streams.stdin && termios::isatty(io::stdin()) {
        Some(RawMode::enable().context("putting the terminal in raw mode")?)
    } else {
        None
    };
    let input: Box<dyn AsyncRead + Send + Unpin> = if streams.stdin {
        Box::new(ThreadStdin::spawn().context("reading stdin")?)
    } else {
        Box::new(tokio::io::empty())
    };
    let resizing = if streams.tty {
        let resizer = session.resizer();
        // Listening before the first size is read, so no change is missed.
        let winch = signal(SignalKind::window_change()).ok();
        if let Some((w, h)) = terminal_size() {
            let _ = resizer.resize(w, h).await;
        }
        winch.map(|winch| tokio::spawn(follow_window_size(winch, resizer)))
    } else {
        None
    };
    let running = session.run(input, tokio::io::stdout(), tokio::io::stderr());
    let result = if raw.is_some() {
        // The terminal sends no signals in raw mode; one from elsewhere must still restore it.
        tokio::select! {
            r = running => r,
            sig = terminating_signal() => {
                if let Some(r) = resizing {
                    r.abort();
                }
                drop(raw);
                return Err(Exit(128u8.saturating_add(sig)).into());
            }
        }
    } else {
        running.await
    };
    if let Some(r) = resizing {
        r.abort();
    }
    drop(raw);
    Ok(result?)
}

/// Waits for SIGTERM, SIGHUP or SIGINT (sent by `kill`: a raw terminal sends none); returns
/// its number.
async fn terminating_signal() -> u8 {
    let kinds = [
        (SignalKind::terminate(), 15),
        (SignalKind::hangup(), 1),
        (SignalKind::interrupt(), 2),
    ];
    let mut waits = Vec::new();
    for (kind, n) in kinds {
        if let Ok(mut s) = signal(kind) {
            waits.push(Box::pin(async move {
                s.recv().await;
                n
            }));
        }
    }
    if waits.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(waits).await.0
}

/// Sends the window size whenever it changes (SIGWINCH), until the session ends.
async fn follow_window_size(mut winch: Signal, resizer: Resizer) {
    while winch.recv().await.is_some() {
        if let Some((w, h)) = terminal_size()
            && resizer.resize(w, h).await.is_err()
        {
            return;
        }
    }
}

/// The size (columns, rows) of the terminal on stdout, else stdin, else stderr.
fn terminal_size() -> Option<(u16, u16)> {
    let (stdout, stdin, stderr) = (io::stdout(), io::stdin(), io::stderr());
    let fds: [BorrowedFd<'_>; 3] = [stdout.as_fd(), stdin.as_fd(), stderr.as_fd()];
    fds.into_iter()
        .filter(|fd| termios::isatty(fd))
        .find_map(|fd| termios::tcgetwinsize(fd).ok())
        .filter(|ws| ws.ws_col > 0 && ws.ws_row > 0)
        .map(|ws| (ws.ws_col, ws.ws_row))
}

/// The terminal on stdin in raw mode until dropped (on every path out, panics included).
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enable() -> io::Result<Self> {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Our stdin, read by a thread of its own: a blocking read cannot be cancelled, and unlike
/// tokio's stdin (a blocking-pool task) a thread does not hold up the runtime's shutdown once
/// the session is over.
struct ThreadStdin {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl ThreadStdin {
    fn spawn() -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(4);
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let mut stdin = io::stdin().lock();
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    let item = match stdin.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => Ok(buf[..n].to_vec()),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => Err(e),
                    };
                    let failed = item.is_err();
                    if tx.blocking_send(item).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(Self {
            rx,
            chunk: Vec::new(),
            pos: 0,
        })
    }
}

impl AsyncRead for ThreadStdin {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pos == this.chunk.len() {
            match ready!(this.rx.poll_recv(cx)) {
                Some(Ok(chunk)) => {
                    this.chunk = chunk;
                    this.pos = 0;
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = (this.chunk.len() - this.pos).min(buf.remaining());
        buf.put_slice(&this.chunk[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// The exit of huskctl for a remote exit code: success for 0, else `Exit` with the code
/// (255 when it does not fit).
pub fn exit_with(code: i32) -> anyhow::Result<()> {
    match code {
        0 => Ok(()),
        code => Err(Exit(u8::try_from(code).unwrap_or(255)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    #[test]
    fn exit_codes_pass_through() {
        assert!(exit_with(0).is_ok());
        let code = |c| {
            exit_with(c)
                .unwrap_err()
                .downcast_ref::<Exit>()
                .map(|e| e.0)
        };
        assert_eq!(code(7), Some(7));
        assert_eq!(code(255), Some(255));
        assert_eq!(code(256), Some(255));
        assert_eq!(code(-1), Some(255));
    }

    #[tokio::test]
    async fn thread_stdin_reads_chunks_in_order() {
        let (tx, rx) = mpsc::channel(4);
        let mut r = ThreadStdin {
            rx,
            chunk: Vec::new(),
            pos: 0,
        };
        tx.send(Ok(b"hello ".to_vec())).await.unwrap();
        tx.send(Ok(b"world".to_vec())).await.unwrap();
        drop(tx);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
