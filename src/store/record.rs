//! The records of a shard's log and their byte layout.
//!
//! A log file is the 8-byte magic [`MAGIC`] followed by frames `len: u32 LE | crc32: u32 LE |
//! body`, where `crc32` (IEEE, `crc32fast`) covers the `len` bytes of `body` and the body starts
//! with its kind byte. Integers are little-endian; strings and byte fields carry a u32 length.
//! A PUBLISH is kept as the MQTT 5 packet the codec writes (all properties included) and read
//! back by the codec, so the store needs no second encoding of messages.
//!
//! Sessions are numbered per log file (`sid`), so the message records of a session carry four
//! bytes instead of its client id. A session's first record in a file defines it; records of an
//! unknown `sid` are dropped (and counted) on recovery.

use crate::codec::{self, MqttString, Packet, ProtocolVersion, Publish, QoS};
use bytes::{Bytes, BytesMut};

/// First bytes of every log file (format version 1).
pub const MAGIC: &[u8; 8] = b"SHMQLOG1";
/// Bytes of a frame before its body.
pub const FRAME_HEADER_BYTES: usize = 8;
/// Largest body accepted when reading (a PUBLISH of the largest packet size and some fields).
pub const RECORD_BYTES_MAX: usize = 268_435_460 + 4096;

const KIND_SESSION: u8 = 1;
const KIND_SESSION_GONE: u8 = 2;
const KIND_MESSAGE: u8 = 3;
const KIND_SENT: u8 = 4;
const KIND_RELEASED: u8 = 5;
const KIND_DONE: u8 = 6;
const KIND_INCOMING: u8 = 7;
const KIND_RETAINED: u8 = 8;

/// A session's metadata: everything but its messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionRecord {
    /// Global order of session records over every shard's log: on recovery the record with the
    /// highest `seq` for a client id wins (a session that moved between shards by takeover
    /// exists in two logs until the old one is compacted).
    pub seq: u64,
    pub sid: u32,
    pub client_id: MqttString,
    pub session_expiry_interval_secs: u32,
    /// Wall-clock milliseconds since the Unix epoch when the session went offline; 0 while a
    /// connection was attached.
    pub disconnected_at_ms: u64,
    /// (filter, subscription options byte as in SUBSCRIBE, subscription identifier or 0).
    pub subscriptions: Vec<(MqttString, u8, u32)>,
    /// Incoming QoS 2 packet ids awaiting PUBREL when this record was written.
    pub incoming_qos2: Vec<u16>,
    /// (Will Delay Interval in seconds, the will as an encoded PUBLISH) of a will that is still
    /// to be published if the session's connection is lost or its delay ends.
    pub will: Option<(u32, Bytes)>,
}

/// One record of a shard's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Session(SessionRecord),
    SessionGone {
        seq: u64,
        sid: u32,
    },
    /// A QoS 1/2 message for a session, queued (no packet id yet).
    Message {
        sid: u32,
        id: u64,
        qos: QoS,
        retain: bool,
        received_at_ms: u64,
        publish: Bytes,
    },
    /// The message went out with this packet id, awaiting PUBACK or PUBREC.
    Sent {
        sid: u32,
        id: u64,
        packet_id: u16,
    },
    /// PUBREC received: PUBREL sent, PUBCOMP awaited.
    Released {
        sid: u32,
        id: u64,
    },
    /// Acknowledged (or discarded): the message is gone.
    Done {
        sid: u32,
        id: u64,
    },
    /// An incoming QoS 2 packet id added (PUBREC sent) or removed (PUBREL received).
    Incoming {
        sid: u32,
        packet_id: u16,
        add: bool,
    },
    /// A retained message set (or, with an empty payload, cleared) with global order `seq`.
    Retained {
        seq: u64,
        received_at_ms: u64,
        publish: Bytes,
    },
}

