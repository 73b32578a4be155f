//! The sans-IO shard core: everything a shard decides, with no sockets, no poll, no threads and
//! no clock of its own. [`ShardCore`] is driven through [`io`] (`handle_*` with the time passed
//! in, `poll_*` and `flush_writes` for what to do); the mio runtime (`broker::runtime`) and the
//! deterministic simulation (`crate::sim`) are its two drivers.
//!
//! Files by responsibility, one folder per component:
//! - the core and its interface: `shard.rs` (state, close, timers), `io.rs` (inputs and
//!   outputs), `keys.rs` (`ConnKey`, `SessionKey` and the slab that takes only its own key),
//!   `timers.rs` (timer heap), `mesh.rs` (messages to other shards, sending half of the
//!   channels);
//! - `connection/`: `mod.rs` (protocol state, outgoing buffer `OutBuf`, topic aliases),
//!   `dispatch.rs` (each packet after CONNECT), `protocol.rs` (CONNECT validation, PUBLISH wire
//!   layouts encoded once), `authn.rs` (passwords, enhanced authentication), `access.rs`
//!   (access control hooks), `fidelity.rs` (protocol-fidelity rules of issue 16);
//! - `sessions/`: `session.rs` (sans-IO session state, in-flight window, queue), `lifecycle.rs`
//!   (CONNECT, takeover across shards, detach, end), `client_ids.rs` (client id index),
//!   `persist.rs` (store hooks);
//! - `delivery/`: `fanout.rs` (route a publish, deliver to sessions, write layouts), `router.rs`
//!   (routing replica of other shards' filters, SUBACK barrier), `shared_subscriptions.rs`,
//!   `retained_pacing.rs` (QoS 0 retained messages paced on subscribe);
//! - `backpressure/`: `congestion.rs` (congested sessions, memory budget, paused publishers),
//!   `overload.rs` (outgoing-full read pause, slow consumers, partial packets, paced resend),
//!   `queue_charges.rs` (a queued message counted once per shard).

// The broker-wide state the core reads (config, registry, retained store, counters), re-exported
// so that the core's files name it as their siblings.
pub(crate) use super::{config, registry, retained, stats, Global};

pub mod backpressure;
pub mod connection;
pub mod delivery;
pub mod io;
pub mod keys;
pub mod mesh;
pub mod sessions;
pub(crate) mod shard;
pub mod timers;
pub use shard::ShardCore;
