//! Handling of each packet a client sends after the connection is accepted.
//!
//! Every violation becomes `CloseReason::Protocol(reason code, rule)`: the connection gets a
//! DISCONNECT with that code (MQTT 5), one log line, and is closed; nobody else is affected.

use super::connection::ConnState;
use super::protocol::{granted, topic_levels};
use super::session::{IncomingQoS2, Message, StoredSubscription};
use super::shard::{CloseReason, LocalSub, PendingSubAck, Shard};
use super::stats::bump;
use crate::codec::{
    Ack, Disconnect, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};
use crate::topic;

fn ack(packet_id: u16, reason_code: ReasonCode) -> Ack {
    Ack {
        packet_id,
        reason_code,
        properties: Properties::default(),
    }
}

fn protocol_error(why: &str) -> CloseReason {
    CloseReason::Protocol(ReasonCode::ProtocolError, why.to_string())
}

impl Shard {
    /// Dispatches one decoded packet.
    pub(super) fn handle_packet(&mut self, key: usize, packet: Packet) {
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        if conn.state == ConnState::AwaitConnect {
            match packet {
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
        match packet {
            Packet::Publish(publish) => self.handle_publish(key, skey, publish),
            Packet::PubAck(a) => {
                if let Some(s) = self.sessions.get_mut(skey) {
                    if !s.session.handle_puback(a.packet_id) {
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
                // [MQTT-4.3.3-11]: PUBCOMP with the same id; 0x92 if it was unknown (MQTT 5).
                let code = if found {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                self.send_packet(key, &Packet::PubComp(ack(a.packet_id, code)));
            }
            Packet::PubComp(a) => {
                if let Some(s) = self.sessions.get_mut(skey) {
                    s.session.handle_pubcomp(a.packet_id);
                }
                self.pump_queue(key, skey);
            }
            Packet::Subscribe(subscribe) => self.handle_subscribe(key, skey, subscribe),
            Packet::Unsubscribe(unsubscribe) => self.handle_unsubscribe(key, skey, unsubscribe),
            Packet::PingReq => self.send_packet(key, &Packet::PingResp),
            Packet::Disconnect(disconnect) => self.handle_disconnect(key, skey, disconnect),
            // [MQTT-3.1.0-2]: a second CONNECT is a protocol violation.
            Packet::Connect(_) => self.close(key, protocol_error("[MQTT-3.1.0-2] second CONNECT")),
            // No authentication method was accepted in CONNECT, so AUTH is a protocol error
            // ([MQTT-4.12.0-1] family).
            Packet::Auth(_) => {
                self.close(key, protocol_error("AUTH without an authentication method"))
            }
            // Packets only a server may send.
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                self.close(key, protocol_error("packet only a server may send"))
            }
        }
    }

    fn handle_publish(&mut self, key: usize, skey: usize, mut publish: Publish) {
        bump(&self.shared.counters[self.id].messages_received);
        // We advertise Topic Alias Maximum 0: any alias is invalid ([MQTT-3.3.2-8]).
        if publish.properties.topic_alias.is_some() {
            self.close(
                key,
                CloseReason::Protocol(
                    ReasonCode::TopicAliasInvalid,
                    "topic alias not allowed".into(),
                ),
            );
            return;
        }
        if let Err(e) = topic::validate_topic_name(publish.topic.as_str()) {
            self.close(
                key,
                CloseReason::Protocol(ReasonCode::TopicNameInvalid, e.to_string()),
            );
            return;
        }
        if topic_levels(publish.topic.as_str()) > self.shared.config.max_topic_levels {
            bump(&self.shared.counters[self.id].topic_levels_exceeded);
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
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            let outcome = match self.sessions.get_mut(skey) {
                Some(s) => s.session.handle_incoming_qos2(packet_id),
                None => return,
            };
            match outcome {
                IncomingQoS2::New => {}
                IncomingQoS2::Duplicate => {
                    // [MQTT-4.3.3-10]: not delivered again; answer PUBREC again.
                    self.send_packet(key, &Packet::PubRec(ack(packet_id, ReasonCode::Success)));
                    return;
                }
                IncomingQoS2::ReceiveMaximumExceeded => {
                    bump(&self.shared.counters[self.id].receive_maximum_exceeded);
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
        publish.dup = false;
        publish.packet_id = 0;
        let (matched, overflowed) =
            self.route_publish(Message::shared(publish, self.now), Some(skey));
        // MQTT 5: 0x10 No matching subscribers is informative, the message was accepted.
        let code = if matched {
            ReasonCode::Success
        } else {
            ReasonCode::NoMatchingSubscribers
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_packet(key, &Packet::PubAck(ack(packet_id, code))),
            QoS::ExactlyOnce => self.send_packet(key, &Packet::PubRec(ack(packet_id, code))),
        }
        if overflowed {
            self.pause(key);
        }
    }

    fn handle_pubrec(&mut self, key: usize, skey: usize, a: Ack) {
        let accepted = !a.reason_code.is_error();
        let known = self
            .sessions
            .get_mut(skey)
            .is_some_and(|s| s.session.handle_pubrec(a.packet_id, accepted));
        if accepted {
            // [MQTT-4.3.3-3]: PUBREL answers PUBREC; 0x92 if we knew no such id (MQTT 5).
            let code = if known {
                ReasonCode::Success
            } else {
                ReasonCode::PacketIdentifierNotFound
            };
            self.send_packet(key, &Packet::PubRel(ack(a.packet_id, code)));
        } else {
            self.pump_queue(key, skey);
        }
    }

    fn handle_subscribe(&mut self, key: usize, skey: usize, subscribe: Subscribe) {
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
        let suback = SubAck {
            packet_id: subscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        let epoch = self.router.epoch_sent();
        if self.router.epoch_acked() >= epoch && self.pending_subacks.is_empty() {
            self.complete_subscribe(key, suback, &retained);
            return;
        }
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        conn.suback_pending = true;
        let connection_id = conn.id;
        self.pending_subacks.push_back(PendingSubAck {
            epoch,
            connection: key,
            connection_id,
            suback,
            retained,
        });
    }

    /// Validates and adds one filter; returns its SUBACK reason code.
    fn add_subscription(
        &mut self,
        skey: usize,
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
        if topic_levels(filter_str) > self.shared.config.max_topic_levels {
            bump(&self.shared.counters[self.id].topic_levels_exceeded);
            return ReasonCode::TopicFilterInvalid;
        }
        if matches!(topic::parse_shared(filter_str), Ok(Some(_))) {
            return ReasonCode::SharedSubscriptionsNotSupported;
        }
        let max = self.shared.config.max_subscriptions_per_client;
        let Some(session) = self.sessions.get_mut(skey) else {
            return ReasonCode::UnspecifiedError;
        };
        let subscriptions = &mut session.session.state.subscriptions;
        let existing = subscriptions.contains_key(&subscription.filter);
        if !existing && subscriptions.len() >= max {
            bump(&self.shared.counters[self.id].subscriptions_refused);
            return ReasonCode::QuotaExceeded;
        }
        let mut options = subscription.options;
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
        if send_retained {
            retained.push((filter, options.qos, identifier));
        }
        granted(options.qos)
    }

    fn handle_unsubscribe(&mut self, key: usize, skey: usize, unsubscribe: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        let mut gone = Vec::new();
        for filter in &unsubscribe.filters {
            let removed = self
                .sessions
                .get_mut(skey)
                .and_then(|s| s.session.state.subscriptions.remove(filter))
                .is_some();
            if removed {
                self.trie
                    .remove_where(filter.as_str(), |s| s.session == skey);
                if self.router.local_removed(filter) {
                    gone.push(MqttString::from(filter.as_str()));
                }
                reason_codes.push(ReasonCode::Success);
            } else {
                reason_codes.push(ReasonCode::NoSubscriptionExisted);
            }
        }
        self.broadcast_route_remove(gone);
        let unsuback = UnsubAck {
            packet_id: unsubscribe.packet_id,
            properties: Properties::default(),
            reason_codes,
        };
        self.send_packet(key, &Packet::UnsubAck(unsuback));
    }

    fn handle_disconnect(&mut self, key: usize, skey: usize, disconnect: Disconnect) {
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
        self.close(key, CloseReason::ClientDisconnect(disconnect.reason_code));
    }
}
