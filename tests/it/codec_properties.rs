//! MQTT 5 properties: every property's wire type and round trip, which packet may carry which
//! (table 2-4, written out here independently of the codec's table), the duplicate rules, and the
//! value rules (zero values, 0/1 bytes).

use crate::support::frames::*;
use bytes::BytesMut;
use shardmq::codec::{
    Packet, Properties, PropertyContext, PropertyId, ProtocolVersion, Publish, ReasonCode,
};

use PropertyContext as C;

/// A minimal valid MQTT 5 packet of `context` carrying the raw property bytes `p`.
fn packet_with(context: PropertyContext, p: &[u8]) -> Vec<u8> {
    let list = props(p);
    match context {
        C::Connect => connect(b"MQTT", 5, 0x02, Some(&list), &str16(b"c")),
        C::Will => {
            let payload = [&str16(b"c")[..], &list, &str16(b"t"), &str16(b"m")].concat();
            connect(b"MQTT", 5, 0x06, Some(&[0x00]), &payload)
        }
        C::ConnAck => frame(0x20, &[&[0x00, 0x00][..], &list].concat()),
        C::Publish => frame(0x30, &[&str16(b"t")[..], &list].concat()),
        C::Ack => frame(0x40, &[&[0x00, 0x01, 0x00][..], &list].concat()),
        C::Subscribe => frame(
            0x82,
            &[&[0x00, 0x01][..], &list, &str16(b"a"), &[0x00]].concat(),
        ),
        C::SubAck => frame(0x90, &[&[0x00, 0x01][..], &list, &[0x00]].concat()),
        C::Unsubscribe => frame(0xA2, &[&[0x00, 0x01][..], &list, &str16(b"a")].concat()),
        C::UnsubAck => frame(0xB0, &[&[0x00, 0x01][..], &list, &[0x00]].concat()),
        C::Disconnect => frame(0xE0, &[&[0x00][..], &list].concat()),
        C::Auth => frame(0xF0, &[&[0x00][..], &list].concat()),
    }
}

/// The properties of the decoded packet at `context`.
fn properties_of(packet: &Packet, context: PropertyContext) -> Properties {
    match (packet, context) {
        (Packet::Connect(c), C::Will) => c
            .will
            .as_ref()
            .map(|w| w.properties.clone())
            .unwrap_or_default(),
        (Packet::Connect(c), _) => c.properties.clone(),
        (Packet::ConnAck(p), _) => p.properties.clone(),
        (Packet::Publish(p), _) => p.properties.clone(),
        (Packet::PubAck(p), _) => p.properties.clone(),
        (Packet::Subscribe(p), _) => p.properties.clone(),
        (Packet::SubAck(p), _) => p.properties.clone(),
        (Packet::Unsubscribe(p), _) => p.properties.clone(),
        (Packet::UnsubAck(p), _) => p.properties.clone(),
        (Packet::Disconnect(p), _) => p.properties.clone(),
        (Packet::Auth(p), _) => p.properties.clone(),
        (other, _) => panic!("unexpected {other:?}"),
    }
}

const CONTEXTS: [PropertyContext; 11] = [
    C::Connect,
    C::Will,
    C::ConnAck,
    C::Publish,
    C::Ack,
    C::Subscribe,
    C::SubAck,
    C::Unsubscribe,
    C::UnsubAck,
    C::Disconnect,
    C::Auth,
];

type Check = fn(&Properties) -> bool;

