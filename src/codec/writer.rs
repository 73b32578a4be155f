//! The only producer of wire bytes: primitive MQTT data types appended to a caller-owned `BytesMut`,
//! with the matching length functions so that every `encoded_len` is exact without encoding.

use bytes::{BufMut, BytesMut};

/// The largest value a variable byte integer can hold (1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// The number of bytes the variable byte integer encoding of `value` takes (1.5.5); values over
/// [`VARINT_MAX`] count as 4 (encoders refuse them first, `limits.rs`).
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a variable byte integer in its minimal encoding ([MQTT-1.5.5-1]). Encoders check
/// every value against [`VARINT_MAX`] before writing anything (`limits.rs`); the clamp below
/// only keeps the encoding four bytes long should a value ever get here unchecked.
pub(crate) fn put_varint(out: &mut BytesMut, value: usize) {
    let mut value = value.min(VARINT_MAX as usize);
    loop {
        // The mask keeps the value in 0..=127, so the cast is exact.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

/// The encoded length of binary data or a UTF-8 string: two length bytes plus the bytes.
pub(crate) fn binary_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

/// Appends binary data or a UTF-8 string with its two-byte length (1.5.4, 1.5.6). Encoders check
/// every field against 65,535 bytes before writing anything (`limits.rs`), so `bytes` fits; a
/// field that got here unchecked is written whole with its length prefix saturated rather than
/// cut (cutting could split a UTF-8 character), and the peer's decoder rejects the frame.
pub(crate) fn put_binary(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.put_slice(bytes);
}

/// Appends the fixed header: the first byte and the remaining length. Every encoder starts here
/// with its exact remaining length, so this reserves room for the whole frame once.
pub(crate) fn put_fixed_header(out: &mut BytesMut, first_byte: u8, remaining_len: usize) {
    out.reserve(frame_len(remaining_len));
    out.put_u8(first_byte);
    put_varint(out, remaining_len);
}

/// The total frame length for a body of `remaining_len` bytes.
pub(crate) fn frame_len(remaining_len: usize) -> usize {
    1 + varint_len(remaining_len) + remaining_len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::reader::parse_varint;

    #[test]
    fn varint_round_trip_and_len() {
        for value in [
            0usize,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            268_435_455,
        ] {
            let mut out = BytesMut::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(parse_varint(&out), Ok(Some((value as u32, out.len()))));
        }
    }

    #[test]
    fn binary_has_length_prefix() {
        let mut out = BytesMut::new();
        put_binary(&mut out, b"MQTT");
        assert_eq!(&out[..], &[0x00, 0x04, b'M', b'Q', b'T', b'T']);
        assert_eq!(binary_len(b"MQTT"), 6);
    }
}
