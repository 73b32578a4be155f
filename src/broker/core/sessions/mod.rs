//! Sessions: the session slab, the client id index, takeovers across shards and the store hooks.

pub(crate) mod client_ids;
pub(crate) mod lifecycle;
pub(crate) mod persist;
pub mod session;
