//! Spec byte sequences, built by hand from the MQTT 3.1, 3.1.1 and 5.0 specifications: each is
//! decoded to the expected packet, and the packet encodes to exactly these bytes.

use bytes::{Bytes, BytesMut};
use shardmq::codec::{
    decode, Ack, Auth, ConnAck, Connect, Disconnect, MoreProperties, MqttString, Packet,
    Properties, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn s(text: &str) -> MqttString {
    MqttString::from(text)
}

/// Decodes `bytes` to `packet` and encodes `packet` to `bytes`, with the exact length.
fn check(bytes: &[u8], version: ProtocolVersion, packet: Packet) {
    let mut buf = BytesMut::from(bytes);
    let decoded = decode(&mut buf, version, u32::MAX)
        .unwrap_or_else(|e| panic!("{version:?} {bytes:02X?}: {e}"))
        .expect("whole frame");
    assert_eq!(decoded, packet, "decode {version:?}");
    assert!(buf.is_empty());
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encodes");
    assert_eq!(&out[..], bytes, "encode {version:?} {packet:?}");
    assert_eq!(packet.encoded_len(version), bytes.len());
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn connect_3_1_1_spec_example_flags() {
    // 3.1.1 section 3.1.2.10: protocol name, level 4, flags 0xCE (user name, password, Will QoS 1,
    // Will Flag, Clean Session), keep alive 10.
    let bytes = cat(&[
        &[0x10, 26],
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A],
        &[0x00, 0x02, b'i', b'd'],
        &[0x00, 0x01, b'w'],
        &[0x00, 0x01, b'm'],
        &[0x00, 0x01, b'u'],
        &[0x00, 0x01, b'p'],
    ]);
    let packet = Packet::Connect(Box::new(Connect {
        protocol_version: V3_1_1,
        clean_start: true,
        keep_alive_secs: 10,
        client_id: s("id"),
        will: Some(Will {
            topic: s("w"),
            payload: Bytes::from_static(b"m"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::new(),
        }),
        username: Some(s("u")),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties::new(),
    }));
    // A CONNECT is parsed by its own level whatever the session's version says.
    for version in [V3_1, V3_1_1, V5] {
        check(&bytes, version, packet.clone());
    }
}

#[test]
fn connect_3_1_mqisdp() {
    // MQTT 3.1: protocol name "MQIsdp", level 3, Clean Session, keep alive 60, client id "abc".
    let bytes = cat(&[
        &[0x10, 17],
        &[
            0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C,
        ],
        &[0x00, 0x03, b'a', b'b', b'c'],
    ]);
    check(
        &bytes,
        V3_1,
        Packet::Connect(Box::new(Connect {
            protocol_version: V3_1,
            clean_start: true,
            keep_alive_secs: 60,
            client_id: s("abc"),
            ..Connect::default()
        })),
    );
}

#[test]
fn connect_5_spec_example() {
    // 5.0 section 3.1.2.11 example: level 5, flags 0xC2 (user name, password, Clean Start),
    // keep alive 10, properties length 5: Session Expiry Interval (0x11) = 10.
    let bytes = cat(&[
        &[0x10, 26],
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0xC2, 0x00, 0x0A],
        &[0x05, 0x11, 0x00, 0x00, 0x00, 0x0A],
        &[0x00, 0x02, b'i', b'd'],
        &[0x00, 0x01, b'u'],
        &[0x00, 0x01, b'p'],
    ]);
    check(
        &bytes,
        V5,
        Packet::Connect(Box::new(Connect {
            protocol_version: V5,
            clean_start: true,
            keep_alive_secs: 10,
            client_id: s("id"),
            will: None,
            username: Some(s("u")),
            password: Some(Bytes::from_static(b"p")),
            properties: Properties::from(MoreProperties {
                session_expiry_interval: Some(10),
                ..MoreProperties::default()
            }),
        })),
    );
}

#[test]
fn connect_5_with_will_properties_and_password_only() {
    // Will Flag, Will QoS 1, Will Retain (0x2C), password without user name (allowed in 5.0),
    // Will Properties: Will Delay Interval (0x18) = 5.
    let bytes = cat(&[
        &[0x10, 30],
        &[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x6C, 0x00, 0x00],
        &[0x00],
        &[0x00, 0x00],
        &[0x05, 0x18, 0x00, 0x00, 0x00, 0x05],
        &[0x00, 0x01, b't'],
        &[0x00, 0x02, b'b', b'y'],
        &[0x00, 0x02, b'p', b'w'],
    ]);
    check(
        &bytes,
        V5,
        Packet::Connect(Box::new(Connect {
            protocol_version: V5,
            clean_start: false,
            keep_alive_secs: 0,
            client_id: MqttString::default(),
            will: Some(Will {
                topic: s("t"),
                payload: Bytes::from_static(b"by"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: Properties::from(MoreProperties {
                    will_delay_interval: Some(5),
                    ..MoreProperties::default()
                }),
            }),
            username: None,
            password: Some(Bytes::from_static(b"pw")),
            properties: Properties::new(),
        })),
    );
}

#[test]
fn connack_every_version() {
    let accepted = |session_present| {
        Packet::ConnAck(ConnAck {
            session_present,
            reason_code: ReasonCode::Success,
            properties: Properties::new(),
        })
    };
    check(&[0x20, 0x02, 0x00, 0x00], V3_1, accepted(false));
    check(&[0x20, 0x02, 0x00, 0x00], V3_1_1, accepted(false));
    check(&[0x20, 0x02, 0x01, 0x00], V3_1_1, accepted(true));
    check(&[0x20, 0x03, 0x01, 0x00, 0x00], V5, accepted(true));
    // 3.1.1 return codes 1..=5 map to their MQTT 5 reason codes.
    let refused = [
        (1, ReasonCode::UnsupportedProtocolVersion),
        (2, ReasonCode::ClientIdentifierNotValid),
        (3, ReasonCode::ServerUnavailable),
        (4, ReasonCode::BadUserNameOrPassword),
        (5, ReasonCode::NotAuthorized),
    ];
    for (code, reason_code) in refused {
        for version in [V3_1, V3_1_1] {
            check(
                &[0x20, 0x02, 0x00, code],
                version,
                Packet::ConnAck(ConnAck {
                    session_present: false,
                    reason_code,
                    properties: Properties::new(),
                }),
            );
        }
    }
    // 5.0 with Retain Available (0x25) = 0 and Maximum QoS (0x24) = 1, in Mosquitto's order.
    check(
        &[0x20, 0x07, 0x00, 0x00, 0x04, 0x25, 0x00, 0x24, 0x01],
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: Properties::from(MoreProperties {
                maximum_qos: Some(1),
                retain_available: Some(0),
                ..MoreProperties::default()
            }),
        }),
    );
    check(
        &[0x20, 0x03, 0x00, 0x87, 0x00],
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::NotAuthorized,
            properties: Properties::new(),
        }),
    );
}

