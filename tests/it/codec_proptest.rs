//! Property tests: any valid packet of any type round-trips in each protocol version with its exact
//! `encoded_len`; arbitrary and mutated bytes decode to a packet or an error and never panic; what
//! decodes re-encodes to something that decodes to the same packet; frames split anywhere decode.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::of as opt;
use proptest::prelude::*;
use proptest::sample::select;
use shardmq::codec::{
    decode, Ack, Auth, ConnAck, Connect, Disconnect, MqttString, Packet, PacketType, Properties,
    PropertyContext, PropertyId, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck,
    Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

fn string() -> impl Strategy<Value = MqttString> {
    // Any characters but U+0000 ([MQTT-1.5.4-2]), multi-byte ones included.
    "[^\u{0}]{0,12}".prop_map(MqttString::from)
}

fn topic_name() -> impl Strategy<Value = MqttString> {
    "[^\u{0}+#]{1,16}".prop_map(MqttString::from)
}

fn topic_filter() -> impl Strategy<Value = MqttString> {
    let level = prop_oneof!["[a-z0-9$ ]{0,4}", Just("+".to_string())];
    (vec(level, 1..4), any::<bool>(), opt("[a-z]{1,4}")).prop_map(|(levels, multi, share)| {
        let mut filter = levels.join("/");
        if filter.is_empty() {
            filter.push('a');
        }
        if multi {
            filter.push_str("/#");
        }
        if let Some(group) = share {
            filter = format!("$share/{group}/{filter}");
        }
        MqttString::from(filter)
    })
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    opt(0..=1u8)
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// Clears every property `context` may not carry (the codec's table is tested on its own).
fn retain_allowed(mut p: Properties, context: PropertyContext) -> Properties {
    use PropertyId::*;
    let allowed = |id: PropertyId| id.allowed_in(context);
    if !allowed(PayloadFormatIndicator) {
        p.payload_format_indicator = None;
    }
    if !allowed(MessageExpiryInterval) {
        p.message_expiry_interval = None;
    }
    if !allowed(TopicAlias) {
        p.topic_alias = None;
    }
    macro_rules! clear {
        ($($id:ident => $field:ident),* $(,)?) => {
            $(if !allowed($id) { p.$field = Default::default(); })*
        };
    }
    clear!(
        ContentType => content_type,
        ResponseTopic => response_topic,
        CorrelationData => correlation_data,
        SubscriptionIdentifier => subscription_identifiers,
        SessionExpiryInterval => session_expiry_interval,
        AssignedClientIdentifier => assigned_client_identifier,
        ServerKeepAlive => server_keep_alive,
        AuthenticationMethod => authentication_method,
        AuthenticationData => authentication_data,
        RequestProblemInformation => request_problem_information,
        WillDelayInterval => will_delay_interval,
        RequestResponseInformation => request_response_information,
        ResponseInformation => response_information,
        ServerReference => server_reference,
        ReasonString => reason_string,
        ReceiveMaximum => receive_maximum,
        TopicAliasMaximum => topic_alias_maximum,
        MaximumQoS => maximum_qos,
        RetainAvailable => retain_available,
        UserProperty => user_properties,
        MaximumPacketSize => maximum_packet_size,
        WildcardSubscriptionAvailable => wildcard_subscription_available,
        SubscriptionIdentifierAvailable => subscription_identifier_available,
        SharedSubscriptionAvailable => shared_subscription_available,
    );
    // Subscription Identifier repeats only in PUBLISH.
    if context != PropertyContext::Publish {
        p.subscription_identifiers.truncate(1);
    }
    p
}

/// Any valid property list for `context` in `version` (none before MQTT 5).
fn properties(context: PropertyContext, version: ProtocolVersion) -> BoxedStrategy<Properties> {
    if !version.is_v5() {
        return Just(Properties::new()).boxed();
    }
    let a = (
        flag(),
        opt(any::<u32>()),
        opt(string()),
        opt(topic_name()),
        opt(binary()),
        vec(1..=268_435_455u32, 0..3),
        opt(any::<u32>()),
        opt(string()),
        opt(any::<u16>()),
        opt(string()),
        opt(binary()),
        flag(),
    );
    let b = (
        opt(any::<u32>()),
        flag(),
        opt(string()),
        opt(string()),
        opt(string()),
        opt(1..=u16::MAX),
        opt(any::<u16>()),
        opt(1..=u16::MAX),
        flag(),
        flag(),
        vec((string(), string()), 0..3),
        opt(1..=u32::MAX),
    );
    let c = (flag(), flag(), flag());
    (a, b, c)
        .prop_map(move |(a, b, c)| {
            let mut p = Properties::new();
            p.payload_format_indicator = a.0;
            p.message_expiry_interval = a.1;
            p.content_type = a.2;
            p.response_topic = a.3;
            p.correlation_data = a.4;
            p.subscription_identifiers = a.5;
            p.session_expiry_interval = a.6;
            p.assigned_client_identifier = a.7;
            p.server_keep_alive = a.8;
            p.authentication_method = a.9;
            p.authentication_data = a.10;
            p.request_problem_information = a.11;
            p.will_delay_interval = b.0;
            p.request_response_information = b.1;
            p.response_information = b.2;
            p.server_reference = b.3;
            p.reason_string = b.4;
            p.receive_maximum = b.5;
            p.topic_alias_maximum = b.6;
            p.topic_alias = b.7;
            p.maximum_qos = b.8;
            p.retain_available = b.9;
            p.user_properties = b.10;
            p.maximum_packet_size = b.11;
            p.wildcard_subscription_available = c.0;
            p.subscription_identifier_available = c.1;
            p.shared_subscription_available = c.2;
            retain_allowed(p, context)
        })
        .boxed()
}

/// The reason codes `packet_type` allows in MQTT 5.
fn reason_codes(packet_type: PacketType) -> Vec<ReasonCode> {
    (0..=255)
        .filter_map(ReasonCode::from_u8)
        .filter(|rc| rc.is_valid_for(packet_type))
        .collect()
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(PropertyContext::Will, version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        });
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        opt(will),
        opt(string()),
        opt(binary()),
        properties(PropertyContext::Connect, version),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive_secs,
                client_id,
                will,
                username,
                password,
                properties,
            )| {
                // [MQTT-3.1.2-22]: before MQTT 5 a password needs a user name.
                let password = if version.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol_version: version,
                    clean_start,
                    keep_alive_secs,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn connack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = if version.is_v5() {
        reason_codes(PacketType::ConnAck)
    } else {
        (0..=5)
            .filter_map(shardmq::codec::ConnectReturnCode::from_u8)
            .map(|c| c.to_reason_code())
            .collect()
    };
    (
        any::<bool>(),
        select(codes),
        properties(PropertyContext::ConnAck, version),
    )
        .prop_map(move |(session_present, reason_code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present: session_present && !reason_code.is_error() && version != V3_1,
                reason_code,
                properties,
            })
        })
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        any::<bool>(),
        topic_name(),
        1..=u16::MAX,
        properties(PropertyContext::Publish, version),
        vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(
            move |(dup, qos, retain, topic, packet_id, mut properties, payload, aliased)| {
                // MQTT 5: an empty topic name with a Topic Alias.
                let topic = if version.is_v5() && aliased {
                    properties.topic_alias = Some(properties.topic_alias.unwrap_or(1));
                    MqttString::default()
                } else {
                    topic
                };
                let at_most_once = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    packet_id: if at_most_once { 0 } else { packet_id },
                    properties,
                    payload: Bytes::from(payload),
                })
            },
        )
}

