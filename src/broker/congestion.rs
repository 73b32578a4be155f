//! QoS 1/2 backpressure: publishers stop being read while a connected subscriber they feed is
//! congested (see [`Congestion`]), so a fast publisher cannot overrun a slow QoS 1/2 subscriber
//! into `dropped_queue_full`.
//!
//! - A session's congestion changes only when its queue does (a delivery queued behind the
//!   in-flight window, a PUBACK/PUBCOMP that let queued messages out) or its connection comes
//!   or goes; a timer per congestion episode stalls a session that does not drain in time.
//! - Each shard counts its congested sessions and publishes `Shared::congested[shard]`, set on
//!   the 0 -> 1 transition and cleared on 1 -> 0, when it also wakes every peer (rare).
//! - After routing a QoS 1/2 PUBLISH from a client, the publisher's connection is paused when a
//!   local recipient is congested or a destination shard's flag is set (one relaxed load per
//!   destination, no lock). Each turn, paused publishers whose blocker cleared are resumed.
//!   A publisher remembers only the first blocker it met: once that clears it is read again, and
//!   its next publish pauses it again if another blocker is still set.
//!
//! QoS 0 publishers are never paused for this: QoS 0 keeps dropping at the outgoing-buffer limit.
//! Shared subscriptions are not covered on the remote side: their strategies already skip
//! members that cannot take a message.

use super::connection::PAUSED_CONGESTION;
use super::mesh::ShardId;
use super::session::Congestion;
use super::shard::Shard;
use super::stats::bump;
use super::timers::TimerKind;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What a publisher paused for congestion waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// A session on this shard (slab key) is congested.
    Session(usize),
    /// A destination shard has congested sessions.
    Shard(ShardId),
}

impl Shard {
    /// Re-evaluates the congestion of session `skey` after its queue or connection changed.
    pub(super) fn update_congestion(&mut self, skey: usize) {
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        let online = session.connection.is_some();
        let Some(previous) = session.session.update_congestion(online) else {
            return;
        };
        match session.session.congestion {
            Congestion::Congested => {
                let episode = session.session.congestion_episode;
                let timeout = Duration::from_millis(self.shared.config.congestion_timeout_ms);
                let deadline = self.now + timeout;
                self.timers
                    .arm(deadline, TimerKind::Congestion, skey, u64::from(episode));
                bump(&self.counters().sessions_congested);
                self.congested_sessions_add();
            }
            Congestion::Clear if previous == Congestion::Congested => {
                self.congested_sessions_remove()
            }
            _ => {}
        }
    }

    /// Records `skey` as the blocker of the publish being routed when it is congested (called
    /// for each QoS 1/2 delivery to an online session).
    pub(super) fn note_recipient(&mut self, skey: usize) {
        let congested = self
            .sessions
            .get(skey)
            .is_some_and(|s| s.session.congestion == Congestion::Congested);
        if congested && self.congestion_blocker.is_none() {
            self.congestion_blocker = Some(Blocker::Session(skey));
        }
    }

    /// The congestion timer of `episode` fired: a session still congested is stalled.
    pub(super) fn congestion_timeout(&mut self, skey: usize, episode: u64) {
        let Ok(episode) = u32::try_from(episode) else {
            return;
        };
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        if session.session.stall(episode) {
            log::debug!(
                "shard {}: session {} stalled with {} messages queued",
                self.id,
                session.session.state.client_id,
                session.session.state.queued.len()
            );
            bump(&self.counters().sessions_stalled);
            self.congested_sessions_remove();
        }
    }

    /// A session that is going away (ended or moved) stops counting.
    pub(super) fn forget_congestion(&mut self, skey: usize) {
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        let was = std::mem::take(&mut session.session.congestion);
        if was == Congestion::Congested {
            self.congested_sessions_remove();
        }
    }

    fn congested_sessions_add(&mut self) {
        self.congested_sessions += 1;
        if self.congested_sessions == 1 {
            self.shared.congested[self.id]
                .0
                .store(true, Ordering::Relaxed);
        }
    }

    fn congested_sessions_remove(&mut self) {
        debug_assert!(self.congested_sessions > 0);
        self.congested_sessions = self.congested_sessions.saturating_sub(1);
        if self.congested_sessions == 0 {
            // Peers with publishers paused on this flag re-check it when woken; the SeqCst
            // fence in `ShardSignal::notify` orders this store before the wake-up decision,
            // pairing with the check after `prepare_sleep` in the loop.
            self.shared.congested[self.id]
                .0
                .store(false, Ordering::Relaxed);
            self.mesh.wake_all_peers();
        }
    }

    /// Whether `blocker` still holds a publisher back.
    fn is_blocking(&self, blocker: Blocker) -> bool {
        match blocker {
            Blocker::Session(skey) => self
                .sessions
                .get(skey)
                .is_some_and(|s| s.session.congestion == Congestion::Congested),
            Blocker::Shard(shard) => self.shared.congested[shard].0.load(Ordering::Relaxed),
        }
    }

    /// Stops reading a publisher until `blocker` clears.
    pub(super) fn pause_for_congestion(&mut self, key: usize, blocker: Blocker) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.paused & PAUSED_CONGESTION != 0 {
            return;
        }
        conn.paused |= PAUSED_CONGESTION;
        self.paused_congestion.push((key, conn.id, blocker));
        bump(&self.counters().publishers_paused_congestion);
    }

    /// Whether a publisher paused for congestion may be resumed now (checked before sleeping).
    pub(super) fn congestion_resumable(&self) -> bool {
        self.paused_congestion
            .iter()
            .any(|&(_, _, blocker)| !self.is_blocking(blocker))
    }

    /// Resumes the publishers whose blocker cleared; the others stay paused.
    pub(super) fn resume_congested(&mut self) {
        if !self.congestion_resumable() {
            return;
        }
        let mut paused = std::mem::take(&mut self.paused_congestion);
        let mut resumed = std::mem::take(&mut self.resumed_scratch);
        paused.retain(|&(key, id, blocker)| {
            if self.is_blocking(blocker) {
                return true;
            }
            resumed.push((key, id));
            false
        });
        self.paused_congestion = paused;
        for &(key, id) in &resumed {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id != id {
                continue;
            }
            conn.paused &= !PAUSED_CONGESTION;
            self.process_input(key);
            self.handle_readable(key, false);
        }
        resumed.clear();
        self.resumed_scratch = resumed;
    }
}