#[test]
fn publish_spec_example_every_version() {
    // 3.1.1 section 3.3.2.3: topic "a/b", packet identifier 10; QoS 1, payload "hi".
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: s("a/b"),
        packet_id: 10,
        payload: Bytes::from_static(b"hi"),
        ..Publish::default()
    };
    let v3 = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, b'h', b'i',
    ];
    check(&v3, V3_1, Packet::Publish(publish.clone()));
    check(&v3, V3_1_1, Packet::Publish(publish.clone()));
    check(
        &[
            0x32, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x00, b'h', b'i',
        ],
        V5,
        Packet::Publish(publish),
    );
}

#[test]
fn publish_flags_and_properties() {
    // QoS 0 with RETAIN: no packet identifier.
    check(
        &[0x31, 0x04, 0x00, 0x01, b't', b'x'],
        V3_1_1,
        Packet::Publish(Publish {
            retain: true,
            topic: s("t"),
            payload: Bytes::from_static(b"x"),
            ..Publish::default()
        }),
    );
    // DUP, QoS 2, empty payload.
    check(
        &[0x3C, 0x05, 0x00, 0x01, b't', 0xFF, 0xFF],
        V3_1_1,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            topic: s("t"),
            packet_id: 0xFFFF,
            ..Publish::default()
        }),
    );
    // 5.0: Message Expiry Interval (0x02) = 60, Topic Alias (0x23) = 1.
    check(
        &[
            0x30, 0x0D, 0x00, 0x01, b't', 0x08, 0x02, 0x00, 0x00, 0x00, 0x3C, 0x23, 0x00, 0x01,
            b'x',
        ],
        V5,
        Packet::Publish(Publish {
            topic: s("t"),
            properties: Properties {
                message_expiry_interval: Some(60),
                topic_alias: Some(1),
                ..Properties::new()
            },
            payload: Bytes::from_static(b"x"),
            ..Publish::default()
        }),
    );
}

