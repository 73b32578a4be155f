//! Publish delivery: retained store, local fan-out through the trie, one mesh message per
//! destination shard, and writing PUBLISH packets into connections' outgoing buffers.
//!
//! Within a shard a message is matched into a reused scratch vector, sorted by session so that
//! overlapping subscriptions of one client deliver once with the highest QoS, and each wire
//! layout (version, QoS, retain) is encoded once; subscribers share the encoded bytes.

use crate::broker::core::backpressure::Blocker;
use crate::broker::core::connection::protocol::{Layout, LayoutOptions};
use crate::broker::core::connection::ConnState;
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::mesh::{ShardId, ShardMsg};
use crate::broker::core::retained::RetainOutcome;
use crate::broker::core::sessions::handover::{Gate, Route};
use crate::broker::core::sessions::session::{
    queued_bytes, ByteLimits, Decision, Message, MessageRef, Presence, QueueRoom,
};
use crate::broker::core::shard::{Awaited, ShardCore};
use crate::broker::core::stats::{bump, ShardCounters};
use crate::codec::{MqttString, Packet, Publish, QoS, SubAck};
use crate::topic::CacheLookup;
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How `write_publish` gets the wire bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// From the per-message layout cache (fan-out of the message being routed now).
    Cached,
    /// Encoded for this one send (queued messages, re-sends with DUP, retained on subscribe).
    Fresh { dup: bool },
}

impl ShardCore {
    /// A message that will not be written (expired, or over the client's Maximum Packet
    /// Size) is treated as delivered: a QoS 1/2 one leaves the in-flight window as if
    /// acknowledged, in memory and in the store.
    fn discard_as_delivered(&mut self, skey: SessionKey, qos: QoS, packet_id: u16) {
        if qos == QoS::AtMostOnce {
            return;
        }
        if let Some(session) = self.sessions.get_mut(skey) {
            session.session.forget(packet_id);
            // Persistence: discarded as if acknowledged.
            let client_id = &session.session.state.client_id;
            self.store.message_done(client_id, packet_id);
        }
    }

    /// Routes a message published on this shard (by a client or as a will). Returns whether any
    /// subscriber matched and whether a mesh channel was full (the caller pauses the publisher).
    pub(crate) fn route_publish(
        &mut self,
        message: &MessageRef,
        origin: Option<SessionKey>,
    ) -> (bool, bool) {
        if message.retain {
            self.store_retained(message);
        }
        self.backpressure.start_publish();
        let shards = self.mesh.shards();
        if shards == 1 {
            let local = self.deliver_local(message, origin, Route::Direct(self.id));
            let (shared, shared_overflowed) = self.route_shared(message, origin);
            return (local || shared, shared_overflowed);
        }
        // One reference per destination shard, sharing the Arc'd publish. The routes name this
        // shard's own filters too: the local trie is searched only when one matched (issue 17:
        // a publish for another shard's subscriber saves that search).
        let (destinations, lookup) = self
            .delivery
            .router_mut()
            .destinations_bytes(message.topic.as_bytes());
        count_lookup(&self.global.counters[self.id], lookup);
        let mut remote = !destinations.is_empty();
        let mut overflowed = false;
        for &target in destinations {
            // Inline `note_destination`: `destinations` borrows the router.
            if !self.backpressure.has_blocker()
                && self.global.congested[target].0.load(Ordering::Relaxed)
            {
                self.backpressure.note_blocker(Blocker::Shard(target));
            }
            // Into this turn's batch for the target (mesh.rs, issue 17).
            if !self.mesh.publish(target, message.clone()) {
                overflowed = true;
                bump(&self.global.counters[self.id].mesh_channel_full);
            }
        }
        let local = self.delivery.router().local_matched()
            && self.deliver_local(message, origin, Route::Direct(self.id));
        // Finding F1: a session handed over from here may still need it (handover.rs).
        if self.handovers.has_outgoing() {
            let (forwarded, full) = self.handover_forward(message, self.id);
            remote |= forwarded;
            overflowed |= full;
        }
        let (shared, shared_overflowed) = self.route_shared(message, origin);
        (local || remote || shared, overflowed || shared_overflowed)
    }

