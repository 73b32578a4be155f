//! MQTT 5 shared subscriptions `$share/{group}/{filter}` (spec 4.8.2) over real TCP, with the
//! members on different shards: one member per message, strategies, skipping offline and
//! lagging members, MQTT 3.1.1 members, No Local [MQTT-3.8.3-4], no retained messages.

use crate::support::broker::*;
use shardmq::broker::config::SharedStrategy;
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

/// Checks that the members together got every message exactly once.
fn assert_each_once(members: &[Vec<String>], sent: &BTreeSet<String>) {
    let all: Vec<&String> = members.iter().flatten().collect();
    let distinct: BTreeSet<String> = all.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        all.len(),
        sent.len(),
        "one delivery per message: {members:?}"
    );
    assert_eq!(&distinct, sent, "every message delivered: {members:?}");
}

#[test]
fn shared_subscription_available_advertised_in_connack() {
    let broker = start_broker(1);
    let (_raw, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "c", true));
    // Absent means available (3.2.2.3.13); a minimal CONNACK does not repeat it (issue 16).
    assert_eq!(connack.properties.shared_subscription_available, None);
}

/// Spec 4.8.2: each message goes to one member; round robin spreads them over members on
/// three shards, while an ordinary subscriber gets every message.
#[test]
fn round_robin_one_member_per_message_across_shards() {
    let broker = start_broker(3);
    let mut placer = Placer::new(&broker);
    let mut members: Vec<Raw> = (0..3)
        .map(|shard| placer.raw_on(shard, V5, &format!("member{shard}")))
        .collect();
    for member in &mut members {
        assert_eq!(
            member.subscribe_with("$share/g/jobs/+", qos1()),
            ReasonCode::GrantedQoS1
        );
    }
    let mut plain = placer.raw_on(1, V5, "plain");
    assert_eq!(
        plain.subscribe("jobs/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    let mut publisher = placer.raw_on(0, V5, "publisher");
    let sent = publish_n(&mut publisher, "jobs/a", 12, QoS::AtLeastOnce);
    let got: Vec<Vec<String>> = members.iter_mut().map(drain).collect();
    assert_each_once(&got, &sent);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), 4, "round robin gives member {i} a third: {got:?}");
    }
    assert_eq!(
        drain(&mut plain).len(),
        12,
        "the ordinary subscription gets all"
    );
}

