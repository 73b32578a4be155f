//! CONNECT validation and CONNACK codes, protocol errors, malformed input isolation, and every
//! limit (packet size both ways, connections, subscriptions, topic levels, receive maximum,
//! handshake timeout). The outgoing-buffer limit and the slow-consumer timeout are tested in
//! the simulation (`sim_sessions.rs`).

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use std::time::{Duration, Instant};

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn unsupported_protocol_level_gets_return_code_1_then_close() {
    let broker = start_broker(2);
    let mut raw = Raw::tcp(addr(&broker));
    // CONNECT, protocol name "MQTT", level 6.
    raw.send_bytes(&[0x10, 12, 0, 4, b'M', b'Q', b'T', b'T', 6, 0x02, 0, 0, 0, 0]);
    let packets = raw.expect_closed();
    match packets.as_slice() {
        [Packet::ConnAck(c)] => assert_eq!(c.reason_code, ReasonCode::UnsupportedProtocolVersion),
        other => panic!("{other:?}"),
    }
}

#[test]
fn client_identifier_rules_per_version() {
    let broker = start_broker(2);
    let a = addr(&broker);
    // 3.1.1: empty id with clean session 0 -> 0x02 ([MQTT-3.1.3-8]).
    let (mut raw, connack) = Raw::connect_with(a, connect_packet(V4, "", false));
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    raw.expect_closed();
    // 3.1.1: empty id with clean session 1 is accepted.
    let (_ok, connack) = Raw::connect_with(a, connect_packet(V4, "", true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    // 3.1: the id is 1 to 23 characters.
    let (_, connack) = Raw::connect_with(a, connect_packet(V31, "", true));
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    let (_, connack) = Raw::connect_with(a, connect_packet(V31, "a-very-long-client-id-24", true));
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    let (mut v31, connack) = Raw::connect_with(a, connect_packet(V31, "mqisdp", true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    v31.ping();
    // 5.0: an empty id is assigned and returned, with the server's capabilities.
    let (mut v5, connack) = Raw::connect_with(a, connect_packet(V5, "", false));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let assigned = connack
        .properties
        .assigned_client_identifier
        .clone()
        .expect("assigned id");
    assert!(!assigned.is_empty());
    assert_eq!(connack.properties.receive_maximum, Some(1024));
    assert_eq!(connack.properties.maximum_packet_size, Some(1024 * 1024));
    // Absent = 1 (supported): a minimal CONNACK does not repeat defaults (issue 16).
    assert_eq!(connack.properties.shared_subscription_available, None);
    assert_eq!(connack.properties.wildcard_subscription_available, None);
    v5.ping();
    let (_, second) = Raw::connect_with(a, connect_packet(V5, "", true));
    assert_ne!(
        second.properties.assigned_client_identifier,
        Some(assigned),
        "ids are unique"
    );
}

#[test]
fn keep_alive_cap_server_keep_alive_for_v5_and_refusal_for_v311() {
    let mut config = config(1);
    config.max_keep_alive_secs = 30;
    let broker = start_with(config);
    let mut connect = connect_packet(V5, "ka5", true);
    connect.keep_alive_secs = 100;
    let (_c5, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(connack.properties.server_keep_alive, Some(30));
    let mut connect = connect_packet(V4, "ka4", true);
    connect.keep_alive_secs = 100;
    let (mut c4, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    c4.expect_closed();
    assert_eq!(broker.stats().keep_alive_capped, 2);
}

#[test]
fn first_packet_must_be_connect_and_second_connect_is_an_error() {
    let broker = start_broker(2);
    let mut raw = Raw::tcp(addr(&broker));
    raw.send(&Packet::PingReq);
    assert!(raw.expect_closed().is_empty());
    let mut v5 = Raw::connect(addr(&broker), V5, "twice");
    v5.send(&Packet::Connect(Box::new(connect_packet(
        V5, "twice", true,
    ))));
    match v5.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::ProtocolError),
        other => panic!("{other:?}"),
    }
}

#[test]
fn packets_only_a_server_sends_are_protocol_errors() {
    let broker = start_broker(2);
    let server_only = [
        Packet::PingResp,
        Packet::ConnAck(Default::default()),
        Packet::SubAck(shardmq::codec::SubAck {
            packet_id: 1,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        }),
        Packet::UnsubAck(shardmq::codec::UnsubAck {
            packet_id: 1,
            properties: Default::default(),
            reason_codes: vec![ReasonCode::Success],
        }),
    ];
    for (i, packet) in server_only.iter().enumerate() {
        let mut raw = Raw::connect(addr(&broker), V5, &format!("server-only-{i}"));
        raw.send(packet);
        match raw.expect_closed().as_slice() {
            [Packet::Disconnect(d)] => {
                assert_eq!(d.reason_code, ReasonCode::ProtocolError, "{packet:?}")
            }
            other => panic!("{packet:?}: {other:?}"),
        }
    }
    assert!(broker.stats().protocol_errors >= 4);
}

#[test]
fn malformed_input_closes_only_that_connection() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut sub = placer.raw_on(0, V4, "bystander");
    sub.subscribe("iso", QoS::AtMostOnce);
    let mut publisher = placer.raw_on(1, V4, "iso-pub");
    // Wrong fixed-header flags: PUBREL must have flags 0b0010; PINGREQ 0.
    for (i, bytes) in [
        vec![0x60u8, 2, 0, 1],
        vec![0xC1, 0],
        vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x7f],
    ]
    .into_iter()
    .enumerate()
    {
        let mut bad = placer.raw_on(i % 2, V5, &format!("bad{i}"));
        bad.send_bytes(&bytes);
        match bad.expect_closed().as_slice() {
            [Packet::Disconnect(d)] => assert!(
                matches!(
                    d.reason_code,
                    ReasonCode::MalformedPacket | ReasonCode::ProtocolError
                ),
                "{:?}",
                d.reason_code
            ),
            other => panic!("{other:?}"),
        }
    }
    // A v3.1.1 client sending garbage is just closed.
    let mut bad4 = placer.raw_on(0, V4, "bad4");
    bad4.send_bytes(&[0x30, 3, 0, 9, b'x']);
    assert!(bad4.expect_closed().is_empty());
    // Everyone else keeps working.
    publisher.publish_acked("iso", b"still here", QoS::AtLeastOnce, false, 1);
    assert_eq!(&sub.expect_publish().payload[..], b"still here");
}

#[test]
fn packet_too_large_gets_0x95_then_close_and_client_maximum_is_respected() {
    let mut config = config(2);
    config.max_packet_size = 1024;
    let broker = start_with(config);
    let mut placer = Placer::new(&broker);
    let mut big = placer.raw_on(0, V5, "big");
    big.publish("t", &[0u8; 2000], QoS::AtMostOnce, false, 0);
    match big.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::PacketTooLarge),
        other => panic!("{other:?}"),
    }
    assert_eq!(broker.stats().packets_too_large, 1);
    // The client's Maximum Packet Size: larger messages are not sent to it.
    let mut connect = connect_packet(V5, "small", true);
    connect.properties.maximum_packet_size = Some(100);
    let (mut small, _) = placer.connect_on(1, connect);
    small.subscribe("size/#", QoS::AtLeastOnce);
    let mut publisher = placer.raw_on(0, V4, "size-pub");
    publisher.publish_acked("size/big", &[1u8; 500], QoS::AtLeastOnce, false, 1);
    publisher.publish_acked("size/small", b"fits", QoS::AtLeastOnce, false, 2);
    let got = small.receive_and_ack();
    assert_eq!(got.topic.as_str(), "size/small");
    assert_eq!(broker.stats().dropped_client_packet_size, 1);
}

