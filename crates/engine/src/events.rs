//! Lifecycle events for `GetContainerEvents`: a bounded broadcast. Emitting never blocks a
//! lifecycle call; a subscriber that falls behind by more than the buffer loses its stream
//! (the server ends it with an error) instead of making the buffer grow.

use tokio::sync::broadcast;

/// How many events a subscriber may fall behind before it is dropped.
pub const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// One lifecycle event of a container or a pod sandbox (then `id == sandbox_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub id: String,
    pub sandbox_id: String,
    pub kind: EventKind,
    /// Unix nanoseconds.
    pub at: i64,
}

pub fn channel() -> broadcast::Sender<LifecycleEvent> {
    broadcast::channel(EVENT_BUFFER).0
}

impl crate::Engine {
    /// A new subscription to lifecycle events.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, id: &str, sandbox_id: &str, kind: EventKind) {
        let _ = self.events.send(LifecycleEvent {
            id: id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            kind,
            at: crate::engine::now_nanos(),
        });
    }
}
