//! One test per malformed-packet or protocol-error rule of MQTT 3.1, 3.1.1 and 5.0: each builds a
//! frame that breaks exactly that rule and checks the typed error (its MQTT 5 reason code and the
//! rule it names), so removing the check makes the test fail.

use crate::support::frames::*;
use bytes::BytesMut;
use shardmq::codec::{decode, DecodeError, Packet, ProtocolVersion, ReasonCode};

use ProtocolVersion::{V3_1, V3_1_1, V5};
use ReasonCode::{
    MalformedPacket, PacketTooLarge, ProtocolError, TopicFilterInvalid, TopicNameInvalid,
};

const ALL: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

// ---- Fixed header and framing -------------------------------------------------------------

#[test]
fn reserved_packet_type_0() {
    for v in ALL {
        assert_rejected(&[0x00, 0x00], v, MalformedPacket, "packet type 0");
    }
}

#[test]
fn auth_before_mqtt_5() {
    for v in [V3_1, V3_1_1] {
        assert_rejected(&[0xF0, 0x00], v, MalformedPacket, "packet type 15");
    }
}

#[test]
fn reserved_fixed_header_flags() {
    // [MQTT-2.1.3-1]: every packet type but PUBLISH, PUBREL, SUBSCRIBE and UNSUBSCRIBE has flags 0.
    let cases: &[&[u8]] = &[
        &[0x11, 0x00],
        &[0x21, 0x02, 0x00, 0x00],
        &[0x48, 0x02, 0x00, 0x01],
        &[0x54, 0x02, 0x00, 0x01],
        &[0x72, 0x02, 0x00, 0x01],
        &[0x91, 0x03, 0x00, 0x01, 0x00],
        &[0xB2, 0x02, 0x00, 0x01],
        &[0xC1, 0x00],
        &[0xD8, 0x00],
        &[0xE2, 0x00],
    ];
    for v in [V3_1_1, V5] {
        for bytes in cases {
            assert_rejected(bytes, v, MalformedPacket, "[MQTT-2.1.3-1]");
        }
    }
    assert_rejected(&[0xF1, 0x00], V5, MalformedPacket, "[MQTT-2.1.3-1]");
}

#[test]
fn pubrel_subscribe_unsubscribe_flags_must_be_0010() {
    for v in [V3_1_1, V5] {
        assert_rejected(
            &[0x60, 0x02, 0x00, 0x01],
            v,
            MalformedPacket,
            "[MQTT-3.6.1-1]",
        );
        assert_rejected(
            &[0x63, 0x02, 0x00, 0x01],
            v,
            MalformedPacket,
            "[MQTT-3.6.1-1]",
        );
        let subscribe_body = [&[0x00, 0x01][..], &str16(b"a"), &[0x00]].concat();
        assert_rejected(
            &frame(0x80, &subscribe_body),
            v,
            MalformedPacket,
            "[MQTT-3.8.1-1]",
        );
        let unsubscribe_body = [&[0x00, 0x01][..], &str16(b"a")].concat();
        assert_rejected(
            &frame(0xA0, &unsubscribe_body),
            v,
            MalformedPacket,
            "[MQTT-3.10.1-1]",
        );
    }
    // MQTT 3.1 sent these with QoS 1 and the DUP flag on retransmission.
    assert_accepted(&[0x6A, 0x02, 0x00, 0x01], V3_1);
    assert_rejected(
        &[0x6A, 0x02, 0x00, 0x01],
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.6.1-1]",
    );
}

#[test]
fn publish_qos_3() {
    for v in ALL {
        assert_rejected(
            &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
            v,
            MalformedPacket,
            "[MQTT-3.3.1-4]",
        );
    }
}

#[test]
fn publish_dup_with_qos_0() {
    for v in [V3_1_1, V5] {
        assert_rejected(
            &[0x38, 0x03, 0x00, 0x01, b't'],
            v,
            MalformedPacket,
            "[MQTT-3.3.1-2]",
        );
    }
}

#[test]
fn first_byte_is_checked_before_the_length() {
    // The error comes as soon as the first byte is there, before any length byte.
    let mut buf = BytesMut::from(&[0x36][..]);
    assert!(decode(&mut buf, V3_1_1, 1024).is_err());
}