/// Every property: identifier, a valid value on the wire, where the spec allows it (table 2-4),
/// and how the decoded value reads.
fn table() -> Vec<(u8, Vec<u8>, Vec<PropertyContext>, Check)> {
    let all_acks = vec![
        C::ConnAck,
        C::Ack,
        C::SubAck,
        C::UnsubAck,
        C::Disconnect,
        C::Auth,
    ];
    vec![
        (0x01, vec![1], vec![C::Publish, C::Will], |p| {
            p.payload_format_indicator == Some(1)
        }),
        (0x02, vec![0, 0, 1, 0], vec![C::Publish, C::Will], |p| {
            p.message_expiry_interval == Some(256)
        }),
        (0x03, str16(b"json"), vec![C::Publish, C::Will], |p| {
            p.content_type.as_ref().map(|s| s.as_str()) == Some("json")
        }),
        (0x08, str16(b"r/t"), vec![C::Publish, C::Will], |p| {
            p.response_topic.as_ref().map(|s| s.as_str()) == Some("r/t")
        }),
        (0x09, str16(&[0, 255]), vec![C::Publish, C::Will], |p| {
            p.correlation_data.as_deref() == Some(&[0, 255][..])
        }),
        (
            0x0B,
            vec![0x80, 0x01],
            vec![C::Publish, C::Subscribe],
            |p| p.subscription_identifiers == [128],
        ),
        (
            0x11,
            vec![0xFF, 0xFF, 0xFF, 0xFF],
            vec![C::Connect, C::ConnAck, C::Disconnect],
            |p| p.session_expiry_interval == Some(u32::MAX),
        ),
        (0x12, str16(b"id-1"), vec![C::ConnAck], |p| {
            p.assigned_client_identifier.as_ref().map(|s| s.as_str()) == Some("id-1")
        }),
        (0x13, vec![0, 30], vec![C::ConnAck], |p| {
            p.server_keep_alive == Some(30)
        }),
        (
            0x15,
            str16(b"SCRAM"),
            vec![C::Connect, C::ConnAck, C::Auth],
            |p| p.authentication_method.as_ref().map(|s| s.as_str()) == Some("SCRAM"),
        ),
        (
            0x16,
            str16(b"\x01\x02"),
            vec![C::Connect, C::ConnAck, C::Auth],
            |p| p.authentication_data.as_deref() == Some(&[1, 2][..]),
        ),
        (0x17, vec![0], vec![C::Connect], |p| {
            p.request_problem_information == Some(0)
        }),
        (0x18, vec![0, 0, 0, 9], vec![C::Will], |p| {
            p.will_delay_interval == Some(9)
        }),
        (0x19, vec![1], vec![C::Connect], |p| {
            p.request_response_information == Some(1)
        }),
        (0x1A, str16(b"resp"), vec![C::ConnAck], |p| {
            p.response_information.as_ref().map(|s| s.as_str()) == Some("resp")
        }),
        (
            0x1C,
            str16(b"host:1"),
            vec![C::ConnAck, C::Disconnect],
            |p| p.server_reference.as_ref().map(|s| s.as_str()) == Some("host:1"),
        ),
        (0x1F, str16(b"why"), all_acks, |p| {
            p.reason_string.as_ref().map(|s| s.as_str()) == Some("why")
        }),
        (0x21, vec![0, 10], vec![C::Connect, C::ConnAck], |p| {
            p.receive_maximum == Some(10)
        }),
        (0x22, vec![0, 0], vec![C::Connect, C::ConnAck], |p| {
            p.topic_alias_maximum == Some(0)
        }),
        (0x23, vec![0, 7], vec![C::Publish], |p| {
            p.topic_alias == Some(7)
        }),
        (0x24, vec![1], vec![C::ConnAck], |p| {
            p.maximum_qos == Some(1)
        }),
        (0x25, vec![0], vec![C::ConnAck], |p| {
            p.retain_available == Some(0)
        }),
        (
            0x26,
            [str16(b"k"), str16(b"v")].concat(),
            CONTEXTS.to_vec(),
            |p| {
                p.user_properties.len() == 1
                    && p.user_properties[0].0.as_str() == "k"
                    && p.user_properties[0].1.as_str() == "v"
            },
        ),
        (0x27, vec![0, 0, 4, 0], vec![C::Connect, C::ConnAck], |p| {
            p.maximum_packet_size == Some(1024)
        }),
        (0x28, vec![1], vec![C::ConnAck], |p| {
            p.wildcard_subscription_available == Some(1)
        }),
        (0x29, vec![0], vec![C::ConnAck], |p| {
            p.subscription_identifier_available == Some(0)
        }),
        (0x2A, vec![1], vec![C::ConnAck], |p| {
            p.shared_subscription_available == Some(1)
        }),
    ]
}

#[test]
fn table_covers_every_property_id() {
    let ids: Vec<u8> = table().iter().map(|row| row.0).collect();
    let all: Vec<u8> = PropertyId::ALL.iter().map(|id| *id as u8).collect();
    assert_eq!(ids, all);
}

#[test]
fn every_property_decodes_and_encodes_back_to_its_bytes() {
    for (id, value, contexts, check) in table() {
        for context in contexts {
            let p = [&[id][..], &value].concat();
            let bytes = packet_with(context, &p);
            let packet = assert_accepted(&bytes, ProtocolVersion::V5);
            let properties = properties_of(&packet, context);
            assert!(
                check(&properties),
                "0x{id:02X} in {context:?}: {properties:?}"
            );
            let mut out = BytesMut::new();
            packet
                .encode(ProtocolVersion::V5, &mut out)
                .expect("encodes");
            assert_eq!(&out[..], &bytes[..], "0x{id:02X} in {context:?}");
            assert_eq!(
                PropertyId::from_u8(id).map(|i| i.allowed_in(context)),
                Some(true)
            );
        }
    }
}

