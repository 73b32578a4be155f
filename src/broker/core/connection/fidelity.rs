//! Protocol-fidelity rules (issue 16) that the rest of the broker calls through small hooks: the
//! packet-size limit in force, a minimal CONNACK, fitting what the server sends into the client's
//! Maximum Packet Size, `$`-topic publishes, and escaping client-supplied text in log lines.

use crate::broker::core::config::Config;
use crate::codec::{Packet, Properties, ProtocolVersion};

/// The largest packet MQTT can carry: a 268,435,455-byte remaining length plus a five-byte
/// fixed header (2.1.4). A configured limit at or above it is no limit.
pub const PROTOCOL_MAX_PACKET_SIZE: u32 = 268_435_460;

/// The limit on packets read from clients: `max_packet_size`, 0 meaning the protocol's own.
pub fn inbound_packet_limit(config: &Config) -> u32 {
    match config.max_packet_size {
        0 => u32::MAX,
        limit => limit,
    }
}

/// The Maximum Packet Size to advertise in CONNACK: only a limit below the protocol maximum,
/// since an absent property already means "no limit" (3.2.2.3.6).
pub fn advertised_max_packet_size(config: &Config) -> Option<u32> {
    match config.max_packet_size {
        0 => None,
        limit if limit >= PROTOCOL_MAX_PACKET_SIZE => None,
        limit => Some(limit),
    }
}

/// Removes what may be left out of `packet` so that it fits the client's Maximum Packet Size
/// `max` ([MQTT-3.1.2-24]); returns whether it fits now. First the Reason String and User
/// Properties, which the server "MUST NOT send ... if it would increase the size of the packet
/// beyond the Maximum Packet Size" ([MQTT-3.2.2-19], [MQTT-3.2.2-20] and the same rule on every
/// packet that carries them); then, in a CONNACK, Response Information (optional, 3.1.2.11.6)
/// and Topic Alias Maximum (absent means 0: the client sends no aliases, which is safe). What
/// remains is needed for the client to keep to the server's limits (Receive Maximum, Maximum
/// Packet Size, Maximum QoS, Retain Available, Server Keep Alive) or is required (Assigned Client
/// Identifier [MQTT-3.2.2-16], authentication), so a packet that still does not fit cannot be sent.
pub fn fit_to_client(packet: &mut Packet, version: ProtocolVersion, max: u32) -> bool {
    let fits = |p: &Packet| p.encoded_len(version) <= max as usize;
    if fits(packet) {
        return true;
    }
    if let Some(properties) = properties_mut(packet) {
        if !properties.is_empty() {
            properties.reason_string = None;
            properties.user_properties.clear();
        }
    }
    if fits(packet) {
        return true;
    }
    if let Packet::ConnAck(connack) = packet {
        if !connack.properties.is_empty() {
            connack.properties.response_information = None;
            connack.properties.topic_alias_maximum = None;
        }
    }
    fits(packet)
}

fn properties_mut(packet: &mut Packet) -> Option<&mut Properties> {
    match packet {
        Packet::ConnAck(p) => Some(&mut p.properties),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            Some(&mut a.properties)
        }
        Packet::SubAck(p) => Some(&mut p.properties),
        Packet::UnsubAck(p) => Some(&mut p.properties),
        Packet::Disconnect(p) => Some(&mut p.properties),
        Packet::Auth(p) => Some(&mut p.properties),
        _ => None,
    }
}

impl crate::broker::core::shard::ShardCore {
    /// Sends `packet`, too large for the client's Maximum Packet Size as it is, with what may be
    /// left out removed ([`fit_to_client`]). If it still does not fit, the connection is closed
    /// without it, as Mosquitto does: [MQTT-3.1.2-24] forbids sending it, and [MQTT-3.1.2-25]
    /// ("discard it ... and behave as if it had completed sending") is for Application Messages
    /// only; an acknowledgement the client never gets would leave it waiting for ever. A CONNACK
    /// that cannot be sent leaves the client unconnected, so its will is dropped, not published.
    pub(crate) fn send_fitted(
        &mut self,
        key: crate::broker::core::keys::ConnKey,
        mut packet: Packet,
    ) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        let (version, max) = (conn.version, conn.client_max_packet_size);
        if fit_to_client(&mut packet, version, max) {
            self.queue_bounded(key, &packet, version);
            return;
        }
        crate::broker::core::stats::bump(&self.global.counters[self.id].dropped_client_packet_size);
        match packet {
            // [MQTT-3.1.2-25]: an Application Message is discarded as if it had been sent
            // (fanout.rs does this for every delivery; kept here should one come this way).
            Packet::Publish(_) => return,
            Packet::ConnAck(_) => conn.will = None,
            _ => {}
        }
        let size_bytes = packet.encoded_len(version);
        self.close(
            key,
            crate::broker::core::shard::CloseReason::ClientMaxPacketSize { size_bytes, max },
        );
    }
}

/// Whether a client may not publish to `topic`: `$SYS...` belongs to the broker, and a `$share...`
/// name is a shared-subscription filter syntax, never a topic anyone subscribes to by name.
/// Mosquitto 2.0 denies both the same way (`acl__check_dollar` in `security_default.c`: a prefix
/// compare on "$SYS" and "$share", write access denied), except `$SYS/broker/connection/+/state`,
/// which it keeps writable for its bridges; shardmq has no bridges and keeps all of `$SYS`.
/// Other `$` topics are ordinary topic names (MQTT 5 4.7.2 only keeps them from matching
/// filters that start with a wildcard).
pub fn is_reserved_publish_topic(topic: &[u8]) -> bool {
    topic.starts_with(b"$SYS") || topic.starts_with(b"$share")
}

