//! The packet types. Every string and binary field is a `Bytes` slice of the decoded frame.

use super::{Properties, ReasonCode};
use bytes::Bytes;
use std::fmt;

/// The protocol level from CONNECT: 3 = MQTT 3.1 (`MQIsdp`), 4 = 3.1.1, 5 = 5.0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ProtocolVersion {
    V3_1,
    #[default]
    V3_1_1,
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// Parses a protocol level byte.
    pub fn from_level(level: u8) -> Option<ProtocolVersion> {
        match level {
            3 => Some(ProtocolVersion::V3_1),
            4 => Some(ProtocolVersion::V3_1_1),
            5 => Some(ProtocolVersion::V5),
            _ => None,
        }
    }

    /// Whether packets carry MQTT 5 properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

/// Quality of service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; `None` for the reserved value 3 ([MQTT-3.3.1-4]).
    pub fn from_u8(value: u8) -> Option<QoS> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A UTF-8 string held as `Bytes`: validated once when constructed, shared without copying.
///
/// The codec additionally rejects U+0000 and strings longer than 65,535 bytes on decode
/// ([MQTT-1.5.4-1], [MQTT-1.5.4-2]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MqttString(Bytes);

impl MqttString {
    /// Wraps a static string without copying.
    pub const fn from_static(s: &'static str) -> MqttString {
        MqttString(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps `bytes` if they are valid UTF-8.
    pub fn from_bytes(bytes: Bytes) -> Result<MqttString, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(MqttString(bytes))
    }

    /// The string. Validity was checked on construction; a failure here would be a bug.
    pub fn as_str(&self) -> &str {
        match std::str::from_utf8(&self.0) {
            Ok(s) => s,
            Err(_) => {
                debug_assert!(false, "MqttString holds invalid UTF-8");
                ""
            }
        }
    }

    /// Wraps bytes the codec has already validated (UTF-8, no U+0000).
    pub(crate) fn from_validated(bytes: Bytes) -> MqttString {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        MqttString(bytes)
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Consumes the string, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for MqttString {
    fn from(s: &str) -> MqttString {
        MqttString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for MqttString {
    fn from(s: String) -> MqttString {
        MqttString(Bytes::from(s))
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One MQTT control packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// Boxed: a CONNECT is large and rare, and keeps `Packet` small for the PUBLISH hot path.
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(Ack),
    PubRec(Ack),
    PubRel(Ack),
    PubComp(Ack),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

/// The control packet type from the high nibble of the first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 1,
    ConnAck = 2,
    Publish = 3,
    PubAck = 4,
    PubRec = 5,
    PubRel = 6,
    PubComp = 7,
    Subscribe = 8,
    SubAck = 9,
    Unsubscribe = 10,
    UnsubAck = 11,
    PingReq = 12,
    PingResp = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The packet type of a fixed header's first byte; `None` for the reserved value 0.
    pub fn from_first_byte(first_byte: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match first_byte >> 4 {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }
}

impl Packet {
    /// This packet's control packet type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT. `clean_start` is MQTT 3.1.1's Clean Session flag.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Connect {
    pub protocol_version: ProtocolVersion,
    pub clean_start: bool,
    pub keep_alive_secs: u16,
    /// May be empty; the server then assigns one (or rejects, per version rules).
    pub client_id: MqttString,
    pub will: Option<Will>,
    pub username: Option<MqttString>,
    pub password: Option<Bytes>,
    pub properties: Properties,
}

/// The will message of a CONNECT.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Will {
    pub topic: MqttString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 will properties (Will Delay Interval, Message Expiry Interval, ...).
    pub properties: Properties,
}

/// CONNACK. For MQTT 3.x the reason code is mapped to and from the 3.1.1 return code.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH. `topic` and `payload` are slices of the frame.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty in MQTT 5 when a Topic Alias property names the topic.
    pub topic: MqttString,
    /// 0 for QoS 0 (absent on the wire); non-zero otherwise ([MQTT-2.2.1-3]).
    pub packet_id: u16,
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this layout. In MQTT 5 the reason code and properties
/// are omitted on the wire when they are Success and empty (spec 3.4.2.1).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    pub packet_id: u16,
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// Subscription options byte (MQTT 5 section 3.8.3.1; 3.1.1 uses only the QoS bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: RetainHandling,
}

/// Retain Handling option (MQTT 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum RetainHandling {
    #[default]
    SendAtSubscribe = 0,
    SendAtSubscribeIfNew = 1,
    DoNotSend = 2,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Subscription {
    pub filter: MqttString,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE (at least one filter, [MQTT-3.8.3-3]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Subscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub subscriptions: Vec<Subscription>,
}

/// SUBACK: one reason code per filter. For MQTT 3.x: 0, 1, 2 or 0x80 (any error code maps to 0x80).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reason_codes: Vec<ReasonCode>,
}

/// UNSUBSCRIBE (at least one filter, [MQTT-3.10.3-2]).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    pub packet_id: u16,
    pub properties: Properties,
    pub filters: Vec<MqttString>,
}

/// UNSUBACK: MQTT 5 carries one reason code per filter; MQTT 3.x carries none.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UnsubAck {
    pub packet_id: u16,
    pub properties: Properties,
    pub reason_codes: Vec<ReasonCode>,
}

/// DISCONNECT. MQTT 3.x has no variable header; the reason code is then Success.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Disconnect {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// AUTH (MQTT 5 only).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PUBLISH is moved and cloned per destination shard: keep it and `Packet` small.
    #[test]
    fn hot_types_stay_small() {
        assert!(std::mem::size_of::<Properties>() <= 32);
        assert!(std::mem::size_of::<Publish>() <= 112);
        assert!(std::mem::size_of::<Packet>() <= 120);
    }
}
