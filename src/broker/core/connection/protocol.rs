//! Protocol decisions that need no shard state: CONNECT validation, the CONNACK to send, topic
//! level counting, and encoding a fanned-out PUBLISH once per wire layout.

use crate::broker::core::config::Config;
use crate::broker::core::connection::WillMessage;
use crate::broker::core::sessions::session::MessageRef;
use crate::codec::{
    ConnAck, Connect, EncodeError, MqttString, Packet, Properties, ProtocolVersion, Publish,
    PublishFlags, QoS, ReasonCode,
};
use bytes::{Bytes, BytesMut};

/// A CONNECT the broker accepts, with what was negotiated.
#[derive(Debug)]
pub struct AcceptedConnect {
    pub client_id: MqttString,
    /// The id was assigned by the broker (MQTT 5 gets it back as Assigned Client Identifier).
    pub assigned_client_id: bool,
    pub clean_start: bool,
    /// Keep-alive in force, seconds; 0 = none.
    pub keep_alive_secs: u16,
    /// Set when the broker changed the keep-alive (MQTT 5 Server Keep Alive).
    pub server_keep_alive: Option<u16>,
    /// 0 = session ends with the connection; u32::MAX = never expires.
    pub session_expiry_interval_secs: u32,
    /// The client's Receive Maximum (65,535 when absent).
    pub client_receive_maximum: u16,
    /// The client's Maximum Packet Size (u32::MAX when absent).
    pub client_max_packet_size: u32,
    /// The client's Topic Alias Maximum (0 when absent: send no aliases, [MQTT-3.3.2-11]).
    pub client_topic_alias_maximum: u16,
    /// False when an MQTT 5 client sent Request Problem Information 0: no Reason String on
    /// packets other than PUBLISH, CONNACK and DISCONNECT ([MQTT-3.1.2-29]).
    pub request_problem_information: bool,
    /// Response Information for CONNACK, when requested and configured.
    pub response_information: Option<MqttString>,
    /// The Authentication Method of a successful enhanced authentication, for CONNACK.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data for CONNACK (SCRAM's server-final message).
    pub authentication_data: Option<Bytes>,
    pub will: Option<Box<WillMessage>>,
    /// Access control (issue 13): the client's identity and rules, set by authentication, moved
    /// into its session by `finish_connect`.
    pub access: Option<Box<crate::auth::SessionAccess>>,
}

