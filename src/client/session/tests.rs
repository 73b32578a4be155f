//! Deterministic tests of the session against a scripted fake server: packets in, packets out,
//! the clock advanced by hand.

use super::*;
use crate::codec::{ConnAck, MoreProperties, Packet, ReasonCode, RetainHandling};

const KEEP_ALIVE_SECS: u16 = 10;

/// A session and the fake server's clock.
struct Harness {
    session: ClientSession,
    now: Instant,
}

impl Harness {
    fn new(options: ConnectOptions) -> Harness {
        Harness {
            session: ClientSession::new(options),
            now: Instant::now(),
        }
    }

    /// Starts, checks that exactly CONNECT went out, and answers with this CONNACK.
    fn connected(options: ConnectOptions, connack: ConnAck) -> Harness {
        let mut h = Harness::new(options);
        h.session.start(h.now);
        let sent = h.sent();
        assert!(matches!(sent.as_slice(), [Packet::Connect(_)]), "{sent:?}");
        h.recv(Packet::ConnAck(connack)).expect("connack");
        let events = h.events();
        assert!(
            matches!(events.as_slice(), [Event::Connected(_)]),
            "{events:?}"
        );
        h
    }

    fn advance(&mut self, secs: u64) {
        self.now += Duration::from_secs(secs);
    }

    fn sent(&mut self) -> Vec<Packet> {
        std::iter::from_fn(|| self.session.poll_packet()).collect()
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    fn recv(&mut self, packet: Packet) -> Result<(), ClientError> {
        self.session.handle_packet(packet, self.now)
    }

    fn publish(&mut self, topic: &str, qos: QoS) -> Result<Option<u16>, ClientError> {
        self.session.publish(
            MqttString::from(topic),
            Bytes::from_static(b"payload"),
            qos,
            false,
            self.now,
        )
    }
}

fn v5() -> ConnectOptions {
    ConnectOptions::new("c1")
        .protocol(ProtocolVersion::V5)
        .keep_alive_secs(KEEP_ALIVE_SECS)
}

fn v311() -> ConnectOptions {
    ConnectOptions::new("c1").keep_alive_secs(KEEP_ALIVE_SECS)
}

fn connack_with(properties: Properties) -> ConnAck {
    ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties,
    }
}

fn ok_connack() -> ConnAck {
    connack_with(Properties::default())
}

fn ack_packet(packet_id: u16) -> Ack {
    make_ack(packet_id, ReasonCode::Success)
}

fn publish_ids(packets: &[Packet]) -> Vec<(u16, bool)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.packet_id, p.dup)),
            _ => None,
        })
        .collect()
}

fn sub(filter: &str, qos: QoS) -> (MqttString, SubscriptionOptions) {
    (
        MqttString::from(filter),
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    )
}

#[test]
fn connect_carries_options_and_v5_limits() {
    let mut options = v5().session_expiry_secs(300).receive_maximum(20);
    options.username = Some("user".into());
    options.password = Some(Bytes::from_static(b"pw"));
    options = options.will("will/t", Bytes::from_static(b"bye"), QoS::AtLeastOnce, true);
    let mut h = Harness::new(options);
    assert_eq!(h.session.state(), SessionState::Idle);
    h.session.start(h.now);
    assert_eq!(h.session.state(), SessionState::Connecting);
    let sent = h.sent();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.protocol_version, ProtocolVersion::V5);
    assert_eq!(connect.client_id.as_str(), "c1");
    assert_eq!(connect.keep_alive_secs, KEEP_ALIVE_SECS);
    assert!(connect.clean_start);
    assert_eq!(connect.username.as_ref().map(|u| u.as_str()), Some("user"));
    assert_eq!(connect.password.as_deref(), Some(&b"pw"[..]));
    let will = connect.will.as_ref().expect("will");
    assert_eq!(will.topic.as_str(), "will/t");
    assert!(will.retain);
    assert_eq!(connect.properties.session_expiry_interval, Some(300));
    assert_eq!(connect.properties.receive_maximum, Some(20));
    assert_eq!(connect.properties.maximum_packet_size, Some(1024 * 1024));
}

#[test]
fn v311_connect_has_no_properties() {
    let mut h = Harness::new(v311().session_expiry_secs(300));
    h.session.start(h.now);
    let sent = h.sent();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.protocol_version, ProtocolVersion::V3_1_1);
    assert!(connect.properties.is_empty());
}

#[test]
fn nothing_but_connect_leaves_before_connack() {
    let mut h = Harness::new(v5());
    h.session.start(h.now);
    assert_eq!(h.sent().len(), 1);
    assert_eq!(h.publish("a", QoS::AtLeastOnce).expect("accepted"), Some(1));
    assert_eq!(h.publish("a", QoS::AtMostOnce).expect("accepted"), None);
    assert_eq!(h.session.subscribe(&[sub("s/#", QoS::AtLeastOnce)]), 2);
    assert!(h.sent().is_empty(), "held until CONNACK");
    h.recv(Packet::ConnAck(ok_connack())).expect("connack");
    let sent = h.sent();
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent
        .iter()
        .any(|p| matches!(p, Packet::Subscribe(s) if s.packet_id == 2)));
    assert_eq!(publish_ids(&sent), vec![(0, false), (1, false)]);
}

#[test]
fn first_packet_must_be_connack() {
    let mut h = Harness::new(v5());
    h.session.start(h.now);
    h.sent();
    let err = h.recv(Packet::PingResp).expect_err("protocol error");
    assert!(matches!(err, ClientError::Protocol(_)), "{err}");
    assert_eq!(h.session.state(), SessionState::Disconnected);
}

#[test]
fn refused_connack_is_an_error() {
    let mut h = Harness::new(v5());
    h.session.start(h.now);
    h.sent();
    let connack = ConnAck {
        session_present: false,
        reason_code: ReasonCode::NotAuthorized,
        properties: Properties::default(),
    };
    let err = h.recv(Packet::ConnAck(connack)).expect_err("refused");
    assert!(matches!(
        err,
        ClientError::ConnectionRefused(ReasonCode::NotAuthorized)
    ));
    assert!(h.events().is_empty());
}

