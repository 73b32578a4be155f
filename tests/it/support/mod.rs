//! The one support module of the integration tests, split by what the helpers drive:
//!
//! - [`broker`]: a shardmq broker on 127.0.0.1 port 0 inside the test and [`broker::Raw`], a
//!   raw-bytes MQTT client built on the codec (blocking std sockets with timeouts); placing
//!   clients on chosen shards ([`broker::Placer`]).
//! - [`client`]: shardmq's own client driven on a thread ([`client::TestClient`]).
//! - [`frames`]: hand-built frames for the codec tests.
//! - [`interop`]: runs the Python conformance scripts of `tests/interop/`.
//! - [`mosquitto`]: a Mosquitto process as the reference broker, and `free_port`.
//! - [`transport`]: certificates made at test time, brokers with TLS / WebSocket / PROXY
//!   listeners, and blocking MQTT clients over TLS (rustls) and WebSocket (tungstenite).
//! - [`sim`]: raw-packet clients on the deterministic simulation, placed on any shard, on a
//!   simulated clock ([`sim::Peer`]).
//! - [`alloc`]: the binary's counting global allocator (per-thread counts).
//!
//! A helper used by one test module only lives in that module; what two modules share lives
//! here, once.

pub mod alloc;
pub mod broker;
pub mod client;
pub mod frames;
pub mod interop;
pub mod mosquitto;
pub mod sim;
pub mod transport;

/// Shared-subscription tests (real TCP and simulated): the members together got every message
/// exactly once.
pub fn assert_each_once(members: &[Vec<String>], sent: &std::collections::BTreeSet<String>) {
    let all: Vec<&String> = members.iter().flatten().collect();
    let distinct: std::collections::BTreeSet<String> = all.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        all.len(),
        sent.len(),
        "one delivery per message: {members:?}"
    );
    assert_eq!(&distinct, sent, "every message delivered: {members:?}");
}
