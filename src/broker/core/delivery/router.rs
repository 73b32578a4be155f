//! A shard's replica of the routing table: which other shards have subscribers for which filter.
//!
//! Each shard counts its own subscribers per filter. When a filter gains its first local
//! subscriber the shard broadcasts `RouteAdd(filter, me, epoch)`; every peer inserts the route
//! and answers `RouteAck(epoch)`. SUBACK is sent only once every peer acknowledged the epoch of
//! the subscription (or a later one): channels are FIFO per pair, so from then on any publish a
//! peer reads finds the route. This is the SUBACK barrier that makes "after SUBACK, every
//! matching message published afterwards is delivered" hold across shards. Removal needs no
//! barrier: a stale route costs one wasted message, which the target matches against nothing.
//!
//! Shared subscriptions travel the same way, their route being the whole `$share/{group}/{filter}`
//! string: the replica keeps, per shared subscription, the shards that have members (this one
//! included), and the publishing shard picks ONE of them per message ([`Router::shared_targets`]).

use crate::broker::core::config::SharedStrategy;
use crate::broker::core::mesh::ShardId;
use crate::codec::MqttString;
use crate::topic::{self, CacheLookup, MatchCache, TopicTrie};
use slab::Slab;
use std::collections::HashMap;

/// One shared subscription as this shard's replica knows it.
struct SharedRoute {
    /// `$share/{group}/{filter}`, the name members subscribed with.
    share: MqttString,
    /// The filter part, the key in `shared_trie`.
    filter: MqttString,
    /// Shards with at least one member, sorted.
    shards: Vec<ShardId>,
    /// Round-robin position.
    cursor: usize,
    /// The sticky strategy's current shard.
    sticky: Option<ShardId>,
}

pub struct Router {
    me: ShardId,
    /// Routes: filter -> shard, one entry per (filter, shard), this shard's own filters
    /// included (`local_added`).
    routes: TopicTrie<ShardId>,
    /// Recent results of `routes` by topic name.
    routes_cache: MatchCache<ShardId>,
    /// Local subscribers per filter (filters with at least one).
    local_counts: HashMap<MqttString, usize>,
    /// The last epoch broadcast.
    epoch_sent: u64,
    /// Per shard, the last epoch it acknowledged (`u64::MAX` for this shard).
    acked: Vec<u64>,
    dest_mask: Vec<bool>,
    dest_list: Vec<ShardId>,
    /// Whether the last lookup matched a local filter (`local_matched`).
    dest_local: bool,
    /// Shared subscriptions with members anywhere, by `$share/...` name.
    shared: Slab<SharedRoute>,
    shared_index: HashMap<String, usize>,
    /// Filter -> slab key of the shared subscriptions using it.
    shared_trie: TopicTrie<usize>,
    /// Recent results of `shared_trie` by topic name (issue 17: the walk was ~300 instructions
    /// of every shared delivery).
    shared_cache: MatchCache<usize>,
    /// Per message scratch: the shared subscriptions matched.
    shared_matches: Vec<usize>,
}

impl Router {
    pub fn new(me: ShardId, shards: usize) -> Router {
        let mut acked = vec![0; shards];
        acked[me] = u64::MAX;
        Router {
            me,
            routes: TopicTrie::new(),
            routes_cache: MatchCache::new(),
            local_counts: HashMap::new(),
            epoch_sent: 0,
            acked,
            dest_mask: vec![false; shards],
            dest_list: Vec::with_capacity(shards),
            dest_local: false,
            shared: Slab::new(),
            shared_index: HashMap::new(),
            shared_trie: TopicTrie::new(),
            shared_cache: MatchCache::new(),
            shared_matches: Vec::new(),
        }
    }

    /// A local subscription to `filter` was added; true if it is the first (broadcast a route).
    /// The routes name this shard too (issue 17): a publish whose topic no local filter
    /// matches skips the local trie ([`Router::local_matched`]).
    pub fn local_added(&mut self, filter: &MqttString) -> bool {
        let count = self.local_counts.entry(filter.clone()).or_insert(0);
        *count += 1;
        let first = *count == 1;
        if first && !self.shared_add(self.me, filter.as_str()) {
            self.routes.insert(filter.as_str(), self.me);
        }
        first
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
                if !self.shared_remove(self.me, filter.as_str()) {
                    self.routes.remove(filter.as_str(), &self.me);
                }
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
        if !self.shared_add(from, filter) {
            self.routes.insert(filter, from);
        }
    }

    /// `from` no longer has subscribers for `filter`.
    pub fn remote_remove(&mut self, from: ShardId, filter: &str) {
        if !self.shared_remove(from, filter) {
            self.routes.remove(filter, &from);
        }
    }

