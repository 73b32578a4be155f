//! Sans-IO MQTT codec for MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (level 4) and 5.0 (level 5).
//!
//! The codec never touches a socket or a clock. Bytes come in through [`decode`], which frames a
//! packet (checking the remaining length against the maximum packet size *before* the body is
//! buffered), splits the frame off the caller's `BytesMut`, and parses it with one reader that
//! rejects leftovers. Packets go out through [`Packet::encode`] into a caller-owned `BytesMut`;
//! [`Packet::encoded_len`] computes the exact wire size without encoding. Encoding checks the wire
//! format's limits first (strings of at most 65,535 bytes, packets of at most 268,435,455): a
//! packet built from what a peer sent can be over them, so that is an [`EncodeError`], never a
//! panic or a truncated field.
//!
//! Zero-copy: every string and binary field of a decoded packet is a `Bytes` slice of the frame, so a
//! decoded PUBLISH shares its topic and payload with the read buffer and fan-out shares it further.
//! [`Publish::encode_header`] writes a PUBLISH without its payload, so a sender can follow it with
//! the shared payload bytes.
//!
//! Every rule a frame can break is a [`DecodeError`] naming the rule (with its spec statement number
//! where the spec gives one) and mapping to the MQTT 5 reason code to send.
//!
//! Versions: MQTT 3.1 and 3.1.1 share every layout but CONNECT's protocol name and level, the
//! CONNACK acknowledge flags (3.1 has no Session Present) and the SUBACK failure code 0x80
//! (3.1.1 only); 3.1 also allowed QoS 1 and DUP in the fixed header of PUBREL, SUBSCRIBE and
//! UNSUBSCRIBE, which decoding accepts for 3.1 only. MQTT 5 adds properties, reason codes and AUTH.
//!
//! What the codec does not check, because it needs session state or the direction of the packet
//! (the broker and client do): the 3.1 client identifier length of 1 to 23 characters, a client
//! identifier the server rejects, Topic Alias above the negotiated maximum, a Subscription
//! Identifier on a client-to-server PUBLISH ([MQTT-3.3.4-6]), packet identifiers in use, the
//! payload against Payload Format Indicator ([MQTT-3.3.2-4] is a MAY), and which packets may come
//! when (a second CONNECT, AUTH without an Authentication Method).
//!
//! Folder guide:
//! - `mod.rs`: [`decode`], fixed-header framing, [`Packet::encode`] and [`Packet::encoded_len`].
//! - `types.rs`: the packet types ([`Packet`], [`Publish`], ...), [`MqttString`], [`QoS`].
//! - `error.rs`: [`DecodeError`], each variant mapped to its MQTT 5 reason code.
//! - `limits.rs`: [`EncodeError`], the length limits every encoder checks before writing.
//! - `reason.rs`: [`ReasonCode`] (with which packet allows which) and the 3.1.1 return codes.
//! - `properties.rs`: [`Properties`], every MQTT 5 property, its wire type, which packet may carry
//!   which, the duplicate rules; decoding and encoding of property lists.
//! - `reader.rs` / `writer.rs`: the only places that consume and produce primitive wire types.
//! - `topic_rules.rs`: the topic name and filter rules a frame must pass.
//! - one file per packet family: `connect.rs` (CONNECT, CONNACK), `publish.rs`, `ack.rs` (PUBACK,
//!   PUBREC, PUBREL, PUBCOMP), `subscribe.rs` (SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK),
//!   `disconnect.rs` (DISCONNECT, AUTH).

mod ack;
mod connect;
mod disconnect;
mod error;
mod limits;
mod properties;
mod publish;
mod reader;
mod reason;
mod subscribe;
mod topic_rules;
mod types;
mod writer;

pub use ack::short_ack;
pub use error::DecodeError;
pub use limits::{EncodeError, FIELD_LEN_MAX};
pub use properties::{MoreProperties, Properties, PropertyContext, PropertyId, PropertyType};
pub use publish::PublishFlags;
pub use reason::{ConnectReturnCode, ReasonCode};
pub use types::*;