impl crate::broker::core::shard::ShardCore {
    /// Drops a PUBLISH to a reserved topic name ([`is_reserved_publish_topic`]) the way
    /// Mosquitto 2.0 answers a denied publish: QoS 0 silently; QoS 1 PUBACK and QoS 2 PUBREC
    /// with 0x87 Not authorized for MQTT 5 (an error PUBREC ends the QoS 2 exchange, 4.3.3) and a
    /// plain PUBACK/PUBREC for 3.x, which has no way to say no; the connection stays open.
    pub(crate) fn drop_reserved_publish(
        &mut self,
        key: crate::broker::core::keys::ConnKey,
        publish: &crate::codec::Publish,
    ) {
        use crate::codec::{Ack, QoS, ReasonCode};
        crate::broker::core::stats::bump(
            &self.global.counters[self.id].publishes_to_reserved_topics,
        );
        log::debug!(
            "dropped PUBLISH to a reserved topic shard={} topic={}",
            self.id,
            crate::broker::log_escape::Escaped(publish.topic.as_str())
        );
        let ack = Ack {
            packet_id: publish.packet_id,
            reason_code: ReasonCode::NotAuthorized,
            properties: Properties::default(),
        };
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_packet(key, &Packet::PubAck(ack)),
            QoS::ExactlyOnce => self.send_packet(key, &Packet::PubRec(ack)),
        }
    }
}

// Wills on takeover and reconnect (issue 16): decided by the spec, implemented by the ordinary
// close path (`close` -> `detach_session`, `end_session`, and `finish_connect` cancelling a
// pending will), pinned by tests/it/protocol_fidelity/wills.rs.
//
// MQTT 5: a new connection for a connected client id closes the old one ([MQTT-3.1.4-3]) "If the
// existing Client has a Will Message, that Will Message is published as described in section
// 3.1.2.5": after the connection closes and "either the Will Delay Interval has elapsed or the
// Session ends, unless ... a new Network Connection for the ClientID is opened before the Will
// Delay Interval has elapsed" ([MQTT-3.1.2-8]); "If a new Network Connection to this Session is
// made before the Will Delay Interval has passed, the Server MUST NOT send the Will Message"
// ([MQTT-3.1.3-9]). The spec's own non-normative comments settle the takeover cases (3.1.3.2.2
// and 3.1.4): "the Will Message for the existing connection is sent unless the new connection
// specifies Clean Start of 0 and the Will Delay is greater than zero. If the Will Delay is 0 the
// Will Message is sent at the close of the existing Network Connection, and if Clean Start is 1
// the Will Message is sent because the Session ends." So, for the old connection's will:
//
// | old session / will        | new Clean Start 0         | new Clean Start 1       |
// |---------------------------|---------------------------|-------------------------|
// | Session Expiry 0          | published (session ends)  | published               |
// | expiry > 0, Will Delay 0  | published (conn. closed)  | published               |
// | expiry > 0, Will Delay > 0| not published (resumed)   | published (session ends)|
//
// A client that reconnects inside its Will Delay Interval (old connection already gone) is the
// last row: Clean Start 1 ends the session and the pending will goes out at once (the new
// connection is not "to this Session", [MQTT-3.1.2-4] discards it); Clean Start 0 cancels it.
//
// MQTT 3.1.1 has no Will Delay and ties the will to the Network Connection: it "MUST be published
// when the Network Connection is subsequently closed unless the Will Message has been deleted by
// the Server on receipt of a DISCONNECT Packet" ([MQTT-3.1.2-8] of 3.1.1), and a takeover
// disconnects the existing client ([MQTT-3.1.4-2] of 3.1.1) without one: always published.
//
// Mosquitto 2.0 differs in one case (`connect__on_authorised`): with Session Expiry > 0 and Clean
// Start 0 it discards the will even with Will Delay 0 (and so for 3.x Clean Session 0). shardmq
// follows the spec's explicit comment instead.

impl crate::broker::core::shard::ShardCore {
    /// Whether this core broadcast a new route since the last call (issue 16, subscribe
    /// visibility). The runtime asks after each input it hands over and, when it did, flags and
    /// wakes every peer at once (`Inbox::wake_for_routes`) instead of at the end of the turn;
    /// a peer checks its flag before each read it hands to its core and applies its inbox
    /// first. So a PUBLISH that a peer reads after this shard processed the SUBSCRIBE sees the
    /// route, with no lock on the publish path: one atomic load per socket read.
    ///
    /// What remains: a PUBLISH read by the peer while this shard is still between reading the
    /// SUBSCRIBE and pushing the route (decoding it and updating its trie, microseconds), or
    /// read in the same socket read as earlier bytes already being processed; and a peer whose
    /// channel from this shard is full (the route then waits in the overflow queue). MQTT
    /// orders nothing across connections, so these are allowed; `tests/protocol_fidelity/
    /// visibility.rs` measures the rate.
    pub fn take_routes_sent(&mut self) -> bool {
        self.mesh.take_routes_sent()
    }
}
