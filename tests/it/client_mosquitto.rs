//! The client engine against Mosquitto (started by each test on a free loopback port).

use crate::support::client::{options, TestClient};
use crate::support::mosquitto::Mosquitto;
use shardmq::client::{ClientOptions, Event};
use shardmq::codec::{ProtocolVersion, QoS};
use std::time::Duration;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

#[test]
fn connects_with_every_protocol_version() {
    let broker = Mosquitto::start();
    for version in VERSIONS {
        let client = TestClient::spawn(options(&format!("conn-{version:?}"), version), broker.port);
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
    let broker = Mosquitto::start();
    let subscriber =
        TestClient::connect(options(&format!("sub-{version:?}"), version), broker.port);
    subscriber
        .client
        .subscribe("rt/#", QoS::ExactlyOnce)
        .expect("subscribe");
    let suback = subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    let Event::SubAck(suback) = suback else {
        unreachable!()
    };
    assert!(!suback.reason_codes[0].is_error(), "{suback:?}");
    let publisher = TestClient::connect(options(&format!("pub-{version:?}"), version), broker.port);
    let mut expected_acks = Vec::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let packet_id = publisher
            .client
            .publish(format!("rt/{i}"), qos, false, format!("payload {i}"))
            .expect("publish");
        assert_eq!(packet_id.is_some(), qos != QoS::AtMostOnce);
        if let Some(packet_id) = packet_id {
            expected_acks.push((qos, packet_id));
        }
    }
    for (qos, packet_id) in expected_acks {
        publisher.wait_for("publish completion", |e| match (qos, e) {
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
        assert_eq!(
            publish.qos as u8, i as u8,
            "granted QoS 2 keeps the sent QoS"
        );
    }
}

#[test]
fn pub_sub_round_trip_qos_0_1_2_mqtt_3_1_1() {
    round_trip(ProtocolVersion::V3_1_1);
}

#[test]
fn pub_sub_round_trip_qos_0_1_2_mqtt_5() {
    round_trip(ProtocolVersion::V5);
}

#[test]
fn pub_sub_round_trip_qos_0_1_2_mqtt_3_1() {
    round_trip(ProtocolVersion::V3_1);
}

#[test]
fn reconnects_and_resubscribes_after_the_broker_restarts() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut broker = Mosquitto::start();
        let subscriber_options = ClientOptions::from(options(&format!("re-{version:?}"), version))
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500));
        let subscriber = TestClient::connect(subscriber_options, broker.port);
        subscriber
            .client
            .subscribe("restart/t", QoS::AtLeastOnce)
            .expect("subscribe");
        subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));

        broker.restart();

        // Persistence is off: the new broker has no session, so the client re-subscribes.
        let event = subscriber.wait_for("reconnect", |e| matches!(e, Event::Reconnected(_)));
        let Event::Reconnected(connack) = event else {
            unreachable!()
        };
        assert!(!connack.session_present);
        subscriber.wait_for("re-subscription SUBACK", |e| matches!(e, Event::SubAck(_)));
        let publisher = TestClient::connect(
            options(&format!("re-pub-{version:?}"), version),
            broker.port,
        );
        publisher
            .client
            .publish("restart/t", QoS::AtLeastOnce, false, "after restart")
            .expect("publish");
        let event =
            subscriber.wait_for("message after restart", |e| matches!(e, Event::Publish(_)));
        let Event::Publish(publish) = event else {
            unreachable!()
        };
        assert_eq!(&publish.payload[..], b"after restart");
    }
}

