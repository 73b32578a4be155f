//! shardmq: a thread-per-core MQTT 3.1, 3.1.1 and 5.0 broker.
//!
//! The crate is layered so that the protocol logic never touches a socket or a clock:
//! - [`codec`]: sans-IO framing, decoding and encoding of every MQTT packet.
//! - [`topic`]: topic names and filters, and the topic trie.
//! - [`auth`]: enhanced authentication (SCRAM-SHA-256) and password checks.
//! - [`client`]: the sans-IO client session and the synchronous mio-based client.
//! - [`broker`]: the thread-per-core broker: `broker::core` (the sans-IO shard core) and
//!   `broker::runtime` (mio loops, sockets, wakers).
//! - [`sim`]: a deterministic simulation driving N shard cores in one thread (tests, fuzzing).
//! - [`store`]: disk persistence, one append-only log per shard.
//! - [`ops`]: configuration files (ours and Mosquitto's), `$SYS`, metrics, logs, reload.
//! - [`transport`]: listeners, TLS, WebSocket and PROXY protocol under the broker's sockets.
#![forbid(unsafe_code)]

pub mod auth;
pub mod broker;
pub mod client;
pub mod codec;
pub mod ops;
pub mod sim;
pub mod store;
pub mod topic;
pub mod transport;
