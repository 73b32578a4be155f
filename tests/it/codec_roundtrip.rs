//! Every packet type, every protocol version: encode, check `encoded_len`, decode back, compare.

use bytes::{Bytes, BytesMut};
use shardmq::codec::{
    decode, Ack, Auth, ConnAck, Connect, Disconnect, MqttString, Packet, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

fn s(text: &str) -> MqttString {
    MqttString::from(text)
}

fn round_trip(packet: &Packet, version: ProtocolVersion) -> Packet {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encodes");
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "{packet:?} {version:?}"
    );
    let total = out.len();
    // Every proper prefix is incomplete, not an error.
    for cut in 0..total {
        let mut partial = BytesMut::from(&out[..cut]);
        assert_eq!(
            decode(&mut partial, version, u32::MAX),
            Ok(None),
            "prefix {cut} of {packet:?} {version:?}"
        );
        assert_eq!(partial.len(), cut, "nothing consumed");
    }
    let decoded = decode(&mut out, version, u32::MAX)
        .unwrap_or_else(|e| panic!("{packet:?} {version:?}: {e}"))
        .expect("a whole frame");
    assert!(out.is_empty(), "the whole frame was consumed");
    decoded
}

fn v5_properties() -> Properties {
    let mut p = Properties::new();
    p.user_properties.push((s("k"), s("v")));
    p.reason_string = Some(s("because"));
    p
}

fn packets(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let props = |p: Properties| if v5 { p } else { Properties::default() };
    let mut connect_props = Properties::new();
    connect_props.session_expiry_interval = Some(10);
    connect_props.receive_maximum = Some(20);
    connect_props.maximum_packet_size = Some(1000);
    let mut will_props = Properties::new();
    will_props.will_delay_interval = Some(5);
    will_props.content_type = Some(s("text/plain"));
    will_props.payload_format_indicator = Some(1);
    let mut publish_props = Properties::new();
    publish_props.message_expiry_interval = Some(60);
    publish_props.topic_alias = Some(3);
    publish_props.response_topic = Some(s("reply/here"));
    publish_props.correlation_data = Some(Bytes::from_static(b"\x00\x01"));
    publish_props.subscription_identifiers = vec![1, 268_435_455];
    publish_props
        .user_properties
        .extend([(s("a"), s("1")), (s("a"), s("2"))]);
    let mut connack_props = Properties::new();
    connack_props.assigned_client_identifier = Some(s("auto-1"));
    connack_props.maximum_qos = Some(1);
    connack_props.topic_alias_maximum = Some(10);
    connack_props.server_keep_alive = Some(30);
    let mut subscribe_props = Properties::new();
    subscribe_props.subscription_identifiers = vec![7];
    let mut auth_props = Properties::new();
    auth_props.authentication_method = Some(s("SCRAM-SHA-1"));
    auth_props.authentication_data = Some(Bytes::from_static(b"data"));
    let ack_code = if v5 {
        ReasonCode::NoMatchingSubscribers
    } else {
        ReasonCode::Success
    };
    let mut list = vec![
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            clean_start: true,
            keep_alive_secs: 60,
            client_id: s("client-1"),
            will: Some(Will {
                topic: s("will/topic"),
                payload: Bytes::from_static(b"bye"),
                qos: QoS::AtLeastOnce,
                retain: true,
                properties: props(will_props),
            }),
            username: Some(s("user")),
            password: Some(Bytes::from_static(b"secret")),
            properties: props(connect_props),
        })),
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            client_id: s("c"),
            ..Connect::default()
        })),
        Packet::ConnAck(ConnAck {
            session_present: version != ProtocolVersion::V3_1,
            reason_code: ReasonCode::Success,
            properties: props(connack_props),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::NotAuthorized,
            properties: Properties::default(),
        }),
        Packet::Publish(Publish {
            topic: s("a/b"),
            payload: Bytes::from_static(b"hello"),
            ..Publish::default()
        }),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: s("sensors/temperature"),
            packet_id: 65_535,
            properties: props(publish_props),
            payload: Bytes::from(vec![0xAB; 300]),
        }),
        Packet::PubAck(Ack {
            packet_id: 1,
            ..Ack::default()
        }),
        Packet::PubRec(Ack {
            packet_id: 2,
            reason_code: ack_code,
            properties: props(v5_properties()),
        }),
        Packet::PubRel(Ack {
            packet_id: 3,
            reason_code: if v5 {
                ReasonCode::PacketIdentifierNotFound
            } else {
                ReasonCode::Success
            },
            properties: Properties::default(),
        }),
        Packet::PubComp(Ack {
            packet_id: 4,
            reason_code: ReasonCode::Success,
            properties: props(v5_properties()),
        }),
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            properties: props(subscribe_props),
            subscriptions: vec![
                Subscription {
                    filter: s("a/+/c"),
                    options: SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: v5,
                        retain_as_published: v5,
                        retain_handling: if v5 {
                            RetainHandling::DoNotSend
                        } else {
                            RetainHandling::SendAtSubscribe
                        },
                    },
                },
                Subscription {
                    filter: s("#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        ..SubscriptionOptions::default()
                    },
                },
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: 10,
            properties: props(v5_properties()),
            reason_codes: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::Success,
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: 11,
            properties: props(v5_properties_user_only()),
            filters: vec![s("a/+/c"), s("$share/group/x/#")],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: 11,
            properties: props(v5_properties()),
            reason_codes: if v5 {
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            } else {
                Vec::new()
            },
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if version == ProtocolVersion::V3_1_1 {
        list.push(Packet::SubAck(SubAck {
            packet_id: 12,
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::UnspecifiedError],
        }));
    }
    if v5 {
        let mut disconnect_props = Properties::new();
        disconnect_props.session_expiry_interval = Some(0);
        disconnect_props.server_reference = Some(s("other:1883"));
        list.extend([
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::ServerShuttingDown,
                properties: Properties::default(),
            }),
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::Success,
                properties: disconnect_props,
            }),
            Packet::Auth(Auth::default()),
            Packet::Auth(Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: auth_props,
            }),
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: MqttString::default(),
                packet_id: 9,
                properties: Properties {
                    topic_alias: Some(3),
                    ..Properties::default()
                },
                payload: Bytes::new(),
                ..Publish::default()
            }),
        ]);
    }
    list
}

