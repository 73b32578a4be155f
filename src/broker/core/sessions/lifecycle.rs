//! Connection and session life: CONNECT, session takeover (same shard or across shards),
//! detaching a session when its connection closes, wills, and ending sessions.
//!
//! Takeover across shards: shard B accepts a CONNECT for client id X and claims X in the
//! registry; if the previous claim was shard A's, B parks the connection and sends `Takeover` to
//! A. A closes the old connection (MQTT 5: DISCONNECT 0x8E), handles its will, and either sends
//! the session state back (clean start 0) or ends the session. B then installs the state
//! (re-adding its subscriptions, with route broadcasts) and sends CONNACK. What is published
//! for the session meanwhile, on any shard, reaches it once and in order: `handover.rs` (finding
//! F1 of the simulation). A third CONNECT racing in while B waits is handled where it lands: on
//! B it replaces the parked connection; on another shard C it sends `Takeover` to B, which
//! closes its parked connection and relays A's answer (and the handover) to C.
//! Two takeovers crossing each other (A asks B while B, for a newer CONNECT, asks A): the shard
//! holding the session always hands it over first, and the other forwards it, so the newest
//! claim ends up with the session whatever order the messages arrive in.

use crate::broker::core::connection::protocol::{self, AcceptedConnect};
use crate::broker::core::connection::{
    ConnState, OutgoingAliases, WillMessage, TIMER_HANDSHAKE_PENDING, TIMER_KEEP_ALIVE_ON_HANDSHAKE,
};
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::mesh::{ShardId, ShardMsg};
use crate::broker::core::registry::Claim;
use crate::broker::core::sessions::handover::HandoverLeg;
use crate::broker::core::sessions::session::{Session, SessionLimits, SessionState};
use crate::broker::core::sessions::ShardSession;
use crate::broker::core::shard::{Awaited, CloseReason, PendingAck, ShardCore};
use crate::broker::core::stats::{bump, bump_by, drop_by};
use crate::broker::core::timers::TimerKind;
use crate::codec::{Connect, MqttString, Packet, ReasonCode};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A CONNECT waiting for another shard to hand over (or drop) the session.
pub struct PendingTakeover {
    pub connection: ConnKey,
    pub connection_id: u64,
    pub accepted: AcceptedConnect,
    pub claim: Claim,
    /// Set when a later CONNECT for the same id, on another shard, took over from us while we
    /// waited: (shard, its request number, whether it keeps the state).
    pub forward: Option<(ShardId, u64, bool)>,
}

/// Where the session of an accepted CONNECT comes from.
enum SessionSource {
    Fresh,
    /// A session already on this shard (slab key).
    Local(SessionKey),
    /// State handed over by another shard, in handover `HandoverLeg` (handover.rs).
    Transferred(Box<SessionState>, HandoverLeg),
}

impl ShardCore {
    fn limits(&self) -> SessionLimits {
        let config = &self.config;
        SessionLimits {
            // Validated to at most 10,000,000 (config.rs).
            max_queued_messages: u32::try_from(config.max_queued_messages).unwrap_or(u32::MAX),
            queue_qos0: config.queue_qos0,
            receive_maximum: config.receive_maximum,
            congested_overshoot: u32::try_from(
                (config.shards - 1).saturating_mul(config.mesh_channel_capacity),
            )
            .unwrap_or(u32::MAX),
        }
    }

    fn assign_client_id(&self) -> MqttString {
        let n = self.global.assigned_ids.fetch_add(1, Ordering::Relaxed);
        MqttString::from(format!(
            "shardmq-{:x}-{n}",
            self.global.instance & 0xffff_ffff
        ))
    }

