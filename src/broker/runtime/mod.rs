//! The runtime: the thin I/O layer around the sans-IO core. Each shard thread runs
//! `shard_loop` (one mio `Poll`, its sockets, read/write until `WouldBlock`, the mesh's
//! receiving end and wakers); acceptor threads run `acceptor`. The socket type is named in
//! one place, [`stream`].

pub(crate) use super::{stats, Global, WAKER_TOKEN};

pub(crate) mod acceptor;
pub(crate) mod inbox;
pub(crate) mod shard_loop;
pub mod stream;
