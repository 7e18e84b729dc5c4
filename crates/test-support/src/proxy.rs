//! A TCP proxy on 127.0.0.1 that can drop each connection after N bytes have gone from the
//! upstream to the client — a download cut half way through. Runs on its own thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NO_CUT: u64 = u64::MAX;

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    cuts: AtomicU64,
    to_client: AtomicU64,
}

/// The proxy; stops (and closes its connections) on drop.
pub struct CutProxy {
    addr: SocketAddr,
    cut: Arc<AtomicU64>,
    counters: Arc<Counters>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CutProxy {
    /// Proxies to `upstream`, closing each connection once `cut_after_response_bytes` bytes
    /// (HTTP headers included) have flowed from upstream to client.
    pub fn start(upstream: SocketAddr, cut_after_response_bytes: u64) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicU64::new(cut_after_response_bytes));
        let counters = Arc::new(Counters::default());
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (c, k) = (cut.clone(), counters.clone());
        let thread = std::thread::Builder::new()
            .name("husk-cut-proxy".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(l) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut rx => break,
                            acc = l.accept() => if let Ok((s, _)) = acc {
                                k.connections.fetch_add(1, Ordering::Relaxed);
                                let limit = c.load(Ordering::Relaxed);
                                tokio::spawn(relay(s, upstream, limit, k.clone()));
                            },
                        }
                    }
                });
            })?;
        Ok(Self {
            addr,
            cut,
            counters,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The proxy's listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Sets the per-connection byte limit for connections accepted from now on
    /// (`None`: pass everything through).
    pub fn set_cut(&self, cut: Option<u64>) {
        self.cut.store(cut.unwrap_or(NO_CUT), Ordering::Relaxed);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::Relaxed)
    }

    /// Connections that were cut so far.
    pub fn cuts(&self) -> u64 {
        self.counters.cuts.load(Ordering::Relaxed)
    }

    /// Bytes forwarded from upstream to clients so far.
    pub fn bytes_to_client(&self) -> u64 {
        self.counters.to_client.load(Ordering::Relaxed)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn relay(client: TcpStream, upstream: SocketAddr, limit: u64, k: Arc<Counters>) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = up.into_split();
    let to_upstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    });
    let mut sent = 0u64;
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match ur.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = cw.shutdown().await;
                break;
            }
            Ok(n) => n,
        };
        let allowed = usize::try_from(limit.saturating_sub(sent))
            .unwrap_or(usize::MAX)
            .min(n);
        if cw.write_all(&buf[..allowed]).await.is_err() {
            break;
        }
        sent += allowed as u64;
        k.to_client.fetch_add(allowed as u64, Ordering::Relaxed);
        if allowed < n || sent >= limit {
            k.cuts.fetch_add(1, Ordering::Relaxed);
            break;
        }
    }
    // Dropping both halves closes the client and upstream sockets.
    to_upstream.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cuts_after_n_bytes_then_passes_through() -> Result<()> {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let up_addr = up.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((mut s, _)) = up.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 4];
                    let _ = s.read_exact(&mut b).await;
                    let _ = s.write_all(&vec![7u8; 100_000]).await;
                });
            }
        });
        let p = CutProxy::start(up_addr, 1000)?;
        let mut c = TcpStream::connect(p.addr()).await?;
        c.write_all(b"ping").await?;
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got).await;
        assert_eq!(got.len(), 1000);
        assert_eq!(p.cuts(), 1);

        p.set_cut(None);
        let mut c = TcpStream::connect(p.addr()).await?;
        c.write_all(b"ping").await?;
        let mut got = Vec::new();
        c.read_to_end(&mut got).await?;
        assert_eq!(got.len(), 100_000);
        assert_eq!(p.connections(), 2);
        assert_eq!(p.cuts(), 1);
        server.abort();
        Ok(())
    }
}