fn v5_properties_user_only() -> Properties {
    let mut p = Properties::new();
    p.user_properties.push((s("k"), s("v")));
    p
}

#[test]
fn every_packet_round_trips_in_every_version() {
    for version in VERSIONS {
        for packet in packets(version) {
            assert_eq!(round_trip(&packet, version), packet, "{version:?}");
        }
    }
}

#[test]
fn back_to_back_frames_decode_one_at_a_time() {
    for version in VERSIONS {
        let list = packets(version);
        let mut buf = BytesMut::new();
        for packet in &list {
            packet.encode(version, &mut buf).expect("encodes");
        }
        for packet in &list {
            let decoded = decode(&mut buf, version, u32::MAX)
                .expect("valid")
                .expect("whole");
            assert_eq!(&decoded, packet);
        }
        assert_eq!(decode(&mut buf, version, u32::MAX), Ok(None));
    }
}

#[test]
fn publish_header_then_payload_equals_whole_encoding() {
    for version in VERSIONS {
        for packet in packets(version) {
            let Packet::Publish(publish) = packet else {
                continue;
            };
            let mut whole = BytesMut::new();
            publish.encode(version, &mut whole).expect("encodes");
            let mut split = BytesMut::new();
            publish.encode_header(version, &mut split).expect("encodes");
            assert_eq!(split.len(), publish.header_len(version));
            split.extend_from_slice(&publish.payload);
            assert_eq!(whole, split);
            assert_eq!(whole.len(), publish.encoded_len(version));
        }
    }
}
