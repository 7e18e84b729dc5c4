//! What exec and attach share across transports: the session, its pipes and its outcome.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{
    AttachRequest, BackendError, ExecRequest, StreamBackend, StreamIo, StreamWriter,
};
use crate::pipe::{pipe, pump, run_guarded};
use crate::status::Outcome;

/// Which streams a session has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Streams {
    pub(crate) stdin: bool,
    pub(crate) stdout: bool,
    pub(crate) stderr: bool,
    pub(crate) tty: bool,
}

impl Streams {
    /// How many SPDY streams a client opens for this session: the error stream, one per
    /// standard stream, and the resize stream of a tty when the protocol has one.
    pub(crate) fn spdy_count(self, resize: bool) -> usize {
        1 + usize::from(self.stdin)
            + usize::from(self.stdout)
            + usize::from(self.stderr)
            + usize::from(self.tty && resize)
    }
}

/// An exec or attach session.
#[derive(Debug, Clone)]
pub(crate) enum Session {
    Exec(ExecRequest),
    Attach(AttachRequest),
}

impl Session {
    pub(crate) fn streams(&self) -> Streams {
        match self {
            Self::Exec(r) => Streams {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
            Self::Attach(r) => Streams {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            },
        }
    }
}

/// The transport's ends of a session's pipes.
pub(crate) struct Wiring {
    /// Where the transport writes the client's stdin (drop it for EOF).
    pub(crate) stdin: Option<DuplexStream>,
    /// Where the transport writes the client's resize stream (drop it to end it).
    pub(crate) resize: Option<DuplexStream>,
    /// Cancelled when the client goes away.
    pub(crate) cancel: CancellationToken,
}

/// Makes the pipes of a session with `streams`; what the backend writes to stdout/stderr goes
/// to `tx` as `out(channel, bytes)` messages followed by `fin(channel)`.
pub(crate) fn wire<O, F, G>(streams: Streams, tx: &mpsc::Sender<O>, out: F, fin: G) -> (Wiring, Run)
where
    O: Send + 'static,
    F: Fn(Output, Bytes) -> O + Clone + Send + Sync + 'static,
    G: Fn(Output) -> Option<O>,
{
    let cancel = CancellationToken::new();
    let mut run = Run::new(cancel.clone());
    for (which, wanted) in [
        (Output::Stdout, streams.stdout),
        (Output::Stderr, streams.stderr && !streams.tty),
    ] {
        if wanted {
            let out = out.clone();
            run.output(tx, move |b| out(which, b), fin(which), which);
        }
    }
    let stdin = streams.stdin.then(|| {
        let (ours, theirs) = pipe();
        run.stdin(theirs);
        ours
    });
    let resize = streams.tty.then(|| {
        let (ours, theirs) = tokio::io::duplex(4096);
        run.resize(theirs);
        ours
    });
    let wiring = Wiring {
        stdin,
        resize,
        cancel,
    };
    (wiring, run)
}

/// An output stream of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Stdout,
    Stderr,
}

/// The backend's side of a wired session.
pub(crate) struct Run {
    io: StreamIo,
    pumps: Vec<JoinHandle<()>>,
}

impl Run {
    /// A session without streams yet, cancelled through `cancel`.
    pub(crate) fn new(cancel: CancellationToken) -> Self {
        Self {
            io: StreamIo {
                stdin: None,
                stdout: None,
                stderr: None,
                resize: None,
                cancel,
            },
            pumps: Vec::new(),
        }
    }

    /// Gives the backend `which` output: what it writes goes to `tx` as `data(bytes)`, then
    /// `fin` at its end.
    pub(crate) fn output<O, F>(
        &mut self,
        tx: &mpsc::Sender<O>,
        data: F,
        fin: Option<O>,
        which: Output,
    ) where
        O: Send + 'static,
        F: Fn(Bytes) -> O + Send + 'static,
    {
        let (ours, theirs) = pipe();
        self.pumps
            .push(tokio::spawn(pump(ours, tx.clone(), data, fin)));
        let writer: StreamWriter = Box::new(theirs);
        match which {
            Output::Stdout => self.io.stdout = Some(writer),
            Output::Stderr => self.io.stderr = Some(writer),
        }
    }

    /// Gives the backend `stdin`.
    pub(crate) fn stdin(&mut self, stdin: impl AsyncRead + Send + Unpin + 'static) {
        self.io.stdin = Some(Box::new(stdin));
    }

    /// Decodes resize events from `source` for the backend.
    pub(crate) fn resize(&mut self, source: impl AsyncRead + Send + Unpin + 'static) {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(crate::resize::forward(source, tx));
        self.io.resize = Some(rx);
    }

    /// Runs the session on the backend, then waits until all its output has been queued.
    pub(crate) async fn run(self, backend: Arc<dyn StreamBackend>, session: Session) -> Outcome {
        let io = self.io;
        let result = run_guarded(
            async move {
                match session {
                    Session::Exec(req) => backend.exec(req, io).await,
                    Session::Attach(req) => backend.attach(req, io).await,
                }
            },
            |e| Err(BackendError::new(format!("streaming backend failed: {e}"))),
        )
        .await;
        for pump in self.pumps {
            let _ = pump.await;
        }
        Outcome::from(result)
    }
}
