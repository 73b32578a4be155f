//! Items 2 and 3: a minimal CONNACK (and acks), byte-identical to Mosquitto 2.0's with
//! Mosquitto's limits; the client's Maximum Packet Size honoured for CONNACK and acks.

use super::bytes::*;
use super::mosquitto::Mosquitto;
use crate::support::broker::*;
use shardmq::broker::Config;
use shardmq::codec::{ProtocolVersion::V5, QoS, ReasonCode};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Sends `request` and reads what comes back until `expected_len` bytes arrived, the peer
/// closed, or a short quiet spell passed.
fn exchange(stream: &mut TcpStream, request: &[u8], expected_len: usize) -> Vec<u8> {
    stream.write_all(request).expect("send");
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < expected_len && Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut chunk = [0u8; 512];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    got
}

/// An MQTT 5 CONNECT with keep-alive 60 (Mosquitto answers keep-alive 0 with Server Keep Alive
/// 65,535, as it caps every keep-alive at its `max_keepalive`; shardmq does not cap 0 by default).
fn connect_60(client_id: &str, p: &[u8]) -> Vec<u8> {
    let body = [
        &str16(b"MQTT")[..],
        &[5, 0x02, 0, 60],
        &props(p),
        &str16(client_id.as_bytes()),
    ]
    .concat();
    frame(0x10, &body)
}

/// One conversation, the bytes of each answer: CONNACK, SUBACK, PUBACK (no subscriber), PUBACK
/// (matched), UNSUBACK, PINGRESP.
fn conversation(addr: SocketAddr) -> Vec<Vec<u8>> {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).unwrap();
    let publish =
        |topic: &[u8], id: u8| frame(0x32, &[&str16(topic)[..], &[0, id, 0], b"x"].concat());
    let mut answers = vec![exchange(&mut s, &connect_60("fidelity", &[]), 11)];
    answers.push(exchange(
        &mut s,
        &frame(0x82, &[&[0, 1, 0][..], &str16(b"fid/a"), &[1]].concat()),
        6,
    ));
    answers.push(exchange(&mut s, &publish(b"fid/none", 2), 5));
    // Matched: the PUBACK (4 bytes) and the PUBLISH to ourselves; keep only the PUBACK.
    let matched = exchange(&mut s, &publish(b"fid/a", 3), 4 + 13);
    let puback_at = matched.iter().position(|&b| b == 0x40).expect("a PUBACK");
    answers.push(matched[puback_at..puback_at + 2 + matched[puback_at + 1] as usize].to_vec());
    answers.push(exchange(
        &mut s,
        &frame(0xA2, &[&[0, 4, 0][..], &str16(b"fid/a")].concat()),
        6,
    ));
    answers.push(exchange(&mut s, &[0xC0, 0x00], 2));
    answers
}

/// Mosquitto's default limits: Receive Maximum 20 (`max_inflight_messages`), Topic Alias
/// Maximum 10, no packet size limit (`max_packet_size 0`).
fn mosquitto_defaults() -> Config {
    Config {
        receive_maximum: 20,
        topic_alias_maximum: 10,
        max_packet_size: 0,
        ..config(1)
    }
}

#[test]
fn with_mosquittos_limits_the_answers_are_byte_identical_to_mosquitto_2() {
    let mosquitto = Mosquitto::start();
    let reference = conversation(mosquitto.addr());
    // Mosquitto 2.0: Topic Alias Maximum 10, Receive Maximum 20, nothing else.
    assert_eq!(
        reference[0],
        [0x20, 0x09, 0x00, 0x00, 0x06, 0x22, 0x00, 0x0A, 0x21, 0x00, 0x14],
        "Mosquitto's CONNACK changed"
    );
    let broker = start_with(mosquitto_defaults());
    let ours = conversation(addr(&broker));
    for (i, name) in [
        "CONNACK", "SUBACK", "PUBACK", "PUBACK", "UNSUBACK", "PINGRESP",
    ]
    .iter()
    .enumerate()
    {
        assert_eq!(
            format!("{:02X?}", ours[i]),
            format!("{:02X?}", reference[i]),
            "{name} (answer {i})"
        );
    }
}

