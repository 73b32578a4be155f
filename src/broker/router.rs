//! A shard's replica of the routing table: which other shards have subscribers for which filter.
//!
//! Each shard counts its own subscribers per filter. When a filter gains its first local
//! subscriber the shard broadcasts `RouteAdd(filter, me, epoch)`; every peer inserts the route
//! and answers `RouteAck(epoch)`. SUBACK is sent only once every peer acknowledged the epoch of
//! the subscription (or a later one): channels are FIFO per pair, so from then on any publish a
//! peer reads finds the route. This is the SUBACK barrier that makes "after SUBACK, every
//! matching message published afterwards is delivered" hold across shards. Removal needs no
//! barrier: a stale route costs one wasted message, which the target matches against nothing.

use super::mesh::ShardId;
use crate::codec::MqttString;
use crate::topic::TopicTrie;
use std::collections::HashMap;

pub struct Router {
    me: ShardId,
    /// Routes to other shards: filter -> shard, one entry per (filter, shard).
    routes: TopicTrie<ShardId>,
    /// Local subscribers per filter (filters with at least one).
    local_counts: HashMap<MqttString, usize>,
    /// The last epoch broadcast.
    epoch_sent: u64,
    /// Per shard, the last epoch it acknowledged (`u64::MAX` for this shard).
    acked: Vec<u64>,
    dest_mask: Vec<bool>,
    dest_list: Vec<ShardId>,
}

impl Router {
    pub fn new(me: ShardId, shards: usize) -> Router {
        let mut acked = vec![0; shards];
        acked[me] = u64::MAX;
        Router {
            me,
            routes: TopicTrie::new(),
            local_counts: HashMap::new(),
            epoch_sent: 0,
            acked,
            dest_mask: vec![false; shards],
            dest_list: Vec::with_capacity(shards),
        }
    }

    /// A local subscription to `filter` was added; true if it is the first (broadcast a route).
    pub fn local_added(&mut self, filter: &MqttString) -> bool {
        let count = self.local_counts.entry(filter.clone()).or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A local subscription to `filter` was removed; true if it was the last (broadcast removal).
    pub fn local_removed(&mut self, filter: &MqttString) -> bool {
        match self.local_counts.get_mut(filter) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                self.local_counts.remove(filter);
                true
            }
            None => {
                debug_assert!(false, "removing a filter that was never added");
                false
            }
        }
    }

    /// Starts a new epoch for a `RouteAdd` broadcast.
    pub fn next_epoch(&mut self) -> u64 {
        self.epoch_sent += 1;
        self.epoch_sent
    }

    /// The last epoch broadcast.
    pub fn epoch_sent(&self) -> u64 {
        self.epoch_sent
    }

    /// The highest epoch every peer has acknowledged.
    pub fn epoch_acked(&self) -> u64 {
        self.acked.iter().copied().min().unwrap_or(u64::MAX)
    }

    /// `from` acknowledged `epoch`.
    pub fn ack(&mut self, from: ShardId, epoch: u64) {
        if from != self.me {
            self.acked[from] = self.acked[from].max(epoch);
        }
    }

    /// `from` has subscribers for `filter`.
    pub fn remote_add(&mut self, from: ShardId, filter: &str) {
        self.routes.insert(filter, from);
    }

    /// `from` no longer has subscribers for `filter`.
    pub fn remote_remove(&mut self, from: ShardId, filter: &str) {
        self.routes.remove(filter, &from);
    }

    /// The other shards with subscribers matching `topic`, each once.
    pub fn destinations(&mut self, topic: &str) -> &[ShardId] {
        let Router {
            routes,
            dest_mask,
            dest_list,
            ..
        } = self;
        for &shard in dest_list.iter() {
            dest_mask[shard] = false;
        }
        dest_list.clear();
        routes.for_each_match(topic, |&shard| {
            if !dest_mask[shard] {
                dest_mask[shard] = true;
                dest_list.push(shard);
            }
        });
        dest_list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_epochs_and_destinations() {
        let mut router = Router::new(0, 3);
        let f = MqttString::from("a/+");
        assert!(router.local_added(&f));
        assert!(!router.local_added(&f));
        assert!(!router.local_removed(&f));
        assert!(router.local_removed(&f));
        let epoch = router.next_epoch();
        assert_eq!(router.epoch_acked(), 0);
        router.ack(1, epoch);
        assert_eq!(router.epoch_acked(), 0);
        router.ack(2, epoch);
        assert_eq!(router.epoch_acked(), epoch);
        router.remote_add(1, "a/#");
        router.remote_add(1, "a/b");
        router.remote_add(2, "+/b");
        let mut dests = router.destinations("a/b").to_vec();
        dests.sort();
        assert_eq!(dests, vec![1, 2]);
        router.remote_remove(2, "+/b");
        assert_eq!(router.destinations("a/b"), &[1]);
        assert!(router.destinations("x").is_empty());
    }
}
