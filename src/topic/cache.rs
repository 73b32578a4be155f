//! [`MatchCache`]: the match results of recently published topic names, so that a topic
//! published again is matched with one hash and one comparison instead of a trie walk that
//! hashes every level.
//!
//! The cache is direct-mapped: a topic name has one slot, picked by a keyed hash (see
//! `hash.rs`), and a miss overwrites that slot, reusing its buffers. So it is bounded
//! ([`MATCH_CACHE_SLOTS`] slots, each holding a name of at most [`MATCH_CACHE_TOPIC_LEN_MAX`]
//! bytes and at most [`MATCH_CACHE_VALUES_MAX`] values), allocates nothing once its slots are
//! warm, and costs a walk plus a short copy when it misses. Names or results over the limits
//! are matched by the trie each time and not kept.
//!
//! A slot is valid only for the trie generation it was filled at ([`TopicTrie::generation`]
//! changes with every insertion and removal), so a subscription change makes every slot stale at
//! once without touching them.

use super::hash::{level_hasher, LevelHasher};
use super::TopicTrie;
use std::hash::BuildHasher;

/// Slots of one cache (a power of two). Each slot keeps its buffers once used, so a cache whose
/// slots are all used holds about `MATCH_CACHE_SLOTS * (48 + name + values)` bytes.
pub const MATCH_CACHE_SLOTS: usize = 1024;
/// Longer topic names are not cached (their slot would keep a large buffer).
pub const MATCH_CACHE_TOPIC_LEN_MAX: usize = 200;
/// Results with more values are not cached: a message with that many subscribers is dominated
/// by its deliveries, not by the walk, and its copy would be large.
pub const MATCH_CACHE_VALUES_MAX: usize = 16;

const _: () = assert!(MATCH_CACHE_SLOTS.is_power_of_two());

/// How a lookup was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheLookup {
    /// The trie is empty: nothing matches, and neither the cache nor the trie was looked at.
    Empty,
    /// From the cache.
    Hit,
    /// By the trie; the result is now cached.
    Miss,
    /// By the trie, and not cached (name or result over the limits).
    Bypassed,
}

struct Slot<V> {
    /// The trie generation the slot was filled at; 0 (no generation) while it holds nothing.
    filled_at: u64,
    topic: Vec<u8>,
    values: Vec<V>,
}

/// The match results of recently published topic names for one [`TopicTrie`].
pub struct MatchCache<V> {
    /// Empty until the first lookup, then [`MATCH_CACHE_SLOTS`] long.
    slots: Vec<Slot<V>>,
    hasher: LevelHasher,
}

impl<V> Default for MatchCache<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> MatchCache<V> {
    /// An empty cache; its slots are allocated at the first lookup.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            hasher: level_hasher(),
        }
    }
}

