//! The name registrar: a pod or container name (`name_namespace_uid_attempt`) is held by at
//! most one id, as the kubelet relies on (a second RunPodSandbox with the same metadata fails).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::error::{EngineError, Result};

#[derive(Default)]
pub struct Names {
    map: Mutex<HashMap<String, String>>,
}

impl Names {
    /// Reserves `name` for `id`; reserving it again for the same id is fine.
    pub fn reserve(&self, name: &str, id: &str) -> Result<()> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(name) {
            Some(holder) if holder != id => Err(EngineError::NameReserved {
                name: name.to_string(),
                holder: holder.clone(),
            }),
            _ => {
                m.insert(name.to_string(), id.to_string());
                Ok(())
            }
        }
    }

    /// Releases `name` if `id` holds it.
    pub fn release(&self, name: &str, id: &str) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.get(name).is_some_and(|h| h == id) {
            m.remove(name);
        }
    }
}

/// A new random 64-hex id.
pub fn new_id() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_name() {
        let n = Names::default();
        n.reserve("a_ns_uid_0", "id1").unwrap();
        n.reserve("a_ns_uid_0", "id1").unwrap();
        let e = n.reserve("a_ns_uid_0", "id2").unwrap_err();
        assert!(e.to_string().contains("id1"));
        n.release("a_ns_uid_0", "id2");
        assert!(n.reserve("a_ns_uid_0", "id2").is_err());
        n.release("a_ns_uid_0", "id1");
        n.reserve("a_ns_uid_0", "id2").unwrap();
        assert_eq!(new_id().len(), 64);
    }
}
