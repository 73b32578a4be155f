//! Per-shard timers: a binary heap of (deadline, kind, key, generation).
//!
//! Entries are never cancelled: a fired entry whose generation no longer matches its connection
//! or session is ignored, and keep-alive is checked lazily against the last packet time and
//! re-armed, so no per-connection work happens on a loop turn. The heap holds at most a few
//! entries per connection and session, 24 bytes each: the deadline is kept as nanoseconds since
//! the heap's epoch and the slab key as a `u32`, since every idle connection holds one entry
//! (the handshake entry turns into the keep-alive check, see `Connection::timer`).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// What a timer is for. `key` is the connection or session slab key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// No CONNECT within the handshake timeout; after CONNECT, possibly the first keep-alive
    /// check.
    Handshake,
    /// Check the keep-alive (1.5 x keep-alive without a packet closes the connection).
    KeepAlive,
    /// Publish a delayed will.
    WillDelay,
    /// End an offline session.
    SessionExpiry,
    /// A session congested since then is stalled (generation = its congestion episode).
    Congestion,
    /// The shard's memory pressure, if still on since then, is stalled (key 0, generation =
    /// the pressure episode).
    MemoryPressure,
    /// Issue 11: a packet started on a connection (generation = its id) must have completed.
    PartialPacket,
    /// Access control (issue 13): the connection's JWT expired (`jwt.disconnect_on_expiry`).
    TokenExpiry,
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

/// One heap entry: a [`Timer`] in 24 bytes (field order is the heap order: deadline first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Nanoseconds since [`Timers::epoch`] (exact: `Instant` counts nanoseconds).
    deadline_ns: u64,
    generation: u64,
    /// Slab keys stay far below `u32::MAX` (`max_connections` bounds both slabs).
    key: u32,
    kind: TimerKind,
}

/// The timer heap.
#[derive(Debug)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    /// Deadlines are stored relative to this instant; earlier deadlines count as due at it.
    epoch: Instant,
}

impl Timers {
    pub fn new(epoch: Instant) -> Timers {
        Timers {
            heap: BinaryHeap::new(),
            epoch,
        }
    }

    pub fn arm(&mut self, deadline: Instant, kind: TimerKind, key: usize, generation: u64) {
        debug_assert!(u32::try_from(key).is_ok(), "slab key {key} exceeds u32");
        let since = deadline.saturating_duration_since(self.epoch);
        // u64 nanoseconds last 584 years.
        let deadline_ns = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
        self.heap.push(Reverse(Entry {
            deadline_ns,
            generation,
            key: key as u32,
            kind,
        }));
    }

    fn instant(&self, deadline_ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(deadline_ns)
    }

    fn now_ns(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.epoch);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    /// `now` in whole milliseconds since the epoch, wrapping every 2^32 ms (49.7 days): for
    /// differences between instants a few days apart at most (connection last-packet times).
    pub fn ticks_ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|t| self.instant(t.0.deadline_ns))
    }

    /// Pops one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let entry = self.heap.peek()?.0;
        if entry.deadline_ns > self.now_ns(now) {
            return None;
        }
        self.heap.pop();
        Some(Timer {
            deadline: self.instant(entry.deadline_ns),
            kind: entry.kind,
            key: entry.key as usize,
            generation: entry.generation,
        })
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

    #[test]
    fn pops_in_deadline_order_only_when_due() {
        let t0 = Instant::now();
        let mut timers = Timers::new(t0);
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
        // A deadline before the epoch is due at once; entries stay 24 bytes.
        timers.arm(t0, TimerKind::SessionExpiry, 3, 9);
        assert_eq!(timers.pop_due(t0).unwrap().key, 3);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn ticks_count_milliseconds_since_the_epoch() {
        let t0 = Instant::now();
        let timers = Timers::new(t0);
        assert_eq!(timers.ticks_ms(t0), 0);
        assert_eq!(timers.ticks_ms(t0 + Duration::from_micros(1999)), 1);
        assert_eq!(
            timers.ticks_ms(t0 + Duration::from_secs(90_000)),
            90_000_000
        );
        // Wraps after 2^32 ms; differences stay right across the wrap.
        let before = timers.ticks_ms(t0 + Duration::from_millis((1 << 32) - 10));
        let after = timers.ticks_ms(t0 + Duration::from_millis((1 << 32) + 5));
        assert_eq!(after.wrapping_sub(before), 15);
    }
}
