//! The wire format's length limits, checked before a packet is encoded: every UTF-8 string and
//! binary field at most 65,535 bytes (1.5.4, 1.5.6), every Variable Byte Integer at most
//! 268,435,455 (1.5.5: the remaining length, a property list's length, a Subscription
//! Identifier), and a packet identifier on every QoS 1/2 PUBLISH ([MQTT-2.2.1-3]).
//!
//! A broker builds packets from what clients sent (a client id in Response Information, a
//! received PUBLISH plus the Subscription Identifiers of a subscriber), so a value over a limit
//! is an input, not a bug: every public `encode` runs these checks first and returns an
//! [`EncodeError`] having written nothing, and the writer functions (`writer.rs`) never see a
//! value they cannot represent.

use super::disconnect::reason_and_properties_len;
use super::properties::{Properties, PropertyContext, PropertyId};
use super::publish::PublishFlags;
use super::types::{Ack, Auth, ConnAck, Connect, Disconnect, Publish, QoS};
use super::types::{SubAck, Subscribe, UnsubAck, Unsubscribe};
use super::writer::VARINT_MAX;
use super::ProtocolVersion;
use std::fmt;

/// The most bytes a UTF-8 string or binary field holds (its two-byte length prefix, 1.5.4).
pub const FIELD_LEN_MAX: usize = u16::MAX as usize;

/// Why a packet cannot be encoded: one of its values is over a limit of the wire format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A UTF-8 string or binary field over [`FIELD_LEN_MAX`] bytes.
    FieldTooLong { field: &'static str, len: usize },
    /// A property whose string or binary value is over [`FIELD_LEN_MAX`] bytes.
    PropertyTooLong { property: PropertyId, len: usize },
    /// A Variable Byte Integer over 268,435,455: the remaining length (the packet is too
    /// large for MQTT), a property list's length or a Subscription Identifier.
    VarintTooLarge { field: &'static str, value: usize },
    /// A QoS 1 or 2 PUBLISH with packet identifier 0 ([MQTT-2.2.1-3]).
    PacketIdZero,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FieldTooLong { field, len } => {
                write!(
                    f,
                    "{field} is {len} bytes, over the {FIELD_LEN_MAX} a field holds"
                )
            }
            EncodeError::PropertyTooLong { property, len } => write!(
                f,
                "property {property:?} is {len} bytes, over the {FIELD_LEN_MAX} a field holds"
            ),
            EncodeError::VarintTooLarge { field, value } => write!(
                f,
                "{field} is {value}, over the {VARINT_MAX} a variable byte integer holds"
            ),
            EncodeError::PacketIdZero => {
                write!(
                    f,
                    "[MQTT-2.2.1-3] a QoS 1 or 2 PUBLISH needs a packet identifier"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Checks a string or binary field's length.
pub(crate) fn check_field(field: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
    if bytes.len() > FIELD_LEN_MAX {
        return Err(EncodeError::FieldTooLong {
            field,
            len: bytes.len(),
        });
    }
    Ok(())
}

/// Checks a value written as a Variable Byte Integer.
pub(crate) fn check_varint(field: &'static str, value: usize) -> Result<(), EncodeError> {
    if value > VARINT_MAX as usize {
        return Err(EncodeError::VarintTooLarge { field, value });
    }
    Ok(())
}

/// Checks a packet's remaining length (computed by the packet's `remaining_len`).
pub(crate) fn check_remaining_len(remaining_len: usize) -> Result<(), EncodeError> {
    check_varint("remaining length", remaining_len)
}

/// Checks the properties written in `context` (none before MQTT 5).
fn check_properties(
    properties: &Properties,
    context: PropertyContext,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    if version.is_v5() {
        properties.check(context)
    } else {
        Ok(())
    }
}

impl Connect {
    /// Checks every field against the wire format's limits (laid out by `protocol_version`).
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        let version = self.protocol_version;
        check_properties(&self.properties, PropertyContext::Connect, version)?;
        check_field("client identifier", self.client_id.as_bytes())?;
        if let Some(will) = &self.will {
            check_properties(&will.properties, PropertyContext::Will, version)?;
            check_field("will topic", will.topic.as_bytes())?;
            check_field("will payload", &will.payload)?;
        }
        if let Some(username) = &self.username {
            check_field("user name", username.as_bytes())?;
        }
        if let Some(password) = &self.password {
            check_field("password", password)?;
        }
        check_remaining_len(self.remaining_len())
    }
}

impl ConnAck {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::ConnAck, version)?;
        check_remaining_len(self.remaining_len(version))
    }
}

impl Publish {
    /// Checks this PUBLISH as sent with `flags` ([`Publish::encode_with`]).
    pub(crate) fn check(
        &self,
        version: ProtocolVersion,
        flags: PublishFlags,
    ) -> Result<(), EncodeError> {
        if flags.qos != QoS::AtMostOnce && flags.packet_id == 0 {
            return Err(EncodeError::PacketIdZero);
        }
        check_field("topic name", self.topic.as_bytes())?;
        check_properties(&self.properties, PropertyContext::Publish, version)?;
        check_remaining_len(self.remaining_len_with(version, flags))
    }
}

impl Ack {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::Ack, version)?;
        check_remaining_len(self.remaining_len(version))
    }
}