/// Appends one framed record to `out`.
pub fn encode(record: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let body = out.len();
    match record {
        Record::Session(s) => {
            out.push(KIND_SESSION);
            put_u64(out, s.seq);
            put_u32(out, s.sid);
            put_bytes(out, s.client_id.as_bytes());
            put_u32(out, s.session_expiry_interval_secs);
            put_u64(out, s.disconnected_at_ms);
            put_u32(out, s.subscriptions.len() as u32);
            for (filter, options, identifier) in &s.subscriptions {
                put_bytes(out, filter.as_bytes());
                out.push(*options);
                put_u32(out, *identifier);
            }
            put_u32(out, s.incoming_qos2.len() as u32);
            for id in &s.incoming_qos2 {
                out.extend_from_slice(&id.to_le_bytes());
            }
            match &s.will {
                None => out.push(0),
                Some((delay, publish)) => {
                    out.push(1);
                    put_u32(out, *delay);
                    put_bytes(out, publish);
                }
            }
        }
        Record::SessionGone { seq, sid } => {
            out.push(KIND_SESSION_GONE);
            put_u64(out, *seq);
            put_u32(out, *sid);
        }
        Record::Message {
            sid,
            id,
            qos,
            retain,
            received_at_ms,
            publish,
        } => {
            out.push(KIND_MESSAGE);
            put_u32(out, *sid);
            put_u64(out, *id);
            out.push(*qos as u8 | u8::from(*retain) << 4);
            put_u64(out, *received_at_ms);
            put_bytes(out, publish);
        }
        Record::Sent { sid, id, packet_id } => {
            out.push(KIND_SENT);
            put_u32(out, *sid);
            put_u64(out, *id);
            out.extend_from_slice(&packet_id.to_le_bytes());
        }
        Record::Released { sid, id } => {
            out.push(KIND_RELEASED);
            put_u32(out, *sid);
            put_u64(out, *id);
        }
        Record::Done { sid, id } => {
            out.push(KIND_DONE);
            put_u32(out, *sid);
            put_u64(out, *id);
        }
        Record::Incoming {
            sid,
            packet_id,
            add,
        } => {
            out.push(KIND_INCOMING);
            put_u32(out, *sid);
            out.extend_from_slice(&packet_id.to_le_bytes());
            out.push(u8::from(*add));
        }
        Record::Retained {
            seq,
            received_at_ms,
            publish,
        } => {
            out.push(KIND_RETAINED);
            put_u64(out, *seq);
            put_u64(out, *received_at_ms);
            put_bytes(out, publish);
        }
    }
    let len = (out.len() - body) as u32;
    let crc = crc32fast::hash(&out[body..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..body].copy_from_slice(&crc.to_le_bytes());
}

/// Checks the frame at `pos` of `data`: `Some((body, next position))` when its length fits,
/// its checksum matches and its kind is known.
pub fn check_frame(data: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let header = data.get(pos..pos.checked_add(FRAME_HEADER_BYTES)?)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    if len == 0 || len > RECORD_BYTES_MAX {
        return None;
    }
    let start = pos + FRAME_HEADER_BYTES;
    let body = data.get(start..start.checked_add(len)?)?;
    if !(KIND_SESSION..=KIND_RETAINED).contains(&body[0]) {
        return None;
    }
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some((body, start + len))
}

/// Decodes a checked body; `None` if its fields do not parse (counted as a dropped record).
pub fn decode(body: &[u8]) -> Option<Record> {
    let mut r = Cursor { buf: body, pos: 1 };
    let record = match *body.first()? {
        KIND_SESSION => {
            let seq = r.u64()?;
            let sid = r.u32()?;
            let client_id = r.string()?;
            let session_expiry_interval_secs = r.u32()?;
            let disconnected_at_ms = r.u64()?;
            let count = r.u32()? as usize;
            let mut subscriptions = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                let filter = r.string()?;
                let options = r.u8()?;
                let identifier = r.u32()?;
                subscriptions.push((filter, options, identifier));
            }
            let count = r.u32()? as usize;
            let mut incoming_qos2 = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                incoming_qos2.push(r.u16()?);
            }
            let will = match r.u8()? {
                0 => None,
                _ => Some((r.u32()?, r.bytes()?)),
            };
            Record::Session(SessionRecord {
                seq,
                sid,
                client_id,
                session_expiry_interval_secs,
                disconnected_at_ms,
                subscriptions,
                incoming_qos2,
                will,
            })
        }
        KIND_SESSION_GONE => Record::SessionGone {
            seq: r.u64()?,
            sid: r.u32()?,
        },
        KIND_MESSAGE => {
            let sid = r.u32()?;
            let id = r.u64()?;
            let flags = r.u8()?;
            Record::Message {
                sid,
                id,
                qos: QoS::from_u8(flags & 3)?,
                retain: flags & 0x10 != 0,
                received_at_ms: r.u64()?,
                publish: r.bytes()?,
            }
        }
        KIND_SENT => Record::Sent {
            sid: r.u32()?,
            id: r.u64()?,
            packet_id: r.u16()?,
        },
        KIND_RELEASED => Record::Released {
            sid: r.u32()?,
            id: r.u64()?,
        },
        KIND_DONE => Record::Done {
            sid: r.u32()?,
            id: r.u64()?,
        },
        KIND_INCOMING => Record::Incoming {
            sid: r.u32()?,
            packet_id: r.u16()?,
            add: r.u8()? != 0,
        },
        KIND_RETAINED => Record::Retained {
            seq: r.u64()?,
            received_at_ms: r.u64()?,
            publish: r.bytes()?,
        },
        _ => return None,
    };
    // Leftover bytes mean the record is not what it claims to be.
    (r.pos == body.len()).then_some(record)
}

