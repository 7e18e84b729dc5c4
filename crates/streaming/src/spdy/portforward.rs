//! `portforward.k8s.io` over SPDY: each forwarded connection is a pair of client-opened
//! streams (`streamType` data and error) sharing a `requestID` and naming a `port`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::conn::{Incoming, SpdyOut};
use super::exec::{Tasks, finish, start};
use super::frame::rst;
use super::headers;
use crate::backend::StreamBackend;
use crate::pipe::LINGER;
use crate::portforward::forward;

/// The one port-forward protocol.
pub(crate) const PROTOCOLS: &[&str] = &["portforward.k8s.io"];

struct Pair {
    created: Instant,
    error: Option<u32>,
    data: Option<Incoming>,
}

/// A stream's request id; old clients send none, so it is derived from the stream ids of a
/// pair (error = n, data = n + 2), as kubelet does.
fn request_id(s: &Incoming, stream_type: &str) -> String {
    match headers::get(&s.headers, "requestid") {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ if stream_type == "data" => s.id.saturating_sub(2).to_string(),
        _ => s.id.to_string(),
    }
}

struct Forwarder {
    pod_id: String,
    allowed: Vec<u16>,
    backend: Arc<dyn StreamBackend>,
    tx: mpsc::Sender<SpdyOut>,
    pairs: HashMap<String, Pair>,
    forwards: JoinSet<()>,
}

impl Forwarder {
    async fn add(&mut self, s: Incoming) {
        let stream_type = headers::get(&s.headers, "streamtype")
            .unwrap_or("")
            .to_owned();
        let id = request_id(&s, &stream_type);
        let stream_id = s.id;
        let pair = self.pairs.entry(id.clone()).or_insert_with(|| Pair {
            created: Instant::now(),
            error: None,
            data: None,
        });
        let problem = match stream_type.as_str() {
            "error" if pair.error.is_some() => Some("error stream already assigned".to_owned()),
            "error" => {
                pair.error = Some(s.id);
                None
            }
            "data" if pair.data.is_some() => Some("data stream already assigned".to_owned()),
            "data" => {
                pair.data = Some(s);
                None
            }
            other => Some(format!("unexpected stream type {other:?}")),
        };
        if let Some(problem) = problem {
            let msg = format!("error processing stream for request {id}: {problem}");
            tracing::debug!("{msg}");
            if let Some(error_id) = pair.error.filter(|e| *e != stream_id) {
                let data = msg.into();
                let _ = self
                    .tx
                    .send(SpdyOut::Data {
                        stream_id: error_id,
                        data,
                    })
                    .await;
            }
            let status = rst::PROTOCOL_ERROR;
            let _ = self.tx.send(SpdyOut::Rst { stream_id, status }).await;
            return;
        }
        if pair.error.is_none() || pair.data.is_none() {
            return;
        }
        if let Some(Pair {
            error: Some(error_id),
            data: Some(data),
            ..
        }) = self.pairs.remove(&id)
        {
            self.start(error_id, data);
        }
    }

    fn start(&mut self, error_id: u32, data: Incoming) {
        let data_id = data.id;
        let port = match headers::get(&data.headers, "port").map(|p| (p, p.parse::<u16>())) {
            Some((_, Ok(port)))
                if port > 0 && (self.allowed.is_empty() || self.allowed.contains(&port)) =>
            {
                Ok(port)
            }
            Some((_, Ok(port))) if port > 0 => {
                Err(format!("port {port} is not forwarded by this request"))
            }
            Some((p, _)) => Err(format!("invalid port {p:?}")),
            None => Err("missing port header".to_owned()),
        };
        let (backend, pod, tx) = (self.backend.clone(), self.pod_id.clone(), self.tx.clone());
        self.forwards.spawn(async move {
            let result = match port {
                Ok(port) => {
                    let out = move |data| SpdyOut::Data {
                        stream_id: data_id,
                        data,
                    };
                    let fin = Some(SpdyOut::Fin(data_id));
                    forward(backend, pod, port, data.data, tx.clone(), out, fin).await
                }
                Err(msg) => {
                    let _ = tx.send(SpdyOut::Fin(data_id)).await;
                    Err(msg)
                }
            };
            if let Err(msg) = result {
                let data = msg.into();
                let _ = tx
                    .send(SpdyOut::Data {
                        stream_id: error_id,
                        data,
                    })
                    .await;
            }
            let _ = tx.send(SpdyOut::Fin(error_id)).await;
        });
    }

    async fn expire(&mut self, timeout: Duration) {
        let now = Instant::now();
        let stale: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| now.duration_since(p.created) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            let Some(pair) = self.pairs.remove(&id) else {
                continue;
            };
            tracing::debug!(request = %id, "timed out waiting for streams");
            if let Some(stream_id) = pair.error {
                let data = format!("request {id}: timed out waiting for streams").into();
                let _ = self.tx.send(SpdyOut::Data { stream_id, data }).await;
                let _ = self.tx.send(SpdyOut::Fin(stream_id)).await;
            }
            if let Some(data) = pair.data {
                let status = rst::CANCEL;
                let stream_id = data.id;
                let _ = self.tx.send(SpdyOut::Rst { stream_id, status }).await;
            }
        }
    }
}

/// Serves port-forward streams of `pod_id` over an upgraded SPDY connection until the client
/// leaves; a non-empty `allowed` limits the ports.
pub(crate) async fn serve<S>(
    stream: S,
    pod_id: String,
    allowed: Vec<u16>,
    backend: Arc<dyn StreamBackend>,
    creation_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let Tasks {
        tx,
        writer,
        reader,
        streams: mut new_rx,
    } = start(stream, CancellationToken::new());
    let mut f = Forwarder {
        pod_id,
        allowed,
        backend,
        tx: tx.clone(),
        pairs: HashMap::new(),
        forwards: JoinSet::new(),
    };
    let mut last_id = 0;
    let mut tick = tokio::time::interval(creation_timeout.min(Duration::from_secs(1)));
    loop {
        tokio::select! {
            s = new_rx.recv() => match s {
                Some(s) => {
                    last_id = last_id.max(s.id);
                    f.add(s).await;
                }
                None => break,
            },
            _ = tick.tick() => f.expire(creation_timeout).await,
            Some(_) = f.forwards.join_next(), if !f.forwards.is_empty() => {}
        }
    }
    drop(f.pairs);
    let mut forwards = f.forwards;
    let drained = tokio::time::timeout(LINGER, async {
        while forwards.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        forwards.abort_all();
    }
    finish(tx, writer, reader, last_id).await;
}
