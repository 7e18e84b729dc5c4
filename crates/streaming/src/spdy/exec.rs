//! Exec and attach over SPDY: one client-opened stream per standard stream, named by its
//! `streamType` header (error, stdin, stdout, stderr, resize).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::conn::{Incoming, OUT_QUEUE, SpdyOut, read_loop, write_loop};
use super::flow::Flow;
use super::frame::{SpdyError, goaway};
use super::headers;
use crate::backend::StreamBackend;
use crate::pipe::LINGER;
use crate::remotecommand::{Output, Run, Session};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const V3: &str = "v3.channel.k8s.io";
const V2: &str = "v2.channel.k8s.io";
const V1: &str = "channel.k8s.io";

/// What exec/attach accept over SPDY (v5 behaves as v4 there).
pub(crate) const PROTOCOLS: &[&str] = &[V5, V4, V3, V2, V1];

#[derive(Default)]
struct Streams {
    count: usize,
    last_id: u32,
    error: Option<u32>,
    stdin: Option<(u32, DuplexStream)>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<(u32, DuplexStream)>,
}

impl Streams {
    fn add(&mut self, s: Incoming) {
        self.last_id = self.last_id.max(s.id);
        self.count += 1;
        match headers::get(&s.headers, "streamtype") {
            Some("error") => self.error = Some(s.id),
            Some("stdin") => self.stdin = Some((s.id, s.data)),
            Some("stdout") => self.stdout = Some(s.id),
            Some("stderr") => self.stderr = Some(s.id),
            Some("resize") => self.resize = Some((s.id, s.data)),
            other => {
                tracing::debug!(stream_type = ?other, "unexpected stream type");
                self.count -= 1;
            }
        }
    }
}

/// The reader, running in its own task; `cancel` fires when it ends.
pub(crate) fn spawn_reader<R>(
    rd: R,
    tx: mpsc::Sender<SpdyOut>,
    flow: Arc<Flow>,
    cancel: CancellationToken,
) -> (JoinHandle<Result<(), SpdyError>>, mpsc::Receiver<Incoming>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (new_tx, new_rx) = mpsc::channel(8);
    let task = tokio::spawn(async move {
        let r = read_loop(rd, tx, new_tx, &flow).await;
        flow.close();
        cancel.cancel();
        r
    });
    (task, new_rx)
}

/// The writer and reader tasks of a connection, and the writer's queue.
pub(crate) struct Tasks {
    pub(crate) tx: mpsc::Sender<SpdyOut>,
    pub(crate) writer: JoinHandle<()>,
    pub(crate) reader: JoinHandle<Result<(), SpdyError>>,
    pub(crate) streams: mpsc::Receiver<Incoming>,
}

/// Starts serving a connection's frames; `cancel` fires when the client is gone.
pub(crate) fn start<S>(stream: S, cancel: CancellationToken) -> Tasks
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel(OUT_QUEUE);
    let flow = Arc::new(Flow::default());
    let writer = tokio::spawn(write_loop(wr, rx, flow.clone()));
    let (reader, streams) = spawn_reader(rd, tx.clone(), flow, cancel);
    Tasks {
        tx,
        writer,
        reader,
        streams,
    }
}

/// Ends the session: GOAWAY, then waits a little for the client to leave.
pub(crate) async fn finish(
    tx: mpsc::Sender<SpdyOut>,
    writer: JoinHandle<()>,
    mut reader: JoinHandle<Result<(), SpdyError>>,
    last_good: u32,
) {
    let bye = SpdyOut::GoAway {
        last_good,
        status: goaway::OK,
    };
    let _ = tx.send(bye).await;
    drop(tx);
    let _ = writer.await;
    if tokio::time::timeout(LINGER, &mut reader).await.is_err() {
        reader.abort();
    }
}

/// Runs an exec/attach session over an upgraded SPDY connection.
pub(crate) async fn serve<S>(
    stream: S,
    protocol: &'static str,
    session: Session,
    backend: Arc<dyn StreamBackend>,
    creation_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let cancel = CancellationToken::new();
    let Tasks {
        tx,
        writer,
        reader,
        streams: mut new_rx,
    } = start(stream, cancel.clone());
    let wanted = session.streams();
    let expected = wanted.spdy_count(matches!(protocol, V5 | V4 | V3));
    let mut got = Streams::default();
    let deadline = tokio::time::sleep(creation_timeout);
    tokio::pin!(deadline);
    while got.count < expected {
        tokio::select! {
            s = new_rx.recv() => match s {
                Some(s) => got.add(s),
                None => break,
            },
            () = &mut deadline => break,
        }
    }
    drop(new_rx);
    if got.count < expected {
        tracing::debug!(
            expected,
            got = got.count,
            "timed out waiting for client to create streams"
        );
        finish(tx, writer, reader, got.last_id).await;
        return;
    }
    let mut run = Run::new(cancel);
    let mut fins = Vec::new();
    for (which, id, wanted) in [
        (Output::Stdout, got.stdout, wanted.stdout),
        (Output::Stderr, got.stderr, wanted.stderr && !wanted.tty),
    ] {
        if let (Some(stream_id), true) = (id, wanted) {
            let data = move |data| SpdyOut::Data { stream_id, data };
            run.output(&tx, data, Some(SpdyOut::Fin(stream_id)), which);
        }
    }
    if let Some((id, stdin)) = got.stdin.take() {
        fins.push(id);
        if wanted.stdin {
            run.stdin(stdin);
        }
    }
    if let Some((id, resize)) = got.resize.take() {
        fins.push(id);
        if wanted.tty {
            run.resize(resize);
        }
    }
    let outcome = run.run(backend, session).await;
    if let Some(stream_id) = got.error {
        let status = if matches!(protocol, V5 | V4) {
            outcome.v4_json()
        } else {
            outcome.v1_text()
        };
        if !status.is_empty() {
            let data = status.into();
            let _ = tx.send(SpdyOut::Data { stream_id, data }).await;
        }
        fins.push(stream_id);
    }
    for id in fins {
        let _ = tx.send(SpdyOut::Fin(id)).await;
    }
    finish(tx, writer, reader, got.last_id).await;
}