impl<V: Clone> MatchCache<V> {
    /// Calls `f` with every value of `trie` whose filter matches the topic name `topic` (the
    /// bytes of a valid name), in the order [`TopicTrie::for_each_match`] gives them.
    pub fn for_each_match(
        &mut self,
        trie: &TopicTrie<V>,
        topic: &[u8],
        mut f: impl FnMut(&V),
    ) -> CacheLookup {
        if trie.is_empty() {
            return CacheLookup::Empty;
        }
        if topic.len() > MATCH_CACHE_TOPIC_LEN_MAX {
            trie.for_each_match_bytes(topic, f);
            return CacheLookup::Bypassed;
        }
        if self.slots.is_empty() {
            self.slots = (0..MATCH_CACHE_SLOTS)
                .map(|_| Slot {
                    filled_at: 0,
                    topic: Vec::new(),
                    values: Vec::new(),
                })
                .collect();
        }
        let index = (self.hasher.hash_one(topic) as usize) & (MATCH_CACHE_SLOTS - 1);
        let slot = &mut self.slots[index];
        let generation = trie.generation();
        if slot.filled_at == generation && slot.topic == topic {
            slot.values.iter().for_each(f);
            return CacheLookup::Hit;
        }
        slot.filled_at = 0;
        slot.values.clear();
        let mut fits = true;
        trie.for_each_match_bytes(topic, |value| {
            f(value);
            if slot.values.len() < MATCH_CACHE_VALUES_MAX {
                slot.values.push(value.clone());
            } else {
                fits = false;
            }
        });
        if !fits {
            slot.values.clear();
            return CacheLookup::Bypassed;
        }
        slot.topic.clear();
        slot.topic.extend_from_slice(topic);
        slot.filled_at = generation;
        CacheLookup::Miss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(
        cache: &mut MatchCache<u32>,
        trie: &TopicTrie<u32>,
        topic: &str,
    ) -> (Vec<u32>, CacheLookup) {
        let mut found = Vec::new();
        let how = cache.for_each_match(trie, topic.as_bytes(), |&v| found.push(v));
        found.sort_unstable();
        (found, how)
    }

    #[test]
    fn hits_until_the_trie_changes() {
        let mut trie = TopicTrie::new();
        trie.insert("a/+", 1);
        trie.insert("a/#", 2);
        let mut cache = MatchCache::new();
        assert_eq!(
            lookup(&mut cache, &TopicTrie::new(), "a/b"),
            (vec![], CacheLookup::Empty)
        );
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![1, 2], CacheLookup::Miss)
        );
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![1, 2], CacheLookup::Hit)
        );
        assert_eq!(lookup(&mut cache, &trie, "x"), (vec![], CacheLookup::Miss));
        assert_eq!(lookup(&mut cache, &trie, "x"), (vec![], CacheLookup::Hit));
        // An insertion makes every slot stale.
        trie.insert("x", 3);
        assert_eq!(lookup(&mut cache, &trie, "x"), (vec![3], CacheLookup::Miss));
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![1, 2], CacheLookup::Miss)
        );
        // So does a removal, but not a removal that removed nothing.
        assert!(!trie.remove("a/+", &9));
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![1, 2], CacheLookup::Hit)
        );
        assert!(trie.remove("a/+", &1));
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![2], CacheLookup::Miss)
        );
        assert_eq!(
            lookup(&mut cache, &trie, "a/b"),
            (vec![2], CacheLookup::Hit)
        );
    }

    #[test]
    fn names_and_results_over_the_limits_are_not_kept() {
        let mut trie = TopicTrie::new();
        trie.insert("#", 0);
        let long = "a".repeat(MATCH_CACHE_TOPIC_LEN_MAX + 1);
        let mut cache = MatchCache::new();
        assert_eq!(
            lookup(&mut cache, &trie, &long),
            (vec![0], CacheLookup::Bypassed)
        );
        assert_eq!(
            lookup(&mut cache, &trie, &long),
            (vec![0], CacheLookup::Bypassed)
        );
        let many = MATCH_CACHE_VALUES_MAX as u32 + 1;
        for value in 1..many {
            trie.insert("b", value);
        }
        let want: Vec<u32> = (0..many).collect();
        assert_eq!(
            lookup(&mut cache, &trie, "b"),
            (want.clone(), CacheLookup::Bypassed)
        );
        assert_eq!(
            lookup(&mut cache, &trie, "b"),
            (want, CacheLookup::Bypassed)
        );
        // Exactly the limit is cached.
        assert!(trie.remove("b", &1));
        assert_eq!(lookup(&mut cache, &trie, "b").1, CacheLookup::Miss);
        assert_eq!(lookup(&mut cache, &trie, "b").1, CacheLookup::Hit);
    }

    #[test]
    fn colliding_names_replace_each_other() {
        let mut trie = TopicTrie::new();
        trie.insert("+", 7);
        let mut cache = MatchCache::new();
        // More names than slots: some share a slot, and every answer stays right.
        let names: Vec<String> = (0..MATCH_CACHE_SLOTS * 2).map(|i| i.to_string()).collect();
        for _ in 0..2 {
            for name in &names {
                assert_eq!(lookup(&mut cache, &trie, name).0, vec![7]);
            }
        }
    }
}
