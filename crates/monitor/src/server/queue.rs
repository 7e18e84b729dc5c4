//! A bounded byte queue over one buffer allocated up front: pending stdin for the container and
//! pending frames for one attach client. Never reallocates unless asked to.

/// Bytes waiting to be written to a non-blocking descriptor.
#[derive(Debug)]
pub struct ByteQueue {
    buf: Vec<u8>,
    start: usize,
    limit: usize,
}

impl ByteQueue {
    /// A queue holding at most `limit` bytes (allocated now).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            buf: Vec::with_capacity(limit),
            start: 0,
            limit,
        }
    }

    /// Queued bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room left before the limit.
    pub fn free(&self) -> usize {
        self.limit - self.len()
    }

    /// Raises the limit (allocates); used when a control connection turns into an attach one.
    pub fn grow_limit(&mut self, limit: usize) {
        if limit > self.limit {
            self.compact();
            self.buf.reserve_exact(limit - self.buf.len());
            self.limit = limit;
        }
    }

    /// Appends all `parts` or nothing: `false` when they do not fit under the limit.
    pub fn push(&mut self, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.free() {
            return false;
        }
        if self.buf.len() + total > self.limit {
            self.compact();
        }
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        true
    }

    /// Appends `data` whatever its size (control replies, not the streaming path).
    pub fn push_unbounded(&mut self, data: &[u8]) {
        if data.len() > self.free() {
            self.grow_limit(self.len() + data.len());
        }
        self.push(&[data]);
    }

    /// Writes queued bytes with `write` until it would block (`Ok`), the queue is empty (`Ok`),
    /// or it fails (`Err`, queue left as is).
    pub fn write_with(
        &mut self,
        mut write: impl FnMut(&[u8]) -> rustix::io::Result<usize>,
    ) -> rustix::io::Result<()> {
        while !self.is_empty() {
            match write(&self.buf[self.start..]) {
                Ok(0) => return Err(rustix::io::Errno::PIPE),
                Ok(n) => self.consume(n),
                Err(rustix::io::Errno::AGAIN) => return Ok(()),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
    }

    fn consume(&mut self, n: usize) {
        self.start += n.min(self.len());
        if self.start == self.buf.len() {
            self.clear();
        }
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_push_is_all_or_nothing_and_never_reallocates() {
        let mut q = ByteQueue::with_limit(8);
        let cap = q.buf.capacity();
        assert!(q.push(&[b"abc", b"de"]));
        assert!(!q.push(&[b"1234"]));
        assert_eq!(q.len(), 5);
        let mut written = Vec::new();
        q.write_with(|d| {
            let n = d.len().min(3);
            written.extend_from_slice(&d[..n]);
            if written.len() >= 3 {
                Err(rustix::io::Errno::AGAIN)
            } else {
                Ok(n)
            }
        })
        .unwrap();
        // the closure returned AGAIN after recording: only the first 3 bytes were consumed
        assert_eq!(q.len(), 5);
        q.write_with(|d| Ok(d.len().min(3))).unwrap();
        assert!(q.is_empty());
        assert!(q.push(&[b"12345678"]));
        assert!(!q.push(&[b"9"]));
        q.write_with(|_| Ok(2)).unwrap_or(());
        assert!(q.is_empty());
        assert!(q.push(&[b"abcdef"]));
        q.write_with(|_| Ok(4)).ok();
        assert!(q.is_empty());
        assert_eq!(q.buf.capacity(), cap);
    }

    #[test]
    fn partial_writes_then_compaction_keep_order() {
        let mut q = ByteQueue::with_limit(8);
        assert!(q.push(&[b"abcdef"]));
        let mut calls = 0;
        q.write_with(|_| {
            calls += 1;
            if calls == 1 {
                Ok(4)
            } else {
                Err(rustix::io::Errno::AGAIN)
            }
        })
        .unwrap();
        assert_eq!(q.len(), 2);
        assert!(q.push(&[b"ghijkl"]));
        let mut out = Vec::new();
        q.write_with(|d| {
            out.extend_from_slice(d);
            Ok(d.len())
        })
        .unwrap();
        assert_eq!(out, b"efghijkl");
    }

    #[test]
    fn errors_leave_the_queue_and_unbounded_grows() {
        let mut q = ByteQueue::with_limit(4);
        q.push_unbounded(b"0123456789");
        assert_eq!(q.len(), 10);
        assert_eq!(
            q.write_with(|_| Err(rustix::io::Errno::PIPE)),
            Err(rustix::io::Errno::PIPE)
        );
        assert_eq!(q.len(), 10);
    }
}