/// Encodes a PUBLISH for storage: the MQTT 5 packet (packet id 1 as a placeholder for QoS 1/2,
/// DUP clear).
pub fn encode_publish(publish: &Publish, scratch: &mut BytesMut) -> Bytes {
    let mut copy = publish.clone();
    copy.dup = false;
    copy.packet_id = if copy.qos == QoS::AtMostOnce { 0 } else { 1 };
    scratch.clear();
    if let Err(e) = Packet::Publish(copy).encode(ProtocolVersion::V5, scratch) {
        // A message that was received or built within the limits always encodes; if one did
        // not, its record is written empty and dropped (counted) on recovery.
        ::log::error!("persistence: a message could not be encoded: {e:?}");
        scratch.clear();
    }
    scratch.split().freeze()
}

/// Decodes a PUBLISH written by [`encode_publish`] into its own allocation (so that a recovered
/// message does not pin the file's read buffer). Packet id 0, DUP clear.
pub fn decode_publish(bytes: &[u8]) -> Option<Publish> {
    let mut buf = BytesMut::from(bytes);
    match codec::decode(&mut buf, ProtocolVersion::V5, 268_435_460) {
        Ok(Some(Packet::Publish(mut publish))) if buf.is_empty() => {
            publish.packet_id = 0;
            publish.dup = false;
            Some(publish)
        }
        _ => None,
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Reads a body's fields; every read checks its bounds.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Bytes> {
        let len = self.u32()? as usize;
        Some(Bytes::copy_from_slice(self.take(len)?))
    }

    fn string(&mut self) -> Option<MqttString> {
        MqttString::from_bytes(self.bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<Record> {
        let publish = Publish {
            qos: QoS::ExactlyOnce,
            topic: MqttString::from("a/b"),
            payload: Bytes::from_static(b"hello"),
            ..Publish::default()
        };
        let bytes = encode_publish(&publish, &mut BytesMut::new());
        vec![
            Record::Session(SessionRecord {
                seq: 7,
                sid: 1,
                client_id: MqttString::from("c1"),
                session_expiry_interval_secs: 60,
                disconnected_at_ms: 123,
                subscriptions: vec![(MqttString::from("a/#"), 0x15, 9)],
                incoming_qos2: vec![3, 4],
                will: Some((5, bytes.clone())),
            }),
            Record::Message {
                sid: 1,
                id: 2,
                qos: QoS::AtLeastOnce,
                retain: true,
                received_at_ms: 99,
                publish: bytes.clone(),
            },
            Record::Sent {
                sid: 1,
                id: 2,
                packet_id: 65_535,
            },
            Record::Released { sid: 1, id: 2 },
            Record::Done { sid: 1, id: 2 },
            Record::Incoming {
                sid: 1,
                packet_id: 8,
                add: true,
            },
            Record::Retained {
                seq: 8,
                received_at_ms: 1,
                publish: bytes,
            },
            Record::SessionGone { seq: 9, sid: 1 },
        ]
    }

    #[test]
    fn records_round_trip_and_a_flipped_bit_is_caught() {
        for record in records() {
            let mut out = Vec::new();
            encode(&record, &mut out);
            let (body, next) = check_frame(&out, 0).expect("valid frame");
            assert_eq!(next, out.len());
            assert_eq!(decode(body), Some(record));
            for i in 0..out.len() {
                let mut bad = out.clone();
                bad[i] ^= 0x40;
                assert!(check_frame(&bad, 0).is_none(), "flip at {i} not caught");
            }
            assert!(check_frame(&out[..out.len() - 1], 0).is_none(), "torn");
        }
    }

    #[test]
    fn publishes_keep_properties() {
        let mut publish = Publish {
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: MqttString::from("t"),
            payload: Bytes::from_static(b"p"),
            ..Publish::default()
        };
        publish.properties.message_expiry_interval = Some(30);
        publish.properties.content_type = Some(MqttString::from("text/plain"));
        let bytes = encode_publish(&publish, &mut BytesMut::new());
        assert_eq!(decode_publish(&bytes), Some(publish));
        assert_eq!(decode_publish(&bytes[..bytes.len() - 1]), None);
    }
}
