//! Time-driven session logic in the deterministic simulation (issue 10, item 3): will delay,
//! keep-alive, the handshake timer, message expiry and session expiry. These were real-TCP
//! tests that slept and could only check lower bounds ("not before 1.4 s"); on the simulated
//! clock each deadline is checked on both sides, to the millisecond, with no sleep.

use crate::support::broker::{connect_packet, publish_packet, with_will};
use crate::support::sim::{advance_ms, payloads, sim_with, Peer};
use shardmq::codec::{Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn persistent_v5(client_id: &str) -> Connect {
    let mut connect = connect_packet(V5, client_id, false);
    connect.properties.session_expiry_interval = Some(300);
    connect
}

/// A will with a Will Delay Interval goes out when the delay ends, not a millisecond before,
/// on another shard too; a reconnect within the delay (on another shard) cancels it.
#[test]
fn will_delay_interval_and_cancel_by_reconnect() {
    let mut sim = sim_with(2, |_| {});
    let (mut watcher, _) = Peer::connect(&mut sim, 1, connect_packet(V4, "wd-watch", true));
    watcher.subscribe(&mut sim, "wd/#", QoS::AtMostOnce);
    let delayed = |id: &str| {
        let mut connect = with_will(
            persistent_v5(id),
            &format!("wd/{id}"),
            b"late",
            QoS::AtMostOnce,
            false,
        );
        let will = connect.will.as_mut().expect("a will");
        will.properties.will_delay_interval = Some(1);
        connect
    };
    let (a, _) = Peer::connect(&mut sim, 0, delayed("a"));
    sim.hang_up(a.conn);
    advance_ms(&mut sim, 0);
    advance_ms(&mut sim, 999);
    assert_eq!(payloads(&watcher.packets(&mut sim)), []);
    advance_ms(&mut sim, 1);
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [("wd/a".to_string(), b"late".to_vec())]
    );
    // Reconnecting within the delay cancels it.
    let (b, _) = Peer::connect(&mut sim, 0, delayed("b"));
    sim.hang_up(b.conn);
    advance_ms(&mut sim, 200);
    let (_b_again, connack) = Peer::connect(&mut sim, 1, delayed("b"));
    assert!(connack.session_present);
    advance_ms(&mut sim, 5_000);
    assert_eq!(payloads(&watcher.packets(&mut sim)), [], "cancelled");
    assert_eq!(sim.global().stats().wills_published, 1);
}

/// [MQTT-3.1.2-24]: PINGREQ keeps a connection alive; one and a half times the keep-alive
/// without a packet closes it (MQTT 5: DISCONNECT 0x8D) and publishes its will.
#[test]
fn keep_alive_expiry_after_one_and_a_half_times_publishes_will() {
    let mut sim = sim_with(2, |_| {});
    let (mut watcher, _) = Peer::connect(&mut sim, 1, connect_packet(V4, "ka-watch", true));
    watcher.subscribe(&mut sim, "ka/#", QoS::AtMostOnce);
    let mut connect = with_will(
        connect_packet(V5, "sleepy", true),
        "ka/sleepy",
        b"timeout",
        QoS::AtMostOnce,
        false,
    );
    connect.keep_alive_secs = 1;
    let (mut sleepy, _) = Peer::connect(&mut sim, 0, connect);
    for _ in 0..3 {
        advance_ms(&mut sim, 1_400);
        sleepy.send(&mut sim, &Packet::PingReq);
        assert_eq!(sleepy.packets(&mut sim), [Packet::PingResp]);
    }
    advance_ms(&mut sim, 1_500);
    assert!(
        !sim.is_closed(sleepy.conn),
        "1.5 x keep-alive is still within"
    );
    advance_ms(&mut sim, 1);
    assert!(
        sim.is_closed(sleepy.conn),
        "closed once 1.5 x keep-alive passed"
    );
    let packets = sleepy.packets(&mut sim);
    assert!(
        matches!(packets.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::KeepAliveTimeout),
        "{packets:?}"
    );
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [("ka/sleepy".to_string(), b"timeout".to_vec())]
    );
    assert_eq!(sim.global().stats().keep_alive_timeouts, 1);
}

