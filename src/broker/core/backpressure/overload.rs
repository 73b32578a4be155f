//! Issue 11 (docs/memory.md): bounds that hold whatever a single client does.
//!
//! - **Replies bounded by the outgoing limit.** A connection whose outgoing buffer reached
//!   `max_outgoing_bytes` is not read (bit [`PAUSED_OUTGOING`]): the PUBACKs, PINGRESPs and error
//!   replies its next packets would cause could not be written, so they are not caused. Its
//!   bytes stay in the kernel, which is the TCP backpressure every other input already gets.
//!   It is read again once its buffer is written down to half. Its buffer then holds at most
//!   the limit plus the replies of one packet.
//! - **Partial packets timed out.** A packet that started (bytes of it buffered, not all) must
//!   complete within `partial_packet_timeout_ms` per started 64 KiB of its length (the fixed
//!   header says how long it is), whatever the keep-alive, else the connection is closed and
//!   counted (`partial_packet_timeouts`). The clock of a packet starts when the previous one
//!   completed or its first bytes arrived; time the broker itself did not read the connection
//!   (paused) does not count against it. One timer entry per connection at most.

use crate::broker::core::connection::{
    ConnState, PAUSED_OUTGOING, TIMER_PARTIAL_ARMED, TIMER_PARTIAL_STARTED,
};
use crate::broker::core::delivery::fanout::Encoding;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::sessions::session::OutgoingState;
use crate::broker::core::shard::{CloseReason, ShardCore};
use crate::broker::core::stats::bump;
use crate::broker::core::timers::TimerKind;
use crate::codec::{self, Ack, Packet, Properties, ReasonCode};
use std::time::Duration;

/// The length unit `partial_packet_timeout_ms` is given for.
const PARTIAL_PACKET_UNIT_BYTES: usize = 64 * 1024;

impl ShardCore {
    /// Called before each packet of `key` is handled: whether its outgoing buffer is full, in
    /// which case it is paused (not read, not processed) until written down.
    pub(crate) fn pause_if_outgoing_full(&mut self, key: ConnKey) -> bool {
        let limit = self.config.max_outgoing_bytes;
        let Some(conn) = self.connections.get_mut(key) else {
            return false;
        };
        if conn.out.len() < limit || conn.state == ConnState::Closing {
            return false;
        }
        if conn.paused & PAUSED_OUTGOING == 0 {
            conn.paused |= PAUSED_OUTGOING;
            bump(&self.global.counters[self.id].reads_paused_outgoing);
        }
        true
    }

    /// After a write of `key` left `after` bytes buffered: a connection paused for its full
    /// buffer resumes at half the limit (processed and read again at the start of next turn,
    /// through `ready`; `flush_writes` must not handle input while it walks its list).
    pub(crate) fn resume_if_written_down(&mut self, key: ConnKey, after: usize) -> bool {
        let half = self.config.max_outgoing_bytes / 2;
        let Some(conn) = self.connections.get_mut(key) else {
            return false;
        };
        if conn.paused & PAUSED_OUTGOING == 0 || after > half {
            return false;
        }
        conn.paused &= !PAUSED_OUTGOING;
        true
    }

    /// A whole packet of `key` was taken from its read buffer: the next one's clock starts when
    /// its first bytes are seen unfinished.
    #[inline]
    pub(crate) fn partial_packet_done(&mut self, key: ConnKey) {
        if let Some(conn) = self.connections.get_mut(key) {
            conn.timer &= !TIMER_PARTIAL_STARTED;
        }
    }

    /// The read buffer of `key` holds no whole packet: if it holds part of one, its clock
    /// starts (unless running) and a timer is armed (unless one is).
    pub(crate) fn partial_packet_pending(&mut self, key: ConnKey) {
        let per_unit_ms = self.config.partial_packet_timeout_ms;
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if per_unit_ms == 0 || conn.read_buf.is_empty() {
            return;
        }
        if conn.timer & TIMER_PARTIAL_STARTED == 0 {
            conn.timer |= TIMER_PARTIAL_STARTED;
            conn.partial_since_ms = self.now_ms;
        }
        if conn.timer & TIMER_PARTIAL_ARMED == 0 {
            conn.timer |= TIMER_PARTIAL_ARMED;
            let timeout_ms = self.partial_packet_timeout_ms(key);
            let deadline = self.now + Duration::from_millis(timeout_ms);
            let id = self.connections.get(key).map_or(0, |c| c.id);
            self.timers
                .arm(deadline, TimerKind::PartialPacket, key.index(), id);
        }
    }

    /// The time allowed for the packet started in `key`'s read buffer: the configured time per
    /// started 64 KiB of its length (one unit while the fixed header is incomplete).
    fn partial_packet_timeout_ms(&self, key: ConnKey) -> u64 {
        let per_unit_ms = self.config.partial_packet_timeout_ms;
        let Some(conn) = self.connections.get(key) else {
            return per_unit_ms;
        };
        let limit = conn.announced.max_packet_size;
        let frame_len = match codec::check_frame(&conn.read_buf, conn.version, limit) {
            Ok(Some(header)) => header.frame_len(),
            _ => 1,
        };
        let units = frame_len.div_ceil(PARTIAL_PACKET_UNIT_BYTES).max(1) as u64;
        per_unit_ms.saturating_mul(units)
    }

