//! Item 4: MQTT 3.1 (`MQIsdp`, level 3) as 3.1 clients expect it. 3.1 has no reserved-flag rule
//! (its fixed header has DUP/QoS/RETAIN on every packet, "not used" where meaningless; its
//! CONNECT has no reserved bit and no Will-Flag pairing rules), but its client id is 1 to 23
//! characters (CONNACK return code 2 otherwise).

use super::bytes::*;
use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion::V3_1, ReasonCode};

#[test]
fn reserved_connect_flag_does_not_close_a_3_1_client() {
    let broker = start_broker(1);
    // Clean session + the reserved bit, and Will QoS/Retain bits without a will.
    for flags in [0x03, 0x3A] {
        assert_eq!(
            connack_code(addr(&broker), V3_1, &connect_v31(flags, "v31-flags")),
            ReasonCode::Success,
            "flags {flags:02X}"
        );
    }
}

#[test]
fn fixed_header_flags_do_not_close_a_3_1_client() {
    let broker = start_broker(1);
    let mut raw = Raw::tcp(addr(&broker));
    raw.version = V3_1;
    raw.send_bytes(&connect_v31(0x02, "v31-header"));
    assert_eq!(raw.expect_connack().reason_code, ReasonCode::Success);
    // PINGREQ with QoS 1 bits, SUBSCRIBE with DUP, a QoS 0 PUBLISH with DUP.
    raw.send_bytes(&[0xC2, 0x00]);
    assert!(matches!(raw.next(), Packet::PingResp));
    raw.send_bytes(&frame(0x8A, &[&[0, 7][..], &str16(b"t"), &[0]].concat()));
    assert_eq!(raw.expect_suback().packet_id, 7);
    raw.send_bytes(&frame(0x38, &[&str16(b"t")[..], b"x"].concat()));
    assert_eq!(raw.expect_publish().payload.as_ref(), b"x");
}

#[test]
fn client_id_limit_stays_23_characters() {
    let broker = start_broker(1);
    let ok = "a".repeat(23);
    let long = "a".repeat(24);
    assert_eq!(
        connack_code(addr(&broker), V3_1, &connect_v31(0x02, &ok)),
        ReasonCode::Success
    );
    assert_eq!(
        connack_code(addr(&broker), V3_1, &connect_v31(0x02, &long)),
        ReasonCode::ClientIdentifierNotValid
    );
    assert_eq!(
        connack_code(addr(&broker), V3_1, &connect_v31(0x02, "")),
        ReasonCode::ClientIdentifierNotValid
    );
}
