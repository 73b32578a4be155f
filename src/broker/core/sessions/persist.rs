//! The shard's side of disk persistence (`src/store`): restoring recovered sessions at start,
//! the loop turn's group commit, and PUBACK/PUBREC held until a message that went to another
//! shard is recorded there.
//!
//! The commit runs before the turn's socket writes, so everything the turn queued for clients
//! (acknowledgements of messages stored on this shard, PUBLISH packets with their packet ids,
//! PUBCOMP after a PUBREL was recorded) leaves only once the records behind it are written
//! (`periodic`) or on disk (`sync`). A message routed to another shard is recorded by that
//! shard in a later turn of its own: the publisher's acknowledgement waits in
//! `PersistState::held` (the loop does not) until that shard reports the mesh messages it has
//! recorded (`StoreShared::durable`).

use crate::broker::core::connection::WillMessage;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::sessions::handover::Route;
use crate::broker::core::shard::{ack_packet, ShardCore};
use crate::broker::core::timers::TimerKind;
use crate::codec::{Packet, PacketType, Publish, QoS, ReasonCode};
use crate::store::{RecoveredSession, ShardStore, StoreShared};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An acknowledgement held for peers' durability.
struct HeldAck {
    connection: ConnKey,
    connection_id: u64,
    packet: Packet,
    /// (shard, count): sent until that shard has made `count` of our mesh messages durable.
    needs: Vec<(usize, u64)>,
}

/// Per-shard persistence state of the broker side.
#[derive(Default)]
pub struct PersistState {
    held: VecDeque<HeldAck>,
    /// Scratch: the mesh's sent counts before a publish was routed.
    sent_before: Vec<u64>,
    /// Scratch: connections with a held acknowledgement still blocked (order is kept per
    /// connection, [MQTT-4.6.0-2]).
    blocked: Vec<ConnKey>,
}

impl ShardCore {
    /// Installs the store and the sessions recovery gave this shard (offline, with their
    /// expiry and will delay running from the time they went offline), and delivers the wills
    /// of sessions that expired while the broker was down. Every shard is given those wills
    /// and delivers them to its own sessions only (routes to peers are not known before the
    /// loops run); shard 0 also stores the retained ones.
    pub(crate) fn restore(
        &mut self,
        store: ShardStore,
        sessions: Vec<RecoveredSession>,
        expired_wills: &[Publish],
    ) {
        self.store = store;
        let inflight_max = self.config.max_inflight;
        for recovered in sessions {
            let client_id = recovered.state.client_id.clone();
            let (claim, _) = self.global.registry.claim(&client_id, self.id);
            let skey = self.install_session(recovered.state, claim, inflight_max);
            let generation = self.sessions.next_generation();
            let now = self.now;
            // Access control (issue 13, access.rs): no deliveries until its user is known again.
            let access = self.restored_access(client_id.as_str());
            let Some(session) = self.sessions.get_mut(skey) else {
                continue;
            };
            session.generation = generation;
            session.access = access;
            if let Some(left) = recovered.expiry_left {
                self.timers.arm(
                    now + left,
                    TimerKind::SessionExpiry,
                    skey.index(),
                    generation,
                );
            }
            if let Some((message, delay_secs)) = recovered.will {
                session.pending_will = Some(Box::new(WillMessage {
                    message,
                    delay_secs,
                }));
                let due = now + recovered.will_delay_left;
                self.timers
                    .arm(due, TimerKind::WillDelay, skey.index(), generation);
            }
        }
        for will in expired_wills {
            let message =
                crate::broker::core::sessions::session::Message::new_ref(will.clone(), self.now);
            if self.id == 0 && will.retain {
                self.store_retained(&message);
            }
            self.deliver_local(&message, None, Route::Direct(self.id));
        }
    }

    /// The loop turn's group commit, before the turn's socket writes: held acknowledgements
    /// whose messages became durable on their shards are released, the turn's records are
    /// written (and fsynced in `sync` mode), peers are told what is now durable, and the log
    /// is compacted when it is mostly garbage.
    ///
    /// `received` counts the mesh messages the runtime took from each peer so far (all of
    /// them handled by now). This is the core's one call that does file IO (the store's).
    pub fn commit_store(&mut self, received: &[u64]) {
        if !self.store.is_enabled() {
            return;
        }
        self.release_held_acks();
        if self.store.commit(self.now) {
            let sessions = self.sessions.iter().map(|(_, s)| &s.session.state);
            self.store.compact(sessions, &self.global.retained);
        }
        let mesh = &mut self.mesh;
        self.store.report_durable(received, |peer| mesh.wake(peer));
    }