#[test]
fn session_present_after_clean_start_is_a_protocol_error() {
    let mut h = Harness::new(v5());
    h.session.start(h.now);
    h.sent();
    let mut connack = ok_connack();
    connack.session_present = true;
    assert!(matches!(
        h.recv(Packet::ConnAck(connack)),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn connect_timeout() {
    let mut h = Harness::new(v5().connect_timeout(Duration::from_secs(5)));
    h.session.start(h.now);
    h.sent();
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(5))
    );
    h.advance(4);
    h.session.handle_timeout(h.now).expect("not yet");
    h.advance(1);
    assert!(matches!(
        h.session.handle_timeout(h.now),
        Err(ClientError::ConnectTimeout)
    ));
}

#[test]
fn window_is_min_of_ours_and_server_receive_maximum() {
    let properties = Properties::from(MoreProperties {
        receive_maximum: Some(3),
        ..MoreProperties::default()
    });
    let mut h = Harness::connected(v5().inflight_window(10), connack_with(properties));
    assert_eq!(h.session.window(), 3);
    for expected in 1..=3 {
        assert_eq!(
            h.publish("t", QoS::AtLeastOnce).expect("room"),
            Some(expected)
        );
    }
    assert!(matches!(
        h.publish("t", QoS::AtLeastOnce),
        Err(ClientError::WindowFull)
    ));
    assert!(matches!(
        h.publish("t", QoS::ExactlyOnce),
        Err(ClientError::WindowFull)
    ));
    // QoS 0 is not limited by the window.
    assert_eq!(h.publish("t", QoS::AtMostOnce).expect("qos 0"), None);
    assert_eq!(h.session.inflight_len(), 3);
    assert_eq!(h.session.stats().window_full, 2);
    assert_eq!(h.sent().len(), 4);
    h.recv(Packet::PubAck(ack_packet(2))).expect("puback");
    assert_eq!(h.events(), vec![Event::PubAck(2)]);
    assert_eq!(h.publish("t", QoS::AtLeastOnce).expect("room"), Some(4));
    assert_eq!(publish_ids(&h.sent()), vec![(4, false)]);
}

#[test]
fn publishes_accepted_before_connack_respect_a_smaller_server_window() {
    let mut h = Harness::new(v5().inflight_window(5));
    h.session.start(h.now);
    h.sent();
    for _ in 0..5 {
        h.publish("t", QoS::AtLeastOnce)
            .expect("room before connack");
    }
    let properties = Properties::from(MoreProperties {
        receive_maximum: Some(2),
        ..MoreProperties::default()
    });
    h.recv(Packet::ConnAck(connack_with(properties)))
        .expect("connack");
    assert_eq!(publish_ids(&h.sent()), vec![(1, false), (2, false)]);
    assert!(matches!(
        h.publish("t", QoS::AtLeastOnce),
        Err(ClientError::WindowFull)
    ));
    h.recv(Packet::PubAck(ack_packet(1))).expect("puback");
    assert_eq!(publish_ids(&h.sent()), vec![(3, false)]);
    h.recv(Packet::PubAck(ack_packet(3))).expect("puback");
    h.recv(Packet::PubAck(ack_packet(2))).expect("puback");
    assert_eq!(publish_ids(&h.sent()), vec![(4, false), (5, false)]);
    assert_eq!(h.session.inflight_len(), 2);
}

#[test]
fn qos1_flow() {
    let mut h = Harness::connected(v311(), ok_connack());
    let id = h.publish("a/b", QoS::AtLeastOnce).expect("ok").expect("id");
    let sent = h.sent();
    let [Packet::Publish(publish)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(publish.packet_id, id);
    assert_eq!(publish.qos, QoS::AtLeastOnce);
    assert_eq!(publish.topic.as_str(), "a/b");
    h.recv(Packet::PubAck(ack_packet(id))).expect("puback");
    assert_eq!(h.events(), vec![Event::PubAck(id)]);
    assert_eq!(h.session.inflight_len(), 0);
    // A second PUBACK for the same id is ignored and counted.
    h.recv(Packet::PubAck(ack_packet(id))).expect("ignored");
    assert!(h.events().is_empty());
    assert_eq!(h.session.stats().unexpected_acks, 1);
}

#[test]
fn qos2_flow() {
    let mut h = Harness::connected(v311(), ok_connack());
    let id = h.publish("a", QoS::ExactlyOnce).expect("ok").expect("id");
    assert_eq!(publish_ids(&h.sent()), vec![(id, false)]);
    // PUBCOMP before PUBREC is unexpected.
    h.recv(Packet::PubComp(ack_packet(id))).expect("ignored");
    assert_eq!(h.session.stats().unexpected_acks, 1);
    h.recv(Packet::PubRec(ack_packet(id))).expect("pubrec");
    assert_eq!(h.sent(), vec![Packet::PubRel(ack_packet(id))]);
    assert!(h.events().is_empty());
    assert_eq!(h.session.inflight_len(), 1, "counts until PUBCOMP");
    h.recv(Packet::PubComp(ack_packet(id))).expect("pubcomp");
    assert_eq!(h.events(), vec![Event::PubComp(id)]);
    assert_eq!(h.session.inflight_len(), 0);
}

#[test]
fn pubrec_with_error_code_ends_the_flow() {
    let mut h = Harness::connected(v5(), ok_connack());
    let id = h.publish("a", QoS::ExactlyOnce).expect("ok").expect("id");
    h.sent();
    h.recv(Packet::PubRec(make_ack(id, ReasonCode::QuotaExceeded)))
        .expect("pubrec");
    assert!(h.sent().is_empty(), "no PUBREL after an error PUBREC");
    assert_eq!(h.events(), vec![Event::PubComp(id)]);
    assert_eq!(h.session.stats().publishes_rejected, 1);
}

#[test]
fn packet_ids_skip_those_in_use_and_wrap() {
    let mut h = Harness::connected(v311(), ok_connack());
    h.session.next_packet_id = u16::MAX;
    assert_eq!(
        h.publish("t", QoS::AtLeastOnce).expect("ok"),
        Some(u16::MAX)
    );
    assert_eq!(h.publish("t", QoS::AtLeastOnce).expect("ok"), Some(1));
    assert_eq!(h.session.subscribe(&[sub("x", QoS::AtMostOnce)]), 2);
    h.session.next_packet_id = u16::MAX - 1;
    assert_eq!(
        h.publish("t", QoS::AtLeastOnce).expect("ok"),
        Some(u16::MAX - 1)
    );
    // 65535, 1 and 2 are in use.
    assert_eq!(h.publish("t", QoS::AtLeastOnce).expect("ok"), Some(3));
}

#[test]
fn incoming_qos1_is_acknowledged() {
    let mut h = Harness::connected(v311(), ok_connack());
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from("in"),
        packet_id: 9,
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    h.recv(Packet::Publish(publish.clone())).expect("publish");
    assert_eq!(h.sent(), vec![Packet::PubAck(ack_packet(9))]);
    assert_eq!(h.events(), vec![Event::Publish(publish)]);
}

#[test]
fn incoming_qos2_is_delivered_once() {
    let mut h = Harness::connected(v5(), ok_connack());
    let publish = Publish {
        qos: QoS::ExactlyOnce,
        topic: MqttString::from("in"),
        packet_id: 7,
        payload: Bytes::from_static(b"x"),
        ..Publish::default()
    };
    h.recv(Packet::Publish(publish.clone())).expect("publish");
    let mut dup = publish.clone();
    dup.dup = true;
    h.recv(Packet::Publish(dup)).expect("duplicate");
    assert_eq!(h.events(), vec![Event::Publish(publish.clone())]);
    assert_eq!(
        h.sent(),
        vec![Packet::PubRec(ack_packet(7)), Packet::PubRec(ack_packet(7))]
    );
    assert_eq!(h.session.stats().duplicates_dropped, 1);
    h.recv(Packet::PubRel(ack_packet(7))).expect("pubrel");
    assert_eq!(h.sent(), vec![Packet::PubComp(ack_packet(7))]);
    // A repeated PUBREL is completed with Packet Identifier not found (MQTT 5).
    h.recv(Packet::PubRel(ack_packet(7))).expect("pubrel again");
    assert_eq!(
        h.sent(),
        vec![Packet::PubComp(make_ack(
            7,
            ReasonCode::PacketIdentifierNotFound
        ))]
    );
    // After the release the id is a new message.
    h.recv(Packet::Publish(publish.clone()))
        .expect("new message");
    assert_eq!(h.events(), vec![Event::Publish(publish)]);
}

#[test]
fn server_exceeding_our_receive_maximum_is_a_protocol_error() {
    let mut h = Harness::connected(v5().receive_maximum(2), ok_connack());
    for packet_id in 1..=2 {
        let publish = Publish {
            qos: QoS::ExactlyOnce,
            topic: MqttString::from("in"),
            packet_id,
            ..Publish::default()
        };
        h.recv(Packet::Publish(publish)).expect("within limit");
    }
    let publish = Publish {
        qos: QoS::ExactlyOnce,
        topic: MqttString::from("in"),
        packet_id: 3,
        ..Publish::default()
    };
    assert!(matches!(
        h.recv(Packet::Publish(publish)),
        Err(ClientError::Protocol(_))
    ));
    assert_eq!(h.session.state(), SessionState::Disconnected);
}

#[test]
fn keep_alive_pings_when_idle_and_times_out_without_pingresp() {
    let mut h = Harness::connected(v311(), ok_connack());
    let ka = Duration::from_secs(u64::from(KEEP_ALIVE_SECS));
    assert_eq!(h.session.poll_timeout(), Some(h.now + ka));
    h.advance(5);
    h.session.handle_timeout(h.now).expect("fine");
    assert!(h.sent().is_empty());
    // Sending something postpones the ping.
    h.publish("t", QoS::AtMostOnce).expect("ok");
    h.sent();
    h.session.handle_timeout(h.now).expect("stamp");
    h.advance(9);
    h.session.handle_timeout(h.now).expect("fine");
    assert!(h.sent().is_empty(), "only 9 s since the publish");
    h.advance(1);
    h.session.handle_timeout(h.now).expect("ping");
    assert_eq!(h.sent(), vec![Packet::PingReq]);
    assert_eq!(h.session.poll_timeout(), Some(h.now + ka));
    h.advance(3);
    h.recv(Packet::PingResp).expect("pingresp");
    assert_eq!(h.events(), vec![Event::PingResp]);
    // Next ping 10 s after the PINGREQ went out; then no answer.
    h.advance(7);
    h.session.handle_timeout(h.now).expect("ping again");
    assert_eq!(h.sent(), vec![Packet::PingReq]);
    h.advance(9);
    h.session.handle_timeout(h.now).expect("not yet late");
    h.advance(1);
    assert!(matches!(
        h.session.handle_timeout(h.now),
        Err(ClientError::KeepAliveTimeout)
    ));
    assert_eq!(h.session.state(), SessionState::Disconnected);
    assert_eq!(h.session.stats().pings_sent, 2);
}

#[test]
fn keep_alive_zero_never_pings() {
    let mut h = Harness::connected(v311().keep_alive_secs(0), ok_connack());
    assert_eq!(h.session.poll_timeout(), None);
    h.advance(10_000);
    h.session.handle_timeout(h.now).expect("fine");
    assert!(h.sent().is_empty());
}

#[test]
fn server_keep_alive_and_assigned_client_id_are_honoured() {
    let properties = Properties::from(MoreProperties {
        server_keep_alive: Some(3),
        assigned_client_identifier: Some(MqttString::from("assigned-1")),
        ..MoreProperties::default()
    });
    let mut h = Harness::connected(
        ConnectOptions::new("").protocol(ProtocolVersion::V5),
        connack_with(properties),
    );
    assert_eq!(h.session.keep_alive(), Duration::from_secs(3));
    assert_eq!(h.session.client_id(), "assigned-1");
    h.advance(3);
    h.session.handle_timeout(h.now).expect("ping");
    assert_eq!(h.sent(), vec![Packet::PingReq]);
    // The assigned id names the session on the next connection.
    h.session.reset_for_reconnect();
    h.session.start(h.now);
    let sent = h.sent();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(connect.client_id.as_str(), "assigned-1");
    assert!(!connect.clean_start, "MQTT 5 reconnects resume the session");
}

#[test]
fn server_maximum_qos_and_retain_available_are_honoured() {
    let properties = Properties::from(MoreProperties {
        maximum_qos: Some(1),
        retain_available: Some(0),
        ..MoreProperties::default()
    });
    let mut h = Harness::connected(v5(), connack_with(properties));
    assert!(matches!(
        h.publish("t", QoS::ExactlyOnce),
        Err(ClientError::QoSNotSupported(QoS::ExactlyOnce))
    ));
    let retained = h.session.publish(
        MqttString::from("t"),
        Bytes::new(),
        QoS::AtMostOnce,
        true,
        h.now,
    );
    assert!(matches!(retained, Err(ClientError::RetainNotSupported)));
    assert!(h.publish("t", QoS::AtLeastOnce).is_ok());
}

/// A property value the wire format cannot carry is refused when published, not dropped (or
/// cut) when encoded.
#[test]
fn a_publish_with_a_property_over_65535_bytes_is_refused() {
    let mut h = Harness::connected(v5(), ok_connack());
    let mut publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from("t"),
        ..Publish::default()
    };
    publish.properties = crate::codec::Properties::from(crate::codec::MoreProperties {
        user_properties: vec![(MqttString::from("k"), MqttString::from("v".repeat(65_536)))],
        ..Default::default()
    });
    let now = h.now;
    assert!(matches!(
        h.session.publish_message(publish, now),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(h.sent().is_empty());
}

#[test]
fn empty_topic_and_empty_subscribe_are_refused() {
    let mut h = Harness::connected(v5(), ok_connack());
    assert!(matches!(
        h.publish("", QoS::AtMostOnce),
        Err(ClientError::InvalidTopic(_))
    ));
    assert_eq!(h.session.subscribe(&[]), 0);
    assert!(matches!(
        h.session.try_unsubscribe(&[]),
        Err(ClientError::InvalidArgument(_))
    ));
    assert!(h.sent().is_empty());
}

#[test]
fn subscriptions_follow_suback_and_unsuback() {
    let mut h = Harness::connected(v5(), ok_connack());
    let id = h
        .session
        .subscribe(&[sub("a/#", QoS::ExactlyOnce), sub("b", QoS::AtLeastOnce)]);
    let sent = h.sent();
    let [Packet::Subscribe(subscribe)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(subscribe.packet_id, id);
    assert_eq!(subscribe.subscriptions.len(), 2);
    let suback = SubAck {
        packet_id: id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
    };
    h.recv(Packet::SubAck(suback.clone())).expect("suback");
    assert_eq!(h.events(), vec![Event::SubAck(suback)]);
    let active = h.session.subscriptions();
    assert_eq!(active.len(), 1, "the refused filter is not active");
    assert_eq!(active[0].0.as_str(), "a/#");
    assert_eq!(active[0].1.qos, QoS::AtLeastOnce, "granted QoS recorded");
    // A SUBACK with the wrong number of codes is a protocol error.
    let id2 = h.session.subscribe(&[sub("c", QoS::AtMostOnce)]);
    h.sent();
    let bad = SubAck {
        packet_id: id2,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success, ReasonCode::Success],
    };
    assert!(matches!(
        h.recv(Packet::SubAck(bad)),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn unsubscribe_removes_the_active_subscription() {
    let mut h = Harness::connected(v311(), ok_connack());
    let id = h.session.subscribe(&[sub("a", QoS::AtMostOnce)]);
    h.recv(Packet::SubAck(SubAck {
        packet_id: id,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::Success],
    }))
    .expect("suback");
    assert_eq!(h.session.subscriptions().len(), 1);
    let id = h.session.unsubscribe(&[MqttString::from("a")]);
    let sent = h.sent();
    assert!(matches!(sent.last(), Some(Packet::Unsubscribe(u)) if u.packet_id == id));
    let unsuback = UnsubAck {
        packet_id: id,
        properties: Properties::default(),
        reason_codes: Vec::new(),
    };
    h.recv(Packet::UnsubAck(unsuback)).expect("unsuback");
    assert!(h.session.subscriptions().is_empty());
}

/// Connected v3.1.1 persistent session with: QoS 1 id 1 sent, QoS 2 id 2 released (PUBREL
/// sent), QoS 2 id 3 sent, an active subscription "s" and a pending subscription "p".
fn harness_with_flows_in_progress(clean_start: bool) -> Harness {
    let mut h = Harness::connected(v311().clean_start(clean_start), ok_connack());
    let sid = h.session.subscribe(&[sub("s", QoS::AtLeastOnce)]);
    h.recv(Packet::SubAck(SubAck {
        packet_id: sid,
        properties: Properties::default(),
        reason_codes: vec![ReasonCode::GrantedQoS1],
    }))
    .expect("suback");
    h.session.next_packet_id = 1;
    assert_eq!(h.publish("q1", QoS::AtLeastOnce).expect("ok"), Some(1));
    assert_eq!(h.publish("q2", QoS::ExactlyOnce).expect("ok"), Some(2));
    assert_eq!(h.publish("q2b", QoS::ExactlyOnce).expect("ok"), Some(3));
    h.recv(Packet::PubRec(ack_packet(2))).expect("pubrec");
    let pending = h.session.subscribe(&[sub("p", QoS::AtMostOnce)]);
    assert_eq!(pending, 4);
    h.sent();
    h.events();
    h
}

#[test]
fn reconnect_with_session_present_resends_with_dup() {
    let mut h = harness_with_flows_in_progress(false);
    h.session.reset_for_reconnect();
    assert_eq!(h.session.state(), SessionState::Disconnected);
    h.session.start(h.now);
    let sent = h.sent();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(!connect.clean_start);
    let mut connack = ok_connack();
    connack.session_present = true;
    h.recv(Packet::ConnAck(connack.clone())).expect("connack");
    assert_eq!(h.events(), vec![Event::Reconnected(connack)]);
    let sent = h.sent();
    // The pending SUBSCRIBE first, then the flows in their original order, DUP set.
    assert!(
        matches!(&sent[0], Packet::Subscribe(s) if s.packet_id == 4),
        "{sent:?}"
    );
    assert_eq!(publish_ids(&sent), vec![(1, true), (3, true)]);
    assert!(sent.contains(&Packet::PubRel(ack_packet(2))));
    assert_eq!(
        sent.len(),
        4,
        "no re-subscription when the session is present"
    );
    assert_eq!(h.session.stats().resends, 3);
    // The flows complete normally.
    h.recv(Packet::PubAck(ack_packet(1))).expect("puback");
    h.recv(Packet::PubComp(ack_packet(2))).expect("pubcomp");
    assert_eq!(h.events(), vec![Event::PubAck(1), Event::PubComp(2)]);
}

#[test]
fn reconnect_without_session_republishes_and_resubscribes() {
    let mut h = harness_with_flows_in_progress(true);
    h.session.reset_for_reconnect();
    h.session.start(h.now);
    let sent = h.sent();
    let [Packet::Connect(connect)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(
        connect.clean_start,
        "3.1.1 keeps the configured clean session"
    );
    h.recv(Packet::ConnAck(ok_connack())).expect("connack");
    let events = h.events();
    // The released QoS 2 message reached the server: complete.
    assert_eq!(events[0], Event::PubComp(2));
    assert!(matches!(events[1], Event::Reconnected(_)));
    let sent = h.sent();
    assert_eq!(
        publish_ids(&sent),
        vec![(1, false), (3, false)],
        "fresh, DUP = 0"
    );
    let subscribes: Vec<Vec<&str>> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::Subscribe(s) => {
                Some(s.subscriptions.iter().map(|s| s.filter.as_str()).collect())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        subscribes,
        vec![vec!["p"], vec!["s"]],
        "pending, then re-subscription"
    );
    assert_eq!(h.session.stats().resubscribes, 1);
    assert!(!sent.iter().any(|p| matches!(p, Packet::PubRel(_))));
}

#[test]
fn qos0_waits_across_a_reconnect_and_acks_do_not() {
    let mut h = Harness::connected(v311(), ok_connack());
    h.publish("zero", QoS::AtMostOnce).expect("ok");
    h.recv(Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from("in"),
        packet_id: 4,
        ..Publish::default()
    }))
    .expect("publish");
    h.session.reset_for_reconnect();
    h.session.start(h.now);
    h.sent();
    h.recv(Packet::ConnAck(ok_connack())).expect("connack");
    let sent = h.sent();
    assert_eq!(publish_ids(&sent), vec![(0, false)]);
    assert_eq!(
        sent.len(),
        1,
        "the old PUBACK belongs to the old connection: {sent:?}"
    );
}

#[test]
fn incoming_topic_aliases_are_resolved_and_bounded() {
    let mut options = v5();
    options.properties.topic_alias_maximum = Some(2);
    let mut h = Harness::connected(options, ok_connack());
    let mut first = Publish {
        topic: MqttString::from("long/topic"),
        ..Publish::default()
    };
    first.properties.topic_alias = Some(2);
    h.recv(Packet::Publish(first)).expect("sets alias");
    let mut second = Publish::default();
    second.properties.topic_alias = Some(2);
    h.recv(Packet::Publish(second)).expect("uses alias");
    let events = h.events();
    let Event::Publish(resolved) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(resolved.topic.as_str(), "long/topic");
    let mut unknown = Publish::default();
    unknown.properties.topic_alias = Some(1);
    assert!(matches!(
        h.recv(Packet::Publish(unknown)),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn topic_alias_above_our_maximum_is_a_protocol_error() {
    let mut h = Harness::connected(v5(), ok_connack());
    let mut publish = Publish {
        topic: MqttString::from("t"),
        ..Publish::default()
    };
    publish.properties.topic_alias = Some(1);
    assert!(matches!(
        h.recv(Packet::Publish(publish)),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn disconnect_is_sent_then_the_session_is_closed() {
    let mut h = Harness::connected(v5(), ok_connack());
    h.publish("t", QoS::AtMostOnce).expect("ok");
    h.session.disconnect();
    assert!(matches!(
        h.publish("t", QoS::AtMostOnce),
        Err(ClientError::ConnectionClosed)
    ));
    let sent = h.sent();
    assert!(
        matches!(sent.as_slice(), [Packet::Publish(_), Packet::Disconnect(_)]),
        "{sent:?}"
    );
    assert_eq!(h.session.state(), SessionState::Disconnected);
    assert_eq!(h.events(), vec![Event::Disconnected(None)]);
}

#[test]
fn server_disconnect_ends_the_session() {
    let mut h = Harness::connected(v5(), ok_connack());
    let disconnect = Disconnect {
        reason_code: ReasonCode::ServerShuttingDown,
        properties: Properties::default(),
    };
    h.recv(Packet::Disconnect(disconnect.clone()))
        .expect("disconnect");
    assert_eq!(h.session.state(), SessionState::Disconnected);
    assert_eq!(h.events(), vec![Event::Disconnected(Some(disconnect))]);
}

#[test]
fn transmit_queue_is_bounded() {
    let mut options = v311();
    options.transmit_queue_max = 3;
    let mut h = Harness::connected(options, ok_connack());
    for _ in 0..3 {
        h.publish("t", QoS::AtMostOnce).expect("room");
    }
    assert!(matches!(
        h.publish("t", QoS::AtMostOnce),
        Err(ClientError::TransmitQueueFull)
    ));
    assert_eq!(h.session.stats().transmit_queue_full, 1);
    assert_eq!(h.sent().len(), 3);
    h.publish("t", QoS::AtMostOnce).expect("room again");
}

#[test]
fn retain_handling_options_are_passed_through() {
    let mut h = Harness::connected(v5(), ok_connack());
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    h.session.subscribe(&[(MqttString::from("x"), options)]);
    let sent = h.sent();
    let [Packet::Subscribe(subscribe)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(subscribe.subscriptions[0].options, options);
}

// ---- through the codec: bytes in, bytes out ----

/// Decodes every frame the client wrote, as the server would.
fn decode_all(buf: &mut BytesMut, version: ProtocolVersion) -> Vec<Packet> {
    let mut packets = Vec::new();
    while let Some(packet) = codec::decode(buf, version, u32::MAX).expect("client bytes decode") {
        packets.push(packet);
    }
    assert!(buf.is_empty(), "trailing bytes");
    packets
}

fn encode(packets: &[Packet], version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    for packet in packets {
        packet.encode(version, &mut out).expect("encodes");
    }
    out
}

#[test]
fn poll_transmit_batches_frames_into_one_buffer() {
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let mut h = Harness::new(v311().protocol(version));
        h.session.start(h.now);
        let mut wire = BytesMut::new();
        h.session.poll_transmit(&mut wire);
        let sent = decode_all(&mut wire, version);
        assert!(matches!(sent.as_slice(), [Packet::Connect(c)] if c.protocol_version == version));
        let mut input = encode(&[Packet::ConnAck(ok_connack())], version);
        h.session.handle_input(&mut input, h.now).expect("connack");
        assert!(input.is_empty());
        for _ in 0..10 {
            h.publish("batch", QoS::AtLeastOnce).expect("room");
        }
        h.session.poll_transmit(&mut wire);
        let sent = decode_all(&mut wire, version);
        assert_eq!(sent.len(), 10, "{version:?}");
        assert_eq!(
            publish_ids(&sent),
            (1..=10).map(|id| (id, false)).collect::<Vec<_>>()
        );
    }
}

#[test]
fn handle_input_waits_for_whole_frames() {
    let mut h = Harness::new(v5());
    h.session.start(h.now);
    h.sent();
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from("in/t"),
        packet_id: 3,
        payload: Bytes::from_static(b"0123456789"),
        ..Publish::default()
    };
    let wire = encode(
        &[
            Packet::ConnAck(ok_connack()),
            Packet::Publish(publish.clone()),
        ],
        ProtocolVersion::V5,
    );
    // Feed one byte at a time: nothing is lost or decoded early.
    let mut input = BytesMut::new();
    for byte in wire.iter() {
        input.extend_from_slice(&[*byte]);
        h.session
            .handle_input(&mut input, h.now)
            .expect("partial input is fine");
    }
    assert!(input.is_empty());
    let events = h.events();
    assert!(matches!(events[0], Event::Connected(_)));
    assert_eq!(events[1], Event::Publish(publish));
    let mut out = BytesMut::new();
    h.session.poll_transmit(&mut out);
    assert_eq!(
        decode_all(&mut out, ProtocolVersion::V5),
        vec![Packet::PubAck(ack_packet(3))]
    );
}

#[test]
fn handle_input_stops_at_the_event_limit() {
    let mut options = v311();
    options.event_queue_max = 2;
    let mut h = Harness::connected(options, ok_connack());
    let publishes: Vec<Packet> = (0..5)
        .map(|i| {
            Packet::Publish(Publish {
                topic: MqttString::from(format!("t/{i}")),
                ..Publish::default()
            })
        })
        .collect();
    let mut input = encode(&publishes, ProtocolVersion::V3_1_1);
    h.session.handle_input(&mut input, h.now).expect("ok");
    assert_eq!(h.events().len(), 2);
    assert!(!input.is_empty(), "the rest waits in the caller's buffer");
    h.session.handle_input(&mut input, h.now).expect("ok");
    h.session.handle_input(&mut input, h.now).expect("ok");
    assert_eq!(h.events().len(), 2);
    h.session.handle_input(&mut input, h.now).expect("ok");
    assert_eq!(h.events().len(), 1);
    assert!(input.is_empty());
}

#[test]
fn garbage_from_the_server_is_a_decode_error() {
    let mut h = Harness::connected(v311(), ok_connack());
    // Packet type 0 is reserved.
    let mut input = BytesMut::from(&[0x00u8, 0x00][..]);
    assert!(matches!(
        h.session.handle_input(&mut input, h.now),
        Err(ClientError::Decode(_))
    ));
    assert_eq!(h.session.state(), SessionState::Disconnected);
}

#[test]
fn incoming_packets_over_our_maximum_are_refused() {
    let mut options = v5();
    options.max_packet_size = 64;
    let mut h = Harness::connected(options, ok_connack());
    let big = Packet::Publish(Publish {
        topic: MqttString::from("t"),
        payload: Bytes::from(vec![b'x'; 100]),
        ..Publish::default()
    });
    let mut input = encode(&[big], ProtocolVersion::V5);
    assert!(matches!(
        h.session.handle_input(&mut input, h.now),
        Err(ClientError::Decode(_))
    ));
}

#[test]
fn server_maximum_packet_size_is_honoured() {
    let properties = Properties::from(MoreProperties {
        maximum_packet_size: Some(50),
        ..MoreProperties::default()
    });
    let mut h = Harness::connected(v5(), connack_with(properties));
    let result = h.session.publish(
        MqttString::from("t"),
        Bytes::from(vec![0u8; 60]),
        QoS::AtLeastOnce,
        false,
        h.now,
    );
    assert!(
        matches!(result, Err(ClientError::PacketTooLarge { max: 50, .. })),
        "{result:?}"
    );
    assert_eq!(
        h.session.inflight_len(),
        0,
        "a refused call changes nothing"
    );
    let small = h.session.publish(
        MqttString::from("t"),
        Bytes::from(vec![0u8; 20]),
        QoS::AtLeastOnce,
        false,
        h.now,
    );
    assert!(small.is_ok());
    let mut out = BytesMut::new();
    h.session.poll_transmit(&mut out);
    assert!(out.len() <= 50);
}

#[test]
fn outgoing_topic_aliases_respect_both_maximums_and_reset_per_connection() {
    let mut options = v5();
    options.topic_alias_outgoing_max = 5;
    let properties = Properties::from(MoreProperties {
        topic_alias_maximum: Some(2),
        ..MoreProperties::default()
    });
    let mut h = Harness::connected(options, connack_with(properties.clone()));
    for topic in ["a", "a", "b", "c", "a", "b"] {
        h.publish(topic, QoS::AtMostOnce).expect("ok");
    }
    h.publish("c", QoS::AtLeastOnce).expect("ok");
    let wire: Vec<(String, Option<u16>)> = h
        .sent()
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.as_str().to_owned(), p.properties.topic_alias)),
            _ => None,
        })
        .collect();
    let expected = [
        ("a", Some(1)),
        ("", Some(1)),
        ("b", Some(2)),
        ("c", None),
        ("", Some(1)),
        ("", Some(2)),
        ("c", None),
    ];
    let expected: Vec<(String, Option<u16>)> =
        expected.iter().map(|(t, a)| (t.to_string(), *a)).collect();
    assert_eq!(wire, expected);
    // A new connection starts without aliases ([MQTT-3.3.2-7]); the resent QoS 1 message
    // carries its full topic.
    h.session.reset_for_reconnect();
    h.session.start(h.now);
    h.sent();
    h.recv(Packet::ConnAck(connack_with(properties)))
        .expect("connack");
    let sent = h.sent();
    let [Packet::Publish(resent)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(resent.topic.as_str(), "c");
    assert_eq!(resent.properties.topic_alias, Some(1));
}

#[test]
fn no_outgoing_aliases_when_the_server_allows_none() {
    let mut options = v5();
    options.topic_alias_outgoing_max = 5;
    let mut h = Harness::connected(options, ok_connack());
    h.publish("a", QoS::AtMostOnce).expect("ok");
    h.publish("a", QoS::AtMostOnce).expect("ok");
    for packet in h.sent() {
        let Packet::Publish(publish) = packet else {
            panic!("{packet:?}")
        };
        assert_eq!(publish.topic.as_str(), "a");
        assert_eq!(publish.properties.topic_alias, None);
    }
}

// ---- properties: any server input, no panic, invariants kept ----

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A server packet from a small alphabet, with packet ids in a small range so that they
    /// often collide with ours.
    fn server_packet() -> impl Strategy<Value = Packet> {
        let id = 1u16..8;
        prop_oneof![
            id.clone().prop_map(|id| Packet::PubAck(ack_packet(id))),
            id.clone().prop_map(|id| Packet::PubRec(ack_packet(id))),
            id.clone().prop_map(|id| Packet::PubRel(ack_packet(id))),
            id.clone().prop_map(|id| Packet::PubComp(ack_packet(id))),
            (id.clone(), 0u8..3).prop_map(|(id, qos)| Packet::Publish(Publish {
                qos: QoS::from_u8(qos).unwrap_or_default(),
                packet_id: if qos == 0 { 0 } else { id },
                topic: MqttString::from("p/t"),
                ..Publish::default()
            })),
            id.clone().prop_map(|id| Packet::SubAck(SubAck {
                packet_id: id,
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::GrantedQoS1],
            })),
            Just(Packet::PingResp),
        ]
    }

    #[derive(Clone, Debug)]
    enum Step {
        Server(Packet),
        Publish(u8),
        Subscribe,
        Tick(u64),
        Reconnect(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => server_packet().prop_map(Step::Server),
            3 => (0u8..3).prop_map(Step::Publish),
            1 => Just(Step::Subscribe),
            1 => (0u64..15).prop_map(Step::Tick),
            1 => any::<bool>().prop_map(Step::Reconnect),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
                let mut h = Harness::connected(v311().protocol(version), ok_connack());
                let mut input = BytesMut::from(&bytes[..]);
                let _ = h.session.handle_input(&mut input, h.now);
                h.sent();
                h.events();
            }
        }

        #[test]
        fn random_flows_keep_the_window(steps in proptest::collection::vec(step(), 1..80)) {
            let window = 3;
            let mut h = Harness::connected(v5().inflight_window(window), ok_connack());
            let mut on_wire: HashSet<u16> = HashSet::new();
            for step in steps {
                match step {
                    Step::Server(packet) => {
                        if h.recv(packet).is_err() {
                            h.session.reset_for_reconnect();
                            h.session.start(h.now);
                            h.sent();
                            let _ = h.recv(Packet::ConnAck(ok_connack()));
                            on_wire.clear();
                        }
                    }
                    Step::Publish(qos) => {
                        let qos = QoS::from_u8(qos).unwrap_or_default();
                        let result = h.publish("r/t", qos);
                        if qos != QoS::AtMostOnce && h.session.inflight_len() > usize::from(window) {
                            prop_assert!(false, "window exceeded");
                        }
                        if let Err(e) = result {
                            prop_assert!(matches!(e, ClientError::WindowFull), "{e}");
                        }
                    }
                    Step::Subscribe => {
                        h.session.subscribe(&[sub("s/#", QoS::AtLeastOnce)]);
                    }
                    Step::Tick(secs) => {
                        h.advance(secs);
                        if h.session.handle_timeout(h.now).is_err() {
                            h.session.reset_for_reconnect();
                            h.session.start(h.now);
                            h.sent();
                            let _ = h.recv(Packet::ConnAck(ok_connack()));
                            on_wire.clear();
                        }
                    }
                    Step::Reconnect(session_present) => {
                        h.session.reset_for_reconnect();
                        h.session.start(h.now);
                        h.sent();
                        let connack = ConnAck { session_present, ..ok_connack() };
                        // A session present after a clean start is refused; try again clean.
                        if h.recv(Packet::ConnAck(connack)).is_err() {
                            h.session.reset_for_reconnect();
                            h.session.start(h.now);
                            h.sent();
                            let _ = h.recv(Packet::ConnAck(ok_connack()));
                        }
                        on_wire.clear();
                    }
                }
                for packet in h.sent() {
                    if let Packet::Publish(publish) = &packet {
                        if publish.qos != QoS::AtMostOnce {
                            on_wire.insert(publish.packet_id);
                        }
                    }
                }
                for event in h.events() {
                    if let Event::PubAck(id) | Event::PubComp(id) = event {
                        on_wire.remove(&id);
                    }
                }
                prop_assert!(h.session.on_wire <= usize::from(window));
                prop_assert!(h.session.inflight_len() <= usize::from(window));
                prop_assert!(on_wire.len() <= usize::from(window), "{on_wire:?}");
            }
        }
    }
}

// ---- enhanced authentication against the crate's SCRAM-SHA-256 server ----

mod enhanced_auth {
    use super::*;
    use crate::auth::{
        AuthStep, Authenticator, ScramCredentials, ScramSha256Authenticator, ScramUserStore,
        SCRAM_ITERATIONS_MIN, SCRAM_SHA_256,
    };
    use crate::client::ScramSha256Auth;
    use crate::codec::Auth;

    fn server() -> ScramSha256Authenticator {
        let mut users = ScramUserStore::new();
        let credentials =
            ScramCredentials::generate("secret", SCRAM_ITERATIONS_MIN).expect("credentials");
        users.insert("alice", credentials);
        ScramSha256Authenticator::new(users).expect("server")
    }

    fn auth_properties(data: Option<Vec<u8>>) -> Properties {
        let mut properties = Properties::new();
        properties.authentication_method = Some(MqttString::from(SCRAM_SHA_256));
        properties.authentication_data = data.map(Bytes::from);
        properties
    }

    /// Runs CONNECT / AUTH / AUTH through the server; returns the server's last step.
    fn exchange(h: &mut Harness, server: &ScramSha256Authenticator) -> AuthStep {
        h.session.start(h.now);
        let sent = h.sent();
        let [Packet::Connect(connect)] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        assert_eq!(
            connect
                .properties
                .authentication_method
                .as_ref()
                .map(|m| m.as_str()),
            Some(SCRAM_SHA_256)
        );
        let step = server.start("c1", connect.properties.authentication_data.as_deref());
        let AuthStep::Continue { data, state } = step else {
            panic!("{step:?}")
        };
        h.recv(Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: auth_properties(Some(data)),
        }))
        .expect("server-first");
        let sent = h.sent();
        let [Packet::Auth(answer)] = sent.as_slice() else {
            panic!("{sent:?}")
        };
        assert_eq!(answer.reason_code, ReasonCode::ContinueAuthentication);
        assert_eq!(
            answer
                .properties
                .authentication_method
                .as_ref()
                .map(|m| m.as_str()),
            Some(SCRAM_SHA_256),
            "[MQTT-4.12.0-5] same method"
        );
        server.continue_auth(state, answer.properties.authentication_data.as_deref())
    }

    fn connack_after(step: AuthStep) -> ConnAck {
        match step {
            AuthStep::Success { data, .. } => connack_with(auth_properties(data)),
            AuthStep::Failure(reason_code) => ConnAck {
                reason_code,
                ..ok_connack()
            },
            AuthStep::Continue { .. } => panic!("SCRAM takes one round trip"),
        }
    }

    #[test]
    fn scram_exchange_succeeds_and_restarts_on_reconnect() {
        let server = server();
        let session = ClientSession::new(v5())
            .with_enhanced_auth(Box::new(ScramSha256Auth::new("alice", "secret")));
        let mut h = Harness {
            session,
            now: Instant::now(),
        };
        let connack = connack_after(exchange(&mut h, &server));
        h.recv(Packet::ConnAck(connack))
            .expect("server-final verified");
        assert!(matches!(h.events().as_slice(), [Event::Connected(_)]));
        // A new connection runs a new exchange (fresh nonce).
        h.session.reset_for_reconnect();
        let connack = connack_after(exchange(&mut h, &server));
        h.recv(Packet::ConnAck(connack)).expect("again");
        assert!(matches!(h.events().as_slice(), [Event::Reconnected(_)]));
    }

    #[test]
    fn a_wrong_password_is_refused_by_the_server() {
        let server = server();
        let session = ClientSession::new(v5())
            .with_enhanced_auth(Box::new(ScramSha256Auth::new("alice", "wrong")));
        let mut h = Harness {
            session,
            now: Instant::now(),
        };
        let connack = connack_after(exchange(&mut h, &server));
        let result = h.recv(Packet::ConnAck(connack));
        assert!(
            matches!(result, Err(ClientError::ConnectionRefused(code)) if code.is_error()),
            "{result:?}"
        );
    }

    #[test]
    fn a_server_that_cannot_prove_itself_is_refused() {
        let server = server();
        let session = ClientSession::new(v5())
            .with_enhanced_auth(Box::new(ScramSha256Auth::new("alice", "secret")));
        let mut h = Harness {
            session,
            now: Instant::now(),
        };
        let AuthStep::Success { .. } = exchange(&mut h, &server) else {
            panic!("the server accepts")
        };
        let forged = connack_with(auth_properties(Some(
            b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_vec(),
        )));
        let result = h.recv(Packet::ConnAck(forged));
        assert!(
            matches!(result, Err(ClientError::Authentication(_))),
            "{result:?}"
        );
        assert_eq!(h.session.state(), SessionState::Disconnected);
    }

    #[test]
    fn enhanced_auth_needs_mqtt_5() {
        let session = ClientSession::new(v311())
            .with_enhanced_auth(Box::new(ScramSha256Auth::new("alice", "secret")));
        let mut h = Harness {
            session,
            now: Instant::now(),
        };
        h.session.start(h.now);
        assert_eq!(h.session.poll_timeout(), Some(h.now));
        assert!(matches!(
            h.session.handle_timeout(h.now),
            Err(ClientError::InvalidArgument(_))
        ));
        assert!(h.sent().is_empty(), "no CONNECT goes out");
    }

    #[test]
    fn unsolicited_auth_is_a_protocol_error() {
        let mut h = Harness::new(v5());
        h.session.start(h.now);
        h.sent();
        let result = h.recv(Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: auth_properties(None),
        }));
        assert!(matches!(result, Err(ClientError::Protocol(_))));
    }
}

#[test]
fn requests_made_while_disconnected_are_bounded() {
    let mut options = v311();
    options.transmit_queue_max = 2;
    let mut h = Harness::new(options);
    h.session.start(h.now);
    h.sent();
    assert_ne!(h.session.subscribe(&[sub("a", QoS::AtMostOnce)]), 0);
    assert_ne!(h.session.subscribe(&[sub("b", QoS::AtMostOnce)]), 0);
    assert!(matches!(
        h.session.try_subscribe(&[sub("c", QoS::AtMostOnce)]),
        Err(ClientError::TransmitQueueFull)
    ));
}
