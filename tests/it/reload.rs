//! Issue 15 item 2: a reload (`BrokerHandle::reconfigure`, what SIGHUP runs) applied to a
//! running in-process broker on 127.0.0.1 port 0: listeners added and removed, limits that new
//! clients get while existing ones keep what their CONNACK announced, and failed reloads that
//! change nothing. The SIGHUP path through the real binary is in `operations.rs`.

use crate::support::broker::*;
use shardmq::broker::{BrokerHandle, Config};
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq::transport::ListenerConfig;
use std::net::{SocketAddr, TcpStream};

const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

fn loopback_any() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A second listener, told apart from the plain `listen` one by its own connection limit.
fn extra_listener() -> ListenerConfig {
    ListenerConfig {
        max_connections: Some(1000),
        ..ListenerConfig::mqtt(loopback_any())
    }
}

fn reload(broker: &mut BrokerHandle, config: &Config) {
    if let Err(e) = broker.reconfigure(config) {
        panic!("reload failed: {e}");
    }
}

/// Connects, and waits (bounded) until a fresh TCP connect to `addr` is refused.
fn wait_refused(addr: SocketAddr) {
    wait_until("the removed listener to refuse connections", || {
        TcpStream::connect(addr).is_err()
    });
}

#[test]
fn a_listener_added_accepts_and_one_removed_refuses_while_its_clients_stay() {
    let base = config(2);
    let mut broker = start_with(base.clone());
    let first = addr(&broker);
    let mut old = Raw::connect(first, V4, "on-first");
    assert_eq!(
        old.subscribe("reload/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );

    // Add a listener: the first keeps its port, the new one accepts.
    let mut both = base.clone();
    both.listeners = vec![extra_listener()];
    reload(&mut broker, &both);
    let addrs = broker.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2, "{addrs:?}");
    assert_eq!(addrs[0], first);
    let second = addrs[1];
    assert_ne!(second.port(), first.port());
    let mut new = Raw::connect(second, V4, "on-second");
    new.publish_acked(
        "reload/a",
        b"from the new listener",
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(&old.receive_and_ack().payload[..], b"from the new listener");

    // Remove the first: connects to it are refused, its client keeps working.
    let mut only_second = base.clone();
    only_second.listen = Vec::new();
    only_second.listeners = vec![extra_listener()];
    reload(&mut broker, &only_second);
    assert_eq!(broker.local_addrs(), &[second]);
    wait_refused(first);
    old.ping();
    // Its own publish reaches it (QoS 0: no PUBACK to order against the delivery).
    old.publish(
        "reload/b",
        b"from the removed listener",
        QoS::AtMostOnce,
        false,
        0,
    );
    assert_eq!(
        &old.expect_publish().payload[..],
        b"from the removed listener"
    );
    Raw::connect(second, V4, "still-second").ping();

    // The same settings again: nothing moves.
    reload(&mut broker, &only_second);
    assert_eq!(broker.local_addrs(), &[second]);
    new.ping();
}

#[test]
fn new_clients_get_new_limits_and_connected_ones_keep_their_connack() {
    let mut base = config(1);
    base.max_packet_size = 4096;
    let mut broker = start_with(base.clone());
    let at = addr(&broker);
    let mut subscriber = Raw::connect(at, V5, "sub");
    assert_eq!(
        subscriber.subscribe("limits/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    let (mut old, connack) = Raw::connect_with(at, connect_packet(V5, "old", true));
    assert_eq!(connack.properties.maximum_packet_size, Some(4096));
    assert_eq!(connack.properties.maximum_qos, None);

    let mut tighter = base.clone();
    tighter.max_packet_size = 1000;
    tighter.max_qos = 1;
    tighter.max_connections = 4;
    reload(&mut broker, &tighter);

    // A new client is told the new limits, and held to them.
    let (mut new, connack) = Raw::connect_with(at, connect_packet(V5, "new", true));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(connack.properties.maximum_packet_size, Some(1000));
    assert_eq!(connack.properties.maximum_qos, Some(1));
    assert_eq!(
        new.subscribe("other/#", QoS::ExactlyOnce),
        ReasonCode::GrantedQoS1
    );
    new.publish("limits/big", &[b'n'; 2000], QoS::AtMostOnce, false, 0);
    let before = new.expect_closed();
    assert!(
        matches!(&before[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PacketTooLarge),
        "{before:?}"
    );
    let (mut new_qos2, _) = Raw::connect_with(at, connect_packet(V5, "new-qos2", true));
    new_qos2.publish("limits/q", b"x", QoS::ExactlyOnce, false, 1);
    let before = new_qos2.expect_closed();
    assert!(
        matches!(&before[..], [Packet::Disconnect(d)] if d.reason_code == ReasonCode::QoSNotSupported),
        "{before:?}"
    );

    // The client connected before keeps its CONNACK's limits: 2,000 bytes and QoS 2 pass.
    old.publish_acked("limits/old", &[b'o'; 2000], QoS::ExactlyOnce, false, 7);
    let delivered = subscriber.receive_and_ack();
    assert_eq!(delivered.payload.len(), 2000);
    old.ping();

    // max_connections 4: subscriber and old hold 2, two more fit, the fifth is refused.
    let _third = Raw::connect(at, V4, "third");
    let _fourth = Raw::connect(at, V4, "fourth");
    let mut fifth = Raw::tcp(at);
    assert!(fifth.expect_closed().is_empty());
}

#[test]
fn a_failed_reload_changes_nothing() {
    let base = config(1);
    let mut broker = start_with(base.clone());
    let at = addr(&broker);
    let mut client = Raw::connect(at, V5, "stays");
    let occupied = std::net::TcpListener::bind(loopback_any()).expect("bind a port to occupy");
    let taken = occupied.local_addr().unwrap();

    let mut missing_cert =
        ListenerConfig::new(loopback_any(), shardmq::transport::TransportKind::MqttTls);
    missing_cert.cert_file = Some("/nonexistent/shardmq-cert.pem".into());
    missing_cert.key_file = Some("/nonexistent/shardmq-key.pem".into());
    let bad: Vec<(&str, Config)> = vec![
        // A port another socket holds: the bind fails. The same reload removes the running
        // listener: it must still accept afterwards (checked below for every case).
        ("unbindable", {
            let mut c = base.clone();
            c.max_qos = 1;
            c.listen = Vec::new();
            c.listeners = vec![extra_listener(), ListenerConfig::mqtt(taken)];
            c
        }),
        // A certificate that does not load.
        ("bad certificate", {
            let mut c = base.clone();
            c.max_qos = 1;
            c.listeners = vec![extra_listener(), missing_cert];
            c
        }),
        // A value out of range.
        ("invalid", {
            let mut c = base.clone();
            c.max_qos = 1;
            c.max_inflight = 0;
            c
        }),
    ];
    for (what, config) in bad {
        let result = broker.reconfigure(&config);
        assert!(result.is_err(), "{what}: reload should fail");
        assert_eq!(broker.local_addrs(), &[at], "{what}");
        // Nothing applied: a new client is still told Maximum QoS 2 (absent).
        let (mut probe, connack) = Raw::connect_with(at, connect_packet(V5, what, true));
        assert_eq!(connack.properties.maximum_qos, None, "{what}");
        probe.publish_acked("failed/reload", b"q2", QoS::ExactlyOnce, false, 3);
        client.ping();
    }
    // The occupied port and the extra listener never started: only the first port accepts.
    drop(occupied);
    assert!(TcpStream::connect(taken).is_err());
}

/// The real binary, a Mosquitto file and SIGHUP: a listener added accepts, a removed one
/// refuses while its client stays, an unbindable port fails the reload and changes nothing,
/// and a limit change is logged as applied.
#[test]
fn sighup_adds_and_removes_listeners_of_a_mosquitto_file() {
    use crate::operations::{address_in, shardmq, temp_dir, Process};
    let dir = temp_dir("hup-listeners");
    let conf = dir.join("mosquitto.conf");
    let head = "allow_anonymous true\nsys_interval 0\nper_listener_settings false\n";
    let first = "listener 0 127.0.0.1\n";
    let second = "listener 0 127.0.0.1\nmax_connections 50\n";
    std::fs::write(&conf, format!("{head}{first}")).unwrap();
    let mut broker = Process::spawn({
        let mut c = shardmq();
        c.args(["--shards", "2", "-c"]).arg(&conf);
        c
    });
    let first_addr = address_in(&broker.wait_line("listening on"));
    let mut client = Raw::connect(first_addr, V4, "first-client");
    assert_eq!(
        client.subscribe("hup/#", QoS::AtMostOnce),
        ReasonCode::Success
    );

    std::fs::write(&conf, format!("{head}{first}{second}")).unwrap();
    broker.signal("HUP");
    let line = broker.wait_line("started");
    let second_addr: SocketAddr = line
        .split("reload: listener ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_ne!(second_addr, first_addr);
    let mut other = Raw::connect(second_addr, V4, "second-client");
    other.publish(
        "hup/x",
        b"via the added listener",
        QoS::AtMostOnce,
        false,
        0,
    );
    assert_eq!(
        &client.expect_publish().payload[..],
        b"via the added listener"
    );

    std::fs::write(&conf, format!("{head}{second}")).unwrap();
    broker.signal("HUP");
    broker.wait_line(&format!("reload: listener {first_addr} stopped"));
    wait_refused(first_addr);
    client.ping();
    other.publish("hup/y", b"still delivered", QoS::AtMostOnce, false, 0);
    assert_eq!(&client.expect_publish().payload[..], b"still delivered");

    let occupied = std::net::TcpListener::bind(loopback_any()).unwrap();
    let port = occupied.local_addr().unwrap().port();
    std::fs::write(
        &conf,
        format!("{head}{second}max_packet_size 2000\nlistener {port} 127.0.0.1\n"),
    )
    .unwrap();
    broker.signal("HUP");
    broker.wait_line("reload failed: configuration unchanged");
    broker.find_line(&format!("cannot listen on 127.0.0.1:{port}"));
    Raw::connect(second_addr, V4, "after-failure").ping();

    std::fs::write(&conf, format!("{head}{second}max_packet_size 2000\n")).unwrap();
    broker.signal("HUP");
    let line = broker.wait_line("reload: max_packet_size changed from ");
    assert!(line.ends_with(" to 2000 (applied)"), "{line}");
    let (_, connack) = Raw::connect_with(second_addr, connect_packet(V5, "after", true));
    assert_eq!(connack.properties.maximum_packet_size, Some(2000));
    client.ping();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_listener_switched_to_new_settings_keeps_its_port_and_its_connection_count() {
    let mut base = config(1);
    base.listen = Vec::new();
    base.listeners = vec![ListenerConfig {
        max_connections: Some(3),
        ..ListenerConfig::mqtt(loopback_any())
    }];
    let mut broker = start_with(base.clone());
    let at = addr(&broker);
    let _a = Raw::connect(at, V4, "a");
    let mut b = Raw::connect(at, V4, "b");
    // Its own limit lowered to the 2 it holds: same socket, a third connection is refused.
    let mut lower = base.clone();
    lower.listeners[0].max_connections = Some(2);
    reload(&mut broker, &lower);
    assert_eq!(broker.local_addrs(), &[at]);
    let mut third = Raw::tcp(at);
    assert!(third.expect_closed().is_empty());
    b.ping();
    // Raised again: one more fits, the next does not.
    reload(&mut broker, &base);
    assert_eq!(broker.local_addrs(), &[at]);
    let mut c = Raw::connect(at, V4, "c");
    c.ping();
    let mut fourth = Raw::tcp(at);
    assert!(fourth.expect_closed().is_empty());
    c.ping();
}

#[test]
fn broker_wide_limits_change_for_everyone_at_once() {
    let mut base = config(2);
    base.max_retained_messages = 2;
    let mut broker = start_with(base.clone());
    let at = addr(&broker);
    let mut client = Raw::connect(at, V5, "retainer");
    for (i, topic) in ["r/1", "r/2", "r/3"].iter().enumerate() {
        client.publish_acked(topic, b"kept?", QoS::AtLeastOnce, true, i as u16 + 1);
    }
    client.ping();
    assert_eq!(broker.retained_messages(), 2, "max_retained_messages 2");

    // Raised: the same client's next new topic is stored. max_sessions lowered to the 2
    // sessions held: a third CONNECT is refused, the connected clients stay.
    let mut next = base.clone();
    next.max_retained_messages = 3;
    next.max_sessions = 2;
    let _second = Raw::connect(at, V5, "second");
    reload(&mut broker, &next);
    client.publish_acked("r/4", b"kept", QoS::AtLeastOnce, true, 9);
    client.ping();
    assert_eq!(broker.retained_messages(), 3);
    let (mut third, connack) = Raw::connect_with(at, connect_packet(V5, "third", true));
    assert_eq!(connack.reason_code, ReasonCode::QuotaExceeded);
    assert!(third.expect_closed().is_empty());
    client.ping();
}
