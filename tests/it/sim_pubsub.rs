//! Publish/subscribe semantics across shards in the deterministic simulation (issue 10, item
//! 3): retained messages (set, replace, clear, wildcards, retain flag on live delivery) and
//! overlapping subscriptions. These were real-TCP tests that placed clients with filler
//! connections and polled the broker until the retained store caught up; here each client sits
//! on the shard the test names and every turn runs to the end before the next step.
//! Suback visibility and per-publisher order across shards are property tests in
//! `sim_properties.rs`; `broker_pubsub.rs` keeps the real-TCP end-to-end cases.

use crate::support::broker::{connect_packet, publish_packet, subscribe_packet};
use crate::support::sim::{sim_with, Peer};
use shardmq::codec::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubscriptionOptions};
use shardmq::sim::Sim;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn client(sim: &mut Sim, shard: usize, version: ProtocolVersion, id: &str) -> Peer {
    Peer::connect(sim, shard, connect_packet(version, id, true)).0
}

/// Publishes and checks the acknowledgement its QoS asks for.
fn publish(
    sim: &mut Sim,
    publisher: &mut Peer,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) {
    publisher.send(sim, &publish_packet(topic, payload, qos, retain, 1));
    let answers = publisher.packets(sim);
    match qos {
        QoS::AtMostOnce => assert_eq!(answers, []),
        QoS::AtLeastOnce => assert!(
            matches!(answers.as_slice(), [Packet::PubAck(_)]),
            "{answers:?}"
        ),
        QoS::ExactlyOnce => assert!(
            matches!(answers.as_slice(), [Packet::PubRec(_)]),
            "{answers:?}"
        ),
    }
}

/// Every PUBLISH the client got since the last call (acknowledging none).
fn publishes(sim: &mut Sim, peer: &mut Peer) -> Vec<Publish> {
    peer.packets(sim)
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn retained_set_replace_clear_and_wildcards_across_shards() {
    let mut sim = sim_with(2, |_| {});
    let mut publisher = client(&mut sim, 0, V4, "rpub");
    publish(
        &mut sim,
        &mut publisher,
        "r/a",
        b"one",
        QoS::AtLeastOnce,
        true,
    );
    publish(
        &mut sim,
        &mut publisher,
        "r/b",
        b"bee",
        QoS::AtMostOnce,
        true,
    );
    publish(
        &mut sim,
        &mut publisher,
        "r/a",
        b"two",
        QoS::AtLeastOnce,
        true,
    );
    assert_eq!(sim.global().retained_messages(), 2, "r/a replaced");

    let mut sub = client(&mut sim, 1, V5, "rsub");
    sub.subscribe(&mut sim, "r/a", QoS::AtLeastOnce);
    let got = publishes(&mut sim, &mut sub);
    let [got] = got.as_slice() else {
        panic!("one retained message: {got:?}");
    };
    assert_eq!(
        (&got.payload[..], got.retain, got.qos),
        (&b"two"[..], true, QoS::AtLeastOnce)
    );

    let mut wild = client(&mut sim, 1, V4, "rwild");
    wild.subscribe(&mut sim, "r/+", QoS::ExactlyOnce);
    let mut seen: Vec<(String, Vec<u8>, QoS, bool)> = publishes(&mut sim, &mut wild)
        .into_iter()
        .map(|p| (p.topic.to_string(), p.payload.to_vec(), p.qos, p.retain))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("r/a".into(), b"two".to_vec(), QoS::AtLeastOnce, true),
            ("r/b".into(), b"bee".to_vec(), QoS::AtMostOnce, true)
        ]
    );
    // A live retained publish reaches existing subscribers with retain 0 ([MQTT-3.3.1-9]).
    publish(
        &mut sim,
        &mut publisher,
        "r/b",
        b"live",
        QoS::AtMostOnce,
        true,
    );
    let live = publishes(&mut sim, &mut wild);
    assert!(
        matches!(live.as_slice(), [p] if &p.payload[..] == b"live" && !p.retain),
        "{live:?}"
    );

    // An empty retained payload clears (and is delivered live like any publish).
    publish(&mut sim, &mut publisher, "r/a", b"", QoS::AtMostOnce, true);
    assert_eq!(publishes(&mut sim, &mut wild).len(), 1);
    assert_eq!(sim.global().retained_messages(), 1);
    let mut late = client(&mut sim, 0, V4, "rlate");
    late.subscribe(&mut sim, "r/#", QoS::AtMostOnce);
    let only = publishes(&mut sim, &mut late);
    assert!(
        matches!(only.as_slice(), [p] if p.topic.as_str() == "r/b" && &p.payload[..] == b"live"),
        "{only:?}"
    );
}

