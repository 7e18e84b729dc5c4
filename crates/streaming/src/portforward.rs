//! What port-forward shares across transports: one forwarded connection through the backend.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use crate::backend::{BackendError, PortStream, StreamBackend};
use crate::pipe::{pipe, pump, run_guarded};

/// Forwards `port` of `pod_id`: `incoming` carries the client's bytes, what the backend writes
/// goes to `tx` as `data(bytes)` then `fin`. Returns once the backend is done and its output
/// queued; an error carries kubelet's message for the error stream.
pub(crate) async fn forward<O, F>(
    backend: Arc<dyn StreamBackend>,
    pod_id: String,
    port: u16,
    incoming: DuplexStream,
    tx: mpsc::Sender<O>,
    data: F,
    fin: Option<O>,
) -> Result<(), String>
where
    O: Send + 'static,
    F: Fn(Bytes) -> O + Send + 'static,
{
    let (out_ours, out_theirs) = pipe();
    let pump = tokio::spawn(pump(out_ours, tx, data, fin));
    let stream = PortStream::new(incoming, out_theirs);
    let pod = pod_id.clone();
    let result = run_guarded(
        async move { backend.port_forward(&pod, port, stream).await },
        |e| Err(BackendError::new(format!("streaming backend failed: {e}"))),
    )
    .await;
    let _ = pump.await;
    result.map_err(|e| {
        let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
        tracing::debug!("{msg}");
        msg
    })
}