    /// The partial-packet timer of connection `key` (generation = its id) fired.
    pub(crate) fn partial_packet_timer(&mut self, key: ConnKey, connection_id: u64) {
        let now_ms = self.now_ms;
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.id != connection_id {
            return;
        }
        conn.timer &= !TIMER_PARTIAL_ARMED;
        if conn.timer & TIMER_PARTIAL_STARTED == 0 || conn.read_buf.is_empty() {
            return;
        }
        // The broker did not read it (paused, parked, waiting for a barrier): not the client's
        // delay, its clock starts again.
        if !conn.may_process() {
            if conn.state == ConnState::Closing {
                return;
            }
            conn.partial_since_ms = now_ms;
        }
        let elapsed_ms = u64::from(now_ms.wrapping_sub(conn.partial_since_ms));
        let timeout_ms = self.partial_packet_timeout_ms(key);
        if elapsed_ms >= timeout_ms {
            bump(&self.global.counters[self.id].partial_packet_timeouts);
            self.close(key, CloseReason::PartialPacketTimeout);
            return;
        }
        if let Some(conn) = self.connections.get_mut(key) {
            conn.timer |= TIMER_PARTIAL_ARMED;
        }
        let deadline = self.now + Duration::from_millis(timeout_ms - elapsed_ms);
        self.timers.arm(
            deadline,
            TimerKind::PartialPacket,
            key.index(),
            connection_id,
        );
    }
}

/// Flow by bytes (issue 11 item 3): the in-flight window and the queue are refilled, and a
/// resumed session's window resent, only while the outgoing buffer is below
/// `max_outgoing_bytes`, so the buffer holds at most the limit plus one message (a message
/// larger than the limit, up to the packet size limit, still goes when the buffer is below it). A subscriber that reads is never disconnected for the size of what
/// it receives; one whose buffer stays full with nothing written for
/// `slow_consumer_timeout_ms` is (`slow_consumer_disconnects`).
impl ShardCore {
    /// Whether `key`'s outgoing buffer is at `max_outgoing_bytes`.
    #[inline]
    pub(crate) fn outgoing_full(&self, key: ConnKey) -> bool {
        self.connections
            .get(key)
            .is_some_and(|c| c.out.len() >= self.config.max_outgoing_bytes)
    }

    /// A write took `key`'s buffer from `before` to `after` bytes: the slow-consumer clock
    /// restarts; returns whether it crossed below the limit (its queue may refill).
    pub(crate) fn written_progress(&mut self, key: ConnKey, before: usize, after: usize) -> bool {
        let limit = self.config.max_outgoing_bytes;
        let now_ms = self.now_ms;
        let Some(conn) = self.connections.get_mut(key) else {
            return false;
        };
        if before != after {
            conn.out_progress_secs = (now_ms / 1000) as u16;
        }
        before >= limit && after < limit && conn.session.is_some()
    }

    /// [MQTT-4.4.0-1]: resends the unacknowledged PUBLISHes (with DUP) and PUBRELs of a resumed
    /// session, in order, while `key`'s outgoing buffer is below the limit. Returns whether
    /// the whole window has been resent (the rest goes as the buffer is written down).
    pub(crate) fn resend_inflight(&mut self, key: ConnKey, skey: SessionKey) -> bool {
        loop {
            let Some(session) = self.sessions.get_mut(skey) else {
                return true;
            };
            if !session.session.resend_pending() {
                return true;
            }
            if session.connection != Some(key) || self.outgoing_full(key) {
                return false;
            }
            let Some(session) = self.sessions.get_mut(skey) else {
                return true;
            };
            let Some(outgoing) = session.session.next_resend() else {
                return true;
            };
            if outgoing.state == OutgoingState::AwaitPubComp {
                let packet = Packet::PubRel(Ack {
                    packet_id: outgoing.packet_id,
                    reason_code: ReasonCode::Success,
                    properties: Properties::default(),
                });
                self.send_packet(key, &packet);
                continue;
            }
            self.write_publish(
                key,
                skey,
                &outgoing.message,
                outgoing.qos,
                outgoing.packet_id,
                outgoing.retain,
                Encoding::Fresh { dup: true },
            );
        }
    }

    /// Sends queued messages to each connection of `keys` (written down below the limit).
    pub(crate) fn refill_queues(&mut self, keys: &[ConnKey]) {
        for &key in keys {
            // Issue 11: waiting QoS 0 retained messages first (`retained_pacing.rs`).
            self.drain_backlog(key);
            let Some(skey) = self.connections.get(key).and_then(|c| c.session) else {
                continue;
            };
            self.pump_queue(key, skey);
        }
    }

    /// A message for `key` met its full buffer: a subscriber whose buffer has stayed full with
    /// nothing written for `slow_consumer_timeout_ms` is disconnected.
    pub(crate) fn check_slow_consumer(&mut self, key: ConnKey) {
        let timeout_ms = self.config.slow_consumer_timeout_ms;
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        let now_secs = (self.now_ms / 1000) as u16;
        let stuck_ms = u64::from(now_secs.wrapping_sub(conn.out_progress_secs)) * 1000;
        if conn.state == ConnState::Connected
            && conn.out.len() >= self.config.max_outgoing_bytes
            && stuck_ms >= timeout_ms
        {
            self.close(key, CloseReason::SlowConsumer);
        }
    }
}
