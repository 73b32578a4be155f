//! MQTT 5 session, will, request/response and operator features over real TCP: Session Expiry
//! Interval raised on DISCONNECT (a protocol error), Request/Response properties forwarded
//! unchanged, Response Information, Server Keep Alive as a v5-only cap,
//! Server Reference (Use another server) and Reason Strings on DISCONNECT. Lowering the
//! Session Expiry Interval on DISCONNECT and the Will Delay Interval against session expiry are
//! tested on the simulated clock (`sim_timers.rs`).

// `Properties` keeps its rare properties behind DerefMut, so struct literals cannot name them.
#![allow(clippy::field_reassign_with_default)]

use crate::support::broker::*;
use bytes::Bytes;
use shardmq::broker::Config;
use shardmq::codec::{
    Disconnect, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS, ReasonCode,
};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn disconnect_with_expiry(expiry: u32) -> Packet {
    let mut properties = Properties::default();
    properties.session_expiry_interval = Some(expiry);
    Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::Success,
        properties,
    })
}

fn kept(client_id: &str, expiry: u32) -> shardmq::codec::Connect {
    let mut connect = connect_packet(V5, client_id, false);
    connect.properties.session_expiry_interval = Some(expiry);
    connect
}

/// [MQTT-3.14.2-2]: a Session Expiry Interval of 0 in CONNECT cannot become non-zero in
/// DISCONNECT: protocol error (DISCONNECT 0x82 from the server, with a Reason String).
#[test]
fn session_expiry_raised_from_zero_on_disconnect_is_protocol_error() {
    let broker = start_broker(1);
    let (mut raw, _) = Raw::connect_with(addr(&broker), kept("zero", 0));
    raw.send(&disconnect_with_expiry(30));
    let packets = raw.expect_closed();
    let disconnect = packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.clone()),
        _ => None,
    });
    let disconnect = disconnect.expect("the server answers with DISCONNECT");
    assert_eq!(disconnect.reason_code, ReasonCode::ProtocolError);
    let why = disconnect
        .properties
        .reason_string
        .clone()
        .expect("reason string");
    assert!(why.as_str().contains("MQTT-3.14.2-2"), "{why:?}");
}

/// Spec 4.10: Response Topic, Correlation Data, Payload Format Indicator, Content Type and
/// User Properties reach the subscriber unchanged, across shards; MQTT 3.1.1 subscribers get
/// the message without them.
#[test]
fn request_response_properties_forwarded_unchanged() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut responder = placer.raw_on(0, V5, "responder");
    responder.subscribe("rr/request", QoS::AtLeastOnce);
    let mut old = placer.raw_on(1, V4, "old-sub");
    old.subscribe("rr/request", QoS::AtLeastOnce);
    let mut requester = placer.raw_on(1, V5, "requester");
    let mut properties = Properties::default();
    properties.payload_format_indicator = Some(1);
    properties.response_topic = Some(MqttString::from("rr/response/requester"));
    properties.correlation_data = Some(Bytes::from_static(b"\x00\x01corr"));
    properties.content_type = Some(MqttString::from("application/json"));
    properties.user_properties = vec![
        (MqttString::from("k"), MqttString::from("v1")),
        (MqttString::from("k"), MqttString::from("v2")),
    ];
    requester.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttString::from("rr/request"),
        packet_id: 1,
        properties: properties.clone(),
        payload: Bytes::from_static(b"{}"),
    }));
    requester.expect_puback();
    let got = responder.receive_and_ack();
    assert_eq!(got.properties.payload_format_indicator, Some(1));
    assert_eq!(got.properties.response_topic, properties.response_topic);
    assert_eq!(got.properties.correlation_data, properties.correlation_data);
    assert_eq!(got.properties.content_type, properties.content_type);
    assert_eq!(
        got.properties.user_properties, properties.user_properties,
        "user properties in order [MQTT-3.3.2-18]"
    );
    assert_eq!(&old.receive_and_ack().payload[..], b"{}");
}

/// `--response-information PREFIX`: a client sending Request Response Information 1 gets
/// `{PREFIX}{client id}` in CONNACK; one that does not ask gets none (spec 3.1.2.11.7).
#[test]
fn response_information_when_requested_and_configured() {
    let broker = start_with(Config {
        response_information: Some("replies/".into()),
        ..config(1)
    });
    let mut asking = connect_packet(V5, "asker", true);
    asking.properties.request_response_information = Some(1);
    let (_a, connack) = Raw::connect_with(addr(&broker), asking);
    assert_eq!(
        connack
            .properties
            .response_information
            .as_ref()
            .map(|s| s.as_str()),
        Some("replies/asker")
    );
    let (_b, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "quiet", true));
    assert_eq!(connack.properties.response_information, None);
    let plain = start_broker(1);
    let mut asking = connect_packet(V5, "asker", true);
    asking.properties.request_response_information = Some(1);
    let (_c, connack) = Raw::connect_with(addr(&plain), asking);
    assert_eq!(
        connack.properties.response_information, None,
        "not configured"
    );
}

