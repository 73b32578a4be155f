//! Shared subscriptions `$share/{group}/{filter}` (MQTT 5 spec 4.8.2) in the deterministic
//! simulation (issue 10, item 3): one member per message, the strategies, skipping offline and
//! lagging members, and a message routed to a shard whose last member just left. These were
//! real-TCP tests that placed members on shards with filler connections and waited for quiet
//! periods; here each member sits on the shard the test names and every turn runs to the end.
//! `mqtt5_shared.rs` keeps the real-TCP ones for the wire and for MQTT 3.1.1 clients.

use crate::support::assert_each_once;
use crate::support::broker::{connect_packet, publish_packet, unsubscribe_packet};
use crate::support::sim::{advance_ms, payloads, sim_with, Peer};
use shardmq::broker::config::SharedStrategy;
use shardmq::codec::{Packet, ProtocolVersion, QoS, SubscriptionOptions};
use shardmq::sim::Sim;
use std::collections::BTreeSet;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    }
}

fn client(sim: &mut Sim, shard: usize, id: &str) -> Peer {
    Peer::connect(sim, shard, connect_packet(V5, id, true)).0
}

/// A member of `share` on `shard`.
fn member(sim: &mut Sim, shard: usize, id: &str, share: &str) -> Peer {
    let mut peer = client(sim, shard, id);
    peer.subscribe_with(sim, share, qos1());
    peer
}

/// Publishes `m0`..`m{n-1}` at QoS 1, each acknowledged, and returns the payloads.
fn publish_n(sim: &mut Sim, publisher: &mut Peer, topic: &str, n: usize) -> BTreeSet<String> {
    (0..n)
        .map(|i| {
            let payload = format!("m{i}");
            let packet = publish_packet(topic, payload.as_bytes(), QoS::AtLeastOnce, false, 1);
            publisher.send(sim, &packet);
            let acks = publisher.packets(sim);
            assert!(matches!(acks.as_slice(), [Packet::PubAck(_)]), "{acks:?}");
            payload
        })
        .collect()
}

fn drain_all(sim: &mut Sim, members: &mut [Peer]) -> Vec<Vec<String>> {
    members.iter_mut().map(|m| m.drain(sim)).collect()
}

/// Spec 4.8.2: each message goes to one member; round robin spreads them over members on
/// three shards, while an ordinary subscriber gets every message.
#[test]
fn round_robin_one_member_per_message_across_shards() {
    let mut sim = sim_with(3, |_| {});
    let mut members: Vec<Peer> = (0..3)
        .map(|shard| {
            member(
                &mut sim,
                shard,
                &format!("member{shard}"),
                "$share/g/jobs/+",
            )
        })
        .collect();
    let mut plain = client(&mut sim, 1, "plain");
    plain.subscribe(&mut sim, "jobs/#", QoS::AtLeastOnce);
    let mut publisher = client(&mut sim, 0, "publisher");
    let sent = publish_n(&mut sim, &mut publisher, "jobs/a", 12);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g.len(), 4, "round robin gives member {i} a third: {got:?}");
    }
    assert_eq!(
        plain.drain(&mut sim).len(),
        12,
        "the ordinary subscription gets all"
    );
}

/// A shard whose last member left after the publishing shard routed messages there (its route
/// removal still on the way) forwards them to another shard with members: the UNSUBSCRIBE and
/// the publishes are read in the same turn, so the race happens every time.
#[test]
fn message_routed_to_a_shard_without_members_is_forwarded() {
    let mut sim = sim_with(2, |_| {});
    let mut stay = member(&mut sim, 0, "stay", "$share/g/f");
    let mut leave = member(&mut sim, 1, "leave", "$share/g/f");
    let mut publisher = client(&mut sim, 0, "fp");
    leave.send_only(&mut sim, &unsubscribe_packet(2, &["$share/g/f"]));
    let sent: BTreeSet<String> = (0..40).map(|i| format!("m{i:02}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        let packet = publish_packet(
            "f",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            false,
            1 + i as u16,
        );
        publisher.send_only(&mut sim, &packet);
    }
    assert!(sim.settle(1000));
    let acks = publisher.packets(&mut sim);
    assert_eq!(acks.len(), 40);
    assert!(acks.iter().all(|a| matches!(a, Packet::PubAck(_))));
    let left = leave.packets(&mut sim);
    assert!(
        matches!(left.as_slice(), [Packet::UnsubAck(_)]),
        "nothing after its UNSUBSCRIBE: {left:?}"
    );
    assert_each_once(&[stay.drain(&mut sim)], &sent);
    assert_eq!(sim.global().stats().shared_no_member, 0);
}

