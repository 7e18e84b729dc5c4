//! In-memory pipes between sessions' transports and the backend, and the pumps that drain them.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long a finished session waits for the client to close the connection.
pub(crate) const LINGER: Duration = Duration::from_secs(5);
/// Bytes buffered in one pipe direction.
pub(crate) const PIPE_CAPACITY: usize = 64 * 1024;
/// The largest chunk one outgoing frame carries.
pub(crate) const CHUNK: usize = 32 * 1024;

/// A pipe: (transport's end, backend's end).
pub(crate) fn pipe() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(PIPE_CAPACITY)
}

/// Reads `reader` until EOF, sending each chunk as `data(chunk)` and then `fin` (when given).
/// Stops (dropping `reader`, so the writer's next write fails) once `tx` is closed.
pub(crate) async fn pump<R, O, F>(mut reader: R, tx: mpsc::Sender<O>, data: F, fin: Option<O>)
where
    R: AsyncRead + Unpin,
    F: Fn(Bytes) -> O,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx
                    .send(data(Bytes::copy_from_slice(&buf[..n])))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    if let Some(fin) = fin {
        let _ = tx.send(fin).await;
    }
}

/// Writes to a pipe, dropping it (so its reader sees EOF) once its reader is gone.
pub(crate) async fn feed(pipe: &mut Option<DuplexStream>, data: &[u8]) {
    let failed = match pipe {
        Some(p) => p.write_all(data).await.is_err(),
        None => false,
    };
    if failed {
        *pipe = None;
    }
}

/// Spawns `fut` and turns a panic into `on_panic`.
pub(crate) async fn run_guarded<T, F>(fut: F, on_panic: impl FnOnce(String) -> T) -> T
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let task: JoinHandle<T> = tokio::spawn(fut);
    match task.await {
        Ok(v) => v,
        Err(e) => on_panic(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pump_chunks_then_fins() {
        let (ours, mut theirs) = pipe();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(pump(ours, tx, Some, Some(None)));
        theirs.write_all(&vec![7u8; CHUNK + 10]).await.unwrap();
        drop(theirs);
        let mut total = 0;
        while let Some(Some(b)) = rx.recv().await {
            assert!(b.len() <= CHUNK);
            total += b.len();
        }
        assert_eq!(total, CHUNK + 10);
        task.await.unwrap();
    }
}
