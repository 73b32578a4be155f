//! The few MQTT wire forms the raw relay needs: framing, and fixed-layout encoders for the
//! handshake packets and acknowledgements.
//!
//! This is deliberately not a codec. The relay is the measuring stick for the load generator
//! (the throughput ceiling of this machine), so it looks at as few bytes as it can: the fixed
//! header of every frame, the protocol level of CONNECT, the filters of SUBSCRIBE and the topic
//! and packet identifier of PUBLISH. Everything else is forwarded or dropped as opaque bytes.
//! The load generator's `--engine raw` session builds its frames from the same encoders.

/// Largest frame the relay accepts (fixed header included); larger frames close the connection.
pub const FRAME_SIZE_MAX: usize = 1024 * 1024;

/// Why bytes could not be framed. The relay closes the connection on any of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The remaining length used more than four bytes ([MQTT-1.5.5-1] allows at most four).
    BadRemainingLength,
    /// The frame is larger than [`FRAME_SIZE_MAX`].
    TooLarge,
    /// A field inside the frame ran past its end.
    Truncated,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::BadRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            WireError::TooLarge => write!(f, "frame larger than {FRAME_SIZE_MAX} bytes"),
            WireError::Truncated => f.write_str("field runs past the end of its frame"),
        }
    }
}

/// The fixed header of one frame at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The first byte: packet type in the high nibble, flags in the low nibble.
    pub first_byte: u8,
    /// Bytes taken by the fixed header (1 + 1..=4).
    pub header_len: usize,
    /// The remaining length: bytes after the fixed header.
    pub body_len: usize,
}

impl Frame {
    /// The control packet type (1 = CONNECT ... 15 = AUTH).
    pub fn packet_type(&self) -> u8 {
        self.first_byte >> 4
    }

    /// The whole frame's size in bytes.
    pub fn len(&self) -> usize {
        self.header_len + self.body_len
    }

    /// Whether the frame is empty; never true (a fixed header is at least two bytes).
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// CONNECT's packet type.
pub const CONNECT: u8 = 1;
/// PUBLISH's packet type.
pub const PUBLISH: u8 = 3;
/// PUBACK's packet type.
pub const PUBACK: u8 = 4;
/// PUBREC's packet type.
pub const PUBREC: u8 = 5;
/// PUBREL's packet type.
pub const PUBREL: u8 = 6;
/// PUBCOMP's packet type.
pub const PUBCOMP: u8 = 7;
/// SUBSCRIBE's packet type.
pub const SUBSCRIBE: u8 = 8;
/// UNSUBSCRIBE's packet type.
pub const UNSUBSCRIBE: u8 = 10;
/// PINGREQ's packet type.
pub const PINGREQ: u8 = 12;
/// DISCONNECT's packet type.
pub const DISCONNECT: u8 = 14;

/// Reads the fixed header at the front of `buf`: `Ok(None)` until the whole frame is buffered.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, WireError> {
    let Some(&first_byte) = buf.first() else {
        return Ok(None);
    };
    let mut body_len = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        body_len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let frame = Frame {
                first_byte,
                header_len: 2 + i,
                body_len,
            };
            if frame.len() > FRAME_SIZE_MAX {
                return Err(WireError::TooLarge);
            }
            return Ok((buf.len() >= frame.len()).then_some(frame));
        }
    }
    Err(WireError::BadRemainingLength)
}

/// Reads a variable byte integer; returns (value, bytes used).
fn read_varint(buf: &[u8]) -> Result<(usize, usize), WireError> {
    let mut value = 0usize;
    for i in 0..4 {
        let byte = *buf.get(i).ok_or(WireError::Truncated)?;
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(WireError::BadRemainingLength)
}

fn read_u16(buf: &[u8], at: usize) -> Result<u16, WireError> {
    match buf.get(at..at + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]])),
        None => Err(WireError::Truncated),
    }
}

/// The protocol level of a CONNECT body (3, 4 or 5): after the length-prefixed protocol name.
pub fn connect_level(body: &[u8]) -> Result<u8, WireError> {
    let name_len = usize::from(read_u16(body, 0)?);
    body.get(2 + name_len).copied().ok_or(WireError::Truncated)
}

/// The topic and packet identifier of a PUBLISH frame (`frame` is its fixed header, `bytes` the
/// whole frame). The packet identifier is 0 for QoS 0.
pub fn publish_topic_and_id<'a>(
    frame: &Frame,
    bytes: &'a [u8],
) -> Result<(&'a [u8], u16), WireError> {
    let body = bytes
        .get(frame.header_len..frame.len())
        .ok_or(WireError::Truncated)?;
    let topic_len = usize::from(read_u16(body, 0)?);
    let topic = body.get(2..2 + topic_len).ok_or(WireError::Truncated)?;
    let qos = (frame.first_byte >> 1) & 0x03;
    let packet_id = if qos > 0 {
        read_u16(body, 2 + topic_len)?
    } else {
        0
    };
    Ok((topic, packet_id))
}

