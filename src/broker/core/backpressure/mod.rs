//! Backpressure: congested sessions, the memory budget, paused publishers, and the bounds that
//! hold whatever a single client does (issue 11, docs/memory.md).

pub(crate) mod congestion;
// Issue 11: outgoing-full read pause, partial packet timeout (docs/memory.md).
pub(crate) mod overload;