#[test]
fn max_connections_closes_extra_connections() {
    let mut config = config(2);
    config.max_connections = 3;
    let broker = start_with(config);
    let clients: Vec<Raw> = (0..3)
        .map(|i| Raw::connect(addr(&broker), V4, &format!("c{i}")))
        .collect();
    let mut extra = Raw::tcp(addr(&broker));
    assert!(extra.expect_closed().is_empty());
    assert_eq!(broker.stats().connections_rejected, 1);
    drop(clients);
    wait_until("room again", || broker.stats().connections_open == 0);
    Raw::connect(addr(&broker), V4, "later").ping();
}

#[test]
fn subscription_and_topic_level_limits() {
    let mut config = config(2);
    config.max_subscriptions_per_client = 2;
    config.max_topic_levels = 3;
    let broker = start_with(config);
    let mut c5 = Raw::connect(addr(&broker), V5, "limits5");
    let opts = SubscriptionOptions::default();
    c5.send(&subscribe_packet(
        1,
        &[
            ("a", opts),
            ("b", opts),
            ("c", opts),
            ("a", opts),
            ("x/y/z/w", opts),
            ("$share/g/t", opts),
        ],
    ));
    let codes = c5.expect_suback().reason_codes;
    assert_eq!(
        codes,
        vec![
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded,
            ReasonCode::Success,
            ReasonCode::TopicFilterInvalid,
            // Shared subscriptions count against the per-client limit like any other.
            ReasonCode::QuotaExceeded,
        ]
    );
    assert_eq!(broker.stats().subscriptions_refused, 2);
    assert_eq!(broker.stats().topic_levels_exceeded, 1);
    let mut c4 = Raw::connect(addr(&broker), V4, "limits4");
    c4.send(&subscribe_packet(1, &[("a", opts), ("b/c/d/e", opts)]));
    let codes = c4.expect_suback().reason_codes;
    assert_eq!(codes[0], ReasonCode::Success);
    assert!(codes[1].is_error());
    // Publishing to a topic over the level limit closes the connection (0x90).
    c5.publish("a/b/c/d", b"x", QoS::AtMostOnce, false, 0);
    match c5.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::TopicNameInvalid),
        other => panic!("{other:?}"),
    }
}