/// Validates a CONNECT (the codec already checked its encoding). `assign_id` makes a client id
/// for an empty one. `Err` carries the CONNACK reason code to refuse with.
pub fn validate_connect(
    connect: &Connect,
    config: &Config,
    assign_id: impl FnOnce() -> MqttString,
) -> Result<AcceptedConnect, ReasonCode> {
    let version = connect.protocol_version;
    // 3.1.2.11.10: "It is a Protocol Error to include Authentication Data if there is no
    // Authentication Method" (checked here: the codec decodes properties one by one).
    if connect.properties.authentication_data.is_some()
        && connect.properties.authentication_method.is_none()
    {
        return Err(ReasonCode::ProtocolError);
    }
    // What the broker keeps from CONNECT owns its bytes: a slice would pin the whole read
    // allocation it came from for the connection's lifetime (an idle connection must hold no
    // read buffer).
    let mut client_id = MqttString::from(connect.client_id.as_str());
    let mut assigned_client_id = false;
    match version {
        // MQTT 3.1: the client id is 1 to 23 characters (3.1 spec, CONNECT payload).
        ProtocolVersion::V3_1 => {
            if client_id.is_empty() || client_id.as_str().chars().count() > 23 {
                return Err(ReasonCode::ClientIdentifierNotValid);
            }
        }
        ProtocolVersion::V3_1_1 => {
            if client_id.is_empty() {
                // [MQTT-3.1.3-8]: an empty id needs Clean Session 1, else return code 0x02.
                if !connect.clean_start {
                    return Err(ReasonCode::ClientIdentifierNotValid);
                }
                // [MQTT-3.1.3-6]: the server assigns a unique id.
                client_id = assign_id();
                assigned_client_id = true;
            }
        }
        ProtocolVersion::V5 => {
            if client_id.is_empty() {
                // [MQTT-3.1.3-6], [MQTT-3.2.2-16]: assign and return it in CONNACK.
                client_id = assign_id();
                assigned_client_id = true;
            }
            // The Authentication Method is looked up after validation (`authn.rs`): an unknown
            // one gets 0x8C there ([MQTT-4.12.0-1]).
        }
    }

    let mut max_keep_alive = config.max_keep_alive_secs;
    let mut keep_alive_secs = connect.keep_alive_secs;
    let mut server_keep_alive = None;
    if version.is_v5() {
        // The v5-only cap (`server_keep_alive_secs`) applies on top of the common limit.
        if let Some(cap) = config.server_keep_alive_secs {
            max_keep_alive = max_keep_alive.min(cap);
        }
        // [MQTT-3.2.2-21]: the client must use the Server Keep Alive we return.
        if keep_alive_secs > max_keep_alive || (keep_alive_secs == 0 && max_keep_alive < u16::MAX) {
            keep_alive_secs = max_keep_alive;
            server_keep_alive = Some(max_keep_alive);
        }
    } else if keep_alive_secs > max_keep_alive {
        // MQTT 3.x cannot be told another keep-alive; Mosquitto refuses with return code 2.
        return Err(ReasonCode::ClientIdentifierNotValid);
    }

    let session_expiry_interval_secs = if version.is_v5() {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        u32::MAX
    };

    let will = match &connect.will {
        Some(will) => {
            if topic_levels(will.topic.as_str()) > config.max_topic_levels {
                return Err(ReasonCode::TopicNameInvalid);
            }
            // [MQTT-3.2.2-12]: a will QoS above our Maximum QoS refuses the connection.
            if will.qos as u8 > config.max_qos {
                return Err(ReasonCode::QoSNotSupported);
            }
            // [MQTT-3.2.2-13]: a retained will when retain is not available.
            if will.retain && !config.retain_available {
                return Err(ReasonCode::RetainNotSupported);
            }
            let mut properties = will.properties.clone();
            let delay_secs = properties.will_delay_interval.take().unwrap_or(0);
            Some(Box::new(WillMessage {
                message: Publish {
                    dup: false,
                    qos: will.qos,
                    retain: will.retain,
                    topic: MqttString::from(will.topic.as_str()),
                    packet_id: 0,
                    properties,
                    payload: Bytes::copy_from_slice(&will.payload),
                },
                delay_secs: if version.is_v5() { delay_secs } else { 0 },
            }))
        }
        None => None,
    };

    let response_information = match &config.response_information {
        // Spec 3.1.2.11.7: only when the client asked (Request Response Information 1).
        Some(prefix) if connect.properties.request_response_information == Some(1) => {
            response_information(prefix, &client_id)
        }
        _ => None,
    };
    Ok(AcceptedConnect {
        client_id,
        assigned_client_id,
        clean_start: connect.clean_start,
        keep_alive_secs,
        server_keep_alive,
        session_expiry_interval_secs,
        client_receive_maximum: connect
            .properties
            .receive_maximum
            .unwrap_or(u16::MAX)
            .max(1),
        client_max_packet_size: connect
            .properties
            .maximum_packet_size
            .unwrap_or(u32::MAX)
            .max(1),
        client_topic_alias_maximum: connect.properties.topic_alias_maximum.unwrap_or(0),
        authentication_method: None,
        authentication_data: None,
        response_information,
        request_problem_information: connect.properties.request_problem_information != Some(0),
        will,
        access: None,
    })
}

/// Response Information `{prefix}{client id}`, left out when the two are over the 65,535 bytes
/// an MQTT string holds (a client id may be 65,535 bytes itself): sending it is optional
/// (spec 3.2.2.3.15), and cutting it could split a UTF-8 character and would not be the
/// client's topic base anyway.
fn response_information(prefix: &str, client_id: &MqttString) -> Option<MqttString> {
    if prefix.len() + client_id.len() > crate::codec::FIELD_LEN_MAX {
        log::debug!(
            "Response Information not sent: prefix and a {}-byte client id are over 65,535 bytes",
            client_id.len()
        );
        return None;
    }
    Some(MqttString::from(format!("{prefix}{}", client_id.as_str())))
}