/// Two groups on the same filter each get every message once.
#[test]
fn each_group_gets_every_message_once() {
    let mut sim = sim_with(2, |_| {});
    let mut a = vec![
        member(&mut sim, 0, "a0", "$share/ga/t"),
        member(&mut sim, 1, "a1", "$share/ga/t"),
    ];
    let mut b = vec![
        member(&mut sim, 1, "b0", "$share/gb/t"),
        member(&mut sim, 0, "b1", "$share/gb/t"),
    ];
    let mut publisher = client(&mut sim, 1, "p");
    let sent = publish_n(&mut sim, &mut publisher, "t", 8);
    assert_each_once(&drain_all(&mut sim, &mut a), &sent);
    assert_each_once(&drain_all(&mut sim, &mut b), &sent);
}

/// A member whose session is kept offline is skipped while another member is online, and
/// nothing was queued for it when it comes back.
#[test]
fn offline_member_is_skipped() {
    let mut sim = sim_with(1, |_| {});
    let mut keeper = connect_packet(V5, "offline-member", false);
    keeper.properties.session_expiry_interval = Some(60);
    let (mut gone, _) = Peer::connect(&mut sim, 0, keeper.clone());
    gone.subscribe_with(&mut sim, "$share/g/o", qos1());
    let mut online = member(&mut sim, 0, "online-member", "$share/g/o");
    gone.send(&mut sim, &Packet::Disconnect(Default::default()));
    let mut publisher = client(&mut sim, 0, "op");
    let sent = publish_n(&mut sim, &mut publisher, "o", 6);
    let got = online.drain(&mut sim);
    assert_eq!(got.len(), 6, "every message to the online member: {got:?}");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), sent);
    let (mut back, connack) = Peer::connect(&mut sim, 0, keeper);
    assert!(connack.session_present);
    assert_eq!(back.packets(&mut sim), [], "nothing was queued for it");
}

/// A member whose in-flight window is full (it does not acknowledge, Receive Maximum 1) is
/// skipped for QoS 1 while another member on its shard keeps up.
#[test]
fn lagging_member_is_skipped() {
    let mut sim = sim_with(1, |_| {});
    let mut slow = connect_packet(V5, "slow", true);
    slow.properties.receive_maximum = Some(1);
    let (mut slow, _) = Peer::connect(&mut sim, 0, slow);
    slow.subscribe_with(&mut sim, "$share/g/l", qos1());
    let mut fast = member(&mut sim, 0, "fast", "$share/g/l");
    let mut publisher = client(&mut sim, 0, "lp");
    let sent = publish_n(&mut sim, &mut publisher, "l", 8);
    let fast_got = fast.drain(&mut sim);
    // The slow member never acknowledges: it gets exactly one message.
    let slow_got: Vec<String> = payloads(&slow.packets(&mut sim))
        .into_iter()
        .map(|(_, p)| String::from_utf8_lossy(&p).into_owned())
        .collect();
    assert_eq!(slow_got.len(), 1, "slow: {slow_got:?}, fast: {fast_got:?}");
    assert_each_once(&[slow_got, fast_got], &sent);
}

fn strategy_sim(strategy: SharedStrategy) -> Sim {
    sim_with(2, |c| c.shared_subscription_strategy = strategy)
}

/// `hash`: one publisher's messages all go to one member, with members on two shards.
#[test]
fn hash_strategy_keeps_a_publisher_on_one_member() {
    let mut sim = strategy_sim(SharedStrategy::Hash);
    let mut members = vec![
        member(&mut sim, 0, "h0", "$share/g/h"),
        member(&mut sim, 1, "h1", "$share/g/h"),
    ];
    let mut publisher = client(&mut sim, 0, "hash-publisher");
    let sent = publish_n(&mut sim, &mut publisher, "h", 6);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    assert!(
        got.iter().any(|g| g.len() == 6),
        "one member gets all: {got:?}"
    );
}

