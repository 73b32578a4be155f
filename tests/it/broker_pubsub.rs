//! Publish/subscribe over real TCP: QoS 0/1/2 across shards, SUBACK visibility, ordering,
//! overlapping subscriptions, `$` topics, unsubscribe, retained messages, connection spread.

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

/// Once a client has its SUBACK, every matching message published afterwards by any client on
/// any shard is delivered, and messages of one publisher keep their order (MQTT 4.6).
#[test]
fn suback_visibility_and_per_publisher_order_on_four_shards() {
    let broker = start_broker(4);
    let mut placer = Placer::new(&broker);
    let mut publishers: Vec<Raw> = (0..4)
        .map(|s| placer.raw_on(s, V4, &format!("p{s}")))
        .collect();
    for round in 0..3 {
        // A fresh subscriber on each shard in turn; its SUBACK is the barrier.
        let shard = round % 4;
        let mut sub = placer.raw_on(shard, V4, &format!("s{round}"));
        let filter = format!("vis/{round}/#");
        sub.subscribe(&filter, QoS::AtLeastOnce);
        const N: u16 = 50;
        for (p, publisher) in publishers.iter_mut().enumerate() {
            for i in 1..=N {
                let topic = format!("vis/{round}/{p}");
                publisher.publish(&topic, &i.to_be_bytes(), QoS::AtLeastOnce, false, i);
            }
        }
        for publisher in publishers.iter_mut() {
            for i in 1..=N {
                assert_eq!(publisher.expect_puback().packet_id, i);
            }
        }
        let mut last = [0u16; 4];
        for _ in 0..(4 * N) {
            let publish = sub.receive_and_ack();
            let p: usize = publish
                .topic
                .as_str()
                .rsplit('/')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let i = u16::from_be_bytes([publish.payload[0], publish.payload[1]]);
            assert_eq!(i, last[p] + 1, "publisher {p} out of order");
            last[p] = i;
        }
        assert_eq!(last, [N; 4]);
        sub.expect_nothing();
    }
}

#[test]
fn overlapping_subscriptions_deliver_once_with_max_qos() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    for (shard, version) in [(0, V4), (1, V5)] {
        let mut sub = placer.raw_on(shard, version, &format!("overlap{shard}"));
        let codes = {
            sub.send(&subscribe_packet(
                1,
                &[
                    (
                        "o/#",
                        SubscriptionOptions {
                            qos: QoS::AtMostOnce,
                            ..Default::default()
                        },
                    ),
                    (
                        "o/+",
                        SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..Default::default()
                        },
                    ),
                    (
                        "o/x",
                        SubscriptionOptions {
                            qos: QoS::AtMostOnce,
                            ..Default::default()
                        },
                    ),
                ],
            ));
            sub.expect_suback().reason_codes
        };
        assert_eq!(
            codes,
            vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::Success
            ]
        );
        let mut publisher = placer.raw_on(1 - shard, V4, &format!("overlap-pub{shard}"));
        publisher.publish_acked("o/x", b"once", QoS::ExactlyOnce, false, 1);
        let got = sub.receive_and_ack();
        assert_eq!(got.qos, QoS::AtLeastOnce);
        sub.expect_nothing();
    }
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
fn retained_set_replace_clear_and_wildcards_across_shards() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut publisher = placer.raw_on(0, V4, "rpub");
    publisher.publish_acked("r/a", b"one", QoS::AtLeastOnce, true, 1);
    publisher.publish_acked("r/b", b"bee", QoS::AtMostOnce, true, 0);
    publisher.publish_acked("r/a", b"two", QoS::AtLeastOnce, true, 2);
    publisher.ping();
    wait_until("two retained messages", || broker.retained_messages() == 2);

    let mut sub = placer.raw_on(1, V5, "rsub");
    assert_eq!(
        sub.subscribe("r/a", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    let got = sub.receive_and_ack();
    assert_eq!(
        (&got.payload[..], got.retain, got.qos),
        (&b"two"[..], true, QoS::AtLeastOnce)
    );
    sub.expect_nothing();

    let mut wild = placer.raw_on(1, V4, "rwild");
    wild.subscribe("r/+", QoS::ExactlyOnce);
    let mut seen: Vec<(String, Vec<u8>, QoS)> = (0..2)
        .map(|_| {
            let p = wild.receive_and_ack();
            assert!(p.retain);
            (p.topic.to_string(), p.payload.to_vec(), p.qos)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("r/a".into(), b"two".to_vec(), QoS::AtLeastOnce),
            ("r/b".into(), b"bee".to_vec(), QoS::AtMostOnce)
        ]
    );
    // A live retained publish reaches existing subscribers with retain 0 ([MQTT-3.3.1-9]).
    publisher.publish_acked("r/b", b"live", QoS::AtMostOnce, true, 0);
    let live = wild.expect_publish();
    assert_eq!((&live.payload[..], live.retain), (&b"live"[..], false));

    // An empty retained payload clears.
    publisher.publish_acked("r/a", b"", QoS::AtMostOnce, true, 0);
    wild.expect_publish();
    wait_until("retained cleared", || broker.retained_messages() == 1);
    let mut late = placer.raw_on(0, V4, "rlate");
    late.subscribe("r/#", QoS::AtMostOnce);
    let only = late.expect_publish();
    assert_eq!(
        (only.topic.as_str(), &only.payload[..]),
        ("r/b", &b"live"[..])
    );
    late.expect_nothing();
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
