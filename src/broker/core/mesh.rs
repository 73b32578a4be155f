//! The core's side of the shard mesh: the messages shards exchange ([`ShardMsg`]) and the
//! sending half ([`Mesh`]) of the one bounded crossbeam channel per (source shard, target shard)
//! pair. The channels are plain lock-free queues in memory: pushing into one never blocks, never
//! makes a system call and wakes nobody. The core only records which peers it sent to; the
//! runtime (`runtime::inbox`) receives, sleeps and wakes, and the simulation
//! (`tests/`, `fuzz/`) moves the same channels' messages by hand in the order it chooses.
//!
//! Batching (issue 17): publishes for a peer are collected during the loop turn and go as one
//! channel item per target per turn ([`ShardMsg::Publishes`], at most [`MESH_BATCH_MAX`]
//! messages; a full batch goes at once), pushed by `flush_batches` at the end of the turn and
//! before any other message to the same target, so that what one shard sends another arrives
//! in the order it was sent, whatever its kind. The receiver hands the emptied vector back
//! ([`Mesh::recycle`]), so a batch allocates nothing in the steady state.
//!
//! Backpressure: a send never blocks. A channel holds at most its capacity in publishes (the
//! receiver counts those it took in [`MeshLinks`]; other messages count one item each in the
//! channel's own bound). When the channel to a target is full the message waits in that
//! target's overflow queue (order kept: once anything waits, later messages queue behind it)
//! and the caller stops reading the connection that produced it until the overflow drains.

use super::sessions::handover::{HandoverId, HandoverLeg, HandoverMsg};
use super::sessions::session::{MessageRef, SessionState};
use crate::codec::MqttString;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A shard's index, 0..shards.
pub type ShardId = usize;

/// Everything one shard may tell another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Publishes with subscribers on the target shard, in the order `from` routed them (the
    /// handover gate needs the source, `handover.rs`): one item per target per turn, 1 to
    /// [`MESH_BATCH_MAX`] messages. The receiver hands the vector back ([`Mesh::recycle`]).
    Publishes {
        from: ShardId,
        messages: Vec<MessageRef>,
    },
    /// A message the broker itself publishes (operations: `$SYS`), through shard 0's ops
    /// channel; that shard routes it like a received PUBLISH.
    Inject(MessageRef),
    /// A publish for one member of the shared subscription `share` on the target shard, which
    /// the publishing shard picked for this message.
    MessageRef {
        message: MessageRef,
        share: MqttString,
        /// The publisher's client id hash, for the hash strategy.
        publisher_hash: u64,
        /// Times shards passed it on (no member left, or none could take it); at most `shards`,
        /// so that stale routes cannot pass it around forever.
        hops: u8,
    },
    /// `from` gained its first local subscriber for each filter. Answered with `RouteAck`.
    RouteAdd {
        from: ShardId,
        filters: Vec<MqttString>,
        epoch: u64,
    },
    /// The target has applied every `RouteAdd` from `from` up to `epoch`.
    RouteAck { from: ShardId, epoch: u64 },
    /// `from` lost its last local subscriber for each filter.
    RouteRemove {
        from: ShardId,
        filters: Vec<MqttString>,
    },
    /// `from` accepted a CONNECT for `client_id`, whose session the target holds: close the old
    /// connection and send the session state back (`keep_state`) or drop it.
    Takeover {
        from: ShardId,
        /// The number of the claim that asks (unique broker-wide): the target's own claim
        /// that it replaced is the latest one before it (`Sessions::waiting_takeover_mut`).
        request: u64,
        client_id: MqttString,
        keep_state: bool,
    },
    /// The answer to `Takeover`, from the shard that was asked.
    TakeoverReply {
        from: ShardId,
        request: u64,
        state: Option<Box<SessionState>>,
        /// With a state: the handover it belongs to (`handover.rs`)...
        handover: Option<HandoverId>,
        /// ...and how many shards relayed it so far ([`HandoverLeg`]; apart from `handover`,
        /// it fits beside the enum's tag and the message stays at 7 words).
        hop: u32,
    },
    /// The session handover protocol (`handover.rs`).
    Handover(HandoverMsg),
}

impl ShardMsg {
    /// How many messages this item carries (persistence counts messages, not items: `sent` on
    /// the sending side, the inbox's `received` on the receiving side).
    pub fn weight(&self) -> u64 {
        match self {
            ShardMsg::Publishes { messages, .. } => messages.len() as u64,
            _ => 1,
        }
    }

