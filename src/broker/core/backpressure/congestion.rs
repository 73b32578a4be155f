//! QoS 1/2 backpressure: publishers stop being read while a connected subscriber they feed is
//! congested (see [`Congestion`]), so a fast publisher cannot overrun a slow QoS 1/2 subscriber
//! into `dropped_queue_full`.
//!
//! - A session's congestion changes only when its queue does (a delivery queued behind the
//!   in-flight window, a PUBACK/PUBCOMP that let queued messages out) or its connection comes
//!   or goes; a timer per congestion episode stalls a session that does not drain in time.
//! - Each shard counts its congested sessions and publishes `Global::congested[shard]`, set on
//!   the 0 -> 1 transition and cleared on 1 -> 0, when it also wakes every peer (rare).
//! - After routing a QoS 1/2 PUBLISH from a client, the publisher's connection is paused when a
//!   local recipient is congested or a destination shard's flag is set (one relaxed load per
//!   destination, no lock). Each turn, paused publishers whose blocker cleared are resumed; one
//!   paused on a flag waits for the episode it met to end (the flag's episode count moved on),
//!   so a shard whose congestion clears and returns faster than its peers wake cannot starve
//!   their publishers.
//!   A publisher remembers only the first blocker it met: once that clears it is read again, and
//!   its next publish pauses it again if another blocker is still set.
//!
//! QoS 0 backpressure (`qos0_backpressure`, on by default) uses the same machinery: a connected
//! session whose outgoing buffer passes half of `max_outgoing_bytes` is congested too, until the
//! buffer is written down to a quarter, and QoS 0 publishers feeding a congested session (or
//! shard) are paused like QoS 1/2 ones. Under a flood this turns the shard's time from reading
//! and dropping into writing: delivery stays at what the subscriber takes instead of collapsing.
//! The price: one slow QoS 0 subscriber paces every publisher feeding it (and, through the
//! per-shard flag, every publisher on other shards sending to its shard), for at most
//! `congestion_timeout_ms` per episode; then it is stalled and QoS 0 to it drops at the limit
//! (`dropped_outgoing_buffer_full`) as without backpressure. With it off, QoS 0 publishers are
//! never paused and QoS 0 only drops at the limit.
//!
//! Memory budget ([`super::MemoryBudget`], `max_buffered_bytes` split over the shards): each shard
//! counts the bytes in its outgoing buffers and session queues (owned, no atomics). At three
//! quarters of its part the shard is under memory pressure: it counts as one more congested
//! session (so publishers on other shards sending to it pause on its flag) and its local
//! publishers whose messages it buffers pause on [`Blocker::Memory`], QoS 0 ones only with
//! `qos0_backpressure`; pressure ends at half, and stalls after `congestion_timeout_ms` like a
//! session. At its part, QoS 0 deliveries and new queue entries are dropped
//! (`dropped_memory_limit`); in-flight QoS 1/2 (bounded by the window) is still written.
//! Shared subscriptions are not covered on the remote side: their strategies already skip
//! members that cannot take a message.

use super::Blocker;
use crate::broker::core::connection::PAUSED_CONGESTION;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::sessions::session::{Congestion, MessageRef, OutgoingFill, SessionState};
use crate::broker::core::sessions::Sessions;
use crate::broker::core::shard::ShardCore;
use crate::broker::core::stats::{bump, CongestionFlag};
use crate::broker::core::timers::TimerKind;
use crate::codec::QoS;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The outgoing buffer's fill for QoS 0 backpressure (always low without it).
pub(crate) fn outgoing_fill(
    out_len: usize,
    max_outgoing: usize,
    qos0_backpressure: bool,
) -> OutgoingFill {
    if !qos0_backpressure || out_len <= max_outgoing / 4 {
        OutgoingFill::Low
    } else if out_len >= max_outgoing / 2 {
        OutgoingFill::High
    } else {
        OutgoingFill::Middle
    }
}

impl ShardCore {
    /// Re-evaluates the congestion of session `skey` after its queue or connection changed.
    pub(crate) fn update_congestion(&mut self, skey: SessionKey) {
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        let online = session.connection.is_some();
        let out_len = session
            .connection
            .and_then(|key| self.connections.get(key))
            .map_or(0, |c| c.out.len());
        let config = &self.config;
        let fill = outgoing_fill(out_len, config.max_outgoing_bytes, config.qos0_backpressure);
        let Some(previous) = session.session.update_congestion(online, fill) else {
            return;
        };
        match session.session.congestion {
            Congestion::Congested => {
                let episode = session.session.congestion_episode;
                let timeout = Duration::from_millis(self.config.congestion_timeout_ms);
                let deadline = self.now + timeout;
                self.timers.arm(
                    deadline,
                    TimerKind::Congestion,
                    skey.index(),
                    u64::from(episode),
                );
                bump(&self.counters().sessions_congested);
                self.congested_sessions_add();
            }
            Congestion::Clear if previous == Congestion::Congested => {
                self.congested_sessions_remove()
            }
            _ => {}
        }
    }

