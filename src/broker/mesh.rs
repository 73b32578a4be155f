//! The shard mesh: one bounded crossbeam channel per (source shard, target shard) pair, one
//! control channel per shard (acceptors), and one mio [`Waker`] per shard.
//!
//! Wake-ups: a shard sets its `sleeping` flag before `poll()` and clears it after. A sender wakes
//! a peer only if it swapped that flag from true to false, and at most once per loop turn
//! (targets are collected during the turn and woken at its end), as glommio's channel mesh does.
//! The SeqCst fences on both sides make "push, then check flag" and "set flag, then check
//! channels" a Dekker pair: one side always sees the other, so no wake-up is lost.
//!
//! Backpressure: a send never blocks. When the channel to a target is full the message waits in
//! that target's overflow queue (order kept: once anything waits, later messages queue behind it)
//! and the caller stops reading the connection that produced it until the overflow drains.

use super::session::{SessionState, SharedPublish};
use crate::codec::MqttString;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpStream;
use mio::Waker;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// A shard's index, 0..shards.
pub type ShardId = usize;

/// Everything one thread may tell a shard.
#[derive(Debug)]
pub enum ShardMsg {
    /// A freshly accepted socket (from an acceptor).
    Connection { stream: TcpStream, peer: SocketAddr },
    /// A publish with subscribers on the target shard; one per publish per target.
    Publish(SharedPublish),
    /// A publish for one member of the shared subscription `share` on the target shard, which
    /// the publishing shard picked for this message.
    SharedPublish {
        message: SharedPublish,
        share: MqttString,
        /// The publisher's client id hash, for the hash strategy.
        publisher_hash: u64,
        /// Already forwarded once by a shard that had no member left (it is not forwarded again).
        forwarded: bool,
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
        request: u64,
        client_id: MqttString,
        keep_state: bool,
    },
    /// The answer to `Takeover`.
    TakeoverReply {
        request: u64,
        state: Option<Box<SessionState>>,
    },
}

/// What other threads hold to wake a shard.
#[derive(Debug)]
pub struct ShardSignal {
    pub waker: Waker,
    pub sleeping: AtomicBool,
}

impl ShardSignal {
    /// Wakes the shard if it may be asleep. Call after pushing into one of its channels.
    pub fn notify(&self) -> std::io::Result<()> {
        fence(Ordering::SeqCst);
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake()?;
        }
        Ok(())
    }
}

/// One shard's end of the mesh.
pub struct Mesh {
    me: ShardId,
    /// `senders[t]`: the channel from this shard to shard `t` (`senders[me]` is unused).
    senders: Vec<Sender<ShardMsg>>,
    /// One receiver per source shard, then the control receiver (acceptors).
    receivers: Vec<Receiver<ShardMsg>>,
    signals: Arc<[Arc<ShardSignal>]>,
    overflow: Vec<VecDeque<ShardMsg>>,
    overflow_len: usize,
    to_wake: Vec<bool>,
    any_to_wake: bool,
    /// Persistence (`sync`, src/store): messages sent to each shard, and received from each
    /// source shard, since start. A PUBACK waits until the target reports the count of its
    /// message durable.
    sent: Vec<u64>,
    received: Vec<u64>,
}

