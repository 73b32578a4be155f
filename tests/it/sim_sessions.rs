//! Session logic across shards in the deterministic simulation (issue 10, item 3): offline
//! queues and their limit, re-sends with DUP on resume, wills on abnormal close and on
//! DISCONNECT 0x04. These were real-TCP tests that placed clients with filler connections and
//! polled until the broker had seen a close; here the close is handled in the turn it
//! happens, before the test goes on. `broker_session.rs` keeps the real-TCP takeover cases.

use crate::support::broker::{ack, connect_packet, publish_packet, with_will};
use crate::support::sim::{advance_ms, payloads, sim_with, Peer};
use shardmq::codec::{Connect, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};
use shardmq::sim::Sim;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn persistent(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut connect = connect_packet(version, client_id, false);
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

fn client(sim: &mut Sim, shard: usize, version: ProtocolVersion, id: &str) -> Peer {
    Peer::connect(sim, shard, connect_packet(version, id, true)).0
}

/// Publishes at QoS 0 or 1 and checks the acknowledgement.
fn publish(sim: &mut Sim, publisher: &mut Peer, topic: &str, payload: &[u8], qos: QoS, id: u16) {
    publisher.send(sim, &publish_packet(topic, payload, qos, false, id));
    let answers = publisher.packets(sim);
    match qos {
        QoS::AtMostOnce => assert_eq!(answers, []),
        _ => assert!(!answers.is_empty(), "acknowledged"),
    }
}

fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

/// QoS 1 messages published while a session is offline are queued and delivered in order
/// when it resumes on another shard; QoS 0 ones are not queued.
#[test]
fn persistent_session_queues_qos1_while_offline_and_resumes_on_another_shard() {
    for version in [V4, V5] {
        let mut sim = sim_with(2, |_| {});
        let (mut sub, _) = Peer::connect(&mut sim, 0, persistent(version, "sleeper"));
        sub.subscribe(&mut sim, "queue/#", QoS::AtLeastOnce);
        sub.send(&mut sim, &Packet::Disconnect(Disconnect::default()));
        let mut publisher = client(&mut sim, 1, V4, "queue-pub");
        for i in 1..=5u16 {
            publish(
                &mut sim,
                &mut publisher,
                "queue/x",
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                i,
            );
        }
        publish(
            &mut sim,
            &mut publisher,
            "queue/x",
            b"qos0",
            QoS::AtMostOnce,
            0,
        );
        let (mut back, connack) = Peer::connect(&mut sim, 1, persistent(version, "sleeper"));
        assert!(connack.session_present);
        let got = back.drain(&mut sim);
        let expected: Vec<String> = (1..=5u16)
            .map(|i| String::from_utf8_lossy(&i.to_be_bytes()).into_owned())
            .collect();
        assert_eq!(got, expected, "{version:?}");
    }
}

/// [MQTT-4.4.0-1]: on resume, unacknowledged PUBLISH go out again with DUP and the same
/// packet id, and a PUBREL waiting for PUBCOMP is sent again.
#[test]
fn unacknowledged_messages_are_resent_with_dup_on_resume() {
    let mut sim = sim_with(2, |_| {});
    let (mut sub, _) = Peer::connect(&mut sim, 0, persistent(V4, "forgetful"));
    sub.subscribe(&mut sim, "dup/#", QoS::ExactlyOnce);
    let mut publisher = client(&mut sim, 1, V4, "dup-pub");
    publish(
        &mut sim,
        &mut publisher,
        "dup/1",
        b"q1",
        QoS::AtLeastOnce,
        1,
    );
    publish(
        &mut sim,
        &mut publisher,
        "dup/2",
        b"q2",
        QoS::ExactlyOnce,
        2,
    );
    publish(
        &mut sim,
        &mut publisher,
        "dup/3",
        b"q2b",
        QoS::ExactlyOnce,
        3,
    );
    let sent = publishes(sub.packets(&mut sim));
    let [first, second, third] = sent.as_slice() else {
        panic!("three publishes: {sent:?}");
    };
    // Acknowledge only the PUBREC of the third: it then waits for PUBCOMP.
    sub.send(&mut sim, &Packet::PubRec(ack(third.packet_id)));
    assert!(
        matches!(sub.packets(&mut sim).as_slice(), [Packet::PubRel(a)] if a.packet_id == third.packet_id)
    );
    sim.hang_up(sub.conn);
    advance_ms(&mut sim, 0);
    let (mut back, connack) = Peer::connect(&mut sim, 0, persistent(V4, "forgetful"));
    assert!(connack.session_present);
    let again = back.packets(&mut sim);
    assert!(
        matches!(again.as_slice(), [Packet::Publish(a), Packet::Publish(b), Packet::PubRel(r)]
            if a.dup && a.packet_id == first.packet_id && &a.payload[..] == b"q1"
                && b.dup && b.packet_id == second.packet_id && b.qos == QoS::ExactlyOnce
                && r.packet_id == third.packet_id),
        "{again:?}"
    );
}

/// `max_queued_messages`: an offline session keeps the first messages up to the limit and
/// counts the others as dropped.
#[test]
fn offline_queue_limit_drops_and_counts() {
    let mut sim = sim_with(2, |c| c.max_queued_messages = 3);
    let (mut sub, _) = Peer::connect(&mut sim, 0, persistent(V4, "full"));
    sub.subscribe(&mut sim, "full", QoS::AtLeastOnce);
    sub.send(&mut sim, &Packet::Disconnect(Disconnect::default()));
    let mut publisher = client(&mut sim, 1, V4, "full-pub");
    for i in 1..=5u16 {
        publish(
            &mut sim,
            &mut publisher,
            "full",
            &[i as u8],
            QoS::AtLeastOnce,
            i,
        );
    }
    assert_eq!(sim.global().stats().dropped_queue_full, 2);
    let (mut back, _) = Peer::connect(&mut sim, 0, persistent(V4, "full"));
    let got = back.drain(&mut sim);
    assert_eq!(got, ["\u{1}", "\u{2}", "\u{3}"]);
}

/// A connection closed without DISCONNECT publishes its will with its QoS and retain flag,
/// to a subscriber on another shard and, retained, to a later one.
#[test]
fn will_published_on_abnormal_close_with_retain_and_qos() {
    let mut sim = sim_with(2, |_| {});
    let mut watcher = client(&mut sim, 1, V4, "watcher");
    watcher.subscribe(&mut sim, "will/#", QoS::AtLeastOnce);
    let connect = with_will(
        connect_packet(V4, "victim", true),
        "will/victim",
        b"gone",
        QoS::AtLeastOnce,
        true,
    );
    let (victim, _) = Peer::connect(&mut sim, 0, connect);
    sim.hang_up(victim.conn);
    advance_ms(&mut sim, 0);
    let will = publishes(watcher.packets(&mut sim));
    assert!(
        matches!(will.as_slice(), [w] if w.topic.as_str() == "will/victim" && &w.payload[..] == b"gone" && w.qos == QoS::AtLeastOnce),
        "{will:?}"
    );
    let mut late = client(&mut sim, 0, V4, "late");
    late.subscribe(&mut sim, "will/victim", QoS::AtMostOnce);
    let retained = publishes(late.packets(&mut sim));
    assert!(
        matches!(retained.as_slice(), [w] if w.retain),
        "{retained:?}"
    );
}

/// A normal DISCONNECT discards the will ([MQTT-3.1.2-10]); MQTT 5 DISCONNECT 0x04 asks for it.
#[test]
fn no_will_after_normal_disconnect_but_will_with_0x04() {
    let mut sim = sim_with(2, |_| {});
    let mut watcher = client(&mut sim, 1, V5, "watcher5");
    watcher.subscribe(&mut sim, "w5/#", QoS::AtMostOnce);
    let with = |id: &str, payload: &[u8]| {
        let topic = format!("w5/{id}");
        with_will(
            connect_packet(V5, id, true),
            &topic,
            payload,
            QoS::AtMostOnce,
            false,
        )
    };
    let (mut polite, _) = Peer::connect(&mut sim, 0, with("polite", b"x"));
    polite.send(&mut sim, &Packet::Disconnect(Disconnect::default()));
    assert_eq!(payloads(&watcher.packets(&mut sim)), []);
    let (mut asks, _) = Peer::connect(&mut sim, 0, with("asks", b"bye"));
    let disconnect = Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        properties: Default::default(),
    };
    asks.send(&mut sim, &Packet::Disconnect(disconnect));
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [("w5/asks".to_string(), b"bye".to_vec())]
    );
}