/// The CONNACK for an accepted CONNECT.
pub fn connack_accepted(
    accepted: &AcceptedConnect,
    session_present: bool,
    version: ProtocolVersion,
    config: &Config,
) -> Packet {
    let mut properties = Properties::default();
    if version.is_v5() {
        // A minimal CONNACK (issue 16): a property only where its value differs from what the
        // client assumes without it (3.2.2.3): Receive Maximum 65,535, no Maximum Packet Size
        // limit, Retain Available 1, Maximum QoS 2, Topic Alias Maximum 0, and Wildcard,
        // Subscription Identifier and Shared Subscription Available 1 (all supported here). With
        // Mosquitto's limits (Receive Maximum 20, Topic Alias Maximum 10, no packet limit) the
        // bytes are Mosquitto 2.0's.
        if config.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(config.receive_maximum);
        }
        properties.maximum_packet_size =
            crate::broker::core::connection::fidelity::advertised_max_packet_size(config);
        if !config.retain_available {
            properties.retain_available = Some(0);
        }
        // [MQTT-3.2.2-9]: a server without QoS 1 or 2 says so (absent means 2).
        if config.max_qos < 2 {
            properties.maximum_qos = Some(config.max_qos);
        }
        if config.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(config.topic_alias_maximum);
        }
        properties.server_keep_alive = accepted.server_keep_alive;
        properties.response_information = accepted.response_information.clone();
        properties.authentication_method = accepted.authentication_method.clone();
        properties.authentication_data = accepted.authentication_data.clone();
        if accepted.assigned_client_id {
            properties.assigned_client_identifier = Some(accepted.client_id.clone());
        }
    }
    Packet::ConnAck(ConnAck {
        session_present,
        reason_code: ReasonCode::Success,
        properties,
    })
}

/// The CONNACK refusing a CONNECT ([MQTT-3.2.2-4]: session present 0 with an error).
pub fn connack_refused(reason_code: ReasonCode) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present: false,
        reason_code,
        properties: Properties::default(),
    })
}

/// Whether `buf` starts with a CONNECT whose protocol level is 5 (looked at before decoding, so
/// that a malformed MQTT 5 CONNECT can be answered with a CONNACK reason code).
pub fn is_v5_connect(buf: &[u8]) -> bool {
    if buf.first().map(|b| b >> 4) != Some(1) {
        return false;
    }
    // Skip the remaining-length variable byte integer (at most four bytes).
    let mut offset = 1;
    while offset < 5 && buf.get(offset).is_some_and(|b| b & 0x80 != 0) {
        offset += 1;
    }
    offset += 1;
    let Some(name_len) = buf.get(offset..offset + 2) else {
        return false;
    };
    let name_len = usize::from(u16::from_be_bytes([name_len[0], name_len[1]]));
    buf.get(offset + 2 + name_len) == Some(&5)
}

/// The number of levels of a topic name or filter.
pub fn topic_levels(topic: impl AsRef<[u8]>) -> usize {
    topic.as_ref().iter().filter(|&&b| b == b'/').count() + 1
}

/// The SUBACK code for a granted QoS.
pub fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GRANTED_QOS0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
    }
}

/// One encoded wire layout of a PUBLISH. For QoS 1/2 the packet id sits between `head` and
/// `tail`; for QoS 0 `head` is the whole packet and `tail` is empty.
#[derive(Clone, Debug)]
pub struct Layout {
    pub head: Bytes,
    pub tail: Bytes,
}

impl Layout {
    /// The wire size with the packet id.
    pub fn len(&self, qos: QoS) -> usize {
        self.head.len() + self.tail.len() + if qos == QoS::AtMostOnce { 0 } else { 2 }
    }
}

/// The layouts of one message, each encoded at most once: indexed by (MQTT 5, QoS, retain).
#[derive(Default)]
pub struct LayoutCache {
    slots: [Option<Layout>; 12],
    /// Bit `i` is set while `slots[i]` holds a layout, so `clear` touches only those (one,
    /// usually).
    filled: u16,
}

impl LayoutCache {
    /// Forgets the layouts of the previous message.
    pub fn clear(&mut self) {
        while self.filled != 0 {
            let index = self.filled.trailing_zeros() as usize;
            self.filled &= self.filled - 1;
            self.slots[index] = None;
        }
        debug_assert!(self.slots.iter().all(Option::is_none));
    }

    /// The layout for (`version`, `qos`, `retain`), encoding it into `scratch` the first time;
    /// `Err` when the message cannot be encoded for this layout (over a wire-format limit).
    pub fn get(
        &mut self,
        message: &MessageRef,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
        scratch: &mut BytesMut,
    ) -> Result<&Layout, EncodeError> {
        let index = usize::from(version.is_v5()) * 6 + (qos as usize) * 2 + usize::from(retain);
        let slot = &mut self.slots[index];
        let layout = match slot.take() {
            Some(layout) => layout,
            None => match forwardable_frame(message, version, qos, retain) {
                Some(frame) => split_layout(frame.clone(), qos, message.topic.len()),
                None => {
                    let options = LayoutOptions {
                        qos,
                        retain,
                        dup: false,
                        message_expiry_interval: None,
                        topic_alias: None,
                    };
                    encode_layout(message, version, options, scratch)?
                }
            },
        };
        self.filled |= 1 << index;
        Ok(slot.insert(layout))
    }
}

