//! Sessions over real TCP with clients on different shards: takeover, clean start, the
//! in-flight window, session expiry on DISCONNECT. Offline queues, re-sends with DUP and wills
//! are tested in the simulation (`sim_sessions.rs`), the timer-driven logic (will delay,
//! keep-alive, handshake timer, message and session expiry) on its simulated clock
//! (`sim_timers.rs`).

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::time::Duration;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn persistent(version: ProtocolVersion, client_id: &str) -> shardmq::codec::Connect {
    let mut connect = connect_packet(version, client_id, false);
    if version.is_v5() {
        connect.properties.session_expiry_interval = Some(300);
    }
    connect
}

#[test]
fn takeover_across_shards_sends_0x8e_and_moves_the_session() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let (mut old, connack) = placer.connect_on(0, persistent(V5, "twin"));
    assert!(!connack.session_present);
    old.subscribe("take/#", QoS::AtLeastOnce);
    let (mut new, connack) = placer.connect_on(1, persistent(V5, "twin"));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(
        connack.session_present,
        "the session moved to the new shard"
    );
    let packets = old.expect_closed();
    assert!(
        matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::SessionTakenOver),
        "old connection got {packets:?}"
    );
    // The subscription moved with the session: a publisher on the old shard reaches it.
    let mut publisher = placer.raw_on(0, V4, "take-pub");
    publisher.publish_acked("take/x", b"moved", QoS::AtLeastOnce, false, 1);
    assert_eq!(&new.receive_and_ack().payload[..], b"moved");
    assert!(broker.stats().takeovers >= 1);

    // Same shard takeover, and clean start discards the session.
    let (mut third, connack) = placer.connect_on(1, connect_packet(V5, "twin", true));
    assert!(!connack.session_present);
    new.expect_closed();
    publisher.publish_acked("take/x", b"gone", QoS::AtLeastOnce, false, 2);
    third.expect_nothing();
}

#[test]
fn takeover_of_a_v311_client_closes_the_old_connection() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let (mut old, _) = placer.connect_on(0, persistent(V4, "v4twin"));
    let (_new, connack) = placer.connect_on(1, persistent(V4, "v4twin"));
    assert!(connack.session_present);
    assert!(
        old.expect_closed().is_empty(),
        "3.1.1 has no DISCONNECT from the server"
    );
}

#[test]
fn clean_session_v311_discards_state() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let (mut sub, _) = placer.connect_on(0, persistent(V4, "cs"));
    sub.subscribe("cs", QoS::AtLeastOnce);
    sub.disconnect();
    let (again, connack) = placer.connect_on(1, connect_packet(V4, "cs", true));
    assert!(!connack.session_present);
    drop(again);
    let (_, connack) = placer.connect_on(0, persistent(V4, "cs"));
    assert!(
        !connack.session_present,
        "clean session 1 ended the session"
    );
}

#[test]
fn inflight_window_max_inflight_for_v311_and_receive_maximum_for_v5() {
    let mut config = config(2);
    config.max_inflight = 2;
    let broker = start_with(config);
    let mut placer = Placer::new(&broker);
    let mut v4 = placer.raw_on(0, V4, "win4");
    v4.subscribe("win", QoS::AtLeastOnce);
    let mut connect = connect_packet(V5, "win5", true);
    connect.properties.receive_maximum = Some(1);
    let (mut v5, _) = placer.connect_on(0, connect);
    v5.subscribe("win", QoS::ExactlyOnce);
    let mut publisher = placer.raw_on(1, V4, "win-pub");
    for i in 1..=4u16 {
        publisher.publish_acked("win", &[i as u8], QoS::AtLeastOnce, false, i);
    }
    // Window 2 for the 3.1.1 client, 1 for the MQTT 5 client with Receive Maximum 1.
    let a = v4.expect_publish();
    let b = v4.expect_publish();
    v4.expect_nothing();
    let c = v5.expect_publish();
    v5.expect_nothing();
    assert_eq!((a.payload[0], b.payload[0], c.payload[0]), (1, 2, 1));
    assert!(broker.stats().inflight_window_full >= 5);
    // Each acknowledgement opens the window for the next message, in order.
    v4.send(&Packet::PubAck(ack(a.packet_id)));
    assert_eq!(v4.expect_publish().payload[0], 3);
    v5.send(&Packet::PubAck(ack(c.packet_id)));
    assert_eq!(v5.expect_publish().payload[0], 2);
    v5.expect_nothing();
}