/// [MQTT-3.3.2-8] Topic Alias 0: 0x94 Topic Alias invalid, as Mosquitto answers it.
#[test]
fn topic_alias_0_is_topic_alias_invalid() {
    assert_rejected(
        &packet_with(C::Publish, &[0x23, 0x00, 0x00]),
        ProtocolVersion::V5,
        ReasonCode::TopicAliasInvalid,
        "[MQTT-3.3.2-8]",
    );
}

#[test]
fn property_on_a_packet_that_may_not_carry_it() {
    let mut rejected = 0;
    for (id, value, contexts, _) in table() {
        for context in CONTEXTS.into_iter().filter(|c| !contexts.contains(c)) {
            let p = [&[id][..], &value].concat();
            // 2.2.2.2: an Identifier not valid for its packet type is a Malformed Packet.
            assert_rejected(
                &packet_with(context, &p),
                ProtocolVersion::V5,
                ReasonCode::MalformedPacket,
                "not allowed",
            );
            rejected += 1;
        }
    }
    assert!(rejected > 150, "{rejected}");
}

#[test]
fn duplicate_properties_are_protocol_errors() {
    for (id, value, contexts, _) in table() {
        for context in contexts {
            let once = [&[id][..], &value].concat();
            let twice = [&once[..], &once].concat();
            let bytes = packet_with(context, &twice);
            let may_repeat = id == 0x26 || (id == 0x0B && context == C::Publish);
            if may_repeat {
                let packet = assert_accepted(&bytes, ProtocolVersion::V5);
                let properties = properties_of(&packet, context);
                let count = if id == 0x26 {
                    properties.user_properties.len()
                } else {
                    properties.subscription_identifiers.len()
                };
                assert_eq!(count, 2, "0x{id:02X} in {context:?}");
            } else {
                assert_rejected(
                    &bytes,
                    ProtocolVersion::V5,
                    ReasonCode::ProtocolError,
                    "more than once",
                );
            }
        }
    }
}

#[test]
fn repeated_properties_keep_their_order() {
    let p = [
        &[0x26][..],
        &str16(b"a"),
        &str16(b"1"),
        &[0x0B, 0x05],
        &[0x26],
        &str16(b"a"),
        &str16(b"2"),
        &[0x0B, 0x03],
    ]
    .concat();
    let Packet::Publish(publish) =
        assert_accepted(&packet_with(C::Publish, &p), ProtocolVersion::V5)
    else {
        panic!("not a publish");
    };
    let values: Vec<&str> = publish
        .properties
        .user_properties
        .iter()
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(values, ["1", "2"]);
    assert_eq!(publish.properties.subscription_identifiers, [5, 3]);
}

#[test]
fn zero_values_that_are_protocol_errors() {
    let cases: &[(PropertyContext, &[u8], &str)] = &[
        (C::Subscribe, &[0x0B, 0x00], "Subscription Identifier 0"),
        (C::Publish, &[0x0B, 0x00], "Subscription Identifier 0"),
        (C::Connect, &[0x21, 0x00, 0x00], "Receive Maximum 0"),
        (C::ConnAck, &[0x21, 0x00, 0x00], "Receive Maximum 0"),
        (
            C::Connect,
            &[0x27, 0x00, 0x00, 0x00, 0x00],
            "Maximum Packet Size 0",
        ),
        (
            C::ConnAck,
            &[0x27, 0x00, 0x00, 0x00, 0x00],
            "Maximum Packet Size 0",
        ),
    ];
    for (context, p, rule) in cases {
        assert_rejected(
            &packet_with(*context, p),
            ProtocolVersion::V5,
            ReasonCode::ProtocolError,
            rule,
        );
    }
}