/// [MQTT-3.3.4-9]: the broker never has more unacknowledged QoS 1 messages out to a client
/// than the client's Receive Maximum; the rest follow, in order, as acknowledgements free the
/// window. The publisher is on the other shard.
#[test]
fn broker_respects_client_receive_maximum_across_shards() {
    let mut sim = sim_with(2, |_| {});
    let mut connect = connect_packet(V5, "window", true);
    connect.properties.receive_maximum = Some(2);
    let (mut sub, _) = Peer::connect(&mut sim, 0, connect);
    sub.subscribe(&mut sim, "w/#", QoS::AtLeastOnce);
    let mut publisher = client(&mut sim, 1, V5, "window-pub");
    for i in 0..5u16 {
        publish(
            &mut sim,
            &mut publisher,
            "w/t",
            &[i as u8],
            QoS::AtLeastOnce,
            1 + i,
        );
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        let window = publishes(sub.packets(&mut sim));
        assert!(
            !window.is_empty() && window.len() <= 2,
            "at most Receive Maximum unacknowledged: {window:?}"
        );
        for publish in &window {
            got.push(publish.payload[0]);
            sub.send(&mut sim, &Packet::PubAck(ack(publish.packet_id)));
        }
    }
    assert_eq!(got, [0, 1, 2, 3, 4], "in order, none lost");
}

