//! A shard's memory budget: its part of `max_buffered_bytes` and the bytes its outgoing buffers
//! and session queues hold now (docs/memory.md).
//!
//! The budget only counts and decides; what a decision causes (a timer, a counter, pausing
//! publishers) is the shard's (`congestion.rs`). Bytes come in and leave through two pairs of
//! calls, one per kind of holder: [`MemoryBudget::hold`] / [`MemoryBudget::release`] for outgoing
//! buffers (called by `OutBuf` only, `connection/outgoing.rs`, so that no caller can forget
//! them), [`MemoryBudget::queue_entry_hold`] / [`MemoryBudget::queue_entry_release`] for session
//! queue entries (a message held by many queues counted once, `queue_charges.rs`), and
//! [`MemoryBudget::queue_hold`] / [`MemoryBudget::queue_release`] for the messages a handover
//! holds (`sessions/handover.rs`).

use super::queue_charges::QueueCharges;
use crate::broker::core::sessions::session::{Congestion, MessageRef};
use bytes::BytesMut;

/// A shard's part of `max_buffered_bytes` and the bytes it holds now: outgoing buffers (every
/// byte pushed, until written or the connection is gone) and session queues
/// (each distinct message once per shard plus a slot per entry, `QueueCharges`). Owned by
/// the shard,
/// changed on the hot path with plain arithmetic; published to the stats gauges once per turn.
///
/// Watermarks: pressure starts at three quarters of the limit (`high`) and ends at half
/// (`low`); queues alone may hold at most half of the limit, so they never start pressure.
#[derive(Debug)]
pub struct MemoryBudget {
    /// Bytes held now, `0..` (may exceed `limit` by what in-flight QoS 1/2 and control packets
    /// add: those are never dropped).
    buffered: usize,
    /// This shard's part of `max_buffered_bytes`: over it QoS 0 and new queue entries drop.
    limit: usize,
    /// Pressure starts here (three quarters of `limit`)...
    high: usize,
    /// ...and ends here (half).
    low: usize,
    /// `Congested` = under pressure (publishers paused), `Stalled` = pressure lasted longer
    /// than the congestion timeout (publishers read again until it ends).
    pressure: Congestion,
    /// Counts pressure episodes, so that a stale timer is told from the current one.
    episode: u32,
    /// The most `buffered` ever held.
    peak: usize,
    /// What the gauges last said: `buffered`, `peak`, `queued`, distinct queued messages.
    reported: [usize; 4],
    /// Issue 11: the part of `buffered` in session queues, and its bound (half of `limit`):
    /// queues alone never bring the shard to memory pressure (three quarters), so offline
    /// sessions cannot stop live traffic; at the bound new queue entries are dropped.
    queued: usize,
    queued_limit: usize,
    /// Issue 11 item 1: queue entries per shared message, so that a message held by many
    /// queues is charged once.
    charges: QueueCharges,
    /// Issue 17: emptied staging buffers of outgoing queues, kept for the next connection that
    /// has something to send (at most `SPARE_BUFFERS_MAX`, none larger than
    /// `SPARE_BUFFER_MAX_BYTES`), so that a connection sending a packet per loop turn does not
    /// allocate and free one each turn. Not counted in `buffered` (they hold no bytes); a fixed
    /// bound per shard (docs/memory.md).
    spare_buffers: Vec<BytesMut>,
}

/// Spare staging buffers one shard keeps at most.
const SPARE_BUFFERS_MAX: usize = 32;
/// Largest staging buffer kept for reuse: so the spares hold at most 32 x 8 KiB per shard.
const SPARE_BUFFER_MAX_BYTES: usize = 8 * 1024;

impl MemoryBudget {
    /// The budget of one of `shards` shards sharing `max_buffered_bytes`.
    pub fn new(max_buffered_bytes: usize, shards: usize) -> MemoryBudget {
        let limit = max_buffered_bytes / shards.max(1);
        MemoryBudget {
            buffered: 0,
            limit,
            high: limit / 4 * 3,
            low: limit / 2,
            pressure: Congestion::Clear,
            episode: 0,
            peak: 0,
            reported: [0; 4],
            queued: 0,
            queued_limit: limit / 2,
            charges: QueueCharges::default(),
            spare_buffers: Vec::new(),
        }
    }

    /// An empty buffer with room for at least `bytes`, a spare one when one is kept.
    #[inline]
    pub fn buffer(&mut self, bytes: usize) -> BytesMut {
        match self.spare_buffers.pop() {
            Some(mut spare) => {
                spare.reserve(bytes);
                spare
            }
            None => BytesMut::with_capacity(bytes),
        }
    }

