//! The sans-IO shard core: everything a shard decides, with no sockets, no poll, no threads and
//! no clock of its own. [`ShardCore`] is driven through [`io`] (`handle_*` with the time passed
//! in, `poll_*` and `flush_writes` for what to do); the mio runtime (`broker::runtime`) and the
//! deterministic simulation (`crate::sim`) are its two drivers.
//!
//! Files by responsibility, one folder per component. Each component's `mod.rs` holds its
//! state as a struct with private fields, a small documented API and its own unit tests; the
//! other files of the folder are the `ShardCore` methods that need several components at once.
//! - the core and its interface: `shard.rs` (`ShardCore`: the components, connection close,
//!   timer dispatch), `io.rs` (inputs and outputs), `keys.rs` (`ConnKey`, `SessionKey` and the
//!   slab that takes only its own key), `timers.rs` (timer heap), `mesh.rs` (messages to other
//!   shards, sending half of the channels);
//! - `connection/`: `mod.rs` (`Connection`: protocol state, topic aliases), `outgoing.rs`
//!   (`OutBuf`: the outgoing buffer, the only code that counts outgoing bytes in the memory
//!   budget), `dispatch.rs` (each packet after CONNECT), `protocol.rs` (CONNECT validation,
//!   PUBLISH wire layouts encoded once), `authn.rs` (passwords, enhanced authentication),
//!   `access.rs` (access control hooks), `fidelity.rs` (protocol-fidelity rules of issue 16);
//! - `sessions/`: `mod.rs` (`Sessions`: the session slab and client id index kept in step,
//!   takeover requests, generations), `handover.rs` (`Handovers`: what a session moving
//!   between shards is sent meanwhile, finding F1), `session.rs` (one session's state,
//!   in-flight window, queue), `lifecycle.rs` (CONNECT, takeover across shards, detach, end),
//!   `handover.rs` (what a session moving between shards is sent meanwhile), `client_ids.rs` (the client id index), `persist.rs` (store hooks);
//! - `delivery/`: `mod.rs` (`Delivery`: trie, match cache, shared groups, routing replica,
//!   layouts, message reuse), `fanout.rs` (route a publish, deliver to sessions, write
//!   layouts, SUBACK barrier), `router.rs` (routing replica of other shards' filters),
//!   `shared_subscriptions.rs`, `retained_pacing.rs` (QoS 0 retained messages paced on
//!   subscribe);
//! - `backpressure/`: `mod.rs` (`Backpressure`: paused publishers, congested sessions, the
//!   first blocker of a publish), `memory.rs` (`MemoryBudget`), `congestion.rs` (session
//!   congestion and memory pressure: timers, flags, resuming publishers), `overload.rs`
//!   (outgoing-full read pause, slow consumers, partial packets, paced resend),
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