/// With a keep-alive timeout (1.5 s) at least the handshake timeout (0.4 s here), the timer
/// entry armed on accept does the first keep-alive check instead of a second entry: the
/// connection survives it while pinging and is still closed 1.5 x keep-alive after its last
/// packet.
#[test]
fn keep_alive_checked_by_the_handshake_timer_still_expires() {
    let mut sim = sim_with(1, |c| c.handshake_timeout_ms = 400);
    let mut connect = connect_packet(V4, "ka-handshake", true);
    connect.keep_alive_secs = 1;
    let (mut client, _) = Peer::connect(&mut sim, 0, connect);
    // Pings across the handshake deadline: the check it does must not close a live client.
    for _ in 0..4 {
        advance_ms(&mut sim, 300);
        client.send(&mut sim, &Packet::PingReq);
        assert_eq!(client.packets(&mut sim), [Packet::PingResp]);
    }
    assert_eq!(sim.global().stats().handshake_timeouts, 0);
    advance_ms(&mut sim, 1_500);
    assert!(!sim.is_closed(client.conn));
    advance_ms(&mut sim, 1);
    assert!(sim.is_closed(client.conn));
    assert_eq!(client.packets(&mut sim), [], "3.1.1: no DISCONNECT");
    let stats = sim.global().stats();
    assert_eq!(
        (stats.keep_alive_timeouts, stats.handshake_timeouts),
        (1, 0)
    );
}

/// A connection without keep-alive is never closed by the handshake entry once connected; a
/// connection that never sends CONNECT is, at the handshake timeout.
#[test]
fn handshake_timer_leaves_connected_clients_without_keep_alive_alone() {
    let mut sim = sim_with(1, |c| c.handshake_timeout_ms = 200);
    let (mut client, _) = Peer::connect(&mut sim, 0, connect_packet(V4, "ka-none", true));
    let silent = sim.connect(0).expect("room for a connection");
    advance_ms(&mut sim, 199);
    assert!(!sim.is_closed(silent));
    advance_ms(&mut sim, 1);
    assert!(
        sim.is_closed(silent),
        "no CONNECT within the handshake timeout"
    );
    advance_ms(&mut sim, 3_600_000);
    client.send(&mut sim, &Packet::PingReq);
    assert_eq!(client.packets(&mut sim), [Packet::PingResp]);
    let stats = sim.global().stats();
    assert_eq!(
        (stats.handshake_timeouts, stats.keep_alive_timeouts),
        (1, 0)
    );
}

/// MQTT 5 Message Expiry: messages queued for an offline session that expired are not
/// delivered on resume, the others go out with the time left ([MQTT-3.3.2-5],
/// [MQTT-3.3.2-6]); an expired retained message is not sent on subscribe.
#[test]
fn v5_message_expiry_drops_expired_and_counts_down_the_rest() {
    let mut sim = sim_with(2, |_| {});
    let (mut sub, _) = Peer::connect(&mut sim, 0, persistent_v5("expiring"));
    sub.subscribe(&mut sim, "exp/#", QoS::AtLeastOnce);
    sim.hang_up(sub.conn);
    advance_ms(&mut sim, 0);
    let (mut publisher, _) = Peer::connect(&mut sim, 1, connect_packet(V5, "exp-pub", true));
    let with_expiry = |topic: &str, secs: u32, retain: bool| {
        let mut packet = publish_packet(topic, b"x", QoS::AtLeastOnce, retain, 1);
        if let Packet::Publish(p) = &mut packet {
            p.properties.message_expiry_interval = Some(secs);
        }
        packet
    };
    for (topic, secs, retain) in [
        ("exp/short", 1, false),
        ("exp/long", 30, false),
        ("exp/retained", 1, true),
    ] {
        publisher.send(&mut sim, &with_expiry(topic, secs, retain));
        assert!(matches!(
            publisher.packets(&mut sim).as_slice(),
            [Packet::PubAck(_)]
        ));
    }
    advance_ms(&mut sim, 2_100);
    let (mut back, connack) = Peer::connect(&mut sim, 0, persistent_v5("expiring"));
    assert!(connack.session_present);
    let got = back.packets(&mut sim);
    let [Packet::Publish(got)] = got.as_slice() else {
        panic!("only the unexpired message: {got:?}");
    };
    assert_eq!(got.topic.as_str(), "exp/long");
    assert_eq!(
        got.properties.message_expiry_interval,
        Some(28),
        "30 s less the 2 whole seconds it waited"
    );
    assert!(sim.global().stats().messages_expired >= 2);
    let (mut late, _) = Peer::connect(&mut sim, 1, connect_packet(V5, "exp-late", true));
    late.subscribe(&mut sim, "exp/retained", QoS::AtLeastOnce);
    assert_eq!(late.packets(&mut sim), [], "the expired retained message");
}

