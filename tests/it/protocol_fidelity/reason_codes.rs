//! Item 1: each malformed-packet / protocol-error decision against the spec's wording, one case
//! per rule, checked on the wire (the DISCONNECT or CONNACK reason code an MQTT 5 client gets).
//!
//! The rule the codec follows (MQTT 5.0 section 1.2): a Malformed Packet (0x81) is "a control
//! packet that cannot be parsed according to this specification", plus whatever the spec names
//! malformed; a Protocol Error (0x82) is "an error that is detected after the packet has been
//! parsed", which covers every MUST whose consequence the spec leaves unnamed.

use super::bytes::*;
use crate::support::broker::*;
use shardmq::codec::ProtocolVersion::V5;
use shardmq::codec::ReasonCode::{self, MalformedPacket, ProtocolError, TopicAliasInvalid};

/// (rule, bytes sent after a successful MQTT 5 CONNECT, DISCONNECT reason code expected)
fn after_connect_cases() -> Vec<(&'static str, Vec<u8>, ReasonCode)> {
    let publish = |flags: u8, packet_id: &[u8], p: &[u8]| {
        frame(
            0x30 | flags,
            &[&str16(b"t")[..], packet_id, &props(p), b"x"].concat(),
        )
    };
    let subscribe = |p: &[u8], options: u8| {
        frame(
            0x82,
            &[&[0, 1][..], &props(p), &str16(b"a/b"), &[options]].concat(),
        )
    };
    vec![
        // 2.2.2.2: "an Identifier which is not valid for its packet type ... is a Malformed
        // Packet": Session Expiry Interval (0x11) on a PUBLISH, Topic Alias (0x23) on a SUBSCRIBE,
        // Receive Maximum (0x21) on a PUBACK, Will Delay Interval (0x18) on a DISCONNECT.
        (
            "2.2.2.2 Session Expiry Interval on PUBLISH",
            publish(0, &[], &[0x11, 0, 0, 0, 1]),
            MalformedPacket,
        ),
        (
            "2.2.2.2 Topic Alias on SUBSCRIBE",
            subscribe(&[0x23, 0, 1], 0),
            MalformedPacket,
        ),
        (
            "2.2.2.2 Receive Maximum on PUBACK",
            frame(0x40, &[0, 1, 0, 3, 0x21, 0, 1]),
            MalformedPacket,
        ),
        (
            "2.2.2.2 Will Delay Interval on DISCONNECT",
            frame(0xE0, &[0x00, 5, 0x18, 0, 0, 0, 1]),
            MalformedPacket,
        ),
        // 2.2.2.2: an unknown identifier.
        (
            "2.2.2.2 unknown property",
            publish(0, &[], &[0x7F, 0]),
            MalformedPacket,
        ),
        // 3.3.2.3.x: "It is a Protocol Error to include the ... more than once".
        (
            "3.3.2.3.3 Message Expiry Interval twice",
            publish(0, &[], &[0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 1]),
            ProtocolError,
        ),
        // [MQTT-2.2.1-3]: Packet Identifier 0 parses; no consequence named, so 0x82.
        (
            "[MQTT-2.2.1-3] PUBLISH packet id 0",
            publish(0x02, &[0, 0], &[]),
            ProtocolError,
        ),
        (
            "[MQTT-2.2.1-3] SUBSCRIBE packet id 0",
            frame(0x82, &[&[0, 0, 0][..], &str16(b"a"), &[0]].concat()),
            ProtocolError,
        ),
        // [MQTT-3.3.2-8] Topic Alias 0: 0x94, as Mosquitto.
        (
            "[MQTT-3.3.2-8] Topic Alias 0",
            publish(0, &[], &[0x23, 0, 0]),
            TopicAliasInvalid,
        ),
        // [MQTT-3.3.1-4]: QoS 3 "is a Malformed Packet".
        (
            "[MQTT-3.3.1-4] QoS 3",
            publish(0x06, &[0, 1], &[]),
            MalformedPacket,
        ),
        // [MQTT-2.1.3-1]: "If invalid flags are received it is a Malformed Packet".
        (
            "[MQTT-2.1.3-1] PINGREQ flags",
            vec![0xC1, 0x00],
            MalformedPacket,
        ),
        // [MQTT-3.8.3-5]: reserved subscription option bits: malformed.
        (
            "[MQTT-3.8.3-5] reserved option bits",
            subscribe(&[], 0xC0),
            MalformedPacket,
        ),
        // 3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3" / QoS 3.
        (
            "3.8.3.1 Retain Handling 3",
            subscribe(&[], 0x30),
            ProtocolError,
        ),
        ("3.8.3.1 Maximum QoS 3", subscribe(&[], 0x03), ProtocolError),
        // 3.8.2.1.2: "It is a Protocol Error if the Subscription Identifier has a value of 0".
        (
            "3.8.2.1.2 Subscription Identifier 0",
            subscribe(&[0x0B, 0], 0),
            ProtocolError,
        ),
        // [MQTT-3.8.3-4]: No Local on a shared subscription.
        (
            "[MQTT-3.8.3-4] No Local on $share",
            frame(
                0x82,
                &[&[0, 1, 0][..], &str16(b"$share/g/a"), &[0x04]].concat(),
            ),
            ProtocolError,
        ),
        // [MQTT-3.1.0-2]: a second CONNECT.
        (
            "[MQTT-3.1.0-2] second CONNECT",
            connect_v5(0x02, &[], "again", &[]),
            ProtocolError,
        ),
    ]
}