/// A SUBSCRIBE's filters, each with its requested QoS.
pub type Filters<'a> = Vec<(&'a [u8], u8)>;

/// The packet identifier of a SUBSCRIBE body and its filters with their requested QoS.
pub fn subscribe_filters(body: &[u8], v5: bool) -> Result<(u16, Filters<'_>), WireError> {
    let packet_id = read_u16(body, 0)?;
    let mut at = 2;
    if v5 {
        let (props_len, used) = read_varint(body.get(at..).ok_or(WireError::Truncated)?)?;
        at += used + props_len;
    }
    let mut filters = Vec::new();
    while at < body.len() {
        let len = usize::from(read_u16(body, at)?);
        let filter = body.get(at + 2..at + 2 + len).ok_or(WireError::Truncated)?;
        let options = *body.get(at + 2 + len).ok_or(WireError::Truncated)?;
        filters.push((filter, options & 0x03));
        at += 3 + len;
    }
    Ok((packet_id, filters))
}

/// How many filters an UNSUBSCRIBE body carries.
pub fn unsubscribe_count(body: &[u8], v5: bool) -> Result<usize, WireError> {
    let mut at = 2;
    if v5 {
        let (props_len, used) = read_varint(body.get(at..).ok_or(WireError::Truncated)?)?;
        at += used + props_len;
    }
    let mut count = 0;
    while at < body.len() {
        at += 2 + usize::from(read_u16(body, at)?);
        count += 1;
    }
    if at > body.len() {
        return Err(WireError::Truncated);
    }
    Ok(count)
}

/// The packet identifier at the front of an acknowledgement or UNSUBSCRIBE body.
pub fn packet_id(body: &[u8]) -> Result<u16, WireError> {
    read_u16(body, 0)
}

/// Appends a successful CONNACK (session not present).
pub fn put_connack(out: &mut Vec<u8>, v5: bool) {
    if v5 {
        // Flags, reason code, empty property length.
        out.extend_from_slice(&[0x20, 0x03, 0x00, 0x00, 0x00]);
    } else {
        out.extend_from_slice(&[0x20, 0x02, 0x00, 0x00]);
    }
}

/// Appends a SUBACK granting each requested QoS.
pub fn put_suback(out: &mut Vec<u8>, packet_id: u16, granted: &[u8], v5: bool) {
    let body_len = 2 + usize::from(v5) + granted.len();
    out.push(0x90);
    put_varint(out, body_len);
    out.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        out.push(0x00);
    }
    out.extend_from_slice(granted);
}

/// Appends an UNSUBACK for every filter (MQTT 5 carries one Success reason code per filter).
pub fn put_unsuback(out: &mut Vec<u8>, packet_id: u16, filters: usize, v5: bool) {
    let body_len = if v5 { 3 + filters } else { 2 };
    out.push(0xb0);
    put_varint(out, body_len);
    out.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        out.push(0x00);
        out.resize(out.len() + filters, 0x00);
    }
}

/// Appends a two-byte-body acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP). The short form
/// means Success in MQTT 5 too (spec 3.4.2.1); PUBREL carries the fixed flags 0b0010
/// ([MQTT-3.6.1-1]).
pub fn put_ack(out: &mut Vec<u8>, packet_type: u8, packet_id: u16) {
    let flags = if packet_type == PUBREL { 0x02 } else { 0x00 };
    out.push((packet_type << 4) | flags);
    out.push(0x02);
    out.extend_from_slice(&packet_id.to_be_bytes());
}

/// Appends PINGRESP.
pub fn put_pingresp(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xd0, 0x00]);
}

/// Appends a variable byte integer (at most 268,435,455).
pub fn put_varint(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let mut byte = (value & 0x7f) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

/// Appends a CONNECT with a clean session, no will and no credentials.
pub fn put_connect(out: &mut Vec<u8>, client_id: &[u8], level: u8, keep_alive_secs: u16) {
    let v5 = level == 5;
    let name: &[u8] = if level == 3 { b"MQIsdp" } else { b"MQTT" };
    let body_len = 2 + name.len() + 1 + 1 + 2 + usize::from(v5) + 2 + client_id.len();
    out.push(0x10);
    put_varint(out, body_len);
    put_bytes(out, name);
    out.push(level);
    out.push(0x02); // Clean Session / Clean Start.
    out.extend_from_slice(&keep_alive_secs.to_be_bytes());
    if v5 {
        out.push(0x00);
    }
    put_bytes(out, client_id);
}

/// Appends a SUBSCRIBE of one filter.
pub fn put_subscribe(out: &mut Vec<u8>, packet_id: u16, filter: &[u8], qos: u8, v5: bool) {
    let body_len = 2 + usize::from(v5) + 2 + filter.len() + 1;
    out.push(0x82); // Reserved flags 0b0010 ([MQTT-3.8.1-1]).
    put_varint(out, body_len);
    out.extend_from_slice(&packet_id.to_be_bytes());
    if v5 {
        out.push(0x00);
    }
    put_bytes(out, filter);
    out.push(qos);
}

/// Appends a PUBLISH (no DUP, no RETAIN, no properties). `packet_id` is ignored for QoS 0.
pub fn put_publish(
    out: &mut Vec<u8>,
    topic: &[u8],
    packet_id: u16,
    qos: u8,
    payload: &[u8],
    v5: bool,
) {
    let id_len = if qos > 0 { 2 } else { 0 };
    let body_len = 2 + topic.len() + id_len + usize::from(v5) + payload.len();
    out.push(0x30 | (qos << 1));
    put_varint(out, body_len);
    put_bytes(out, topic);
    if qos > 0 {
        out.extend_from_slice(&packet_id.to_be_bytes());
    }
    if v5 {
        out.push(0x00);
    }
    out.extend_from_slice(payload);
}

/// Appends DISCONNECT (normal disconnection).
pub fn put_disconnect(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xe0, 0x00]);
}

