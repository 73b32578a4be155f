//! The sans-IO shard core: everything a shard decides, with no sockets, no poll, no threads and
//! no clock of its own (see `ShardCore`'s doc and `../runtime` for the layer that moves bytes).

// The broker-wide state the core reads (config, registry, retained store, counters), re-exported
// so that the core's files name it as their siblings.
pub(crate) use super::{config, registry, retained, stats, Global};

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
pub mod protocol;
pub mod router;
pub mod session;
pub(crate) mod shard;
pub mod shared_subscriptions;
pub mod timers;
pub use shard::ShardCore;
