//! PUBACK (3.4), PUBREC (3.5), PUBREL (3.6) and PUBCOMP (3.7): a packet identifier and, in MQTT 5,
//! an optional reason code and properties.

use super::properties::PropertyContext;
use super::reader::Reader;
use super::writer::{frame_len, put_fixed_header};
use super::EncodeError;
use super::{Ack, DecodeError, PacketType, Properties, ProtocolVersion, ReasonCode};
use bytes::{BufMut, BytesMut};

/// Reads a packet identifier that must not be 0 (2.2.1: every packet identifier is non-zero).
/// The spec names no consequence for 0, and the packet parses: a Protocol Error by the
/// definition in MQTT 5 section 1.2 (Mosquitto answers a PUBLISH with id 0 the same way).
pub(crate) fn read_packet_id(r: &mut Reader, rule: &'static str) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol(rule)),
        id => Ok(id),
    }
}

/// The fixed-header first byte of each acknowledgement; PUBREL carries flags 0b0010
/// ([MQTT-3.6.1-1]).
fn first_byte(packet_type: PacketType) -> u8 {
    let flags = if packet_type == PacketType::PubRel {
        0x02
    } else {
        0x00
    };
    ((packet_type as u8) << 4) | flags
}

/// The four bytes of an acknowledgement that carries only its packet identifier: every MQTT
/// 3.x one, and an MQTT 5 one with reason code Success and no properties, whose reason code and
/// property length are left out (spec 3.4.2.1). Exactly what [`Ack::encode`] writes for such
/// an acknowledgement, without building one (the broker's per-message PUBACK, issue 17).
pub fn short_ack(packet_type: PacketType, packet_id: u16) -> [u8; 4] {
    let [high, low] = packet_id.to_be_bytes();
    [first_byte(packet_type), 2, high, low]
}

impl Ack {
    /// Decodes the body of a PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_type`).
    pub(crate) fn decode(
        packet_type: PacketType,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Ack, DecodeError> {
        let packet_id = read_packet_id(&mut r, "acknowledgement with Packet Identifier 0 (2.2.1)")?;
        let mut ack = Ack {
            packet_id,
            ..Ack::default()
        };
        // 3.4.2.1: with a Remaining Length of 2 the reason code is Success and there are no
        // properties; below 4 there is no property length.
        if version.is_v5() && !r.is_empty() {
            let code = r.u8()?;
            ack.reason_code = ReasonCode::from_u8(code)
                .filter(|rc| rc.is_valid_for(packet_type))
                .ok_or(DecodeError::Protocol(
                    "reason code not valid for this acknowledgement (3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1)",
                ))?;
            if !r.is_empty() {
                ack.properties = Properties::decode(&mut r, PropertyContext::Ack)?;
            }
        }
        r.finish()?;
        Ok(ack)
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            return 2;
        }
        let properties_len = self.properties.body_len(PropertyContext::Ack);
        if properties_len > 0 {
            2 + 1 + self.properties.encoded_len(PropertyContext::Ack)
        } else if self.reason_code != ReasonCode::Success {
            3
        } else {
            2
        }
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this acknowledgement as a `packet_type` packet (PUBACK, PUBREC, PUBREL or PUBCOMP),
    /// omitting the reason code and properties when MQTT 5 allows it (Success, none).
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(
        &self,
        packet_type: PacketType,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.check(version)?;
        let remaining_len = self.remaining_len(version);
        put_fixed_header(out, first_byte(packet_type), remaining_len);
        out.put_u16(self.packet_id);
        if remaining_len > 2 {
            out.put_u8(self.reason_code.as_u8());
        }
        if remaining_len > 3 {
            self.properties.encode(PropertyContext::Ack, out);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ack_is_what_encode_writes_for_a_plain_acknowledgement() {
        let types = [
            PacketType::PubAck,
            PacketType::PubRec,
            PacketType::PubRel,
            PacketType::PubComp,
        ];
        let versions = [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ];
        for packet_type in types {
            for version in versions {
                for packet_id in [1u16, 0x1234, u16::MAX] {
                    let ack = Ack {
                        packet_id,
                        reason_code: ReasonCode::Success,
                        properties: Properties::default(),
                    };
                    let mut out = BytesMut::new();
                    ack.encode(packet_type, version, &mut out).expect("encodes");
                    assert_eq!(&out[..], &short_ack(packet_type, packet_id)[..]);
                }
            }
        }
        // A 3.x acknowledgement never carries a reason code, whatever the broker decided.
        let ack = Ack {
            packet_id: 9,
            reason_code: ReasonCode::NoMatchingSubscribers,
            properties: Properties::default(),
        };
        let mut out = BytesMut::new();
        ack.encode(PacketType::PubAck, ProtocolVersion::V3_1_1, &mut out)
            .expect("encodes");
        assert_eq!(&out[..], &short_ack(PacketType::PubAck, 9)[..]);
    }
}
