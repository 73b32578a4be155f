//! Delivery: the trie and its match cache, the routing replica, shared subscriptions, the wire
//! layouts a publish is encoded into once, and fan-out to the sessions.

pub(crate) mod fanout;
// Issue 11: QoS 0 retained messages on subscribe paced as the buffer drains.
pub(crate) mod retained_pacing;
pub mod router;
pub mod shared_subscriptions;
