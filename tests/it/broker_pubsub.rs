//! Publish/subscribe over real TCP: QoS 0/1/2 across shards, `$` topics, unsubscribe,
//! connection spread, a full mesh channel, subscription identifiers, MQTT 5 subscription
//! options. SUBACK visibility and per-publisher order are property tests in
//! `sim_properties.rs`; retained messages and overlapping subscriptions are tested in the
//! simulation, `sim_pubsub.rs`.

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use std::time::Duration;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn qos0_1_2_delivered_across_shards() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut sub = placer.raw_on(0, V4, "sub");
    let mut publisher = placer.raw_on(1, V5, "pub");
    assert_eq!(
        sub.subscribe("a/+/c", QoS::ExactlyOnce),
        ReasonCode::GrantedQoS2
    );
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let payload = format!("m{i}");
        publisher.publish_acked("a/b/c", payload.as_bytes(), qos, false, 10 + i as u16);
        let got = sub.receive_and_ack();
        assert_eq!(got.topic.as_str(), "a/b/c");
        assert_eq!(&got.payload[..], payload.as_bytes());
        assert_eq!(got.qos, qos);
        assert!(!got.retain);
        assert!(!got.dup);
    }
    // Effective QoS is the minimum of subscription and message QoS.
    let mut sub0 = placer.raw_on(1, V5, "sub0");
    assert_eq!(
        sub0.subscribe("a/b/c", QoS::AtMostOnce),
        ReasonCode::Success
    );
    publisher.publish_acked("a/b/c", b"x", QoS::ExactlyOnce, false, 20);
    assert_eq!(sub0.expect_publish().qos, QoS::AtMostOnce);
    assert_eq!(sub.receive_and_ack().qos, QoS::ExactlyOnce);
    let stats = broker.stats();
    assert!(
        stats.messages_received >= 4 && stats.messages_sent >= 5,
        "{stats:?}"
    );
}

#[test]
fn puback_reports_no_matching_subscribers_to_v5() {
    let broker = start_broker(2);
    let mut publisher = Raw::connect(addr(&broker), V5, "lonely");
    publisher.publish("nobody/listens", b"x", QoS::AtLeastOnce, false, 1);
    let ack = publisher.expect_puback();
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
}

#[test]
fn dollar_topics_not_matched_by_leading_wildcards() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut wild = placer.raw_on(0, V4, "wild");
    wild.subscribe("#", QoS::AtMostOnce);
    wild.send(&subscribe_packet(
        2,
        &[("+/x", SubscriptionOptions::default())],
    ));
    wild.expect_suback();
    let mut dollar = placer.raw_on(0, V4, "dollar");
    // Not `$SYS`: clients may not publish there (issue 16); any `$` topic shows the rule.
    dollar.subscribe("$app/#", QoS::AtMostOnce);
    let mut publisher = placer.raw_on(1, V4, "dpub");
    publisher.publish("$app/x", b"d", QoS::AtMostOnce, false, 0);
    publisher.publish("plain/x", b"p", QoS::AtMostOnce, false, 0);
    publisher.ping();
    assert_eq!(dollar.expect_publish().topic.as_str(), "$app/x");
    let got = wild.expect_publish();
    assert_eq!(got.topic.as_str(), "plain/x", "# must not match $app/x");
    wild.expect_nothing();
}

#[test]
fn unsubscribe_stops_delivery_and_reports_codes() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut sub = placer.raw_on(0, V5, "unsub");
    sub.subscribe("u/1", QoS::AtMostOnce);
    let mut publisher = placer.raw_on(1, V4, "unsub-pub");
    sub.send(&unsubscribe_packet(3, &["u/1", "never/subscribed"]));
    let unsuback = sub.expect_unsuback();
    assert_eq!(unsuback.packet_id, 3);
    assert_eq!(
        unsuback.reason_codes,
        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    publisher.publish("u/1", b"x", QoS::AtMostOnce, false, 0);
    publisher.ping();
    sub.expect_nothing();
    // A v3.1.1 UNSUBACK carries no codes but still answers.
    let mut sub4 = placer.raw_on(0, V4, "unsub4");
    sub4.send(&unsubscribe_packet(4, &["x"]));
    assert_eq!(sub4.expect_unsuback().packet_id, 4);
}

