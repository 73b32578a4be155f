//! Codec benchmarks: PUBLISH decode and encode (64 B and 1 KiB payloads, MQTT 3.1.1 and 5.0), and
//! decoding a buffer of back-to-back PUBLISH frames (the realistic read path) in bytes/s.
//!
//! Run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 3`.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardmq::codec::{decode, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS};

const PAYLOADS: [(usize, &str); 2] = [(64, "64B"), (1024, "1KiB")];
const VERSIONS: [(ProtocolVersion, &str); 2] =
    [(ProtocolVersion::V3_1_1, "v4"), (ProtocolVersion::V5, "v5")];
/// Frames in the back-to-back buffer.
const STREAM_FRAMES: usize = 1000;

fn publish(payload_len: usize, version: ProtocolVersion) -> Publish {
    let mut properties = Properties::new();
    if version.is_v5() {
        // A typical MQTT 5 publish carries a message expiry.
        properties.message_expiry_interval = Some(3600);
    }
    Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("sensors/building-1/floor-2/temperature"),
        packet_id: 42,
        properties,
        payload: Bytes::from(vec![0x5A; payload_len]),
        ..Publish::default()
    }
}

fn encoded(publish: &Publish, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    Packet::Publish(publish.clone())
        .encode(version, &mut out)
        .expect("encodes");
    out
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_decode");
    group.throughput(Throughput::Elements(1));
    for (version, version_name) in VERSIONS {
        for (payload_len, payload_name) in PAYLOADS {
            let frame = encoded(&publish(payload_len, version), version);
            let mut buf = BytesMut::with_capacity(4096);
            group.bench_function(format!("{version_name}_{payload_name}"), |b| {
                b.iter(|| {
                    // The socket read: the frame lands in the connection's buffer.
                    buf.extend_from_slice(&frame);
                    let packet = decode(&mut buf, version, u32::MAX);
                    black_box(packet)
                })
            });
        }
    }
    group.finish();
}

fn bench_decode_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_decode_stream");
    for (version, version_name) in VERSIONS {
        for (payload_len, payload_name) in PAYLOADS {
            let frame = encoded(&publish(payload_len, version), version);
            let mut stream = BytesMut::with_capacity(frame.len() * STREAM_FRAMES);
            for _ in 0..STREAM_FRAMES {
                stream.extend_from_slice(&frame);
            }
            group.throughput(Throughput::Bytes(stream.len() as u64));
            group.bench_function(
                format!("{version_name}_{payload_name}_x{STREAM_FRAMES}"),
                |b| {
                    b.iter_batched(
                        || stream.clone(),
                        |mut buf| {
                            let mut count = 0usize;
                            while let Ok(Some(packet)) = decode(&mut buf, version, u32::MAX) {
                                black_box(&packet);
                                count += 1;
                            }
                            assert_eq!(count, STREAM_FRAMES);
                        },
                        BatchSize::LargeInput,
                    )
                },
            );
        }
    }
    group.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_encode");
    group.throughput(Throughput::Elements(1));
    for (version, version_name) in VERSIONS {
        for (payload_len, payload_name) in PAYLOADS {
            let publish = publish(payload_len, version);
            let mut out = BytesMut::with_capacity(4096);
            group.bench_function(format!("{version_name}_{payload_name}"), |b| {
                b.iter(|| {
                    out.clear();
                    publish.encode(version, &mut out).expect("encodes");
                    black_box(out.len())
                })
            });
        }
    }
    // The fan-out path: only the header is encoded, the payload is shared.
    let publish = publish(1024, ProtocolVersion::V3_1_1);
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("v4_header_only", |b| {
        b.iter(|| {
            out.clear();
            publish
                .encode_header(ProtocolVersion::V3_1_1, &mut out)
                .expect("encodes");
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_decode_stream, bench_encode);
criterion_main!(benches);