/// `--server-keep-alive 60` caps MQTT 5 clients with Server Keep Alive [MQTT-3.2.2-21] and
/// leaves MQTT 3.1.1 clients asking more connected (pending P4).
#[test]
fn server_keep_alive_caps_v5_only() {
    let broker = start_with(Config {
        server_keep_alive_secs: Some(60),
        ..config(1)
    });
    let mut connect = connect_packet(V5, "ka5", true);
    connect.keep_alive_secs = 120;
    let (_v5, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.properties.server_keep_alive, Some(60));
    let mut connect = connect_packet(V5, "ka5-low", true);
    connect.keep_alive_secs = 30;
    let (_low, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.properties.server_keep_alive, None);
    let mut connect = connect_packet(V4, "ka4", true);
    connect.keep_alive_secs = 120;
    let (mut v4, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    v4.ping();
}

/// `--server-reference HOST`: CONNACK 0x9C Use another server with the Server Reference
/// (spec 4.11); MQTT 3.1.1 clients get return code 3 (server unavailable).
#[test]
fn server_reference_moves_clients() {
    let broker = start_with(Config {
        server_reference: Some("other.example:1883".into()),
        ..config(1)
    });
    let (mut v5, connack) = Raw::connect_with(addr(&broker), connect_packet(V5, "moved", true));
    assert_eq!(connack.reason_code, ReasonCode::UseAnotherServer);
    assert_eq!(
        connack
            .properties
            .server_reference
            .as_ref()
            .map(|s| s.as_str()),
        Some("other.example:1883")
    );
    v5.expect_closed();
    let (mut v4, connack) = Raw::connect_with(addr(&broker), connect_packet(V4, "moved4", true));
    assert_eq!(connack.reason_code, ReasonCode::ServerUnavailable);
    v4.expect_closed();
}

/// A Reason String on a protocol-error DISCONNECT is left out when it would exceed the
/// client's Maximum Packet Size [MQTT-3.14.2-3].
#[test]
fn reason_string_left_out_over_client_maximum_packet_size() {
    let broker = start_broker(1);
    let mut connect = connect_packet(V5, "tiny", true);
    // 16 bytes: the default CONNACK fits (a smaller limit gets no CONNACK at all, issue 16).
    connect.properties.maximum_packet_size = Some(16);
    let (mut raw, _) = Raw::connect_with(addr(&broker), connect);
    raw.send(&disconnect_with_expiry(30));
    let packets = raw.expect_closed();
    let disconnect = packets.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.clone()),
        _ => None,
    });
    let disconnect = disconnect.expect("DISCONNECT without the string still fits");
    assert_eq!(disconnect.reason_code, ReasonCode::ProtocolError);
    assert_eq!(disconnect.properties.reason_string, None);
}

/// A refused subscription's SUBACK explains itself with a Reason String, unless the client
/// sent Request Problem Information 0 [MQTT-3.1.2-29].
#[test]
fn suback_reason_string_respects_request_problem_information() {
    let broker = start_with(Config {
        max_subscriptions_per_client: 1,
        ..config(1)
    });
    let options = shardmq::codec::SubscriptionOptions::default();
    let (mut raw, _) = Raw::connect_with(addr(&broker), connect_packet(V5, "why", true));
    raw.send(&subscribe_packet(1, &[("a", options), ("b", options)]));
    let suback = raw.expect_suback();
    assert_eq!(
        suback.reason_codes,
        vec![ReasonCode::Success, ReasonCode::QuotaExceeded]
    );
    let why = suback
        .properties
        .reason_string
        .clone()
        .expect("a reason string");
    assert!(
        why.as_str().contains("max_subscriptions_per_client"),
        "{why:?}"
    );

    let mut quiet = connect_packet(V5, "no-why", true);
    quiet.properties.request_problem_information = Some(0);
    let (mut raw, _) = Raw::connect_with(addr(&broker), quiet);
    raw.send(&subscribe_packet(1, &[("a", options), ("b", options)]));
    let suback = raw.expect_suback();
    assert_eq!(suback.reason_codes[1], ReasonCode::QuotaExceeded);
    assert_eq!(suback.properties.reason_string, None);
}