/// MQTT 5 Session Expiry: an offline session ends when its interval has passed, not before;
/// a later CONNECT (on another shard) finds no session.
#[test]
fn v5_session_expiry_ends_the_offline_session() {
    let mut sim = sim_with(2, |_| {});
    let mut connect = connect_packet(V5, "brief", false);
    connect.properties.session_expiry_interval = Some(1);
    let (mut sub, _) = Peer::connect(&mut sim, 0, connect.clone());
    sub.subscribe(&mut sim, "brief", QoS::AtLeastOnce);
    sub.send(&mut sim, &Packet::Disconnect(Default::default()));
    advance_ms(&mut sim, 999);
    assert_eq!(sim.global().stats().sessions_expired, 0);
    advance_ms(&mut sim, 1);
    assert_eq!(sim.global().stats().sessions_expired, 1);
    let (_, connack) = Peer::connect(&mut sim, 1, connect);
    assert!(!connack.session_present);
}

fn kept(client_id: &str, expiry_secs: u32) -> Connect {
    let mut connect = connect_packet(V5, client_id, false);
    connect.properties.session_expiry_interval = Some(expiry_secs);
    connect
}

fn disconnect_with_expiry(expiry_secs: u32) -> Packet {
    let mut disconnect = Disconnect::default();
    disconnect.properties.session_expiry_interval = Some(expiry_secs);
    Packet::Disconnect(disconnect)
}

/// MQTT 5 DISCONNECT may lower the Session Expiry Interval: to 0 it ends the session at once;
/// to another value it keeps the session for that long (and no longer).
#[test]
fn session_expiry_lowered_on_disconnect() {
    let mut sim = sim_with(2, |_| {});
    let (mut raw, _) = Peer::connect(&mut sim, 0, kept("lower", 600));
    raw.subscribe(&mut sim, "s/#", QoS::AtLeastOnce);
    raw.send(&mut sim, &disconnect_with_expiry(0));
    assert!(sim.is_closed(raw.conn));
    let (_again, connack) = Peer::connect(&mut sim, 1, kept("lower", 600));
    assert!(!connack.session_present, "ended at once");
    let (mut raw, _) = Peer::connect(&mut sim, 0, kept("keep", 600));
    raw.subscribe(&mut sim, "s/#", QoS::AtLeastOnce);
    raw.send(&mut sim, &disconnect_with_expiry(300));
    advance_ms(&mut sim, 299_999);
    assert_eq!(sim.global().stats().sessions_expired, 0);
    advance_ms(&mut sim, 1);
    assert_eq!(sim.global().stats().sessions_expired, 1, "300 s, not 600 s");
}

/// [MQTT-3.1.3-9]: the will waits for its delay or for the end of the session, whichever comes
/// first: with session expiry 0 it goes out at once despite a 60 s delay; with session expiry
/// 10 s and a 60 s delay it goes out when the session ends; a reconnect in time cancels it.
#[test]
fn will_delay_against_session_expiry() {
    let mut sim = sim_with(2, |_| {});
    let (mut watcher, _) = Peer::connect(&mut sim, 1, connect_packet(V5, "watcher", true));
    watcher.subscribe(&mut sim, "will/#", QoS::AtMostOnce);
    let will_connect = |id: &str, expiry: u32, delay: u32| {
        let mut connect = with_will(
            kept(id, expiry),
            &format!("will/{id}"),
            b"gone",
            QoS::AtMostOnce,
            false,
        );
        let will = connect.will.as_mut().expect("a will");
        will.properties.will_delay_interval = Some(delay);
        connect
    };
    let (raw, _) = Peer::connect(&mut sim, 0, will_connect("ends-now", 0, 60));
    sim.hang_up(raw.conn);
    advance_ms(&mut sim, 0);
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [("will/ends-now".to_string(), b"gone".to_vec())]
    );
    let (raw, _) = Peer::connect(&mut sim, 0, will_connect("ends-first", 10, 60));
    sim.hang_up(raw.conn);
    advance_ms(&mut sim, 9_999);
    assert_eq!(payloads(&watcher.packets(&mut sim)), []);
    advance_ms(&mut sim, 1);
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [("will/ends-first".to_string(), b"gone".to_vec())],
        "the session ended before the delay"
    );
    let (raw, _) = Peer::connect(&mut sim, 0, will_connect("waits", 60, 60));
    sim.hang_up(raw.conn);
    advance_ms(&mut sim, 59_000);
    let (_back, connack) = Peer::connect(&mut sim, 1, will_connect("waits", 60, 60));
    assert!(connack.session_present);
    advance_ms(&mut sim, 120_000);
    assert_eq!(
        payloads(&watcher.packets(&mut sim)),
        [],
        "cancelled by the reconnect"
    );
}