#[test]
fn remaining_length_over_four_bytes() {
    for v in ALL {
        assert_rejected(
            &[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            v,
            MalformedPacket,
            "four bytes",
        );
    }
}

#[test]
fn remaining_length_not_minimal() {
    for v in ALL {
        assert_rejected(&[0xC0, 0x80, 0x00], v, MalformedPacket, "[MQTT-1.5.5-1]");
    }
}

#[test]
fn oversize_rejected_from_the_header_alone() {
    // A header announcing 256 MB: rejected with 5 bytes buffered, nothing allocated or consumed.
    let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F][..]);
    let capacity_before = buf.capacity();
    let result = decode(&mut buf, V3_1_1, 1024 * 1024);
    assert_eq!(
        result,
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024 * 1024
        })
    );
    assert_eq!(result.unwrap_err().reason_code(), PacketTooLarge);
    assert_eq!(buf.len(), 5);
    assert_eq!(buf.capacity(), capacity_before);
}

#[test]
fn maximum_packet_size_counts_the_whole_frame() {
    // PINGREQ is 2 bytes: allowed at 2, too large at 1.
    let mut buf = BytesMut::from(&[0xC0, 0x00][..]);
    assert_eq!(
        decode(&mut buf.clone(), V5, 1),
        Err(DecodeError::PacketTooLarge { size: 2, max: 1 })
    );
    assert_eq!(decode(&mut buf, V5, 2), Ok(Some(Packet::PingReq)));
    // A PUBLISH of 10 bytes.
    let bytes = frame(0x30, &[&str16(b"t")[..], b"abcde"].concat());
    assert_eq!(bytes.len(), 10);
    assert!(matches!(
        decode(&mut BytesMut::from(&bytes[..]), V3_1_1, 9),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    ));
    assert!(decode(&mut BytesMut::from(&bytes[..]), V3_1_1, 10).is_ok());
}

#[test]
fn incomplete_frames_consume_nothing() {
    for bytes in [
        &[][..],
        &[0x30],
        &[0x30, 0x80],
        &[0x30, 0x05, 0x00, 0x01, b't'],
    ] {
        let mut buf = BytesMut::from(bytes);
        assert_eq!(decode(&mut buf, V3_1_1, u32::MAX), Ok(None));
        assert_eq!(&buf[..], bytes);
    }
}

#[test]
fn body_shorter_than_its_fields() {
    for v in ALL {
        assert_rejected(&[0x40, 0x01, 0x00], v, MalformedPacket, "shorter");
        assert_rejected(&[0x30, 0x02, 0x00, 0x05], v, MalformedPacket, "shorter");
        assert_rejected(
            &[0x32, 0x04, 0x00, 0x01, b't', 0x00],
            v,
            MalformedPacket,
            "shorter",
        );
    }
    // A property list longer than the packet.
    assert_rejected(
        &[0x30, 0x04, 0x00, 0x01, b't', 0x05],
        V5,
        MalformedPacket,
        "shorter",
    );
    // A property value cut by the end of the property list.
    assert_rejected(
        &[0x30, 0x06, 0x00, 0x01, b't', 0x02, 0x02, 0x00],
        V5,
        MalformedPacket,
        "shorter",
    );
}

#[test]
fn trailing_bytes_inside_a_frame() {
    for v in ALL {
        assert_rejected(&[0xC0, 0x01, 0x00], v, MalformedPacket, "left over");
        assert_rejected(&[0xD0, 0x01, 0x00], v, MalformedPacket, "left over");
    }
    for v in [V3_1, V3_1_1] {
        assert_rejected(
            &[0x40, 0x03, 0x00, 0x01, 0x00],
            v,
            MalformedPacket,
            "left over",
        );
        assert_rejected(
            &[0xB0, 0x03, 0x00, 0x01, 0x00],
            v,
            MalformedPacket,
            "left over",
        );
        assert_rejected(&[0xE0, 0x01, 0x00], v, MalformedPacket, "left over");
        assert_rejected(
            &[0x20, 0x03, 0x00, 0x00, 0x00],
            v,
            MalformedPacket,
            "left over",
        );
    }
    // 5.0: bytes after the property list of an acknowledgement, DISCONNECT, AUTH, CONNACK.
    assert_rejected(
        &[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00],
        V5,
        MalformedPacket,
        "left over",
    );
    assert_rejected(
        &[0xE0, 0x03, 0x00, 0x00, 0x00],
        V5,
        MalformedPacket,
        "left over",
    );
    assert_rejected(
        &[0xF0, 0x03, 0x00, 0x00, 0x00],
        V5,
        MalformedPacket,
        "left over",
    );
    assert_rejected(
        &[0x20, 0x04, 0x00, 0x00, 0x00, 0x00],
        V5,
        MalformedPacket,
        "left over",
    );
    // CONNECT with a byte after the last payload field.
    let payload = [&str16(b"c")[..], &[0x00]].concat();
    assert_rejected(
        &connect(b"MQTT", 4, 0x02, None, &payload),
        V3_1_1,
        MalformedPacket,
        "left over",
    );
}

