//! The rollback of a multi-step operation: an armed undo (built from the operation's intent
//! record, so it is the same code recovery runs) that runs on failure, on a task of its own so
//! that it always finishes. If the operation's future is dropped half way (a cancelled caller),
//! the undo is spawned from the drop. On success it is disarmed.

use std::future::Future;
use std::pin::Pin;

type Undo = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct Rollback {
    name: &'static str,
    undo: Option<Undo>,
}

impl Rollback {
    /// Arms `undo` (it runs only if the operation fails or is dropped).
    pub fn new(name: &'static str, undo: impl Future<Output = ()> + Send + 'static) -> Self {
        Rollback {
            name,
            undo: Some(Box::pin(undo)),
        }
    }

    /// Success: the undo is dropped unrun.
    pub fn disarm(mut self) {
        self.undo = None;
    }

    /// Failure: runs the undo on its own task and waits for it.
    pub async fn run(mut self) {
        if let Some(undo) = self.undo.take() {
            tracing::debug!(operation = self.name, "rolling back");
            let _ = tokio::spawn(undo).await;
        }
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some(undo) = self.undo.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    tracing::info!(
                        operation = self.name,
                        "operation dropped half way: rolling back"
                    );
                    h.spawn(undo);
                }
                // No runtime (shutting down): the intent record stays for recovery.
                Err(_) => tracing::warn!(
                    operation = self.name,
                    "operation dropped without a runtime; recovery will undo it"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn runs_on_failure_on_drop_and_never_when_disarmed() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let step = |n: u32| {
            let l = log.clone();
            async move { l.lock().unwrap().push(n) }
        };
        Rollback::new("a", step(1)).run().await;
        Rollback::new("b", step(2)).disarm();
        assert_eq!(*log.lock().unwrap(), vec![1]);

        // An operation whose future is dropped half way: the undo still runs, to its end.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let l = log.clone();
        let op = async move {
            let _rb = Rollback::new("c", async move {
                tokio::task::yield_now().await;
                l.lock().unwrap().push(3);
                let _ = tx.send(());
            });
            std::future::pending::<()>().await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(10), op).await;
        rx.await.unwrap();
        assert_eq!(*log.lock().unwrap(), vec![1, 3]);
    }
}