/// `sticky`: the same member while it stays online; another one once it leaves.
#[test]
fn sticky_strategy_keeps_one_member_until_it_leaves() {
    let mut sim = strategy_sim(SharedStrategy::Sticky);
    let mut members = vec![
        member(&mut sim, 0, "s0", "$share/g/s"),
        member(&mut sim, 0, "s1", "$share/g/s"),
    ];
    let mut publisher = client(&mut sim, 1, "sp");
    let sent = publish_n(&mut sim, &mut publisher, "s", 5);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    let chosen = got
        .iter()
        .position(|g| g.len() == 5)
        .expect("one member gets all");
    let mut leaving = members.remove(chosen);
    leaving.send(&mut sim, &Packet::Disconnect(Default::default()));
    advance_ms(&mut sim, 0);
    let after = publish_packet("s", b"after", QoS::AtLeastOnce, false, 100);
    publisher.send(&mut sim, &after);
    assert_eq!(members[0].drain(&mut sim), ["after"]);
}

/// `random`: every message still goes to exactly one member, over both shards.
#[test]
fn random_strategy_delivers_each_message_once() {
    let mut sim = strategy_sim(SharedStrategy::Random);
    let mut members = vec![
        member(&mut sim, 0, "r0", "$share/g/rnd"),
        member(&mut sim, 1, "r1", "$share/g/rnd"),
        member(&mut sim, 1, "r2", "$share/g/rnd"),
    ];
    let mut publisher = client(&mut sim, 0, "rp");
    let sent = publish_n(&mut sim, &mut publisher, "rnd", 20);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    assert!(
        got.iter().filter(|g| !g.is_empty()).count() >= 2,
        "spread over members: {got:?}"
    );
}

/// The message numbers (`m{i}`) a member got.
fn numbers(got: &[String]) -> Vec<usize> {
    got.iter()
        .map(|p| p.trim_start_matches('m').parse().expect("m{i}"))
        .collect()
}

/// Issue 17 (a group is keyed by its slot, not its name, on the per-message path): round robin
/// takes the members of one shard strictly in turn, still after a member leaves and another
/// joins, and a group made in the slot of one that went does not get the old one's messages.
#[test]
fn round_robin_takes_members_in_turn_through_leaves_and_joins() {
    let mut sim = sim_with(1, |_| {});
    let mut members: Vec<Peer> = (0..4)
        .map(|i| member(&mut sim, 0, &format!("rr{i}"), "$share/g/rr"))
        .collect();
    let mut publisher = client(&mut sim, 0, "rrp");
    let in_turn = |got: &[Vec<String>], n: usize| {
        let mut residues = BTreeSet::new();
        for g in got {
            let numbers = numbers(g);
            assert!(!numbers.is_empty(), "every member gets some: {got:?}");
            assert!(
                numbers.iter().all(|i| i % n == numbers[0] % n),
                "every {n}th message to one member: {got:?}"
            );
            residues.insert(numbers[0] % n);
        }
        assert_eq!(residues.len(), n, "members in turn: {got:?}");
    };
    let sent = publish_n(&mut sim, &mut publisher, "rr", 8);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    in_turn(&got, 4);
    // One leaves: the other three in turn.
    let mut gone = members.remove(1);
    gone.send(&mut sim, &unsubscribe_packet(2, &["$share/g/rr"]));
    assert!(matches!(
        gone.packets(&mut sim).as_slice(),
        [Packet::UnsubAck(_)]
    ));
    let sent = publish_n(&mut sim, &mut publisher, "rr", 9);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    in_turn(&got, 3);
    // One joins: four in turn again.
    members.push(member(&mut sim, 0, "rr4", "$share/g/rr"));
    let sent = publish_n(&mut sim, &mut publisher, "rr", 8);
    let got = drain_all(&mut sim, &mut members);
    assert_each_once(&got, &sent);
    in_turn(&got, 4);
    // A group whose last member left frees its slot; a new group takes it.
    let mut old = member(&mut sim, 0, "old", "$share/old/x");
    old.send(&mut sim, &unsubscribe_packet(3, &["$share/old/x"]));
    assert!(matches!(
        old.packets(&mut sim).as_slice(),
        [Packet::UnsubAck(_)]
    ));
    let mut new = member(&mut sim, 0, "new", "$share/new/y");
    publish_n(&mut sim, &mut publisher, "x", 2);
    assert_eq!(old.drain(&mut sim), Vec::<String>::new());
    assert_eq!(
        new.drain(&mut sim),
        Vec::<String>::new(),
        "not the old group's"
    );
    let sent = publish_n(&mut sim, &mut publisher, "y", 2);
    assert_each_once(&[new.drain(&mut sim)], &sent);
    let got = drain_all(&mut sim, &mut members);
    assert!(got.iter().all(Vec::is_empty), "{got:?}");
}