    /// The first packet: validate, claim the client id, then connect locally or ask the shard
    /// holding the session for it.
    pub(crate) fn handle_connect(&mut self, key: ConnKey, connect: Connect) {
        let version = connect.protocol_version;
        let accepted = {
            let config = &self.config;
            let assign = || self.assign_client_id();
            protocol::validate_connect(&connect, config, assign)
        };
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        conn.version = version;
        // Issue 16: the client's Maximum Packet Size binds the CONNACK too ([MQTT-3.1.2-24]),
        // refusals included (`send_packet` fits or drops what exceeds it).
        if version.is_v5() {
            if let Some(max) = connect.properties.maximum_packet_size {
                conn.client_max_packet_size = max.max(1);
            }
        }
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(code) => {
                bump(&self.global.counters[self.id].connects_refused);
                if !version.is_v5() && connect.keep_alive_secs > self.config.max_keep_alive_secs {
                    bump(&self.global.counters[self.id].keep_alive_capped);
                }
                log::info!(
                    "connect refused client_id={} addr={} shard={} code={code:?}",
                    crate::broker::log_escape::Escaped(connect.client_id.as_str()),
                    conn.peer,
                    self.id
                );
                self.send_packet(key, &protocol::connack_refused(code));
                self.close(key, CloseReason::ConnectRefused(code));
                return;
            }
        };
        if accepted.server_keep_alive.is_some()
            && connect.keep_alive_secs > self.config.max_keep_alive_secs
        {
            bump(&self.global.counters[self.id].keep_alive_capped);
        }
        // Authentication first (spec 4.12): an enhanced exchange may continue with AUTH packets,
        // and `admit_connect` runs once it succeeds.
        if let Some(accepted) = self.authenticate_connect(key, &connect, accepted) {
            self.admit_connect(key, accepted);
        }
    }

    /// Claims the client id and attaches the session of an authenticated CONNECT.
    pub(crate) fn admit_connect(&mut self, key: ConnKey, accepted: AcceptedConnect) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let (claim, previous) = self.global.registry.claim(&accepted.client_id, self.id);
        if previous.is_none()
            && self.global.sessions_open.load(Ordering::Relaxed) >= self.global.live.max_sessions()
        {
            self.global.registry.release(&accepted.client_id, claim);
            bump(&self.global.counters[self.id].sessions_refused);
            bump(&self.global.counters[self.id].connects_refused);
            self.send_packet(key, &protocol::connack_refused(ReasonCode::QuotaExceeded));
            self.close(key, CloseReason::ConnectRefused(ReasonCode::QuotaExceeded));
            return;
        }
        match previous {
            Some(previous) if previous.shard != self.id => {
                let conn_id = conn.id;
                conn.state = ConnState::Parked;
                let client_id = accepted.client_id.clone();
                let keep_state = !accepted.clean_start;
                let request = self.sessions.start_takeover(PendingTakeover {
                    connection: key,
                    connection_id: conn_id,
                    accepted,
                    claim,
                    forward: None,
                });
                self.mesh.send(
                    previous.shard,
                    ShardMsg::Takeover {
                        from: self.id,
                        request,
                        client_id,
                        keep_state,
                    },
                );
            }
            _ => self.connect_locally(key, accepted, claim),
        }
    }

    /// The session, if any, is on this shard (or in a takeover this shard is waiting for).
    fn connect_locally(&mut self, key: ConnKey, accepted: AcceptedConnect, claim: Claim) {
        let client_id = accepted.client_id.clone();
        // A takeover for this id is in flight towards us: this connection replaces the parked one
        // and waits for the same answer.
        let conn_id = self.connections.get(key).map_or(0, |c| c.id);
        if let Some(pending) = self.sessions.waiting_takeover_mut(&client_id, u64::MAX) {
            let old = pending.connection;
            let old_id = pending.connection_id;
            pending.connection = key;
            pending.connection_id = conn_id;
            pending.accepted = accepted;
            pending.claim = claim;
            if let Some(conn) = self.connections.get_mut(key) {
                conn.state = ConnState::Parked;
            }
            if self.connections.get(old).is_some_and(|c| c.id == old_id) {
                self.close(old, CloseReason::TakenOver);
            }
            return;
        }
        let source = match self.sessions.find(&client_id) {
            None => SessionSource::Fresh,
            Some(skey) => {
                if let Some(old) = self.sessions.get(skey).and_then(|s| s.connection) {
                    bump(&self.global.counters[self.id].takeovers);
                    self.close(old, CloseReason::TakenOver);
                }
                // Closing may have ended the session (expiry 0).
                match self.sessions.find(&client_id) {
                    None => SessionSource::Fresh,
                    Some(skey) if accepted.clean_start => {
                        self.end_session(skey);
                        SessionSource::Fresh
                    }
                    Some(skey) => SessionSource::Local(skey),
                }
            }
        };
        self.finish_connect(key, accepted, claim, source);
    }

    /// Attaches the session, sends CONNACK, re-sends what was in flight and drains the queue.
    fn finish_connect(
        &mut self,
        key: ConnKey,
        mut accepted: AcceptedConnect,
        claim: Claim,
        source: SessionSource,
    ) {
        let epoch_before = self.delivery.router().epoch_sent();
        let inflight_max = accepted
            .client_receive_maximum
            .min(self.config.max_inflight);
        let limits = self.limits();
        let (skey, session_present) = match source {
            SessionSource::Local(skey) => (skey, true),
            SessionSource::Transferred(state, handover) => {
                let skey = self.install_session(*state, claim, inflight_max);
                // Finding F1: after the session's routes, the switch (handover.rs).
                self.handover_installed(handover, skey);
                (skey, true)
            }
            SessionSource::Fresh => {
                // A private copy that nothing clones: a `Bytes` made from a `Vec` needs no
                // shared header allocation until its first clone (and `accepted.client_id` has
                // been cloned). The session holds the only copy of the id on the broker.
                let state = SessionState {
                    client_id: MqttString::from(accepted.client_id.as_str()),
                    ..SessionState::default()
                };
                (self.install_session(state, claim, inflight_max), false)
            }
        };
        let generation = self.sessions.next_generation();
        let Some(session) = self.sessions.get_mut(skey) else {
            debug_assert!(false, "session just installed");
            return;
        };
        session.connection = Some(key);
        debug_assert_eq!(
            claim.shard, self.id,
            "a session lives where its id was claimed"
        );
        session.claim_number = claim.number;
        session.generation = generation;
        // [MQTT-3.1.3-9]: a new connection before the Will Delay Interval cancels the will.
        session.pending_will = None;
        // Access control (issue 13): the session follows the identity of its latest connection.
        session.access = accepted.access.take();
        let token_expiry = session.access.as_ref().and_then(|a| a.disconnect_after());
        session.session.inflight_max = inflight_max.max(1);
        session.session.limits = limits;
        session.session.state.session_expiry_interval_secs = accepted.session_expiry_interval_secs;
        if let (Some(left), Some(conn)) = (token_expiry, self.connections.get(key)) {
            // Access control (issue 13, access.rs): close when the token expires.
            let connection_id = conn.id;
            self.arm_token_expiry(key, connection_id, left);
        }
        // Persistence: a persistent session is recorded (in full when new to this shard's log).
        if let Some(session) = self.sessions.get(skey) {
            let will = accepted.will.as_deref().map(|w| (&w.message, w.delay_secs));
            self.store.session_connected(&session.session.state, will);
        }

        let config = &self.config;
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let version = conn.version;
        let connack = protocol::connack_accepted(&accepted, session_present, version, config);
        conn.announced = crate::broker::core::connection::Announced::of(config);
        conn.session = Some(skey);
        // Operations ($SYS clients/connected): uncounted when the connection closes.
        bump(&self.global.counters[self.id].clients_online);
        conn.keep_alive_secs = accepted.keep_alive_secs;
        conn.client_max_packet_size = accepted.client_max_packet_size;
        if !accepted.request_problem_information {
            conn.extras_mut().no_problem_information = true;
        }
        if version.is_v5() && accepted.client_topic_alias_maximum > 0 {
            conn.extras_mut().topic_aliases_out =
                OutgoingAliases::new(accepted.client_topic_alias_maximum);
        }
        conn.will = accepted.will;
        log::info!(
            // Operations: `listener` is a field of the JSON log lines too.
            "connect client_id={} addr={} shard={} listener={} version={:?} clean_start={} keep_alive={} session_present={}",
            crate::broker::log_escape::Escaped(accepted.client_id.as_str()),
            conn.peer,
            self.id,
            conn.listener,
            version,
            accepted.clean_start,
            accepted.keep_alive_secs,
            session_present
        );
        bump(&self.global.counters[self.id].clients_connected);
        // A session that moved here broadcast routes for its subscriptions: like a SUBACK, the
        // CONNACK waits until every shard has them, so that whatever is published after it
        // reaches the session.
        let epoch = self.delivery.router().epoch_sent();
        if epoch > epoch_before && self.delivery.router().epoch_acked() < epoch {
            conn.state = ConnState::Parked;
            let connection_id = conn.id;
            self.pending_acks.push_back(PendingAck {
                epoch,
                connection: key,
                connection_id,
                awaited: Awaited::ConnAck {
                    connack,
                    keep_alive_secs: accepted.keep_alive_secs,
                },
            });
            return;
        }
        self.complete_connect(key, &connack, accepted.keep_alive_secs);
    }

    /// Sends CONNACK, then what the session had in flight and queued.
    pub(crate) fn complete_connect(
        &mut self,
        key: ConnKey,
        connack: &Packet,
        keep_alive_secs: u16,
    ) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let Some(skey) = conn.session else {
            return;
        };
        conn.state = ConnState::Connected;
        conn.last_received_ms = self.now_ms;
        let conn_id = conn.id;
        debug_assert_eq!(keep_alive_secs, conn.keep_alive_secs);
        if keep_alive_secs > 0 {
            let timeout_ms = conn.keep_alive_timeout_ms();
            // The handshake entry still pending fires before this keep-alive would expire (it
            // was armed before now, for at most this long): it does the first check, so an
            // idle connection keeps one timer entry, not two.
            let handshake_first = u64::from(timeout_ms) >= self.config.handshake_timeout_ms;
            if conn.timer & TIMER_HANDSHAKE_PENDING != 0 && handshake_first {
                conn.timer |= TIMER_KEEP_ALIVE_ON_HANDSHAKE;
            } else {
                let deadline = self.now + Duration::from_millis(u64::from(timeout_ms));
                self.timers
                    .arm(deadline, TimerKind::KeepAlive, key.index(), conn_id);
            }
        }
        self.send_packet(key, connack);
        // [MQTT-4.4.0-1]: the in-flight window is resent first, as the buffer allows
        // (`pump_queue`).
        if let Some(session) = self.sessions.get_mut(skey) {
            session.session.start_resend();
        }
        self.pump_queue(key, skey);
        self.ready.push(key);
    }

    /// Puts a session into the slab and its subscriptions into the trie (broadcasting routes
    /// for filters new to this shard; the route barrier of later SUBACKs covers them).
    pub(crate) fn install_session(
        &mut self,
        state: SessionState,
        claim: Claim,
        inflight_max: u16,
    ) -> SessionKey {
        let filters: Vec<_> = state
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), *s))
            .collect();
        let limits = self.limits();
        self.global.sessions_open.fetch_add(1, Ordering::Relaxed);
        // Operations: the subscriptions gauge follows the session to this shard.
        bump_by(
            &self.global.counters[self.id].subscriptions,
            filters.len() as u64,
        );
        debug_assert_eq!(
            claim.shard, self.id,
            "a session lives where its id was claimed"
        );
        // A session that moved here brings its queue along.
        self.queue_arrived(&state);
        let skey = self.sessions.insert(ShardSession {
            session: Session::new(state, inflight_max.max(1), limits),
            claim_number: claim.number,
            connection: None,
            generation: 0,
            pending_will: None,
            access: None,
        });
        let mut new_routes = Vec::new();
        for (filter, stored) in filters {
            let sub = LocalSub {
                session: skey,
                options: stored.options,
                identifier: stored.identifier,
            };
            self.delivery.subscribe(&filter, sub);
            if self.delivery.router_mut().local_added(&filter) {
                new_routes.push(filter);
            }
        }
        self.broadcast_route_add(new_routes);
        skey
    }

    /// Removes a session's subscriptions from the trie, broadcasting routes that went away;
    /// with `keep_routes` (a handover) the routes stay until `handover.rs` drops them.
    fn remove_subscriptions(&mut self, skey: SessionKey, keep_routes: bool) {
        let Some(session) = self.sessions.get(skey) else {
            return;
        };
        let filters: Vec<MqttString> = session
            .session
            .state
            .subscriptions
            .keys()
            .cloned()
            .collect();
        // Operations: the subscriptions gauge (they come back in `install_session` on a move).
        drop_by(
            &self.global.counters[self.id].subscriptions,
            filters.len() as u64,
        );
        let mut gone = Vec::new();
        for filter in filters {
            self.delivery.unsubscribe(&filter, skey);
            if !keep_routes && self.delivery.router_mut().local_removed(&filter) {
                gone.push(filter);
            }
        }
        self.broadcast_route_remove(gone);
    }

    /// The connection of a session closed: end the session or keep it offline, and handle the
    /// will (at once, or after its delay while the session lives).
    pub(crate) fn detach_session(&mut self, skey: SessionKey, will: Option<Box<WillMessage>>) {
        let generation = self.sessions.next_generation();
        let now = self.now;
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        session.connection = None;
        session.generation = generation;
        // Offline sessions are never congested.
        self.update_congestion(skey);
        let Some(session) = self.sessions.get_mut(skey) else {
            return;
        };
        let expiry = session.session.state.session_expiry_interval_secs;
        if session.session.ends_with_connection() {
            if let Some(will) = will {
                self.publish_will(*will);
            }
            self.end_session(skey);
            return;
        }
        // Persistence: the session is recorded offline, with the will that waits for its delay.
        let pending_will = will.as_deref().filter(|w| w.delay_secs > 0);
        let pending_will = pending_will.map(|w| (&w.message, w.delay_secs));
        self.store
            .session_detached(&session.session.state, pending_will, now);
        if expiry != u32::MAX {
            let deadline = now + Duration::from_secs(u64::from(expiry));
            self.timers
                .arm(deadline, TimerKind::SessionExpiry, skey.index(), generation);
        }
        let Some(will) = will else {
            return;
        };
        if will.delay_secs == 0 {
            self.publish_will(*will);
            return;
        }
        // Published when the delay ends or the session ends, whichever is first.
        let delay = will.delay_secs.min(expiry);
        session.pending_will = Some(will);
        let deadline = now + Duration::from_secs(u64::from(delay));
        self.timers
            .arm(deadline, TimerKind::WillDelay, skey.index(), generation);
    }

    /// Ends a session: its pending will goes out, its subscriptions and registry entry go.
    pub(crate) fn end_session(&mut self, skey: SessionKey) {
        if let Some(will) = self
            .sessions
            .get_mut(skey)
            .and_then(|s| s.pending_will.take())
        {
            self.publish_will(*will);
        }
        // Finding F1: what was held for it while it arrived goes (handover.rs).
        if self.handovers.has_incoming() {
            self.handover_session_ended(skey);
        }
        self.remove_subscriptions(skey, false);
        self.forget_congestion(skey);
        let Some(session) = self.sessions.remove(skey) else {
            return;
        };
        self.queue_left(&session.session.state);
        self.global.sessions_open.fetch_sub(1, Ordering::Relaxed);
        self.redeliver_shared(&session.session.state);
        let client_id = &session.session.state.client_id;
        // Persistence: the session's records are removed.
        self.store.session_ended(client_id);
        let claim = Claim {
            shard: self.id,
            number: session.claim_number,
        };
        self.global.registry.release(client_id, claim);
    }

    /// Takes a session off this shard for a takeover; its pending will is cancelled because a
    /// new connection resumes it.
    fn extract_session(&mut self, skey: SessionKey) -> Option<SessionState> {
        // Finding F1: peers keep routing the session's messages here during the handover.
        self.remove_subscriptions(skey, true);
        self.forget_congestion(skey);
        let session = self.sessions.remove(skey)?;
        self.queue_left(&session.session.state);
        self.global.sessions_open.fetch_sub(1, Ordering::Relaxed);
        let client_id = &session.session.state.client_id;
        // Persistence: the receiving shard records the session in its own log.
        self.store.session_moved_out(client_id);
        Some(session.session.state)
    }

    /// Another shard accepted a CONNECT for a client id this shard holds.
    pub(crate) fn handle_takeover_request(
        &mut self,
        from: ShardId,
        request: u64,
        client_id: MqttString,
        keep_state: bool,
    ) {
        // A session still arriving here is handed on once its handover ended (handover.rs).
        if self.handovers.has_incoming()
            && self.handover_defer_takeover(&client_id, (from, request, keep_state))
        {
            return;
        }
        bump(&self.global.counters[self.id].takeovers);
        // A session held here is handed over first, even if a CONNECT of ours for the same id
        // waits for another shard: that is a crossing takeover, and our waiting connection
        // (the newer claim) gets the session back through the forwarding below.
        if let Some(skey) = self.sessions.find(&client_id) {
            if let Some(old) = self.sessions.get(skey).and_then(|s| s.connection) {
                self.close(old, CloseReason::TakenOver);
            }
            let mut state = None;
            if let Some(skey) = self.sessions.find(&client_id) {
                if keep_state {
                    state = self.extract_session(skey).map(Box::new);
                } else {
                    self.end_session(skey);
                }
            }
            // Finding F1: this shard keeps routing for the session until every shard has the
            // new routes (handover.rs).
            let handover = state.as_ref().map(|s| HandoverLeg {
                id: self.handover_start(from, s),
                hop: 0,
            });
            let reply = ShardMsg::takeover_reply(self.id, request, state, handover);
            self.mesh.send(from, reply);
            return;
        }
        // We are ourselves waiting for this id's session: hand the answer on when it comes.
        if let Some(pending) = self.sessions.waiting_takeover_mut(&client_id, request) {
            pending.forward = Some((from, request, keep_state));
            let (old, old_id) = (pending.connection, pending.connection_id);
            if self.connections.get(old).is_some_and(|c| c.id == old_id) {
                self.close(old, CloseReason::TakenOver);
            }
            return;
        }
        self.mesh
            .send(from, ShardMsg::takeover_reply(self.id, request, None, None));
    }

    /// The shard that held a session answered our `Takeover` (or relayed the answer).
    pub(crate) fn handle_takeover_reply(
        &mut self,
        request: u64,
        state: Option<Box<SessionState>>,
        handover: Option<HandoverLeg>,
    ) {
        let Some(pending) = self.sessions.finish_takeover(request) else {
            // Nothing asked for it any more: the state is dropped, the handover ends.
            if let Some(handover) = handover {
                self.handover_aborted(handover.id);
            }
            return;
        };
        if let Some((to, their_request, keep)) = pending.forward {
            // Crossing takeovers: the state, and what follows it, go on to the newer claim.
            let (state, handover) = match (keep, handover) {
                (true, Some(handover)) => (state, Some(self.handover_relayed(handover, to))),
                (_, handover) => {
                    if let Some(handover) = handover {
                        self.handover_aborted(handover.id);
                    }
                    (None, None)
                }
            };
            self.mesh.send(
                to,
                ShardMsg::takeover_reply(self.id, their_request, state, handover),
            );
            return;
        }
        let alive = self
            .connections
            .get(pending.connection)
            .is_some_and(|c| c.id == pending.connection_id && c.state == ConnState::Parked);
        let source = match (state, handover) {
            (Some(state), Some(handover)) if !pending.accepted.clean_start => {
                SessionSource::Transferred(state, handover)
            }
            (_, handover) => {
                if let Some(handover) = handover {
                    self.handover_aborted(handover.id);
                }
                SessionSource::Fresh
            }
        };
        if alive {
            self.finish_connect(pending.connection, pending.accepted, pending.claim, source);
            return;
        }
        // The new connection died while waiting: keep a handed-over session offline under our
        // claim (its expiry runs from now), or give the claim up.
        match source {
            SessionSource::Transferred(mut state, handover)
                if pending.accepted.session_expiry_interval_secs > 0 =>
            {
                state.session_expiry_interval_secs = pending.accepted.session_expiry_interval_secs;
                let inflight_max = self.config.max_inflight;
                let skey = self.install_session(*state, pending.claim, inflight_max);
                self.handover_installed(handover, skey);
                self.detach_session(skey, None);
            }
            source => {
                if let SessionSource::Transferred(_, handover) = source {
                    self.handover_aborted(handover.id);
                }
                self.global
                    .registry
                    .release(&pending.accepted.client_id, pending.claim);
            }
        }
    }

    /// Publishes a will message like any other publish from this shard.
    pub(crate) fn publish_will(&mut self, will: WillMessage) {
        // Issue 16 hook: a will to `$SYS`/`$share` is dropped like such a PUBLISH (Mosquitto
        // checks a will's topic when it sends it, the same way).
        if crate::broker::core::connection::fidelity::is_reserved_publish_topic(
            will.message.topic.as_bytes(),
        ) {
            bump(&self.global.counters[self.id].publishes_to_reserved_topics);
            return;
        }
        bump(&self.global.counters[self.id].wills_published);
        let message =
            crate::broker::core::sessions::session::Message::new_ref(will.message, self.now);
        self.route_publish(&message, None);
    }
}
