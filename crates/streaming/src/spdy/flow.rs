//! SPDY/3.1 send-side flow control, honoured once the client shows it does flow control.
//!
//! Go's spdystream (kubectl, kubelet) never sends WINDOW_UPDATE or an initial window: it
//! relies on TCP alone, so windows are enforced only after the client sends either (as
//! spdy-transport does at once). Until then data flows freely, while consumption is counted
//! from the connection's start so the windows are right when enforcement begins.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// SPDY/3's initial stream and session window.
const INITIAL_WINDOW: i64 = 64 * 1024;
/// `SETTINGS_INITIAL_WINDOW_SIZE`.
pub(crate) const SETTINGS_INITIAL_WINDOW: u32 = 7;
/// Windows may not exceed 2^31 - 1.
const MAX_WINDOW: i64 = 0x7fff_ffff;

#[derive(Debug)]
struct State {
    enforced: bool,
    closed: bool,
    initial: i64,
    session: i64,
    /// Each stream's window, as an offset from `initial`.
    streams: HashMap<u32, i64>,
}

/// The client's receive windows, shared by the reader (credits) and the writer (debits).
#[derive(Debug)]
pub(crate) struct Flow {
    state: Mutex<State>,
    changed: Notify,
}

impl Default for Flow {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                enforced: false,
                closed: false,
                initial: INITIAL_WINDOW,
                session: INITIAL_WINDOW,
                streams: HashMap::new(),
            }),
            changed: Notify::new(),
        }
    }
}

impl Flow {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_waiters();
    }

    /// A WINDOW_UPDATE from the client (stream 0: the session).
    pub(crate) fn credit(&self, stream_id: u32, delta: u32) {
        self.update(|s| {
            s.enforced = true;
            let delta = i64::from(delta);
            if stream_id == 0 {
                s.session = (s.session + delta).min(MAX_WINDOW);
            } else {
                let w = s.streams.entry(stream_id).or_insert(0);
                *w = (*w + delta).min(MAX_WINDOW);
            }
        });
    }

    /// The client's SETTINGS_INITIAL_WINDOW_SIZE: every stream window moves by the change.
    pub(crate) fn set_initial(&self, value: u32) {
        self.update(|s| {
            s.enforced = true;
            s.initial = i64::from(value).min(MAX_WINDOW);
        });
    }

    /// The connection is gone: nothing waits any more.
    pub(crate) fn close(&self) {
        self.update(|s| s.closed = true);
    }

    /// Forgets a finished stream.
    pub(crate) fn forget(&self, stream_id: u32) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.streams.remove(&stream_id);
    }

    /// Takes up to `want` bytes of window for `stream_id`; 0 means wait for [`Flow::changed`].
    pub(crate) fn take(&self, stream_id: u32, want: usize) -> usize {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let want = want as i64;
        let stream = s.initial + s.streams.get(&stream_id).copied().unwrap_or(0);
        let n = if s.enforced && !s.closed {
            want.min(stream).min(s.session).max(0)
        } else {
            want
        };
        s.session -= n;
        *s.streams.entry(stream_id).or_insert(0) -= n;
        n as usize
    }

    /// Resolves after the next window change; create it before calling [`Flow::take`].
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unenforced_until_the_client_speaks_flow_control() {
        let f = Flow::default();
        assert_eq!(f.take(1, 100_000), 100_000);
        f.credit(0, 1000);
        // The session window is now 64 KiB - 100000 + 1000 < 0.
        assert_eq!(f.take(1, 10), 0);
        f.credit(0, 40_000);
        f.credit(1, 100_000);
        assert_eq!(f.take(1, 10_000), 6536);
    }

    #[test]
    fn stream_and_session_windows_both_limit() {
        let f = Flow::default();
        f.set_initial(1000);
        assert_eq!(f.take(1, 5000), 1000);
        assert_eq!(f.take(1, 1), 0);
        assert_eq!(f.take(3, 5000), 1000);
        f.credit(1, 500);
        assert_eq!(f.take(1, 5000), 500);
        f.set_initial(70_000);
        // Session: 65536 - 2500 left.
        assert_eq!(f.take(3, 100_000), 63_036);
        f.close();
        assert_eq!(f.take(3, 7), 7);
    }
}