    /// Takes back an emptied buffer for reuse by [`MemoryBudget::buffer`], or frees it.
    #[inline]
    pub fn recycle_buffer(&mut self, mut buffer: BytesMut) {
        if self.spare_buffers.len() >= SPARE_BUFFERS_MAX || !buffer.is_empty() {
            return;
        }
        // An emptied buffer may have been advanced to its end, so `capacity` tells only what is
        // left after its start; `try_reclaim` (never allocating) tells whether its whole
        // allocation is larger than the bound. `buffer` reclaims the rest when it is reused.
        if buffer.try_reclaim(SPARE_BUFFER_MAX_BYTES + 1) || !buffer.try_reclaim(1) {
            return; // too large, or no allocation at all
        }
        self.spare_buffers.push(buffer);
    }

    /// This shard's part of `max_buffered_bytes`.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// A reload changed `max_buffered_bytes` (issue 15): the new part and watermarks apply from
    /// the next check; bytes already held stay (over a lowered limit, new QoS 0 deliveries and
    /// queue entries drop until they drain).
    pub fn set_limit(&mut self, max_buffered_bytes: usize, shards: usize) {
        let limit = max_buffered_bytes / shards.max(1);
        self.limit = limit;
        self.high = limit / 4 * 3;
        self.low = limit / 2;
        self.queued_limit = limit / 2;
    }

    /// Bytes held now in outgoing buffers and session queues.
    #[inline]
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Whether the shard is under memory pressure now (not stalled): its publishers pause.
    #[inline]
    pub fn under_pressure(&self) -> bool {
        self.pressure == Congestion::Congested
    }

    /// Whether one more QoS 0 delivery or queue entry may be buffered.
    #[inline]
    pub fn has_room(&self) -> bool {
        self.buffered < self.limit
    }

    /// Issue 11: whether session queues may take one more entry (below half of `limit`).
    #[inline]
    pub fn queues_have_room(&self) -> bool {
        self.queued < self.queued_limit
    }

    /// Bytes added to an outgoing buffer. Pressure is not checked here: the fan-out path asks
    /// [`MemoryBudget::start_pressure_if_high`] right after, control packets wait for the next
    /// turn's check.
    #[inline]
    pub fn hold(&mut self, bytes: usize) {
        self.buffered += bytes;
        self.peak = self.peak.max(self.buffered);
    }

    /// Bytes that left an outgoing buffer (written, or gone with their connection).
    #[inline]
    pub fn release(&mut self, bytes: usize) {
        debug_assert!(
            bytes <= self.buffered,
            "released {bytes} of {}",
            self.buffered
        );
        self.buffered = self.buffered.saturating_sub(bytes);
    }

    /// Issue 11: the part of `buffered` held by session queues and handovers.
    #[inline]
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Issue 11: a session queue entry holding `message` was added: its slot, and the message
    /// when no other queue entry on this shard holds it (counted in the queues' share).
    #[inline]
    pub fn queue_entry_hold(&mut self, message: &MessageRef) {
        let bytes = self.charges.charge(message);
        self.queue_hold(bytes);
    }

    /// Issue 11: a session queue entry holding `message` left: its slot, and the message when
    /// it was the last entry on this shard holding it.
    #[inline]
    pub fn queue_entry_release(&mut self, message: &MessageRef) {
        let bytes = self.charges.refund(message);
        self.queue_release(bytes);
    }

    /// Issue 11: bytes added to the queues' part (counted in the budget and the queues' share).
    #[inline]
    pub fn queue_hold(&mut self, bytes: usize) {
        self.queued += bytes;
        self.hold(bytes);
    }

    /// Issue 11: bytes that left the queues' part.
    #[inline]
    pub fn queue_release(&mut self, bytes: usize) {
        self.queued = self.queued.saturating_sub(bytes);
        self.release(bytes);
    }

    /// At the high watermark with no pressure yet, pressure starts: returns the new episode
    /// (for the stall timer), else `None`.
    #[inline]
    pub fn start_pressure_if_high(&mut self) -> Option<u32> {
        if self.buffered < self.high || self.pressure != Congestion::Clear {
            return None;
        }
        self.pressure = Congestion::Congested;
        self.episode = self.episode.wrapping_add(1);
        Some(self.episode)
    }

    /// At the low watermark, pressure (on or stalled) ends. Returns whether it was on (not
    /// stalled), i.e. whether the shard stops counting it as a congested session.
    pub fn end_pressure_if_low(&mut self) -> bool {
        if self.pressure == Congestion::Clear || self.buffered > self.low {
            return false;
        }
        std::mem::take(&mut self.pressure) == Congestion::Congested
    }

    /// The stall timer of pressure `episode` fired: pressure still on becomes stalled (returns
    /// true); a stale timer changes nothing.
    pub fn stall(&mut self, episode: u64) -> bool {
        if self.pressure != Congestion::Congested || u64::from(self.episode) != episode {
            return false;
        }
        self.pressure = Congestion::Stalled;
        true
    }