// ---- UTF-8 strings -------------------------------------------------------------------------

#[test]
fn ill_formed_utf8_in_strings() {
    let bad = [0xC3, 0x28];
    for v in ALL {
        // Topic name.
        assert_rejected(
            &frame(0x30, &str16(&bad)),
            v,
            MalformedPacket,
            "[MQTT-1.5.4-1]",
        );
        // Client identifier.
        let level = if v == V3_1 {
            3
        } else if v == V3_1_1 {
            4
        } else {
            5
        };
        let name: &[u8] = if v == V3_1 { b"MQIsdp" } else { b"MQTT" };
        let p = if v == V5 { Some(&[0x00][..]) } else { None };
        assert_rejected(
            &connect(name, level, 0x02, p, &str16(&bad)),
            v,
            MalformedPacket,
            "[MQTT-1.5.4-1]",
        );
        // Topic filter.
        let body = [
            &[0x00, 0x01][..],
            if v == V5 { &[0x00] } else { &[] },
            &str16(&bad),
            &[0x00],
        ]
        .concat();
        assert_rejected(&frame(0x82, &body), v, MalformedPacket, "[MQTT-1.5.4-1]");
    }
    // An encoded surrogate half (U+D800) is ill-formed too.
    assert_rejected(
        &frame(0x30, &str16(&[0xED, 0xA0, 0x80])),
        V3_1_1,
        MalformedPacket,
        "[MQTT-1.5.4-1]",
    );
    // User name.
    let payload = [&str16(b"c")[..], &str16(&bad)].concat();
    assert_rejected(
        &connect(b"MQTT", 4, 0x82, None, &payload),
        V3_1_1,
        MalformedPacket,
        "[MQTT-1.5.4-1]",
    );
}

#[test]
fn null_character_in_strings() {
    for v in ALL {
        assert_rejected(
            &frame(0x30, &str16(b"a\0b")),
            v,
            MalformedPacket,
            "[MQTT-1.5.4-2]",
        );
    }
    // In a user property (5.0).
    let user = [&[0x26][..], &str16(b"k"), &str16(b"\0")].concat();
    let body = [&str16(b"t")[..], &props(&user)].concat();
    assert_rejected(&frame(0x30, &body), V5, MalformedPacket, "[MQTT-1.5.4-2]");
    // In a client identifier.
    assert_rejected(
        &connect(b"MQTT", 4, 0x02, None, &str16(b"c\0")),
        V3_1_1,
        MalformedPacket,
        "[MQTT-1.5.4-2]",
    );
}

// ---- CONNECT ---------------------------------------------------------------------------------

#[test]
fn connect_protocol_name() {
    assert_rejected(
        &connect(b"MQTX", 4, 0x02, None, &str16(b"c")),
        V3_1_1,
        ProtocolError,
        "[MQTT-3.1.2-1]",
    );
    assert_rejected(
        &connect(b"mqtt", 4, 0x02, None, &str16(b"c")),
        V3_1_1,
        ProtocolError,
        "[MQTT-3.1.2-1]",
    );
}

#[test]
fn connect_unsupported_level() {
    for (name, level) in [
        (&b"MQTT"[..], 3u8),
        (b"MQTT", 6),
        (b"MQIsdp", 4),
        (b"MQTT", 0),
    ] {
        let bytes = connect(name, level, 0x02, None, &str16(b"c"));
        assert_eq!(
            decode_one(&bytes, V3_1_1),
            Err(DecodeError::UnsupportedProtocolVersion(level))
        );
        assert_eq!(
            DecodeError::UnsupportedProtocolVersion(level).reason_code(),
            ReasonCode::UnsupportedProtocolVersion
        );
    }
}

