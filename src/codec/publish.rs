//! PUBLISH (3.3). The hot path: decoding slices topic and payload out of the frame without copying,
//! and encoding can write the header separately from the shared payload (fan-out).

use super::properties::PropertyContext;
use super::reader::Reader;
use super::topic_rules::check_publish_topic;
use super::writer::{binary_len, frame_len, put_binary, put_fixed_header, varint_len};
use super::EncodeError;
use super::{DecodeError, MqttString, PacketType, Properties, ProtocolVersion, Publish, QoS};
use bytes::{BufMut, BytesMut};

impl Publish {
    /// Decodes a PUBLISH body; `flags` is the low nibble of the first byte (already checked by
    /// the fixed-header rules: QoS 3 and DUP on QoS 0 never reach here).
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let qos = QoS::from_u8((flags >> 1) & 0x03)
            .ok_or(DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH QoS 3"))?;
        // [MQTT-3.3.2-1] the Topic Name is a UTF-8 string; [MQTT-3.3.2-2] without wildcards.
        let topic = r.binary()?;
        check_publish_topic(&topic)?;
        let topic = MqttString::from_validated(topic);
        let packet_id = if qos == QoS::AtMostOnce {
            0
        } else {
            match r.u16()? {
                // A Protocol Error, not Malformed: see `ack::read_packet_id`.
                0 => {
                    return Err(DecodeError::Protocol(if version.is_v5() {
                        "[MQTT-2.2.1-3] PUBLISH with QoS > 0 and Packet Identifier 0"
                    } else {
                        "[MQTT-2.3.1-1] PUBLISH with QoS > 0 and Packet Identifier 0"
                    }))
                }
                id => id,
            }
        };
        let properties = if version.is_v5() {
            Properties::decode(&mut r, PropertyContext::Publish)?
        } else {
            Properties::default()
        };
        if topic.is_empty() {
            if !version.is_v5() {
                return Err(DecodeError::TopicNameInvalid(
                    "[MQTT-4.7.3-1] empty topic name",
                ));
            }
            if properties.topic_alias.is_none() {
                return Err(DecodeError::Protocol(
                    "empty topic name without a Topic Alias (3.3.2.1)",
                ));
            }
        }
        Ok(Publish {
            dup: flags & 0x08 != 0,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    /// This PUBLISH's own flags and packet identifier.
    pub fn flags(&self) -> PublishFlags {
        PublishFlags {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            packet_id: self.packet_id,
        }
    }

    /// The length of the property list's body (0 before MQTT 5, where there is no list).
    fn properties_body_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            self.properties.body_len(PropertyContext::Publish)
        } else {
            0
        }
    }

    /// The variable header length (topic, packet identifier, properties), without the payload.
    fn variable_header_len(
        &self,
        version: ProtocolVersion,
        qos: QoS,
        properties_body_len: usize,
    ) -> usize {
        let mut len = binary_len(self.topic.as_bytes());
        if qos != QoS::AtMostOnce {
            len += 2;
        }
        if version.is_v5() {
            len += varint_len(properties_body_len) + properties_body_len;
        }
        len
    }

    /// The exact encoded size for `version`, payload included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        self.encoded_len_with(version, self.flags())
    }

    /// The exact encoded size for `version` when sent with `flags` ([`Publish::encode_with`]).
    pub fn encoded_len_with(&self, version: ProtocolVersion, flags: PublishFlags) -> usize {
        frame_len(self.remaining_len_with(version, flags))
    }

    /// The remaining length when sent with `flags`.
    pub(super) fn remaining_len_with(
        &self,
        version: ProtocolVersion,
        flags: PublishFlags,
    ) -> usize {
        let properties_body_len = self.properties_body_len(version);
        self.variable_header_len(version, flags.qos, properties_body_len) + self.payload.len()
    }

    /// The size of what [`Publish::encode_header`] writes: the whole frame except the payload.
    pub fn header_len(&self, version: ProtocolVersion) -> usize {
        self.encoded_len(version) - self.payload.len()
    }

