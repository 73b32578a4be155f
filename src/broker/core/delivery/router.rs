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
//! included) and this shard's own members, and the publishing shard picks ONE shard per message
//! ([`Router::shared_targets`]). Issue 17: a shared subscription is named on the per-message path
//! by its [`GroupKey`] (a slot in this table), never by its name; the name is looked up only at
//! subscribe and unsubscribe, and for messages that come from another shard.

use crate::broker::core::config::SharedStrategy;
use crate::broker::core::delivery::shared_subscriptions::SharedMembers;
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::keys::SessionKey;
use crate::broker::core::mesh::ShardId;
use crate::codec::MqttString;
use crate::topic::{self, CacheLookup, MatchCache, TopicTrie};
use slab::Slab;
use std::collections::HashMap;

/// A shared subscription on this shard: its slot in the router's table and the generation the
/// slot had when it was handed out, so that a slot freed and reused is never taken for the old
/// subscription. Valid on this shard only (other shards are sent the name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupKey {
    slot: u32,
    generation: u32,
}

/// Longest topic name whose routing answer is kept for the next publish (longer ones are
/// looked up every time).
const DEST_TOPIC_LEN_MAX: usize = 256;

/// One shared subscription as this shard knows it.
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
    /// Distinguishes this subscription from earlier ones in the same slot.
    generation: u32,
    /// This shard's members (none when only other shards have some, or while a handover keeps
    /// the route of a session that left).
    members: SharedMembers,
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
    /// The topic of the last lookup (at most `DEST_TOPIC_LEN_MAX` bytes) and the routes'
    /// generation it was answered at (0: none), so that the next publish on the same topic
    /// reuses the answer.
    dest_topic: Vec<u8>,
    dest_generation: u64,
    /// Shared subscriptions with members anywhere (this shard's members included), by
    /// [`GroupKey`]; a slot lives while some shard has members or this shard has.
    shared: Slab<SharedRoute>,
    /// The generation given to the next shared subscription.
    shared_generation: u32,
    /// Slot by name, for subscribe, unsubscribe and messages from other shards: foldhash, keyed
    /// per map with a random seed, as the ACL cache.
    shared_index: HashMap<String, usize, foldhash::fast::RandomState>,
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
            dest_topic: Vec::new(),
            dest_generation: 0,
            shared: Slab::new(),
            shared_generation: 0,
            shared_index: HashMap::default(),
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

    /// The slot of shared subscription `share`, made if there is none; `None` if `share` is not
    /// a shared subscription name.
    fn shared_entry(&mut self, share: &str) -> Option<usize> {
        if let Some(&key) = self.shared_index.get(share) {
            return Some(key);
        }
        let Ok(Some(parsed)) = topic::parse_shared(share) else {
            return None;
        };
        let filter = MqttString::from(parsed.filter);
        self.shared_generation = self.shared_generation.wrapping_add(1);
        let key = self.shared.insert(SharedRoute {
            share: MqttString::from(share),
            filter: filter.clone(),
            shards: Vec::new(),
            cursor: 0,
            sticky: None,
            generation: self.shared_generation,
            members: SharedMembers::default(),
        });
        self.shared_index.insert(share.to_string(), key);
        self.shared_trie.insert(filter.as_str(), key);
        Some(key)
    }

    /// Frees the slot of a shared subscription no shard has members of any more.
    fn shared_release(&mut self, key: usize) {
        let unused = self
            .shared
            .get(key)
            .is_some_and(|r| r.shards.is_empty() && r.members.members.is_empty());
        if unused {
            let route = self.shared.remove(key);
            self.shared_index.remove(route.share.as_str());
            self.shared_trie.remove(route.filter.as_str(), &key);
        }
    }

    /// Notes that `shard` has members of `share` if it is a shared subscription name; returns
    /// whether it was one.
    fn shared_add(&mut self, shard: ShardId, share: &str) -> bool {
        if !share.starts_with("$share/") {
            return false;
        }
        let Some(key) = self.shared_entry(share) else {
            return false;
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
        self.shared_release(key);
        true
    }

    /// Adds (or replaces) a local member of shared subscription `share`; false if `share` is
    /// not a shared subscription name.
    pub fn shared_join(&mut self, share: &str, sub: LocalSub) -> bool {
        let Some(key) = self.shared_entry(share) else {
            return false;
        };
        let group = &mut self.shared[key].members;
        match group.members.iter_mut().find(|m| m.session == sub.session) {
            Some(existing) => *existing = sub,
            None => group.members.push(sub),
        }
        // The new member may take what the others could not.
        group.all_busy_at = None;
        true
    }

    /// Removes a session from the local members of shared subscription `share`.
    pub fn shared_leave(&mut self, share: &str, skey: SessionKey) {
        let Some(&key) = self.shared_index.get(share) else {
            return;
        };
        let group = &mut self.shared[key].members;
        group.members.retain(|m| m.session != skey);
        group.sticky = None;
        self.shared_release(key);
    }

    /// The key of shared subscription `share`, if some shard has members (or this one has).
    pub fn shared_group(&self, share: &str) -> Option<GroupKey> {
        let key = *self.shared_index.get(share)?;
        let route = self.shared.get(key)?;
        Some(GroupKey {
            slot: u32::try_from(key).ok()?,
            generation: route.generation,
        })
    }

    fn shared_route(&self, group: GroupKey) -> Option<&SharedRoute> {
        self.shared
            .get(group.slot as usize)
            .filter(|r| r.generation == group.generation)
    }

    /// This shard's members of `group` (`None` once the subscription is gone everywhere).
    #[inline]
    pub fn shared_members_mut(&mut self, group: GroupKey) -> Option<&mut SharedMembers> {
        self.shared
            .get_mut(group.slot as usize)
            .filter(|r| r.generation == group.generation)
            .map(|r| &mut r.members)
    }

    /// The name of `group` (what other shards are sent).
    pub fn shared_name(&self, group: GroupKey) -> Option<&MqttString> {
        self.shared_route(group).map(|r| &r.share)
    }

    /// Whether any shared subscription has members anywhere (the per-publish fast path).
    pub fn has_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    /// A shard with members of `group` (this one included), picked by `random`.
    pub fn shared_pick(&self, group: GroupKey, random: u64) -> Option<ShardId> {
        let route = self.shared_route(group)?;
        if route.shards.is_empty() {
            return None;
        }
        Some(route.shards[(random % route.shards.len() as u64) as usize])
    }

    /// A shard other than this one with members of `group`, picked by `random`.
    pub fn shared_other_shard(&self, group: GroupKey, random: u64) -> Option<ShardId> {
        let route = self.shared_route(group)?;
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
    /// one included) and the subscription's key, appended to `out`. `hash` is the publisher's
    /// client id hash, `random` a fresh random number (read by the random and sticky
    /// strategies only).
    pub fn shared_targets(
        &mut self,
        topic: &[u8],
        strategy: SharedStrategy,
        hash: u64,
        random: u64,
        out: &mut Vec<(ShardId, GroupKey)>,
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
                // One shard (the common case) needs no division; sticky notes its pick.
                _ if n == 1 && strategy != SharedStrategy::Sticky => route.shards[0],
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
            // Slab keys fit in u32: the table is bounded by the subscriptions on the broker.
            let Ok(slot) = u32::try_from(key) else {
                continue;
            };
            out.push((
                shard,
                GroupKey {
                    slot,
                    generation: route.generation,
                },
            ));
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
            dest_topic,
            dest_generation,
            ..
        } = self;
        // Issue 17: a connection's publishes read in one turn are mostly on one topic; the
        // last answer holds while the routes did not change.
        if *dest_generation == routes.generation() && dest_topic.as_slice() == topic {
            return (dest_list, CacheLookup::Hit);
        }
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
        dest_topic.clear();
        if topic.len() <= DEST_TOPIC_LEN_MAX {
            dest_topic.extend_from_slice(topic);
            *dest_generation = routes.generation();
        } else {
            *dest_generation = 0;
        }
        (dest_list, lookup)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer kept for the last topic is reused only while the routes stay as they were.
    #[test]
    fn the_last_answer_follows_route_changes() {
        let mut router = Router::new(0, 3);
        router.remote_add(1, "a/x");
        assert_eq!(router.destinations_bytes(b"a/x").0, &[1]);
        assert_eq!(router.destinations_bytes(b"a/x").1, CacheLookup::Hit);
        router.remote_add(2, "a/#");
        let mut dests = router.destinations_bytes(b"a/x").0.to_vec();
        dests.sort();
        assert_eq!(dests, vec![1, 2]);
        router.remote_remove(1, "a/x");
        assert_eq!(router.destinations_bytes(b"a/x").0, &[2]);
        assert!(!router.was_destination(1) && router.was_destination(2));
        assert!(!router.local_matched());
        assert!(router.local_added(&MqttString::from("a/+")));
        assert_eq!(router.destinations_bytes(b"a/x").0, &[2]);
        assert!(router.local_matched());
        let long = vec![b'l'; DEST_TOPIC_LEN_MAX + 1];
        assert!(router.destinations_bytes(&long).0.is_empty());
        assert!(router.destinations_bytes(&long).0.is_empty());
    }

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
        let g = router.shared_group("$share/g/a/+").expect("a group");
        let mut out = Vec::new();
        for _ in 0..4 {
            router.shared_targets(b"a/b", SharedStrategy::RoundRobin, 0, 0, &mut out);
        }
        let picked: Vec<ShardId> = out
            .iter()
            .filter(|(_, group)| *group == g)
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
            .filter(|(_, group)| *group == g)
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

    #[test]
    fn a_reused_slot_is_not_taken_for_the_old_group() {
        let mut router = Router::new(0, 1);
        let member = LocalSub {
            session: SessionKey::new(1),
            options: crate::codec::SubscriptionOptions::default(),
            identifier: 0,
        };
        assert!(!router.shared_join("a/b", member), "not a shared name");
        assert!(router.shared_join("$share/g/a", member));
        let old = router.shared_group("$share/g/a").expect("a group");
        router.shared_leave("$share/g/a", member.session);
        assert!(router.shared_group("$share/g/a").is_none());
        assert!(router.shared_join("$share/h/a", member));
        let new = router.shared_group("$share/h/a").expect("a group");
        assert_eq!(new.slot, old.slot, "the slot is reused");
        assert!(router.shared_members_mut(old).is_none());
        assert!(router.shared_name(old).is_none());
        assert_eq!(
            router.shared_name(new).map(|s| s.as_str()),
            Some("$share/h/a")
        );
        let mut out = Vec::new();
        router.local_added(&MqttString::from("$share/h/a"));
        router.shared_targets(b"a", SharedStrategy::RoundRobin, 0, 0, &mut out);
        assert_eq!(out, vec![(0, new)]);
    }
}
