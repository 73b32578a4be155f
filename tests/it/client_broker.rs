//! The client engine and the pub/sub tools against our own broker (started in-process on
//! 127.0.0.1:0).

use crate::support::client::{options, TestClient, TIMEOUT};
use shardmq::broker::{Broker, BrokerHandle, Config};
use shardmq::client::{ClientOptions, Event};
use shardmq::codec::{ProtocolVersion, QoS};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

fn start_broker(listen: SocketAddr) -> BrokerHandle {
    let config = Config {
        listen: vec![listen],
        shards: 2,
        ..Config::default()
    };
    Broker::start(config).expect("start broker")
}

fn broker() -> (BrokerHandle, u16) {
    let handle = start_broker("127.0.0.1:0".parse().expect("addr"));
    let port = handle.local_addrs()[0].port();
    (handle, port)
}

#[test]
fn connects_with_every_protocol_version_to_our_broker() {
    let (_broker, port) = broker();
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let client = TestClient::spawn(options(&format!("ours-{version:?}"), version), port);
        let event = client.wait_for("CONNACK", |e| matches!(e, Event::Connected(_)));
        let Event::Connected(connack) = event else {
            unreachable!()
        };
        assert!(!connack.session_present, "{version:?}");
        client.client.disconnect().expect("disconnect");
        client.wait_for("our DISCONNECT", |e| matches!(e, Event::Disconnected(None)));
    }
}

fn round_trip(version: ProtocolVersion) {
    let (_broker, port) = broker();
    // Subscriber and publisher on different shards (round-robin in accept order).
    let subscriber = TestClient::connect(options(&format!("sub-{version:?}"), version), port);
    subscriber
        .client
        .subscribe("rt/#", QoS::ExactlyOnce)
        .expect("subscribe");
    subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    let publisher = TestClient::connect(options(&format!("pub-{version:?}"), version), port);
    let mut pending = Vec::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        if let Some(packet_id) = publisher
            .client
            .publish(format!("rt/{i}"), qos, false, format!("payload {i}"))
            .expect("publish")
        {
            pending.push((qos, packet_id));
        }
    }
    for (qos, packet_id) in pending {
        publisher.wait_for("completion", |e| match (qos, e) {
            (QoS::AtLeastOnce, Event::PubAck(id)) | (QoS::ExactlyOnce, Event::PubComp(id)) => {
                *id == packet_id
            }
            _ => false,
        });
    }
    for i in 0..3 {
        let event = subscriber.wait_for("message", |e| matches!(e, Event::Publish(_)));
        let Event::Publish(publish) = event else {
            unreachable!()
        };
        assert_eq!(publish.topic.as_str(), format!("rt/{i}"));
        assert_eq!(&publish.payload[..], format!("payload {i}").as_bytes());
        assert_eq!(publish.qos as u8, i as u8);
    }
}

#[test]
fn round_trip_qos_0_1_2_mqtt_3_1_1_with_our_broker() {
    round_trip(ProtocolVersion::V3_1_1);
}

#[test]
fn round_trip_qos_0_1_2_mqtt_5_with_our_broker() {
    round_trip(ProtocolVersion::V5);
}

#[test]
fn round_trip_qos_0_1_2_mqtt_3_1_with_our_broker() {
    round_trip(ProtocolVersion::V3_1);
}

#[test]
fn reconnects_and_resubscribes_after_our_broker_restarts() {
    let (broker, port) = broker();
    let subscriber = TestClient::connect(
        ClientOptions::from(options("ours-restart", ProtocolVersion::V5))
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500)),
        port,
    );
    subscriber
        .client
        .subscribe("restart/t", QoS::AtLeastOnce)
        .expect("subscribe");
    subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    broker.shutdown();
    broker.join();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + TIMEOUT;
    let _restarted = loop {
        match Broker::start(Config {
            listen: vec![addr],
            shards: 2,
            ..Config::default()
        }) {
            Ok(handle) => break handle,
            Err(e) => {
                assert!(Instant::now() < deadline, "restart on port {port}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let event = subscriber.wait_for("reconnect", |e| matches!(e, Event::Reconnected(_)));
    let Event::Reconnected(connack) = event else {
        unreachable!()
    };
    assert!(!connack.session_present, "a fresh broker has no session");
    subscriber.wait_for("re-subscription SUBACK", |e| matches!(e, Event::SubAck(_)));
    let publisher = TestClient::connect(options("ours-restart-pub", ProtocolVersion::V5), port);
    publisher
        .client
        .publish("restart/t", QoS::AtLeastOnce, false, "after restart")
        .expect("publish");
    let event = subscriber.wait_for("message after restart", |e| matches!(e, Event::Publish(_)));
    let Event::Publish(publish) = event else {
        unreachable!()
    };
    assert_eq!(&publish.payload[..], b"after restart");
}

#[test]
fn keep_alive_pings_keep_an_idle_connection_open_on_our_broker() {
    let (_broker, port) = broker();
    let client = TestClient::connect(
        options("ours-idle", ProtocolVersion::V3_1_1).keep_alive_secs(2),
        port,
    );
    let notifications = client.collect_for(Duration::from_millis(5500));
    let pings = notifications
        .iter()
        .filter(|n| matches!(n, Ok(Event::PingResp)))
        .count();
    assert!(pings >= 2, "{notifications:?}");
    assert!(
        notifications
            .iter()
            .all(|n| matches!(n, Ok(Event::PingResp))),
        "{notifications:?}"
    );
}

#[test]
fn pub_and_sub_tools_with_our_broker() {
    let (_broker, port) = broker();
    let port = port.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_shardmq-pub"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "tools/ours",
            "-m",
            "kept",
            "-r",
            "-q",
            "1",
            "-V",
            "5",
        ])
        .output()
        .expect("run shardmq-pub");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_shardmq-sub"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "tools/#",
            "-C",
            "1",
            "-W",
            "20",
            "-v",
        ])
        .output()
        .expect("run shardmq-sub");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "tools/ours kept\n");
}