    pub(crate) fn store_retained(&mut self, message: &MessageRef) {
        // The retained copy owns its bytes so it does not pin the publisher's read buffer.
        let publish = Publish {
            dup: false,
            qos: message.qos,
            retain: true,
            topic: MqttString::from(message.topic.as_str()),
            packet_id: 0,
            properties: message.properties.clone(),
            payload: Bytes::copy_from_slice(&message.payload),
        };
        // Its expiry keeps running from when the original was received.
        let copy = Arc::new(Message {
            publish,
            received_at: message.received_at,
            frame: None,
        });
        let outcome = self.global.retained.store(&copy);
        if outcome != RetainOutcome::Refused {
            // Persistence: recorded in this shard's log (fsynced before the PUBACK in `sync`).
            self.store.retained(&copy);
        }
        if outcome == RetainOutcome::Refused {
            bump(&self.global.counters[self.id].retained_refused);
            log::debug!(
                "shard {}: retained message for {} not stored: max_retained_messages reached",
                self.id,
                crate::broker::log_escape::Escaped(message.topic.as_str())
            );
        }
    }

    /// Delivers to this shard's matching sessions (`route`: to the one session a handover
    /// forwarded it for). Returns whether any matched.
    pub(crate) fn deliver_local(
        &mut self,
        message: &MessageRef,
        origin: Option<SessionKey>,
        route: Route,
    ) -> bool {
        if !self.delivery.has_local_subscriptions() {
            // Nothing to match (a shard whose clients only publish or share, issue 17).
            return false;
        }
        let topic = message.topic.as_bytes();
        let (mut matches, lookup) = self.delivery.take_matches(topic, origin);
        count_lookup(&self.global.counters[self.id], lookup);
        let source = match route {
            Route::Forwarded(skey) => {
                matches.retain(|m| m.session == skey);
                None
            }
            Route::Direct(source) => Some(source),
        };
        let matched = self.deliver_matches(message, &matches, source);
        self.delivery.recycle_matches(matches);
        matched
    }

    /// Delivers `message` to the local subscriptions `matches` (grouped by session, as
    /// [`crate::broker::core::delivery::Delivery::take_matches`] gives them); `source`: the
    /// shard that routed it directly (`None`: a handover forwarded it). Returns whether any
    /// matched.
    pub(crate) fn deliver_matches(
        &mut self,
        message: &MessageRef,
        matches: &[LocalSub],
        source: Option<ShardId>,
    ) -> bool {
        // Finding F1: a session arriving from another shard gates what it is sent directly.
        let gated = source.filter(|_| self.handovers.has_incoming());
        let matched = !matches.is_empty();
        let mut identifiers = self.delivery.take_identifiers();
        if matched {
            let mut i = 0;
            while i < matches.len() {
                let session = matches[i].session;
                let mut qos = QoS::AtMostOnce;
                let mut retain_as_published = false;
                identifiers.clear();
                while i < matches.len() && matches[i].session == session {
                    qos = qos.max(matches[i].options.qos);
                    retain_as_published |= matches[i].options.retain_as_published;
                    if matches[i].identifier != 0 {
                        identifiers.push(matches[i].identifier);
                    }
                    i += 1;
                }
                // [MQTT-3.3.1-9]: retain is 0 for an established subscription, unless Retain
                // As Published (MQTT 5) asks for the flag as published.
                let retain = retain_as_published && message.retain;
                let qos = qos.min(message.qos);
                let gate = gated.map_or(Gate::Deliver, |s| self.handover_gate(session, s));
                if let (Gate::Hold, Some(source)) = (&gate, gated) {
                    identifiers.sort_unstable();
                    let own = match identifiers.is_empty() {
                        true => message.clone(),
                        false => with_subscription_identifiers(message, &identifiers),
                    };
                    self.handover_hold(session, source, &own, qos, retain);
                    continue;
                }
                if let Gate::Skip = gate {
                    continue;
                }
                if identifiers.is_empty() {
                    self.deliver_to_session(session, message, qos, retain, Encoding::Cached);
                } else {
                    // [MQTT-3.3.4-3]: the identifiers of every matching subscription of this
                    // client. That layout is this subscriber's own, so it is encoded for it.
                    identifiers.sort_unstable();
                    let own = with_subscription_identifiers(message, &identifiers);
                    let fresh = Encoding::Fresh { dup: false };
                    self.deliver_to_session(session, &own, qos, retain, fresh);
                }
            }
        }
        self.delivery.recycle_identifiers(identifiers);
        matched
    }

