//! Tests of `protocol.rs`, kept apart so that the module stays short.
use super::*;
use crate::broker::session::{Message, ReceivedFrame};
use crate::codec::MoreProperties;
use std::sync::Arc;
use std::time::Instant;

/// A received message with its frame, as the shard builds it from a publisher's PUBLISH.
fn received(version: ProtocolVersion, qos: QoS, retain: bool, dup: bool) -> MessageRef {
    let properties = if version.is_v5() {
        let mut properties = Properties::from(MoreProperties {
            user_properties: vec![(MqttString::from("k"), MqttString::from("v"))],
            ..MoreProperties::default()
        });
        properties.message_expiry_interval = Some(60);
        properties
    } else {
        Properties::default()
    };
    let sent = Publish {
        dup: dup && qos != QoS::AtMostOnce,
        qos,
        retain,
        topic: MqttString::from("a/b"),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { 7 },
        properties,
        payload: Bytes::from_static(b"payload"),
    };
    let mut wire = BytesMut::new();
    sent.encode(version, &mut wire).expect("encodes");
    let Ok(Some((Packet::Publish(mut publish), frame))) =
        crate::codec::decode_with_frame(&mut wire, version, u32::MAX)
    else {
        panic!("not a PUBLISH");
    };
    assert_eq!(frame.len(), sent.encoded_len(version));
    // As `handle_publish` routes it.
    publish.dup = false;
    publish.packet_id = 0;
    Arc::new(Message {
        publish,
        received_at: Instant::now(),
        frame: Some(ReceivedFrame {
            bytes: frame,
            v5: version.is_v5(),
        }),
    })
}

