//! A shard's receiving end of the mesh: one receiver per source shard, the control channel of
//! accepted sockets, and the wake-up protocol of one mio [`Waker`] per shard.
//!
//! Wake-ups: a shard sets its `sleeping` flag before `poll()` and clears it after. A sender wakes
//! a peer only if it swapped that flag from true to false, and at most once per loop turn
//! (targets are collected during the turn by the core's `Mesh` and woken at its end), as
//! glommio's channel mesh does. The SeqCst fences on both sides make "push, then check flag" and
//! "set flag, then check channels" a Dekker pair: one side always sees the other, so no wake-up
//! is lost.

use super::stream::Accepted;
use crate::broker::core::mesh::{ShardId, ShardMsg};
use crossbeam_channel::Receiver;
use mio::Waker;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

/// What other threads hold to wake a shard.
#[derive(Debug)]
pub struct ShardSignal {
    pub waker: Waker,
    pub sleeping: AtomicBool,
    /// A peer pushed a route change into one of this shard's channels (issue 16): apply the
    /// inbox before handing the next read to the core (`Inbox::take_routes_pending`).
    pub routes_pending: AtomicBool,
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

/// One shard's receiving end of the mesh.
pub struct Inbox {
    me: ShardId,
    /// One receiver per source shard (this shard's own included, never sent to).
    receivers: Vec<Receiver<ShardMsg>>,
    /// Sockets from the acceptors.
    accepted: Receiver<Accepted>,
    signals: Arc<[Arc<ShardSignal>]>,
    /// Messages received from each source shard since start (persistence, `sync`), each
    /// publish of a batch counted.
    received: Vec<u64>,
}

impl Inbox {
    pub fn new(
        me: ShardId,
        receivers: Vec<Receiver<ShardMsg>>,
        accepted: Receiver<Accepted>,
        signals: Arc<[Arc<ShardSignal>]>,
    ) -> Inbox {
        Inbox {
            me,
            received: vec![0; receivers.len()],
            receivers,
            accepted,
            signals,
        }
    }

    /// Moves up to `budget` items per source into `out` (a batch of publishes is one item).
    pub fn drain_into(&mut self, out: &mut Vec<ShardMsg>, budget: usize) {
        for (source, receiver) in self.receivers.iter().enumerate() {
            for msg in receiver.try_iter().take(budget) {
                // Persistence counts messages, as the sender's `Mesh::sent_counts` does.
                self.received[source] += msg.weight();
                out.push(msg);
            }
        }
    }

    /// Messages received from each source shard since start (persistence: the core reports
    /// them durable after its commit, core/sessions/persist.rs).
    pub fn received_counts(&self) -> &[u64] {
        &self.received
    }

    /// Up to `budget` accepted sockets.
    pub fn accepted(&self, budget: usize) -> impl Iterator<Item = Accepted> + '_ {
        self.accepted.try_iter().take(budget)
    }

    /// Whether any inbound channel holds a message.
    pub fn pending(&self) -> bool {
        !self.accepted.is_empty() || self.receivers.iter().any(|r| !r.is_empty())
    }

    /// Wakes `target` if it may be asleep (after the core sent to it this turn).
    pub fn wake(&self, target: ShardId) {
        if let Err(e) = self.signals[target].notify() {
            log::error!("shard {}: cannot wake shard {target}: {e}", self.me);
        }
    }

    /// After the core broadcast a route (issue 16, `ShardCore::take_routes_sent`): flags every
    /// peer's `routes_pending` (Release: the route messages were pushed before) and wakes those
    /// that may be asleep, at once rather than at the end of the turn.
    pub fn wake_for_routes(&self) {
        for (target, signal) in self.signals.iter().enumerate() {
            if target != self.me {
                signal.routes_pending.store(true, Ordering::Release);
                self.wake(target);
            }
        }
    }

    /// Whether a peer flagged a route change since the last call: one relaxed load when not,
    /// so it is cheap enough before every read (Acquire on the swap: the peer's route messages
    /// are then visible in the channels).
    pub fn take_routes_pending(&self) -> bool {
        let flag = &self.signals[self.me].routes_pending;
        flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::Acquire)
    }

    /// Marks this shard asleep unless messages are waiting; returns whether it may sleep.
    pub fn prepare_sleep(&self) -> bool {
        let signal = &self.signals[self.me];
        signal.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.pending() {
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
    use crate::broker::core::mesh::{Mesh, MeshLinks};
    use mio::{Poll, Token};

    fn signal(poll: &Poll) -> Arc<ShardSignal> {
        Arc::new(ShardSignal {
            waker: Waker::new(poll.registry(), Token(0)).unwrap(),
            sleeping: AtomicBool::new(false),
            routes_pending: AtomicBool::new(false),
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
        let (_accept_tx, accept_rx) = crossbeam_channel::bounded(1);
        let mut mesh0 = Mesh::new(0, vec![unused_tx.clone(), to_1], MeshLinks::new(2));
        let inbox0 = Inbox::new(0, vec![unused_rx], accept_rx.clone(), signals.clone());
        let mut inbox1 = Inbox::new(1, vec![from_0], accept_rx, signals.clone());

        assert!(inbox1.prepare_sleep(), "nothing queued: shard 1 may sleep");
        assert!(mesh0.send(1, msg(1)));
        assert!(mesh0.send(1, msg(2)));
        assert!(!mesh0.send(1, msg(3)), "channel full: overflow");
        assert!(
            !mesh0.send(1, msg(4)),
            "later messages queue behind the overflow"
        );
        assert!(mesh0.has_overflow());
        mesh0.drain_wakes(|t| inbox0.wake(t));
        assert!(
            !signals[1].sleeping.load(Ordering::SeqCst),
            "the sleeping peer was woken"
        );

        let mut out = Vec::new();
        inbox1.drain_into(&mut out, 100);
        mesh0.flush_overflow();
        inbox1.drain_into(&mut out, 100);
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
        mesh0.drain_wakes(|t| inbox0.wake(t));
        assert!(inbox1.pending());
        assert!(
            !inbox1.prepare_sleep(),
            "a queued message keeps the shard awake"
        );
    }
}