    /// Appends everything but the payload: fixed header (whose remaining length counts the
    /// payload), topic, packet identifier and (MQTT 5) properties, and reserves room for the
    /// payload. A fan-out sender writes this header and then the shared `payload` bytes as they are.
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode_header(
        &self,
        version: ProtocolVersion,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.check(version, self.flags())?;
        self.encode_header_with(version, self.flags(), out);
        Ok(())
    }

    /// [`Publish::encode_header`] with `flags` in place of the packet's own, once checked.
    fn encode_header_with(
        &self,
        version: ProtocolVersion,
        flags: PublishFlags,
        out: &mut BytesMut,
    ) {
        let properties_body_len = self.properties_body_len(version);
        let variable_header_len = self.variable_header_len(version, flags.qos, properties_body_len);
        put_fixed_header(
            out,
            flags.first_byte(),
            variable_header_len + self.payload.len(),
        );
        put_binary(out, self.topic.as_bytes());
        if flags.qos != QoS::AtMostOnce {
            // Not 0: `check` refused that ([MQTT-2.2.1-3]).
            out.put_u16(flags.packet_id);
        }
        if version.is_v5() {
            self.properties.encode_with_body_len(
                PropertyContext::Publish,
                properties_body_len,
                out,
            );
        }
    }

    /// Appends the whole PUBLISH; writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_with(version, self.flags(), out)
    }

    /// Appends this PUBLISH as sent with `flags` in place of its own: the same topic,
    /// properties and payload under another QoS, retain flag, DUP flag or packet identifier.
    /// Fan-out encodes a received message this way without building a copy of it. Writes nothing
    /// when a value is over a wire-format limit (e.g. a received PUBLISH of the largest size plus
    /// the Subscription Identifiers of a subscriber).
    pub fn encode_with(
        &self,
        version: ProtocolVersion,
        flags: PublishFlags,
        out: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        self.check(version, flags)?;
        self.encode_header_with(version, flags, out);
        out.put_slice(&self.payload);
        Ok(())
    }
}

/// The fixed-header flags and packet identifier of one sending of a PUBLISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishFlags {
    /// Written only for QoS > 0 ([MQTT-3.3.1-2]).
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Non-zero for QoS > 0 ([MQTT-2.2.1-3]); not written for QoS 0.
    pub packet_id: u16,
}

impl PublishFlags {
    /// The first byte of the fixed header. DUP is only written for QoS > 0 ([MQTT-3.3.1-2]).
    pub fn first_byte(&self) -> u8 {
        let mut byte = ((PacketType::Publish as u8) << 4) | ((self.qos as u8) << 1);
        if self.dup && self.qos != QoS::AtMostOnce {
            byte |= 0x08;
        }
        if self.retain {
            byte |= 0x01;
        }
        byte
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sample(qos: QoS) -> Publish {
        Publish {
            dup: true,
            qos,
            retain: true,
            topic: super::super::MqttString::from_static("a/b"),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
            properties: Properties {
                message_expiry_interval: Some(9),
                ..Properties::new()
            },
            payload: Bytes::from_static(b"payload"),
        }
    }

    #[test]
    fn header_counts_the_payload_but_does_not_write_it() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let publish = sample(QoS::AtLeastOnce);
            let mut header = BytesMut::new();
            publish
                .encode_header(version, &mut header)
                .expect("encodes");
            assert_eq!(header.len(), publish.header_len(version));
            assert_eq!(
                header.len() + publish.payload.len(),
                publish.encoded_len(version)
            );
            // The remaining length in the header covers the payload too.
            assert_eq!(usize::from(header[1]) + 2, publish.encoded_len(version));
        }
    }

    #[test]
    fn dup_is_not_written_for_qos_0() {
        let mut out = BytesMut::new();
        sample(QoS::AtMostOnce)
            .encode(ProtocolVersion::V3_1_1, &mut out)
            .expect("encodes");
        assert_eq!(out[0], 0x31);
        out.clear();
        sample(QoS::ExactlyOnce)
            .encode(ProtocolVersion::V3_1_1, &mut out)
            .expect("encodes");
        assert_eq!(out[0], 0x3D);
    }
}
