//! Exec and attach sessions: the remotecommand channels over `v5`/`v4.channel.k8s.io`.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, PollSender};

use super::conn::{
    CTL_QUEUE, Ctl, DATA_QUEUE, Ended, IN_QUEUE, Incoming, MAX_FRAME, OnEof, Reader, Writer,
    close_reply,
};
use super::handshake;
use super::{ClientError, ExecOptions, Protocol};
use crate::ws::frame::close_code;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// The largest status document accepted on the error channel.
const MAX_STATUS: usize = 64 * 1024;

/// Opens the exec session an `Exec` URL names (`http://host:port/exec/<token>`).
pub async fn exec(url: &str, opts: &ExecOptions) -> Result<Session, ClientError> {
    open(url, opts).await
}

/// Opens the attach session an `Attach` URL names; the same protocol as [`exec`].
pub async fn attach(url: &str, opts: &ExecOptions) -> Result<Session, ClientError> {
    open(url, opts).await
}

async fn open(url: &str, opts: &ExecOptions) -> Result<Session, ClientError> {
    let url = handshake::parse_url(url)?;
    if opts.protocols.is_empty() {
        return Err(ClientError::Protocol("no subprotocol to offer".into()));
    }
    let names: Vec<&str> = opts.protocols.iter().map(|p| p.as_str()).collect();
    let up = handshake::connect(&url, &names, opts.connect_timeout).await?;
    let protocol = Protocol::from_name(&up.protocol).ok_or_else(|| {
        ClientError::Handshake(format!("unexpected subprotocol {:?}", up.protocol))
    })?;
    let (r, w) = up.stream.into_split();
    let (ctl_tx, ctl_rx) = mpsc::channel(CTL_QUEUE);
    let (stdin_tx, stdin_rx) = mpsc::channel(DATA_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let closing = CancellationToken::new();
    let writer = Writer {
        w,
        ctl: ctl_rx,
        data: Some(stdin_rx),
        channel: STDIN,
        on_eof: match protocol {
            Protocol::V5 => OnEof::CloseChannel,
            Protocol::V4 => OnEof::Nothing,
        },
        stop: stop_rx,
        closing: closing.clone(),
    };
    tokio::spawn(writer.run());
    let (out_tx, out_rx) = mpsc::channel(IN_QUEUE);
    let (err_tx, err_rx) = mpsc::channel(IN_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let ended = CancellationToken::new();
    let reader = Reader::new(r, up.leftover, ctl_tx.downgrade(), closing);
    tokio::spawn(read_loop(
        reader,
        out_tx,
        err_tx,
        stop_tx,
        ended.clone(),
        done_tx,
    ));
    Ok(Session {
        protocol,
        stdin: Some(Stdin {
            tx: Some(PollSender::new(stdin_tx)),
            _keep: ctl_tx.clone(),
        }),
        stdout: Some(OutputStream::new(out_rx, ctl_tx.clone())),
        stderr: Some(OutputStream::new(err_rx, ctl_tx.clone())),
        resizer: Resizer { ctl: ctl_tx, ended },
        exit: done_rx,
    })
}

async fn deliver(tx: &mut Option<mpsc::Sender<Bytes>>, data: Bytes) {
    if let Some(sender) = tx
        && sender.send(data).await.is_err()
    {
        *tx = None;
    }
}

async fn read_loop(
    mut reader: Reader,
    out: mpsc::Sender<Bytes>,
    err: mpsc::Sender<Bytes>,
    stop: oneshot::Sender<Option<u16>>,
    ended: CancellationToken,
    done: oneshot::Sender<Result<i32, ClientError>>,
) {
    let (mut out, mut err) = (Some(out), Some(err));
    let mut status = Vec::new();
    let how = loop {
        match reader.next().await {
            Incoming::Binary(d) => {
                let Some(&channel) = d.first() else {
                    continue;
                };
                if d.len() == 1 {
                    // An empty message: the server's "session is up".
                    continue;
                }
                let data = d.slice(1..);
                match channel {
                    STDOUT => deliver(&mut out, data).await,
                    STDERR => deliver(&mut err, data).await,
                    ERROR if status.len() + data.len() > MAX_STATUS => {
                        break Ended::Error(ClientError::Protocol(format!(
                            "status on the error channel exceeds {MAX_STATUS} bytes"
                        )));
                    }
                    ERROR => status.extend_from_slice(&data),
                    _ => {}
                }
            }
            Incoming::End(e) => break e,
        }
    };
    let _ = stop.send(close_reply(&how));
    drop((out, err));
    ended.cancel();
    let _ = done.send(outcome(how, &status));
}

/// The session's result from how it ended and what the error channel carried.
fn outcome(ended: Ended, status: &[u8]) -> Result<i32, ClientError> {
    if !status.is_empty() {
        return parse_status(status);
    }
    // As kubectl: a session ending cleanly without a status succeeded.
    match ended {
        Ended::Closed(None) => Ok(0),
        Ended::Closed(Some((code, _))) if code == close_code::NORMAL => Ok(0),
        Ended::Closed(Some((code, reason))) => Err(ClientError::Closed { code, reason }),
        Ended::Eof => Err(ClientError::Disconnected),
        Ended::Error(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    details: Option<Details>,
}

#[derive(Debug, Deserialize)]
struct Details {
    #[serde(default)]
    causes: Vec<Cause>,
}

#[derive(Debug, Deserialize)]
struct Cause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// A v4 `metav1.Status`: 0 for `Success`, the code of a `NonZeroExitCode`, else an error.
fn parse_status(doc: &[u8]) -> Result<i32, ClientError> {
    let status: Status = serde_json::from_slice(doc)
        .map_err(|e| ClientError::Protocol(format!("invalid status on the error channel: {e}")))?;
    match status.status.as_str() {
        "Success" => return Ok(0),
        "Failure" => {}
        other => {
            return Err(ClientError::Protocol(format!(
                "status {other:?} on the error channel"
            )));
        }
    }
    if status.reason == "NonZeroExitCode" {
        let code = status
            .details
            .iter()
            .flat_map(|d| &d.causes)
            .find(|c| c.reason == "ExitCode")
            .map(|c| c.message.trim().parse::<i32>());
        return match code {
            Some(Ok(code)) => Ok(code),
            Some(Err(_)) | None => Err(ClientError::Protocol(format!(
                "NonZeroExitCode status without a valid exit code: {}",
                status.message
            ))),
        };
    }
    let message = if status.message.is_empty() {
        format!("session failed ({})", status.reason)
    } else {
        status.message
    };
    Err(ClientError::Remote {
        reason: status.reason,
        message,
    })
}

/// An exec or attach session.
///
/// Take its streams ([`Session::take_stdin`], …) and drive them, then [`Session::wait`] for the
/// exit code; or hand it local streams with [`Session::run`]. Streams not taken are dropped by
/// `wait`: stdin then closes, output is discarded. Output must be read (or dropped): unread
/// output eventually holds up the session. Dropping every part of a session closes it, which
/// cancels the remote command.
pub struct Session {
    protocol: Protocol,
    stdin: Option<Stdin>,
    stdout: Option<OutputStream>,
    stderr: Option<OutputStream>,
    resizer: Resizer,
    exit: oneshot::Receiver<Result<i32, ClientError>>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("protocol", &self.protocol)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The negotiated subprotocol.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The remote stdin (once): writes are sent as they come; shutting it down (or dropping it)
    /// closes the remote stdin under v5 (v4 cannot say so).
    pub fn take_stdin(&mut self) -> Option<Stdin> {
        self.stdin.take()
    }

    /// The remote stdout (once); EOF when the session ends.
    pub fn take_stdout(&mut self) -> Option<OutputStream> {
        self.stdout.take()
    }

    /// The remote stderr (once); EOF when the session ends. Empty with a tty.
    pub fn take_stderr(&mut self) -> Option<OutputStream> {
        self.stderr.take()
    }

    /// Sends terminal sizes (only a tty session uses them).
    pub fn resizer(&self) -> Resizer {
        self.resizer.clone()
    }

    /// Waits for the session's end: the command's exit code (0 for `Success`, n for a
    /// `NonZeroExitCode` status), or the error the server reported.
    pub async fn wait(self) -> Result<i32, ClientError> {
        let Self {
            stdin,
            stdout,
            stderr,
            resizer,
            exit,
            ..
        } = self;
        drop((stdin, stdout, stderr));
        let result = exit.await.unwrap_or(Err(ClientError::Disconnected));
        drop(resizer);
        result
    }

    /// Copies `stdin` into the session (closing the remote stdin at its EOF) and the session's
    /// output into `stdout`/`stderr` until the session ends, then returns its exit code as
    /// [`Session::wait`] does. Reading `stdin` is abandoned once the session has ended.
    pub async fn run<I, O, E>(
        mut self,
        stdin: I,
        mut stdout: O,
        mut stderr: E,
    ) -> Result<i32, ClientError>
    where
        I: AsyncRead + Send + Unpin + 'static,
        O: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let feeder = self.take_stdin().map(|mut remote| {
            tokio::spawn(async move {
                let mut stdin = stdin;
                let _ = tokio::io::copy(&mut stdin, &mut remote).await;
                let _ = remote.shutdown().await;
            })
        });
        let copy_out = copy_output(self.take_stdout(), &mut stdout, "stdout");
        let copy_err = copy_output(self.take_stderr(), &mut stderr, "stderr");
        let copied = tokio::try_join!(copy_out, copy_err);
        let result = match copied {
            Ok(_) => self.wait().await,
            Err(e) => Err(e),
        };
        if let Some(feeder) = feeder {
            feeder.abort();
        }
        result
    }
}

async fn copy_output<W: AsyncWrite + Unpin>(
    from: Option<OutputStream>,
    to: &mut W,
    stream: &'static str,
) -> Result<(), ClientError> {
    let Some(mut from) = from else {
        return Ok(());
    };
    let copy_err = |source| ClientError::Copy { stream, source };
    tokio::io::copy(&mut from, to).await.map_err(copy_err)?;
    to.flush().await.map_err(copy_err)
}

/// The remote stdin of a [`Session`].
///
/// Each write is sent at once (as one or more messages); `flush` has nothing to do. Shutting
/// it down sends v5's close signal; writes after the session ended fail with `BrokenPipe`.
pub struct Stdin {
    tx: Option<PollSender<Bytes>>,
    _keep: mpsc::Sender<Ctl>,
}

impl fmt::Debug for Stdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stdin")
            .field("open", &self.tx.is_some())
            .finish()
    }
}

fn broken(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_owned())
}

