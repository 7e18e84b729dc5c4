//! Per-key async locks: one holder per key (a blob digest, a chain ID, a reference), entries
//! dropped when nobody holds or waits for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Slot = Arc<tokio::sync::Mutex<()>>;

/// A map of named async mutexes; clones share it.
#[derive(Default, Clone)]
pub struct KeyedLocks {
    map: Arc<Mutex<HashMap<String, Slot>>>,
}

/// Held while the key is locked.
pub struct KeyedGuard {
    guard: Option<OwnedMutexGuard<()>>,
    slot: Slot,
    key: String,
    map: Arc<Mutex<HashMap<String, Slot>>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: impl Into<String>) -> KeyedGuard {
        let key = key.into();
        let slot = {
            let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
            m.entry(key.clone()).or_default().clone()
        };
        let guard = slot.clone().lock_owned().await;
        KeyedGuard {
            guard: Some(guard),
            slot,
            key,
            map: self.map.clone(),
        }
    }

    /// Number of keys with a holder or waiter (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Ours and the map's: nobody else waits, so the entry can go.
        if Arc::strong_count(&self.slot) == 2 {
            m.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn same_key_serialises_and_map_empties() {
        let l = Arc::new(KeyedLocks::default());
        let g = l.lock("a").await;
        let l2 = l.clone();
        let t = tokio::spawn(async move {
            let _g = l2.lock("a").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!t.is_finished());
        let _b = l.lock("b").await; // other keys are free
        drop(g);
        t.await.unwrap();
        drop(_b);
        assert!(l.is_empty());
    }
}