#[test]
fn connect_reserved_flag() {
    assert_rejected(
        &connect(b"MQTT", 4, 0x03, None, &str16(b"c")),
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.1.2-3]",
    );
    assert_rejected(
        &connect(b"MQTT", 5, 0x03, Some(&[0]), &str16(b"c")),
        V5,
        MalformedPacket,
        "[MQTT-3.1.2-3]",
    );
    // MQTT 3.1 has no reserved-flag rule (issue 16): the bit is ignored.
    assert_accepted(&connect(b"MQIsdp", 3, 0x03, None, &str16(b"c")), V3_1);
}

#[test]
fn connect_will_qos_without_will_flag() {
    assert_rejected(
        &connect(b"MQTT", 4, 0x0A, None, &str16(b"c")),
        V3_1_1,
        ProtocolError,
        "[MQTT-3.1.2-13]",
    );
    assert_rejected(
        &connect(b"MQTT", 5, 0x12, Some(&[0]), &str16(b"c")),
        V5,
        ProtocolError,
        "[MQTT-3.1.2-11]",
    );
}

#[test]
fn connect_will_retain_without_will_flag() {
    assert_rejected(
        &connect(b"MQTT", 4, 0x22, None, &str16(b"c")),
        V3_1_1,
        ProtocolError,
        "[MQTT-3.1.2-15]",
    );
    assert_rejected(
        &connect(b"MQTT", 5, 0x22, Some(&[0]), &str16(b"c")),
        V5,
        ProtocolError,
        "[MQTT-3.1.2-13]",
    );
}

#[test]
fn connect_will_qos_3() {
    let will = [&str16(b"c")[..], &str16(b"t"), &str16(b"m")].concat();
    assert_rejected(
        &connect(b"MQTT", 4, 0x1E, None, &will),
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.1.2-14]",
    );
    let will5 = [&str16(b"c")[..], &[0x00], &str16(b"t"), &str16(b"m")].concat();
    assert_rejected(
        &connect(b"MQTT", 5, 0x1E, Some(&[0]), &will5),
        V5,
        MalformedPacket,
        "[MQTT-3.1.2-12]",
    );
}

#[test]
fn connect_password_without_user_name() {
    let payload = [&str16(b"c")[..], &str16(b"pw")].concat();
    assert_rejected(
        &connect(b"MQTT", 4, 0x42, None, &payload),
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.1.2-22]",
    );
    assert_rejected(
        &connect(b"MQIsdp", 3, 0x42, None, &payload),
        V3_1,
        MalformedPacket,
        "password without a user name",
    );
    // MQTT 5 allows a password without a user name.
    assert_accepted(&connect(b"MQTT", 5, 0x42, Some(&[0]), &payload), V5);
}

#[test]
fn connect_fields_missing_for_their_flags() {
    // User Name flag set, no user name.
    assert_rejected(
        &connect(b"MQTT", 4, 0x82, None, &str16(b"c")),
        V3_1_1,
        MalformedPacket,
        "shorter",
    );
    // Will flag set, no will topic.
    assert_rejected(
        &connect(b"MQTT", 4, 0x06, None, &str16(b"c")),
        V3_1_1,
        MalformedPacket,
        "shorter",
    );
}

#[test]
fn connect_will_topic_rules() {
    let will = |topic: &[u8]| [&str16(b"c")[..], &str16(topic), &str16(b"m")].concat();
    assert_rejected(
        &connect(b"MQTT", 4, 0x06, None, &will(b"a/+")),
        V3_1_1,
        TopicNameInvalid,
        "[MQTT-3.3.2-2]",
    );
    assert_rejected(
        &connect(b"MQTT", 4, 0x06, None, &will(b"")),
        V3_1_1,
        TopicNameInvalid,
        "[MQTT-4.7.3-1]",
    );
}

// ---- CONNACK ---------------------------------------------------------------------------------

#[test]
fn connack_reserved_flags() {
    assert_rejected(
        &[0x20, 0x02, 0x02, 0x00],
        V3_1_1,
        MalformedPacket,
        "3.2.2.1",
    );
    assert_rejected(
        &[0x20, 0x03, 0x80, 0x00, 0x00],
        V5,
        MalformedPacket,
        "3.2.2.1",
    );
}

