//! shardmq: a thread-per-core MQTT 3.1, 3.1.1 and 5.0 broker.
//!
//! The crate is layered so that the protocol logic never touches a socket or a clock:
//! - [`codec`]: sans-IO framing, decoding and encoding of every MQTT packet.
//! - [`topic`]: topic names and filters, and the topic trie.
//! - [`broker`]: the thread-per-core broker (shards, mesh, sessions).
#![forbid(unsafe_code)]

pub mod broker;
pub mod codec;
pub mod topic;
