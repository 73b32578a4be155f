//! Sessions: the session slab, the client id index, takeovers across shards and the store hooks.

pub(crate) mod client_ids;
// Finding F1: what a session moving between shards is sent meanwhile, without loss, duplicate
// or reordering.
pub mod handover;
pub(crate) mod lifecycle;
pub(crate) mod persist;
pub mod session;