    /// The publishes this item holds of its channel's capacity (other items count only in the
    /// channel's bound of items).
    fn publishes(&self) -> u64 {
        match self {
            ShardMsg::Publishes { messages, .. } => messages.len() as u64,
            _ => 0,
        }
    }

    /// A `TakeoverReply` carrying `handover` (with its hop count) if any.
    pub fn takeover_reply(
        from: ShardId,
        request: u64,
        state: Option<Box<SessionState>>,
        handover: Option<HandoverLeg>,
    ) -> ShardMsg {
        ShardMsg::TakeoverReply {
            from,
            request,
            state,
            handover: handover.map(|leg| leg.id),
            hop: handover.map_or(0, |leg| leg.hop),
        }
    }
}

/// Most publishes in one [`ShardMsg::Publishes`] (and at most the channel's capacity): 2 KiB
/// of references per batch vector. A turn that routes more to one target sends several.
pub const MESH_BATCH_MAX: usize = 256;
/// Emptied batch vectors a shard keeps for reuse per peer (beyond them they are freed).
const SPARE_BATCHES_PER_PEER: usize = 4;
/// Emptied message allocations (about 200 bytes each) moved between shards at once.
const SPARE_MESSAGE_BUNDLE: usize = 64;
/// Bundles of emptied message allocations the shards share, per shard (beyond them they are
/// freed): at most 16 x 64 x ~200 bytes = ~200 KiB per shard.
const SPARE_BUNDLES_PER_SHARD: usize = 16;

/// What the shards of one broker share about their channels, beside the channels themselves:
/// how many publishes each target took out of each channel, and the emptied batch vectors on
/// their way back to the shard that filled them.
pub struct MeshLinks {
    shards: Box<[LinkEnd]>,
    /// Emptied message allocations one shard had left over, for any shard that has none (a
    /// publish is allocated by the publisher's shard and often freed by the subscriber's:
    /// without this, one shard would always allocate and the other always free), in bundles
    /// of [`SPARE_MESSAGE_BUNDLE`] so that a channel operation is paid once per bundle.
    spare_messages: (Sender<Vec<MessageRef>>, Receiver<Vec<MessageRef>>),
}

/// One shard's part of [`MeshLinks`].
struct LinkEnd {
    /// `taken[s]`: publishes this shard took from the channel from shard `s` since start.
    /// Written by this shard only (so a load and a store, no read-modify-write); read by `s`.
    taken: Box<[AtomicU64]>,
    /// Emptied batch vectors returned to this shard by its peers.
    spare: (Sender<Vec<MessageRef>>, Receiver<Vec<MessageRef>>),
}

impl MeshLinks {
    /// The links of a broker of `shards` shards.
    pub fn new(shards: usize) -> Arc<MeshLinks> {
        let end = |_| LinkEnd {
            taken: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            spare: crossbeam_channel::bounded(SPARE_BATCHES_PER_PEER * shards),
        };
        Arc::new(MeshLinks {
            shards: (0..shards).map(end).collect(),
            spare_messages: crossbeam_channel::bounded(SPARE_BUNDLES_PER_SHARD * shards),
        })
    }
}

/// The batch a shard is filling for one target during a turn.
#[derive(Default)]
struct Batch {
    /// Empty when none is open (its capacity is kept for the next one).
    messages: Vec<MessageRef>,
    /// Publishes the channel had room for when the batch was opened: a message beyond it will
    /// wait in the overflow queue (conservative: the target only takes more meanwhile).
    room: usize,
}

/// One shard's sending end of the mesh.
pub struct Mesh {
    me: ShardId,
    /// `senders[t]`: the channel from this shard to shard `t` (`senders[me]` is unused).
    senders: Vec<Sender<ShardMsg>>,
    links: Arc<MeshLinks>,
    /// `capacity[t]`: publishes the channel to `t` may hold (its bound in items).
    capacity: Vec<u64>,
    /// `pushed[t]`: publishes pushed into the channel to `t` since start (with the target's
    /// `taken`: how many it holds now).
    pushed: Vec<u64>,
    batches: Vec<Batch>,
    /// Whether any batch is open (`flush_batches` has work).
    batches_open: bool,
    overflow: Vec<VecDeque<ShardMsg>>,
    overflow_len: usize,
    to_wake: Vec<bool>,
    any_to_wake: bool,
    /// Persistence (`sync`, src/store): messages sent to each shard since start, each publish
    /// of a batch counted. A PUBACK waits until the target reports that count durable
    /// (core/sessions/persist.rs).
    sent: Vec<u64>,
    /// Route changes were sent since the runtime last asked (issue 16, subscribe visibility):
    /// their targets are woken and flagged at once, not at the end of the turn.
    routes_sent: bool,
    /// Batches sent since start, and the publishes they carried (tests and the simulation).
    batches_sent: (u64, u64),
    /// Emptied message allocations from another shard's bundle, not used yet, and the bundle
    /// this shard is filling for the others (`take_spare_message`, `give_spare_message`).
    spare_in: Vec<MessageRef>,
    spare_out: Vec<MessageRef>,
}

