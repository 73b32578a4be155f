//! Decode errors, each mapped to the MQTT 5 reason code the broker sends before closing.

use super::ReasonCode;
use std::fmt;

/// Why a frame could not be decoded. The `&'static str` names the rule that was broken, with the
/// spec statement number where there is one (e.g. `"[MQTT-3.3.1-4] QoS 3"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The fixed header announces a packet of `size` bytes, over `max`. Reason 0x95.
    PacketTooLarge { size: u64, max: u32 },
    /// A malformed packet: one that "cannot be parsed according to this specification" (MQTT 5
    /// section 1.2): bad encoding, bad lengths, bad UTF-8, reserved bits, a property identifier
    /// not valid for the packet (2.2.2.2), and what the spec names a Malformed Packet. Reason 0x81.
    Malformed(&'static str),
    /// "An error that is detected after the packet has been parsed and found to contain data that
    /// is not allowed by the protocol" (1.2): a duplicated property, Packet Identifier 0, Will
    /// QoS without the Will Flag, and every rule whose consequence the spec does not name.
    /// Reason 0x82.
    Protocol(&'static str),
    /// A PUBLISH or Will topic name that is not valid (wildcards; empty before MQTT 5). Reason 0x90.
    /// (An MQTT 5 PUBLISH with an empty name and no Topic Alias is a `Protocol` error, 3.3.2.1.)
    TopicNameInvalid(&'static str),
    /// A SUBSCRIBE/UNSUBSCRIBE topic filter that is not valid. Reason 0x8F.
    TopicFilterInvalid(&'static str),
    /// A PUBLISH with Topic Alias 0 ([MQTT-3.3.2-8]). Reason 0x94.
    TopicAliasInvalid(&'static str),
    /// CONNECT with a protocol name/level this codec does not speak. Reason 0x84 (3.1.1 code 1).
    UnsupportedProtocolVersion(u8),
}

impl DecodeError {
    /// The MQTT 5 reason code to send in CONNACK or DISCONNECT for this error.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::Malformed(_) => ReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => ReasonCode::ProtocolError,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TopicNameInvalid,
            DecodeError::TopicFilterInvalid(_) => ReasonCode::TopicFilterInvalid,
            DecodeError::TopicAliasInvalid(_) => ReasonCode::TopicAliasInvalid,
            DecodeError::UnsupportedProtocolVersion(_) => ReasonCode::UnsupportedProtocolVersion,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::PacketTooLarge { size, max } => {
                write!(f, "packet too large: {size} bytes, maximum {max}")
            }
            DecodeError::Malformed(rule) => write!(f, "malformed packet: {rule}"),
            DecodeError::Protocol(rule) => write!(f, "protocol error: {rule}"),
            DecodeError::TopicNameInvalid(rule) => write!(f, "topic name invalid: {rule}"),
            DecodeError::TopicFilterInvalid(rule) => write!(f, "topic filter invalid: {rule}"),
            DecodeError::TopicAliasInvalid(rule) => write!(f, "topic alias invalid: {rule}"),
            DecodeError::UnsupportedProtocolVersion(level) => {
                write!(f, "unsupported protocol version {level}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}