#[test]
fn remaining_length_spec_example_321() {
    // Section 2.2.3 / 1.5.5: 321 encodes as 0xC1 0x02. Topic "t" (3 bytes) + 318 bytes payload.
    let payload = vec![0x55; 318];
    let mut bytes = vec![0x30, 0xC1, 0x02, 0x00, 0x01, b't'];
    bytes.extend_from_slice(&payload);
    check(
        &bytes,
        V3_1_1,
        Packet::Publish(Publish {
            topic: s("t"),
            payload: Bytes::from(payload),
            ..Publish::default()
        }),
    );
}

#[test]
fn acknowledgements_every_version() {
    let ack = |packet_id| Ack {
        packet_id,
        ..Ack::default()
    };
    for version in [V3_1, V3_1_1, V5] {
        check(&[0x40, 0x02, 0x00, 0x0A], version, Packet::PubAck(ack(10)));
        check(&[0x50, 0x02, 0x00, 0x0A], version, Packet::PubRec(ack(10)));
        check(&[0x62, 0x02, 0x00, 0x0A], version, Packet::PubRel(ack(10)));
        check(&[0x70, 0x02, 0x00, 0x0A], version, Packet::PubComp(ack(10)));
    }
    // 5.0: a reason code alone (Remaining Length 3), then with a Reason String.
    check(
        &[0x40, 0x03, 0x00, 0x0A, 0x10],
        V5,
        Packet::PubAck(Ack {
            packet_id: 10,
            reason_code: ReasonCode::NoMatchingSubscribers,
            properties: Properties::new(),
        }),
    );
    check(
        &[0x62, 0x03, 0x00, 0x0A, 0x92],
        V5,
        Packet::PubRel(Ack {
            packet_id: 10,
            reason_code: ReasonCode::PacketIdentifierNotFound,
            properties: Properties::new(),
        }),
    );
    check(
        &[0x50, 0x08, 0x00, 0x0A, 0x97, 0x04, 0x1F, 0x00, 0x01, b'q'],
        V5,
        Packet::PubRec(Ack {
            packet_id: 10,
            reason_code: ReasonCode::QuotaExceeded,
            properties: Properties::from(MoreProperties {
                reason_string: Some(s("q")),
                ..MoreProperties::default()
            }),
        }),
    );
    // 5.0: a reason code with a zero property length decodes too (3.4.2.2) and encodes shorter.
    let mut buf = BytesMut::from(&[0x70, 0x04, 0x00, 0x0A, 0x00, 0x00][..]);
    assert_eq!(
        decode(&mut buf, V5, u32::MAX),
        Ok(Some(Packet::PubComp(ack(10))))
    );
}

#[test]
fn subscribe_spec_example_every_version() {
    // 3.1.1 section 3.8.3: packet identifier 10, "a/b" QoS 1, "c/d" QoS 2.
    let subscribe = Subscribe {
        packet_id: 10,
        properties: Properties::new(),
        subscriptions: vec![
            Subscription {
                filter: s("a/b"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            },
            Subscription {
                filter: s("c/d"),
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..SubscriptionOptions::default()
                },
            },
        ],
    };
    let v3 = [
        0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c', b'/', b'd',
        0x02,
    ];
    check(&v3, V3_1, Packet::Subscribe(subscribe.clone()));
    check(&v3, V3_1_1, Packet::Subscribe(subscribe.clone()));
    check(
        &[
            0x82, 0x0F, 0x00, 0x0A, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x01, 0x00, 0x03, b'c',
            b'/', b'd', 0x02,
        ],
        V5,
        Packet::Subscribe(subscribe),
    );
    // 5.0 options: Retain Handling 2, Retain As Published, No Local, QoS 1 = 0x2D; Subscription
    // Identifier (0x0B) = 7.
    check(
        &[
            0x82, 0x09, 0x00, 0x01, 0x02, 0x0B, 0x07, 0x00, 0x01, b'#', 0x2D,
        ],
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::from(MoreProperties {
                subscription_identifiers: vec![7],
                ..MoreProperties::default()
            }),
            subscriptions: vec![Subscription {
                filter: s("#"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            }],
        }),
    );
}