/// Appends PINGREQ.
pub fn put_pingreq(out: &mut Vec<u8>) {
    out.extend_from_slice(&[0xc0, 0x00]);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    debug_assert!(bytes.len() <= usize::from(u16::MAX));
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The payload of a PUBLISH frame (after topic, packet identifier and MQTT 5 properties).
pub fn publish_payload<'a>(
    frame: &Frame,
    bytes: &'a [u8],
    v5: bool,
) -> Result<&'a [u8], WireError> {
    let body = bytes
        .get(frame.header_len..frame.len())
        .ok_or(WireError::Truncated)?;
    let topic_len = usize::from(read_u16(body, 0)?);
    let qos = (frame.first_byte >> 1) & 0x03;
    let mut at = 2 + topic_len + if qos > 0 { 2 } else { 0 };
    if v5 {
        let (props_len, used) = read_varint(body.get(at..).ok_or(WireError::Truncated)?)?;
        at += used + props_len;
    }
    body.get(at..).ok_or(WireError::Truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_waits_for_whole_frame() {
        assert_eq!(frame(&[]), Ok(None));
        assert_eq!(frame(&[0x30]), Ok(None));
        assert_eq!(frame(&[0x30, 0x03, 0, 1]), Ok(None));
        let f = frame(&[0x30, 0x03, 0, 1, b'a']).unwrap().unwrap();
        assert_eq!((f.packet_type(), f.header_len, f.body_len), (3, 2, 3));
    }

    #[test]
    fn frame_rejects_five_byte_length_and_oversize() {
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(WireError::BadRemainingLength)
        );
        assert_eq!(
            frame(&[0x30, 0xff, 0xff, 0xff, 0x7f]),
            Err(WireError::TooLarge)
        );
    }

    #[test]
    fn varint_round_trip() {
        for value in [0usize, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(read_varint(&out), Ok((value, out.len())));
        }
    }

    #[test]
    fn publish_fields() {
        // QoS 1 PUBLISH, topic "a/b", packet id 7, payload "x".
        let bytes = [0x32, 0x08, 0, 3, b'a', b'/', b'b', 0, 7, b'x'];
        let f = frame(&bytes).unwrap().unwrap();
        assert_eq!(publish_topic_and_id(&f, &bytes), Ok((&b"a/b"[..], 7)));
    }

    #[test]
    fn subscribe_fields_v4_and_v5() {
        let v4 = [0, 9, 0, 1, b'#', 1, 0, 1, b'x', 2];
        let (id, filters) = subscribe_filters(&v4, false).unwrap();
        assert_eq!(id, 9);
        assert_eq!(filters, vec![(&b"#"[..], 1), (&b"x"[..], 2)]);
        let v5 = [0, 9, 0, 0, 1, b'#', 0x21];
        let (_, filters) = subscribe_filters(&v5, true).unwrap();
        assert_eq!(filters, vec![(&b"#"[..], 1)]);
        assert_eq!(
            subscribe_filters(&[0, 9, 0, 5, b'#'], false),
            Err(WireError::Truncated)
        );
    }

    #[test]
    fn publish_round_trip_v5() {
        let mut out = Vec::new();
        put_publish(&mut out, b"t/1", 5, 2, b"hello", true);
        let f = frame(&out).unwrap().unwrap();
        assert_eq!(f.len(), out.len());
        assert_eq!(publish_topic_and_id(&f, &out), Ok((&b"t/1"[..], 5)));
        assert_eq!(publish_payload(&f, &out, true), Ok(&b"hello"[..]));
    }

    #[test]
    fn connect_level_read_back() {
        let mut out = Vec::new();
        put_connect(&mut out, b"id", 5, 30);
        let f = frame(&out).unwrap().unwrap();
        assert_eq!(connect_level(&out[f.header_len..]), Ok(5));
    }

    #[test]
    fn suback_layout() {
        let mut out = Vec::new();
        put_suback(&mut out, 0x0102, &[1], true);
        assert_eq!(out, [0x90, 0x04, 0x01, 0x02, 0x00, 0x01]);
    }
}