#[test]
fn connack_reserved_return_code() {
    for v in [V3_1, V3_1_1] {
        assert_rejected(&[0x20, 0x02, 0x00, 0x06], v, MalformedPacket, "3.2.2.3");
    }
}

#[test]
fn connack_reason_code_not_for_connack() {
    for code in [0x01, 0x10, 0x8B, 0x8E] {
        assert_rejected(
            &[0x20, 0x03, 0x00, code, 0x00],
            V5,
            ProtocolError,
            "CONNACK",
        );
    }
}

#[test]
fn connack_session_present_with_error() {
    assert_rejected(
        &[0x20, 0x02, 0x01, 0x05],
        V3_1_1,
        ProtocolError,
        "[MQTT-3.2.2-4]",
    );
    assert_rejected(
        &[0x20, 0x03, 0x01, 0x87, 0x00],
        V5,
        ProtocolError,
        "[MQTT-3.2.2-6]",
    );
}

// ---- PUBLISH ---------------------------------------------------------------------------------

#[test]
fn publish_packet_id_0_with_qos() {
    for flags in [0x32, 0x34] {
        let body = [&str16(b"t")[..], &[0x00, 0x00]].concat();
        assert_rejected(
            &frame(flags, &body),
            V3_1_1,
            ProtocolError,
            "[MQTT-2.3.1-1]",
        );
        assert_rejected(&frame(flags, &body), V3_1, ProtocolError, "[MQTT-2.3.1-1]");
        let body5 = [&str16(b"t")[..], &[0x00, 0x00, 0x00]].concat();
        assert_rejected(&frame(flags, &body5), V5, ProtocolError, "[MQTT-2.2.1-3]");
    }
}

#[test]
fn publish_wildcards_in_topic_name() {
    for topic in [&b"a/+"[..], b"#", b"a/#", b"+", b"a+b"] {
        for v in ALL {
            let body = [&str16(topic)[..], if v == V5 { &[0x00] } else { &[] }].concat();
            assert_rejected(&frame(0x30, &body), v, TopicNameInvalid, "[MQTT-3.3.2-2]");
        }
    }
}

#[test]
fn publish_empty_topic_name() {
    for v in [V3_1, V3_1_1] {
        assert_rejected(
            &frame(0x30, &str16(b"")),
            v,
            TopicNameInvalid,
            "[MQTT-4.7.3-1]",
        );
    }
    assert_rejected(
        &frame(0x30, &[0x00, 0x00, 0x00]),
        V5,
        ProtocolError,
        "Topic Alias",
    );
    // 5.0: an empty topic name with a Topic Alias is fine.
    assert_accepted(&frame(0x30, &[0x00, 0x00, 0x03, 0x23, 0x00, 0x01]), V5);
}

// ---- Acknowledgements ------------------------------------------------------------------------

#[test]
fn acknowledgement_packet_id_0() {
    for v in ALL {
        for first in [0x40, 0x50, 0x62, 0x70, 0xB0] {
            assert_rejected(
                &[first, 0x02, 0x00, 0x00],
                v,
                ProtocolError,
                "Packet Identifier 0",
            );
        }
        assert_rejected(
            &[0x90, 0x03, 0x00, 0x00, 0x00],
            v,
            ProtocolError,
            "Packet Identifier 0",
        );
    }
}

#[test]
fn acknowledgement_reason_code_not_for_its_packet() {
    // PUBACK/PUBREC: no 0x92; PUBREL/PUBCOMP: only 0x00 and 0x92; undefined 0x03 anywhere.
    for first in [0x40, 0x50] {
        assert_rejected(
            &[first, 0x03, 0x00, 0x01, 0x92],
            V5,
            ProtocolError,
            "reason code",
        );
        assert_rejected(
            &[first, 0x03, 0x00, 0x01, 0x03],
            V5,
            ProtocolError,
            "reason code",
        );
    }
    for first in [0x62, 0x70] {
        assert_rejected(
            &[first, 0x03, 0x00, 0x01, 0x10],
            V5,
            ProtocolError,
            "reason code",
        );
        assert_rejected(
            &[first, 0x03, 0x00, 0x01, 0x80],
            V5,
            ProtocolError,
            "reason code",
        );
    }
}

// ---- SUBSCRIBE / SUBACK / UNSUBSCRIBE / UNSUBACK ---------------------------------------------

