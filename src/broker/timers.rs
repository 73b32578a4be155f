//! Per-shard timers: a binary heap of (deadline, kind, key, generation).
//!
//! Entries are never cancelled: a fired entry whose generation no longer matches its connection
//! or session is ignored, and keep-alive is checked lazily against the last packet time and
//! re-armed, so no per-connection work happens on a loop turn. The heap holds at most a few
//! entries per connection and session.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a timer is for. `key` is the connection or session slab key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// No CONNECT within the handshake timeout.
    Handshake,
    /// Check the keep-alive (1.5 x keep-alive without a packet closes the connection).
    KeepAlive,
    /// Publish a delayed will.
    WillDelay,
    /// End an offline session.
    SessionExpiry,
    /// A session congested since then is stalled (generation = its congestion episode).
    Congestion,
}

/// One armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub deadline: Instant,
    pub kind: TimerKind,
    pub key: usize,
    /// The connection id or session generation the timer was armed for.
    pub generation: u64,
}

/// The timer heap.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub fn arm(&mut self, deadline: Instant, kind: TimerKind, key: usize, generation: u64) {
        self.heap.push(Reverse(Timer {
            deadline,
            kind,
            key,
            generation,
        }));
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|t| t.0.deadline)
    }

    /// Pops one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek()?.0.deadline <= now {
            return self.heap.pop().map(|t| t.0);
        }
        None
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let mut timers = Timers::default();
        let t0 = Instant::now();
        timers.arm(t0 + Duration::from_secs(2), TimerKind::KeepAlive, 1, 7);
        timers.arm(t0 + Duration::from_secs(1), TimerKind::Handshake, 2, 8);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(timers.pop_due(t0).is_none());
        let first = timers.pop_due(t0 + Duration::from_secs(3)).unwrap();
        assert_eq!(
            (first.kind, first.key, first.generation),
            (TimerKind::Handshake, 2, 8)
        );
        assert_eq!(timers.pop_due(t0 + Duration::from_secs(3)).unwrap().key, 1);
        assert!(timers.is_empty());
    }
}
