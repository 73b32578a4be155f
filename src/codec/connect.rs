//! CONNECT (3.1) and CONNACK (3.2) for MQTT 3.1, 3.1.1 and 5.0.

use super::properties::PropertyContext;
use super::reader::Reader;
use super::topic_rules::check_topic_name;
use super::writer::{binary_len, frame_len, put_binary, put_fixed_header};
use super::EncodeError;
use super::{
    ConnAck, Connect, ConnectReturnCode, DecodeError, PacketType, Properties, ProtocolVersion, QoS,
    ReasonCode, Will,
};
use bytes::{BufMut, BytesMut};

const FLAG_USERNAME: u8 = 0x80;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_WILL: u8 = 0x04;
const FLAG_CLEAN_START: u8 = 0x02;
const FLAG_RESERVED: u8 = 0x01;

fn malformed(rule: &'static str) -> DecodeError {
    DecodeError::Malformed(rule)
}

/// The protocol name each level goes with: `MQIsdp` for 3.1, `MQTT` for 3.1.1 and 5.0.
fn protocol_name(version: ProtocolVersion) -> &'static [u8] {
    match version {
        ProtocolVersion::V3_1 => b"MQIsdp",
        _ => b"MQTT",
    }
}

impl Connect {
    /// Decodes a CONNECT body by its own protocol name and level.
    pub(crate) fn decode(mut r: Reader) -> Result<Connect, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        // [MQTT-3.1.2-1] a wrong protocol name; [MQTT-3.1.2-2] an unsupported level is answered
        // with CONNACK 0x84 (3.1.1: return code 1).
        let version = match (&name[..], level) {
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", _) | (b"MQTT", _) => {
                return Err(DecodeError::UnsupportedProtocolVersion(level))
            }
            _ => {
                return Err(DecodeError::Protocol(
                    "[MQTT-3.1.2-1] protocol name is neither MQTT nor MQIsdp",
                ))
            }
        };
        let v5 = version.is_v5();
        let flags = r.u8()?;
        check_connect_flags(flags, version)?;
        let keep_alive_secs = r.u16()?;
        let properties = if v5 {
            Properties::decode(&mut r, PropertyContext::Connect)?
        } else {
            Properties::default()
        };
        // [MQTT-3.1.3-4] the Client Identifier is a UTF-8 string.
        let client_id = r.string()?;
        let will = if flags & FLAG_WILL != 0 {
            let properties = if v5 {
                Properties::decode(&mut r, PropertyContext::Will)?
            } else {
                Properties::default()
            };
            // [MQTT-3.1.3-11] (5.0) / [MQTT-3.1.3-10] (3.1.1): the Will Topic is a UTF-8 string.
            let topic = r.string()?;
            if topic.is_empty() {
                return Err(DecodeError::TopicNameInvalid(
                    "[MQTT-4.7.3-1] empty Will Topic",
                ));
            }
            check_topic_name(topic.as_bytes())?;
            let payload = r.binary()?;
            let qos_bits = (flags >> 3) & 0x03;
            let qos = QoS::from_u8(qos_bits).ok_or(malformed("Will QoS 3"))?;
            Some(Will {
                topic,
                payload,
                qos,
                retain: flags & FLAG_WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        // [MQTT-3.1.2-17] (5.0) / [MQTT-3.1.2-19] (3.1.1): the User Name is present iff its flag.
        let username = if flags & FLAG_USERNAME != 0 {
            Some(r.string()?)
        } else {
            None
        };
        // [MQTT-3.1.2-19] (5.0) / [MQTT-3.1.2-21] (3.1.1): the Password is present iff its flag.
        let password = if flags & FLAG_PASSWORD != 0 {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol_version: version,
            clean_start: flags & FLAG_CLEAN_START != 0,
            keep_alive_secs,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.username.is_some() {
            flags |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            flags |= FLAG_PASSWORD;
        }
        if let Some(will) = &self.will {
            flags |= FLAG_WILL | ((will.qos as u8) << 3);
            if will.retain {
                flags |= FLAG_WILL_RETAIN;
            }
        }
        if self.clean_start {
            flags |= FLAG_CLEAN_START;
        }
        flags
    }

    pub(super) fn remaining_len(&self) -> usize {
        let version = self.protocol_version;
        let mut len = binary_len(protocol_name(version)) + 1 + 1 + 2;
        if version.is_v5() {
            len += self.properties.encoded_len(PropertyContext::Connect);
        }
        len += binary_len(self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if version.is_v5() {
                len += will.properties.encoded_len(PropertyContext::Will);
            }
            len += binary_len(will.topic.as_bytes()) + binary_len(&will.payload);
        }
        if let Some(username) = &self.username {
            len += binary_len(username.as_bytes());
        }
        if let Some(password) = &self.password {
            len += binary_len(password);
        }
        len
    }

    /// The exact encoded size of this CONNECT (always encoded by its own `protocol_version`).
    pub fn encoded_len(&self) -> usize {
        frame_len(self.remaining_len())
    }

    /// Appends this CONNECT, laid out for its own `protocol_version`; writes nothing when a
    /// value is over a wire-format limit.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check()?;
        let version = self.protocol_version;
        put_fixed_header(out, (PacketType::Connect as u8) << 4, self.remaining_len());
        put_binary(out, protocol_name(version));
        out.put_u8(version.level());
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive_secs);
        if version.is_v5() {
            self.properties.encode(PropertyContext::Connect, out);
        }
        put_binary(out, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            if version.is_v5() {
                will.properties.encode(PropertyContext::Will, out);
            }
            put_binary(out, will.topic.as_bytes());
            put_binary(out, &will.payload);
        }
        if let Some(username) = &self.username {
            put_binary(out, username.as_bytes());
        }
        if let Some(password) = &self.password {
            put_binary(out, password);
        }
        Ok(())
    }
}