#[test]
fn qos2_exactly_once_with_duplicate_publish_before_pubrel() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut sub = placer.raw_on(0, V4, "q2sub");
    sub.subscribe("q2", QoS::ExactlyOnce);
    let mut publisher = placer.raw_on(1, V4, "q2pub");
    let mut first = publish_packet("q2", b"once", QoS::ExactlyOnce, false, 7);
    publisher.send(&first);
    match publisher.next() {
        Packet::PubRec(a) => assert_eq!(a.packet_id, 7),
        other => panic!("{other:?}"),
    }
    // Retransmission with DUP before PUBREL: PUBREC again, not delivered again.
    if let Packet::Publish(p) = &mut first {
        p.dup = true;
    }
    publisher.send(&first);
    match publisher.next() {
        Packet::PubRec(a) => assert_eq!(a.packet_id, 7),
        other => panic!("{other:?}"),
    }
    publisher.send(&Packet::PubRel(ack(7)));
    match publisher.next() {
        Packet::PubComp(a) => {
            assert_eq!(a.packet_id, 7);
            assert_eq!(a.reason_code, ReasonCode::Success);
        }
        other => panic!("{other:?}"),
    }
    let got = sub.receive_and_ack();
    assert_eq!(&got.payload[..], b"once");
    sub.expect_nothing();
    // The same id after PUBCOMP is a new message.
    publisher.publish_acked("q2", b"again", QoS::ExactlyOnce, false, 7);
    assert_eq!(&sub.receive_and_ack().payload[..], b"again");
    // PUBREL for an unknown id: PUBCOMP (MQTT 5: 0x92).
    let mut v5 = placer.raw_on(1, V5, "q2v5");
    v5.send(&Packet::PubRel(ack(99)));
    match v5.next() {
        Packet::PubComp(a) => assert_eq!(a.reason_code, ReasonCode::PacketIdentifierNotFound),
        other => panic!("{other:?}"),
    }
}

#[test]
fn thousand_connections_spread_evenly_over_four_shards() {
    raise_fd_limit(4096);
    let broker = start_broker(4);
    let address = addr(&broker);
    let mut sockets = Vec::with_capacity(1000);
    for _ in 0..1000 {
        sockets.push(std::net::TcpStream::connect(address).expect("connect"));
    }
    wait_until("1000 connections registered", || {
        broker.stats().connections_per_shard.iter().sum::<u64>() == 1000
    });
    let per_shard = broker.stats().connections_per_shard;
    for &n in &per_shard {
        assert!((225..=275).contains(&n), "uneven spread {per_shard:?}");
    }
    drop(sockets);
    wait_until("connections closed", || {
        broker.stats().connections_open == 0
    });
    let _ = Duration::ZERO;
}

/// With tiny mesh channels the publisher is paused (TCP backpressure) instead of anything being
/// dropped: every QoS 0 message arrives, in order, and nothing deadlocks.
#[test]
fn full_mesh_channel_pauses_the_publisher_and_drops_nothing() {
    let mut config = config(2);
    config.mesh_channel_capacity = 2;
    let broker = start_with(config);
    let mut placer = Placer::new(&broker);
    let mut sub = placer.raw_on(0, V4, "bp-sub");
    sub.subscribe("bp", QoS::AtMostOnce);
    let mut publishers: Vec<Raw> = (0..2)
        .map(|i| placer.raw_on(1, V4, &format!("bp-pub{i}")))
        .collect();
    const N: u32 = 2000;
    // Write everything first (the kernel buffers it), then read.
    for i in 0..N {
        for (p, publisher) in publishers.iter_mut().enumerate() {
            let mut payload = vec![p as u8];
            payload.extend_from_slice(&i.to_be_bytes());
            publisher.publish("bp", &payload, QoS::AtMostOnce, false, 0);
        }
    }
    let mut next = [0u32; 2];
    for _ in 0..2 * N {
        let publish = sub.expect_publish();
        let p = usize::from(publish.payload[0]);
        let i = u32::from_be_bytes(publish.payload[1..5].try_into().unwrap());
        assert_eq!(i, next[p], "publisher {p}: lost or reordered");
        next[p] += 1;
    }
    assert_eq!(next, [N, N]);
    assert!(
        broker.stats().mesh_channel_full > 0,
        "the channel never filled: {:?}",
        broker.stats()
    );
    for publisher in publishers.iter_mut() {
        publisher.ping();
    }
}

fn subscribe_with_id(
    raw: &mut Raw,
    packet_id: u16,
    filter: &str,
    options: SubscriptionOptions,
    id: u32,
) {
    let mut packet = subscribe_packet(packet_id, &[(filter, options)]);
    if let Packet::Subscribe(s) = &mut packet {
        s.properties.subscription_identifiers = vec![id];
    }
    raw.send(&packet);
    assert_eq!(raw.expect_suback().packet_id, packet_id);
}