/// Issue 11: subscribers that do not read get QoS 0 dropped once their outgoing buffer is
/// full, and are disconnected when a message meets a buffer that has not moved for
/// `slow_consumer_timeout_ms` (counted in whole seconds of the shard's clock from the second
/// it last moved): not at 999 ms, at 1,000 ms. The publisher on the other shard is unaffected.
#[test]
fn slow_subscribers_get_qos0_dropped_then_disconnected_after_the_timeout() {
    let mut sim = sim_with(2, |c| {
        c.max_outgoing_bytes = 64 * 1024;
        c.max_inflight = 2000;
        c.slow_consumer_timeout_ms = 1_000;
        // Publishers paused by the congested subscribers are read again after 100 ms.
        c.congestion_timeout_ms = 100;
    });
    let mut slow0 = client(&mut sim, 0, V4, "slow0");
    slow0.subscribe(&mut sim, "flood", QoS::AtMostOnce);
    let mut slow1 = client(&mut sim, 0, V4, "slow1");
    slow1.subscribe(&mut sim, "flood", QoS::AtLeastOnce);
    // Neither subscriber reads from here on.
    sim.set_write_capacity(slow0.conn, 0);
    sim.set_write_capacity(slow1.conn, 0);
    let mut publisher = client(&mut sim, 1, V4, "flooder");
    let payload = vec![0u8; 16 * 1024];
    for i in 1..=8u16 {
        let packet = publish_packet("flood", &payload, QoS::AtLeastOnce, false, i);
        publisher.send_only(&mut sim, &packet);
    }
    assert!(sim.settle(1000));
    for _ in 0..9 {
        advance_ms(&mut sim, 111);
    }
    let stats = sim.global().stats();
    assert!(stats.dropped_outgoing_buffer_full > 0, "{stats:?}");
    assert_eq!(stats.slow_consumer_disconnects, 0, "not before the timeout");
    // 999 ms: one more message meets both full buffers; still within the timeout.
    publisher.send(
        &mut sim,
        &publish_packet("flood", &payload, QoS::AtLeastOnce, false, 9),
    );
    assert!(!sim.is_closed(slow0.conn) && !sim.is_closed(slow1.conn));
    advance_ms(&mut sim, 1);
    publisher.send(
        &mut sim,
        &publish_packet("flood", &payload, QoS::AtLeastOnce, false, 10),
    );
    assert_eq!(sim.global().stats().slow_consumer_disconnects, 2);
    assert!(sim.is_closed(slow0.conn) && sim.is_closed(slow1.conn));
    let acks = publisher.packets(&mut sim);
    assert_eq!(acks.len(), 10, "every publish acknowledged: {acks:?}");
    publisher.send(&mut sim, &Packet::PingReq);
    assert_eq!(publisher.packets(&mut sim), [Packet::PingResp]);
}
