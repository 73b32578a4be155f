//! Interoperability with Mosquitto's command-line clients, `mosquitto_pub` and `mosquitto_sub`
//! (tests/interop/mosquitto_clients.py): QoS 0/1/2 and MQTT 5 properties as those tools print
//! them, retained messages, persistent sessions, wills, ordering, binary payloads.
//! `.ci/test` installs mosquitto-clients; without them the tests fail.

use crate::support::interop::{require_python, run_against_mosquitto, run_against_shardmq};

#[test]
fn mosquitto_passes_mosquitto_clients_suite() {
    require_python(false);
    run_against_mosquitto("mosquitto_clients.py", &[]);
}

#[test]
fn shardmq_passes_mosquitto_clients_suite() {
    require_python(false);
    run_against_shardmq("mosquitto_clients.py", &[]).assert_passed();
}