    /// Offers a message to one session and writes it if it may be sent now.
    pub(crate) fn deliver_to_session(
        &mut self,
        skey: SessionKey,
        message: &MessageRef,
        qos: QoS,
        retain: bool,
        encoding: Encoding,
    ) {
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        // Access control (issue 13, access.rs): nothing the subscriber may not read; this
        // covers wildcard filters and retained messages sent at subscribe.
        if !crate::broker::core::connection::access::may_read(&mut session.access, &message.topic) {
            bump(&self.global.counters[self.id].acl_denied_delivery);
            return;
        }
        // A connection still waiting for its CONNACK is not online yet: messages queue.
        let connections = &self.connections;
        let connection = session
            .connection
            .filter(|&key| connections.get(key).is_some_and(|c| c.is_connected()));
        let online = connection.is_some();
        // Issue 11 hook: offline sessions' queue entries stop at the queues' share of the budget
        // (docs/memory.md), so they never bring the shard to pressure; an online session's
        // queue is paced by congestion and pressure as before.
        let queue_share_full = !online && !self.backpressure.memory().queues_have_room();
        let presence = if online {
            Presence::Online
        } else {
            Presence::Offline
        };
        let queue_room = if self.backpressure.memory().has_room() && !queue_share_full {
            QueueRoom::Available
        } else {
            QueueRoom::Exhausted
        };
        // Issue 11 hook (flow by bytes): QoS 1/2 waits in the queue while the buffer is full.
        let max_outgoing = self.config.max_outgoing_bytes;
        // Validated to fit in a u32 (config.rs).
        let byte_limits = ByteLimits::of(&self.config);
        let outgoing_full = connection
            .and_then(|key| connections.get(key))
            .is_some_and(|c| c.out.len() >= max_outgoing);
        match session.session.deliver_paced(
            message,
            qos,
            retain,
            presence,
            queue_room,
            outgoing_full,
            byte_limits,
        ) {
            Decision::SendQoS0 => {
                if let Some(key) = connection {
                    // Issue 11 hook: behind a waiting backlog, or into one when a retained
                    // message meets a full buffer (`retained_pacing.rs`).
                    if self.retained_backlog.has(key)
                        || (retain && encoding == Encoding::Fresh { dup: false } && outgoing_full)
                    {
                        self.backlog_qos0(key, message, retain);
                    } else {
                        self.write_publish(
                            key,
                            skey,
                            message,
                            QoS::AtMostOnce,
                            0,
                            retain,
                            encoding,
                        );
                    }
                }
            }
            Decision::Send { packet_id } => {
                // Persistence: a message in flight to a persistent session is recorded.
                if let Some(s) = self.sessions.get(skey) {
                    let client_id = &s.session.state.client_id;
                    self.store
                        .message_sent(client_id, message, qos, retain, packet_id);
                }
                if let Some(key) = connection {
                    self.write_publish(key, skey, message, qos, packet_id, retain, encoding);
                }
            }
            // Persistence: at the disk limit the message is taken off the queue again.
            Decision::Queued if !self.store_queued(skey, message, qos, retain) => {}
            Decision::Queued => {
                self.queue_entry_added(message);
                if online {
                    bump(&self.global.counters[self.id].inflight_window_full);
                    self.update_congestion(skey);
                }
            }
            Decision::Discarded => {}
            Decision::DroppedQueueFull => bump(&self.global.counters[self.id].dropped_queue_full),
            Decision::DroppedMemoryLimit if queue_share_full => {
                bump(&self.global.counters[self.id].dropped_queue_share)
            }
            Decision::DroppedMemoryLimit => {
                bump(&self.global.counters[self.id].dropped_memory_limit)
            }
        }
        // Issue 11 hook: a subscriber whose full buffer went unwritten for the slow-consumer
        // time is disconnected (checked when a message for it meets the full buffer).
        if let Some(key) = connection.filter(|_| outgoing_full) {
            self.check_slow_consumer(key);
        }
        self.note_recipient(skey, qos, online);
    }

