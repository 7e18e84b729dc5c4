//! Terminal resize events: a stream of `{"Width":w,"Height":h}` JSON documents.

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use crate::backend::TerminalSize;

/// A resize document longer than this is a protocol error.
const MAX_PENDING: usize = 4096;

#[derive(Debug, Deserialize)]
struct Size {
    #[serde(rename = "Width", alias = "width")]
    width: u16,
    #[serde(rename = "Height", alias = "height")]
    height: u16,
}

/// Why the resize stream was abandoned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ResizeError {
    #[error("invalid resize event: {0}")]
    Invalid(String),
    #[error("resize event longer than {MAX_PENDING} bytes")]
    TooLong,
}

/// Splits a byte stream into resize events, however it is chunked.
#[derive(Debug, Default)]
pub(crate) struct ResizeDecoder {
    pending: Vec<u8>,
}

impl ResizeDecoder {
    /// Feeds `data`, returning the events it completes.
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Vec<TerminalSize>, ResizeError> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        let mut iter = serde_json::Deserializer::from_slice(&self.pending).into_iter::<Size>();
        let consumed = loop {
            let before = iter.byte_offset();
            match iter.next() {
                None => break iter.byte_offset(),
                Some(Ok(s)) => out.push(TerminalSize {
                    width: s.width,
                    height: s.height,
                }),
                Some(Err(e)) if e.is_eof() => break before,
                Some(Err(e)) => return Err(ResizeError::Invalid(e.to_string())),
            }
        };
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_PENDING {
            return Err(ResizeError::TooLong);
        }
        Ok(out)
    }
}

/// Decodes resize events from `stream` into `tx` until EOF, an invalid event, or the receiver
/// goes away. A full queue drops the older event: only the latest size matters.
pub(crate) async fn forward<R: AsyncRead + Unpin>(mut stream: R, tx: mpsc::Sender<TerminalSize>) {
    let mut decoder = ResizeDecoder::default();
    let mut buf = vec![0u8; 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let events = match decoder.push(&buf[..n]) {
            Ok(events) => events,
            Err(e) => {
                tracing::debug!(error = %e, "abandoning the resize stream");
                return;
            }
        };
        for size in events {
            match tx.try_send(size) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!("resize queue full: event dropped")
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(width: u16, height: u16) -> TerminalSize {
        TerminalSize { width, height }
    }

    #[test]
    fn decodes_concatenated_and_split_documents() {
        let mut d = ResizeDecoder::default();
        assert_eq!(
            d.push(br#"{"Width":80,"Height":24}{"Width":100,"#).unwrap(),
            vec![ts(80, 24)]
        );
        assert_eq!(d.push(br#""Height":50}"#).unwrap(), vec![ts(100, 50)]);
        assert_eq!(
            d.push(b"\n{\"width\":1,\"height\":2}\n").unwrap(),
            vec![ts(1, 2)]
        );
        assert!(d.push(b"").unwrap().is_empty());
    }

    #[test]
    fn rejects_garbage_and_floods() {
        let mut d = ResizeDecoder::default();
        assert!(matches!(d.push(b"]"), Err(ResizeError::Invalid(_))));
        let mut d = ResizeDecoder::default();
        assert!(matches!(
            d.push(br#"{"Width":-1,"Height":1}"#),
            Err(ResizeError::Invalid(_))
        ));
        let mut d = ResizeDecoder::default();
        let mut flood = b"{\"Width\":".to_vec();
        flood.extend(std::iter::repeat_n(b' ', MAX_PENDING));
        assert_eq!(d.push(&flood), Err(ResizeError::TooLong));
    }
}