    /// Notes that `shard` has members of `share` if it is a shared subscription name; returns
    /// whether it was one.
    fn shared_add(&mut self, shard: ShardId, share: &str) -> bool {
        let Ok(Some(parsed)) = topic::parse_shared(share) else {
            return false;
        };
        let key = match self.shared_index.get(share) {
            Some(&key) => key,
            None => {
                let filter = MqttString::from(parsed.filter);
                let key = self.shared.insert(SharedRoute {
                    share: MqttString::from(share),
                    filter: filter.clone(),
                    shards: Vec::new(),
                    cursor: 0,
                    sticky: None,
                });
                self.shared_index.insert(share.to_string(), key);
                self.shared_trie.insert(filter.as_str(), key);
                key
            }
        };
        let shards = &mut self.shared[key].shards;
        if let Err(at) = shards.binary_search(&shard) {
            shards.insert(at, shard);
        }
        true
    }

    /// Notes that `shard` has no member of `share` left; returns whether `share` is a shared
    /// subscription name.
    fn shared_remove(&mut self, shard: ShardId, share: &str) -> bool {
        if !share.starts_with("$share/") {
            return false;
        }
        let Some(&key) = self.shared_index.get(share) else {
            return matches!(topic::parse_shared(share), Ok(Some(_)));
        };
        let route = &mut self.shared[key];
        route.shards.retain(|&s| s != shard);
        if route.sticky == Some(shard) {
            route.sticky = None;
        }
        if route.shards.is_empty() {
            let route = self.shared.remove(key);
            self.shared_index.remove(route.share.as_str());
            self.shared_trie.remove(route.filter.as_str(), &key);
        }
        true
    }

    /// Whether any shared subscription has members anywhere (the per-publish fast path).
    pub fn has_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    /// A shard with members of `share` (this one included), picked by `random`.
    pub fn shared_pick(&self, share: &str, random: u64) -> Option<ShardId> {
        let route = self.shared.get(*self.shared_index.get(share)?)?;
        if route.shards.is_empty() {
            return None;
        }
        Some(route.shards[(random % route.shards.len() as u64) as usize])
    }

    /// A shard other than this one with members of `share`, picked by `random`.
    pub fn shared_other_shard(&self, share: &str, random: u64) -> Option<ShardId> {
        let route = self.shared.get(*self.shared_index.get(share)?)?;
        let others = route.shards.iter().filter(|&&s| s != self.me).count();
        if others == 0 {
            return None;
        }
        let pick = (random % others as u64) as usize;
        route
            .shards
            .iter()
            .copied()
            .filter(|&s| s != self.me)
            .nth(pick)
    }

    /// For each shared subscription matching `topic`, the shard that gets the message (this
    /// one included) and the subscription's name, appended to `out`. `hash` is the publisher's
    /// client id hash, `random` a fresh random number.
    pub fn shared_targets(
        &mut self,
        topic: &[u8],
        strategy: SharedStrategy,
        hash: u64,
        random: u64,
        out: &mut Vec<(ShardId, MqttString)>,
    ) {
        if self.shared.is_empty() {
            return;
        }
        let Router {
            shared,
            shared_trie,
            shared_cache,
            shared_matches,
            ..
        } = self;
        shared_matches.clear();
        // The topic's bytes: its UTF-8 was checked once, by the codec (issue 17).
        shared_cache.for_each_match(shared_trie, topic, |&key| shared_matches.push(key));
        for &key in shared_matches.iter() {
            let Some(route) = shared.get_mut(key) else {
                continue;
            };
            let n = route.shards.len();
            if n == 0 {
                continue;
            }
            let shard = match strategy {
                SharedStrategy::RoundRobin => {
                    route.cursor = route.cursor.wrapping_add(1);
                    route.shards[route.cursor % n]
                }
                SharedStrategy::Random => route.shards[(random % n as u64) as usize],
                SharedStrategy::Hash => route.shards[(hash % n as u64) as usize],
                SharedStrategy::Sticky => match route.sticky {
                    Some(shard) => shard,
                    None => {
                        let shard = route.shards[(random % n as u64) as usize];
                        route.sticky = Some(shard);
                        shard
                    }
                },
            };
            out.push((shard, route.share.clone()));
        }
    }

    /// Whether the last [`Router::destinations_bytes`] named `shard`.
    pub fn was_destination(&self, shard: ShardId) -> bool {
        self.dest_mask[shard]
    }

    /// The other shards the last [`Router::destinations_bytes`] named, each once.
    pub fn last_destinations(&self) -> &[ShardId] {
        &self.dest_list
    }