    /// [`buffered`, `peak`, `queued`, distinct queued messages] when they changed since the
    /// last call, for the gauges.
    pub fn take_report(&mut self) -> Option<[usize; 4]> {
        let now = [
            self.buffered,
            self.peak,
            self.queued,
            self.charges.distinct(),
        ];
        if now == self.reported {
            return None;
        }
        self.reported = now;
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn spare_buffers_are_reused_whole_and_bounded() {
        let mut budget = MemoryBudget::new(1 << 20, 1);
        let mut buffer = budget.buffer(2048);
        let address = buffer.as_ptr();
        buffer.extend_from_slice(&[1; 2048]);
        buffer.advance(2048); // written out: empty, advanced to its end
        budget.recycle_buffer(buffer);
        let again = budget.buffer(2048);
        assert_eq!(again.as_ptr(), address, "the same allocation, whole again");
        assert!(again.capacity() >= 2048 && again.is_empty());
        // Larger than the bound, or holding bytes, or no allocation: not kept.
        let mut large = BytesMut::with_capacity(SPARE_BUFFER_MAX_BYTES + 1);
        large.extend_from_slice(&[1; 100]);
        large.advance(100);
        budget.recycle_buffer(large);
        let mut full = BytesMut::with_capacity(64);
        full.extend_from_slice(b"x");
        budget.recycle_buffer(full);
        budget.recycle_buffer(BytesMut::new());
        assert!(budget.spare_buffers.is_empty());
        for _ in 0..SPARE_BUFFERS_MAX + 5 {
            budget.recycle_buffer(BytesMut::with_capacity(1024));
        }
        assert_eq!(budget.spare_buffers.len(), SPARE_BUFFERS_MAX);
    }

    #[test]
    fn splits_the_limit_over_the_shards() {
        let budget = MemoryBudget::new(4_000, 4);
        assert_eq!(budget.limit(), 1_000);
        assert!(budget.has_room() && budget.queues_have_room());
        assert_eq!(MemoryBudget::new(4_000, 0).limit(), 4_000);
    }

    #[test]
    fn counts_what_is_held_and_released_and_keeps_the_peak() {
        let mut budget = MemoryBudget::new(1_000, 1);
        budget.hold(600);
        budget.queue_hold(300);
        assert_eq!(budget.buffered(), 900);
        assert!(budget.has_room());
        budget.hold(100);
        assert!(!budget.has_room(), "at the limit");
        budget.release(700);
        budget.queue_release(300);
        assert_eq!(budget.buffered(), 0);
        assert_eq!(budget.take_report(), Some([0, 1_000, 0, 0]));
        assert_eq!(budget.take_report(), None, "reported once per change");
    }

    #[test]
    fn queues_alone_stop_at_half_the_limit() {
        let mut budget = MemoryBudget::new(1_000, 1);
        budget.queue_hold(499);
        assert!(budget.queues_have_room());
        budget.queue_hold(1);
        assert!(!budget.queues_have_room());
        assert!(budget.has_room(), "outgoing buffers still have the rest");
        assert_eq!(
            budget.start_pressure_if_high(),
            None,
            "half is below pressure"
        );
    }

    #[test]
    fn pressure_starts_at_three_quarters_and_ends_at_half() {
        let mut budget = MemoryBudget::new(1_000, 1);
        budget.hold(749);
        assert_eq!(budget.start_pressure_if_high(), None);
        budget.hold(1);
        assert_eq!(budget.start_pressure_if_high(), Some(1));
        assert!(budget.under_pressure());
        assert_eq!(
            budget.start_pressure_if_high(),
            None,
            "one episode at a time"
        );
        budget.release(249);
        assert!(!budget.end_pressure_if_low(), "501 is above half");
        budget.release(1);
        assert!(budget.end_pressure_if_low());
        assert!(!budget.under_pressure());
        assert!(!budget.end_pressure_if_low(), "ended once");
        budget.hold(250);
        assert_eq!(budget.start_pressure_if_high(), Some(2), "a new episode");
    }

    #[test]
    fn only_the_current_episode_stalls() {
        let mut budget = MemoryBudget::new(1_000, 1);
        budget.hold(800);
        let episode = budget.start_pressure_if_high().expect("pressure");
        assert!(!budget.stall(u64::from(episode) + 1), "a stale timer");
        assert!(budget.under_pressure());
        assert!(budget.stall(u64::from(episode)));
        assert!(
            !budget.under_pressure(),
            "stalled: publishers are read again"
        );
        budget.release(300);
        assert!(
            !budget.end_pressure_if_low(),
            "a stalled episode was not counted as congested"
        );
        assert_eq!(
            budget.start_pressure_if_high(),
            None,
            "ended, and below high"
        );
    }
}