use bytes::{Buf, Bytes, BytesMut};
use reader::{parse_varint, Reader};
use writer::put_fixed_header;

/// Default maximum packet size the broker accepts (1 MiB), overridable by `--max-packet-size`.
pub const MAX_PACKET_SIZE_DEFAULT: u32 = 1024 * 1024;
/// The largest remaining length the four-byte variable byte integer can express.
pub const REMAINING_LENGTH_MAX: u32 = 268_435_455;

/// The fixed header of a frame whose length is known (the body may not be buffered yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The packet type from the first byte.
    pub packet_type: PacketType,
    /// The low nibble of the first byte.
    pub flags: u8,
    /// Bytes of the fixed header: the first byte and 1 to 4 remaining-length bytes.
    pub header_len: usize,
    /// The remaining length: bytes of the body after the fixed header.
    pub remaining_len: usize,
}

impl FrameHeader {
    /// The whole frame's length.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

/// The packet type of the frame at the front of `buf`, if there is a first byte and its type is
/// not the reserved value 0.
pub fn peek_packet_type(buf: &[u8]) -> Option<PacketType> {
    buf.first().copied().and_then(PacketType::from_first_byte)
}

/// Checks the fixed header at the front of `buf` without consuming anything: the first byte's type
/// and flags for `version`, the remaining length's encoding, and the frame size against
/// `max_packet_size`. `Ok(None)` while the fixed header itself is incomplete. Whether the body is
/// buffered is not checked: compare `buf.len()` with [`FrameHeader::frame_len`].
pub fn check_frame(
    buf: &[u8],
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<FrameHeader>, DecodeError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_first_byte(first_byte, version)?;
    let Some((remaining_len, varint_len)) = parse_varint(&buf[1..])? else {
        return Ok(None);
    };
    let header_len = 1 + varint_len;
    let size = header_len as u64 + u64::from(remaining_len);
    if size > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    Ok(Some(FrameHeader {
        packet_type,
        flags: first_byte & 0x0F,
        header_len,
        remaining_len: remaining_len as usize,
    }))
}

/// The rules on the first byte: no reserved packet type, and the reserved flag bits of each
/// packet type as listed ([MQTT-2.1.3-1]).
fn check_first_byte(first_byte: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let packet_type = PacketType::from_first_byte(first_byte)
        .ok_or(DecodeError::Malformed("reserved packet type 0 (2.1.2)"))?;
    let flags = first_byte & 0x0F;
    match packet_type {
        PacketType::Publish => {
            let qos = (flags >> 1) & 0x03;
            if qos == 3 {
                return Err(DecodeError::Malformed("[MQTT-3.3.1-4] PUBLISH QoS 3"));
            }
            // 3.1 says DUP "applies to" QoS > 0 messages but states no rule for QoS 0. For
            // 3.1.1/5.0 this is a Malformed Packet: DUP is a fixed-header flag, and "if invalid
            // flags are received it is a Malformed Packet" (2.1.3).
            if qos == 0 && flags & 0x08 != 0 && version != ProtocolVersion::V3_1 {
                return Err(DecodeError::Malformed(
                    "[MQTT-3.3.1-2] DUP set on a QoS 0 PUBLISH",
                ));
            }
        }
        PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => {
            // MQTT 3.1 sent these with QoS 1 and allowed DUP on them; 3.1.1 and 5.0 fix 0b0010.
            // (For 3.1 any flags: see below.)
            let allowed = flags == 0x02 || version == ProtocolVersion::V3_1;
            if !allowed {
                return Err(DecodeError::Malformed(match packet_type {
                    PacketType::PubRel => "[MQTT-3.6.1-1] PUBREL fixed-header flags not 0b0010",
                    PacketType::Subscribe => {
                        "[MQTT-3.8.1-1] SUBSCRIBE fixed-header flags not 0b0010"
                    }
                    _ => "[MQTT-3.10.1-1] UNSUBSCRIBE fixed-header flags not 0b0010",
                }));
            }
        }
        PacketType::Auth if !version.is_v5() => {
            return Err(DecodeError::Malformed(
                "packet type 15 is reserved before MQTT 5 (3.1.1 2.2.1)",
            ));
        }
        // MQTT 3.1 has no reserved-flag rule: its fixed header carries DUP, QoS and RETAIN on
        // every packet, "not used" where they mean nothing. Mosquitto checks these flags only
        // for 3.1.1 and 5.0 too, so a 3.1 client setting them is not closed.
        _ if version == ProtocolVersion::V3_1 => {}
        _ => {
            if flags != 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-2.1.3-1] reserved fixed-header flags set",
                ));
            }
        }
    }
    Ok(packet_type)
}

