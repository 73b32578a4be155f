//! MQTT 5 flow control and capabilities over real TCP: Receive Maximum of the broker (the
//! client's, across shards, is tested in the simulation, `sim_sessions.rs`), Maximum Packet
//! Size per subscriber, Maximum QoS, Retain Available, and the CONNACK capability
//! properties advertised truthfully. Publishers and subscribers sit on different shards.

use crate::support::broker::*;
use shardmq::broker::Config;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn disconnect_code(packets: &[Packet]) -> Option<ReasonCode> {
    packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}

/// Spec 3.2.2.3: every capability in CONNACK says what the broker does; an absent property
/// means its default (Retain, Wildcard, Subscription Identifier and Shared Subscription Available
/// 1, Maximum QoS 2), which a minimal CONNACK does not repeat (issue 16).
#[test]
fn connack_advertises_capabilities_truthfully() {
    let broker = start_broker(2);
    let (_c, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "caps", true));
    let p = &connack.properties;
    assert_eq!(p.receive_maximum, Some(1024));
    assert_eq!(p.maximum_packet_size, Some(1024 * 1024));
    assert_eq!(p.retain_available, None, "absent: retain available");
    assert_eq!(p.maximum_qos, None, "absent: QoS 2 supported");
    assert_eq!(p.wildcard_subscription_available, None);
    assert_eq!(p.subscription_identifier_available, None);
    assert_eq!(p.shared_subscription_available, None);
    assert_eq!(p.topic_alias_maximum, Some(10));
}

/// [MQTT-3.3.4-7], [MQTT-3.3.4-8]: more unacknowledged QoS 2 PUBLISHes than our Receive Maximum
/// closes the connection with 0x93 Receive Maximum exceeded.
#[test]
fn client_over_our_receive_maximum_gets_0x93() {
    let broker = start_with(Config {
        receive_maximum: 2,
        ..config(1)
    });
    let (mut raw, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "rm", true));
    assert_eq!(connack.properties.receive_maximum, Some(2));
    for packet_id in 1..=3 {
        raw.publish("rm/t", b"x", QoS::ExactlyOnce, false, packet_id);
    }
    let packets = raw.expect_closed();
    let pubrecs = packets
        .iter()
        .filter(|p| matches!(p, Packet::PubRec(_)))
        .count();
    assert_eq!(pubrecs, 2, "{packets:?}");
    assert_eq!(
        disconnect_code(&packets),
        Some(ReasonCode::ReceiveMaximumExceeded)
    );
    assert_eq!(broker.stats().receive_maximum_exceeded, 1);
}

/// [MQTT-3.1.2-25]: a message bigger than a subscriber's Maximum Packet Size is dropped for
/// that subscriber only, as if delivered; others get it, and later small messages still flow.
#[test]
fn message_over_subscriber_maximum_packet_size_is_dropped_for_it() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut connect = connect_packet(V5, "small", true);
    connect.properties.maximum_packet_size = Some(64);
    let (mut small, _) = placer.connect_on(0, connect);
    small.subscribe("mps/#", QoS::AtLeastOnce);
    let mut big = placer.raw_on(0, V5, "big");
    big.subscribe("mps/#", QoS::AtLeastOnce);
    let mut publisher = placer.raw_on(1, V5, "mps-pub");
    publisher.publish_acked("mps/t", &[7u8; 200], QoS::AtLeastOnce, false, 1);
    publisher.publish_acked("mps/t", b"tiny", QoS::AtLeastOnce, false, 2);
    assert_eq!(big.receive_and_ack().payload.len(), 200);
    assert_eq!(&big.receive_and_ack().payload[..], b"tiny");
    let first = small.receive_and_ack();
    assert_eq!(&first.payload[..], b"tiny", "the big one was dropped");
    small.expect_nothing();
    assert_eq!(broker.stats().dropped_client_packet_size, 1);
}

/// `--max-qos 1`: Maximum QoS 1 in CONNACK [MQTT-3.2.2-9]; QoS 2 subscriptions are accepted
/// and granted QoS 1 [MQTT-3.2.2-10]; a QoS 2 PUBLISH gets DISCONNECT 0x9B [MQTT-3.2.2-11];
/// a QoS 2 will gets CONNACK 0x9B [MQTT-3.2.2-12].
#[test]
fn maximum_qos_is_advertised_and_enforced() {
    let broker = start_with(Config {
        max_qos: 1,
        ..config(2)
    });
    let address = addr(&broker);
    let (mut c, connack) = Raw::connect_with(address, connect_packet(V5, "mq", true));
    assert_eq!(connack.properties.maximum_qos, Some(1));
    assert_eq!(
        c.subscribe("mq/#", QoS::ExactlyOnce),
        ReasonCode::GrantedQoS1
    );
    let mut publisher = Raw::connect(address, V5, "mq-pub");
    publisher.publish_acked("mq/t", b"one", QoS::AtLeastOnce, false, 1);
    assert_eq!(c.receive_and_ack().qos, QoS::AtLeastOnce);
    publisher.publish("mq/t", b"two", QoS::ExactlyOnce, false, 2);
    assert_eq!(
        disconnect_code(&publisher.expect_closed()),
        Some(ReasonCode::QoSNotSupported)
    );
    let will = with_will(
        connect_packet(V5, "mq-will", true),
        "w",
        b"x",
        QoS::ExactlyOnce,
        false,
    );
    let mut raw = Raw::tcp(address);
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(will)));
    assert_eq!(
        raw.expect_connack().reason_code,
        ReasonCode::QoSNotSupported
    );
    // MQTT 3.1.1 publishers above the maximum are disconnected too.
    let mut v4 = Raw::connect(address, V4, "mq-v4");
    v4.publish("mq/t", b"x", QoS::ExactlyOnce, false, 3);
    v4.expect_closed();
}

/// `--retain-available false`: Retain Available 0; a retained PUBLISH gets DISCONNECT 0x9A
/// [MQTT-3.2.2-14]; a retained will gets CONNACK 0x9A [MQTT-3.2.2-13]; nothing is stored.
#[test]
fn retain_not_available_is_advertised_and_enforced() {
    let broker = start_with(Config {
        retain_available: false,
        ..config(1)
    });
    let address = addr(&broker);
    let (mut c, connack) = Raw::connect_with(address, connect_packet(V5, "ra", true));
    assert_eq!(connack.properties.retain_available, Some(0));
    c.publish("ra/t", b"x", QoS::AtLeastOnce, true, 1);
    assert_eq!(
        disconnect_code(&c.expect_closed()),
        Some(ReasonCode::RetainNotSupported)
    );
    assert_eq!(broker.retained_messages(), 0);
    let will = with_will(
        connect_packet(V5, "ra-will", true),
        "w",
        b"x",
        QoS::AtMostOnce,
        true,
    );
    let mut raw = Raw::tcp(address);
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(will)));
    assert_eq!(
        raw.expect_connack().reason_code,
        ReasonCode::RetainNotSupported
    );
}
