//! Backpressure over real TCP: a publisher that outruns a connected QoS 1 subscriber is paused
//! (its socket is not read) instead of overrunning the subscriber's queue; a subscriber that never
//! acknowledges stalls after `congestion_timeout_ms` and the publisher goes on; QoS 0 publishers
//! are paused the same way by a subscriber's full outgoing buffer (never with
//! `qos0_backpressure` off); the memory budget (`max_buffered_bytes`) bounds what a shard
//! buffers and counts its drops. Each with the publisher and subscriber on different shards and
//! on the same shard.

use crate::support::broker::{ack, publish_packet, Placer, Raw, RecvError, WAIT};
use bytes::BytesMut;
use shardmq::broker::{BrokerHandle, Stats};
use shardmq::codec::{self, Packet, ProtocolVersion, QoS};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Placements of (publisher shard, subscriber shard) on a 2-shard broker.
const PLACEMENTS: [(usize, usize); 2] = [(0, 1), (0, 0)];

fn broker(congestion_timeout_ms: u64) -> BrokerHandle {
    crate::support::broker::start_with(shardmq::broker::Config {
        congestion_timeout_ms,
        // A window small against the floods below, so that a slow subscriber queues and
        // congests (with the default of 4,096, issue 17, a 20,000-message flood of small
        // messages to a subscriber that reads slowly can stay in flight, held back by the
        // outgoing buffer's limit instead).
        max_inflight: 32,
        ..crate::support::broker::config(2)
    })
}

/// Writes `count` PUBLISH frames on `topic` (payload: the big-endian sequence number, padded to
/// `payload_len`) in writes of 500 frames, without waiting for acknowledgements, while another
/// thread reads what the broker answers. Returns the QoS 1 PUBACKs counted (0 at QoS 0; then a
/// PINGRESP after the last frame proves the broker read everything).
fn flood(mut raw: Raw, topic: &str, count: u32, qos: QoS, payload_len: usize) -> JoinHandle<u32> {
    let topic = topic.to_string();
    thread::spawn(move || {
        let reader = raw.stream.try_clone().expect("clone");
        let expected = if qos == QoS::AtMostOnce { 0 } else { count };
        let acks = thread::spawn(move || count_acks(reader, expected));
        let mut out = BytesMut::new();
        for seq in 0..count {
            let mut payload = seq.to_be_bytes().to_vec();
            payload.resize(payload_len.max(4), 0);
            let packet_id = (seq % 65_535 + 1) as u16;
            publish_packet(&topic, &payload, qos, false, packet_id)
                .encode(V4, &mut out)
                .expect("encodes");
            if seq % 500 == 499 || seq + 1 == count {
                raw.stream.write_all(&out).expect("publisher write");
                out.clear();
            }
        }
        if qos == QoS::AtMostOnce {
            Packet::PingReq.encode(V4, &mut out).expect("encodes");
            raw.stream.write_all(&out).expect("ping");
        }
        acks.join().expect("ack reader")
    })
}