    /// Records what holds the publish being routed back, if anything: this shard's memory
    /// pressure, or `skey` when it is online and congested (called for each delivery, with the
    /// QoS it was delivered at; QoS 0 counts only with `qos0_backpressure`).
    pub(crate) fn note_recipient(&mut self, skey: SessionKey, qos: QoS, online: bool) {
        if self.backpressure.has_blocker()
            || (qos == QoS::AtMostOnce && !self.config.qos0_backpressure)
        {
            return;
        }
        if self.backpressure.memory().under_pressure() {
            self.backpressure.note_blocker(Blocker::Memory);
            return;
        }
        let congested = online
            && self
                .sessions
                .get(skey)
                .is_some_and(|s| s.session.congestion == Congestion::Congested);
        if congested {
            self.backpressure.note_blocker(Blocker::Session(skey));
        }
    }

    /// The outgoing buffer of `skey`'s connection reached the high watermark (QoS 0
    /// backpressure): a clear session becomes congested.
    pub(crate) fn outgoing_grew(&mut self, skey: SessionKey) {
        let clear = self
            .sessions
            .get(skey)
            .is_some_and(|s| s.session.congestion == Congestion::Clear);
        if clear {
            self.update_congestion(skey);
        }
    }

    /// Connection `key` was written down to the low watermark: its session, if congested or
    /// stalled, may clear.
    pub(crate) fn outgoing_written(&mut self, key: ConnKey) {
        let Some(skey) = self.connections.get(key).and_then(|c| c.session) else {
            return;
        };
        let held = self
            .sessions
            .get(skey)
            .is_some_and(|s| s.session.congestion != Congestion::Clear);
        if held {
            self.update_congestion(skey);
        }
    }

    /// Issue 11: an entry holding `message` was added to a session queue (counted in the
    /// budget and the queues' share; the message itself once per shard, `queue_charges.rs`).
    pub(crate) fn queue_entry_added(&mut self, message: &MessageRef) {
        self.backpressure.memory_mut().queue_entry_hold(message);
        self.check_pressure_start();
    }

    /// Issue 11: an entry holding `message` left a session queue.
    pub(crate) fn queue_entry_removed(&mut self, message: &MessageRef) {
        self.backpressure.memory_mut().queue_entry_release(message);
    }

    /// A session's whole queue arrived on this shard (a takeover, or restored from disk).
    pub(crate) fn queue_arrived(&mut self, state: &SessionState) {
        for queued in &state.queued {
            self.queue_entry_added(&queued.message);
        }
    }

    /// A session's whole queue left this shard (the session ended or moved).
    pub(crate) fn queue_left(&mut self, state: &SessionState) {
        for queued in &state.queued {
            self.queue_entry_removed(&queued.message);
        }
    }

    /// Issue 11: bytes added to a handover's held messages (counted with the queues, once
    /// per reference: `sessions/handover.rs`).
    pub(crate) fn queue_grew(&mut self, bytes: usize) {
        self.backpressure.memory_mut().queue_hold(bytes);
        self.check_pressure_start();
    }

    /// Issue 11: bytes that left a handover's held messages.
    pub(crate) fn queue_released(&mut self, bytes: usize) {
        self.backpressure.memory_mut().queue_release(bytes);
    }

    /// After bytes were added to an outgoing buffer or a queue: pressure starts at the high
    /// watermark.
    #[inline]
    pub(crate) fn check_pressure_start(&mut self) {
        if let Some(episode) = self.backpressure.memory_mut().start_pressure_if_high() {
            self.memory_pressure_start(episode);
        }
    }

    #[cold]
    fn memory_pressure_start(&mut self, episode: u32) {
        let timeout = Duration::from_millis(self.config.congestion_timeout_ms);
        self.timers.arm(
            self.now + timeout,
            TimerKind::MemoryPressure,
            0,
            u64::from(episode),
        );
        bump(&self.counters().memory_pressure);
        let memory = self.backpressure.memory();
        log::debug!(
            "shard {}: memory pressure, {} bytes buffered (limit {})",
            self.id,
            memory.buffered(),
            memory.limit()
        );
        self.congested_sessions_add();
    }

    /// Once per turn: pressure (on or stalled) ends at the low watermark; the gauges are
    /// updated.
    pub(crate) fn check_memory(&mut self) {
        if self.backpressure.memory_mut().end_pressure_if_low() {
            self.congested_sessions_remove();
        }
        if let Some(now) = self.backpressure.memory_mut().take_report() {
            let counters = &self.global.counters[self.id];
            let gauges = [
                &counters.buffered_bytes,
                &counters.buffered_bytes_peak,
                &counters.queued_bytes,
                &counters.queued_messages_distinct,
            ];
            for (gauge, value) in gauges.into_iter().zip(now) {
                gauge.store(value as u64, Ordering::Relaxed);
            }
        }
    }