impl Mesh {
    pub fn new(
        me: ShardId,
        senders: Vec<Sender<ShardMsg>>,
        receivers: Vec<Receiver<ShardMsg>>,
        signals: Arc<[Arc<ShardSignal>]>,
    ) -> Mesh {
        let shards = signals.len();
        Mesh {
            me,
            senders,
            receivers,
            signals,
            overflow: (0..shards).map(|_| VecDeque::new()).collect(),
            overflow_len: 0,
            to_wake: vec![false; shards],
            any_to_wake: false,
            sent: vec![0; shards],
            received: vec![0; shards],
        }
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.signals.len()
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

    /// Messages received from each source shard since start.
    pub fn received_counts(&self) -> &[u64] {
        &self.received
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

    /// Whether any message waits for room in a channel.
    pub fn has_overflow(&self) -> bool {
        self.overflow_len > 0
    }

    /// Wakes, once, every peer sent to during this turn that may be asleep.
    pub fn wake_peers(&mut self) {
        if !self.any_to_wake {
            return;
        }
        self.any_to_wake = false;
        for (target, flag) in self.to_wake.iter_mut().enumerate() {
            if std::mem::take(flag) {
                if let Err(e) = self.signals[target].notify() {
                    log::error!("shard {}: cannot wake shard {target}: {e}", self.me);
                }
            }
        }
    }

    /// Moves up to `budget` messages per source into `out`.
    pub fn drain_into(&mut self, out: &mut Vec<ShardMsg>, budget: usize) {
        for (source, receiver) in self.receivers.iter().enumerate() {
            let before = out.len();
            out.extend(receiver.try_iter().take(budget));
            // The last receiver is the acceptors' control channel.
            if let Some(count) = self.received.get_mut(source) {
                *count += (out.len() - before) as u64;
            }
        }
    }

    /// Whether any inbound channel holds a message.
    pub fn inbox_pending(&self) -> bool {
        self.receivers.iter().any(|r| !r.is_empty())
    }

    /// Marks this shard asleep unless messages are waiting; returns whether it may sleep.
    pub fn prepare_sleep(&self) -> bool {
        let signal = &self.signals[self.me];
        signal.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.inbox_pending() {
            signal.sleeping.store(false, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Clears the sleeping flag after `poll()` returned.
    pub fn woke_up(&self) {
        self.signals[self.me]
            .sleeping
            .store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Poll, Token};

    fn signal(poll: &Poll) -> Arc<ShardSignal> {
        Arc::new(ShardSignal {
            waker: Waker::new(poll.registry(), Token(0)).unwrap(),
            sleeping: AtomicBool::new(false),
        })
    }

    fn msg(epoch: u64) -> ShardMsg {
        ShardMsg::RouteAck { from: 0, epoch }
    }

    #[test]
    fn overflow_keeps_order_and_wakes_a_sleeping_peer_once() {
        let polls = [Poll::new().unwrap(), Poll::new().unwrap()];
        let signals: Arc<[Arc<ShardSignal>]> = vec![signal(&polls[0]), signal(&polls[1])].into();
        let (to_1, from_0) = crossbeam_channel::bounded(2);
        let (unused_tx, unused_rx) = crossbeam_channel::bounded(1);
        let mut mesh0 = Mesh::new(
            0,
            vec![unused_tx.clone(), to_1],
            vec![unused_rx.clone()],
            signals.clone(),
        );
        let mut mesh1 = Mesh::new(
            1,
            vec![unused_tx.clone(), unused_tx],
            vec![from_0],
            signals.clone(),
        );

        assert!(mesh1.prepare_sleep(), "nothing queued: shard 1 may sleep");
        assert!(mesh0.send(1, msg(1)));
        assert!(mesh0.send(1, msg(2)));
        assert!(!mesh0.send(1, msg(3)), "channel full: overflow");
        assert!(
            !mesh0.send(1, msg(4)),
            "later messages queue behind the overflow"
        );
        assert!(mesh0.has_overflow());
        mesh0.wake_peers();
        assert!(
            !signals[1].sleeping.load(Ordering::SeqCst),
            "the sleeping peer was woken"
        );

        let mut out = Vec::new();
        mesh1.drain_into(&mut out, 100);
        mesh0.flush_overflow();
        mesh1.drain_into(&mut out, 100);
        assert!(!mesh0.has_overflow());
        let epochs: Vec<u64> = out
            .iter()
            .map(|m| match m {
                ShardMsg::RouteAck { epoch, .. } => *epoch,
                _ => 0,
            })
            .collect();
        assert_eq!(epochs, vec![1, 2, 3, 4]);
        // A peer that is awake is not woken again.
        assert!(mesh0.send(1, msg(5)));
        mesh0.wake_peers();
        assert!(mesh1.inbox_pending());
        assert!(
            !mesh1.prepare_sleep(),
            "a queued message keeps the shard awake"
        );
    }
}
