//! Hand-built frames: the tests send exactly the bytes a rule is about.

use crate::support::broker::*;
use shardmq::codec::{Packet, ReasonCode};
use std::net::SocketAddr;

// Frame, string and property builders are the shared ones.
pub use crate::support::frames::{frame, props, str16};

/// An MQTT 5 CONNECT with `flags`, CONNECT properties `p` and `payload` after the client id.
pub fn connect_v5(flags: u8, p: &[u8], client_id: &str, payload: &[u8]) -> Vec<u8> {
    let body = [
        &str16(b"MQTT")[..],
        &[5, flags, 0, 0],
        &props(p),
        &str16(client_id.as_bytes()),
        payload,
    ]
    .concat();
    frame(0x10, &body)
}

/// An MQTT 3.1 (`MQIsdp`, level 3) CONNECT.
pub fn connect_v31(flags: u8, client_id: &str) -> Vec<u8> {
    let body = [
        &str16(b"MQIsdp")[..],
        &[3, flags, 0, 0],
        &str16(client_id.as_bytes()),
    ]
    .concat();
    frame(0x10, &body)
}

/// Sends raw CONNECT bytes and returns the CONNACK's code (the connection may close after).
pub fn connack_code(
    addr: SocketAddr,
    version: shardmq::codec::ProtocolVersion,
    bytes: &[u8],
) -> ReasonCode {
    let mut raw = Raw::tcp(addr);
    raw.version = version;
    raw.send_bytes(bytes);
    raw.expect_connack().reason_code
}

/// The reason code of the DISCONNECT the broker sends before closing.
pub fn disconnect_code(raw: &mut Raw) -> Option<ReasonCode> {
    raw.expect_closed().iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    })
}