    /// Appends one PUBLISH to a connection's outgoing buffer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_publish(
        &mut self,
        key: ConnKey,
        skey: SessionKey,
        message: &MessageRef,
        qos: QoS,
        packet_id: u16,
        retain: bool,
        encoding: Encoding,
    ) {
        let max_outgoing = self.config.max_outgoing_bytes;
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if qos == QoS::AtMostOnce {
            if conn.out.len() >= max_outgoing {
                bump(&self.global.counters[self.id].dropped_outgoing_buffer_full);
                return;
            }
            if !self.backpressure.memory().has_room() {
                bump(&self.global.counters[self.id].dropped_memory_limit);
                return;
            }
        }
        // MQTT 5 Message Expiry: an expired message is not started any more ([MQTT-3.3.2-5]);
        // one that waited at least a second goes out with the time left ([MQTT-3.3.2-6]).
        let expiry_left = message.expiry_left_secs(self.now);
        let resend = encoding == Encoding::Fresh { dup: true };
        if expiry_left == Some(0) && !resend {
            bump(&self.global.counters[self.id].messages_expired);
            self.discard_as_delivered(skey, qos, packet_id);
            return;
        }
        let adjusted =
            expiry_left.filter(|&left| Some(left) != message.properties.message_expiry_interval);
        // MQTT 5 Topic Alias, when the client allows them ([MQTT-3.3.2-11]): a layout of this
        // connection's own, so it is encoded for it.
        let alias = if conn.version.is_v5() {
            conn.extras
                .as_ref()
                .and_then(|e| e.topic_aliases_out.plan(message.topic.as_str()))
        } else {
            None
        };
        let encoding = match (encoding, adjusted.or(alias.map(|_| 0))) {
            (Encoding::Cached, Some(_)) => Encoding::Fresh { dup: false },
            (other, _) => other,
        };
        let fresh: Layout;
        let layout = match encoding {
            Encoding::Cached => self
                .delivery
                .cached_layout(message, conn.version, qos, retain),
            Encoding::Fresh { dup } => {
                let options = LayoutOptions {
                    qos,
                    retain,
                    dup,
                    message_expiry_interval: adjusted,
                    topic_alias: alias,
                };
                match self.delivery.fresh_layout(message, conn.version, options) {
                    Ok(layout) => {
                        fresh = layout;
                        Ok(&fresh)
                    }
                    Err(error) => Err(error),
                }
            }
        };
        // A delivery over a wire-format limit (a PUBLISH near 268,435,455 bytes plus what this
        // delivery adds) cannot be sent: discarded like one over the client's Maximum Packet
        // Size, and counted.
        let layout = match layout {
            Ok(layout) => layout,
            Err(error) => {
                bump(&self.global.counters[self.id].packets_unencodable);
                log::warn!(
                    "shard {}: PUBLISH to {} not sent: {error}",
                    self.id,
                    conn.peer
                );
                if qos != QoS::AtMostOnce {
                    if let Some(session) = self.sessions.get_mut(skey) {
                        session.session.forget(packet_id);
                    }
                }
                return;
            }
        };
        if layout.len(qos) > conn.client_max_packet_size as usize {
            // [MQTT-3.1.2-25]: discard it and behave as if it had been delivered.
            bump(&self.global.counters[self.id].dropped_client_packet_size);
            self.discard_as_delivered(skey, qos, packet_id);
            return;
        }
        if let Some((alias, _)) = alias {
            conn.extras_mut()
                .topic_aliases_out
                .commit(&message.topic, alias);
        }
        let before = conn.out.len();
        // Issue 11 hook: the slow-consumer clock runs only while the buffer stays full.
        if before < max_outgoing {
            conn.out_progress_secs = (self.now_ms / 1000) as u16;
        }
        let rest = (qos != QoS::AtMostOnce).then_some((packet_id, &layout.tail));
        let memory = self.backpressure.memory_mut();
        conn.out.push_publish(&layout.head, rest, memory);
        let after = conn.out.len();
        bump(&self.global.counters[self.id].messages_sent);
        bump(&self.global.counters[self.id].packets_sent);
        self.mark_dirty(key);
        self.check_pressure_start();
        // Issue 11: no disconnect for size here (a reader of big messages is paced instead,
        // see `overload.rs`); a subscriber not reading is closed by `check_slow_consumer`.
        if after >= max_outgoing / 2 && self.config.qos0_backpressure {
            self.outgoing_grew(skey);
        }
    }

    /// Sends queued messages while the in-flight window has room (after what a resumed
    /// session's window still has to resend).
    pub(crate) fn pump_queue(&mut self, key: ConnKey, skey: SessionKey) {
        // The common case after a PUBACK (issue 17: once per QoS 1 delivery): nothing to resend
        // and nothing queued, so only the congestion state is looked at, as the loop below
        // would end doing.
        let Some(session) = self.sessions.get(skey) else {
            return;
        };
        if !session.session.resend_pending() && session.session.state.queued.is_empty() {
            if session.connection == Some(key) {
                self.update_congestion(skey);
            }
            return;
        }
        if !self.resend_inflight(key, skey) {
            self.update_congestion(skey);
            return;
        }
        loop {
            let Some(session) = self.sessions.get_mut(skey) else {
                return;
            };
            if session.connection != Some(key) {
                return;
            }
            // Issue 11 hook (flow by bytes): refilled as the buffer is written down.
            if self.outgoing_full(key) {
                self.update_congestion(skey);
                return;
            }
            let max_inflight_bytes = ByteLimits::of(&self.config).inflight;
            let Some(session) = self.sessions.get_mut(skey) else {
                return;
            };
            let Some((packet_id, queued)) = session.session.poll_queued(max_inflight_bytes) else {
                self.update_congestion(skey);
                return;
            };
            if packet_id != 0 {
                // Persistence: the queue's first message went out with this packet id.
                let client_id = &session.session.state.client_id;
                self.store.message_dequeued(client_id, packet_id);
            }
            self.queue_entry_removed(&queued.message);
            self.write_publish(
                key,
                skey,
                &queued.message,
                queued.qos,
                packet_id,
                queued.retain,
                Encoding::Fresh { dup: false },
            );
        }
    }

    /// Broadcasts `RouteAdd` for filters that gained their first local subscriber.
    pub(crate) fn broadcast_route_add(&mut self, filters: Vec<MqttString>) {
        if filters.is_empty() || self.mesh.shards() < 2 {
            return;
        }
        let epoch = self.delivery.router_mut().next_epoch();
        for target in 0..self.mesh.shards() {
            if target != self.id {
                self.mesh.send(
                    target,
                    ShardMsg::RouteAdd {
                        from: self.id,
                        filters: filters.clone(),
                        epoch,
                    },
                );
            }
        }
        // Issue 16 hook: peers apply the route before they read more input (fidelity.rs).
        self.mesh.mark_routes_sent();
    }

    /// Broadcasts `RouteRemove` for filters that lost their last local subscriber.
    pub(crate) fn broadcast_route_remove(&mut self, filters: Vec<MqttString>) {
        if filters.is_empty() || self.mesh.shards() < 2 {
            return;
        }
        for target in 0..self.mesh.shards() {
            if target != self.id {
                self.mesh.send(
                    target,
                    ShardMsg::RouteRemove {
                        from: self.id,
                        filters: filters.clone(),
                    },
                );
            }
        }
    }

    /// Sends the SUBACKs whose routing epoch every peer has acknowledged, in order.
    pub(crate) fn release_acks(&mut self) {
        let acked = self.delivery.router().epoch_acked();
        while self.pending_acks.front().is_some_and(|p| p.epoch <= acked) {
            let Some(pending) = self.pending_acks.pop_front() else {
                break;
            };
            let key = pending.connection;
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            if conn.id != pending.connection_id {
                continue;
            }
            match pending.awaited {
                Awaited::SubAck { suback, retained } => {
                    if conn.is_connected() {
                        conn.suback_pending = false;
                        self.complete_subscribe(key, suback, &retained);
                        // Packets that arrived behind the SUBSCRIBE are handled now.
                        self.ready.push(key);
                    }
                }
                Awaited::ConnAck {
                    connack,
                    keep_alive_secs,
                } => {
                    if conn.state == ConnState::Parked {
                        self.complete_connect(key, &connack, keep_alive_secs);
                    }
                }
            }
        }
    }

    /// Sends SUBACK, then the retained messages matching the new subscriptions
    /// ([MQTT-3.3.1-6]: with the retain flag set).
    pub(crate) fn complete_subscribe(
        &mut self,
        key: ConnKey,
        suback: SubAck,
        retained: &[(MqttString, QoS, u32)],
    ) {
        self.send_packet(key, &Packet::SubAck(suback));
        let Some(skey) = self.connections.get(key).and_then(|c| c.session) else {
            return;
        };
        let mut messages = self.delivery.take_retained();
        // Issue 11: one SUBSCRIBE sends at most this many retained messages and bytes.
        let count_max = self.config.max_retained_per_subscribe;
        let bytes_max = self.config.max_retained_bytes_per_subscribe;
        let (mut count, mut bytes) = (0usize, 0usize);
        for (filter, qos, identifier) in retained {
            messages.clear();
            self.global
                .retained
                .collect_matching(filter.as_str(), &mut messages);
            for message in &messages {
                let size = queued_bytes(message);
                if count >= count_max || bytes.saturating_add(size) > bytes_max {
                    bump(&self.global.counters[self.id].retained_subscribe_bound_hit);
                    self.delivery.recycle_retained(messages);
                    return;
                }
                count += 1;
                bytes += size;
                let qos = (*qos).min(message.qos);
                let message = if *identifier != 0 {
                    with_subscription_identifiers(message, &[*identifier])
                } else {
                    message.clone()
                };
                let fresh = Encoding::Fresh { dup: false };
                self.deliver_to_session(skey, &message, qos, true, fresh);
            }
        }
        self.delivery.recycle_retained(messages);
    }

    /// Adds (or replaces) one subscription of a session. Returns whether the filter is new
    /// on this shard (a route to broadcast).
    pub(crate) fn insert_subscription(
        &mut self,
        skey: SessionKey,
        filter: &MqttString,
        sub: LocalSub,
        replace: bool,
    ) -> bool {
        if replace {
            self.delivery.unsubscribe(filter, skey);
            self.delivery.subscribe(filter, sub);
            return false;
        }
        self.delivery.subscribe(filter, sub);
        self.delivery.router_mut().local_added(filter)
    }
}

/// Counts a match-cache lookup. The counters have one writer (this shard), so a plain load and
/// store is enough, and cheaper on the per-message path than an atomic increment.
pub(crate) fn count_lookup(counters: &ShardCounters, lookup: CacheLookup) {
    let counter = match lookup {
        CacheLookup::Empty => return,
        CacheLookup::Hit => &counters.match_cache_hits,
        CacheLookup::Miss | CacheLookup::Bypassed => &counters.match_cache_misses,
    };
    counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}

/// A copy of `message` carrying `identifiers` as its Subscription Identifier properties (the
/// payload and topic stay shared).
pub(crate) fn with_subscription_identifiers(
    message: &MessageRef,
    identifiers: &[u32],
) -> MessageRef {
    let mut own = Message::clone(message);
    own.publish.properties.subscription_identifiers = identifiers.to_vec();
    // Its layout is not the publisher's any more.
    own.frame = None;
    Arc::new(own)
}
