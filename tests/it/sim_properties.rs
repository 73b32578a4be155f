//! Property tests of the whole broker logic over random workloads on several shards, run in the
//! deterministic simulation (`shardmq::sim`): no sockets, no threads, no sleeps; every case
//! replays from its seed.

use bytes::Bytes;
use proptest::prelude::*;
use shardmq::broker::Config;
use shardmq::client::{ConnectOptions, Event};
use shardmq::codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
use shardmq::sim::{MeshDelivery, Sim, SimClient};
use std::time::Duration;

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn config(shards: usize) -> Config {
    Config {
        shards,
        ..Config::default()
    }
}

/// A simulation with the given mesh and read behaviour.
fn sim(shards: usize, seed: u64, random_mesh: bool, small_reads: bool) -> Sim {
    let mut sim = Sim::new(config(shards), seed).expect("valid config");
    if random_mesh {
        sim.mesh_delivery = MeshDelivery::Random;
    }
    if small_reads {
        sim.read_chunk_bytes = 0;
    }
    sim
}

fn options(id: &str, version: ProtocolVersion) -> ConnectOptions {
    ConnectOptions::new(id)
        .protocol(version)
        .keep_alive_secs(0)
        .inflight_window(16)
}

/// One turn everywhere, then every client takes its bytes and answers.
fn round(sim: &mut Sim, clients: &mut [&mut SimClient]) {
    sim.step();
    for client in clients.iter_mut() {
        client.pump(sim);
    }
}

/// Rounds until the simulation is idle and no client has anything to send.
fn quiesce(sim: &mut Sim, clients: &mut [&mut SimClient]) {
    for _ in 0..10_000 {
        round(sim, clients);
        if sim.is_idle() {
            round(sim, clients);
            if sim.is_idle() {
                return;
            }
        }
    }
    panic!("the simulation did not settle");
}

fn connect(sim: &mut Sim, shard: usize, options: ConnectOptions) -> SimClient {
    let mut client = SimClient::connect(sim, shard, options).expect("room for a connection");
    quiesce(sim, &mut [&mut client]);
    assert!(client.is_connected(), "CONNACK: {:?}", client.events);
    client
}

fn subscribe(sim: &mut Sim, client: &mut SimClient, filter: &str, level: u8) {
    let sub = SubscriptionOptions {
        qos: qos(level),
        ..SubscriptionOptions::default()
    };
    client.session.subscribe(&[(MqttString::from(filter), sub)]);
    client.flush(sim);
    let before = suback_count(client);
    for _ in 0..1000 {
        round(sim, &mut [client]);
        if suback_count(client) > before {
            return;
        }
    }
    panic!("no SUBACK");
}

fn suback_count(client: &SimClient) -> usize {
    client
        .events
        .iter()
        .filter(|e| matches!(e, Event::SubAck(_)))
        .count()
}

/// The payload of publisher `p`'s message `seq`.
fn payload(p: usize, seq: u32) -> Bytes {
    let mut v = (p as u32).to_be_bytes().to_vec();
    v.extend_from_slice(&seq.to_be_bytes());
    Bytes::from(v)
}

fn parse(payload: &[u8]) -> (usize, u32) {
    let p = u32::from_be_bytes(payload[..4].try_into().unwrap()) as usize;
    let seq = u32::from_be_bytes(payload[4..8].try_into().unwrap());
    (p, seq)
}

/// What a random workload is made of.
#[derive(Clone, Debug)]
struct Workload {
    shards: usize,
    /// (shard, subscription QoS, MQTT 5) per subscriber.
    subscribers: Vec<(usize, u8, bool)>,
    /// (shard, publish QoS, MQTT 5) per publisher.
    publishers: Vec<(usize, u8, bool)>,
    messages: u32,
    seed: u64,
    random_mesh: bool,
    small_reads: bool,
}

