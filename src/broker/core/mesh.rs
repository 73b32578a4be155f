//! The core's side of the shard mesh: the messages shards exchange ([`ShardMsg`]) and the
//! sending half ([`Mesh`]) of the one bounded crossbeam channel per (source shard, target shard)
//! pair. The channels are plain lock-free queues in memory: pushing into one never blocks, never
//! makes a system call and wakes nobody. The core only records which peers it sent to; the
//! runtime (`runtime::inbox`) receives, sleeps and wakes, and the simulation
//! (`tests/`, `fuzz/`) moves the same channels' messages by hand in the order it chooses.
//!
//! Backpressure: a send never blocks. When the channel to a target is full the message waits in
//! that target's overflow queue (order kept: once anything waits, later messages queue behind it)
//! and the caller stops reading the connection that produced it until the overflow drains.

use super::sessions::handover::{HandoverId, HandoverLeg, HandoverMsg};
use super::sessions::session::{MessageRef, SessionState};
use crate::codec::MqttString;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::VecDeque;

/// A shard's index, 0..shards.
pub type ShardId = usize;

/// Everything one shard may tell another.
#[derive(Debug)]
pub enum ShardMsg {
    /// A publish with subscribers on the target shard; one per publish per target. `from`
    /// routed it (the handover gate needs the source, `handover.rs`).
    Publish { from: ShardId, message: MessageRef },
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

/// One shard's sending end of the mesh.
pub struct Mesh {
    me: ShardId,
    /// `senders[t]`: the channel from this shard to shard `t` (`senders[me]` is unused).
    senders: Vec<Sender<ShardMsg>>,
    overflow: Vec<VecDeque<ShardMsg>>,
    overflow_len: usize,
    to_wake: Vec<bool>,
    any_to_wake: bool,
    /// Persistence (`sync`, src/store): messages sent to each shard since start. A PUBACK
    /// waits until the target reports that count durable (core/sessions/persist.rs).
    sent: Vec<u64>,
    /// Route changes were sent since the runtime last asked (issue 16, subscribe visibility):
    /// their targets are woken and flagged at once, not at the end of the turn.
    routes_sent: bool,
}

impl Mesh {
    /// `senders[t]` sends to shard `t`; one per shard, this shard's own included (unused).
    pub fn new(me: ShardId, senders: Vec<Sender<ShardMsg>>) -> Mesh {
        let shards = senders.len();
        Mesh {
            me,
            senders,
            overflow: (0..shards).map(|_| VecDeque::new()).collect(),
            overflow_len: 0,
            to_wake: vec![false; shards],
            any_to_wake: false,
            sent: vec![0; shards],
            routes_sent: false,
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.senders.len()
    }

    /// Sends `msg` to `target` without blocking. Returns false when it had to wait in the
    /// overflow queue (the caller then pauses the connection that produced it).
    pub fn send(&mut self, target: ShardId, msg: ShardMsg) -> bool {
        debug_assert_ne!(target, self.me, "a shard never sends to itself");
        self.sent[target] += 1;
        if !self.overflow[target].is_empty() {
            self.overflow[target].push_back(msg);
            self.overflow_len += 1;
            return false;
        }
        match self.senders[target].try_send(msg) {
            Ok(()) => {
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
                match self.senders[target].try_send(msg) {
                    Ok(()) => {
                        self.overflow_len -= 1;
                        self.to_wake[target] = true;
                        self.any_to_wake = true;
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

    /// Calls `wake` once for every peer sent to since the last call (the runtime wakes those
    /// that may be asleep: one wake-up per peer per loop turn at most).
    pub fn drain_wakes(&mut self, mut wake: impl FnMut(ShardId)) {
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
