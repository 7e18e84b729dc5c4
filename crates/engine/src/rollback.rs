//! A stack of named undo steps for multi-step creation: on failure they run in reverse and the
//! half-made object disappears; on success the stack is disarmed.

use std::future::Future;
use std::pin::Pin;

type Undo = Pin<Box<dyn Future<Output = ()> + Send>>;

#[derive(Default)]
pub struct Rollback {
    steps: Vec<(&'static str, Undo)>,
}

impl Rollback {
    /// Registers the undo of a step that just succeeded.
    pub fn push(&mut self, name: &'static str, undo: impl Future<Output = ()> + Send + 'static) {
        self.steps.push((name, Box::pin(undo)));
    }

    /// Success: forget the undo steps.
    pub fn disarm(mut self) {
        self.steps.clear();
    }

    /// Failure: undo everything in reverse order.
    pub async fn run(mut self) {
        while let Some((name, undo)) = self.steps.pop() {
            tracing::debug!(step = name, "rolling back");
            undo.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn undoes_in_reverse() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut rb = Rollback::default();
        for i in 0..3 {
            let l = log.clone();
            rb.push("step", async move { l.lock().unwrap().push(i) });
        }
        rb.run().await;
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);
        let mut rb = Rollback::default();
        let l = log.clone();
        rb.push("x", async move { l.lock().unwrap().push(99) });
        rb.disarm();
        assert_eq!(log.lock().unwrap().len(), 3);
    }
}
