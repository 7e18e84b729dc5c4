//! One-time, expiring, unguessable tokens naming pending streaming requests.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use rand::RngCore as _;

use crate::backend::{AttachRequest, ExecRequest, PortForwardRequest};
use crate::error::Error;

/// At most this many tokens wait to be used (kubelet's `maxInFlight`).
pub(crate) const MAX_IN_FLIGHT: usize = 1000;

/// What a token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    PortForward(PortForwardRequest),
}

/// The pending requests by token.
#[derive(Debug)]
pub(crate) struct TokenCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Pending, Instant)>>,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Stores `pending` under a fresh token (32 random bytes, base64url without padding).
    pub(crate) fn insert(&self, pending: Pending) -> Result<String, Error> {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_IN_FLIGHT {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= MAX_IN_FLIGHT {
                return Err(Error::TooManyRequests(MAX_IN_FLIGHT));
            }
        }
        entries.insert(token.clone(), (pending, now + self.ttl));
        Ok(token)
    }

    /// Removes and returns the request of an unexpired `token`.
    pub(crate) fn consume(&self, token: &str) -> Option<Pending> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (pending, expires) = entries.remove(token)?;
        (expires > Instant::now()).then_some(pending)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> Pending {
        Pending::Exec(ExecRequest {
            container_id: "c".into(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
    }

    #[test]
    fn tokens_are_single_use_and_unguessable() {
        let cache = TokenCache::new(Duration::from_secs(60));
        let a = cache.insert(exec()).unwrap();
        let b = cache.insert(exec()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(cache.consume(&a), Some(exec()));
        assert_eq!(cache.consume(&a), None);
        assert_eq!(cache.consume("nope"), None);
        assert_eq!(cache.consume(&b), Some(exec()));
    }

    #[test]
    fn tokens_expire() {
        let cache = TokenCache::new(Duration::from_millis(20));
        let a = cache.insert(exec()).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.consume(&a), None);
    }

    #[test]
    fn in_flight_is_capped_but_expired_make_room() {
        let cache = TokenCache::new(Duration::from_millis(30));
        for _ in 0..MAX_IN_FLIGHT {
            cache.insert(exec()).unwrap();
        }
        assert!(matches!(
            cache.insert(exec()),
            Err(Error::TooManyRequests(MAX_IN_FLIGHT))
        ));
        std::thread::sleep(Duration::from_millis(50));
        cache.insert(exec()).unwrap();
        assert_eq!(cache.len(), 1);
    }
}
