//! Protocol errors and framing, checked from outside with a raw socket client
//! (tests/interop/raw_protocol.py): second CONNECT, bad protocol name and level, reserved flags,
//! packets before CONNECT, QoS 3, wildcards in topic names, server-only packets, oversized and
//! malformed packets, keepalive. See tests/interop/SCENARIOS.md.

use crate::support::interop::{require_python, run_against_mosquitto, run_against_shardmq};

#[test]
fn mosquitto_passes_raw_protocol_suite() {
    require_python(false);
    run_against_mosquitto("raw_protocol.py", &[]);
}

#[test]
fn shardmq_passes_raw_protocol_suite() {
    require_python(false);
    run_against_shardmq("raw_protocol.py", &[]).assert_passed();
}
