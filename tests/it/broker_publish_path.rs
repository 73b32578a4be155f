//! The publish path's shortcuts over real TCP. The per-shard match cache (`topic::MatchCache`):
//! a topic published again is answered from the cache, and every subscription change (local or
//! on another shard) makes the cached results stale, so deliveries stay exactly what the
//! subscriptions say. Forwarded frames (`Message::frame`): a PUBLISH whose layout fits the
//! subscriber goes out as received, but with the subscriber's own packet id and never with the
//! publisher's DUP flag or a retain flag the subscription does not ask for.

use crate::support::broker::*;
use bytes::Bytes;
use shardmq::codec::{
    MoreProperties, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
    SubscriptionOptions,
};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn forwarded_frames_get_the_subscribers_packet_id_and_flags() {
    let broker = start_broker(1);
    let mut publisher = Raw::connect(addr(&broker), V4, "pub");
    let mut sub = Raw::connect(addr(&broker), V4, "sub");
    assert_eq!(
        sub.subscribe("f/+", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    for (i, (dup, retain)) in [(false, false), (true, false), (false, true), (false, false)]
        .into_iter()
        .enumerate()
    {
        let payload = format!("m{i}");
        publisher.send(&Packet::Publish(Publish {
            dup,
            qos: QoS::AtLeastOnce,
            retain,
            topic: MqttString::from("f/x"),
            packet_id: 900 + i as u16,
            properties: Properties::default(),
            payload: Bytes::from(payload.clone()),
        }));
        assert_eq!(publisher.expect_puback().packet_id, 900 + i as u16);
        let got = sub.receive_and_ack();
        assert_eq!(&got.payload[..], payload.as_bytes());
        assert_eq!(got.topic.as_str(), "f/x");
        assert_eq!(got.qos, QoS::AtLeastOnce);
        // [MQTT-3.3.1-3]: DUP of an outgoing PUBLISH is set independently of the incoming one.
        assert!(!got.dup, "message {i}");
        // [MQTT-3.3.1-9]: no retain flag on an established subscription.
        assert!(!got.retain, "message {i}");
        // The subscriber's session numbers its own packets from 1.
        assert!(got.packet_id < 900, "the publisher's packet id: {got:?}");
    }
}

#[test]
fn forwarded_v5_frames_keep_their_properties() {
    let broker = start_broker(1);
    let mut publisher = Raw::connect(addr(&broker), V5, "pub5");
    let mut sub5 = Raw::connect(addr(&broker), V5, "sub5");
    let mut sub4 = Raw::connect(addr(&broker), V4, "sub4");
    let options = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        retain_as_published: true,
        ..SubscriptionOptions::default()
    };
    assert_eq!(sub5.subscribe_with("p/#", options), ReasonCode::Success);
    assert_eq!(sub4.subscribe("p/#", QoS::AtMostOnce), ReasonCode::Success);
    let mut properties = Properties::from(MoreProperties {
        content_type: Some(MqttString::from("text/plain")),
        user_properties: vec![
            (MqttString::from("b"), MqttString::from("2")),
            (MqttString::from("a"), MqttString::from("1")),
        ],
        ..MoreProperties::default()
    });
    properties.payload_format_indicator = Some(1);
    for retain in [false, true] {
        publisher.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain,
            topic: MqttString::from("p/q"),
            packet_id: 0,
            properties: properties.clone(),
            payload: Bytes::from_static(b"hello"),
        }));
        let got = sub5.expect_publish();
        assert_eq!(&got.payload[..], b"hello");
        // Retain As Published.
        assert_eq!(got.retain, retain);
        assert_eq!(got.properties.payload_format_indicator, Some(1));
        assert_eq!(
            got.properties.content_type.as_ref().map(MqttString::as_str),
            Some("text/plain")
        );
        // [MQTT-3.3.2-18]: user properties in their order.
        let users: Vec<(&str, &str)> = got
            .properties
            .user_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(users, vec![("b", "2"), ("a", "1")]);
        let got = sub4.expect_publish();
        assert_eq!(&got.payload[..], b"hello");
        assert!(!got.retain);
    }
}

#[test]
fn cached_results_follow_subscription_changes_on_every_shard() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut publisher = placer.raw_on(0, V5, "pub");
    let mut local = placer.raw_on(0, V5, "local");
    let mut remote = placer.raw_on(1, V5, "remote");

    // Unrelated subscriptions on both shards, so that neither the publisher's trie nor its
    // routing table is empty: "nobody" for `m/c/t` is then cached in both.
    assert_eq!(
        local.subscribe("other/#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    assert_eq!(
        remote.subscribe("other/#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    for id in 1..=3 {
        publisher.publish("m/c/t", b"x", QoS::AtLeastOnce, false, id);
        assert_eq!(
            publisher.expect_puback().reason_code,
            ReasonCode::NoMatchingSubscribers
        );
    }
    let before = broker.stats();
    // One lookup per publish, all but the first publish's hits: the routing table, which
    // names this shard's own filters too (issue 17: the local trie is searched only when it
    // matched one of them, and here none does).
    assert!(before.match_cache_hits >= 2, "{before:?}");

    // A subscriber on the publisher's shard.
    assert_eq!(
        local.subscribe("m/+/t", QoS::AtMostOnce),
        ReasonCode::Success
    );
    publisher.publish_acked("m/c/t", b"1", QoS::AtLeastOnce, false, 4);
    assert_eq!(&local.expect_publish().payload[..], b"1");

    // A subscriber on the other shard (a route in the routing table).
    assert_eq!(
        remote.subscribe("m/c/#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    for id in 5..=7 {
        publisher.publish_acked("m/c/t", b"2", QoS::AtLeastOnce, false, id);
        assert_eq!(&local.expect_publish().payload[..], b"2");
        assert_eq!(&remote.expect_publish().payload[..], b"2");
    }

    // Both go away: nothing is delivered from stale results.
    local.send(&unsubscribe_packet(2, &["m/+/t"]));
    local.expect_unsuback();
    remote.send(&unsubscribe_packet(2, &["m/c/#"]));
    remote.expect_unsuback();
    wait_until("the route is removed from the publisher's shard", || {
        publisher.publish("m/c/t", b"3", QoS::AtLeastOnce, false, 8);
        publisher.expect_puback().reason_code == ReasonCode::NoMatchingSubscribers
    });
    local.expect_nothing();
    remote.expect_nothing();

    let after = broker.stats();
    assert!(
        after.match_cache_hits > before.match_cache_hits,
        "{after:?}"
    );
    assert!(
        after.match_cache_misses > before.match_cache_misses,
        "{after:?}"
    );
}
