//! DISCONNECT (3.14) and AUTH (3.15): an optional reason code and properties (MQTT 5); a 3.x
//! DISCONNECT has no variable header. PINGREQ/PINGRESP (3.12, 3.13) have no body at all.

use super::properties::PropertyContext;
use super::reader::Reader;
use super::writer::{frame_len, put_fixed_header};
use super::EncodeError;
use super::{Auth, DecodeError, Disconnect, PacketType, Properties, ProtocolVersion, ReasonCode};
use bytes::{BufMut, BytesMut};

/// Decodes the shared layout of DISCONNECT and AUTH: nothing (Success, no properties), a reason
/// code, or a reason code and properties (3.14.2.1, 3.15.2.1).
fn decode_reason_and_properties(
    mut r: Reader,
    packet_type: PacketType,
    context: PropertyContext,
    rule: &'static str,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason_code = ReasonCode::from_u8(r.u8()?)
        .filter(|rc| rc.is_valid_for(packet_type))
        .ok_or(DecodeError::Protocol(rule))?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(&mut r, context)?
    };
    r.finish()?;
    Ok((reason_code, properties))
}

/// The body length of the shared DISCONNECT/AUTH layout, omitting what MQTT 5 allows.
pub(super) fn reason_and_properties_len(
    reason_code: ReasonCode,
    properties: &Properties,
    context: PropertyContext,
) -> usize {
    if properties.body_len(context) > 0 {
        1 + properties.encoded_len(context)
    } else if reason_code != ReasonCode::Success {
        1
    } else {
        0
    }
}

fn encode_reason_and_properties(
    packet_type: PacketType,
    reason_code: ReasonCode,
    properties: &Properties,
    context: PropertyContext,
    out: &mut BytesMut,
) {
    let len = reason_and_properties_len(reason_code, properties, context);
    put_fixed_header(out, (packet_type as u8) << 4, len);
    if len > 0 {
        out.put_u8(reason_code.as_u8());
    }
    if len > 1 {
        properties.encode(context, out);
    }
}

impl Disconnect {
    pub(crate) fn decode(r: Reader, version: ProtocolVersion) -> Result<Disconnect, DecodeError> {
        if !version.is_v5() {
            // 3.1.1 section 3.14: DISCONNECT has no variable header and no payload.
            r.finish()?;
            return Ok(Disconnect::default());
        }
        let (reason_code, properties) = decode_reason_and_properties(
            r,
            PacketType::Disconnect,
            PropertyContext::Disconnect,
            "reason code not valid for DISCONNECT (3.14.2.1)",
        )?;
        Ok(Disconnect {
            reason_code,
            properties,
        })
    }

    /// The exact encoded size for `version`.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        if version.is_v5() {
            frame_len(reason_and_properties_len(
                self.reason_code,
                &self.properties,
                PropertyContext::Disconnect,
            ))
        } else {
            2
        }
    }

    /// Appends this DISCONNECT; 3.x carries neither reason code nor properties. Writes nothing
    /// when a value is over a wire-format limit.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check(version)?;
        if version.is_v5() {
            encode_reason_and_properties(
                PacketType::Disconnect,
                self.reason_code,
                &self.properties,
                PropertyContext::Disconnect,
                out,
            );
        } else {
            put_fixed_header(out, (PacketType::Disconnect as u8) << 4, 0);
        }
        Ok(())
    }
}

impl Auth {
    pub(crate) fn decode(r: Reader) -> Result<Auth, DecodeError> {
        let (reason_code, properties) = decode_reason_and_properties(
            r,
            PacketType::Auth,
            PropertyContext::Auth,
            "reason code not valid for AUTH (3.15.2.1)",
        )?;
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    /// The exact encoded size (AUTH exists only in MQTT 5).
    pub fn encoded_len(&self) -> usize {
        frame_len(reason_and_properties_len(
            self.reason_code,
            &self.properties,
            PropertyContext::Auth,
        ))
    }

    /// Appends this AUTH; writes nothing when a value is over a wire-format limit.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        self.check()?;
        encode_reason_and_properties(
            PacketType::Auth,
            self.reason_code,
            &self.properties,
            PropertyContext::Auth,
            out,
        );
        Ok(())
    }
}