#[test]
fn forwarded_frames_are_the_layouts_encoding_would_write() {
    let versions = [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ];
    let qoss = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut forwarded = 0;
    let mut scratch = BytesMut::new();
    for publisher in versions {
        for qos in qoss {
            for (retain, dup) in [(false, false), (true, false), (false, true)] {
                let message = received(publisher, qos, retain, dup);
                for subscriber in versions {
                    for sub_qos in qoss.into_iter().filter(|&q| q <= qos) {
                        for sub_retain in [false, true] {
                            let mut cache = LayoutCache::default();
                            let cached = cache
                                .get(&message, subscriber, sub_qos, sub_retain, &mut scratch)
                                .expect("encodes")
                                .clone();
                            let options = LayoutOptions {
                                qos: sub_qos,
                                retain: sub_retain,
                                dup: false,
                                message_expiry_interval: None,
                                topic_alias: None,
                            };
                            let encoded =
                                encode_layout(&message, subscriber, options, &mut scratch)
                                    .expect("encodes");
                            assert_eq!(
                                (&cached.head, &cached.tail),
                                (&encoded.head, &encoded.tail),
                                "{publisher:?} {qos:?} retain {retain} dup {dup} -> \
                                 {subscriber:?} {sub_qos:?} retain {sub_retain}"
                            );
                            let frame = &message.frame.as_ref().unwrap().bytes;
                            if cached.head.as_ptr() == frame.as_ptr() {
                                forwarded += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    // Same family, QoS and retain flag, no DUP: 3.x to 3.x (4 version pairs) and 5 to 5;
    // per pair, QoS 0 three times (a QoS 0 publish never carries DUP) and QoS 1 and 2
    // twice each (not the DUP publishes).
    assert_eq!(forwarded, 5 * (3 + 2 + 2));
}

#[test]
fn layout_cache_clears_what_it_filled() {
    let message = received(ProtocolVersion::V5, QoS::ExactlyOnce, true, false);
    let mut cache = LayoutCache::default();
    let mut scratch = BytesMut::new();
    let first = cache
        .get(
            &message,
            ProtocolVersion::V5,
            QoS::AtLeastOnce,
            false,
            &mut scratch,
        )
        .expect("encodes")
        .clone();
    cache
        .get(
            &message,
            ProtocolVersion::V3_1_1,
            QoS::AtMostOnce,
            true,
            &mut scratch,
        )
        .expect("encodes");
    assert_eq!(cache.filled.count_ones(), 2);
    cache.clear();
    assert_eq!(cache.filled, 0);
    assert!(cache.slots.iter().all(Option::is_none));
    let again = cache
        .get(
            &message,
            ProtocolVersion::V5,
            QoS::AtLeastOnce,
            false,
            &mut scratch,
        )
        .expect("encodes")
        .clone();
    assert_eq!((first.head, first.tail), (again.head, again.tail));
}

#[test]
fn peeks_the_protocol_level_of_connect() {
    assert!(is_v5_connect(&[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 5]));
    assert!(!is_v5_connect(&[0x10, 10, 0, 4, b'M', b'Q', b'T', b'T', 4]));
    assert!(!is_v5_connect(&[0x10, 10, 0, 4, b'M']));
    assert!(!is_v5_connect(&[0x30, 10, 0, 4, b'M', b'Q', b'T', b'T', 5]));
    assert!(!is_v5_connect(&[]));
}

#[test]
fn topic_levels_counts_separators() {
    assert_eq!(topic_levels("a"), 1);
    assert_eq!(topic_levels("a/b/c"), 3);
    assert_eq!(topic_levels("/"), 2);
}

#[test]
fn v311_empty_id_rules() {
    let config = Config::default();
    let mut connect = Connect {
        clean_start: false,
        ..Connect::default()
    };
    let refused = validate_connect(&connect, &config, || MqttString::from("x"));
    assert_eq!(refused.err(), Some(ReasonCode::ClientIdentifierNotValid));
    connect.clean_start = true;
    let accepted = validate_connect(&connect, &config, || MqttString::from("x")).unwrap();
    assert_eq!(accepted.client_id.as_str(), "x");
    assert_eq!(accepted.session_expiry_interval_secs, 0);
}

#[test]
fn keep_alive_cap_per_version() {
    let config = Config {
        max_keep_alive_secs: 60,
        ..Config::default()
    };
    let mut connect = Connect {
        client_id: MqttString::from("c"),
        keep_alive_secs: 100,
        ..Connect::default()
    };
    assert!(validate_connect(&connect, &config, MqttString::default).is_err());
    connect.protocol_version = ProtocolVersion::V5;
    let accepted = validate_connect(&connect, &config, MqttString::default).unwrap();
    assert_eq!(accepted.keep_alive_secs, 60);
    assert_eq!(accepted.server_keep_alive, Some(60));
}

#[test]
fn v31_client_id_length() {
    let config = Config::default();
    let connect = Connect {
        protocol_version: ProtocolVersion::V3_1,
        client_id: MqttString::from("123456789012345678901234"),
        ..Connect::default()
    };
    assert!(validate_connect(&connect, &config, MqttString::default).is_err());
}

/// Issue 10's example: `--response-information PREFIX` and a 65,535-byte client id made a
/// Response Information over 65,535 bytes. It is left out, whole (never cut inside a
/// character), and sent when it fits.
#[test]
fn response_information_over_65535_bytes_is_left_out() {
    let config = Config {
        response_information: Some("résp/".into()),
        ..Config::default()
    };
    let connect = |client_id: String| {
        let mut connect = Connect {
            protocol_version: ProtocolVersion::V5,
            client_id: MqttString::from(client_id),
            ..Connect::default()
        };
        connect.properties.request_response_information = Some(1);
        connect
    };
    let prefix_len = "résp/".len();
    for (client_id, sent) in [
        ("c".repeat(65_535), false),
        ("é".repeat(32_765), false), // 65,530 bytes + a 6-byte prefix
        ("c".repeat(65_535 - prefix_len), true),
    ] {
        let accepted = validate_connect(&connect(client_id.clone()), &config, MqttString::default)
            .expect("accepted");
        let connack = connack_accepted(&accepted, false, ProtocolVersion::V5, &config);
        let Packet::ConnAck(ack) = &connack else {
            panic!("not a CONNACK");
        };
        let info = ack.properties.response_information.as_ref();
        assert_eq!(info.is_some(), sent, "{}-byte client id", client_id.len());
        if let Some(info) = info {
            assert_eq!(info.as_str(), format!("résp/{client_id}"));
        }
        let mut out = BytesMut::new();
        connack
            .encode(ProtocolVersion::V5, &mut out)
            .expect("the CONNACK encodes");
    }
}

/// A received PUBLISH as large as MQTT allows cannot be delivered with what a delivery adds
/// (here the property length of a 3.1.1 message sent to an MQTT 5 subscriber): the layout is
/// an error (the shard discards and counts it), for the cache and a fresh encoding alike.
#[test]
fn a_delivery_over_the_largest_packet_is_an_error() {
    let payload_len = crate::codec::REMAINING_LENGTH_MAX as usize - 3;
    let message = Arc::new(Message {
        publish: Publish {
            topic: MqttString::from("t"),
            // Zeroed pages, never touched: refused before the payload is copied.
            payload: Bytes::from(vec![0u8; payload_len]),
            ..Publish::default()
        },
        received_at: Instant::now(),
        frame: None,
    });
    let mut scratch = BytesMut::new();
    let mut cache = LayoutCache::default();
    let v5 = cache.get(
        &message,
        ProtocolVersion::V5,
        QoS::AtMostOnce,
        false,
        &mut scratch,
    );
    assert!(
        matches!(v5, Err(EncodeError::VarintTooLarge { .. })),
        "{v5:?}"
    );
    assert_eq!(cache.filled, 0, "nothing cached");
    let options = LayoutOptions {
        qos: QoS::AtMostOnce,
        retain: false,
        dup: false,
        message_expiry_interval: None,
        topic_alias: Some((1, false)),
    };
    let fresh = encode_layout(&message, ProtocolVersion::V5, options, &mut scratch);
    assert!(fresh.is_err());
}

/// Issue 17: the borrowed parts of a small forwarded frame are the bytes of its forwarded
/// layout, whenever there is one; a frame above the copy threshold is not borrowed.
#[test]
fn forwarded_parts_are_the_forwarded_layout() {
    let versions = [ProtocolVersion::V3_1_1, ProtocolVersion::V5];
    let qoss = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut borrowed = 0;
    for publisher in versions {
        for qos in qoss {
            for retain in [false, true] {
                let message = received(publisher, qos, retain, false);
                for subscriber in versions {
                    for sub_qos in qoss {
                        let layout = forwarded_layout(&message, subscriber, sub_qos, retain);
                        let parts = forwarded_parts(&message, subscriber, sub_qos, retain);
                        let expected = layout.as_ref().map(|l| (&l.head[..], &l.tail[..]));
                        assert_eq!(parts, expected, "{publisher:?} {qos:?} -> {subscriber:?}");
                        if let (Some((head, tail)), Some(layout)) = (parts, &layout) {
                            assert_eq!(
                                Wire::Parts { head, tail }.len(sub_qos),
                                layout.len(sub_qos)
                            );
                            borrowed += 1;
                        }
                    }
                }
            }
        }
    }
    // Same family and QoS: one per (version, QoS, retain).
    assert_eq!(borrowed, 2 * 3 * 2);
    let mut big = Message::clone(&received(
        ProtocolVersion::V5,
        QoS::AtLeastOnce,
        false,
        false,
    ));
    let frame = big.frame.as_mut().expect("a frame");
    let mut bytes = BytesMut::from(&frame.bytes[..]);
    bytes.resize(
        crate::broker::core::connection::outgoing::COPY_THRESHOLD_BYTES + 1,
        0,
    );
    frame.bytes = bytes.freeze();
    let big = Arc::new(big);
    assert!(forwarded_layout(&big, ProtocolVersion::V5, QoS::AtLeastOnce, false).is_some());
    assert!(forwarded_parts(&big, ProtocolVersion::V5, QoS::AtLeastOnce, false).is_none());
}
