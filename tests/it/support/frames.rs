//! Helpers shared by the codec integration tests: hand-built frames.

use bytes::BytesMut;
use shardmq::codec::{decode, DecodeError, Packet, ProtocolVersion, ReasonCode};

/// A frame: the first byte, the remaining length (minimal variable byte integer), the body.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

/// A two-byte-length-prefixed string or binary field.
pub fn str16(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A property list: the variable-byte length, then `props`.
pub fn props(props: &[u8]) -> Vec<u8> {
    let mut out = frame(0, props);
    out.remove(0);
    out
}

/// A CONNECT frame: protocol name and level, flags, keep alive 60, optional property block
/// (raw, including its length), then the raw payload.
pub fn connect(
    name: &[u8],
    level: u8,
    flags: u8,
    properties: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = str16(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x3C]);
    if let Some(p) = properties {
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// Decodes `bytes` as one frame.
pub fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Result<Option<Packet>, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    decode(&mut buf, version, u32::MAX)
}

/// Asserts that `bytes` is rejected with `reason` and that the error names `rule`.
#[track_caller]
pub fn assert_rejected(bytes: &[u8], version: ProtocolVersion, reason: ReasonCode, rule: &str) {
    match decode_one(bytes, version) {
        Err(e) => {
            assert_eq!(e.reason_code(), reason, "{version:?} {bytes:02X?}: {e}");
            assert!(
                e.to_string().contains(rule),
                "{version:?} {bytes:02X?}: `{e}` lacks `{rule}`"
            );
        }
        Ok(p) => panic!("{version:?} {bytes:02X?} accepted as {p:?}, expected {rule}"),
    }
}

/// Asserts that `bytes` decodes to a packet.
#[track_caller]
pub fn assert_accepted(bytes: &[u8], version: ProtocolVersion) -> Packet {
    match decode_one(bytes, version) {
        Ok(Some(p)) => p,
        other => panic!("{version:?} {bytes:02X?}: {other:?}"),
    }
}