#[test]
fn suback_spec_example_every_version() {
    // 3.1.1 section 3.9.3: Success QoS 0, Success QoS 2, Failure.
    check(
        &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80],
        V3_1_1,
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::new(),
            reason_codes: vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
        }),
    );
    check(
        &[0x90, 0x04, 0x00, 0x0A, 0x00, 0x01],
        V3_1,
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::new(),
            reason_codes: vec![ReasonCode::Success, ReasonCode::GrantedQoS1],
        }),
    );
    check(
        &[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x8F, 0xA2],
        V5,
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: Properties::new(),
            reason_codes: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::TopicFilterInvalid,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
        }),
    );
}

#[test]
fn unsubscribe_and_unsuback_every_version() {
    // 3.1.1 section 3.10.3: "a/b" and "c/d".
    let unsubscribe = Unsubscribe {
        packet_id: 10,
        properties: Properties::new(),
        filters: vec![s("a/b"), s("c/d")],
    };
    let v3 = [
        0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/', b'd',
    ];
    check(&v3, V3_1, Packet::Unsubscribe(unsubscribe.clone()));
    check(&v3, V3_1_1, Packet::Unsubscribe(unsubscribe.clone()));
    check(
        &[
            0xA2, 0x0D, 0x00, 0x0A, 0x00, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x03, b'c', b'/',
            b'd',
        ],
        V5,
        Packet::Unsubscribe(unsubscribe),
    );
    let unsuback = UnsubAck {
        packet_id: 10,
        ..UnsubAck::default()
    };
    check(
        &[0xB0, 0x02, 0x00, 0x0A],
        V3_1,
        Packet::UnsubAck(unsuback.clone()),
    );
    check(
        &[0xB0, 0x02, 0x00, 0x0A],
        V3_1_1,
        Packet::UnsubAck(unsuback),
    );
    check(
        &[0xB0, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x11],
        V5,
        Packet::UnsubAck(UnsubAck {
            packet_id: 10,
            properties: Properties::new(),
            reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        }),
    );
}

#[test]
fn ping_and_disconnect_every_version() {
    for version in [V3_1, V3_1_1, V5] {
        check(&[0xC0, 0x00], version, Packet::PingReq);
        check(&[0xD0, 0x00], version, Packet::PingResp);
        check(
            &[0xE0, 0x00],
            version,
            Packet::Disconnect(Disconnect::default()),
        );
    }
    check(
        &[0xE0, 0x01, 0x8B],
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ServerShuttingDown,
            properties: Properties::new(),
        }),
    );
    // Normal disconnection with Session Expiry Interval (0x11) = 0.
    check(
        &[0xE0, 0x07, 0x00, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties::from(MoreProperties {
                session_expiry_interval: Some(0),
                ..MoreProperties::default()
            }),
        }),
    );
}

#[test]
fn auth_5() {
    check(&[0xF0, 0x00], V5, Packet::Auth(Auth::default()));
    // Continue Authentication with Authentication Method (0x15) "SCRM".
    check(
        &[
            0xF0, 0x09, 0x18, 0x07, 0x15, 0x00, 0x04, b'S', b'C', b'R', b'M',
        ],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties: Properties::from(MoreProperties {
                authentication_method: Some(s("SCRM")),
                ..MoreProperties::default()
            }),
        }),
    );
    check(
        &[0xF0, 0x01, 0x19],
        V5,
        Packet::Auth(Auth {
            reason_code: ReasonCode::ReAuthenticate,
            properties: Properties::new(),
        }),
    );
}

#[test]
fn publish_decode_is_zero_copy() {
    let bytes = [0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'x', b'y'];
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&bytes);
    let frame_start = buf.as_ptr() as usize;
    let Some(Packet::Publish(publish)) = decode(&mut buf, V3_1_1, u32::MAX).expect("valid") else {
        panic!("not a publish");
    };
    // Topic and payload point into the original read buffer.
    assert_eq!(publish.topic.as_bytes().as_ptr() as usize, frame_start + 4);
    assert_eq!(publish.payload.as_ptr() as usize, frame_start + 7);
}
