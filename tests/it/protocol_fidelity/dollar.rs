//! Item 6: PUBLISH to `$SYS...` or `$share...` topic names is dropped as Mosquitto 2.0 does
//! (`acl__check_dollar`: write access denied): MQTT 5 QoS 1/2 get PUBACK/PUBREC 0x87 Not
//! authorized, 3.x a plain ack, QoS 0 nothing; the connection stays open and nothing is
//! delivered. Other `$` topics are ordinary names.

use super::bytes::*;
use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::io::Write;

fn publish_bytes(topic: &str, qos: u8, packet_id: u8, v5: bool) -> Vec<u8> {
    let mut body = str16(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&[0, packet_id]);
    }
    if v5 {
        body.push(0);
    }
    body.push(b'x');
    frame(0x30 | (qos << 1), &body)
}

#[test]
fn publishes_to_sys_and_share_names_are_refused_like_mosquitto() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    // Subscribers that would see such messages if they were routed (on both shards).
    let mut watchers: Vec<Raw> = (0..2)
        .map(|shard| {
            let mut w = placer.raw_on(shard, ProtocolVersion::V5, &format!("watch-{shard}"));
            // (No filter can name a `$share/...` topic: such filters are shared subscriptions.)
            for filter in ["$SYS/#", "$sharex/#", "$foo/#"] {
                assert!(!w.subscribe(filter, QoS::AtLeastOnce).is_error());
            }
            w
        })
        .collect();
    let mut v5 = placer.raw_on(0, ProtocolVersion::V5, "dollar-v5");
    // Mosquitto 2.0.11 answers each of these with exactly these bytes (measured).
    for (i, topic) in ["$SYS/broker/uptime", "$SYS", "$share/g/t", "$sharex"]
        .iter()
        .enumerate()
    {
        let id = i as u8 + 1;
        v5.stream
            .write_all(&publish_bytes(topic, 1, id, true))
            .unwrap();
        let ack = v5.expect_puback();
        assert_eq!(
            (ack.packet_id, ack.reason_code),
            (u16::from(id), ReasonCode::NotAuthorized),
            "{topic}"
        );
    }
    v5.stream
        .write_all(&publish_bytes("$SYS/q2", 2, 9, true))
        .unwrap();
    match v5.next() {
        Packet::PubRec(a) => {
            assert_eq!((a.packet_id, a.reason_code), (9, ReasonCode::NotAuthorized))
        }
        other => panic!("expected PUBREC, got {other:?}"),
    }
    v5.stream
        .write_all(&publish_bytes("$SYS/q0", 0, 0, true))
        .unwrap();
    v5.ping();
    // 3.1.1 has no refusal code: a plain PUBACK, nothing delivered.
    let mut v4 = placer.raw_on(1, ProtocolVersion::V3_1_1, "dollar-v4");
    v4.publish("$SYS/broker/x", b"x", QoS::AtLeastOnce, false, 3);
    let ack = v4.expect_puback();
    assert_eq!((ack.packet_id, ack.reason_code), (3, ReasonCode::Success));
    // Any other `$` topic is an ordinary name.
    v5.stream
        .write_all(&publish_bytes("$foo/x", 1, 20, true))
        .unwrap();
    assert_eq!(v5.expect_puback().reason_code, ReasonCode::Success);
    for w in &mut watchers {
        let p = w.receive_and_ack();
        assert_eq!(p.topic.as_str(), "$foo/x");
        w.expect_nothing();
    }
    assert_eq!(broker.stats().publishes_to_reserved_topics, 7);
}

#[test]
fn a_will_to_sys_is_not_published() {
    let broker = start_broker(1);
    let mut watcher = Raw::connect(addr(&broker), ProtocolVersion::V5, "will-watch");
    watcher.subscribe("$SYS/#", QoS::AtMostOnce);
    let connect = with_will(
        connect_packet(ProtocolVersion::V3_1_1, "will-sys", true),
        "$SYS/broker/clients/connected",
        b"0",
        QoS::AtMostOnce,
        false,
    );
    let (raw, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    drop(raw); // no DISCONNECT: the will is due
    wait_until("the will is handled", || {
        broker.stats().publishes_to_reserved_topics == 1
    });
    watcher.expect_nothing();
    assert_eq!(broker.stats().wills_published, 0);
}
