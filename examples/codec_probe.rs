//! Instruction-count probe (run under valgrind): decodes `reps` copies of a 1,000-frame buffer of
//! PUBLISH frames. Args: reps, version (v4|v5), payload bytes, mode (stream|encode).
use bytes::{Bytes, BytesMut};
use shardmq::codec::{decode, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let reps: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let v = if args.get(2).map(String::as_str) == Some("v5") {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let payload: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(64);
    let mode = args.get(4).cloned().unwrap_or_else(|| "stream".into());
    let mut properties = Properties::new();
    if v.is_v5() {
        properties.message_expiry_interval = Some(3600);
    }
    let p = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("sensors/building-1/floor-2/temperature"),
        packet_id: 42,
        properties,
        payload: Bytes::from(vec![0x5A; payload]),
        ..Publish::default()
    };
    let mut frame = BytesMut::new();
    Packet::Publish(p.clone())
        .encode(v, &mut frame)
        .expect("encodes");
    let n = 1000;
    let mut stream = BytesMut::new();
    for _ in 0..n {
        stream.extend_from_slice(&frame);
    }
    let mut out = BytesMut::with_capacity(4096);
    for _ in 0..reps {
        if mode == "encode" {
            for _ in 0..n {
                out.clear();
                p.encode(v, &mut out).expect("encodes");
                black_box(&out);
            }
        } else {
            let mut buf = stream.clone();
            while let Ok(Some(packet)) = decode(&mut buf, v, u32::MAX) {
                black_box(&packet);
            }
        }
    }
}