#[test]
fn publishes_accepted_while_the_broker_is_down_complete_after_reconnect() {
    let mut broker = Mosquitto::start();
    let publisher = TestClient::connect(
        ClientOptions::from(options("down-pub", ProtocolVersion::V3_1_1))
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(500)),
        broker.port,
    );
    broker.stop();
    let deadline = std::time::Instant::now() + crate::support::client::TIMEOUT;
    loop {
        match publisher
            .events
            .recv_timeout(crate::support::client::TIMEOUT)
        {
            Ok(Err(_)) => break, // the connection loss
            Ok(Ok(_)) => {}
            Err(_) => panic!("no connection-loss notification"),
        }
        assert!(std::time::Instant::now() < deadline);
    }
    // Accepted into the session while disconnected; sent after the reconnect.
    let packet_id = publisher
        .client
        .publish("down/t", QoS::AtLeastOnce, false, "queued")
        .expect("accepted while down")
        .expect("packet id");
    broker.restart();
    publisher.wait_for("reconnect", |e| matches!(e, Event::Reconnected(_)));
    publisher.wait_for("PUBACK of the queued message", |e| {
        *e == Event::PubAck(packet_id)
    });
}

#[test]
fn keep_alive_pings_keep_an_idle_connection_open() {
    let broker = Mosquitto::start();
    // Mosquitto drops a client silent for 1.5 x keep-alive; stay idle for 2.75 x.
    let client = TestClient::connect(
        options("idle", ProtocolVersion::V3_1_1).keep_alive_secs(2),
        broker.port,
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
        "only PINGRESPs, no error or reconnect: {notifications:?}"
    );
    // Still the same connection: a round trip works without a reconnect.
    let packet_id = client
        .client
        .publish("idle/t", QoS::AtLeastOnce, false, "still here")
        .expect("publish")
        .expect("packet id");
    let event = client.wait_for("PUBACK", |e| !matches!(e, Event::PingResp));
    assert_eq!(event, Event::PubAck(packet_id));
}

#[test]
fn retained_messages_and_will_messages() {
    let broker = Mosquitto::start();
    let publisher = TestClient::connect(options("retainer", ProtocolVersion::V5), broker.port);
    let packet_id = publisher
        .client
        .publish("ret/t", QoS::AtLeastOnce, true, "kept")
        .expect("publish")
        .expect("packet id");
    publisher.wait_for("PUBACK", |e| *e == Event::PubAck(packet_id));
    let late = TestClient::connect(options("late", ProtocolVersion::V5), broker.port);
    late.client
        .subscribe("ret/#", QoS::AtLeastOnce)
        .expect("subscribe");
    let event = late.wait_for("retained message", |e| matches!(e, Event::Publish(_)));
    let Event::Publish(publish) = event else {
        unreachable!()
    };
    assert!(publish.retain);
    assert_eq!(&publish.payload[..], b"kept");

    // A will is published when its client vanishes without DISCONNECT: connect a raw socket
    // through the session so that we can drop it abruptly.
    late.client
        .subscribe("will/#", QoS::AtLeastOnce)
        .expect("subscribe");
    late.wait_for(
        "SUBACK",
        |e| matches!(e, Event::SubAck(s) if s.packet_id != 1),
    );
    let mut session = shardmq::client::ClientSession::new(
        options("willer", ProtocolVersion::V5).will("will/t", "gone", QoS::AtLeastOnce, false),
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", broker.port)).expect("connect");
    session.start(std::time::Instant::now());
    let mut out = bytes::BytesMut::new();
    session.poll_transmit(&mut out);
    std::io::Write::write_all(&mut stream, &out).expect("write CONNECT");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut stream, &mut buf).expect("read CONNACK");
    assert!(n >= 4, "CONNACK");
    drop(stream);
    let event = late.wait_for("will message", |e| matches!(e, Event::Publish(_)));
    let Event::Publish(will) = event else {
        unreachable!()
    };
    assert_eq!(will.topic.as_str(), "will/t");
    assert_eq!(&will.payload[..], b"gone");
}