impl Mesh {
    /// `senders[t]` sends to shard `t`; one per shard, this shard's own included (unused).
    /// `links` is shared by every shard of the broker ([`MeshLinks::new`]).
    pub fn new(me: ShardId, senders: Vec<Sender<ShardMsg>>, links: Arc<MeshLinks>) -> Mesh {
        let shards = senders.len();
        debug_assert_eq!(links.shards.len(), shards, "one link end per shard");
        let capacity = senders
            .iter()
            .map(|s| s.capacity().map_or(u64::MAX, |c| c as u64))
            .collect();
        Mesh {
            me,
            senders,
            links,
            capacity,
            pushed: vec![0; shards],
            batches: (0..shards).map(|_| Batch::default()).collect(),
            batches_open: false,
            overflow: (0..shards).map(|_| VecDeque::new()).collect(),
            overflow_len: 0,
            to_wake: vec![false; shards],
            any_to_wake: false,
            sent: vec![0; shards],
            routes_sent: false,
            batches_sent: (0, 0),
            spare_in: Vec::new(),
            spare_out: Vec::new(),
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Adds a publish routed here to this turn's batch for `target` (sent by `flush_batches`
    /// at the end of the turn, or at once when full). Returns false when it will wait in the
    /// overflow queue (the caller then pauses the connection that produced it).
    pub fn publish(&mut self, target: ShardId, message: MessageRef) -> bool {
        debug_assert_ne!(target, self.me, "a shard never sends to itself");
        self.sent[target] += 1;
        if self.batches[target].messages.is_empty() {
            self.open_batch(target);
        }
        let batch = &mut self.batches[target];
        batch.messages.push(message);
        let len = batch.messages.len();
        let fits = len <= batch.room;
        let batch_max = (self.capacity[target] as usize).min(MESH_BATCH_MAX);
        if len >= batch_max || len == batch.room {
            // Full, or all the channel had room for: the next message opens a new batch.
            self.flush_batch(target);
        }
        fits
    }

    /// Opens the batch for `target`: a returned vector if there is one, and the room its
    /// channel has now.
    fn open_batch(&mut self, target: ShardId) {
        self.batches_open = true;
        let own = &self.links.shards[self.me];
        let batch = &mut self.batches[target];
        if batch.messages.capacity() == 0 {
            batch.messages = own
                .spare
                .1
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(MESH_BATCH_MAX));
        }
        let taken = self.links.shards[target].taken[self.me].load(Ordering::Acquire);
        let held = self.pushed[target].saturating_sub(taken);
        batch.room = if self.overflow[target].is_empty() && !self.senders[target].is_full() {
            usize::try_from(self.capacity[target].saturating_sub(held)).unwrap_or(usize::MAX)
        } else {
            0
        };
    }

    /// Sends the batch open for `target`, if any.
    fn flush_batch(&mut self, target: ShardId) {
        let messages = std::mem::take(&mut self.batches[target].messages);
        if messages.is_empty() {
            // Keep the (empty) vector's allocation for the next batch.
            self.batches[target].messages = messages;
            return;
        }
        self.batches_sent.0 += 1;
        self.batches_sent.1 += messages.len() as u64;
        let from = self.me;
        self.push(target, ShardMsg::Publishes { from, messages });
    }

    /// Batches sent since start (into a channel or an overflow queue) and the publishes they
    /// carried.
    pub fn batches_sent(&self) -> (u64, u64) {
        self.batches_sent
    }

    /// Sends every open batch: at the end of the turn (`ShardCore::drain_wakes`).
    pub fn flush_batches(&mut self) {
        if !std::mem::take(&mut self.batches_open) {
            return;
        }
        for target in 0..self.batches.len() {
            self.flush_batch(target);
        }
    }

    /// Whether a batch waits for the end of the turn (a driver must not call the broker idle).
    pub fn has_open_batches(&self) -> bool {
        self.batches_open
    }

    /// A batch from `from` was handled: its publishes leave the channel's count and the emptied
    /// vector goes back to `from` for reuse (dropped when `from` has enough).
    pub fn recycle(&mut self, from: ShardId, mut messages: Vec<MessageRef>) {
        let taken = &self.links.shards[self.me].taken[from];
        // This shard is the only writer: no read-modify-write needed.
        let count = taken.load(Ordering::Relaxed) + messages.len() as u64;
        taken.store(count, Ordering::Release);
        messages.clear();
        let _ = self.links.shards[from].spare.0.try_send(messages);
    }

    /// An emptied message allocation another shard had left over, if any (none with one
    /// shard: nothing crosses).
    pub fn take_spare_message(&mut self) -> Option<MessageRef> {
        if let Some(spare) = self.spare_in.pop() {
            return Some(spare);
        }
        if self.senders.len() == 1 {
            return None;
        }
        let mut bundle = self.links.spare_messages.1.try_recv().ok()?;
        let spare = bundle.pop();
        // The emptied vector of the previous bundle becomes the next outgoing one.
        let empty = std::mem::replace(&mut self.spare_in, bundle);
        if self.spare_out.capacity() == 0 {
            self.spare_out = empty;
        }
        spare
    }

    /// Offers an emptied message allocation to the other shards (in bundles; freed when they
    /// have enough).
    pub fn give_spare_message(&mut self, spare: MessageRef) {
        if self.senders.len() == 1 {
            return;
        }
        if self.spare_out.capacity() == 0 {
            self.spare_out = Vec::with_capacity(SPARE_MESSAGE_BUNDLE);
        }
        self.spare_out.push(spare);
        if self.spare_out.len() >= SPARE_MESSAGE_BUNDLE {
            let bundle = std::mem::take(&mut self.spare_out);
            let _ = self.links.spare_messages.0.try_send(bundle);
        }
    }

    /// Sends `msg` to `target` without blocking, after the batch open for it (so the target
    /// sees both in the order they were made). Returns false when it had to wait in the
    /// overflow queue (the caller then pauses the connection that produced it).
    pub fn send(&mut self, target: ShardId, msg: ShardMsg) -> bool {
        debug_assert_ne!(target, self.me, "a shard never sends to itself");
        self.sent[target] += msg.weight();
        self.flush_batch(target);
        self.push(target, msg)
    }

    /// Pushes one item into the channel to `target`, or into its overflow queue when something
    /// waits there already or the channel is full. Returns whether it went into the channel.
    fn push(&mut self, target: ShardId, msg: ShardMsg) -> bool {
        if !self.overflow[target].is_empty() || !self.has_room(target, &msg) {
            self.overflow[target].push_back(msg);
            self.overflow_len += 1;
            return false;
        }
        let publishes = msg.publishes();
        match self.senders[target].try_send(msg) {
            Ok(()) => {
                self.pushed[target] += publishes;
                self.mark_wake(target);
                true
            }
            Err(TrySendError::Full(msg)) => {
                self.overflow[target].push_back(msg);
                self.overflow_len += 1;
                false
            }
            // The target thread is gone (shutdown): nothing can be delivered there any more.
            Err(TrySendError::Disconnected(_)) => true,
        }
    }

    /// Whether the channel to `target` has room for the publishes `msg` carries.
    fn has_room(&self, target: ShardId, msg: &ShardMsg) -> bool {
        let publishes = msg.publishes();
        if publishes == 0 {
            return true;
        }
        let taken = self.links.shards[target].taken[self.me].load(Ordering::Acquire);
        let held = self.pushed[target].saturating_sub(taken);
        held + publishes <= self.capacity[target]
    }

    /// Messages sent to each shard since start (persistence: see `sent`).
    pub fn sent_counts(&self) -> &[u64] {
        &self.sent
    }

    /// Marks `target` to be woken at the end of this turn.
    pub fn wake(&mut self, target: ShardId) {
        if target != self.me {
            self.mark_wake(target);
        }
    }

    fn mark_wake(&mut self, target: ShardId) {
        self.to_wake[target] = true;
        self.any_to_wake = true;
    }

    /// Marks every peer to be woken at the end of this turn (a congestion flag cleared).
    pub fn wake_all_peers(&mut self) {
        for target in 0..self.to_wake.len() {
            if target != self.me {
                self.mark_wake(target);
            }
        }
    }

    /// Moves what it can from the overflow queues into the channels, in order.
    pub fn flush_overflow(&mut self) {
        if self.overflow_len == 0 {
            return;
        }
        for target in 0..self.overflow.len() {
            while let Some(msg) = self.overflow[target].pop_front() {
                if !self.has_room(target, &msg) {
                    self.overflow[target].push_front(msg);
                    break;
                }
                let publishes = msg.publishes();
                match self.senders[target].try_send(msg) {
                    Ok(()) => {
                        self.overflow_len -= 1;
                        self.pushed[target] += publishes;
                        self.mark_wake(target);
                    }
                    Err(TrySendError::Full(msg)) => {
                        self.overflow[target].push_front(msg);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => self.overflow_len -= 1,
                }
            }
        }
    }

    /// Records that route changes were just sent to every peer (see `take_routes_sent`).
    pub fn mark_routes_sent(&mut self) {
        self.routes_sent = true;
    }

    /// Whether route changes were sent since the last call: the runtime then flags and wakes
    /// every peer at once, so that they apply the routes before reading more input.
    pub fn take_routes_sent(&mut self) -> bool {
        std::mem::take(&mut self.routes_sent)
    }

    /// Whether any message waits for room in a channel.
    pub fn has_overflow(&self) -> bool {
        self.overflow_len > 0
    }

    /// The end of a turn: sends the open batches, then calls `wake` once for every peer sent
    /// to since the last call (the runtime wakes those that may be asleep: one wake-up per
    /// peer per loop turn at most).
    pub fn drain_wakes(&mut self, mut wake: impl FnMut(ShardId)) {
        self.flush_batches();
        if !self.any_to_wake {
            return;
        }
        self.any_to_wake = false;
        for (target, flag) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(flag) {
                wake(target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::core::sessions::session::Message;
    use crate::codec::{Properties, Publish, QoS};
    use std::time::Instant;

    fn message(n: u8) -> MessageRef {
        let publish = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: MqttString::from("t"),
            packet_id: 0,
            properties: Properties::default(),
            payload: bytes::Bytes::from(vec![n]),
        };
        Message::new_ref(publish, Instant::now())
    }

    /// Two shards' meshes over channels of `capacity` items; the receiver of 0 -> 1.
    fn pair(capacity: usize) -> (Mesh, Mesh, Receiver<ShardMsg>) {
        let links = MeshLinks::new(2);
        let (to_1, from_0) = crossbeam_channel::bounded(capacity);
        let (to_0, _from_1) = crossbeam_channel::bounded(capacity);
        let (unused0, _) = crossbeam_channel::bounded(1);
        let (unused1, _) = crossbeam_channel::bounded(1);
        let mesh0 = Mesh::new(0, vec![unused0, to_1], links.clone());
        let mesh1 = Mesh::new(1, vec![to_0, unused1], links);
        (mesh0, mesh1, from_0)
    }

    /// What an item carries: the payload bytes of its publishes, or `None` for another kind.
    fn payloads(msg: &ShardMsg) -> Option<Vec<u8>> {
        match msg {
            ShardMsg::Publishes { from, messages } => {
                assert_eq!(*from, 0);
                Some(messages.iter().map(|m| m.payload[0]).collect())
            }
            _ => None,
        }
    }

    #[test]
    fn a_turn_sends_one_batch_per_target_behind_nothing_and_before_later_messages() {
        let (mut mesh0, mut mesh1, rx) = pair(64);
        assert!(mesh0.publish(1, message(1)));
        assert!(mesh0.publish(1, message(2)));
        assert!(rx.is_empty(), "a batch waits for the end of the turn");
        assert!(mesh0.has_open_batches());
        // Another kind of message to the same target goes after the publishes made before it.
        assert!(mesh0.send(1, ShardMsg::RouteAck { from: 0, epoch: 7 }));
        assert!(mesh0.publish(1, message(3)));
        let mut woken = Vec::new();
        mesh0.drain_wakes(|t| woken.push(t));
        assert_eq!(woken, vec![1], "one wake-up for the turn");
        assert!(!mesh0.has_open_batches());
        let items: Vec<ShardMsg> = rx.try_iter().collect();
        assert_eq!(items.len(), 3);
        assert_eq!(payloads(&items[0]), Some(vec![1, 2]));
        assert!(matches!(items[1], ShardMsg::RouteAck { epoch: 7, .. }));
        assert_eq!(payloads(&items[2]), Some(vec![3]));
        // Persistence counts messages on both sides.
        assert_eq!(mesh0.sent_counts()[1], 4);
        assert_eq!(items.iter().map(ShardMsg::weight).sum::<u64>(), 4);

        // The receiver hands the vectors back: the next batch reuses one.
        for item in items {
            if let ShardMsg::Publishes { from, messages } = item {
                mesh1.recycle(from, messages);
            }
        }
        assert!(mesh0.publish(1, message(4)));
        assert!(mesh0.batches[1].messages.capacity() >= MESH_BATCH_MAX);
        assert!(
            !mesh0.links.shards[0].spare.1.is_empty(),
            "one of the two returned vectors is still spare"
        );
    }

    #[test]
    fn a_channel_holds_at_most_its_capacity_in_publishes_and_the_rest_waits_in_order() {
        // Room for 3 items but only 3 publishes: 5 publishes and a route message.
        let (mut mesh0, mut mesh1, rx) = pair(3);
        assert!(mesh0.publish(1, message(1)));
        assert!(mesh0.publish(1, message(2)));
        assert!(
            mesh0.publish(1, message(3)),
            "the third still fits, and goes now"
        );
        assert!(
            !mesh0.publish(1, message(4)),
            "over the capacity: it will wait"
        );
        assert!(!mesh0.publish(1, message(5)));
        assert!(!mesh0.send(1, ShardMsg::RouteAck { from: 0, epoch: 1 }));
        mesh0.drain_wakes(|_| {});
        assert!(mesh0.has_overflow());
        let first: Vec<ShardMsg> = rx.try_iter().collect();
        assert_eq!(first.len(), 1);
        assert_eq!(payloads(&first[0]), Some(vec![1, 2, 3]));
        // Until the receiver has handled them, the publishes still count against the channel.
        mesh0.flush_overflow();
        assert!(rx.is_empty() && mesh0.has_overflow());
        for item in first {
            if let ShardMsg::Publishes { from, messages } = item {
                mesh1.recycle(from, messages);
            }
        }
        mesh0.flush_overflow();
        assert!(!mesh0.has_overflow());
        let rest: Vec<ShardMsg> = rx.try_iter().collect();
        assert_eq!(rest.len(), 2);
        assert_eq!(payloads(&rest[0]), Some(vec![4, 5]));
        assert!(matches!(rest[1], ShardMsg::RouteAck { epoch: 1, .. }));
    }

    #[test]
    fn a_full_batch_goes_at_once() {
        let (mut mesh0, _mesh1, rx) = pair(100_000);
        for n in 0..=MESH_BATCH_MAX {
            assert!(mesh0.publish(1, message(n as u8)));
        }
        assert_eq!(rx.len(), 1, "the first batch went when it was full");
        mesh0.drain_wakes(|_| {});
        let sizes: Vec<u64> = rx.try_iter().map(|m| m.weight()).collect();
        assert_eq!(sizes, vec![MESH_BATCH_MAX as u64, 1]);
    }
}

#[cfg(test)]
mod spare_tests {
    use super::*;
    use crate::broker::core::sessions::session::Message;
    use crate::codec::Publish;
    use std::time::Instant;

    /// Allocations one shard has left over reach another in bundles, and come out unique.
    #[test]
    fn spare_messages_move_between_shards_in_bundles() {
        let links = MeshLinks::new(2);
        let channels = || {
            let (a, _) = crossbeam_channel::bounded(1);
            let (b, _) = crossbeam_channel::bounded(1);
            vec![a, b]
        };
        let mut giver = Mesh::new(1, channels(), links.clone());
        let mut taker = Mesh::new(0, channels(), links);
        let spares: Vec<MessageRef> = (0..SPARE_MESSAGE_BUNDLE)
            .map(|_| Message::new_ref(Publish::default(), Instant::now()))
            .collect();
        let addresses: Vec<*const Message> = spares.iter().map(Arc::as_ptr).collect();
        for spare in spares.into_iter().take(SPARE_MESSAGE_BUNDLE - 1) {
            giver.give_spare_message(spare);
        }
        assert!(
            taker.take_spare_message().is_none(),
            "a bundle goes when full"
        );
        let last = Message::new_ref(Publish::default(), Instant::now());
        giver.give_spare_message(last);
        let mut taken = 0;
        while let Some(mut spare) = taker.take_spare_message() {
            assert!(Arc::get_mut(&mut spare).is_some(), "unique");
            taken += 1;
        }
        assert_eq!(taken, SPARE_MESSAGE_BUNDLE);
        assert!(!addresses.is_empty());
    }
}