/// Reads the publisher's socket until `expected` PUBACKs (or, with 0, a PINGRESP) arrived, for at
/// most 60 s.
fn count_acks(mut stream: TcpStream, expected: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = BytesMut::new();
    let mut acks = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    while Instant::now() < deadline {
        while let Ok(Some(packet)) = codec::decode(&mut buf, V4, u32::MAX) {
            match packet {
                Packet::PubAck(_) => acks += 1,
                Packet::PingResp => return acks,
                other => panic!("publisher got {other:?}"),
            }
        }
        if expected > 0 && acks == expected {
            return acks;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return acks,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    acks
}

fn sequence(payload: &[u8]) -> u32 {
    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
}

/// A QoS 1 subscriber that takes what has arrived, sleeps 2 ms, then acknowledges it all in one
/// write: steady, but far slower than an unpaced publisher.
fn slow_subscriber(mut sub: Raw, count: u32) -> JoinHandle<Vec<u32>> {
    thread::spawn(move || {
        let mut seen = Vec::with_capacity(count as usize);
        let mut out = BytesMut::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while seen.len() < count as usize && Instant::now() < deadline {
            match sub.recv(WAIT) {
                Ok(Packet::Publish(p)) => {
                    seen.push(sequence(&p.payload));
                    Packet::PubAck(ack(p.packet_id))
                        .encode(V4, &mut out)
                        .expect("encodes");
                }
                Ok(other) => panic!("subscriber got {other:?}"),
                Err(RecvError::Timeout) => break,
                Err(e) => panic!("subscriber: {e:?}"),
            }
            // Whatever else is already buffered is taken before acknowledging.
            while let Ok(Some(Packet::Publish(p))) = codec::decode(&mut sub.buf, V4, u32::MAX) {
                seen.push(sequence(&p.payload));
                Packet::PubAck(ack(p.packet_id))
                    .encode(V4, &mut out)
                    .expect("encodes");
            }
            thread::sleep(Duration::from_millis(2));
            sub.stream.write_all(&out).expect("acks");
            out.clear();
        }
        seen
    })
}

fn totals(broker: &BrokerHandle) -> Stats {
    broker.stats()
}

#[test]
fn unpaced_qos1_publisher_is_paused_and_a_slow_subscriber_gets_everything_in_order() {
    const COUNT: u32 = 20_000;
    for (pub_shard, sub_shard) in PLACEMENTS {
        let broker = broker(60_000);
        let mut placer = Placer::new(&broker);
        let mut sub = placer.raw_on(sub_shard, V4, "slow-sub");
        sub.subscribe("flow/slow", QoS::AtLeastOnce);
        let publisher = placer.raw_on(pub_shard, V4, "fast-pub");
        let receiver = slow_subscriber(sub, COUNT);
        let acks = flood(publisher, "flow/slow", COUNT, QoS::AtLeastOnce, 16)
            .join()
            .expect("publisher");
        let seen = receiver.join().expect("subscriber");
        let stats = totals(&broker);
        let what = format!("publisher on shard {pub_shard}, subscriber on {sub_shard}");
        assert_eq!(acks, COUNT, "{what}: every PUBLISH acknowledged");
        assert_eq!(seen.len(), COUNT as usize, "{what}: {stats:?}");
        assert!(
            seen.iter().copied().eq(0..COUNT),
            "{what}: delivered in order"
        );
        assert_eq!(stats.dropped_queue_full, 0, "{what}: {stats:?}");
        assert!(stats.publishers_paused_congestion > 0, "{what}: {stats:?}");
        assert!(stats.sessions_congested > 0, "{what}: {stats:?}");
        assert_eq!(stats.sessions_stalled, 0, "{what}: {stats:?}");
    }
}

#[test]
fn a_stuck_subscriber_stalls_and_neither_its_publisher_nor_other_topics_wait_forever() {
    // More than the in-flight window, the queue and the mesh channel (the most a congested
    // session keeps past its queue limit) together, so some must be dropped.
    const COUNT: u32 = 20_000;
    for (pub_shard, sub_shard) in PLACEMENTS {
        let broker = broker(500);
        let mut placer = Placer::new(&broker);
        // Subscribes and then never reads or acknowledges anything.
        let mut stuck = placer.raw_on(sub_shard, V4, "stuck-sub");
        stuck.subscribe("flow/stuck", QoS::AtLeastOnce);
        // A healthy subscriber of another topic, on the same shard as the stuck one.
        let mut live = placer.raw_on(sub_shard, V4, "live-sub");
        live.subscribe("flow/live", QoS::AtLeastOnce);
        let publisher = placer.raw_on(pub_shard, V4, "stuck-pub");
        let mut other = placer.raw_on(pub_shard, V4, "live-pub");
        let started = Instant::now();
        let acks = flood(publisher, "flow/stuck", COUNT, QoS::AtLeastOnce, 16);
        // The other topic keeps flowing (a pause on the shared shard flag lasts at most the
        // congestion timeout).
        for n in 0..50u8 {
            other.publish_acked("flow/live", &[n], QoS::AtLeastOnce, false, u16::from(n) + 1);
            let p = live.receive_and_ack();
            assert_eq!(&p.payload[..], &[n]);
        }
        let acks = acks.join().expect("publisher");
        let what = format!("publisher on shard {pub_shard}, subscriber on {sub_shard}");
        assert_eq!(acks, COUNT, "{what}: the publisher finished");
        let stats = totals(&broker);
        assert!(stats.sessions_stalled >= 1, "{what}: {stats:?}");
        assert!(stats.publishers_paused_congestion > 0, "{what}: {stats:?}");
        // The in-flight window, at least the queue limit (1,000) queued, the excess dropped and
        // counted.
        assert!(stats.dropped_queue_full > 0, "{what}: {stats:?}");
        assert!(
            stats.dropped_queue_full <= u64::from(COUNT) - 1_000,
            "{what}: {stats:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        drop(stuck);
    }
}

#[test]
fn without_qos0_backpressure_a_qos0_flood_is_dropped_never_paused() {
    const COUNT: u32 = 4_000;
    for (pub_shard, sub_shard) in PLACEMENTS {
        let broker = crate::support::broker::start_with(shardmq::broker::Config {
            congestion_timeout_ms: 60_000,
            qos0_backpressure: false,
            ..crate::support::broker::config(2)
        });
        let mut placer = Placer::new(&broker);
        // Subscribes at QoS 1 but never reads: QoS 0 messages pile up in its outgoing buffer.
        let mut sub = placer.raw_on(sub_shard, V4, "qos0-sub");
        sub.subscribe("flow/qos0", QoS::AtLeastOnce);
        let publisher = placer.raw_on(pub_shard, V4, "qos0-pub");
        let pong = flood(publisher, "flow/qos0", COUNT, QoS::AtMostOnce, 2_048);
        pong.join()
            .expect("publisher answered PINGREQ after the flood");
        let what = format!("publisher on shard {pub_shard}, subscriber on {sub_shard}");
        let stats = totals(&broker);
        crate::support::broker::wait_until("the flood is delivered or dropped", || {
            let s = totals(&broker);
            s.messages_sent + s.dropped_outgoing_buffer_full >= u64::from(COUNT)
        });
        assert_eq!(stats.publishers_paused_congestion, 0, "{what}: {stats:?}");
        assert_eq!(stats.sessions_congested, 0, "{what}: {stats:?}");
        let stats = totals(&broker);
        assert!(stats.dropped_outgoing_buffer_full > 0, "{what}: {stats:?}");
        drop(sub);
    }
}

#[test]
fn qos0_publisher_to_a_stuck_subscriber_is_paused_then_resumes_after_the_stall() {
    // 24 MiB: more than the subscriber's socket buffers and its 1 MiB outgoing limit.
    const COUNT: u32 = 12_000;
    for (pub_shard, sub_shard) in PLACEMENTS {
        let broker = crate::support::broker::start_with(shardmq::broker::Config {
            congestion_timeout_ms: 300,
            mesh_channel_capacity: 256,
            ..crate::support::broker::config(2)
        });
        let mut placer = Placer::new(&broker);
        let mut stuck = placer.raw_on(sub_shard, V4, "qos0-stuck");
        stuck.subscribe("flow/qos0", QoS::AtMostOnce);
        let publisher = placer.raw_on(pub_shard, V4, "qos0-pub");
        let started = Instant::now();
        flood(publisher, "flow/qos0", COUNT, QoS::AtMostOnce, 2_048)
            .join()
            .expect("publisher answered PINGREQ after the flood");
        let what = format!("publisher on shard {pub_shard}, subscriber on {sub_shard}");
        crate::support::broker::wait_until("the flood is delivered or dropped", || {
            let s = totals(&broker);
            s.messages_sent + s.dropped_outgoing_buffer_full >= u64::from(COUNT)
        });
        let stats = totals(&broker);
        assert!(stats.sessions_congested >= 1, "{what}: {stats:?}");
        assert!(stats.publishers_paused_congestion >= 1, "{what}: {stats:?}");
        // The stall let the publisher go on; what the subscriber cannot take is dropped.
        assert!(stats.sessions_stalled >= 1, "{what}: {stats:?}");
        assert!(stats.dropped_outgoing_buffer_full > 0, "{what}: {stats:?}");
        assert_eq!(stats.dropped_memory_limit, 0, "{what}: {stats:?}");
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        drop(stuck);
    }
}

#[test]
fn qos0_backpressure_paces_a_flood_to_a_subscriber_that_reads() {
    // The subscriber reads everything, slower than the publisher writes: with the publisher
    // paced, nothing is dropped.
    const COUNT: u32 = 20_000;
    for (pub_shard, sub_shard) in PLACEMENTS {
        let broker = crate::support::broker::start_with(shardmq::broker::Config {
            congestion_timeout_ms: 60_000,
            mesh_channel_capacity: 256,
            ..crate::support::broker::config(2)
        });
        let mut placer = Placer::new(&broker);
        let mut sub = placer.raw_on(sub_shard, V4, "qos0-reader");
        sub.subscribe("flow/paced", QoS::AtMostOnce);
        let publisher = placer.raw_on(pub_shard, V4, "qos0-pub");
        let reader = thread::spawn(move || {
            let mut seen = 0u32;
            let deadline = Instant::now() + Duration::from_secs(120);
            while seen < COUNT && Instant::now() < deadline {
                match sub.recv(WAIT) {
                    Ok(Packet::Publish(_)) => seen += 1,
                    Ok(other) => panic!("subscriber got {other:?}"),
                    Err(RecvError::Timeout) => break,
                    Err(e) => panic!("subscriber: {e:?}"),
                }
                if seen % 1_000 == 0 {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            seen
        });
        flood(publisher, "flow/paced", COUNT, QoS::AtMostOnce, 1_024)
            .join()
            .expect("publisher answered PINGREQ after the flood");
        let seen = reader.join().expect("subscriber");
        let what = format!("publisher on shard {pub_shard}, subscriber on {sub_shard}");
        let stats = totals(&broker);
        assert_eq!(seen, COUNT, "{what}: {stats:?}");
        assert_eq!(stats.dropped_outgoing_buffer_full, 0, "{what}: {stats:?}");
        assert_eq!(stats.sessions_stalled, 0, "{what}: {stats:?}");
    }
}

#[test]
fn the_memory_budget_bounds_buffered_bytes_and_counts_its_drops() {
    // 1 MiB over 2 shards: 512 KiB each. The per-connection limits are set far above it, so
    // only the budget holds the stuck subscriber's buffer and queue.
    const BUDGET: usize = 1 << 20;
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
        for (pub_shard, sub_shard) in PLACEMENTS {
            let broker = crate::support::broker::start_with(shardmq::broker::Config {
                congestion_timeout_ms: 300,
                mesh_channel_capacity: 256,
                max_buffered_bytes: BUDGET,
                max_outgoing_bytes: 64 << 20,
                max_queued_messages: 1_000_000,
                // In-flight messages are written past the budget (README, memory bound): the
                // bound below holds with a window of 32 x 2 KiB; the default 4,096 x 2 KiB
                // would be 8 MiB, bounded only by `max_outgoing_bytes` (64 MiB here).
                max_inflight: 32,
                ..crate::support::broker::config(2)
            });
            let mut placer = Placer::new(&broker);
            let mut stuck = placer.raw_on(sub_shard, V4, "mem-stuck");
            stuck.subscribe("flow/mem", qos);
            let publisher = placer.raw_on(pub_shard, V4, "mem-pub");
            // QoS 0: 40 MiB, more than the socket buffers; QoS 1: 10 MiB, all queued.
            let count = if qos == QoS::AtMostOnce {
                20_000
            } else {
                5_000
            };
            let acks = flood(publisher, "flow/mem", count, qos, 2_048)
                .join()
                .expect("publisher");
            let what =
                format!("{qos:?}, publisher on shard {pub_shard}, subscriber on {sub_shard}");
            if qos == QoS::AtLeastOnce {
                assert_eq!(acks, count, "{what}: every PUBLISH acknowledged");
            }
            crate::support::broker::wait_until("the flood is delivered, queued or dropped", || {
                let s = totals(&broker);
                s.messages_received >= u64::from(count)
                    && s.messages_sent + s.dropped_memory_limit + s.inflight_window_full
                        >= u64::from(count)
            });
            let stats = totals(&broker);
            assert!(stats.memory_pressure >= 1, "{what}: {stats:?}");
            assert!(stats.memory_pressure_stalled >= 1, "{what}: {stats:?}");
            assert!(stats.publishers_paused_congestion >= 1, "{what}: {stats:?}");
            assert!(stats.dropped_memory_limit > 0, "{what}: {stats:?}");
            assert_eq!(stats.dropped_queue_full, 0, "{what}: {stats:?}");
            assert_eq!(stats.dropped_outgoing_buffer_full, 0, "{what}: {stats:?}");
            // Each shard stops at its part, overshooting by at most one message and a few
            // control packets.
            assert!(
                stats.buffered_bytes_peak <= (BUDGET + 16 * 1024) as u64,
                "{what}: {stats:?}"
            );
            assert!(stats.buffered_bytes > 0, "{what}: {stats:?}");
            drop(stuck);
        }
    }
}