/// `poll_write` for a [`PollSender`] of data chunks, shared with port-forward.
pub(crate) fn poll_send(
    tx: &mut Option<PollSender<Bytes>>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    let Some(sender) = tx.as_mut() else {
        return Poll::Ready(Err(broken("the stream was shut down")));
    };
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    if ready!(sender.poll_reserve(cx)).is_err() {
        return Poll::Ready(Err(broken("the streaming session has ended")));
    }
    let n = buf.len().min(MAX_FRAME);
    match sender.send_item(Bytes::copy_from_slice(&buf[..n])) {
        Ok(()) => Poll::Ready(Ok(n)),
        Err(_) => Poll::Ready(Err(broken("the streaming session has ended"))),
    }
}

impl AsyncWrite for Stdin {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_send(&mut self.get_mut().tx, cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().tx = None;
        Poll::Ready(Ok(()))
    }
}

/// A remote output stream (stdout or stderr) of a [`Session`]; EOF when the session ends.
pub struct OutputStream {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
    _keep: mpsc::Sender<Ctl>,
}

impl fmt::Debug for OutputStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputStream")
            .field("buffered", &self.chunk.len())
            .finish_non_exhaustive()
    }
}

impl OutputStream {
    fn new(rx: mpsc::Receiver<Bytes>, keep: mpsc::Sender<Ctl>) -> Self {
        Self {
            rx,
            chunk: Bytes::new(),
            _keep: keep,
        }
    }
}

