//! The runtime: the thin I/O layer around the sans-IO core (mio poll loops, sockets, wakers,
//! acceptors).

pub(crate) use super::core::mesh;
pub(crate) use super::{stats, Shared, WAKER_TOKEN};

pub(crate) mod acceptor;
