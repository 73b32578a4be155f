//! Backpressure: congested sessions, the memory budget, paused publishers, and the bounds that
//! hold whatever a single client does (issue 11, docs/memory.md).

pub(crate) mod congestion;
// Issue 11: outgoing-full read pause, partial packet timeout (docs/memory.md).
pub(crate) mod overload;
// Issue 11: a message shared by many queues counts once per shard in the memory budget.
pub(crate) mod queue_charges;