/// Tries to split one complete packet off the front of `buf` and decode it.
///
/// Returns `Ok(None)` when `buf` does not yet hold a whole frame (nothing is consumed then), and
/// `Err(DecodeError::PacketTooLarge)` as soon as the fixed header announces a packet larger than
/// `max_packet_size` (total size: fixed header + remaining length), before the body is buffered;
/// nothing is reserved or allocated for an announced size. `version` is the protocol version
/// negotiated by CONNECT; a CONNECT itself is parsed by its own protocol level whatever `version`
/// says. After an error the connection must be closed; what is left in `buf` is unspecified.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = check_frame(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    let mut frame = buf.split_to(header.frame_len()).freeze();
    frame.advance(header.header_len);
    decode_body(
        header.packet_type,
        header.flags,
        Reader::new(frame),
        version,
    )
    .map(Some)
}

/// [`decode`], also returning the whole frame as received (fixed header included), shared with
/// the packet's fields: a broker forwards a PUBLISH byte for byte when the receiver's layout is
/// the sender's.
pub fn decode_with_frame(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<(Packet, Bytes)>, DecodeError> {
    let Some((header, frame)) = split_frame(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    let packet = decode_frame(&header, &frame, version)?;
    Ok(Some((packet, frame)))
}

/// The framing half of [`decode_with_frame`]: checks the fixed header ([`check_frame`]) and
/// splits the whole frame off `buf`, without parsing its body. `Ok(None)` (nothing consumed)
/// until the whole frame is buffered.
pub fn split_frame(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Result<Option<(FrameHeader, Bytes)>, DecodeError> {
    let Some(header) = check_frame(buf, version, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    Ok(Some((header, buf.split_to(header.frame_len()).freeze())))
}

/// The parsing half of [`decode_with_frame`]: decodes a frame [`split_frame`] returned. A pure
/// function of the frame's bytes (the broker contains a panic here to the one connection,
/// `broker::fault`).
pub fn decode_frame(
    header: &FrameHeader,
    frame: &Bytes,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let body = frame.slice(header.header_len..);
    decode_body(header.packet_type, header.flags, Reader::new(body), version)
}

fn decode_body(
    packet_type: PacketType,
    flags: u8,
    r: Reader,
    version: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    Ok(match packet_type {
        PacketType::Connect => Packet::Connect(Box::new(Connect::decode(r)?)),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(r, version)?),
        PacketType::Publish => Packet::Publish(Publish::decode(flags, r, version)?),
        PacketType::PubAck => Packet::PubAck(Ack::decode(packet_type, r, version)?),
        PacketType::PubRec => Packet::PubRec(Ack::decode(packet_type, r, version)?),
        PacketType::PubRel => Packet::PubRel(Ack::decode(packet_type, r, version)?),
        PacketType::PubComp => Packet::PubComp(Ack::decode(packet_type, r, version)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(r, version)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(r, version)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(r, version)?),
        PacketType::PingReq => {
            r.finish()?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            r.finish()?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(r, version)?),
        PacketType::Auth => Packet::Auth(Auth::decode(r)?),
    })
}

impl Packet {
    /// Appends this packet's exact wire bytes for `version` to `out`. A CONNECT is laid out by its
    /// own `protocol_version`; an AUTH always in the MQTT 5 layout. Properties not allowed on the
    /// packet are not written. A value over a limit of the wire format (a string over 65,535
    /// bytes, a packet over 268,435,455) is an [`EncodeError`], and nothing is written.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Packet::Connect(connect) => connect.encode(out),
            Packet::ConnAck(connack) => connack.encode(version, out),
            Packet::Publish(publish) => publish.encode(version, out),
            Packet::PubAck(ack) => ack.encode(PacketType::PubAck, version, out),
            Packet::PubRec(ack) => ack.encode(PacketType::PubRec, version, out),
            Packet::PubRel(ack) => ack.encode(PacketType::PubRel, version, out),
            Packet::PubComp(ack) => ack.encode(PacketType::PubComp, version, out),
            Packet::Subscribe(subscribe) => subscribe.encode(version, out),
            Packet::SubAck(suback) => suback.encode(version, out),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.encode(version, out),
            Packet::UnsubAck(unsuback) => unsuback.encode(version, out),
            Packet::PingReq => {
                put_fixed_header(out, (PacketType::PingReq as u8) << 4, 0);
                Ok(())
            }
            Packet::PingResp => {
                put_fixed_header(out, (PacketType::PingResp as u8) << 4, 0);
                Ok(())
            }
            Packet::Disconnect(disconnect) => disconnect.encode(version, out),
            Packet::Auth(auth) => auth.encode(out),
        }
    }

    /// The number of bytes [`Packet::encode`] writes for `version`, computed without encoding.
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        match self {
            Packet::Connect(connect) => connect.encoded_len(),
            Packet::ConnAck(connack) => connack.encoded_len(version),
            Packet::Publish(publish) => publish.encoded_len(version),
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => ack.encoded_len(version),
            Packet::Subscribe(subscribe) => subscribe.encoded_len(version),
            Packet::SubAck(suback) => suback.encoded_len(version),
            Packet::Unsubscribe(unsubscribe) => unsubscribe.encoded_len(version),
            Packet::UnsubAck(unsuback) => unsuback.encoded_len(version),
            Packet::PingReq | Packet::PingResp => 2,
            Packet::Disconnect(disconnect) => disconnect.encoded_len(version),
            Packet::Auth(auth) => auth.encoded_len(),
        }
    }
}