/// A shard whose last member left after the publishing shard routed a message there (its
/// route removal still on the way) forwards the message to another shard with members.
#[test]
fn message_routed_to_a_shard_without_members_is_forwarded() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut stay = placer.raw_on(0, V5, "stay");
    let mut leave = placer.raw_on(1, V5, "leave");
    stay.subscribe_with("$share/g/f", qos1());
    leave.subscribe_with("$share/g/f", qos1());
    let mut publisher = placer.raw_on(0, V5, "fp");
    // Publish a burst right behind the UNSUBSCRIBE: some messages may reach shard 1 after
    // its member left; none may be lost.
    leave.send(&unsubscribe_packet(2, &["$share/g/f"]));
    let sent: BTreeSet<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        publisher.publish(
            "f",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            false,
            1 + i as u16,
        );
    }
    for _ in 0..40 {
        publisher.expect_puback();
    }
    let mut left = Vec::new();
    loop {
        match leave.recv(QUIET) {
            Ok(Packet::Publish(p)) => {
                leave.send(&Packet::PubAck(ack(p.packet_id)));
                left.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Ok(Packet::UnsubAck(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert_each_once(&[drain(&mut stay), left], &sent);
}

/// Two groups on the same filter each get every message once.
#[test]
fn each_group_gets_every_message_once() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut a = [placer.raw_on(0, V5, "a0"), placer.raw_on(1, V5, "a1")];
    let mut b = [placer.raw_on(1, V5, "b0"), placer.raw_on(0, V5, "b1")];
    for raw in a.iter_mut() {
        raw.subscribe_with("$share/ga/t", qos1());
    }
    for raw in b.iter_mut() {
        raw.subscribe_with("$share/gb/t", qos1());
    }
    let mut publisher = placer.raw_on(1, V5, "p");
    let sent = publish_n(&mut publisher, "t", 8, QoS::AtLeastOnce);
    assert_each_once(&a.iter_mut().map(drain).collect::<Vec<_>>(), &sent);
    assert_each_once(&b.iter_mut().map(drain).collect::<Vec<_>>(), &sent);
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

/// A member that disconnects (keeping its session) is skipped while another member is online;
/// its shard's messages go to the online member on the same shard.
#[test]
fn offline_member_is_skipped() {
    let broker = start_broker(1);
    let address = addr(&broker);
    let mut keeper = connect_packet(V5, "offline-member", false);
    keeper.properties.session_expiry_interval = Some(60);
    let (mut gone, _) = Raw::connect_with(address, keeper);
    gone.subscribe_with("$share/g/o", qos1());
    let mut online = Raw::connect(address, V5, "online-member");
    online.subscribe_with("$share/g/o", qos1());
    gone.disconnect();
    let mut publisher = Raw::connect(address, V5, "op");
    // The session of the first member is still there (the broker saw the DISCONNECT first).
    publisher.ping();
    wait_until("offline member detached", || {
        broker.stats().connections_open == 2
    });
    let sent = publish_n(&mut publisher, "o", 6, QoS::AtLeastOnce);
    let got = drain(&mut online);
    assert_eq!(got.len(), 6, "every message to the online member: {got:?}");
    assert_eq!(got.iter().cloned().collect::<BTreeSet<_>>(), sent);
    // When it comes back, nothing was queued for it.
    let mut back = connect_packet(V5, "offline-member", false);
    back.properties.session_expiry_interval = Some(60);
    let (mut back, connack) = Raw::connect_with(address, back);
    assert!(connack.session_present);
    back.expect_nothing();
}

/// A member whose in-flight window is full (it does not acknowledge, Receive Maximum 1) is
/// skipped for QoS 1 while another member on its shard keeps up.
#[test]
fn lagging_member_is_skipped() {
    let broker = start_broker(1);
    let address = addr(&broker);
    let mut slow = connect_packet(V5, "slow", true);
    slow.properties.receive_maximum = Some(1);
    let (mut slow, _) = Raw::connect_with(address, slow);
    slow.subscribe_with("$share/g/l", qos1());
    let mut fast = Raw::connect(address, V5, "fast");
    fast.subscribe_with("$share/g/l", qos1());
    let mut publisher = Raw::connect(address, V5, "lp");
    let sent = publish_n(&mut publisher, "l", 8, QoS::AtLeastOnce);
    // The slow member never acknowledges: it gets exactly one message.
    let mut slow_got = Vec::new();
    while let Ok(Packet::Publish(p)) = slow.recv(QUIET) {
        slow_got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    let fast_got = drain(&mut fast);
    assert_eq!(slow_got.len(), 1, "slow: {slow_got:?}, fast: {fast_got:?}");
    assert_each_once(&[slow_got, fast_got], &sent);
}

fn strategy_broker(strategy: SharedStrategy) -> shardmq::broker::BrokerHandle {
    start_with(shardmq::broker::Config {
        shared_subscription_strategy: strategy,
        ..config(2)
    })
}

/// `--shared-subscription-strategy hash`: one publisher's messages all go to one member, even
/// with members on two shards.
#[test]
fn hash_strategy_keeps_a_publisher_on_one_member() {
    let broker = strategy_broker(SharedStrategy::Hash);
    let mut placer = Placer::new(&broker);
    let mut members = [placer.raw_on(0, V5, "h0"), placer.raw_on(1, V5, "h1")];
    for m in members.iter_mut() {
        m.subscribe_with("$share/g/h", qos1());
    }
    let mut publisher = placer.raw_on(0, V5, "hash-publisher");
    let sent = publish_n(&mut publisher, "h", 6, QoS::AtLeastOnce);
    let got: Vec<_> = members.iter_mut().map(drain).collect();
    assert_each_once(&got, &sent);
    assert!(
        got.iter().any(|g| g.len() == 6),
        "one member gets all: {got:?}"
    );
}

/// `sticky`: the same member while it stays online; another one once it leaves.
#[test]
fn sticky_strategy_keeps_one_member_until_it_leaves() {
    let broker = strategy_broker(SharedStrategy::Sticky);
    let mut placer = Placer::new(&broker);
    let mut members = vec![placer.raw_on(0, V5, "s0"), placer.raw_on(0, V5, "s1")];
    for m in members.iter_mut() {
        m.subscribe_with("$share/g/s", qos1());
    }
    let mut publisher = placer.raw_on(1, V5, "sp");
    let sent = publish_n(&mut publisher, "s", 5, QoS::AtLeastOnce);
    let got: Vec<_> = members.iter_mut().map(drain).collect();
    assert_each_once(&got, &sent);
    let chosen = got
        .iter()
        .position(|g| g.len() == 5)
        .expect("one member gets all");
    members.remove(chosen).disconnect();
    wait_until("sticky member gone", || {
        broker.stats().connections_open == 2 + placer.fillers.len() as u64
    });
    publisher.publish_acked("s", b"after", QoS::AtLeastOnce, false, 100);
    assert_eq!(&members[0].receive_and_ack().payload[..], b"after");
}

/// `random`: every message still goes to exactly one member.
#[test]
fn random_strategy_delivers_each_message_once() {
    let broker = strategy_broker(SharedStrategy::Random);
    let mut placer = Placer::new(&broker);
    let mut members = [
        placer.raw_on(0, V5, "r0"),
        placer.raw_on(1, V5, "r1"),
        placer.raw_on(1, V5, "r2"),
    ];
    for m in members.iter_mut() {
        m.subscribe_with("$share/g/rnd", qos1());
    }
    let mut publisher = placer.raw_on(0, V5, "rp");
    let sent = publish_n(&mut publisher, "rnd", 20, QoS::AtLeastOnce);
    assert_each_once(&members.iter_mut().map(drain).collect::<Vec<_>>(), &sent);
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
