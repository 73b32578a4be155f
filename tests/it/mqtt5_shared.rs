//! MQTT 5 shared subscriptions `$share/{group}/{filter}` (spec 4.8.2) over real TCP, with the
//! members on different shards: MQTT 3.1.1 members, No Local [MQTT-3.8.3-4], no retained
//! messages, unsubscribing, redelivery of a departing member's messages, Subscription
//! Identifiers, a member moving shard. One member per message, the strategies and skipping
//! offline and lagging members are tested in the simulation, `sim_shared.rs`.

use crate::support::assert_each_once;
use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};
use std::collections::BTreeSet;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    }
}

/// Receives (and acknowledges) every PUBLISH until nothing arrives for `QUIET`.
fn drain(raw: &mut Raw) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match raw.recv(QUIET) {
            Ok(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    raw.send(&Packet::PubAck(ack(p.packet_id)));
                }
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(RecvError::Timeout) => return got,
            Err(e) => panic!("member connection failed: {e:?}"),
        }
    }
}

fn publish_n(publisher: &mut Raw, topic: &str, n: usize, qos: QoS) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let payload = format!("m{i}");
            publisher.publish_acked(topic, payload.as_bytes(), qos, false, 1 + i as u16);
            payload
        })
        .collect()
}

#[test]
fn shared_subscription_available_advertised_in_connack() {
    let broker = start_broker(1);
    let (_raw, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "c", true));
    // Absent means available (3.2.2.3.13); a minimal CONNACK does not repeat it (issue 16).
    assert_eq!(connack.properties.shared_subscription_available, None);
}

/// Shared subscriptions work for MQTT 3.1.1 members too (as Mosquitto and EMQX allow).
#[test]
fn mqtt311_members_share_messages() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut members = [placer.raw_on(0, V4, "v4a"), placer.raw_on(1, V4, "v4b")];
    for m in members.iter_mut() {
        assert_eq!(
            m.subscribe("$share/g/x/#", QoS::AtLeastOnce),
            ReasonCode::GrantedQoS1
        );
    }
    let mut publisher = placer.raw_on(0, V4, "v4p");
    let sent = publish_n(&mut publisher, "x/y", 6, QoS::AtLeastOnce);
    let got: Vec<_> = members.iter_mut().map(drain).collect();
    assert_each_once(&got, &sent);
    assert!(got.iter().all(|g| g.len() == 3), "{got:?}");
}

/// [MQTT-3.8.3-4]: No Local on a shared subscription is a protocol error.
#[test]
fn no_local_on_shared_subscription_is_protocol_error() {
    let broker = start_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "nl");
    let options = SubscriptionOptions {
        no_local: true,
        ..Default::default()
    };
    raw.send(&subscribe_packet(1, &[("$share/g/t", options)]));
    let before = raw.expect_closed();
    let disconnect = before.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    });
    assert_eq!(disconnect, Some(ReasonCode::ProtocolError), "{before:?}");
}

/// Spec 4.8.2 / 3.8.3.1: retained messages are not sent when a shared subscription is made;
/// live retained publishes are delivered to one member like any other.
#[test]
fn retained_messages_not_sent_on_shared_subscribe() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut publisher = placer.raw_on(0, V5, "rp");
    publisher.publish_acked("r/t", b"kept", QoS::AtLeastOnce, true, 1);
    let mut member = placer.raw_on(1, V5, "rm");
    assert_eq!(
        member.subscribe_with("$share/g/r/#", qos1()),
        ReasonCode::GrantedQoS1
    );
    member.expect_nothing();
    // An ordinary subscription still gets it.
    let mut plain = placer.raw_on(1, V5, "rplain");
    plain.subscribe("r/#", QoS::AtLeastOnce);
    assert!(plain.expect_publish().retain);
    publisher.publish_acked("r/t", b"live", QoS::AtLeastOnce, false, 2);
    assert_eq!(&member.receive_and_ack().payload[..], b"live");
}