impl Subscribe {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::Subscribe, version)?;
        for subscription in &self.subscriptions {
            check_field("topic filter", subscription.filter.as_bytes())?;
        }
        check_remaining_len(self.remaining_len(version))
    }
}

impl SubAck {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::SubAck, version)?;
        check_remaining_len(self.remaining_len(version))
    }
}

impl Unsubscribe {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::Unsubscribe, version)?;
        for filter in &self.filters {
            check_field("topic filter", filter.as_bytes())?;
        }
        check_remaining_len(self.remaining_len(version))
    }
}

impl UnsubAck {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::UnsubAck, version)?;
        check_remaining_len(self.remaining_len(version))
    }
}

impl Disconnect {
    pub(crate) fn check(&self, version: ProtocolVersion) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        check_properties(&self.properties, PropertyContext::Disconnect, version)?;
        check_remaining_len(reason_and_properties_len(
            self.reason_code,
            &self.properties,
            PropertyContext::Disconnect,
        ))
    }
}

impl Auth {
    pub(crate) fn check(&self) -> Result<(), EncodeError> {
        check_properties(&self.properties, PropertyContext::Auth, ProtocolVersion::V5)?;
        check_remaining_len(reason_and_properties_len(
            self.reason_code,
            &self.properties,
            PropertyContext::Auth,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{
        decode, MoreProperties, MqttString, Packet, ReasonCode, Subscription, SubscriptionOptions,
        Will,
    };
    use bytes::{Bytes, BytesMut};

    fn string(len: usize) -> MqttString {
        MqttString::from("x".repeat(len))
    }

    /// Encodes `packet`; on failure checks that nothing was written.
    fn encode(packet: &Packet, version: ProtocolVersion) -> Result<BytesMut, EncodeError> {
        let mut out = BytesMut::from(&b"before"[..]);
        match packet.encode(version, &mut out) {
            Ok(()) => Ok(out.split_off(6)),
            Err(error) => {
                assert_eq!(&out[..], b"before", "a refused packet wrote nothing");
                Err(error)
            }
        }
    }

    fn connect(client_id: MqttString) -> Packet {
        Packet::Connect(Box::new(Connect {
            protocol_version: ProtocolVersion::V5,
            clean_start: true,
            keep_alive_secs: 0,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }))
    }

    #[test]
    fn a_field_of_65535_bytes_encodes_and_decodes_one_more_is_refused() {
        let packet = connect(string(FIELD_LEN_MAX));
        let mut bytes = encode(&packet, ProtocolVersion::V5).expect("65,535 bytes fit");
        let decoded = decode(&mut bytes, ProtocolVersion::V5, u32::MAX).expect("decodes");
        assert_eq!(decoded, Some(packet));
        assert_eq!(
            encode(&connect(string(FIELD_LEN_MAX + 1)), ProtocolVersion::V5),
            Err(EncodeError::FieldTooLong {
                field: "client identifier",
                len: FIELD_LEN_MAX + 1
            })
        );
    }

    #[test]
    fn every_string_and_binary_field_of_every_packet_is_checked() {
        let long = string(FIELD_LEN_MAX + 1);
        let long_bytes = Bytes::from(vec![b'y'; FIELD_LEN_MAX + 1]);
        let will = |topic: MqttString, payload: Bytes| Will {
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            payload,
            properties: Properties::default(),
        };
        let mut packets = Vec::new();
        for field in 0..4 {
            let mut connect = Connect {
                protocol_version: ProtocolVersion::V3_1_1,
                clean_start: true,
                keep_alive_secs: 0,
                client_id: MqttString::from("c"),
                will: None,
                username: None,
                password: None,
                properties: Properties::default(),
            };
            match field {
                0 => connect.will = Some(will(long.clone(), Bytes::new())),
                1 => connect.will = Some(will(MqttString::from("w"), long_bytes.clone())),
                2 => connect.username = Some(long.clone()),
                _ => connect.password = Some(long_bytes.clone()),
            }
            packets.push(Packet::Connect(Box::new(connect)));
        }
        packets.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: long.clone(),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::new(),
        }));
        packets.push(Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: vec![Subscription {
                filter: long.clone(),
                options: SubscriptionOptions::default(),
            }],
            properties: Properties::default(),
        }));
        packets.push(Packet::Unsubscribe(Unsubscribe {
            packet_id: 1,
            filters: vec![long.clone()],
            properties: Properties::default(),
        }));
        for packet in &packets {
            let result = encode(packet, ProtocolVersion::V3_1_1);
            assert!(
                matches!(result, Err(EncodeError::FieldTooLong { len, .. }) if len == FIELD_LEN_MAX + 1),
                "{packet:?}: {result:?}"
            );
        }
    }

    #[test]
    fn every_string_and_binary_property_is_checked() {
        let long = string(FIELD_LEN_MAX + 1);
        let long_bytes = Bytes::from(vec![b'y'; FIELD_LEN_MAX + 1]);
        let cases: Vec<(PropertyId, MoreProperties)> = vec![
            (
                PropertyId::ResponseInformation,
                MoreProperties {
                    response_information: Some(long.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::AssignedClientIdentifier,
                MoreProperties {
                    assigned_client_identifier: Some(long.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::ServerReference,
                MoreProperties {
                    server_reference: Some(long.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::ReasonString,
                MoreProperties {
                    reason_string: Some(long.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::AuthenticationMethod,
                MoreProperties {
                    authentication_method: Some(long.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::AuthenticationData,
                MoreProperties {
                    authentication_data: Some(long_bytes.clone()),
                    ..MoreProperties::default()
                },
            ),
            (
                PropertyId::UserProperty,
                MoreProperties {
                    user_properties: vec![(MqttString::from("k"), long.clone())],
                    ..MoreProperties::default()
                },
            ),
        ];
        for (property, more) in cases {
            let packet = Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Success,
                properties: Properties::from(more),
            });
            assert_eq!(
                encode(&packet, ProtocolVersion::V5),
                Err(EncodeError::PropertyTooLong {
                    property,
                    len: FIELD_LEN_MAX + 1
                })
            );
            // MQTT 3.x carries no properties: the same CONNACK encodes.
            assert!(encode(&packet, ProtocolVersion::V3_1_1).is_ok());
        }
        let publish = |more: MoreProperties| Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: MqttString::from("t"),
            packet_id: 0,
            properties: Properties::from(more),
            payload: Bytes::new(),
        };
        for more in [
            MoreProperties {
                content_type: Some(long.clone()),
                ..MoreProperties::default()
            },
            MoreProperties {
                response_topic: Some(long.clone()),
                ..MoreProperties::default()
            },
            MoreProperties {
                correlation_data: Some(long_bytes.clone()),
                ..MoreProperties::default()
            },
        ] {
            let packet = Packet::Publish(publish(more));
            assert!(matches!(
                encode(&packet, ProtocolVersion::V5),
                Err(EncodeError::PropertyTooLong { .. })
            ));
        }
        let too_large_id = Packet::Publish(publish(MoreProperties {
            subscription_identifiers: vec![VARINT_MAX + 1],
            ..MoreProperties::default()
        }));
        assert!(matches!(
            encode(&too_large_id, ProtocolVersion::V5),
            Err(EncodeError::VarintTooLarge { .. })
        ));
    }

    /// A PUBLISH whose remaining length is 268,435,455 from a 3.1.1 publisher grows by its
    /// property-length byte for an MQTT 5 subscriber: one byte over what MQTT can carry. The
    /// payload is never touched (zeroed pages, refused before copying).
    #[test]
    fn a_packet_over_268435455_bytes_is_refused_before_anything_is_copied() {
        let topic = MqttString::from("t");
        let payload_len = VARINT_MAX as usize - 3;
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic,
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from(vec![0u8; payload_len]),
        };
        let flags = publish.flags();
        assert_eq!(
            publish.remaining_len_with(ProtocolVersion::V3_1_1, flags),
            VARINT_MAX as usize
        );
        assert_eq!(publish.check(ProtocolVersion::V3_1_1, flags), Ok(()));
        let mut out = BytesMut::new();
        assert_eq!(
            publish.encode_with(ProtocolVersion::V5, flags, &mut out),
            Err(EncodeError::VarintTooLarge {
                field: "remaining length",
                value: VARINT_MAX as usize + 1
            })
        );
        assert!(out.is_empty() && out.capacity() == 0, "nothing reserved");
    }

    #[test]
    fn a_qos_1_publish_without_packet_id_is_refused() {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: MqttString::from("t"),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::new(),
        };
        assert_eq!(
            encode(&Packet::Publish(publish), ProtocolVersion::V3_1_1),
            Err(EncodeError::PacketIdZero)
        );
    }
}