#[test]
fn v5_subscription_identifiers_of_every_matching_subscription() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut publisher = placer.raw_on(0, V4, "sid-pub");
    publisher.publish_acked("sid/r", b"kept", QoS::AtMostOnce, true, 0);
    // The PINGRESP comes after shard 0 has handled the PUBLISH: without it, a loaded machine
    // can leave the PUBLISH unread until the subscription below has reached shard 0, and then
    // it is (rightly) delivered live as well as retained.
    publisher.ping();
    let mut sub = placer.raw_on(1, V5, "sid-sub");
    let qos1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    subscribe_with_id(&mut sub, 1, "sid/+", qos1, 7);
    // The retained message comes with the identifier of the subscription that found it.
    let retained = sub.expect_publish();
    assert!(retained.retain);
    assert_eq!(retained.properties.subscription_identifiers, vec![7]);
    subscribe_with_id(&mut sub, 2, "sid/#", SubscriptionOptions::default(), 9);
    let again = sub.expect_publish();
    assert_eq!(again.properties.subscription_identifiers, vec![9]);
    sub.send(&subscribe_packet(
        3,
        &[("sid/x", SubscriptionOptions::default())],
    ));
    sub.expect_suback();
    let mut plain = placer.raw_on(1, V5, "sid-plain");
    plain.subscribe("sid/x", QoS::AtMostOnce);
    publisher.publish_acked("sid/x", b"m", QoS::AtLeastOnce, false, 1);
    let got = sub.receive_and_ack();
    assert_eq!(got.qos, QoS::AtLeastOnce);
    assert_eq!(got.properties.subscription_identifiers, vec![7, 9]);
    sub.expect_nothing();
    assert!(plain
        .expect_publish()
        .properties
        .subscription_identifiers
        .is_empty());
}

#[test]
fn v5_no_local_retain_as_published_and_retain_handling() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut me = placer.raw_on(0, V5, "nl");
    let no_local = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    me.subscribe_with("nl/self", no_local);
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..Default::default()
    };
    me.send(&subscribe_packet(2, &[("nl/rap", rap)]));
    me.expect_suback();
    me.publish("nl/self", b"mine", QoS::AtMostOnce, false, 0);
    me.ping();
    me.expect_nothing();
    let mut other = placer.raw_on(1, V4, "nl-other");
    other.publish_acked("nl/self", b"theirs", QoS::AtMostOnce, false, 0);
    assert_eq!(&me.expect_publish().payload[..], b"theirs");
    other.publish_acked("nl/rap", b"r", QoS::AtMostOnce, true, 0);
    assert!(me.expect_publish().retain, "retain as published");
    // Retain handling 1: only on a new subscription; 2: never.
    use shardmq::codec::RetainHandling;
    let if_new = SubscriptionOptions {
        retain_handling: RetainHandling::SendAtSubscribeIfNew,
        ..Default::default()
    };
    let mut late = placer.raw_on(0, V5, "rh");
    late.send(&subscribe_packet(1, &[("nl/rap", if_new)]));
    late.expect_suback();
    assert!(late.expect_publish().retain);
    late.send(&subscribe_packet(2, &[("nl/rap", if_new)]));
    late.expect_suback();
    late.expect_nothing();
    let never = SubscriptionOptions {
        retain_handling: RetainHandling::DoNotSend,
        ..Default::default()
    };
    let mut none = placer.raw_on(1, V5, "rh2");
    none.send(&subscribe_packet(1, &[("nl/rap", never)]));
    none.expect_suback();
    none.expect_nothing();
}

/// CONNECT, SUBSCRIBE, PUBLISH to itself and PINGREQ in one write: the answers come in request
/// order even though the SUBACK waits for the routing barrier of two shards.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let broker = start_broker(2);
    let mut raw = Raw::tcp(addr(&broker));
    let mut bytes = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect_packet(V4, "pipeline", true)))
        .encode(V4, &mut bytes)
        .expect("encodes");
    subscribe_packet(
        1,
        &[(
            "pipe",
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    )
    .encode(V4, &mut bytes)
    .expect("encodes");
    publish_packet("pipe", b"to myself", QoS::AtLeastOnce, false, 2)
        .encode(V4, &mut bytes)
        .expect("encodes");
    Packet::PingReq.encode(V4, &mut bytes).expect("encodes");
    raw.send_bytes(&bytes);
    assert!(matches!(raw.next(), Packet::ConnAck(_)));
    assert!(matches!(raw.next(), Packet::SubAck(_)));
    let mut rest = vec![raw.next(), raw.next(), raw.next()];
    // The PUBACK and the delivery may come in either order; PINGRESP is last.
    assert!(matches!(rest.pop(), Some(Packet::PingResp)), "{rest:?}");
    assert!(
        rest.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 2)),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|p| matches!(p, Packet::Publish(m) if &m.payload[..] == b"to myself")),
        "{rest:?}"
    );
}

#[test]
fn mqtt_3_1_clients_publish_and_subscribe() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let v31 = ProtocolVersion::V3_1;
    let mut sub = placer.raw_on(0, v31, "old-sub");
    assert_eq!(
        sub.subscribe("old/#", QoS::ExactlyOnce),
        ReasonCode::GrantedQoS2
    );
    let mut publisher = placer.raw_on(1, v31, "old-pub");
    publisher.publish_acked("old/t", b"mqisdp", QoS::ExactlyOnce, false, 5);
    let got = sub.receive_and_ack();
    assert_eq!(
        (&got.payload[..], got.qos),
        (&b"mqisdp"[..], QoS::ExactlyOnce)
    );
}
