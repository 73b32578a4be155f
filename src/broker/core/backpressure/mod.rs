//! Backpressure: congested sessions, the memory budget, paused publishers, and the bounds that
//! hold whatever a single client does (issue 11, docs/memory.md).
//!
//! [`Backpressure`] is the component's state with its own small API: which publishers are
//! paused and on what, how many sessions are congested, what the publish being routed met, and
//! the [`MemoryBudget`]. It knows connections and sessions only by key; the shard's glue that
//! needs them (timers, counters, the congestion flags other shards read) is `congestion.rs`
//! and `overload.rs`.

pub(crate) mod congestion;
pub mod memory;
// Issue 11: outgoing-full read pause, partial packet timeout (docs/memory.md).
pub(crate) mod overload;
// Issue 11: a message shared by many queues counts once per shard in the memory budget.
pub(crate) mod queue_charges;

use super::keys::{ConnKey, SessionKey};
use super::mesh::ShardId;
pub use memory::MemoryBudget;

/// What a publisher paused for congestion waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// A session on this shard (slab key) is congested.
    Session(SessionKey),
    /// A destination shard has congested sessions (or is under memory pressure). Routing notes
    /// this; pausing turns it into [`Blocker::ShardEpisode`].
    Shard(ShardId),
    /// The congestion episode (`CongestionFlag::1`) of a destination shard that was current
    /// when the publisher was paused: it waits until that episode ends.
    ShardEpisode(ShardId, u64),
    /// This shard is under memory pressure.
    Memory,
}

/// One shard's backpressure state, apart from the connections and sessions it refers to:
/// publishers paused on a full mesh channel or on congestion, the count of congested sessions
/// behind `Global::congested`, the first blocker the publish being routed met, and the memory
/// budget.
#[derive(Debug)]
pub struct Backpressure {
    /// Connections paused by a full mesh channel (each once: its `PAUSED_MESH` bit).
    paused_on_mesh: Vec<ConnKey>,
    /// Publishers paused for congestion: (connection key, connection id, what they wait for).
    /// At most one entry per connection (its `PAUSED_CONGESTION` bit).
    paused_on_congestion: Vec<(ConnKey, u64, Blocker)>,
    /// Scratch for [`Backpressure::take_resumable`], kept to avoid an allocation per turn.
    resumed_scratch: Vec<(ConnKey, u64)>,
    /// Sessions on this shard that are congested, plus one while under memory pressure;
    /// `Global::congested[id]` says whether it is above zero.
    congested_sessions: usize,
    /// The first congested recipient met while routing the current publish.
    blocker: Option<Blocker>,
    /// This shard's part of `max_buffered_bytes` and what its buffers and queues hold.
    memory: MemoryBudget,
}

impl Backpressure {
    pub fn new(memory: MemoryBudget) -> Backpressure {
        Backpressure {
            paused_on_mesh: Vec::new(),
            paused_on_congestion: Vec::new(),
            resumed_scratch: Vec::new(),
            congested_sessions: 0,
            blocker: None,
            memory,
        }
    }

    /// The memory budget.
    #[inline]
    pub fn memory(&self) -> &MemoryBudget {
        &self.memory
    }

    /// The memory budget, to count bytes in and out.
    #[inline]
    pub fn memory_mut(&mut self) -> &mut MemoryBudget {
        &mut self.memory
    }

    /// A connection stops being read until the mesh overflow drains (the caller set its
    /// `PAUSED_MESH` bit, so it comes here once).
    pub fn pause_on_mesh(&mut self, key: ConnKey) {
        self.paused_on_mesh.push(key);
    }

    /// Whether connections wait for the mesh overflow to drain.
    pub fn any_paused_on_mesh(&self) -> bool {
        !self.paused_on_mesh.is_empty()
    }

    /// The connections paused on the mesh, all resumed now.
    pub fn take_paused_on_mesh(&mut self) -> Vec<ConnKey> {
        std::mem::take(&mut self.paused_on_mesh)
    }

    /// A publish starts being routed: nothing met yet.
    #[inline]
    pub fn start_publish(&mut self) {
        self.blocker = None;
    }

    /// Whether the publish being routed already met a blocker (later ones are not noted).
    #[inline]
    pub fn has_blocker(&self) -> bool {
        self.blocker.is_some()
    }

    /// Notes what holds the publish being routed back, unless something already does: only the
    /// first blocker a publisher meets pauses it.
    #[inline]
    pub fn note_blocker(&mut self, blocker: Blocker) {
        self.blocker.get_or_insert(blocker);
    }

    /// What the routed publish met, if anything (taken: the next publish starts clear).
    #[inline]
    pub fn take_blocker(&mut self) -> Option<Blocker> {
        self.blocker.take()
    }

    /// One more congested session (or memory pressure). Returns true on the 0 -> 1 transition,
    /// when the shard raises its congestion flag.
    pub fn congested_add(&mut self) -> bool {
        self.congested_sessions += 1;
        self.congested_sessions == 1
    }

    /// One congested session less. Returns true on the 1 -> 0 transition, when the shard
    /// clears its flag and wakes its peers.
    pub fn congested_remove(&mut self) -> bool {
        debug_assert!(self.congested_sessions > 0);
        if self.congested_sessions == 0 {
            return false;
        }
        self.congested_sessions -= 1;
        self.congested_sessions == 0
    }