fn subscribe(v: ProtocolVersion, entries: &[(&[u8], u8)]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v == V5 {
        body.push(0x00);
    }
    for (filter, options) in entries {
        body.extend_from_slice(&str16(filter));
        body.push(*options);
    }
    frame(0x82, &body)
}

fn unsubscribe(v: ProtocolVersion, filters: &[&[u8]]) -> Vec<u8> {
    let mut body = vec![0x00, 0x01];
    if v == V5 {
        body.push(0x00);
    }
    for filter in filters {
        body.extend_from_slice(&str16(filter));
    }
    frame(0xA2, &body)
}

#[test]
fn subscribe_unsubscribe_packet_id_0() {
    let body = [&[0x00, 0x00][..], &str16(b"a"), &[0x00]].concat();
    assert_rejected(&frame(0x82, &body), V3_1_1, ProtocolError, "[MQTT-2.3.1-1]");
    let body5 = [&[0x00, 0x00, 0x00][..], &str16(b"a"), &[0x00]].concat();
    assert_rejected(&frame(0x82, &body5), V5, ProtocolError, "[MQTT-2.2.1-3]");
    let body = [&[0x00, 0x00][..], &str16(b"a")].concat();
    assert_rejected(&frame(0xA2, &body), V3_1_1, ProtocolError, "[MQTT-2.3.1-1]");
}

#[test]
fn subscribe_without_filters() {
    assert_rejected(
        &subscribe(V3_1_1, &[]),
        V3_1_1,
        ProtocolError,
        "[MQTT-3.8.3-3]",
    );
    assert_rejected(&subscribe(V3_1, &[]), V3_1, ProtocolError, "[MQTT-3.8.3-3]");
    assert_rejected(&subscribe(V5, &[]), V5, ProtocolError, "[MQTT-3.8.3-2]");
}

#[test]
fn subscribe_filter_without_options_byte() {
    let body = [&[0x00, 0x01][..], &str16(b"a")].concat();
    assert_rejected(&frame(0x82, &body), V3_1_1, MalformedPacket, "shorter");
}

#[test]
fn subscribe_reserved_bits_and_qos_3() {
    for v in [V3_1, V3_1_1] {
        assert_rejected(
            &subscribe(v, &[(b"a", 0x04)]),
            v,
            MalformedPacket,
            "[MQTT-3-8.3-4]",
        );
        assert_rejected(
            &subscribe(v, &[(b"a", 0x80)]),
            v,
            MalformedPacket,
            "[MQTT-3-8.3-4]",
        );
        assert_rejected(
            &subscribe(v, &[(b"a", 0x03)]),
            v,
            MalformedPacket,
            "[MQTT-3-8.3-4]",
        );
    }
    assert_rejected(
        &subscribe(V5, &[(b"a", 0x40)]),
        V5,
        MalformedPacket,
        "[MQTT-3.8.3-5]",
    );
    assert_rejected(
        &subscribe(V5, &[(b"a", 0x80)]),
        V5,
        MalformedPacket,
        "[MQTT-3.8.3-5]",
    );
    assert_rejected(
        &subscribe(V5, &[(b"a", 0x03)]),
        V5,
        ProtocolError,
        "Maximum QoS 3",
    );
    assert_rejected(
        &subscribe(V5, &[(b"a", 0x30)]),
        V5,
        ProtocolError,
        "Retain Handling 3",
    );
}

#[test]
fn subscribe_no_local_on_shared_subscription() {
    assert_rejected(
        &subscribe(V5, &[(b"$share/g/a", 0x04)]),
        V5,
        ProtocolError,
        "[MQTT-3.8.3-4]",
    );
    assert_accepted(&subscribe(V5, &[(b"$share/g/a", 0x00)]), V5);
    assert_accepted(&subscribe(V5, &[(b"a", 0x04)]), V5);
}