/// `poll_read` from a channel of chunks, shared with port-forward.
pub(crate) fn poll_chunks<T>(
    rx: &mut mpsc::Receiver<T>,
    chunk: &mut Bytes,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    open: impl Fn(T) -> io::Result<Bytes>,
) -> Poll<io::Result<()>> {
    loop {
        if !chunk.is_empty() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(n));
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(rx.poll_recv(cx)) {
            Some(item) => *chunk = open(item)?,
            None => return Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for OutputStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        poll_chunks(&mut this.rx, &mut this.chunk, cx, buf, Ok)
    }
}

/// Sends terminal sizes to a [`Session`]; cheap to clone.
#[derive(Clone)]
pub struct Resizer {
    ctl: mpsc::Sender<Ctl>,
    ended: CancellationToken,
}

impl fmt::Debug for Resizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resizer").finish_non_exhaustive()
    }
}

impl Resizer {
    /// Tells the remote terminal it is now `width` columns by `height` rows; fails with
    /// [`ClientError::Disconnected`] once the session has ended.
    pub async fn resize(&self, width: u16, height: u16) -> Result<(), ClientError> {
        if self.ended.is_cancelled() {
            return Err(ClientError::Disconnected);
        }
        let data = format!(r#"{{"Width":{width},"Height":{height}}}"#);
        self.ctl
            .send(Ctl::Data {
                channel: RESIZE,
                data: data.into(),
            })
            .await
            .map_err(|_| ClientError::Disconnected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(
            parse_status(br#"{"metadata":{},"status":"Success"}"#).unwrap(),
            0
        );
        let exit = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"7"}]}}"#;
        assert_eq!(parse_status(exit).unwrap(), 7);
        let internal = br#"{"status":"Failure","message":"Internal error occurred: boom","reason":"InternalError","code":500}"#;
        match parse_status(internal).unwrap_err() {
            ClientError::Remote { reason, message } => {
                assert_eq!(reason, "InternalError");
                assert_eq!(message, "Internal error occurred: boom");
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            parse_status(br#"{"status":"Failure","reason":"NonZeroExitCode"}"#),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_status(b"not json"),
            Err(ClientError::Protocol(_))
        ));
    }

    #[test]
    fn outcomes_without_status() {
        assert_eq!(outcome(Ended::Closed(None), b"").unwrap(), 0);
        assert_eq!(
            outcome(Ended::Closed(Some((1000, String::new()))), b"").unwrap(),
            0
        );
        assert!(matches!(
            outcome(Ended::Closed(Some((1011, "x".into()))), b""),
            Err(ClientError::Closed { code: 1011, .. })
        ));
        assert!(matches!(
            outcome(Ended::Eof, b""),
            Err(ClientError::Disconnected)
        ));
        assert_eq!(outcome(Ended::Eof, br#"{"status":"Success"}"#).unwrap(), 0);
    }
}