fn ack(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let kinds = [
        PacketType::PubAck,
        PacketType::PubRec,
        PacketType::PubRel,
        PacketType::PubComp,
    ];
    (
        select(kinds.to_vec()),
        1..=u16::MAX,
        any::<prop::sample::Index>(),
        properties(PropertyContext::Ack, version),
    )
        .prop_map(move |(kind, packet_id, index, properties)| {
            let reason_code = if version.is_v5() {
                let codes = reason_codes(kind);
                codes[index.index(codes.len())]
            } else {
                ReasonCode::Success
            };
            let ack = Ack {
                packet_id,
                reason_code,
                properties,
            };
            match kind {
                PacketType::PubAck => Packet::PubAck(ack),
                PacketType::PubRec => Packet::PubRec(ack),
                PacketType::PubRel => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        })
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let handling = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendAtSubscribeIfNew,
        RetainHandling::DoNotSend,
    ]);
    let subscription = (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        handling,
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, retain_handling)| {
                let v5 = version.is_v5();
                let shared = filter.as_str().starts_with("$share/");
                Subscription {
                    options: SubscriptionOptions {
                        qos,
                        no_local: v5 && no_local && !shared,
                        retain_as_published: v5 && retain_as_published,
                        retain_handling: if v5 {
                            retain_handling
                        } else {
                            RetainHandling::SendAtSubscribe
                        },
                    },
                    filter,
                }
            },
        );
    (
        1..=u16::MAX,
        properties(PropertyContext::Subscribe, version),
        vec(subscription, 1..4),
    )
        .prop_map(|(packet_id, properties, subscriptions)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = match version {
        V5 => reason_codes(PacketType::SubAck),
        V3_1_1 => vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
        V3_1 => vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
        ],
    };
    (
        1..=u16::MAX,
        properties(PropertyContext::SubAck, version),
        vec(select(codes), 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| {
            Packet::SubAck(SubAck {
                packet_id,
                properties,
                reason_codes,
            })
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        1..=u16::MAX,
        properties(PropertyContext::Unsubscribe, version),
        vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties,
                filters,
            })
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let codes = vec(select(reason_codes(PacketType::UnsubAck)), 1..5);
    (
        1..=u16::MAX,
        properties(PropertyContext::UnsubAck, version),
        codes,
    )
        .prop_map(move |(packet_id, properties, reason_codes)| {
            Packet::UnsubAck(UnsubAck {
                packet_id,
                properties,
                reason_codes: if version.is_v5() {
                    reason_codes
                } else {
                    Vec::new()
                },
            })
        })
}

fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        select(reason_codes(PacketType::Disconnect)),
        properties(PropertyContext::Disconnect, version),
    )
        .prop_map(move |(reason_code, properties)| {
            Packet::Disconnect(if version.is_v5() {
                Disconnect {
                    reason_code,
                    properties,
                }
            } else {
                Disconnect::default()
            })
        })
}

fn auth() -> impl Strategy<Value = Packet> {
    (
        select(reason_codes(PacketType::Auth)),
        properties(PropertyContext::Auth, V5),
    )
        .prop_map(|(reason_code, properties)| {
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        })
}

fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn check_round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).expect("encodes");
    prop_assert_eq!(out.len(), packet.encoded_len(version));
    let decoded = decode(&mut out, version, u32::MAX);
    prop_assert_eq!(decoded, Ok(Some(packet.clone())));
    prop_assert!(out.is_empty());
    Ok(())
}

/// Decodes frames from `bytes` until it runs out or errs; every decoded packet must re-encode to
/// bytes that decode to the same packet.
fn decode_all(bytes: &[u8], version: ProtocolVersion, max: u32) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, version, max) {
            Ok(Some(packet)) => {
                prop_assert!(buf.len() < before, "a decoded frame consumes bytes");
                let version = match &packet {
                    Packet::Connect(c) => c.protocol_version,
                    _ => version,
                };
                let mut again = BytesMut::new();
                packet.encode(version, &mut again).expect("encodes");
                prop_assert_eq!(again.len(), packet.encoded_len(version));
                prop_assert_eq!(decode(&mut again, version, u32::MAX), Ok(Some(packet)));
            }
            Ok(None) => {
                prop_assert_eq!(buf.len(), before, "an incomplete frame consumes nothing");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    select(vec![V3_1, V3_1_1, V5])
}

/// A version and a valid packet for it.
fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| (Just(v), packet(v)))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_packet_round_trips_v3_1(p in packet(V3_1)) {
        check_round_trip(&p, V3_1)?;
    }

    #[test]
    fn any_packet_round_trips_v3_1_1(p in packet(V3_1_1)) {
        check_round_trip(&p, V3_1_1)?;
    }

    #[test]
    fn any_packet_round_trips_v5(p in packet(V5)) {
        check_round_trip(&p, V5)?;
    }

    #[test]
    fn any_bytes_decode_or_fail_without_panic(
        bytes in vec(any::<u8>(), 0..256),
        v in version(),
        max in prop_oneof![Just(u32::MAX), 0..300u32],
    ) {
        decode_all(&bytes, v, max)?;
    }

    #[test]
    fn mutated_packets_decode_or_fail_without_panic(
        v in version(),
        p in version().prop_flat_map(packet),
        edits in vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
    ) {
        let mut bytes = BytesMut::new();
        p.encode(v, &mut bytes).expect("encodes");
        let mut bytes = bytes.to_vec();
        for (index, byte, kind) in edits {
            if bytes.is_empty() {
                break;
            }
            let at = index.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        decode_all(&bytes, v, u32::MAX)?;
    }

    #[test]
    fn frames_split_anywhere_decode_once_complete(
        (version, p) in versioned_packet(),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut whole = BytesMut::new();
        p.encode(version, &mut whole).expect("encodes");
        let at = cut.index(whole.len());
        let mut buf = BytesMut::from(&whole[..at]);
        prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(None));
        buf.extend_from_slice(&whole[at..]);
        prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(Some(p)));
    }

    #[test]
    fn oversize_is_rejected_and_size_limit_is_exact((version, p) in versioned_packet()) {
        let mut whole = BytesMut::new();
        p.encode(version, &mut whole).expect("encodes");
        let len = whole.len() as u32;
        let too_large = decode(&mut whole.clone(), version, len - 1);
        let is_too_large = matches!(too_large, Err(shardmq::codec::DecodeError::PacketTooLarge { .. }));
        prop_assert!(is_too_large);
        prop_assert_eq!(decode(&mut whole, version, len), Ok(Some(p)));
    }
}

/// A PUBLISH (3.1.1) frame for `topic` with QoS 0 and a one-byte payload.
fn publish_frame(topic: &str) -> BytesMut {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    body.push(b'x');
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&[0x30]);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        frame.extend_from_slice(&[byte]);
        if len == 0 {
            break;
        }
    }
    frame.extend_from_slice(&body);
    frame
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The codec's fast topic-name check agrees with the topic module's validator.
    #[test]
    fn publish_topic_rules_agree_with_the_topic_module(topic in "[a/+#\u{0}\u{e9} $]{0,12}") {
        let decoded = decode(&mut publish_frame(&topic), V3_1_1, u32::MAX);
        let valid = shardmq::topic::validate_topic_name(&topic).is_ok();
        prop_assert_eq!(decoded.is_ok(), valid, "{:?}: {:?}", topic, decoded);
    }
}
