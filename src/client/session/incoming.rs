//! What the session does with each packet from the server once connected (CONNACK included):
//! the QoS 1 and 2 flows in both directions, topic aliases, SUBACK and UNSUBACK.

use super::{make_ack, ClientSession, Event, RESUBSCRIBE_CHUNK};
use super::{Request, SessionState};
use crate::client::ClientError;
use crate::codec::{
    Ack, Auth, ConnAck, MqttString, Packet, Properties, Publish, QoS, ReasonCode, SubAck,
    Subscribe, Subscription, SubscriptionOptions, UnsubAck,
};
use std::time::Duration;

impl ClientSession {
    /// AUTH while connecting: one step of enhanced authentication (section 4.12).
    pub(super) fn handle_auth(&mut self, auth: Auth) -> Result<(), ClientError> {
        let Some(authenticator) = self.enhanced_auth.as_mut() else {
            return Err(ClientError::Protocol(
                "AUTH received, but no authentication method was sent (section 4.12)",
            ));
        };
        if auth.reason_code != ReasonCode::ContinueAuthentication {
            return Err(ClientError::Protocol(
                "AUTH before CONNACK must be Continue authentication (section 4.12)",
            ));
        }
        let method = authenticator.method();
        if auth
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str())
            != Some(method)
        {
            return Err(ClientError::Protocol(
                "[MQTT-4.12.0-5] AUTH with another authentication method",
            ));
        }
        let method = MqttString::from(method);
        let data = authenticator.continue_auth(auth.properties.authentication_data.as_deref())?;
        let mut properties = Properties::new();
        properties.authentication_method = Some(method);
        properties.authentication_data = data;
        self.auth_packet = Some(Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties,
        }));
        Ok(())
    }

    pub(super) fn handle_connack(&mut self, connack: ConnAck) -> Result<(), ClientError> {
        if connack.reason_code != ReasonCode::Success {
            return Err(ClientError::ConnectionRefused(connack.reason_code));
        }
        if let Some(auth) = &mut self.enhanced_auth {
            // The server proves itself in the CONNACK's Authentication Data (SCRAM).
            auth.finish(connack.properties.authentication_data.as_deref())?;
        }
        if connack.session_present && self.sent_clean_start {
            // [MQTT-3.2.2-4]: no session state here, yet the server says it has one.
            return Err(ClientError::Protocol(
                "[MQTT-3.2.2-4] session present after a clean start",
            ));
        }
        self.apply_server_limits(&connack.properties)?;
        self.state = SessionState::Connected;
        self.stats.connects += 1;
        self.connect_sent = None;
        if !connack.session_present {
            self.discard_session_state();
        }
        self.requeue_requests();
        if !connack.session_present && self.reconnecting && self.options.resubscribe {
            self.resubscribe();
        }
        let event = if self.reconnecting {
            Event::Reconnected(connack)
        } else {
            Event::Connected(connack)
        };
        self.reconnecting = false;
        self.events.push_back(event);
        self.flush_outgoing();
        Ok(())
    }

    pub(super) fn apply_server_limits(
        &mut self,
        properties: &Properties,
    ) -> Result<(), ClientError> {
        if !self.version.is_v5() {
            self.server_receive_maximum = u16::MAX;
            self.server_max_packet_size = None;
            self.server_maximum_qos = QoS::ExactlyOnce;
            self.server_retain_available = true;
            self.server_topic_alias_maximum = 0;
            return Ok(());
        }
        if properties.receive_maximum == Some(0) {
            return Err(ClientError::Protocol(
                "Receive Maximum of 0 is a protocol error (3.2.2.3.3)",
            ));
        }
        if properties.maximum_packet_size == Some(0) {
            return Err(ClientError::Protocol(
                "Maximum Packet Size of 0 is a protocol error (3.2.2.3.6)",
            ));
        }
        self.server_receive_maximum = properties.receive_maximum.unwrap_or(u16::MAX);
        self.server_max_packet_size = properties.maximum_packet_size;
        self.server_maximum_qos = match properties.maximum_qos {
            Some(0) => QoS::AtMostOnce,
            Some(1) => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        self.server_retain_available = properties.retain_available != Some(0);
        self.server_topic_alias_maximum = properties.topic_alias_maximum.unwrap_or(0);
        if let Some(assigned) = &properties.assigned_client_identifier {
            // [MQTT-3.2.2-16]: the assigned id names the session on later connections.
            self.client_id = assigned.as_str().to_owned();
        }
        if let Some(server_keep_alive) = properties.server_keep_alive {
            // [MQTT-3.2.2-21]: the server's keep-alive replaces ours.
            self.keep_alive = Duration::from_secs(u64::from(server_keep_alive));
        }
        Ok(())
    }

    /// Session Present = 0: the server has no state for us, so ours is discarded
    /// ([MQTT-3.2.2-5]). Messages not yet acknowledged are republished as new messages (DUP = 0);
    /// QoS 2 messages already acknowledged with PUBREC were received by the server and count as
    /// complete.
    pub(super) fn discard_session_state(&mut self) {
        self.incoming_qos2.clear();
        let released: Vec<u16> = self
            .outgoing
            .iter()
            .filter(|(_, entry)| entry.released)
            .map(|(&id, _)| id)
            .collect();
        for packet_id in released {
            self.outgoing.remove(&packet_id);
            self.events.push_back(Event::PubComp(packet_id));
        }
        self.unsent.retain(|id| self.outgoing.contains_key(id));
        for entry in self.outgoing.values_mut() {
            entry.ever_sent = false;
        }
    }

    pub(super) fn requeue_requests(&mut self) {
        let mut order: Vec<(u64, u16)> = self
            .requests
            .iter()
            .map(|(&id, request)| (request.seq, id))
            .collect();
        order.sort_unstable();
        for (_, packet_id) in order {
            if let Some(request) = self.requests.get(&packet_id) {
                self.tx.push_back(request.packet.clone());
            }
        }
    }

    pub(super) fn resubscribe(&mut self) {
        let subscriptions = self.subscriptions.clone();
        for chunk in subscriptions.chunks(RESUBSCRIBE_CHUNK) {
            let Some(packet_id) = self.allocate_packet_id() else {
                return;
            };
            let packet = Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                subscriptions: chunk
                    .iter()
                    .map(|(filter, options)| Subscription {
                        filter: filter.clone(),
                        options: *options,
                    })
                    .collect(),
            });
            self.tx.push_back(packet.clone());
            let seq = self.next_seq();
            self.requests.insert(packet_id, Request { packet, seq });
            self.stats.resubscribes += 1;
        }
    }

    pub(super) fn handle_publish(&mut self, mut publish: Publish) -> Result<(), ClientError> {
        self.resolve_topic_alias(&mut publish)?;
        self.stats.publishes_received += 1;
        match publish.qos {
            QoS::AtMostOnce => self.events.push_back(Event::Publish(publish)),
            QoS::AtLeastOnce => {
                self.tx.push_back(Packet::PubAck(make_ack(
                    publish.packet_id,
                    ReasonCode::Success,
                )));
                self.events.push_back(Event::Publish(publish));
            }
            QoS::ExactlyOnce => {
                let packet_id = publish.packet_id;
                if self.incoming_qos2.contains(&packet_id) {
                    // Method B of section 4.3.3: delivered once, until PUBREL frees the id.
                    self.stats.duplicates_dropped += 1;
                } else {
                    let limit = if self.version.is_v5() {
                        usize::from(self.options.receive_maximum.max(1))
                    } else {
                        usize::from(u16::MAX)
                    };
                    if self.incoming_qos2.len() >= limit {
                        return Err(ClientError::Protocol(
                            "[MQTT-3.3.4-9] the server exceeded our Receive Maximum",
                        ));
                    }
                    self.incoming_qos2.insert(packet_id);
                    self.events.push_back(Event::Publish(publish));
                }
                self.tx
                    .push_back(Packet::PubRec(make_ack(packet_id, ReasonCode::Success)));
            }
        }
        Ok(())
    }

    pub(super) fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), ClientError> {
        let Some(alias) = publish.properties.topic_alias else {
            if publish.topic.is_empty() {
                return Err(ClientError::Protocol(
                    "[MQTT-4.7.3-1] PUBLISH without topic name or topic alias",
                ));
            }
            return Ok(());
        };
        let maximum = self.options.properties.topic_alias_maximum.unwrap_or(0);
        if alias == 0 || alias > maximum {
            // [MQTT-3.3.2-8], [MQTT-3.3.2-11]
            return Err(ClientError::Protocol(
                "[MQTT-3.3.2-11] topic alias above our Topic Alias Maximum",
            ));
        }
        if publish.topic.is_empty() {
            match self.incoming_aliases.get(&alias) {
                Some(topic) => publish.topic = topic.clone(),
                None => {
                    return Err(ClientError::Protocol(
                        "topic alias not set on this connection (3.3.2.3.4)",
                    ))
                }
            }
        } else {
            // Bounded by `maximum`: aliases are 1..=maximum.
            self.incoming_aliases.insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    pub(super) fn complete_outgoing(&mut self, packet_id: u16) {
        if let Some(entry) = self.outgoing.remove(&packet_id) {
            if entry.on_wire {
                self.on_wire = self.on_wire.saturating_sub(1);
            }
        }
        self.flush_outgoing();
    }

    pub(super) fn handle_puback(&mut self, ack: Ack) {
        let known = self
            .outgoing
            .get(&ack.packet_id)
            .is_some_and(|entry| entry.on_wire && entry.publish.qos == QoS::AtLeastOnce);
        if !known {
            self.stats.unexpected_acks += 1;
            return;
        }
        if ack.reason_code.is_error() {
            self.stats.publishes_rejected += 1;
        }
        self.complete_outgoing(ack.packet_id);
        self.events.push_back(Event::PubAck(ack.packet_id));
    }

    pub(super) fn handle_pubrec(&mut self, ack: Ack) {
        let packet_id = ack.packet_id;
        let Some(entry) = self.outgoing.get_mut(&packet_id) else {
            self.stats.unexpected_acks += 1;
            return;
        };
        if !entry.on_wire || entry.publish.qos != QoS::ExactlyOnce {
            self.stats.unexpected_acks += 1;
            return;
        }
        if ack.reason_code.is_error() {
            // Section 4.3.3: a PUBREC with an error code ends the flow; no PUBREL.
            self.stats.publishes_rejected += 1;
            self.complete_outgoing(packet_id);
            self.events.push_back(Event::PubComp(packet_id));
            return;
        }
        // A repeated PUBREC (after a resend) is answered with PUBREL again.
        entry.released = true;
        self.tx
            .push_back(Packet::PubRel(make_ack(packet_id, ReasonCode::Success)));
    }

    pub(super) fn handle_pubrel(&mut self, ack: Ack) {
        let reason_code = if self.incoming_qos2.remove(&ack.packet_id) {
            ReasonCode::Success
        } else {
            // Already released (a repeated PUBREL): complete it anyway; MQTT 5 says why.
            self.stats.unexpected_acks += 1;
            ReasonCode::PacketIdentifierNotFound
        };
        let reason_code = if self.version.is_v5() {
            reason_code
        } else {
            ReasonCode::Success
        };
        self.tx
            .push_back(Packet::PubComp(make_ack(ack.packet_id, reason_code)));
    }

    pub(super) fn handle_pubcomp(&mut self, ack: Ack) {
        let known = self
            .outgoing
            .get(&ack.packet_id)
            .is_some_and(|entry| entry.on_wire && entry.released);
        if !known {
            self.stats.unexpected_acks += 1;
            return;
        }
        self.complete_outgoing(ack.packet_id);
        self.events.push_back(Event::PubComp(ack.packet_id));
    }

    pub(super) fn handle_suback(&mut self, suback: SubAck) -> Result<(), ClientError> {
        let Some(request) = self.requests.get(&suback.packet_id) else {
            self.stats.unexpected_acks += 1;
            return Ok(());
        };
        let Packet::Subscribe(subscribe) = &request.packet else {
            return Err(ClientError::Protocol(
                "SUBACK for the packet id of an UNSUBSCRIBE",
            ));
        };
        if suback.reason_codes.len() != subscribe.subscriptions.len() {
            return Err(ClientError::Protocol(
                "[MQTT-3.8.4-6] SUBACK must carry one reason code per topic filter",
            ));
        }
        let granted: Vec<(MqttString, SubscriptionOptions)> = subscribe
            .subscriptions
            .iter()
            .zip(&suback.reason_codes)
            .filter(|(_, code)| !code.is_error())
            .map(|(sub, code)| {
                let mut options = sub.options;
                options.qos = QoS::from_u8(code.as_u8()).unwrap_or(options.qos);
                (sub.filter.clone(), options)
            })
            .collect();
        self.requests.remove(&suback.packet_id);
        for (filter, options) in granted {
            match self.subscriptions.iter_mut().find(|(f, _)| *f == filter) {
                Some(existing) => existing.1 = options,
                None => self.subscriptions.push((filter, options)),
            }
        }
        self.events.push_back(Event::SubAck(suback));
        Ok(())
    }

    pub(super) fn handle_unsuback(&mut self, unsuback: UnsubAck) -> Result<(), ClientError> {
        let Some(request) = self.requests.get(&unsuback.packet_id) else {
            self.stats.unexpected_acks += 1;
            return Ok(());
        };
        let Packet::Unsubscribe(unsubscribe) = &request.packet else {
            return Err(ClientError::Protocol(
                "UNSUBACK for the packet id of a SUBSCRIBE",
            ));
        };
        if self.version.is_v5() && unsuback.reason_codes.len() != unsubscribe.filters.len() {
            return Err(ClientError::Protocol(
                "[MQTT-3.11.3-1] UNSUBACK must carry one reason code per topic filter",
            ));
        }
        let filters = unsubscribe.filters.clone();
        self.requests.remove(&unsuback.packet_id);
        self.subscriptions.retain(|(f, _)| !filters.contains(f));
        self.events.push_back(Event::UnsubAck(unsuback));
        Ok(())
    }
}