/// Overlapping subscriptions of one client get one copy at the highest granted QoS, the
/// publisher on the other shard; for MQTT 3.1.1 and 5.
#[test]
fn overlapping_subscriptions_deliver_once_with_max_qos() {
    let mut sim = sim_with(2, |_| {});
    let options = |qos| SubscriptionOptions {
        qos,
        ..Default::default()
    };
    for (shard, version) in [(0, V4), (1, V5)] {
        let mut sub = client(&mut sim, shard, version, &format!("overlap{shard}"));
        let filters = [
            ("o/#", options(QoS::AtMostOnce)),
            ("o/+", options(QoS::AtLeastOnce)),
            ("o/x", options(QoS::AtMostOnce)),
        ];
        sub.send(&mut sim, &subscribe_packet(1, &filters));
        let suback = sub.packets(&mut sim);
        let [Packet::SubAck(suback)] = suback.as_slice() else {
            panic!("{suback:?}");
        };
        assert_eq!(
            suback.reason_codes,
            [
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::Success
            ]
        );
        let mut publisher = client(&mut sim, 1 - shard, V4, &format!("overlap-pub{shard}"));
        publish(
            &mut sim,
            &mut publisher,
            "o/x",
            b"once",
            QoS::ExactlyOnce,
            false,
        );
        let got = publishes(&mut sim, &mut sub);
        assert!(
            matches!(got.as_slice(), [p] if p.qos == QoS::AtLeastOnce && &p.payload[..] == b"once"),
            "{got:?}"
        );
    }
}

/// MQTT 5 Topic Alias from a client ([MQTT-3.3.2-12]): an alias set with a topic is reused by
/// a PUBLISH with an empty topic, and remapped by a later topic; the subscriber on another
/// shard (allowing no aliases) gets the full topic and no alias.
#[test]
fn client_alias_sets_and_reuses_topic_across_shards() {
    let mut sim = sim_with(2, |_| {});
    let mut sub = client(&mut sim, 0, V5, "alias-sub");
    sub.subscribe(&mut sim, "alias/#", QoS::AtMostOnce);
    let mut publisher = client(&mut sim, 1, V5, "alias-pub");
    let aliased = |topic: &str, payload: &[u8]| {
        let mut packet = publish_packet(topic, payload, QoS::AtMostOnce, false, 0);
        if let Packet::Publish(p) = &mut packet {
            p.properties.topic_alias = Some(1);
        }
        packet
    };
    for (topic, payload) in [
        ("alias/one", "first"),
        ("", "second"),
        ("alias/two", "third"),
        ("", "fourth"),
    ] {
        publisher.send(&mut sim, &aliased(topic, payload.as_bytes()));
    }
    assert_eq!(publisher.packets(&mut sim), []);
    let got: Vec<(String, String, Option<u16>)> = publishes(&mut sim, &mut sub)
        .into_iter()
        .map(|p| {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            (p.topic.to_string(), payload, p.properties.topic_alias)
        })
        .collect();
    let expected = [
        ("alias/one", "first"),
        ("alias/one", "second"),
        ("alias/two", "third"),
        ("alias/two", "fourth"),
    ]
    .map(|(t, p)| (t.to_string(), p.to_string(), None));
    assert_eq!(got, expected, "an alias is per connection");
}
