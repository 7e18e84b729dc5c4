//! The streaming server's backend over the engine: exec sessions, attach through the
//! container's monitor, port-forward dialled inside the pod.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use husk_engine::Engine;
use husk_engine::container::{ExecSession, ExecStreamRequest};
use husk_monitor::client::{AttachEvent, AttachOptions};
use husk_streaming::{
    AttachRequest, BackendError, ExecRequest, ExitStatus, PortStream, StreamBackend, StreamIo,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

/// How long output may keep flowing after the exec'd process exited (a background child may
/// hold the pipes open forever).
const DRAIN: Duration = Duration::from_millis(500);

/// The engine as a [`StreamBackend`].
pub struct EngineBackend {
    engine: Arc<Engine>,
}

impl EngineBackend {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn backend_err(e: husk_engine::EngineError) -> BackendError {
    BackendError::new(e)
}

/// Copies `from` to `to` until EOF or a write fails, then shuts `to` down.
fn pump<R, W>(mut from: R, mut to: W) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown().await;
    })
}

/// Gives the output copiers a moment to finish after the process exited, then stops them.
async fn drain(tasks: Vec<JoinHandle<()>>) {
    for mut t in tasks {
        if tokio::time::timeout(DRAIN, &mut t).await.is_err() {
            t.abort();
        }
    }
}

#[async_trait]
impl StreamBackend for EngineBackend {
    async fn exec(&self, req: ExecRequest, io: StreamIo) -> Result<ExitStatus, BackendError> {
        let StreamIo {
            stdin,
            stdout,
            stderr,
            resize,
            cancel,
        } = io;
        let mut session: ExecSession = self
            .engine
            .exec_stream(
                &req.container_id,
                ExecStreamRequest {
                    cmd: req.cmd.clone(),
                    tty: req.tty,
                    stdin: req.stdin && stdin.is_some(),
                },
            )
            .await
            .map_err(backend_err)?;
        let mut outputs = Vec::new();
        // Output nobody asked for is still read, so the process never blocks on a full pipe.
        if let Some(out) = session.stdout.take() {
            match stdout {
                Some(w) => outputs.push(pump(out, w)),
                None => outputs.push(pump(out, tokio::io::sink())),
            }
        }
        if let Some(err) = session.stderr.take() {
            match stderr {
                Some(w) => outputs.push(pump(err, w)),
                None => outputs.push(pump(err, tokio::io::sink())),
            }
        }
        let mut resize = resize;
        // Sizes the client sent before the process started apply before any of its input does
        // (kubelet sends the initial size first).
        if let Some(rx) = resize.as_mut() {
            while let Ok(size) = rx.try_recv() {
                let _ = session.resize(size.width, size.height);
            }
        }
        let input = match (stdin, session.stdin.take()) {
            (Some(r), Some(w)) => Some(pump(r, w)),
            _ => None,
        };
        let code = loop {
            tokio::select! {
                r = session.wait() => break r,
                Some(size) = async {
                    match resize.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let _ = session.resize(size.width, size.height);
                }
                () = cancel.cancelled() => {
                    // The client went away: the process goes with it.
                    session.kill().await;
                    break Err(husk_engine::EngineError::Task("client disconnected".into()));
                }
            }
        };
        if let Some(t) = input {
            t.abort();
        }
        drain(outputs).await;
        drop(session);
        code.map(ExitStatus::new).map_err(backend_err)
    }

