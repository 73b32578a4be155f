//! Shared by the decode targets: decode every frame of the input; whatever decodes must encode to
//! exactly `encoded_len` bytes that decode back to the same packet.

use bytes::BytesMut;
use shardmq::codec::{decode, Packet, ProtocolVersion};

pub fn decode_everything(data: &[u8], version: ProtocolVersion) {
    // The first byte picks the maximum packet size, so the size check is exercised too.
    let (max_packet_size, data) = match data.split_first() {
        Some((&selector, rest)) if selector < 0x10 => (u32::from(selector) * 16, rest),
        _ => (u32::MAX, data),
    };
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode(&mut buf, version, max_packet_size) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a decoded frame consumes bytes");
                check_re_encoding(&packet, version);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete frame consumes nothing");
                return;
            }
            Err(_) => return,
        }
    }
}

fn check_re_encoding(packet: &Packet, version: ProtocolVersion) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol_version,
        _ => version,
    };
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encodes");
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "encoded_len is exact"
    );
    match decode(&mut out, version, u32::MAX) {
        Ok(Some(again)) => assert_eq!(&again, packet, "re-encoded packet decodes the same"),
        other => panic!("re-encoded {packet:?} does not decode: {other:?}"),
    }
    assert!(out.is_empty(), "re-encoding is one whole frame");
}