#[test]
fn invalid_topic_filters() {
    let cases: &[(&[u8], &str)] = &[
        (b"", "[MQTT-4.7.3-1]"),
        (b"a#", "[MQTT-4.7.1-1]"),
        (b"a/#/b", "[MQTT-4.7.1-1]"),
        (b"a+", "[MQTT-4.7.1-2]"),
        (b"a/+b/c", "[MQTT-4.7.1-2]"),
        (b"$share/g", "[MQTT-4.8.2-2]"),
        (b"$share/g/", "[MQTT-4.8.2-2]"),
        (b"$share//a", "[MQTT-4.8.2-1]"),
        (b"$share/g+/a", "[MQTT-4.8.2-2]"),
    ];
    for v in ALL {
        for (filter, rule) in cases {
            assert_rejected(
                &subscribe(v, &[(filter, 0x00)]),
                v,
                TopicFilterInvalid,
                rule,
            );
            assert_rejected(&unsubscribe(v, &[filter]), v, TopicFilterInvalid, rule);
        }
    }
}

#[test]
fn unsubscribe_without_filters() {
    for v in ALL {
        assert_rejected(&unsubscribe(v, &[]), v, ProtocolError, "[MQTT-3.10.3-2]");
    }
}

#[test]
fn suback_return_codes() {
    // 3.1.1: only 0x00, 0x01, 0x02, 0x80 ([MQTT-3.9.3-2]); 3.1 has no 0x80.
    assert_rejected(
        &[0x90, 0x03, 0x00, 0x01, 0x03],
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.9.3-2]",
    );
    assert_rejected(
        &[0x90, 0x03, 0x00, 0x01, 0x87],
        V3_1_1,
        MalformedPacket,
        "[MQTT-3.9.3-2]",
    );
    assert_rejected(
        &[0x90, 0x03, 0x00, 0x01, 0x80],
        V3_1,
        MalformedPacket,
        "[MQTT-3.9.3-2]",
    );
    assert_accepted(&[0x90, 0x03, 0x00, 0x01, 0x80], V3_1_1);
    // 5.0: 0x11 belongs to UNSUBACK only.
    assert_rejected(
        &[0x90, 0x04, 0x00, 0x01, 0x00, 0x11],
        V5,
        ProtocolError,
        "SUBACK",
    );
    for v in ALL {
        let body: &[u8] = if v == V5 {
            &[0x00, 0x01, 0x00]
        } else {
            &[0x00, 0x01]
        };
        assert_rejected(&frame(0x90, body), v, ProtocolError, "SUBACK without");
    }
}

#[test]
fn unsuback_reason_codes() {
    assert_rejected(
        &[0xB0, 0x04, 0x00, 0x01, 0x00, 0x01],
        V5,
        ProtocolError,
        "UNSUBACK",
    );
    assert_rejected(
        &[0xB0, 0x03, 0x00, 0x01, 0x00],
        V5,
        ProtocolError,
        "UNSUBACK without",
    );
}

// ---- DISCONNECT / AUTH -----------------------------------------------------------------------

#[test]
fn disconnect_and_auth_reason_codes() {
    for code in [0x01, 0x10, 0x18, 0x84, 0x92] {
        assert_rejected(&[0xE0, 0x01, code], V5, ProtocolError, "DISCONNECT");
    }
    for code in [0x04, 0x80, 0x87] {
        assert_rejected(&[0xF0, 0x01, code], V5, ProtocolError, "AUTH");
    }
}

// ---- MQTT 3.1 leniency (issue 16) -----------------------------------------------------------

/// MQTT 3.1's fixed header carries DUP, QoS and RETAIN on every packet ("not used" where they
/// mean nothing) and has no reserved-flag rule: a 3.1 peer setting them is not refused. QoS 3 on
/// a PUBLISH still is (there is no such QoS).
#[test]
fn mqtt_3_1_has_no_reserved_flag_rules() {
    for bytes in [
        &[0xC1, 0x00][..],
        &[0xC2, 0x00],
        &[0xE3, 0x00],
        &[0x42, 0x02, 0x00, 0x01],
        &[0x6A, 0x02, 0x00, 0x01],
        &[0x60, 0x02, 0x00, 0x01],
        &[0x38, 0x03, 0x00, 0x01, b't'],
    ] {
        assert_accepted(bytes, V3_1);
    }
    assert_rejected(
        &[0x36, 0x05, 0x00, 0x01, b't', 0x00, 0x01],
        V3_1,
        MalformedPacket,
        "[MQTT-3.3.1-4]",
    );
    // Will QoS and Will Retain without the Will Flag: no rule in 3.1, the bits are ignored.
    assert_accepted(&connect(b"MQIsdp", 3, 0x3A, None, &str16(b"c")), V3_1);
}
