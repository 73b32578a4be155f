//! Protocol fidelity (issue 16), over real TCP against a broker started in the test: reason codes
//! per the spec's malformed/protocol-error wording, a minimal CONNACK (byte-identical to
//! Mosquitto's with Mosquitto's limits), the client's Maximum Packet Size, MQTT 3.1 leniency,
//! will and takeover edge cases, `$`-topic publishes, cross-shard subscribe visibility and log
//! escaping.

mod bytes;
mod connack;
mod dollar;
mod logs;
mod mosquitto;
mod reason_codes;
mod v31;
mod visibility;
mod wills;