#[test]
fn each_rule_gets_its_reason_code_on_the_wire() {
    let broker = start_broker(1);
    let mut failures = Vec::new();
    for (i, (rule, bytes, expected)) in after_connect_cases().into_iter().enumerate() {
        let mut raw = Raw::connect(addr(&broker), V5, &format!("rule-{i}"));
        raw.send_bytes(&bytes);
        let got = disconnect_code(&mut raw);
        if got != Some(expected) {
            failures.push(format!("{rule}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// CONNECT-time rules: the CONNACK reason code.
#[test]
fn connect_rules_get_their_connack_code() {
    let broker = start_broker(1);
    let will = [&props(&[])[..], &str16(b"w"), &str16(b"m")].concat();
    let cases: Vec<(&str, Vec<u8>, ReasonCode)> = vec![
        // 2.2.2.2: Will Delay Interval (a Will property) among the CONNECT properties.
        (
            "2.2.2.2 Will Delay Interval on CONNECT",
            connect_v5(0x02, &[0x18, 0, 0, 0, 1], "c1", &[]),
            MalformedPacket,
        ),
        // 2.2.2.2: Topic Alias in the Will properties.
        (
            "2.2.2.2 Topic Alias in Will properties",
            connect_v5(
                0x06,
                &[],
                "c2",
                &[&props(&[0x23, 0, 1])[..], &str16(b"w"), &str16(b"m")].concat(),
            ),
            MalformedPacket,
        ),
        // [MQTT-3.1.2-3]: "If the reserved flag is not 0 it is a Malformed Packet".
        (
            "[MQTT-3.1.2-3] reserved flag",
            connect_v5(0x03, &[], "c3", &[]),
            MalformedPacket,
        ),
        // [MQTT-3.1.2-12]: Will QoS 3 "is a Malformed Packet".
        (
            "[MQTT-3.1.2-12] Will QoS 3",
            connect_v5(0x1E, &[], "c4", &will),
            MalformedPacket,
        ),
        // [MQTT-3.1.2-11] / [MQTT-3.1.2-13]: Will QoS / Will Retain without the Will Flag; no
        // consequence named, the packet parses: Protocol Error.
        (
            "[MQTT-3.1.2-11] Will QoS without Will Flag",
            connect_v5(0x0A, &[], "c5", &[]),
            ProtocolError,
        ),
        (
            "[MQTT-3.1.2-13] Will Retain without Will Flag",
            connect_v5(0x22, &[], "c6", &[]),
            ProtocolError,
        ),
        // 3.1.2.11.3: "It is a Protocol Error to include ... Receive Maximum ... value 0".
        (
            "3.1.2.11.3 Receive Maximum 0",
            connect_v5(0x02, &[0x21, 0, 0], "c7", &[]),
            ProtocolError,
        ),
        // 3.1.2.11.4: Maximum Packet Size 0.
        (
            "3.1.2.11.4 Maximum Packet Size 0",
            connect_v5(0x02, &[0x27, 0, 0, 0, 0], "c8", &[]),
            ProtocolError,
        ),
        // 3.1.2.11.10: Authentication Data without an Authentication Method.
        (
            "3.1.2.11.10 Authentication Data without Method",
            connect_v5(0x02, &[0x16, 0, 1, 0xAA], "c10", &[]),
            ProtocolError,
        ),
        // 3.1.2.11.7: Request Problem Information other than 0 or 1.
        (
            "3.1.2.11.7 Request Problem Information 2",
            connect_v5(0x02, &[0x17, 2], "c9", &[]),
            ProtocolError,
        ),
    ];
    let mut failures = Vec::new();
    for (rule, bytes, expected) in cases {
        let got = connack_code(addr(&broker), V5, &bytes);
        if got != expected {
            failures.push(format!("{rule}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