/// Three CONNECTs for one client id racing on two shards: nothing hangs, exactly one connection
/// ends up connected, and the session with its subscription survives.
#[test]
fn racing_takeovers_leave_one_connection_and_the_session() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let (mut first, _) = placer.connect_on(0, persistent(V5, "racer"));
    first.subscribe("race/#", QoS::AtLeastOnce);
    // Place two TCP connections (shard 1 then shard 0), then send both CONNECTs at once.
    let mut b = placer.tcp_on(1);
    let mut c = placer.tcp_on(0);
    b.version = V5;
    c.version = V5;
    b.send(&Packet::Connect(Box::new(persistent(V5, "racer"))));
    c.send(&Packet::Connect(Box::new(persistent(V5, "racer"))));
    let mut survivors = 0;
    for raw in [&mut first, &mut b, &mut c] {
        loop {
            match raw.recv(Duration::from_secs(3)) {
                Ok(Packet::ConnAck(connack)) => {
                    assert_eq!(connack.reason_code, ReasonCode::Success)
                }
                Ok(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason_code, ReasonCode::SessionTakenOver)
                }
                Ok(other) => panic!("{other:?}"),
                Err(RecvError::Closed) => break,
                Err(RecvError::Timeout) => {
                    survivors += 1;
                    break;
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    assert_eq!(survivors, 1, "exactly one connection stays");
    wait_until("two connections closed", || {
        broker.stats().connections_open == 1
    });
    // The session still has its subscription, wherever it ended up.
    let (mut last, connack) = placer.connect_on(1, persistent(V5, "racer"));
    assert!(connack.session_present);
    let mut publisher = placer.raw_on(0, V4, "race-pub");
    publisher.publish_acked("race/x", b"still subscribed", QoS::AtLeastOnce, false, 1);
    assert_eq!(&last.receive_and_ack().payload[..], b"still subscribed");
}

/// Two CONNECTs for one id sent at the same moment on two shards, repeatedly: whichever order
/// the takeovers cross in, one connection survives each round and the session is never lost.
#[test]
fn simultaneous_connects_on_two_shards_never_lose_the_session() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let (mut first, _) = placer.connect_on(0, persistent(V5, "dueller"));
    first.subscribe("duel/#", QoS::AtLeastOnce);
    let mut open = vec![first];
    for _round in 0..4 {
        let mut pair = [placer.tcp_on(0), placer.tcp_on(1)];
        let mut bytes = bytes::BytesMut::new();
        Packet::Connect(Box::new(persistent(V5, "dueller")))
            .encode(V5, &mut bytes)
            .expect("encodes");
        for raw in pair.iter_mut() {
            raw.version = V5;
        }
        std::thread::scope(|s| {
            for raw in pair.iter_mut() {
                let bytes = &bytes;
                s.spawn(move || raw.send_bytes(bytes));
            }
        });
        open.extend(pair);
        let mut survivors = Vec::new();
        for mut raw in open.drain(..) {
            let alive = loop {
                match raw.recv(Duration::from_millis(1200)) {
                    Ok(Packet::ConnAck(c)) => assert_eq!(c.reason_code, ReasonCode::Success),
                    Ok(Packet::Disconnect(d)) => {
                        assert_eq!(d.reason_code, ReasonCode::SessionTakenOver)
                    }
                    Ok(other) => panic!("{other:?}"),
                    Err(RecvError::Timeout) => break true,
                    Err(_) => break false,
                }
            };
            if alive {
                survivors.push(raw);
            }
        }
        assert_eq!(survivors.len(), 1, "one connection survives each round");
        open = survivors;
    }
    let mut publisher = placer.raw_on(0, V4, "duel-pub");
    publisher.publish_acked("duel/x", b"kept", QoS::AtLeastOnce, false, 1);
    assert_eq!(
        &open[0].receive_and_ack().payload[..],
        b"kept",
        "the session kept its subscription"
    );
}

#[test]
fn v5_disconnect_session_expiry_rules() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    // Expiry 60 in CONNECT, 0 in DISCONNECT: the session ends now.
    let (mut c, _) = placer.connect_on(0, persistent(V5, "shortened"));
    c.subscribe("short", QoS::AtLeastOnce);
    let mut disconnect = shardmq::codec::Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(0);
    c.send(&Packet::Disconnect(disconnect));
    c.expect_closed();
    let (_, connack) = placer.connect_on(1, persistent(V5, "shortened"));
    assert!(!connack.session_present);
    // Expiry 0 in CONNECT cannot become non-zero in DISCONNECT ([MQTT-3.14.2-2]).
    let (mut z, _) = placer.connect_on(0, connect_packet(V5, "zero", false));
    let mut disconnect = shardmq::codec::Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(60);
    z.send(&Packet::Disconnect(disconnect));
    match z.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::ProtocolError),
        other => panic!("{other:?}"),
    }
}

/// A session that moves to another shard brings its subscriptions; once the client has the
/// CONNACK, messages published on any shard reach it (the CONNACK waits for the route barrier).
#[test]
fn moved_session_receives_everything_published_after_connack_on_four_shards() {
    let broker = start_broker(4);
    let mut placer = Placer::new(&broker);
    let mut publishers: Vec<Raw> = (0..4)
        .map(|s| placer.raw_on(s, V4, &format!("mv-pub{s}")))
        .collect();
    let filters = ["mv/a/#", "mv/+/b", "mv/c"];
    for round in 0..4 {
        let shard = round % 4;
        let (mut client, connack) = placer.connect_on(shard, persistent(V5, "mover"));
        assert_eq!(connack.session_present, round > 0);
        if round == 0 {
            for filter in filters {
                client.subscribe(filter, QoS::AtLeastOnce);
            }
        }
        // Published right after the CONNACK, from every shard.
        for (p, publisher) in publishers.iter_mut().enumerate() {
            for topic in ["mv/a/x", "mv/z/b", "mv/c"] {
                publisher.publish_acked(topic, &[round as u8, p as u8], QoS::AtLeastOnce, false, 1);
            }
        }
        for _ in 0..12 {
            let got = client.receive_and_ack();
            assert_eq!(
                got.payload[0], round as u8,
                "a message from an earlier round"
            );
        }
        client.expect_nothing();
        client.disconnect();
        wait_until("mover offline", || {
            broker.stats().connections_open == 4 + placer.fillers.len() as u64
        });
    }
}
