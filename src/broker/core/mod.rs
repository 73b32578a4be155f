//! The sans-IO shard core: everything a shard decides, with no sockets, no poll, no threads and
//! no clock of its own. [`ShardCore`] is driven through [`io`] (`handle_*` with the time passed
//! in, `poll_*` and `flush_writes` for what to do); the mio runtime (`broker::runtime`) and the
//! deterministic simulation (`crate::sim`) are its two drivers.
//!
//! Files by responsibility:
//! - the core and its interface: `shard.rs` (state, close, timers), `io.rs` (inputs and
//!   outputs), `keys.rs` (`ConnKey`, `SessionKey` and the slab that takes only its own key);
//! - connections: `connection.rs` (protocol state, outgoing buffer `OutBuf`, topic aliases),
//!   `dispatch.rs` (each packet after CONNECT), `authn.rs` (passwords, enhanced
//!   authentication), `fidelity.rs` (protocol-fidelity rules of issue 16);
//! - sessions: `session.rs` (sans-IO session state, in-flight window, queue), `lifecycle.rs`
//!   (CONNECT, takeover across shards, detach, end), `client_ids.rs` (client id index);
//! - delivery: `fanout.rs` (route a publish, deliver to sessions, write layouts), `router.rs`
//!   (routing replica of other shards' filters, SUBACK barrier), `shared_subscriptions.rs`,
//!   `protocol.rs` (CONNECT validation, PUBLISH wire layouts encoded once);
//! - backpressure: `congestion.rs` (congested sessions, memory budget, paused publishers),
//!   `queue_charges.rs` (a queued message counted once per shard);
//! - time and peers: `timers.rs` (timer heap), `mesh.rs` (messages to other shards, sending
//!   half of the channels).

// The broker-wide state the core reads (config, registry, retained store, counters), re-exported
// so that the core's files name it as their siblings.
pub(crate) use super::{config, registry, retained, stats, Global};

// Access control (issue 13): the core's hooks into `crate::auth`.
mod access;
mod authn;
mod client_ids;
mod congestion;
pub mod connection;
mod dispatch;
mod fanout;
mod fidelity;
pub mod io;
pub mod keys;
mod lifecycle;
pub mod mesh;
// Issue 11: outgoing-full read pause, partial packet timeout (docs/memory.md).
mod overload;
mod persist;
pub mod protocol;
// Issue 11: a message shared by many queues counts once per shard in the memory budget.
mod queue_charges;
// Issue 11: QoS 0 retained messages on subscribe paced as the buffer drains.
mod retained_pacing;
pub mod router;
pub mod session;
pub(crate) mod shard;
pub mod shared_subscriptions;
pub mod timers;
pub use shard::ShardCore;