    /// The memory pressure timer of `episode` fired: pressure still on is stalled.
    pub(crate) fn memory_pressure_timeout(&mut self, episode: u64) {
        if !self.backpressure.memory_mut().stall(episode) {
            return;
        }
        log::debug!(
            "shard {}: memory pressure stalled, {} bytes buffered",
            self.id,
            self.backpressure.memory().buffered()
        );
        bump(&self.counters().memory_pressure_stalled);
        self.congested_sessions_remove();
    }

    /// Debug builds: the budget's count equals what the buffers and queues hold (checked on
    /// small shards only, it walks everything).
    #[cfg(debug_assertions)]
    pub(crate) fn debug_check_buffered(&self) {
        if self.connections.len() + self.sessions.len() > 64 {
            return;
        }
        let out: usize = self.connections.iter().map(|(_, c)| c.out.len()).sum();
        let queued = self.queued_bytes();
        debug_assert_eq!(queued, self.backpressure.memory().queued());
        debug_assert_eq!(
            out + queued,
            self.backpressure.memory().buffered(),
            "shard {}: buffered bytes drifted (out {out}, queued {queued})",
            self.id
        );
    }

    /// The congestion timer of `episode` fired: a session still congested is stalled.
    pub(crate) fn congestion_timeout(&mut self, skey: SessionKey, episode: u64) {
        let Ok(episode) = u16::try_from(episode) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        if session.session.stall(episode) {
            log::debug!(
                "shard {}: session {} stalled with {} messages queued",
                self.id,
                crate::broker::log_escape::Escaped(session.session.state.client_id.as_str()),
                session.session.state.queued.len()
            );
            bump(&self.counters().sessions_stalled);
            self.congested_sessions_remove();
        }
    }

    /// A session that is going away (ended or moved) stops counting.
    pub(crate) fn forget_congestion(&mut self, skey: SessionKey) {
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        let was = std::mem::take(&mut session.session.congestion);
        if was == Congestion::Congested {
            self.congested_sessions_remove();
        }
    }

    fn congested_sessions_add(&mut self) {
        if self.backpressure.congested_add() {
            let flag = &self.global.congested[self.id];
            // Relaxed: a publisher that reads a stale episode is resumed at once and pauses
            // again on its next publish, a spurious wake-up at worst.
            flag.1.fetch_add(1, Ordering::Relaxed);
            flag.0.store(true, Ordering::Relaxed);
        }
    }

    fn congested_sessions_remove(&mut self) {
        if self.backpressure.congested_remove() {
            // Peers with publishers paused on this flag re-check it when woken; the SeqCst
            // fence in `ShardSignal::notify` orders this store before the wake-up decision,
            // pairing with the check after `prepare_sleep` in the loop.
            self.global.congested[self.id]
                .0
                .store(false, Ordering::Relaxed);
            self.mesh.wake_all_peers();
        }
    }

    /// Stops reading a publisher until `blocker` clears.
    pub(crate) fn pause_for_congestion(&mut self, key: ConnKey, blocker: Blocker) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.paused & PAUSED_CONGESTION != 0 {
            return;
        }
        conn.paused |= PAUSED_CONGESTION;
        let blocker = match blocker {
            Blocker::Shard(shard) => {
                let episode = self.global.congested[shard].1.load(Ordering::Relaxed);
                Blocker::ShardEpisode(shard, episode)
            }
            other => other,
        };
        self.backpressure.pause_on_congestion(key, conn.id, blocker);
        bump(&self.counters().publishers_paused_congestion);
    }

    /// Whether a publisher paused for congestion may be resumed now (checked before sleeping).
    pub fn congestion_resumable(&self) -> bool {
        let congested = &self.global.congested;
        self.backpressure
            .any_resumable(|b| holds_elsewhere(&self.sessions, congested, b))
    }

    /// Resumes the publishers whose blocker cleared; the others stay paused.
    pub(crate) fn resume_congested(&mut self) {
        if !self.congestion_resumable() {
            return;
        }
        let sessions = &self.sessions;
        let congested = &self.global.congested;
        let resumed = self
            .backpressure
            .take_resumable(|b| holds_elsewhere(sessions, congested, b));
        for &(key, id) in &resumed {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id != id {
                continue;
            }
            conn.paused &= !PAUSED_CONGESTION;
            self.process_input(key);
            self.to_read.push(key);
        }
        self.backpressure.recycle_resumed(resumed);
    }
}

/// Whether a session or shard `blocker` still holds a publisher back ([`Blocker::Memory`] is
/// the budget's to say, [`super::Backpressure::any_resumable`], so it never comes here).
fn holds_elsewhere(sessions: &Sessions, congested: &[CongestionFlag], blocker: Blocker) -> bool {
    match blocker {
        Blocker::Session(skey) => sessions
            .get(skey)
            .is_some_and(|s| s.session.congestion == Congestion::Congested),
        Blocker::Shard(shard) => congested[shard].0.load(Ordering::Relaxed),
        Blocker::ShardEpisode(shard, episode) => {
            let flag = &congested[shard];
            flag.0.load(Ordering::Relaxed) && flag.1.load(Ordering::Relaxed) == episode
        }
        Blocker::Memory => false,
    }
}
