//! Handling of each packet a client sends after the connection is accepted.
//!
//! Every violation becomes `CloseReason::Protocol(reason code, rule)`: the connection gets a
//! DISCONNECT with that code (MQTT 5), one log line, and is closed; nobody else is affected.

use crate::broker::core::connection::protocol::{granted, topic_levels};
use crate::broker::core::connection::{Announced, ConnState};
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::keys::{ConnKey, SessionKey};
use crate::broker::core::sessions::session::{IncomingQoS2, ReceivedFrame, StoredSubscription};
use crate::broker::core::shard::{Awaited, CloseReason, PendingAck, ShardCore};
use crate::broker::core::stats::{bump, drop_one};
use crate::codec::{
    Ack, Disconnect, MqttString, Packet, PacketType, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::topic;
use bytes::Bytes;

fn protocol_error(why: &str) -> CloseReason {
    CloseReason::Protocol(ReasonCode::ProtocolError, why.to_string())
}

impl ShardCore {
    /// Dispatches one decoded packet.
    /// `frame` is the packet's whole frame as received (shared with the packet's fields).
    pub(crate) fn handle_packet(&mut self, key: ConnKey, packet: Packet, frame: Bytes) {
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        if conn.state == ConnState::AwaitConnect {
            let authenticating = conn.authenticating();
            match packet {
                // Spec 4.12: during an enhanced-authentication exchange only AUTH may come.
                Packet::Auth(auth) if authenticating => self.handle_auth(key, auth),
                Packet::Connect(_) if authenticating => self.close(
                    key,
                    protocol_error("[MQTT-3.1.0-2] second CONNECT during authentication"),
                ),
                Packet::Connect(connect) => self.handle_connect(key, *connect),
                // [MQTT-3.1.0-1]: the first packet must be CONNECT.
                _ => self.close(
                    key,
                    protocol_error("[MQTT-3.1.0-1] first packet is not CONNECT"),
                ),
            }
            return;
        }
        let Some(skey) = conn.session else {
            return;
        };
        let v5 = conn.version.is_v5();
        match packet {
            Packet::Publish(publish) => {
                // Frames without a Topic Alias may be forwarded as they are (issue 17: whatever
                // their size; the payload is a slice of the same read allocation anyway).
                let frame = publish
                    .properties
                    .topic_alias
                    .is_none()
                    .then_some(ReceivedFrame { bytes: frame, v5 });
                self.handle_publish(key, skey, publish, frame)
            }
            Packet::PubAck(a) => {
                if let Some(s) = self.sessions.get_mut(skey) {
                    if let Some(message) = s.session.take_puback(a.packet_id) {
                        // Persistence: the message is finished.
                        let client_id = &s.session.state.client_id;
                        self.store.message_done(client_id, a.packet_id);
                        if let Some(spare) = self.delivery.recycle_message(message) {
                            self.mesh.give_spare_message(spare);
                        }
                    } else {
                        log::debug!(
                            "shard {}: PUBACK for unknown packet id {}",
                            self.id,
                            a.packet_id
                        );
                    }
                }
                self.pump_queue(key, skey);
            }
            Packet::PubRec(a) => self.handle_pubrec(key, skey, a),
            Packet::PubRel(a) => {
                let found = self
                    .sessions
                    .get_mut(skey)
                    .is_some_and(|s| s.session.handle_pubrel(a.packet_id));
                if found {
                    // Persistence: recorded before the PUBCOMP goes out (same loop turn).
                    if let Some(s) = self.sessions.get(skey) {
                        let client_id = &s.session.state.client_id;
                        self.store.incoming_qos2(client_id, a.packet_id, false);
                    }
                }
                // [MQTT-4.3.3-11]: PUBCOMP with the same id; 0x92 if it was unknown (MQTT 5).
                let code = if found {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.send_ack(key, PacketType::PubComp, a.packet_id, code);
            }
            Packet::PubComp(a) => {
                if let Some(s) = self.sessions.get_mut(skey) {
                    if s.session.handle_pubcomp(a.packet_id) {
                        // Persistence: the message is finished.
                        let client_id = &s.session.state.client_id;
                        self.store.message_done(client_id, a.packet_id);
                    }
                }
                self.pump_queue(key, skey);
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(key, skey, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(key, skey, unsubscribe),
            Packet::PingReq => self.send_packet(key, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(key, skey, disconnect),
            // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
            Packet::Connect(_) => self.close(key, protocol_error("[MQTT-3.1.0-2] second CONNECT")),
            // Re-authentication (AUTH 0x19, [MQTT-4.12.1-1]) and its continuation.
            Packet::Auth(auth) => self.handle_auth(key, auth),
            // Packets only a server may send.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.close(key, protocol_error("packet only a server may send"))
            }
        }
    }

    fn handle_publish(
        &mut self,
        key: ConnKey,
        skey: SessionKey,
        mut publish: Publish,
        frame: Option<ReceivedFrame>,
    ) {
        bump(&self.global.counters[self.id].messages_received);
        // Issue 15: what this connection's CONNACK announced, whatever a reload set since.
        let announced = self
            .connections
            .get(key)
            .map_or_else(|| Announced::of(&self.config), |c| c.announced);
        if publish.qos as u8 > announced.max_qos {
            // [MQTT-3.2.2-11]: above the Maximum QoS we advertised.
            self.close(
                key,
                CloseReason::Protocol(
                    ReasonCode::QoSNotSupported,
                    "[MQTT-3.2.2-11] QoS above Maximum QoS".into(),
                ),
            );
            return;
        }
        if publish.retain && !announced.retain_available {
            // [MQTT-3.2.2-14]: retain when Retain Available is 0.
            self.close(
                key,
                CloseReason::Protocol(
                    ReasonCode::RetainNotSupported,
                    "[MQTT-3.2.2-14] retain not available".into(),
                ),
            );
            return;
        }
        if let Err(reason) = self.resolve_topic_alias(key, &mut publish) {
            self.close(key, reason);
            return;
        }
        // The topic name's rules (UTF-8 without U+0000 [MQTT-1.5.4-1/2], no wildcards
        // [MQTT-3.3.2-2], not empty without an alias [MQTT-4.7.3-1], at most 65,535 bytes by
        // its length prefix [MQTT-4.7.3-3]) were checked by the codec when the frame was
        // decoded, and an aliased topic when its alias was set, each with its reason code; they
        // are not checked again (nor asserted: the value is the client's).
        if topic_levels(publish.topic.as_bytes()) > self.config.max_topic_levels {
            bump(&self.global.counters[self.id].topic_levels_exceeded);
            self.close(
                key,
                CloseReason::Protocol(ReasonCode::TopicNameInvalid, "too many topic levels".into()),
            );
            return;
        }
        // [MQTT-3.3.4-6]: a client must not send Subscription Identifiers.
        if !publish.properties.subscription_identifiers.is_empty() {
            self.close(
                key,
                protocol_error("[MQTT-3.3.4-6] subscription identifier in PUBLISH"),
            );
            return;
        }
        // Issue 16 hook: `$SYS` and `$share` topic names are not for clients (fidelity.rs).
        if crate::broker::core::connection::fidelity::is_reserved_publish_topic(
            publish.topic.as_bytes(),
        ) {
            self.drop_reserved_publish(key, &publish);
            return;
        }
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        // Access control (issue 13, access.rs): the client needs write access to the topic. A
        // denied QoS 0 message is dropped; QoS 1/2 get 0x87 (MQTT 5), or for 3.1.1 go through
        // the usual acknowledgements and are dropped, as Mosquitto does.
        let denied = !self.may_publish(skey, &publish.topic);
        if denied && (qos == QoS::AtMostOnce || self.denied_publish_code(key).is_error()) {
            let code = self.denied_publish_code(key);
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => self.send_ack(key, PacketType::PubAck, packet_id, code),
                QoS::ExactlyOnce => self.send_ack(key, PacketType::PubRec, packet_id, code),
            }
            return;
        }
        if qos == QoS::ExactlyOnce {
            let outcome = match self.sessions.get_mut(skey) {
                Some(s) => s.session.handle_incoming_qos2(packet_id),
                None => return,
            };
            match outcome {
                IncomingQoS2::New => {
                    // Persistence: a duplicate after a restart is still recognised.
                    if let Some(s) = self.sessions.get(skey) {
                        let client_id = &s.session.state.client_id;
                        self.store.incoming_qos2(client_id, packet_id, true);
                    }
                }
                IncomingQoS2::Duplicate => {
                    // [MQTT-4.3.3-10]: not delivered again; answer PUBREC again (after any
                    // PUBREC still held for durability, persist.rs).
                    self.send_publish_ack(key, PacketType::PubRec, packet_id, ReasonCode::Success);
                    return;
                }
                IncomingQoS2::ReceiveMaximumExceeded => {
                    bump(&self.global.counters[self.id].receive_maximum_exceeded);
                    self.close(
                        key,
                        CloseReason::Protocol(
                            ReasonCode::ReceiveMaximumExceeded,
                            "[MQTT-3.3.4-7] receive maximum exceeded".into(),
                        ),
                    );
                    return;
                }
            }
        }
        if denied {
            // MQTT 3.1.1, QoS 1/2: acknowledged (PUBREL/PUBCOMP follow as usual), not routed.
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => {
                    self.send_ack(key, PacketType::PubAck, packet_id, ReasonCode::Success)
                }
                QoS::ExactlyOnce => {
                    self.send_ack(key, PacketType::PubRec, packet_id, ReasonCode::Success)
                }
            }
            return;
        }
        publish.dup = false;
        publish.packet_id = 0;
        // Issue 17: a message routed to another shard is freed there; the allocations that
        // shard has left over come back through the mesh.
        if !self.delivery.has_spare_message() {
            if let Some(spare) = self.mesh.take_spare_message() {
                self.delivery.add_spare_message(spare);
            }
        }
        let message = self.delivery.new_message(publish, frame, self.now);
        // Persistence (`sync`): the acknowledgement below waits for other shards' records.
        self.store_route_start(qos);
        let (matched, overflowed) = self.route_publish(&message, Some(skey));
        if let Some(spare) = self.delivery.recycle_message(message) {
            self.mesh.give_spare_message(spare);
        }
        // MQTT 5: 0x10 No matching subscribers is informative, the message was accepted.
        let code = if matched {
            ReasonCode::Success
        } else {
            ReasonCode::NoMatchingSubscribers
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_publish_ack(key, PacketType::PubAck, packet_id, code),
            QoS::ExactlyOnce => self.send_publish_ack(key, PacketType::PubRec, packet_id, code),
        }
        if overflowed {
            self.pause(key);
        }
        // Backpressure (congestion.rs); QoS 0 publishers only with `qos0_backpressure`.
        if qos != QoS::AtMostOnce || self.config.qos0_backpressure {
            if let Some(blocker) = self.backpressure.take_blocker() {
                self.pause_for_congestion(key, blocker);
            }
        }
    }

    /// Applies an MQTT 5 Topic Alias (spec 3.3.2.3.4): a topic with an alias sets it, an empty
    /// topic with an alias uses it. The alias is removed (it belongs to this connection).
    fn resolve_topic_alias(
        &mut self,
        key: ConnKey,
        publish: &mut Publish,
    ) -> Result<(), CloseReason> {
        let Some(conn) = self.connections.get_mut(key) else {
            return Ok(());
        };
        let max = conn.announced.topic_alias_maximum;
        let Some(alias) = publish.properties.topic_alias.take() else {
            if publish.topic.is_empty() {
                // [MQTT-3.3.2-1]: a topic name is required without an alias.
                return Err(protocol_error(
                    "[MQTT-3.3.2-1] empty topic name without topic alias",
                ));
            }
            return Ok(());
        };
        // [MQTT-3.3.2-8] alias 0, [MQTT-3.3.2-9] above our Topic Alias Maximum.
        if alias == 0 || alias > max {
            return Err(CloseReason::Protocol(
                ReasonCode::TopicAliasInvalid,
                format!("[MQTT-3.3.2-8/9] topic alias {alias} outside 1..={max}"),
            ));
        }
        let index = usize::from(alias - 1);
        if publish.topic.is_empty() {
            let known = conn
                .extras
                .as_ref()
                .and_then(|e| e.topic_aliases_in.get(index));
            match known.and_then(Option::as_ref) {
                Some(topic) => publish.topic = topic.clone(),
                // Spec 3.3.4: an alias the client never set is a protocol error.
                None => return Err(protocol_error("unknown topic alias with an empty topic")),
            }
            return Ok(());
        }
        let table = &mut conn.extras_mut().topic_aliases_in;
        if table.len() <= index {
            table.resize(index + 1, None);
        }
        // An owned copy, so the table does not pin the read buffer.
        table[index] = Some(MqttString::from(publish.topic.as_str()));
        Ok(())
    }

    fn handle_pubrec(&mut self, key: ConnKey, skey: SessionKey, a: Ack) {
        let accepted = !a.reason_code.is_error();
        let known = self
            .sessions
            .get_mut(skey)
            .is_some_and(|s| s.session.handle_pubrec(a.packet_id, accepted));
        if known {
            // Persistence: PUBCOMP awaited, or the flow ended with an error reason.
            if let Some(s) = self.sessions.get(skey) {
                let client_id = &s.session.state.client_id;
                if accepted {
                    self.store.message_released(client_id, a.packet_id);
                } else {
                    self.store.message_done(client_id, a.packet_id);
                }
            }
        }
        if accepted {
            // [MQTT-4.3.3-3]: PUBREL answers PUBREC; 0x92 if we knew no such id (MQTT 5).
            let code = if known {
                ReasonCode::Success
            } else {
                ReasonCode::PacketIdentifierNotFound
            };
            self.send_ack(key, PacketType::PubRel, a.packet_id, code);
        } else {
            self.pump_queue(key, skey);
        }
    }

    fn handle_subscribe(&mut self, key: ConnKey, skey: SessionKey, subscribe: Subscribe) {
        let Some(version) = self.connections.get(key).map(|c| c.version) else {
            return;
        };
        // Spec 3.8.2.1.2: at most one Subscription Identifier, 1..=268,435,455 (the codec
        // checks the range); it applies to every filter of this SUBSCRIBE.
        let identifiers = &subscribe.properties.subscription_identifiers;
        if identifiers.len() > 1 {
            self.close(key, protocol_error("more than one subscription identifier"));
            return;
        }
        let identifier = identifiers.first().copied().unwrap_or(0);
        // [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
        let shared_no_local = subscribe.subscriptions.iter().any(|s| {
            s.options.no_local && matches!(topic::parse_shared(s.filter.as_str()), Ok(Some(_)))
        });
        if shared_no_local && version.is_v5() {
            self.close(
                key,
                protocol_error("[MQTT-3.8.3-4] No Local on a shared subscription"),
            );
            return;
        }
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut new_routes = Vec::new();
        let mut retained = Vec::new();
        for subscription in &subscribe.subscriptions {
            let code = self.add_subscription(
                skey,
                version,
                subscription,
                identifier,
                &mut new_routes,
                &mut retained,
            );
            reason_codes.push(code);
        }
        self.broadcast_route_add(new_routes);
        // Persistence: the session's subscriptions are recorded.
        if let Some(s) = self.sessions.get(skey) {
            self.store.session_changed(&s.session.state);
        }
        let mut suback = SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        self.explain_suback(key, &mut suback);
        let epoch = self.delivery.router().epoch_sent();
        if self.delivery.router().epoch_acked() >= epoch && self.pending_acks.is_empty() {
            self.complete_subscribe(key, suback, &retained);
            return;
        }
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        conn.suback_pending = true;
        let connection_id = conn.id;
        self.pending_acks.push_back(PendingAck {
            epoch,
            connection: key,
            connection_id,
            awaited: Awaited::SubAck { suback, retained },
        });
    }

    /// Adds a Reason String naming the first refusal to a SUBACK, unless the client asked for
    /// none ([MQTT-3.1.2-29]) or it would exceed the client's Maximum Packet Size
    /// ([MQTT-3.9.2-1]).
    #[allow(clippy::field_reassign_with_default)] // the property sits behind DerefMut
    fn explain_suback(&self, key: ConnKey, suback: &mut SubAck) {
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        if !conn.wants_problem_information() {
            return;
        }
        let why = suback.reason_codes.iter().find_map(|code| match code {
            ReasonCode::TopicFilterInvalid => Some("topic filter invalid or too many levels"),
            ReasonCode::QuotaExceeded => Some("max_subscriptions_per_client reached"),
            code if code.is_error() => Some("subscription refused"),
            _ => None,
        });
        let Some(why) = why else {
            return;
        };
        let mut explained = suback.clone();
        explained.properties.reason_string = Some(MqttString::from_static(why));
        let fits = Packet::SubAck(explained.clone()).encoded_len(conn.version)
            <= conn.client_max_packet_size as usize;
        if fits {
            *suback = explained;
        }
    }

    /// Validates and adds one filter; returns its SUBACK reason code.
    fn add_subscription(
        &mut self,
        skey: SessionKey,
        version: ProtocolVersion,
        subscription: &crate::codec::Subscription,
        identifier: u32,
        new_routes: &mut Vec<MqttString>,
        retained: &mut Vec<(MqttString, QoS, u32)>,
    ) -> ReasonCode {
        let filter_str = subscription.filter.as_str();
        if topic::validate_topic_filter(filter_str).is_err() {
            return ReasonCode::TopicFilterInvalid;
        }
        if topic_levels(filter_str) > self.config.max_topic_levels {
            bump(&self.global.counters[self.id].topic_levels_exceeded);
            return ReasonCode::TopicFilterInvalid;
        }
        let shared = matches!(topic::parse_shared(filter_str), Ok(Some(_)));
        // Access control (issue 13, access.rs): a filter under which nothing is readable is
        // refused (0x87; the codec sends 0x80 to MQTT 3.1.1 clients).
        let plain = match topic::parse_shared(filter_str) {
            Ok(Some(shared_filter)) => shared_filter.filter,
            _ => filter_str,
        };
        if !self.may_subscribe(skey, plain) {
            return ReasonCode::NotAuthorized;
        }
        let max = self.config.max_subscriptions_per_client;
        let Some(session) = self.sessions.get_mut(skey) else {
            return ReasonCode::UnspecifiedError;
        };
        let subscriptions = &mut session.session.state.subscriptions;
        let existing = subscriptions.contains_key(&subscription.filter);
        if !existing && subscriptions.len() >= max {
            bump(&self.global.counters[self.id].subscriptions_refused);
            return ReasonCode::QuotaExceeded;
        }
        let mut options = subscription.options;
        // [MQTT-3.2.2-10]: any requested QoS is accepted, granted at most our Maximum QoS.
        options.qos = options
            .qos
            .min(QoS::from_u8(self.config.max_qos).unwrap_or(QoS::ExactlyOnce));
        if !version.is_v5() {
            options.no_local = false;
            options.retain_as_published = false;
            options.retain_handling = Default::default();
        }
        // A stored filter owns its bytes so it does not pin the read buffer.
        let filter = MqttString::from(filter_str);
        let stored = StoredSubscription {
            options,
            identifier,
        };
        subscriptions.insert(filter.clone(), stored);
        if !existing {
            // Operations: `$SYS/broker/subscriptions/count` and the metrics.
            bump(&self.global.counters[self.id].subscriptions);
        }
        let sub = LocalSub {
            session: skey,
            options,
            identifier,
        };
        // [MQTT-3.8.4-3]: a subscription with the same filter replaces the old one.
        if self.insert_subscription(skey, &filter, sub, existing) {
            new_routes.push(filter.clone());
        }
        use crate::codec::RetainHandling;
        let send_retained = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendAtSubscribeIfNew => !existing,
            RetainHandling::DoNotSend => false,
        };
        // Spec 4.8.2: retained messages are not sent when a shared subscription is made.
        if send_retained && !shared {
            retained.push((filter, options.qos, identifier));
        }
        granted(options.qos)
    }

    fn handle_unsubscribe(&mut self, key: ConnKey, skey: SessionKey, unsubscribe: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        let mut gone = Vec::new();
        for filter in &unsubscribe.filters {
            let removed = self
                .sessions
                .get_mut(skey)
                .and_then(|s| s.session.state.subscriptions.remove(filter))
                .is_some();
            if removed {
                // Operations: `$SYS/broker/subscriptions/count` and the metrics.
                drop_one(&self.global.counters[self.id].subscriptions);
                self.delivery.unsubscribe(filter, skey);
                if self.delivery.router_mut().local_removed(filter) {
                    gone.push(MqttString::from(filter.as_str()));
                }
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.broadcast_route_remove(gone);
        // Persistence: the session's subscriptions are recorded.
        if let Some(s) = self.sessions.get(skey) {
            self.store.session_changed(&s.session.state);
        }
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        self.send_packet(key, &Packet::UnsubAck(unsuback));
    }

    fn handle_disconnect(&mut self, key: ConnKey, skey: SessionKey, disconnect: Disconnect) {
        if let Some(expiry) = disconnect.properties.session_expiry_interval {
            let current = self
                .sessions
                .get(skey)
                .map_or(0, |s| s.session.state.session_expiry_interval_secs);
            // [MQTT-3.14.2-2]: zero in CONNECT cannot become non-zero in DISCONNECT.
            if current == 0 && expiry != 0 {
                self.close(
                    key,
                    protocol_error("[MQTT-3.14.2-2] session expiry raised from 0"),
                );
                return;
            }
            if let Some(s) = self.sessions.get_mut(skey) {
                s.session.state.session_expiry_interval_secs = expiry;
            }
        }
        // [MQTT-3.14.4-3]: a normal DISCONNECT discards the will; 0x04 asks for it.
        if disconnect.reason_code != ReasonCode::DisconnectWithWillMessage {
            if let Some(conn) = self.connections.get_mut(key) {
                conn.will = None;
            }
        }
        // Issue 16: a client's Reason String is logged, escaped (log_escape.rs).
        if let Some(why) = disconnect.properties.reason_string.as_ref() {
            use crate::broker::log_escape::Escaped;
            let client_id = self
                .sessions
                .get(skey)
                .map_or("", |s| s.session.state.client_id.as_str());
            log::info!(
                "client reason string client_id={} shard={} reason_string={}",
                Escaped(client_id),
                self.id,
                Escaped(why.as_str())
            );
        }
        self.close(key, CloseReason::ClientDisconnect(disconnect.reason_code));
    }
}
