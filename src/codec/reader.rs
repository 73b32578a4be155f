//! The only consumer of wire bytes. A [`Reader`] walks one frame body (a `Bytes` slice of the read
//! buffer), hands out sub-slices without copying, and checks every length against what is left, so
//! no decoder indexes a slice by hand and no input can make one panic.

use super::{DecodeError, MqttString};
use bytes::{Buf, Bytes};

/// The error every read past the end of a frame (or of a length-prefixed section) returns.
const TRUNCATED: DecodeError =
    DecodeError::Malformed("remaining length shorter than the packet's fields (2.1.4)");

/// A cursor over the body of one frame (or of one length-prefixed section of it).
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    /// A reader over `buf`.
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    /// Bytes not yet consumed.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte was consumed.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// One byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    /// A big-endian two-byte integer (1.5.2).
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    /// A big-endian four-byte integer (1.5.3).
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer (1.5.5): at most four bytes, minimal encoding ([MQTT-1.5.5-1]).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match parse_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(TRUNCATED),
        }
    }

    /// The next `len` bytes, shared with the frame (no copy).
    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < len {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(len))
    }

    /// Everything that is left, shared with the frame.
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Binary data: a two-byte length, then that many bytes (1.5.6).
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 encoded string (1.5.4): well-formed UTF-8 ([MQTT-1.5.4-1]; surrogates included, which
    /// `str::from_utf8` rejects) without U+0000 ([MQTT-1.5.4-2]).
    pub(crate) fn string(&mut self) -> Result<MqttString, DecodeError> {
        let bytes = self.binary()?;
        check_utf8(&bytes)?;
        Ok(MqttString::from_validated(bytes))
    }

    /// A sub-reader over the next `len` bytes, for a length-prefixed section (the property list).
    pub(crate) fn sub(&mut self, len: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.take(len)?))
    }

    /// Rejects bytes left over after the last field (trailing bytes inside a frame are malformed).
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "bytes left over after the packet's last field (2.1.4)",
            ))
        }
    }
}

/// Checks the rules on UTF-8 encoded strings: well-formed ([MQTT-1.5.4-1]), no U+0000 ([MQTT-1.5.4-2]).
pub(crate) fn check_utf8(bytes: &[u8]) -> Result<(), DecodeError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(DecodeError::Malformed(
            "[MQTT-1.5.4-1] string is not well-formed UTF-8",
        ));
    }
    if bytes.contains(&0) {
        return Err(DecodeError::Malformed(
            "[MQTT-1.5.4-2] string contains U+0000",
        ));
    }
    Ok(())
}

/// Parses a variable byte integer from the front of `bytes`: `Ok(None)` if `bytes` ends inside it,
/// else the value and its length. More than four bytes, or a non-minimal encoding, is malformed.
pub(crate) fn parse_varint(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (index, &byte) in bytes.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            if index > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-1.5.5-1] variable byte integer not in its minimal encoding",
                ));
            }
            return Ok(Some((value, index + 1)));
        }
    }
    if bytes.len() >= 4 {
        return Err(DecodeError::Malformed(
            "variable byte integer longer than four bytes (1.5.5)",
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_boundaries() {
        let cases: &[(&[u8], u32)] = &[
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ];
        for &(bytes, value) in cases {
            assert_eq!(parse_varint(bytes), Ok(Some((value, bytes.len()))));
        }
    }

    #[test]
    fn varint_incomplete_is_none() {
        assert_eq!(parse_varint(&[]), Ok(None));
        assert_eq!(parse_varint(&[0x80]), Ok(None));
        assert_eq!(parse_varint(&[0x80, 0x80, 0x80]), Ok(None));
    }

    #[test]
    fn varint_five_bytes_is_malformed() {
        assert!(matches!(
            parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            parse_varint(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn varint_non_minimal_is_malformed() {
        assert!(matches!(
            parse_varint(&[0x80, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            parse_varint(&[0xFF, 0x80, 0x00]),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn reads_past_end_are_errors() {
        let mut r = Reader::new(Bytes::from_static(&[0x00]));
        assert!(r.u16().is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x05, b'a']));
        assert!(r.binary().is_err());
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3]));
        assert!(r.u32().is_err());
        assert!(r.sub(4).is_err());
    }

    #[test]
    fn sub_readers_are_bounded_and_share_the_frame() {
        let frame = Bytes::from_static(&[0x03, 0x00, 0x01, b'x', 0xFF]);
        let mut r = Reader::new(frame.clone());
        let len = r.u8().map(usize::from);
        let mut sub = r.sub(len.unwrap_or(0)).expect("in bounds");
        let field = sub.binary().expect("whole field");
        assert_eq!(&field[..], b"x");
        assert_eq!(field.as_ptr(), frame[3..].as_ptr(), "zero-copy");
        assert!(sub.u8().is_err(), "the sub-reader ends with its section");
        assert_eq!(r.u8(), Ok(0xFF));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn string_rules() {
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, 0xC3, 0x28]));
        assert!(matches!(r.string(), Err(DecodeError::Malformed(m)) if m.contains("1.5.4-1")));
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, b'a', 0x00]));
        assert!(matches!(r.string(), Err(DecodeError::Malformed(m)) if m.contains("1.5.4-2")));
        // An encoded surrogate (U+D800) is ill-formed UTF-8.
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x03, 0xED, 0xA0, 0x80]));
        assert!(r.string().is_err());
        let mut r = Reader::new(Bytes::from_static(&[0x00, 0x02, b'h', b'i', 0xAA]));
        assert_eq!(r.string().map(|s| s.to_string()), Ok("hi".to_string()));
        assert!(r.finish().is_err());
    }
}