/// Issue 17: the layout of a delivery with default options (no DUP, no Topic Alias, expiry as
/// received) cut from the publisher's frame, when that frame is forwardable as it is (see
/// `forwardable_frame`): queued messages go out without being encoded again.
pub fn forwarded_layout(
    message: &MessageRef,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Option<Layout> {
    let frame = forwardable_frame(message, version, qos, retain)?;
    Some(split_layout(frame.clone(), qos, message.topic.len()))
}

/// A PUBLISH as what is written around the packet id: an owned [`Layout`], or parts borrowed
/// from the publisher's frame ([`forwarded_parts`]).
#[derive(Clone, Copy, Debug)]
pub enum Wire<'a> {
    Layout(&'a Layout),
    Parts { head: &'a [u8], tail: &'a [u8] },
}

impl Wire<'_> {
    /// The wire size with the packet id.
    pub fn len(&self, qos: QoS) -> usize {
        match self {
            Wire::Layout(layout) => layout.len(qos),
            Wire::Parts { head, tail } => {
                head.len() + tail.len() + if qos == QoS::AtMostOnce { 0 } else { 2 }
            }
        }
    }
}

/// Issue 17: [`forwarded_layout`] borrowed, for a frame small enough to be copied into the
/// outgoing buffer anyway (at most `COPY_THRESHOLD_BYTES`): the head and the tail around the
/// packet id (for QoS 0 the whole frame and nothing), with no `Bytes` handles made per delivery.
pub fn forwarded_parts(
    message: &MessageRef,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Option<(&[u8], &[u8])> {
    let frame = forwardable_frame(message, version, qos, retain)?;
    if frame.len() > crate::broker::core::connection::outgoing::COPY_THRESHOLD_BYTES {
        return None;
    }
    if qos == QoS::AtMostOnce {
        return Some((frame, &[]));
    }
    let offset = packet_id_offset(frame, message.topic.len());
    Some((&frame[..offset], &frame[offset + 2..]))
}

/// The publisher's frame, when it is exactly what [`encode_layout`] would write for this
/// delivery with default options: the same protocol family (3.x or 5, whose PUBLISH layouts
/// differ only by the property list) and the same first byte, that is the same QoS and retain
/// flag and no DUP flag. Topic, properties and payload are those of the message, which was
/// not changed since it was received (else it has no frame); the packet id, if any, is the
/// publisher's and is cut out of the layout.
fn forwardable_frame(
    message: &MessageRef,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Option<&Bytes> {
    let frame = message.frame.as_ref()?;
    let first_byte = PublishFlags {
        dup: false,
        qos,
        retain,
        packet_id: 0,
    }
    .first_byte();
    (frame.v5 == version.is_v5() && frame.bytes.first() == Some(&first_byte))
        .then_some(&frame.bytes)
}

/// How one delivery of a PUBLISH is laid out.
#[derive(Clone, Copy, Debug)]
pub struct LayoutOptions {
    pub qos: QoS,
    pub retain: bool,
    /// Set only for re-sends ([MQTT-3.3.1-1]); re-sends are rare and not cached.
    pub dup: bool,
    /// Replaces the Message Expiry Interval (the time left, [MQTT-3.3.2-6]).
    pub message_expiry_interval: Option<u32>,
    /// The Topic Alias to send, and whether the topic name is left out (the client knows the
    /// alias). `None` for every cached layout.
    pub topic_alias: Option<(u16, bool)>,
}

/// Encoded packets at most this long are cut from the shared scratch block: they are copied
/// into the outgoing buffers (`connection::outgoing::COPY_THRESHOLD_BYTES`) and so dropped within the
/// turn, and never pin the block for long.
const ENCODE_SHARED_MAX_BYTES: usize =
    crate::broker::core::connection::outgoing::COPY_THRESHOLD_BYTES;
/// Size of the scratch block small packets are encoded into: one allocation per many
/// messages instead of one per message.
const ENCODE_BLOCK_BYTES: usize = 16 * 1024;

/// Encodes `packet` into bytes of its own: small packets as a slice of the scratch block,
/// larger ones into an allocation of their own size (a queued large message must not keep a
/// whole block alive).
fn encode_packet(
    packet: &Packet,
    version: ProtocolVersion,
    scratch: &mut BytesMut,
) -> Result<Bytes, EncodeError> {
    let len = packet.encoded_len(version);
    encode_into_block(len, scratch, |out| packet.encode(version, out))
}

/// Runs `encode`, which writes exactly `len` bytes, into bytes of their own (see
/// [`encode_packet`]).
/// `encode` writes nothing when it fails (a value over a wire-format limit).
fn encode_into_block(
    len: usize,
    scratch: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<Bytes, EncodeError> {
    if len > ENCODE_SHARED_MAX_BYTES {
        // No allocation before the check: `len` may be the size of a packet too large to exist.
        let mut own = BytesMut::new();
        encode(&mut own)?;
        debug_assert_eq!(own.len(), len);
        return Ok(own.freeze());
    }
    scratch.clear();
    if scratch.capacity() < len {
        *scratch = BytesMut::with_capacity(ENCODE_BLOCK_BYTES);
    }
    encode(scratch)?;
    debug_assert_eq!(scratch.len(), len);
    Ok(scratch.split().freeze())
}

/// Encodes a PUBLISH for delivery and splits it around the packet id. `Err` when the delivery
/// would be over a wire-format limit: a received PUBLISH near 268,435,455 bytes grows by what
/// this delivery adds (Subscription Identifiers, a property list for a 3.x publisher's message,
/// a Topic Alias).
pub fn encode_layout(
    message: &Publish,
    version: ProtocolVersion,
    options: LayoutOptions,
    scratch: &mut BytesMut,
) -> Result<Layout, EncodeError> {
    let LayoutOptions {
        qos,
        retain,
        dup,
        message_expiry_interval,
        topic_alias,
    } = options;
    let flags = PublishFlags {
        dup: dup && qos != QoS::AtMostOnce,
        qos,
        retain,
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
    };
    if topic_alias.is_none()
        && message_expiry_interval.is_none()
        && message.properties.topic_alias.is_none()
    {
        // The common case: the message as received under this delivery's flags, encoded
        // straight from it (no copy of the packet to build and drop).
        let len = message.encoded_len_with(version, flags);
        let full = encode_into_block(len, scratch, |out| message.encode_with(version, flags, out))?;
        return Ok(split_layout(full, qos, message.topic.len()));
    }
    let mut properties = message.properties.clone();
    // A Topic Alias belongs to one network connection (spec 3.3.2.3.4), so it is never
    // forwarded. Subscription identifiers, if any, were set for this subscriber by the shard
    // (a client cannot send them, [MQTT-3.3.4-6]).
    properties.topic_alias = topic_alias.map(|(alias, _)| alias);
    let topic = match topic_alias {
        Some((_, true)) => MqttString::default(),
        _ => message.topic.clone(),
    };
    let topic_len = topic.len();
    if message_expiry_interval.is_some() {
        properties.message_expiry_interval = message_expiry_interval;
    }
    let packet = Packet::Publish(Publish {
        dup: dup && qos != QoS::AtMostOnce,
        qos,
        retain,
        topic,
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
        properties,
        payload: message.payload.clone(),
    });
    let full = encode_packet(&packet, version, scratch)?;
    Ok(split_layout(full, qos, topic_len))
}

/// Splits an encoded PUBLISH around its packet id (QoS 1/2); `topic_len` is the length of the
/// topic name written in it.
fn split_layout(full: Bytes, qos: QoS, topic_len: usize) -> Layout {
    if qos == QoS::AtMostOnce {
        return Layout {
            head: full,
            tail: Bytes::new(),
        };
    }
    let offset = packet_id_offset(&full, topic_len);
    Layout {
        head: full.slice(..offset),
        tail: full.slice(offset + 2..),
    }
}

/// Where the packet id of a QoS 1/2 PUBLISH frame starts: after the fixed header byte, the
/// remaining-length bytes and the topic (length and name). The packet id is 1 when encoded
/// here, the publisher's when forwarded (never 0: the codec refuses such a PUBLISH with 0x82,
/// [MQTT-2.2.1-3]); the clamp keeps `offset + 2` in bounds.
fn packet_id_offset(full: &[u8], topic_len: usize) -> usize {
    let mut offset = 1;
    while offset < full.len() && full[offset] & 0x80 != 0 {
        offset += 1;
    }
    offset += 1 + 2 + topic_len;
    offset.min(full.len().saturating_sub(2))
}

#[cfg(test)]
mod tests;