#[test]
fn a_persistent_session_keeps_subscriptions_and_queued_messages() {
    let broker = Mosquitto::start();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let id = format!("persistent-{version:?}");
        let persistent = || {
            options(&id, version)
                .clean_start(false)
                .session_expiry_secs(300)
        };
        let first = TestClient::connect(persistent(), broker.port);
        first
            .client
            .subscribe("persist/t", QoS::AtLeastOnce)
            .expect("subscribe");
        first.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
        first.client.disconnect().expect("disconnect");
        first.wait_for("DISCONNECT", |e| matches!(e, Event::Disconnected(None)));

        let publisher = TestClient::connect(options(&format!("{id}-pub"), version), broker.port);
        let packet_id = publisher
            .client
            .publish("persist/t", QoS::AtLeastOnce, false, "while away")
            .expect("publish")
            .expect("packet id");
        publisher.wait_for("PUBACK", |e| *e == Event::PubAck(packet_id));

        let second = TestClient::spawn(persistent(), broker.port);
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
fn outgoing_topic_aliases_are_understood_by_mosquitto() {
    use bytes::BytesMut;
    use shardmq::client::ClientSession;
    use shardmq::codec::{self, Packet};
    use std::io::{Read, Write};
    use std::time::Instant;

    let broker = Mosquitto::start();
    let subscriber = TestClient::connect(options("alias-sub", ProtocolVersion::V5), broker.port);
    subscriber
        .client
        .subscribe("alias/#", QoS::AtLeastOnce)
        .expect("subscribe");
    subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));

    // Drive a session by hand over a blocking socket to see the aliases on the wire.
    let mut publisher_options = options("alias-pub", ProtocolVersion::V5);
    publisher_options.topic_alias_outgoing_max = 10;
    let mut session = ClientSession::new(publisher_options);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", broker.port)).expect("connect");
    stream
        .set_read_timeout(Some(crate::support::client::TIMEOUT))
        .expect("timeout");
    session.start(Instant::now());
    let mut out = BytesMut::new();
    session.poll_transmit(&mut out);
    stream.write_all(&out).expect("CONNECT");
    let mut input = BytesMut::new();
    let connack = loop {
        let mut chunk = [0u8; 256];
        let n = stream.read(&mut chunk).expect("read CONNACK");
        assert!(n > 0, "mosquitto closed the connection");
        input.extend_from_slice(&chunk[..n]);
        session
            .handle_input(&mut input, Instant::now())
            .expect("CONNACK");
        if let Some(Event::Connected(connack)) = session.poll_event() {
            break connack;
        }
    };
    let server_maximum = connack.properties.topic_alias_maximum.unwrap_or(0);
    assert!(
        server_maximum > 0,
        "mosquitto announces a Topic Alias Maximum: {connack:?}"
    );
    let topics = [
        "alias/long/topic/name",
        "alias/other",
        "alias/long/topic/name",
    ];
    for (i, topic) in topics.into_iter().enumerate() {
        session
            .publish(
                topic.into(),
                format!("m{i}").into(),
                QoS::AtMostOnce,
                false,
                Instant::now(),
            )
            .expect("publish");
    }
    let mut out = BytesMut::new();
    session.poll_transmit(&mut out);
    let mut wire = out.clone();
    let mut aliases = Vec::new();
    while let Some(packet) =
        codec::decode(&mut wire, ProtocolVersion::V5, u32::MAX).expect("decode")
    {
        if let Packet::Publish(publish) = packet {
            aliases.push((
                publish.topic.as_str().to_owned(),
                publish.properties.topic_alias,
            ));
        }
    }
    assert_eq!(
        aliases,
        vec![
            ("alias/long/topic/name".to_owned(), Some(1)),
            ("alias/other".to_owned(), Some(2)),
            (String::new(), Some(1)),
        ]
    );
    stream.write_all(&out).expect("PUBLISH");
    for (i, topic) in topics.into_iter().enumerate() {
        let event = subscriber.wait_for("aliased message", |e| matches!(e, Event::Publish(_)));
        let Event::Publish(publish) = event else {
            unreachable!()
        };
        assert_eq!(
            publish.topic.as_str(),
            topic,
            "mosquitto resolved the alias"
        );
        assert_eq!(&publish.payload[..], format!("m{i}").as_bytes());
    }
}

#[test]
fn unsubscribe_stops_delivery() {
    let broker = Mosquitto::start();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        crate::support::client::unsubscribe_scenario(broker.port, version);
    }
}