    /// Publisher `key` (connection `id`) stops being read until `blocker` clears (the caller
    /// set its `PAUSED_CONGESTION` bit, so it comes here once).
    pub fn pause_on_congestion(&mut self, key: ConnKey, id: u64, blocker: Blocker) {
        self.paused_on_congestion.push((key, id, blocker));
    }

    /// Whether a blocker still holds: [`Blocker::Memory`] is answered here, the others by
    /// `holds_elsewhere` (sessions and shards are the shard's to ask).
    fn holds(&self, blocker: Blocker, holds_elsewhere: &impl Fn(Blocker) -> bool) -> bool {
        match blocker {
            Blocker::Memory => self.memory.under_pressure(),
            other => holds_elsewhere(other),
        }
    }

    /// Whether a publisher paused for congestion may be resumed now.
    pub fn any_resumable(&self, holds_elsewhere: impl Fn(Blocker) -> bool) -> bool {
        self.paused_on_congestion
            .iter()
            .any(|&(_, _, blocker)| !self.holds(blocker, &holds_elsewhere))
    }

    /// Removes the publishers whose blocker cleared and returns them as (key, connection id);
    /// give the vector back with [`Backpressure::recycle_resumed`].
    pub fn take_resumable(
        &mut self,
        holds_elsewhere: impl Fn(Blocker) -> bool,
    ) -> Vec<(ConnKey, u64)> {
        let mut paused = std::mem::take(&mut self.paused_on_congestion);
        let mut resumed = std::mem::take(&mut self.resumed_scratch);
        paused.retain(|&(key, id, blocker)| {
            if self.holds(blocker, &holds_elsewhere) {
                return true;
            }
            resumed.push((key, id));
            false
        });
        self.paused_on_congestion = paused;
        resumed
    }

    /// The vector [`Backpressure::take_resumable`] returned, for the next turn.
    pub fn recycle_resumed(&mut self, mut resumed: Vec<(ConnKey, u64)>) {
        resumed.clear();
        self.resumed_scratch = resumed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backpressure() -> Backpressure {
        Backpressure::new(MemoryBudget::new(1_000, 1))
    }

    #[test]
    fn only_the_first_blocker_of_a_publish_is_kept() {
        let mut bp = backpressure();
        bp.start_publish();
        assert!(!bp.has_blocker());
        bp.note_blocker(Blocker::Shard(2));
        bp.note_blocker(Blocker::Memory);
        assert_eq!(bp.take_blocker(), Some(Blocker::Shard(2)));
        assert_eq!(bp.take_blocker(), None);
        bp.note_blocker(Blocker::Memory);
        bp.start_publish();
        assert_eq!(bp.take_blocker(), None, "a new publish starts clear");
    }

    #[test]
    fn the_congested_count_reports_its_transitions() {
        let mut bp = backpressure();
        assert!(bp.congested_add(), "0 -> 1 raises the flag");
        assert!(!bp.congested_add());
        assert!(!bp.congested_remove());
        assert!(bp.congested_remove(), "1 -> 0 clears the flag");
    }

    #[test]
    fn mesh_pauses_are_taken_all_at_once() {
        let mut bp = backpressure();
        assert!(!bp.any_paused_on_mesh());
        bp.pause_on_mesh(ConnKey::new(3));
        bp.pause_on_mesh(ConnKey::new(5));
        assert!(bp.any_paused_on_mesh());
        assert_eq!(bp.take_paused_on_mesh(), [ConnKey::new(3), ConnKey::new(5)]);
        assert!(!bp.any_paused_on_mesh());
    }

    #[test]
    fn publishers_resume_when_their_own_blocker_clears() {
        let mut bp = backpressure();
        let congested = SessionKey::new(1);
        bp.pause_on_congestion(ConnKey::new(0), 10, Blocker::Session(congested));
        bp.pause_on_congestion(ConnKey::new(1), 11, Blocker::Session(SessionKey::new(2)));
        bp.pause_on_congestion(ConnKey::new(2), 12, Blocker::Memory);
        let holds = |b: Blocker| b == Blocker::Session(congested);
        assert!(bp.any_resumable(holds));
        let resumed = bp.take_resumable(holds);
        assert_eq!(resumed, [(ConnKey::new(1), 11), (ConnKey::new(2), 12)]);
        bp.recycle_resumed(resumed);
        assert!(
            !bp.any_resumable(holds),
            "the one on the congested session waits"
        );
        assert_eq!(bp.take_resumable(|_| false), [(ConnKey::new(0), 10)]);
    }

    #[test]
    fn a_memory_blocker_holds_while_the_budget_is_under_pressure() {
        let mut bp = backpressure();
        bp.memory_mut().hold(800);
        assert!(bp.memory_mut().start_pressure_if_high().is_some());
        bp.pause_on_congestion(ConnKey::new(0), 1, Blocker::Memory);
        assert!(!bp.any_resumable(|_| false));
        bp.memory_mut().release(300);
        assert!(bp.memory_mut().end_pressure_if_low());
        assert!(
            bp.any_resumable(|_| true),
            "answered by the budget, not the shard"
        );
    }
}