/// The QoS 1 PUBLISHes a peer was sent since the last call: (packet id, payload).
fn publishes(sim: &mut Sim, peer: &mut Peer) -> Vec<(u16, String)> {
    peer.packets(sim)
        .into_iter()
        .map(|packet| match packet {
            Packet::Publish(p) => (p.packet_id, String::from_utf8_lossy(&p.payload).into()),
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

fn ack(sim: &mut Sim, peer: &mut Peer, packet_id: u16) {
    let ack = shardmq::codec::Ack {
        packet_id,
        reason_code: shardmq::codec::ReasonCode::Success,
        properties: Default::default(),
    };
    peer.send(sim, &Packet::PubAck(ack));
}

/// Issue 17: while no member can take a QoS 1 message (every window full) each message is
/// queued to the strategy's member without every member being checked again (counted each
/// time); once a member's acknowledgement opens its window it is picked at once, and every
/// message arrives once.
#[test]
fn a_busy_group_is_looked_at_again_once_a_member_acknowledges() {
    let mut sim = sim_with(1, |_| {});
    let mut members: Vec<Peer> = (0..2)
        .map(|i| {
            let mut connect = connect_packet(V5, &format!("busy{i}"), true);
            connect.properties.receive_maximum = Some(1);
            let (mut peer, _) = Peer::connect(&mut sim, 0, connect);
            peer.subscribe_with(&mut sim, "$share/g/busy", qos1());
            peer
        })
        .collect();
    let mut publisher = client(&mut sim, 0, "busy-pub");
    let busy = |sim: &Sim| sim.global().stats().shared_all_members_busy;
    let mut publish = |sim: &mut Sim, payload: &str| {
        let packet = publish_packet("busy", payload.as_bytes(), QoS::AtLeastOnce, false, 1);
        publisher.send(sim, &packet);
        assert!(matches!(
            publisher.packets(sim).as_slice(),
            [Packet::PubAck(_)]
        ));
    };
    let mut got: Vec<Vec<String>> = vec![Vec::new(), Vec::new()];
    // One message each fills both windows.
    publish(&mut sim, "m0");
    publish(&mut sim, "m1");
    let mut in_flight = Vec::new();
    for (i, member) in members.iter_mut().enumerate() {
        let sent = publishes(&mut sim, member);
        assert_eq!(sent.len(), 1, "one each: {sent:?}");
        in_flight.push(sent[0].0);
        got[i].push(sent[0].1.clone());
    }
    assert_eq!(busy(&sim), 0);
    // Two more: nobody can take them; queued, counted each time, nothing sent.
    publish(&mut sim, "q2");
    assert_eq!(busy(&sim), 1);
    publish(&mut sim, "q3");
    assert_eq!(busy(&sim), 2);
    for member in members.iter_mut() {
        assert_eq!(publishes(&mut sim, member), []);
    }
    // Each acknowledgement lets one queued message out (one queued per member: round robin).
    for (i, member) in members.iter_mut().enumerate() {
        ack(&mut sim, member, in_flight[i]);
        let sent = publishes(&mut sim, member);
        assert_eq!(sent.len(), 1, "its queued message: {sent:?}");
        in_flight[i] = sent[0].0;
        got[i].push(sent[0].1.clone());
    }
    // Member 0's window opens with nothing queued: the next message goes to it at once.
    ack(&mut sim, &mut members[0], in_flight[0]);
    assert_eq!(publishes(&mut sim, &mut members[0]), []);
    publish(&mut sim, "q4");
    let sent = publishes(&mut sim, &mut members[0]);
    assert_eq!(
        sent.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
        ["q4"]
    );
    got[0].push(sent[0].1.clone());
    assert_eq!(publishes(&mut sim, &mut members[1]), []);
    assert_eq!(busy(&sim), 2, "no member found busy for q4");
    ack(&mut sim, &mut members[1], in_flight[1]);
    for (i, member) in members.iter_mut().enumerate() {
        got[i].extend(member.drain(&mut sim));
    }
    let sent: BTreeSet<String> = ["m0", "m1", "q2", "q3", "q4"].map(String::from).into();
    assert_each_once(&got, &sent);
}