#[test]
fn receive_maximum_exceeded_is_0x93() {
    let mut config = config(1);
    config.receive_maximum = 2;
    let broker = start_with(config);
    let mut c = Raw::connect(addr(&broker), V5, "greedy");
    for id in 1..=3u16 {
        c.publish("rm", b"x", QoS::ExactlyOnce, false, id);
    }
    let packets = c.expect_closed();
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ReceiveMaximumExceeded),
        "{packets:?}"
    );
}

#[test]
fn handshake_timeout_closes_silent_connections() {
    let mut config = config(1);
    config.handshake_timeout_ms = 300;
    let broker = start_with(config);
    let start = Instant::now();
    let mut silent = Raw::tcp(addr(&broker));
    assert!(silent.expect_closed().is_empty());
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(broker.stats().handshake_timeouts, 1);
}

#[test]
fn max_sessions_refuses_new_sessions_with_quota_exceeded() {
    let mut config = config(2);
    config.max_sessions = 2;
    let broker = start_with(config);
    let a = addr(&broker);
    let _one = Raw::connect(a, V5, "s1");
    let _two = Raw::connect(a, V4, "s2");
    let (mut three, connack) = Raw::connect_with(a, connect_packet(V5, "s3", true));
    assert_eq!(connack.reason_code, ReasonCode::QuotaExceeded);
    three.expect_closed();
    let (_, connack) = Raw::connect_with(a, connect_packet(V4, "s4", true));
    assert_eq!(connack.reason_code, ReasonCode::ServerUnavailable);
    // Taking over an existing session is still allowed.
    let (_again, connack) = Raw::connect_with(a, connect_packet(V5, "s1", true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(broker.stats().sessions_refused, 2);
}

#[test]
fn malformed_v5_connect_gets_connack_with_reason_code() {
    let broker = start_broker(1);
    let mut raw = Raw::tcp(addr(&broker));
    raw.version = V5;
    // MQTT 5 CONNECT whose reserved flag bit is set ([MQTT-3.1.2-3]): malformed.
    raw.send_bytes(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x03, 0, 0, 0, 0, 0,
    ]);
    match raw.expect_closed().as_slice() {
        [Packet::ConnAck(c)] => assert!(
            matches!(
                c.reason_code,
                ReasonCode::MalformedPacket | ReasonCode::ProtocolError
            ),
            "{:?}",
            c.reason_code
        ),
        other => panic!("{other:?}"),
    }
}