/// The CONNECT flag rules (3.1.2.3), with the statement numbers of each version.
fn check_connect_flags(flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let v5 = version.is_v5();
    // MQTT 3.1 (`MQIsdp`) has neither the reserved-flag rule nor the rules tying Will QoS and
    // Will Retain to the Will Flag: a 3.1 client is not closed for them (Mosquitto checks the
    // reserved flag only for 3.1.1 and 5.0), and without a will the two are ignored.
    if version == ProtocolVersion::V3_1 {
        if flags & FLAG_WILL != 0 && (flags >> 3) & 0x03 == 3 {
            return Err(malformed("Will QoS 3 (MQTT 3.1 CONNECT flags)"));
        }
        if flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
            // 3.1 (like 3.1.1) pairs a password with a user name; Mosquitto refuses it too.
            return Err(malformed(
                "password without a user name (MQTT 3.1 CONNECT flags)",
            ));
        }
        return Ok(());
    }
    if flags & FLAG_RESERVED != 0 {
        return Err(malformed("[MQTT-3.1.2-3] reserved CONNECT flag set"));
    }
    let will_qos = (flags >> 3) & 0x03;
    // Will QoS or Will Retain without the Will Flag: the spec names no consequence and the
    // packet parses, so it is a Protocol Error (MQTT 5 section 1.2); only Will QoS 3 is named a
    // Malformed Packet ([MQTT-3.1.2-12]).
    if flags & FLAG_WILL == 0 {
        if will_qos != 0 {
            return Err(DecodeError::Protocol(if v5 {
                "[MQTT-3.1.2-11] Will QoS set without the Will Flag"
            } else {
                "[MQTT-3.1.2-13] Will QoS set without the Will Flag"
            }));
        }
        if flags & FLAG_WILL_RETAIN != 0 {
            return Err(DecodeError::Protocol(if v5 {
                "[MQTT-3.1.2-13] Will Retain set without the Will Flag"
            } else {
                "[MQTT-3.1.2-15] Will Retain set without the Will Flag"
            }));
        }
    } else if will_qos == 3 {
        return Err(malformed(if v5 {
            "[MQTT-3.1.2-12] Will QoS 3"
        } else {
            "[MQTT-3.1.2-14] Will QoS 3"
        }));
    }
    if !v5 && flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(malformed(
            "[MQTT-3.1.2-22] Password Flag set without the User Name Flag",
        ));
    }
    Ok(())
}

impl ConnAck {
    /// Decodes a CONNACK body laid out for `version`.
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        let session_present = match version {
            // 3.1 has no Session Present flag; the byte is reserved and not used.
            ProtocolVersion::V3_1 => false,
            _ => {
                if flags & 0xFE != 0 {
                    return Err(malformed(
                        "reserved CONNACK acknowledge flags set (3.2.2.1)",
                    ));
                }
                flags & 0x01 != 0
            }
        };
        let code = r.u8()?;
        let (reason_code, properties) = if version.is_v5() {
            let reason_code = ReasonCode::from_u8(code)
                .filter(|rc| rc.is_valid_for(PacketType::ConnAck))
                .ok_or(DecodeError::Protocol(
                    "reason code not valid for CONNACK (3.2.2.2)",
                ))?;
            (
                reason_code,
                Properties::decode(&mut r, PropertyContext::ConnAck)?,
            )
        } else {
            let return_code = ConnectReturnCode::from_u8(code)
                .ok_or(malformed("reserved CONNACK return code (3.2.2.3)"))?;
            (return_code.to_reason_code(), Properties::default())
        };
        if session_present && reason_code.is_error() {
            return Err(DecodeError::Protocol(if version.is_v5() {
                "[MQTT-3.2.2-6] Session Present set with an error reason code"
            } else {
                "[MQTT-3.2.2-4] Session Present set with a non-zero return code"
            }));
        }
        r.finish()?;
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(super) fn remaining_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            2 + self.properties.encoded_len(PropertyContext::ConnAck)
        } else {
            2
        }
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        frame_len(self.remaining_len(version))
    }

    /// Appends this CONNACK laid out for `version`; for 3.x the reason code is mapped to the
    /// closest 3.1.1 return code, and 3.1 carries no Session Present flag.
    /// Writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        put_fixed_header(
            out,
            (PacketType::ConnAck as u8) << 4,
            self.remaining_len(version),
        );
        let session_present = self.session_present && version != ProtocolVersion::V3_1;
        out.put_u8(u8::from(session_present));
        if version.is_v5() {
            out.put_u8(self.reason_code.as_u8());
            self.properties.encode(PropertyContext::ConnAck, out);
        } else {
            out.put_u8(self.reason_code.to_connect_return_code() as u8);
        }
        Ok(())
    }
}