#[test]
fn subscription_identifier_over_four_bytes_is_malformed() {
    let p = [0x0B, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert_rejected(
        &packet_with(C::Subscribe, &p),
        ProtocolVersion::V5,
        ReasonCode::MalformedPacket,
        "four bytes",
    );
}

#[test]
fn byte_properties_other_than_0_or_1() {
    let cases = [
        (0x01, C::Publish, "Payload Format Indicator"),
        (0x01, C::Will, "Payload Format Indicator"),
        (0x17, C::Connect, "Request Problem Information"),
        (0x19, C::Connect, "Request Response Information"),
        (0x24, C::ConnAck, "Maximum QoS"),
        (0x25, C::ConnAck, "Retain Available"),
        (0x28, C::ConnAck, "Wildcard Subscription Available"),
        (0x29, C::ConnAck, "Subscription Identifier Available"),
        (0x2A, C::ConnAck, "Shared Subscription Available"),
    ];
    for (id, context, rule) in cases {
        for value in [2u8, 0xFF] {
            assert_rejected(
                &packet_with(context, &[id, value]),
                ProtocolVersion::V5,
                ReasonCode::ProtocolError,
                rule,
            );
        }
        assert_accepted(&packet_with(context, &[id, 1]), ProtocolVersion::V5);
        assert_accepted(&packet_with(context, &[id, 0]), ProtocolVersion::V5);
    }
}

#[test]
fn unknown_property_identifiers_are_malformed() {
    for id in [0x00u8, 0x04, 0x05, 0x0A, 0x10, 0x14, 0x1B, 0x20, 0x2B, 0x7F] {
        assert_rejected(
            &packet_with(C::Publish, &[id, 0x00]),
            ProtocolVersion::V5,
            ReasonCode::MalformedPacket,
            "unknown property",
        );
    }
    // A two-byte identifier (0x80 0x01 = 128).
    assert_rejected(
        &packet_with(C::Publish, &[0x80, 0x01, 0x00]),
        ProtocolVersion::V5,
        ReasonCode::MalformedPacket,
        "unknown property",
    );
}

#[test]
fn response_topic_must_be_a_topic_name() {
    for topic in [&b"a/+"[..], b"#", b""] {
        let p = [&[0x08][..], &str16(topic)].concat();
        assert_rejected(
            &packet_with(C::Publish, &p),
            ProtocolVersion::V5,
            ReasonCode::ProtocolError,
            "[MQTT-3.3.2-14]",
        );
    }
}

#[test]
fn property_strings_follow_the_utf8_rules() {
    let p = [&[0x03][..], &str16(&[0xFF])].concat();
    assert_rejected(
        &packet_with(C::Publish, &p),
        ProtocolVersion::V5,
        ReasonCode::MalformedPacket,
        "[MQTT-1.5.4-1]",
    );
    let p = [&[0x1F][..], &str16(b"\0")].concat();
    assert_rejected(
        &packet_with(C::Ack, &p),
        ProtocolVersion::V5,
        ReasonCode::MalformedPacket,
        "[MQTT-1.5.4-2]",
    );
}

#[test]
fn encoder_writes_only_the_properties_a_packet_may_carry() {
    let mut properties = Properties::new();
    properties.topic_alias = Some(1);
    properties.session_expiry_interval = Some(5); // not allowed on PUBLISH
    properties.reason_string = Some("no".into()); // not allowed on PUBLISH
    let publish = Packet::Publish(Publish {
        topic: "t".into(),
        properties,
        ..Publish::default()
    });
    let mut out = BytesMut::new();
    publish
        .encode(ProtocolVersion::V5, &mut out)
        .expect("encodes");
    assert_eq!(
        &out[..],
        &[0x30, 0x07, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x01]
    );
    assert_eq!(publish.encoded_len(ProtocolVersion::V5), out.len());
}

#[test]
fn properties_equality_and_emptiness_ignore_the_box() {
    let mut a = Properties::new();
    assert!(a.is_empty());
    // Touching a boxed field through DerefMut allocates the box but sets nothing.
    a.user_properties.clear();
    assert!(a.more.is_some());
    assert!(a.is_empty());
    assert_eq!(a, Properties::default());
    a.receive_maximum = Some(1);
    assert!(!a.is_empty());
    assert_ne!(a, Properties::default());
}

#[test]
fn wire_types_match_table_2_4() {
    use shardmq::codec::PropertyType::*;
    for (id, value, _, _) in table() {
        let wire_type = PropertyId::from_u8(id).map(|i| i.wire_type());
        let expected_len = match wire_type {
            Some(Byte) => 1,
            Some(TwoByteInteger) => 2,
            Some(FourByteInteger) => 4,
            Some(VariableByteInteger) => value.len(),
            Some(BinaryData) | Some(Utf8String) => {
                2 + usize::from(u16::from_be_bytes([value[0], value[1]]))
            }
            Some(Utf8StringPair) => value.len(),
            None => panic!("0x{id:02X} unknown"),
        };
        assert_eq!(value.len(), expected_len, "0x{id:02X}");
    }
    assert_eq!(PropertyId::UserProperty.wire_type(), Utf8StringPair);
    assert_eq!(
        PropertyId::SubscriptionIdentifier.wire_type(),
        VariableByteInteger
    );
    assert_eq!(PropertyId::CorrelationData.wire_type(), BinaryData);
}
