//! The only producer of wire bytes: primitive MQTT data types appended to a caller-owned `BytesMut`,
//! with the matching length functions so that every `encoded_len` is exact without encoding.

use bytes::{BufMut, BytesMut};

/// The largest value a variable byte integer can hold (1.5.5).
pub(crate) const VARINT_MAX: u32 = 268_435_455;

/// The number of bytes the variable byte integer encoding of `value` takes (1.5.5).
pub(crate) fn varint_len(value: usize) -> usize {
    debug_assert!(
        value <= VARINT_MAX as usize,
        "variable byte integer overflow"
    );
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Appends a variable byte integer in its minimal encoding ([MQTT-1.5.5-1]).
pub(crate) fn put_varint(out: &mut BytesMut, value: usize) {
    debug_assert!(
        value <= VARINT_MAX as usize,
        "variable byte integer overflow"
    );
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

/// The encoded length of binary data or a UTF-8 string: two length bytes plus the bytes
/// (capped at 65,535, as [`put_binary`] writes).
pub(crate) fn binary_len(bytes: &[u8]) -> usize {
    2 + bytes.len().min(usize::from(u16::MAX))
}

/// Appends binary data or a UTF-8 string with its two-byte length (1.5.4, 1.5.6). Longer data is a
/// bug in the caller (asserted in debug builds) and is cut at 65,535 bytes so the frame stays valid.
pub(crate) fn put_binary(out: &mut BytesMut, bytes: &[u8]) {
    debug_assert!(
        bytes.len() <= usize::from(u16::MAX),
        "string over 65,535 bytes"
    );
    let len = bytes.len().min(usize::from(u16::MAX));
    // `len` is at most u16::MAX, so the cast is exact.
    out.put_u16(len as u16);
    out.put_slice(&bytes[..len]);
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