fn workload() -> impl Strategy<Value = Workload> {
    (1usize..=3)
        .prop_flat_map(|shards| {
            let member = (0..shards, 0u8..=2, any::<bool>());
            (
                Just(shards),
                prop::collection::vec(member.clone(), 1..4),
                prop::collection::vec(member, 1..4),
                1u32..40,
                any::<u64>(),
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_map(
            |(shards, subscribers, publishers, messages, seed, random_mesh, small_reads)| {
                Workload {
                    shards,
                    subscribers,
                    publishers,
                    messages,
                    seed,
                    random_mesh,
                    small_reads,
                }
            },
        )
}

fn version(v5: bool) -> ProtocolVersion {
    if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    }
}

/// Runs `w`: subscribers on `t/+`, then every publisher publishes its messages on `t/{p}` as
/// fast as its window allows. Returns the clients.
fn run(w: &Workload) -> (Sim, Vec<SimClient>, Vec<SimClient>) {
    let mut sim = sim(w.shards, w.seed, w.random_mesh, w.small_reads);
    let mut subs = Vec::new();
    for (i, &(shard, level, v5)) in w.subscribers.iter().enumerate() {
        let mut client = connect(&mut sim, shard, options(&format!("sub{i}"), version(v5)));
        subscribe(&mut sim, &mut client, "t/+", level);
        subs.push(client);
    }
    let mut pubs: Vec<SimClient> = w
        .publishers
        .iter()
        .enumerate()
        .map(|(i, &(shard, _, v5))| {
            connect(&mut sim, shard, options(&format!("pub{i}"), version(v5)))
        })
        .collect();
    let mut next = vec![0u32; pubs.len()];
    for _ in 0..100_000 {
        for (p, client) in pubs.iter_mut().enumerate() {
            let level = w.publishers[p].1;
            while next[p] < w.messages && (level == 0 || client.session.can_publish()) {
                let topic = MqttString::from(format!("t/{p}").as_str());
                let now = sim.now();
                if client
                    .session
                    .publish(topic, payload(p, next[p]), qos(level), false, now)
                    .is_err()
                {
                    break;
                }
                next[p] += 1;
            }
            client.flush(&mut sim);
        }
        let mut all: Vec<&mut SimClient> = subs.iter_mut().chain(pubs.iter_mut()).collect();
        round(&mut sim, &mut all);
        if next.iter().all(|&n| n == w.messages) {
            break;
        }
    }
    let mut all: Vec<&mut SimClient> = subs.iter_mut().chain(pubs.iter_mut()).collect();
    quiesce(&mut sim, &mut all);
    (sim, subs, pubs)
}

/// Publisher `p`'s completed (acknowledged) QoS 1/2 packet count.
fn completed(client: &SimClient) -> usize {
    client
        .events
        .iter()
        .filter(|e| matches!(e, Event::PubAck(_) | Event::PubComp(_)))
        .count()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// QoS 1 at least once, QoS 2 exactly once, QoS 0 at most once, per-publisher order, for
    /// every subscriber that had its SUBACK before the publishes; every buffer empty after.
    #[test]
    fn deliveries_keep_their_qos_promises_and_order(w in workload()) {
        let (sim, subs, pubs) = run(&w);
        for (p, client) in pubs.iter().enumerate() {
            if w.publishers[p].1 > 0 {
                prop_assert_eq!(completed(client), w.messages as usize, "publisher {} acks", p);
            }
        }
        for (s, sub) in subs.iter().enumerate() {
            prop_assert!(sub.decode_error.is_none(), "sub {s}: {:?}", sub.decode_error);
            let mut seen: Vec<Vec<u32>> = vec![Vec::new(); pubs.len()];
            for publish in &sub.received {
                let (p, seq) = parse(&publish.payload);
                prop_assert_eq!(publish.topic.as_str(), format!("t/{p}"));
                seen[p].push(seq);
            }
            for (p, seqs) in seen.iter().enumerate() {
                let effective = w.subscribers[s].1.min(w.publishers[p].1);
                prop_assert!(seqs.windows(2).all(|x| x[0] < x[1]),
                    "sub {} from pub {}: out of order or duplicated: {:?}", s, p, seqs);
                if effective >= 1 {
                    prop_assert_eq!(seqs.len(), w.messages as usize,
                        "sub {} from pub {} (QoS {}): {:?}", s, p, effective, seqs);
                }
            }
        }
        for shard in 0..sim.shards() {
            let (buffered, limit) = sim.core(shard).buffered_bytes();
            prop_assert_eq!(buffered, 0, "shard {} holds bytes after quiescence", shard);
            prop_assert!(limit > 0);
        }
    }
}

/// A subscriber that got its SUBACK on one shard receives every message published after it on
/// another shard, even while the route broadcast is still travelling (random mesh delays).
#[test]
fn delivery_after_suback_across_shards_under_mesh_delays() {
    for seed in 0..64u64 {
        let mut sim = sim(3, seed, true, seed % 2 == 0);
        let mut publisher = connect(&mut sim, 0, options("p", ProtocolVersion::V5));
        let mut subscriber = connect(
            &mut sim,
            1 + (seed as usize % 2),
            options("s", ProtocolVersion::V5),
        );
        let sub = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        subscriber
            .session
            .subscribe(&[(MqttString::from("a/#"), sub)]);
        subscriber.flush(&mut sim);
        let mut sent_after_suback = 0u32;
        let mut seq = 0u32;
        for _ in 0..200 {
            let acked = suback_count(&subscriber) > 0;
            let now = sim.now();
            if publisher.session.can_publish()
                && publisher
                    .session
                    .publish(
                        MqttString::from("a/b"),
                        payload(usize::from(acked), seq),
                        QoS::AtLeastOnce,
                        false,
                        now,
                    )
                    .is_ok()
            {
                seq += 1;
                if acked {
                    sent_after_suback += 1;
                }
            }
            publisher.flush(&mut sim);
            round(&mut sim, &mut [&mut publisher, &mut subscriber]);
        }
        quiesce(&mut sim, &mut [&mut publisher, &mut subscriber]);
        let after: usize = subscriber
            .received
            .iter()
            .filter(|p| parse(&p.payload).0 == 1)
            .count();
        assert!(sent_after_suback > 0, "seed {seed}: the SUBACK came");
        assert_eq!(after, sent_after_suback as usize, "seed {seed}");
    }
}

/// A session taken over on another shard while QoS 1 publishes flow: the old connection is
/// told 0x8E (MQTT 5), and every message published before the second CONNECT or after its
/// CONNACK reaches the old connection or the new one (at least once).
///
/// Finding F1 of the simulation (fixed, see `takeover_window_loses_no_message`): a message
/// published between the old shard handing the session over and the new shard's routes
/// becoming visible found no subscriber and was dropped, although the session (and so its
/// subscription) exists throughout. This test bounds the loss to that window; the handover
/// protocol (`core/sessions/handover.rs`) now closes it for publishers on every shard, with
/// 3-shard cases in `sim_takeover.rs`.
#[test]
fn takeover_under_concurrent_publishes_loses_nothing_outside_the_handover() {
    takeover_under_concurrent_publishes(false);
}

/// Finding F1 (see above): no message is lost, in the window either.
#[test]
fn takeover_window_loses_no_message() {
    takeover_under_concurrent_publishes(true);
}

fn takeover_under_concurrent_publishes(exact: bool) {
    for seed in 0..32u64 {
        let mut sim = sim(2, seed, true, false);
        let persistent = |v: ProtocolVersion| {
            options("taken", v)
                .clean_start(false)
                .session_expiry_secs(300)
        };
        let mut publisher = connect(&mut sim, 0, options("p", ProtocolVersion::V5));
        let mut old = connect(&mut sim, 0, persistent(ProtocolVersion::V5));
        subscribe(&mut sim, &mut old, "x", 1);
        let mut new: Option<SimClient> = None;
        // Messages published from the second CONNECT to its CONNACK: the handover window.
        let mut window = (u32::MAX, u32::MAX);
        let total = 200u32;
        let mut seq = 0u32;
        for turn in 0..4000 {
            let now = sim.now();
            let mut this_turn = 0;
            while seq < total && this_turn < 2 && publisher.session.can_publish() {
                this_turn += 1;
                if publisher
                    .session
                    .publish(
                        MqttString::from("x"),
                        payload(0, seq),
                        QoS::AtLeastOnce,
                        false,
                        now,
                    )
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
            publisher.flush(&mut sim);
            if turn == 20 + (seed as usize % 40) {
                let client =
                    SimClient::connect(&mut sim, 1, persistent(ProtocolVersion::V5)).unwrap();
                new = Some(client);
                window.0 = seq;
            }
            if window.1 == u32::MAX && new.as_ref().is_some_and(SimClient::is_connected) {
                window.1 = seq;
            }
            match new.as_mut() {
                Some(n) => round(&mut sim, &mut [&mut publisher, &mut old, n]),
                None => round(&mut sim, &mut [&mut publisher, &mut old]),
            }
            if new.is_some()
                && seq == total
                && completed(&publisher) == total as usize
                && sim.is_idle()
            {
                break;
            }
        }
        let mut new = new.expect("the second connection was made");
        quiesce(&mut sim, &mut [&mut publisher, &mut old, &mut new]);
        assert_eq!(completed(&publisher), total as usize, "seed {seed}");
        assert!(new.is_connected(), "seed {seed}: {:?}", new.events);
        assert!(
            sim.is_closed(old.conn),
            "seed {seed}: the old connection is closed"
        );
        let taken_over = old.events.iter().any(|e| matches!(e, Event::Disconnected(Some(d)) if d.reason_code == shardmq::codec::ReasonCode::SessionTakenOver));
        assert!(taken_over, "seed {seed}: {:?}", old.events);
        let mut got = vec![0u32; total as usize];
        for publish in old.received.iter().chain(new.received.iter()) {
            got[parse(&publish.payload).1 as usize] += 1;
        }
        let missing: Vec<u32> = (0..total).filter(|&i| got[i as usize] == 0).collect();
        let outside: Vec<u32> = missing
            .iter()
            .copied()
            .filter(|&i| exact || i < window.0 || i >= window.1)
            .collect();
        assert!(
            outside.is_empty(),
            "seed {seed}: lost {outside:?} (handover window {window:?})"
        );
        assert!(
            !old.received.is_empty() && !new.received.is_empty(),
            "seed {seed}: both got some"
        );
    }
}

/// Retained messages: the last one per topic is what a later subscriber gets, with the retain
/// flag; an empty retained payload clears the topic; on every shard.
#[test]
fn retained_messages_reach_later_subscribers_on_every_shard() {
    for seed in 0..16u64 {
        let mut sim = sim(3, seed, seed % 2 == 1, false);
        let mut publisher = connect(
            &mut sim,
            (seed % 3) as usize,
            options("p", ProtocolVersion::V5),
        );
        let now = sim.now();
        for (topic, body) in [
            ("r/a", "1"),
            ("r/b", "2"),
            ("r/a", "3"),
            ("r/c", "4"),
            ("r/c", ""),
        ] {
            publisher
                .session
                .publish(
                    MqttString::from(topic),
                    Bytes::from(body),
                    QoS::AtLeastOnce,
                    true,
                    now,
                )
                .unwrap();
        }
        publisher.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut publisher]);
        for shard in 0..3 {
            let mut sub = connect(
                &mut sim,
                shard,
                options(&format!("s{shard}"), ProtocolVersion::V5),
            );
            subscribe(&mut sim, &mut sub, "r/#", 1);
            quiesce(&mut sim, &mut [&mut sub]);
            let mut got: Vec<(String, String, bool)> = sub
                .received
                .iter()
                .map(|p| {
                    (
                        p.topic.to_string(),
                        String::from_utf8_lossy(&p.payload).into_owned(),
                        p.retain,
                    )
                })
                .collect();
            got.sort();
            assert_eq!(
                got,
                vec![
                    ("r/a".into(), "3".into(), true),
                    ("r/b".into(), "2".into(), true)
                ],
                "seed {seed} shard {shard}"
            );
        }
    }
}

/// A QoS 0 flood to a subscriber that reads slowly keeps every shard's buffered bytes within
/// its part of `max_buffered_bytes` (plus one packet), and the subscriber still gets messages.
#[test]
fn memory_bound_holds_under_a_flood_to_a_slow_subscriber() {
    memory_bound_under_flood(true);
}

/// The same flood with `--qos0-backpressure false`: publishers are never paused, so the
/// shard's budget, not backpressure, is what bounds its memory.
#[test]
fn memory_bound_holds_under_a_flood_without_qos0_backpressure() {
    memory_bound_under_flood(false);
}

fn memory_bound_under_flood(qos0_backpressure: bool) {
    let mut config = config(2);
    config.qos0_backpressure = qos0_backpressure;
    config.max_buffered_bytes = 1 << 20;
    config.max_outgoing_bytes = 64 * 1024;
    let mut sim = Sim::new(config, 7).unwrap();
    // Twelve slow subscribers on shard 1 can hold 12 x 64 KiB, more than its 512 KiB part.
    let mut subscribers: Vec<SimClient> = (0..12)
        .map(|i| {
            let mut s = connect(&mut sim, 1, options(&format!("s{i}"), ProtocolVersion::V5));
            subscribe(&mut sim, &mut s, "f", 0);
            s
        })
        .collect();
    let mut publishers: Vec<SimClient> = (0..4)
        .map(|i| {
            connect(
                &mut sim,
                i % 2,
                options(&format!("p{i}"), ProtocolVersion::V3_1_1),
            )
        })
        .collect();
    for s in &subscribers {
        sim.set_write_capacity(s.conn, 2048);
    }
    let body = Bytes::from(vec![b'x'; 500]);
    let mut peak = 0;
    for turn in 0..400 {
        let now = sim.now();
        for publisher in publishers.iter_mut() {
            for _ in 0..200 {
                let _ = publisher.session.publish(
                    MqttString::from("f"),
                    body.clone(),
                    QoS::AtMostOnce,
                    false,
                    now,
                );
            }
            publisher.flush(&mut sim);
        }
        sim.step();
        for shard in 0..2 {
            let (buffered, limit) = sim.core(shard).buffered_bytes();
            peak = peak.max(buffered);
            assert!(
                buffered <= limit + 1024,
                "turn {turn} shard {shard}: {buffered} > {limit}"
            );
        }
        for publisher in publishers.iter_mut() {
            publisher.pump(&mut sim);
        }
        if turn % 4 == 0 {
            for s in subscribers.iter_mut() {
                s.pump(&mut sim);
            }
        }
        sim.advance(Duration::from_millis(1));
    }
    assert!(peak > 0);
    if !qos0_backpressure {
        // The budget was reached (the flood is far larger), and held.
        assert!(
            peak * 4 >= sim.core(1).buffered_bytes().1 * 3,
            "peak {peak}"
        );
    }
    for s in &subscribers {
        assert!(!s.received.is_empty());
        assert!(!sim.is_closed(s.conn));
    }
}

/// Shared subscriptions across shards (spec 4.8.2): while one member unsubscribes in the middle
/// of a QoS 1 burst, under random mesh delays, every message reaches a member, and no member
/// sees a message twice. In the simulation the race that the TCP test
/// (`mqtt5_shared::message_routed_to_a_shard_without_members_is_forwarded`) can only hope to
/// hit is replayed under 48 different interleavings.
#[test]
fn shared_subscription_member_leaving_mid_burst_loses_nothing() {
    for seed in 0..48u64 {
        let mut sim = sim(3, seed, true, seed % 3 == 0);
        let mut members: Vec<SimClient> = (0..3)
            .map(|shard| {
                let mut m = connect(
                    &mut sim,
                    shard,
                    options(&format!("m{shard}"), ProtocolVersion::V5),
                );
                subscribe(&mut sim, &mut m, "$share/g/jobs/+", 1);
                m
            })
            .collect();
        let mut publisher = connect(
            &mut sim,
            (seed % 3) as usize,
            options("p", ProtocolVersion::V5),
        );
        let leaver = (seed as usize / 3) % 3;
        let total = 60u32;
        let mut seq = 0u32;
        for turn in 0..5000 {
            let now = sim.now();
            while seq < total && publisher.session.can_publish() {
                if publisher
                    .session
                    .publish(
                        MqttString::from("jobs/a"),
                        payload(0, seq),
                        QoS::AtLeastOnce,
                        false,
                        now,
                    )
                    .is_err()
                {
                    break;
                }
                seq += 1;
            }
            publisher.flush(&mut sim);
            if turn == 2 + (seed as usize % 5) {
                members[leaver]
                    .session
                    .unsubscribe(&[MqttString::from("$share/g/jobs/+")]);
                members[leaver].flush(&mut sim);
            }
            let mut all: Vec<&mut SimClient> = members.iter_mut().chain([&mut publisher]).collect();
            round(&mut sim, &mut all);
            if seq == total && completed(&publisher) == total as usize && turn > 10 {
                break;
            }
        }
        let mut all: Vec<&mut SimClient> = members.iter_mut().chain([&mut publisher]).collect();
        quiesce(&mut sim, &mut all);
        let mut got = vec![0u32; total as usize];
        for member in &members {
            let mut seen = std::collections::HashSet::new();
            for publish in &member.received {
                let seq = parse(&publish.payload).1;
                assert!(
                    seen.insert(seq) || publish.dup,
                    "seed {seed}: member got {seq} twice"
                );
                got[seq as usize] += 1;
            }
        }
        let missing: Vec<usize> = (0..total as usize).filter(|&i| got[i] == 0).collect();
        assert!(missing.is_empty(), "seed {seed}: lost {missing:?}");
        let twice: Vec<usize> = (0..total as usize).filter(|&i| got[i] > 1).collect();
        assert!(
            twice.is_empty(),
            "seed {seed}: delivered to two members {twice:?}"
        );
    }
}
