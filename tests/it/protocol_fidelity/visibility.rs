//! Item 7: subscribe visibility across shards. A client sends SUBSCRIBE on shard 0 and, without
//! waiting for its SUBACK, a client on shard 1 publishes to the filter at once. MQTT does not
//! order packets across connections, so a miss is allowed; but a single-threaded broker (and the
//! tests written against one, Paho's interoperability suite among them) delivers every message
//! it reads after the SUBSCRIBE. This measures how often shardmq misses such a message.

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS};
use std::time::Duration;

/// Misses out of `trials` near-simultaneous SUBSCRIBE (shard 0) / PUBLISH (shard 1) pairs.
fn measure_misses(trials: usize, gap: Duration) -> usize {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut subscriber = placer.raw_on(0, ProtocolVersion::V3_1_1, "vis-sub");
    let mut publisher = placer.raw_on(1, ProtocolVersion::V3_1_1, "vis-pub");
    let options = shardmq::codec::SubscriptionOptions {
        qos: QoS::AtMostOnce,
        ..Default::default()
    };
    let mut misses = 0;
    for i in 0..trials {
        // A new filter each time: only a shard's first subscriber for a filter broadcasts it.
        let topic = format!("vis/{i}");
        let subscribe = encode(&subscribe_packet(1, &[(topic.as_str(), options)]));
        let publish = encode(&publish_packet(&topic, b"x", QoS::AtMostOnce, false, 0));
        subscriber.send_bytes(&subscribe);
        let sent = std::time::Instant::now();
        while sent.elapsed() < gap {
            std::hint::spin_loop();
        }
        publisher.send_bytes(&publish);
        let mut got = false;
        let mut suback = false;
        while !suback {
            match subscriber.next() {
                Packet::SubAck(_) => suback = true,
                Packet::Publish(p) => got |= p.topic.as_str() == topic,
                other => panic!("{other:?}"),
            }
        }
        // The PUBLISH was routed (or not) before the publisher's PINGRESP; a delivery then
        // reaches the subscriber within a few milliseconds.
        publisher.ping();
        while !got {
            match subscriber.recv(Duration::from_millis(50)) {
                Ok(Packet::Publish(p)) => got |= p.topic.as_str() == topic,
                Ok(other) => panic!("{other:?}"),
                Err(_) => break,
            }
        }
        if !got {
            misses += 1;
        }
    }
    misses
}

fn encode(packet: &Packet) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    packet
        .encode(ProtocolVersion::V3_1_1, &mut out)
        .expect("encodes");
    out.to_vec()
}

/// Measured on the project's loaded 2-core VM (debug build, 200 trials each, the test thread
/// spinning for the gap between writing the SUBSCRIBE and the PUBLISH): before issue 16, where a
/// shard applied route changes only after the turn's socket reads and peers were woken at the
/// end of the broadcasting shard's turn, 200 of 200 were missed at every gap from 0 to 100 us;
/// with routes flagged and woken at once and applied before each read, 128 at 0 us, 116 at 10,
/// 85 at 25, 9 at 50 and 5 at 100 us. What remains at small gaps is the peer reading the PUBLISH
/// before the subscriber's shard has decoded the SUBSCRIBE and pushed the route (see
/// `ShardCore::take_routes_sent`). The misses depend on how busy the machine is (30-69 of 200
/// with eight builds running beside the suite), so this test only asserts that the change is
/// there: at most three quarters missed, where the code before it missed all 200. The figures
/// themselves are a measurement (printed), not a bound.
#[test]
fn a_publish_100_us_after_a_subscribe_on_another_shard_reaches_it() {
    let trials = 200;
    let misses = measure_misses(trials, Duration::from_micros(100));
    eprintln!("subscribe visibility, gap 100 us: {misses} of {trials} missed the new subscriber");
    assert!(
        misses * 4 <= trials * 3,
        "{misses} of {trials} publishes missed a subscription read before them"
    );
}
