//! MQTT 5 Topic Aliases (spec 3.3.2.3.4) over real TCP, both ways: aliases a client sets
//! (up to our Topic Alias Maximum, 0x94 otherwise) and aliases the broker sends to clients that
//! allow them (an LRU per connection), with publisher and subscriber on different shards. A
//! client's alias set, reused and remapped across shards is tested in the simulation
//! (`sim_pubsub.rs`).

use crate::support::broker::*;
use bytes::Bytes;
use shardmq::codec::{MqttString, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode};
use std::collections::HashMap;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: MqttString::from(topic),
        packet_id: 0,
        properties: Properties {
            topic_alias: Some(alias),
            ..Properties::default()
        },
        payload: Bytes::copy_from_slice(payload),
    })
}

fn disconnect_code(raw: &mut Raw) -> Option<ReasonCode> {
    raw.expect_closed().iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

#[test]
fn topic_alias_maximum_advertised_default_10_and_configurable() {
    let broker = start_broker(1);
    let (_c, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "c", true));
    assert_eq!(connack.properties.topic_alias_maximum, Some(10));
    let broker = start_with(shardmq::broker::Config {
        topic_alias_maximum: 3,
        ..config(1)
    });
    let (_c, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "c", true));
    assert_eq!(connack.properties.topic_alias_maximum, Some(3));
}

/// [MQTT-3.3.2-8]: alias 0 is never valid: DISCONNECT 0x94 Topic Alias invalid, as Mosquitto.
#[test]
fn alias_zero_is_refused() {
    let broker = start_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "zero");
    raw.send(&aliased("t", 0, b"x"));
    let code = disconnect_code(&mut raw);
    assert_eq!(code, Some(ReasonCode::TopicAliasInvalid));
}

/// [MQTT-3.3.2-9]: an alias above our Topic Alias Maximum is invalid (0x94).
#[test]
fn alias_above_maximum_is_topic_alias_invalid() {
    let broker = start_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "over");
    raw.send(&aliased("t", 10, b"ok"));
    raw.ping();
    raw.send(&aliased("t", 11, b"x"));
    assert_eq!(
        disconnect_code(&mut raw),
        Some(ReasonCode::TopicAliasInvalid)
    );
}

/// An empty topic with an alias the client never set is a protocol error (0x82); so is an
/// empty topic without an alias.
#[test]
fn unknown_alias_or_empty_topic_is_protocol_error() {
    let broker = start_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "unknown");
    raw.send(&aliased("", 5, b"x"));
    assert_eq!(disconnect_code(&mut raw), Some(ReasonCode::ProtocolError));
    let mut raw = Raw::connect(addr(&broker), V5, "empty");
    raw.publish("", b"x", QoS::AtMostOnce, false, 0);
    let code = disconnect_code(&mut raw);
    assert!(
        matches!(
            code,
            Some(ReasonCode::ProtocolError | ReasonCode::TopicNameInvalid)
        ),
        "{code:?}"
    );
}

/// Aliases are per connection: after reconnecting the old alias is unknown.
#[test]
fn aliases_do_not_survive_the_connection() {
    let broker = start_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "again");
    raw.send(&aliased("t/a", 1, b"x"));
    raw.ping();
    raw.disconnect();
    let mut raw = Raw::connect(addr(&broker), V5, "again");
    raw.send(&aliased("", 1, b"x"));
    assert_eq!(disconnect_code(&mut raw), Some(ReasonCode::ProtocolError));
}

/// [MQTT-3.3.2-11]: to a client with Topic Alias Maximum 2 the broker sends aliases 1..=2 only:
/// the first message of a topic carries topic and alias, later ones only the alias, and the
/// least recently used alias is reassigned for a third topic. The test resolves aliases as a
/// client must and checks every message's topic.
#[test]
fn broker_sends_aliases_with_lru_reuse() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut connect = connect_packet(V5, "lru-sub", true);
    connect.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = placer.connect_on(0, connect);
    sub.subscribe("lru/#", QoS::AtLeastOnce);
    let mut publisher = placer.raw_on(1, V5, "lru-pub");
    let topics = [
        "lru/a", "lru/a", "lru/b", "lru/a", "lru/c", "lru/c", "lru/a", "lru/b",
    ];
    for (i, topic) in topics.iter().enumerate() {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        publisher.publish_acked(topic, format!("{i}").as_bytes(), qos, false, 1 + i as u16);
    }
    let mut table: HashMap<u16, String> = HashMap::new();
    let mut with_topic = 0;
    for (i, want) in topics.iter().enumerate() {
        let got = sub.receive_and_ack();
        assert_eq!(&got.payload[..], format!("{i}").as_bytes());
        let alias = got
            .properties
            .topic_alias
            .expect("every message has an alias");
        assert!(
            (1..=2).contains(&alias),
            "alias {alias} above the client's maximum"
        );
        if got.topic.is_empty() {
            assert_eq!(
                table.get(&alias).map(String::as_str),
                Some(*want),
                "message {i}"
            );
        } else {
            with_topic += 1;
            assert_eq!(got.topic.as_str(), *want);
            table.insert(alias, want.to_string());
        }
    }
    // a, b, c are new; "lru/a" again after c evicted... exactly the misses send the topic.
    assert!(with_topic >= 3 && with_topic < topics.len(), "{with_topic}");
}

/// A client that does not allow aliases (MQTT 5 without Topic Alias Maximum) never gets one.
#[test]
fn no_aliases_to_clients_that_do_not_allow_them() {
    let broker = start_broker(1);
    let mut sub = Raw::connect(addr(&broker), V5, "plain-sub");
    sub.subscribe("p/#", QoS::AtMostOnce);
    let mut publisher = Raw::connect(addr(&broker), V5, "plain-pub");
    for _ in 0..3 {
        publisher.publish("p/t", b"x", QoS::AtMostOnce, false, 0);
    }
    for _ in 0..3 {
        let got = sub.expect_publish();
        assert_eq!(got.topic.as_str(), "p/t");
        assert_eq!(got.properties.topic_alias, None);
    }
}