/// Unsubscribing the last member of a shard stops routing there; the others get everything.
#[test]
fn unsubscribed_member_gets_nothing() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut a = placer.raw_on(0, V5, "u0");
    let mut b = placer.raw_on(1, V5, "u1");
    a.subscribe_with("$share/g/u", qos1());
    b.subscribe_with("$share/g/u", qos1());
    a.send(&unsubscribe_packet(2, &["$share/g/u"]));
    assert_eq!(a.expect_unsuback().reason_codes, vec![ReasonCode::Success]);
    // The publisher is on the unsubscribed member's shard, whose replica changed at once.
    let mut publisher = placer.raw_on(0, V5, "up");
    let sent = publish_n(&mut publisher, "u", 4, QoS::AtLeastOnce);
    a.expect_nothing();
    assert_eq!(drain(&mut b).into_iter().collect::<BTreeSet<_>>(), sent);
}

/// QoS 1 messages in flight to a member whose session ends (it disconnects with a clean
/// session and never acknowledged them) are redelivered to another member of the group, on
/// another shard.
#[test]
fn inflight_messages_of_a_departing_member_go_to_another_member() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut leaving = placer.raw_on(0, V5, "leaving");
    let mut staying = placer.raw_on(1, V5, "staying");
    leaving.subscribe_with("$share/g/re", qos1());
    staying.subscribe_with("$share/g/re", qos1());
    let mut publisher = placer.raw_on(0, V5, "re-pub");
    let sent = publish_n(&mut publisher, "re", 6, QoS::AtLeastOnce);
    // The leaving member reads its share but acknowledges none of it.
    let mut unacked = Vec::new();
    while let Ok(Packet::Publish(p)) = leaving.recv(QUIET) {
        unacked.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    assert!(
        !unacked.is_empty(),
        "round robin gave the leaving member some"
    );
    drop(leaving);
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < sent.len() && std::time::Instant::now() < deadline {
        got.extend(drain(&mut staying));
    }
    assert_each_once(&[got], &sent);
    assert_eq!(broker.stats().shared_redelivered, unacked.len() as u64);
}

/// [MQTT-3.3.4-3]: a shared subscription's Subscription Identifier comes with its deliveries
/// (and only the member's own), across shards.
#[test]
fn shared_subscription_carries_its_subscription_identifier() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut member = placer.raw_on(1, V5, "sid-member");
    let mut subscribe = subscribe_packet(1, &[("$share/g/sid/#", qos1())]);
    if let Packet::Subscribe(s) = &mut subscribe {
        s.properties.subscription_identifiers = vec![42];
    }
    member.send(&subscribe);
    assert_eq!(
        member.expect_suback().reason_codes,
        vec![ReasonCode::GrantedQoS1]
    );
    let mut publisher = placer.raw_on(0, V5, "sid-pub");
    publisher.publish_acked("sid/t", b"x", QoS::AtLeastOnce, false, 1);
    let got = member.receive_and_ack();
    assert_eq!(got.properties.subscription_identifiers, vec![42]);
}

/// A member with a kept session that reconnects on another shard takes its shared
/// subscription along: the group keeps delivering to it there, and messages queued while it
/// was offline (no other member) arrive on reconnect.
#[test]
fn member_session_moving_to_another_shard_keeps_its_membership() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut connect = connect_packet(V5, "mover", false);
    connect.properties.session_expiry_interval = Some(60);
    let (mut first, _) = placer.connect_on(0, connect.clone());
    first.subscribe_with("$share/g/mv", qos1());
    first.disconnect();
    wait_until("member offline", || broker.stats().connections_open == 0);
    let mut publisher = placer.raw_on(0, V5, "mv-pub");
    publisher.publish_acked("mv/x", b"ignored", QoS::AtLeastOnce, false, 1);
    publisher.publish_acked("mv", b"queued", QoS::AtLeastOnce, false, 2);
    let (mut moved, connack) = placer.connect_on(1, connect);
    assert!(connack.session_present);
    assert_eq!(&moved.receive_and_ack().payload[..], b"queued");
    publisher.publish_acked("mv", b"live", QoS::AtLeastOnce, false, 3);
    assert_eq!(&moved.receive_and_ack().payload[..], b"live");
    moved.expect_nothing();
}