    /// Whether a local (non-shared) filter matched the topic of the last
    /// [`Router::destinations_bytes`]: when not, the local trie has no subscriber for it. A
    /// filter whose session is being handed over stays until the handover ends, so this may
    /// say yes for nothing, never no for a subscriber.
    pub fn local_matched(&self) -> bool {
        self.dest_local
    }

    /// The other shards with subscribers matching `topic`, each once.
    pub fn destinations(&mut self, topic: &str) -> &[ShardId] {
        self.destinations_bytes(topic.as_bytes()).0
    }

    /// [`Router::destinations`] for the bytes of a topic name already checked as UTF-8, and how
    /// the routing table's match cache answered.
    pub fn destinations_bytes(&mut self, topic: &[u8]) -> (&[ShardId], CacheLookup) {
        let Router {
            me,
            routes,
            routes_cache,
            dest_mask,
            dest_list,
            dest_local,
            ..
        } = self;
        for &shard in dest_list.iter() {
            dest_mask[shard] = false;
        }
        dest_list.clear();
        *dest_local = false;
        let lookup = routes_cache.for_each_match(routes, topic, |&shard| {
            if shard == *me {
                *dest_local = true;
            } else if !dest_mask[shard] {
                dest_mask[shard] = true;
                dest_list.push(shard);
            }
        });
        (dest_list, lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This shard's own filters are in the routes (so a lookup says whether the local trie
    /// can match), never among the destinations; the last local subscriber removes them.
    #[test]
    fn local_filters_are_matched_but_never_a_destination() {
        let mut router = Router::new(0, 2);
        let f = MqttString::from("a/+");
        let shared = MqttString::from("$share/g/b/#");
        assert!(router.local_added(&f));
        assert!(router.local_added(&shared));
        router.remote_add(1, "a/x");
        assert_eq!(router.destinations_bytes(b"a/x").0, &[1]);
        assert!(router.local_matched());
        assert!(router.destinations_bytes(b"a/y").0.is_empty());
        assert!(router.local_matched());
        assert!(router.destinations_bytes(b"b/c").0.is_empty());
        assert!(
            !router.local_matched(),
            "a shared filter is not in the routes"
        );
        assert!(!router.local_added(&f));
        assert!(!router.local_removed(&f));
        assert!(router.destinations_bytes(b"a/y").0.is_empty());
        assert!(router.local_matched(), "one subscriber is left");
        assert!(router.local_removed(&f));
        assert_eq!(router.destinations_bytes(b"a/x").0, &[1]);
        assert!(!router.local_matched());
    }

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

    #[test]
    fn shared_subscriptions_pick_one_shard_with_members() {
        let mut router = Router::new(0, 3);
        let share = MqttString::from("$share/g/a/+");
        assert!(router.local_added(&share));
        router.remote_add(2, "$share/g/a/+");
        router.remote_add(1, "$share/other/#");
        // Shared routes are not ordinary routes.
        assert!(router.destinations("a/b").is_empty());
        let mut out = Vec::new();
        for _ in 0..4 {
            router.shared_targets(b"a/b", SharedStrategy::RoundRobin, 0, 0, &mut out);
        }
        let picked: Vec<ShardId> = out
            .iter()
            .filter(|(_, s)| s.as_str() == "$share/g/a/+")
            .map(|(shard, _)| *shard)
            .collect();
        assert_eq!(
            picked,
            vec![2, 0, 2, 0],
            "alternates between shards 0 and 2"
        );
        assert_eq!(
            out.len(),
            8,
            "each matching group gets one target per message"
        );
        out.clear();
        // `#` does not match a `$` topic, `a/+` not `b`.
        router.shared_targets(b"$x", SharedStrategy::RoundRobin, 0, 0, &mut out);
        assert!(out.is_empty());
        // Hash: the same publisher always lands on the same shard.
        for _ in 0..3 {
            router.shared_targets(b"a/c", SharedStrategy::Hash, 7, 0, &mut out);
        }
        let hashed: Vec<ShardId> = out
            .iter()
            .filter(|(_, s)| s.as_str() == "$share/g/a/+")
            .map(|(shard, _)| *shard)
            .collect();
        assert_eq!(
            hashed,
            vec![2, 2, 2],
            "7 % 2 picks the second shard every time"
        );
        out.clear();
        assert!(router.local_removed(&share));
        router.remote_remove(2, "$share/g/a/+");
        router.shared_targets(b"a/b", SharedStrategy::RoundRobin, 0, 0, &mut out);
        assert_eq!(out.len(), 1, "only $share/other is left");
        assert_eq!(out[0].0, 1);
    }
}