#[test]
fn a_persistent_session_keeps_queued_messages_on_our_broker() {
    let (_broker, port) = broker();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("ours-persistent-{version:?}");
        let persistent = || {
            options(&id, version)
                .clean_start(false)
                .session_expiry_secs(300)
        };
        let first = TestClient::connect(persistent(), port);
        first
            .client
            .subscribe("persist/t", QoS::AtLeastOnce)
            .expect("subscribe");
        first.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
        first.client.disconnect().expect("disconnect");
        first.wait_for("DISCONNECT", |e| matches!(e, Event::Disconnected(None)));

        let publisher = TestClient::connect(options(&format!("{id}-pub"), version), port);
        let packet_id = publisher
            .client
            .publish("persist/t", QoS::AtLeastOnce, false, "while away")
            .expect("publish")
            .expect("packet id");
        publisher.wait_for("PUBACK", |e| *e == Event::PubAck(packet_id));

        let second = TestClient::spawn(persistent(), port);
        let event = second.wait_for("CONNACK", |e| matches!(e, Event::Connected(_)));
        let Event::Connected(connack) = event else {
            unreachable!()
        };
        assert!(connack.session_present, "{version:?}");
        let event = second.wait_for("queued message", |e| matches!(e, Event::Publish(_)));
        let Event::Publish(publish) = event else {
            unreachable!()
        };
        assert_eq!(&publish.payload[..], b"while away");
    }
}

#[test]
fn retained_messages_on_our_broker() {
    let (_broker, port) = broker();
    let publisher = TestClient::connect(options("ours-retainer", ProtocolVersion::V5), port);
    let packet_id = publisher
        .client
        .publish("ret/t", QoS::AtLeastOnce, true, "kept")
        .expect("publish")
        .expect("packet id");
    publisher.wait_for("PUBACK", |e| *e == Event::PubAck(packet_id));
    let late = TestClient::connect(options("ours-late", ProtocolVersion::V3_1_1), port);
    late.client
        .subscribe("ret/#", QoS::AtLeastOnce)
        .expect("subscribe");
    let event = late.wait_for("retained message", |e| matches!(e, Event::Publish(_)));
    let Event::Publish(publish) = event else {
        unreachable!()
    };
    assert!(publish.retain);
    assert_eq!(&publish.payload[..], b"kept");
}

#[test]
fn qos2_flows_complete_through_our_broker_receive_maximum() {
    let handle = Broker::start(Config {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        shards: 1,
        receive_maximum: 3,
        ..Config::default()
    })
    .expect("start broker");
    let port = handle.local_addrs()[0].port();
    let client = TestClient::spawn(
        options("ours-window", ProtocolVersion::V5).inflight_window(50),
        port,
    );
    let event = client.wait_for("CONNACK", |e| matches!(e, Event::Connected(_)));
    let Event::Connected(connack) = event else {
        unreachable!()
    };
    assert_eq!(connack.properties.receive_maximum, Some(3));
    // Many QoS 2 publishes through a window of 3: all complete.
    let mut pending = std::collections::HashSet::new();
    for i in 0..30 {
        let packet_id = client
            .client
            .publish("win/t", QoS::ExactlyOnce, false, format!("{i}"))
            .expect("publish")
            .expect("packet id");
        pending.insert(packet_id);
        while pending.len() >= 3 {
            if let Event::PubComp(id) =
                client.wait_for("PUBCOMP", |e| matches!(e, Event::PubComp(_)))
            {
                pending.remove(&id);
            }
        }
    }
}

#[test]
fn no_topic_aliases_are_sent_when_our_broker_allows_none() {
    let (_broker, port) = broker();
    let subscriber = TestClient::connect(options("ours-alias-sub", ProtocolVersion::V5), port);
    subscriber
        .client
        .subscribe("alias/t", QoS::AtLeastOnce)
        .expect("subscribe");
    subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    let mut publisher_options = options("ours-alias-pub", ProtocolVersion::V5);
    publisher_options.topic_alias_outgoing_max = 10;
    let publisher = TestClient::connect(publisher_options, port);
    for i in 0..2 {
        publisher
            .client
            .publish("alias/t", QoS::AtLeastOnce, false, format!("m{i}"))
            .expect("publish");
    }
    for i in 0..2 {
        let event = subscriber.wait_for("message", |e| matches!(e, Event::Publish(_)));
        let Event::Publish(publish) = event else {
            unreachable!()
        };
        assert_eq!(publish.topic.as_str(), "alias/t");
        assert_eq!(&publish.payload[..], format!("m{i}").as_bytes());
    }
    // The broker would have closed the connection for an alias above its maximum of 0.
    let notifications = publisher.collect_for(Duration::from_millis(200));
    assert!(
        notifications
            .iter()
            .all(|n| matches!(n, Ok(Event::PubAck(_)))),
        "{notifications:?}"
    );
}

#[test]
fn unsubscribe_stops_delivery_on_our_broker() {
    let (_broker, port) = broker();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        crate::support::client::unsubscribe_scenario(port, version);
    }
}