/// Keeps `Bytes` in the public API surface visible for docs.
#[doc(hidden)]
pub type Payload = bytes::Bytes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_packet_type_reads_the_high_nibble() {
        assert_eq!(peek_packet_type(&[]), None);
        assert_eq!(peek_packet_type(&[0x00]), None);
        assert_eq!(peek_packet_type(&[0x10]), Some(PacketType::Connect));
        assert_eq!(peek_packet_type(&[0x3D, 0xFF]), Some(PacketType::Publish));
        assert_eq!(peek_packet_type(&[0xF0]), Some(PacketType::Auth));
    }

    #[test]
    fn check_frame_knows_the_length_before_the_body() {
        let header = check_frame(&[0x30, 0xC1, 0x02], ProtocolVersion::V3_1_1, u32::MAX);
        assert_eq!(
            header,
            Ok(Some(FrameHeader {
                packet_type: PacketType::Publish,
                flags: 0,
                header_len: 3,
                remaining_len: 321,
            }))
        );
        assert_eq!(header.ok().flatten().map(|h| h.frame_len()), Some(324));
        assert_eq!(
            check_frame(&[0x30, 0xC1], ProtocolVersion::V3_1_1, u32::MAX),
            Ok(None)
        );
    }

    #[test]
    fn packet_type_of_every_variant_matches_its_first_byte() {
        let packets = [
            Packet::Connect(Box::default()),
            Packet::ConnAck(ConnAck::default()),
            Packet::PubAck(Ack::default()),
            Packet::PubRel(Ack::default()),
            Packet::PingReq,
            Packet::PingResp,
            Packet::Disconnect(Disconnect::default()),
            Packet::Auth(Auth::default()),
        ];
        for packet in packets {
            let mut out = BytesMut::new();
            packet
                .encode(ProtocolVersion::V5, &mut out)
                .expect("encodes");
            assert_eq!(peek_packet_type(&out), Some(packet.packet_type()));
        }
    }
}
