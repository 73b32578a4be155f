//! SUBSCRIBE (3.8), SUBACK (3.9), UNSUBSCRIBE (3.10) and UNSUBACK (3.11).

use super::ack::read_packet_id;
use super::properties::PropertyContext;
use super::reader::Reader;
use super::topic_rules::check_topic_filter;
use super::writer::{binary_len, frame_len, put_binary, put_fixed_header};
use super::EncodeError;
use super::{
    DecodeError, PacketType, Properties, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use bytes::{BufMut, BytesMut};

fn packet_id_rule(version: ProtocolVersion) -> &'static str {
    if version.is_v5() {
        "[MQTT-2.2.1-3] SUBSCRIBE/UNSUBSCRIBE with Packet Identifier 0"
    } else {
        "[MQTT-2.3.1-1] SUBSCRIBE/UNSUBSCRIBE with Packet Identifier 0"
    }
}

impl SubscriptionOptions {
    /// Parses the subscription options byte (5.0: 3.8.3.1; 3.x: the requested QoS byte).
    fn decode(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
        if !version.is_v5() {
            // [MQTT-3-8.3-4] (3.1.1): reserved bits non-zero or QoS 3 is malformed.
            if byte & 0xFC != 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-3-8.3-4] reserved bits set in the requested QoS byte",
                ));
            }
        } else if byte & 0xC0 != 0 {
            return Err(DecodeError::Malformed(
                "[MQTT-3.8.3-5] reserved subscription option bits set",
            ));
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(if version.is_v5() {
            DecodeError::Protocol("Maximum QoS 3 in subscription options (3.8.3.1)")
        } else {
            DecodeError::Malformed("[MQTT-3-8.3-4] requested QoS 3")
        })?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => {
                return Err(DecodeError::Protocol(
                    "Retain Handling 3 in subscription options (3.8.3.1)",
                ))
            }
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    /// The options byte for `version` (3.x carries only the QoS).
    fn to_byte(self, version: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            if self.no_local {
                byte |= 0x04;
            }
            if self.retain_as_published {
                byte |= 0x08;
            }
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

impl Subscribe {
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Subscribe, DecodeError> {
        let packet_id = read_packet_id(&mut r, packet_id_rule(version))?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, PropertyContext::Subscribe)?
        } else {
            Properties::default()
        };
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            // [MQTT-3.8.3-1] the Topic Filter is a UTF-8 string.
            let filter = r.string()?;
            check_topic_filter(filter.as_str())?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            if options.no_local && filter.as_bytes().starts_with(b"$share/") {
                return Err(DecodeError::Protocol(
                    "[MQTT-3.8.3-4] No Local set on a shared subscription",
                ));
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::Protocol(if version.is_v5() {
                "[MQTT-3.8.3-2] SUBSCRIBE without a topic filter"
            } else {
                "[MQTT-3.8.3-3] SUBSCRIBE without a topic filter"
            }));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Subscribe);
        }
        for subscription in &self.subscriptions {
            len += binary_len(subscription.filter.as_bytes()) + 1;
        }
        len
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this SUBSCRIBE (fixed-header flags 0b0010, [MQTT-3.8.1-1]).
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        put_fixed_header(
            out,
            ((PacketType::Subscribe as u8) << 4) | 0x02,
            self.remaining_len(version),
        );
        out.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(PropertyContext::Subscribe, out);
        }
        for subscription in &self.subscriptions {
            put_binary(out, subscription.filter.as_bytes());
            out.put_u8(subscription.options.to_byte(version));
        }
        Ok(())
    }
}