    /// Makes everything written durable (graceful shutdown).
    pub fn sync_store(&mut self) {
        self.store.sync_now();
    }

    /// Before a QoS 1/2 publish is routed: notes the mesh's sent counts (persistence on, with
    /// several shards only).
    pub(crate) fn store_route_start(&mut self, qos: QoS) {
        if qos == QoS::AtMostOnce || !self.store.holds_acks() || self.mesh.shards() == 1 {
            return;
        }
        let state = &mut self.persist;
        state.sent_before.clear();
        state.sent_before.extend_from_slice(self.mesh.sent_counts());
    }

    /// Sends a PUBACK/PUBREC now, or holds it while a message it covers is not yet durable on
    /// another shard or an earlier acknowledgement of this connection is held.
    pub(crate) fn send_publish_ack(
        &mut self,
        key: ConnKey,
        packet_type: PacketType,
        packet_id: u16,
        code: ReasonCode,
    ) {
        if !self.store.holds_acks() || self.mesh.shards() == 1 {
            self.send_ack(key, packet_type, packet_id, code);
            return;
        }
        let mut needs = Vec::new();
        let sent_now = self.mesh.sent_counts();
        for (target, (&before, &now)) in self
            .persist
            .sent_before
            .iter()
            .zip(sent_now.iter())
            .enumerate()
        {
            if now > before {
                needs.push((target, now));
            }
        }
        self.persist.sent_before.clear();
        let earlier_held = self.persist.held.iter().any(|h| h.connection == key);
        if needs.is_empty() && !earlier_held {
            self.send_ack(key, packet_type, packet_id, code);
            return;
        }
        let packet = ack_packet(packet_type, packet_id, code);
        let Some(connection_id) = self.connections.get(key).map(|c| c.id) else {
            return;
        };
        if let Some(shared) = self.store.shared() {
            shared.set_waiting(self.id, true);
            shared
                .counters
                .acks_deferred
                .fetch_add(1, Ordering::Relaxed);
        }
        self.persist.held.push_back(HeldAck {
            connection: key,
            connection_id,
            packet,
            needs,
        });
    }

    /// Sends the held acknowledgements whose messages are durable everywhere, in order per
    /// connection.
    fn release_held_acks(&mut self) {
        if self.persist.held.is_empty() {
            return;
        }
        let Some(shared) = self.store.shared().map(Arc::clone) else {
            return;
        };
        let mut held = std::mem::take(&mut self.persist.held);
        let mut blocked = std::mem::take(&mut self.persist.blocked);
        blocked.clear();
        let me = self.id;
        let durable = |h: &HeldAck, shared: &StoreShared| {
            h.needs
                .iter()
                .all(|&(target, count)| shared.durable(target, me) >= count)
        };
        held.retain(|h| {
            let alive = self
                .connections
                .get(h.connection)
                .is_some_and(|c| c.id == h.connection_id);
            if !alive {
                return false;
            }
            if blocked.contains(&h.connection) || !durable(h, &shared) {
                blocked.push(h.connection);
                return true;
            }
            self.send_packet(h.connection, &h.packet);
            false
        });
        shared.set_waiting(self.id, !held.is_empty());
        self.persist.held = held;
        self.persist.blocked = blocked;
    }

    /// Whether a held acknowledgement can go out now. Checked after the shard announced that
    /// it sleeps: a peer that reports durability later sees the flag and wakes it (the same
    /// Dekker pair as the mesh's).
    pub fn held_acks_releasable(&self) -> bool {
        let Some(shared) = self.store.shared() else {
            return false;
        };
        let me = self.id;
        self.persist.held.front().is_some_and(|h| {
            h.needs
                .iter()
                .all(|&(target, count)| shared.durable(target, me) >= count)
        })
    }
}

impl ShardCore {
    /// Records a QoS 1/2 message just queued for a persistent session. At the disk limit it is
    /// taken off the queue again and `false` returned (dropped and counted, the documented
    /// policy).
    pub(crate) fn store_queued(
        &mut self,
        skey: SessionKey,
        message: &crate::broker::core::sessions::session::MessageRef,
        qos: QoS,
        retain: bool,
    ) -> bool {
        let Some(s) = self.sessions.get_mut(skey) else {
            return true;
        };
        let client_id = &s.session.state.client_id;
        if self.store.message_queued(client_id, message, qos, retain) {
            return true;
        }
        // Issue 11 hook: the session's queued-bytes count follows.
        s.session.unqueue_last();
        s.session.state.dropped_messages += 1;
        false
    }
}
