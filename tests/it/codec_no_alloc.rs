//! Zero-copy: decoding back-to-back PUBLISH frames, cloning a PUBLISH and encoding one allocate
//! nothing per packet (checked with a counting global allocator that counts only on the thread
//! under test).

use crate::support::alloc::allocations;
use bytes::{Bytes, BytesMut};
use shardmq::codec::{decode, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS};
use std::hint::black_box;

const FRAMES: usize = 100;

fn publish(version: ProtocolVersion) -> Publish {
    let mut properties = Properties::new();
    if version.is_v5() {
        // The inline properties: no box.
        properties.message_expiry_interval = Some(60);
        properties.topic_alias = Some(3);
        properties.payload_format_indicator = Some(1);
    }
    Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("sensors/kitchen/temperature"),
        packet_id: 9,
        properties,
        payload: Bytes::from(vec![7u8; 64]),
        ..Publish::default()
    }
}

#[test]
fn the_counter_sees_this_thread() {
    let before = allocations();
    let probe = black_box(vec![1u8; 8]);
    assert!(allocations() > before);
    drop(probe);
}

#[test]
fn decoding_publishes_allocates_nothing_per_packet() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        for _ in 0..FRAMES {
            Packet::Publish(publish(version))
                .encode(version, &mut buf)
                .expect("encodes");
        }
        let mut decoded = Vec::with_capacity(FRAMES);
        let before = allocations();
        while let Ok(Some(packet)) = decode(&mut buf, version, u32::MAX) {
            decoded.push(packet);
        }
        let during = allocations() - before;
        assert_eq!(decoded.len(), FRAMES);
        // At most one: the read buffer turns into a shared buffer at the first split.
        assert!(
            during <= 1,
            "{version:?}: {during} allocations for {FRAMES} frames"
        );
        assert!(decoded
            .iter()
            .all(|p| *p == Packet::Publish(publish(version))));
    }
}

#[test]
fn cloning_and_encoding_a_publish_allocates_nothing() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let original = publish(version);
        // A `Bytes` made from a `Vec` becomes shared at its first clone (one allocation, once);
        // decoded publishes are shared from the start.
        drop(black_box(original.clone()));
        let mut out = BytesMut::with_capacity(FRAMES * 256);
        let before = allocations();
        for _ in 0..FRAMES {
            let copy = black_box(original.clone());
            copy.encode(version, &mut out).expect("encodes");
            copy.encode_header(version, &mut out).expect("encodes");
            black_box(copy.encoded_len(version));
        }
        let during = allocations() - before;
        assert_eq!(during, 0, "{version:?}: {during} allocations");
        assert!(!out.is_empty());
    }
}