#[test]
fn default_connack_repeats_no_default() {
    let broker = start_broker(1);
    let mut s = TcpStream::connect(addr(&broker)).unwrap();
    let connack = exchange(&mut s, &connect_60("defaults", &[]), 5);
    // Receive Maximum 1,024 (0x21), Topic Alias Maximum 10 (0x22), Maximum Packet Size 1 MiB
    // (0x27), and none of Retain/Wildcard/Subscription Identifier/Shared Available or Maximum
    // QoS, whose absent value is what shardmq supports.
    assert_eq!(
        connack,
        [
            0x20, 0x0E, 0x00, 0x00, 0x0B, 0x22, 0x00, 0x0A, 0x27, 0x00, 0x10, 0x00, 0x00, 0x21,
            0x04, 0x00
        ]
    );
}

#[test]
fn max_packet_size_0_means_none_and_advertises_none() {
    let config = Config::from_toml_str("max_packet_size = 0").expect("max_packet_size 0 is valid");
    assert_eq!(config.max_packet_size, 0);
    let broker = start_with(Config {
        max_packet_size: 0,
        receive_maximum: u16::MAX,
        topic_alias_maximum: 0,
        ..crate::support::broker::config(1)
    });
    let mut s = TcpStream::connect(addr(&broker)).unwrap();
    // Nothing to say: Receive Maximum 65,535 and no limits are the defaults.
    assert_eq!(
        exchange(&mut s, &connect_60("none", &[]), 5),
        [0x20, 0x03, 0x00, 0x00, 0x00]
    );
    // A 2 MiB PUBLISH (over the 1 MiB default) is accepted.
    let mut raw = Raw::connect(addr(&broker), V5, "big");
    raw.publish_acked("big", &vec![7u8; 2 << 20], QoS::AtLeastOnce, false, 1);
}

/// [MQTT-3.1.2-24]: a client announcing 2 bytes gets nothing it cannot take: no CONNACK fits, so
/// the connection closes with nothing sent (Mosquitto does the same).
#[test]
fn a_connack_that_cannot_fit_is_not_sent() {
    let broker = start_broker(1);
    let mut s = TcpStream::connect(addr(&broker)).unwrap();
    let got = exchange(&mut s, &connect_60("tiny", &[0x27, 0, 0, 0, 2]), 1);
    assert_eq!(got, Vec::<u8>::new(), "sent {got:02X?}");
    // A refusal (unknown authentication method, 0x8C) does not fit 4 bytes either.
    let mut s = TcpStream::connect(addr(&broker)).unwrap();
    let method = [&[0x15][..], &str16(b"NOPE"), &[0x27, 0, 0, 0, 4]].concat();
    let got = exchange(&mut s, &connect_60("tiny2", &method), 1);
    assert_eq!(got, Vec::<u8>::new(), "sent {got:02X?}");
}

/// [MQTT-3.1.2-24]: what may be left out is left out so that the CONNACK fits: with 13 bytes the
/// default CONNACK (16 bytes) loses Topic Alias Maximum (absent: 0, no aliases) but keeps Receive
/// Maximum and Maximum Packet Size, which bind the client.
#[test]
fn a_connack_is_fitted_into_the_clients_maximum_packet_size() {
    let broker = start_broker(1);
    let mut s = TcpStream::connect(addr(&broker)).unwrap();
    let got = exchange(&mut s, &connect_60("small", &[0x27, 0, 0, 0, 13]), 13);
    assert_eq!(
        got,
        [0x20, 0x0B, 0x00, 0x00, 0x08, 0x27, 0x00, 0x10, 0x00, 0x00, 0x21, 0x04, 0x00]
    );
    let mut raw = Raw {
        stream: s,
        buf: Default::default(),
        version: V5,
    };
    raw.ping();
    assert_eq!(raw.subscribe("fit/#", QoS::AtMostOnce), ReasonCode::Success);
}