    async fn attach(&self, req: AttachRequest, io: StreamIo) -> Result<ExitStatus, BackendError> {
        let StreamIo {
            stdin,
            mut stdout,
            mut stderr,
            resize,
            cancel,
        } = io;
        // As containerd: when the client's stdin ends, a `stdin_once` container without a tty
        // gets EOF on its stdin and the session lasts until its output ends; any other detaches
        // at once (kubelet's clients wait for the server to end the session).
        let detach_at_eof = self
            .engine
            .container(&req.container_id)
            .map(|c| !c.config.stdin_once || c.config.settings.tty)
            .unwrap_or(true);
        let (mut reader, writer) = self
            .engine
            .attach(
                &req.container_id,
                AttachOptions {
                    stdin: req.stdin && stdin.is_some(),
                    stdout: req.stdout,
                    stderr: req.stderr,
                },
            )
            .await
            .map_err(backend_err)?;
        // Sizes already sent apply before any input.
        let mut writer = writer;
        let mut resize = resize;
        if let Some(rx) = resize.as_mut() {
            while let Ok(size) = rx.try_recv() {
                let _ = writer.resize(size.width, size.height).await;
            }
        }
        // Client → container: stdin and resizes share the monitor connection's write half.
        let writer = Arc::new(tokio::sync::Mutex::new(Some(writer)));
        let mut input = stdin.map(|mut r| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match r.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let mut w = writer.lock().await;
                            let Some(w) = w.as_mut() else { break };
                            if w.stdin(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                // Detaching stdin: the monitor closes the container's stdin if stdin_once.
                writer.lock().await.take();
            })
        });
        let resizer = resize.map(|mut rx| {
            let writer = writer.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    let mut w = writer.lock().await;
                    if let Some(w) = w.as_mut() {
                        let _ = w.resize(size.width, size.height).await;
                    }
                }
            })
        });
        let result = loop {
            tokio::select! {
                ev = reader.next() => match ev {
                    Ok(Some(AttachEvent::Stdout(data))) => {
                        if let Some(w) = stdout.as_mut()
                            && w.write_all(&data).await.is_err()
                        {
                            stdout = None;
                        }
                    }
                    Ok(Some(AttachEvent::Stderr(data))) => {
                        if let Some(w) = stderr.as_mut()
                            && w.write_all(&data).await.is_err()
                        {
                            stderr = None;
                        }
                    }
                    Ok(Some(AttachEvent::Exit(rec))) => break Ok(ExitStatus::new(rec.exit_code)),
                    Ok(None) => {
                        // The monitor ended the connection: it exited, or we fell too far
                        // behind. The exit record tells which.
                        let exit = self
                            .engine
                            .container(&req.container_id)
                            .ok()
                            .and_then(|c| husk_monitor::protocol::read_exit_file(&c.exit_file()));
                        break match exit {
                            Some(e) => Ok(ExitStatus::new(e.exit_code)),
                            None => Err(BackendError::new(
                                "the container's monitor ended the attach session",
                            )),
                        };
                    }
                    Err(e) => break Err(BackendError::new(format!("attach: {e}"))),
                },
                () = cancel.cancelled() => break Ok(ExitStatus::new(0)),
                _ = async {
                    match input.as_mut() {
                        Some(t) => t.await,
                        None => std::future::pending().await,
                    }
                } => {
                    input = None;
                    if detach_at_eof {
                        break Ok(ExitStatus::new(0));
                    }
                }
            }
        };
        if let Some(t) = input {
            t.abort();
        }
        if let Some(t) = resizer {
            t.abort();
        }
        writer.lock().await.take();
        for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
            let _ = w.shutdown().await;
        }
        result
    }

    async fn port_forward(
        &self,
        pod_id: &str,
        port: u16,
        stream: PortStream,
    ) -> Result<(), BackendError> {
        let tcp = self
            .engine
            .dial_pod_port(pod_id, port)
            .await
            .map_err(backend_err)?;
        let (mut cr, mut cw) = tokio::io::split(stream);
        let (mut tr, mut tw) = tcp.into_split();
        // The client's end of input half-closes the pod's side; the pod's end of output ends
        // the forward (WebSocket clients cannot half-close, so waiting for them would hang).
        let up = async {
            let _ = tokio::io::copy(&mut cr, &mut tw).await;
            let _ = tw.shutdown().await;
            std::future::pending::<()>().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut tr, &mut cw).await;
            let _ = cw.shutdown().await;
        };
        tokio::select! {
            () = up => {}
            () = down => {}
        }
        Ok(())
    }
}