/// The 3.x SUBACK return code of a reason code: the granted QoS, or 0x80 for any failure.
fn suback_return_code(code: ReasonCode) -> u8 {
    match code {
        ReasonCode::Success => 0x00,
        ReasonCode::GrantedQoS1 => 0x01,
        ReasonCode::GrantedQoS2 => 0x02,
        _ => 0x80,
    }
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<SubAck, DecodeError> {
        let packet_id = read_packet_id(&mut r, "SUBACK with Packet Identifier 0 (2.2.1)")?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, PropertyContext::SubAck)?
        } else {
            Properties::default()
        };
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let byte = r.u8()?;
            let code = match version {
                ProtocolVersion::V5 => ReasonCode::from_u8(byte)
                    .filter(|rc| rc.is_valid_for(PacketType::SubAck))
                    .ok_or(DecodeError::Protocol(
                        "reason code not valid for SUBACK (3.9.3)",
                    ))?,
                // [MQTT-3.9.3-2] (3.1.1): only 0x00, 0x01, 0x02 and 0x80; 3.1 has no 0x80.
                _ => match byte {
                    0x00 => ReasonCode::Success,
                    0x01 => ReasonCode::GrantedQoS1,
                    0x02 => ReasonCode::GrantedQoS2,
                    0x80 if version == ProtocolVersion::V3_1_1 => ReasonCode::UnspecifiedError,
                    _ => {
                        return Err(DecodeError::Malformed(
                            "[MQTT-3.9.3-2] reserved SUBACK return code",
                        ))
                    }
                },
            };
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::Protocol(
                "SUBACK without a return code (3.9.3: one per topic filter)",
            ));
        }
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2 + self.reason_codes.len();
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::SubAck);
        }
        len
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this SUBACK; for 3.x every error code is written as 0x80 (3.1 has no failure code:
    /// the broker should not send one to a 3.1 client).
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        put_fixed_header(
            out,
            (PacketType::SubAck as u8) << 4,
            self.remaining_len(version),
        );
        out.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(PropertyContext::SubAck, out);
            for code in &self.reason_codes {
                out.put_u8(code.as_u8());
            }
        } else {
            for &code in &self.reason_codes {
                out.put_u8(suback_return_code(code));
            }
        }
        Ok(())
    }
}

impl Unsubscribe {
    pub(crate) fn decode(
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Unsubscribe, DecodeError> {
        let packet_id = read_packet_id(&mut r, packet_id_rule(version))?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, PropertyContext::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            // [MQTT-3.10.3-1] the Topic Filters are UTF-8 strings.
            let filter = r.string()?;
            check_topic_filter(filter.as_str())?;
            filters.push(filter);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol(
                "[MQTT-3.10.3-2] UNSUBSCRIBE without a topic filter",
            ));
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Unsubscribe);
        }
        for filter in &self.filters {
            len += binary_len(filter.as_bytes());
        }
        len
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this UNSUBSCRIBE (fixed-header flags 0b0010, [MQTT-3.10.1-1]).
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        put_fixed_header(
            out,
            ((PacketType::Unsubscribe as u8) << 4) | 0x02,
            self.remaining_len(version),
        );
        out.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(PropertyContext::Unsubscribe, out);
        }
        for filter in &self.filters {
            put_binary(out, filter.as_bytes());
        }
        Ok(())
    }
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
        let packet_id = read_packet_id(&mut r, "UNSUBACK with Packet Identifier 0 (2.2.1)")?;
        let mut unsuback = UnsubAck {
            packet_id,
            ..UnsubAck::default()
        };
        if version.is_v5() {
            unsuback.properties = Properties::decode(&mut r, PropertyContext::UnsubAck)?;
            unsuback.reason_codes.reserve(r.remaining());
            while !r.is_empty() {
                let code = ReasonCode::from_u8(r.u8()?)
                    .filter(|rc| rc.is_valid_for(PacketType::UnsubAck))
                    .ok_or(DecodeError::Protocol(
                        "reason code not valid for UNSUBACK (3.11.3)",
                    ))?;
                unsuback.reason_codes.push(code);
            }
            if unsuback.reason_codes.is_empty() {
                return Err(DecodeError::Protocol(
                    "UNSUBACK without a reason code (3.11.3: one per topic filter)",
                ));
            }
        }
        r.finish()?;
        Ok(unsuback)
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len(PropertyContext::UnsubAck) + self.reason_codes.len()
        } else {
            2
        }
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this UNSUBACK; 3.x carries only the packet identifier.
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        put_fixed_header(
            out,
            (PacketType::UnsubAck as u8) << 4,
            self.remaining_len(version),
        );
        out.put_u16(self.packet_id);
        if version.is_v5() {
            self.properties.encode(PropertyContext::UnsubAck, out);
            for code in &self.reason_codes {
                out.put_u8(code.as_u8());
            }
        }
        Ok(())
    }
}
