//! Delivery: the trie and its match cache, the routing replica, shared subscriptions, the wire
//! layouts a publish is encoded into once, and fan-out to the sessions.
//!
//! [`Delivery`] is the component's state with its own small API: this shard's subscriptions
//! (ordinary ones in the trie, shared ones by group), the routing replica of the other shards'
//! filters ([`router::Router`]), the wire layouts of the publish being delivered, and the
//! scratch vectors and message allocation reused every publish. The shard's logic around it
//! (route a publish, deliver to sessions, write layouts, SUBACK barrier) is `fanout.rs`,
//! `batch.rs` (a batch of publishes from another shard), `shared_subscriptions.rs` and
//! `retained_pacing.rs`.

pub(crate) mod batch;
pub(crate) mod fanout;
// Issue 11: QoS 0 retained messages on subscribe paced as the buffer drains.
pub(crate) mod retained_pacing;
pub mod router;
pub mod shared_subscriptions;

use super::connection::protocol::{
    encode_layout, forwarded_layout, Layout, LayoutCache, LayoutOptions,
};
use super::keys::SessionKey;
use super::mesh::ShardId;
use super::sessions::session::{Message, MessageRef, ReceivedFrame};
use crate::codec::{
    EncodeError, MqttString, Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions,
};
use crate::topic::{CacheLookup, MatchCache, TopicTrie};
use bytes::{Bytes, BytesMut};
use router::{GroupKey, Router};
use shared_subscriptions::is_shared;
use std::sync::Arc;
use std::time::Instant;

/// One subscription in the shard's trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalSub {
    /// Session slab key.
    pub session: SessionKey,
    pub options: SubscriptionOptions,
    /// MQTT 5 Subscription Identifier; 0 = none.
    pub identifier: u32,
}

/// A shard's subscriptions, its routing replica, and what delivering a publish needs.
pub struct Delivery {
    /// This shard's clients' ordinary subscriptions.
    trie: TopicTrie<LocalSub>,
    /// Recent match results of `trie` by topic name.
    match_cache: MatchCache<LocalSub>,
    /// The other shards' filters (routing replica), the SUBACK barrier's epochs, and this
    /// shard's members of shared subscriptions (by [`GroupKey`], issue 17: no name is hashed
    /// per message).
    router: Router,
    /// State of the shared subscriptions' random strategy (xorshift64*, never 0).
    random_state: u64,
    /// Counts the events that may let a session take a message again (`note_member_progress`).
    member_progress: u64,
    /// The wire layouts of the publish being delivered, one per (version, QoS, retain).
    layouts: LayoutCache,
    /// Scratch of the encoder.
    encode_buf: BytesMut,
    /// Message allocations kept for the next publishes (at most `SPARE_MESSAGES_MAX`), emptied
    /// so that they pin no read buffer: the publisher's when nothing else kept it, and a QoS 1
    /// message's once its PUBACK came (issue 17).
    spare_messages: Vec<MessageRef>,
    // Scratch vectors lent out for one publish or subscribe and given back, so that the
    // steady state allocates nothing.
    matches: Vec<LocalSub>,
    subscription_ids: Vec<u32>,
    shared_targets: Vec<(ShardId, GroupKey)>,
    retained_scratch: Vec<MessageRef>,
}

/// Emptied message allocations a shard keeps for reuse at most: a fixed bound (168 bytes each
/// on 64-bit targets, so at most 168 KiB per shard, held only after that many messages were
/// in flight at once), enough for the PUBACKs of one turn to feed the publishes of the next.
/// Issue 17: at 64 the pool overflowed with 64 publishers x 64 in flight (`sharedsub
/// --publishers 64`), and most messages were allocated and freed again; 1,024 gave 4-7 % more
/// deliveries per broker CPU-second there than 64 or 256 (BENCHMARKS.md, `$share` second round).
const SPARE_MESSAGES_MAX: usize = 1024;

impl Delivery {
    /// The delivery state of shard `me` of `shards`; `random_state` seeds the random strategy.
    pub fn new(me: ShardId, shards: usize, random_state: u64) -> Delivery {
        Delivery {
            trie: TopicTrie::new(),
            match_cache: MatchCache::new(),
            router: Router::new(me, shards),
            random_state: random_state | 1,
            member_progress: 0,
            layouts: LayoutCache::default(),
            encode_buf: BytesMut::new(),
            spare_messages: Vec::new(),
            matches: Vec::new(),
            subscription_ids: Vec::new(),
            shared_targets: Vec::new(),
            retained_scratch: Vec::new(),
        }
    }

    /// The routing replica.
    #[inline]
    pub fn router(&self) -> &Router {
        &self.router
    }

    #[inline]
    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    /// Adds a subscription to the trie, or to its shared group (replacing the session's old
    /// one there).
    pub fn subscribe(&mut self, filter: &MqttString, sub: LocalSub) {
        if !is_shared(filter.as_str()) {
            self.trie.insert(filter.as_str(), sub);
            return;
        }
        let joined = self.router.shared_join(filter.as_str(), sub);
        debug_assert!(joined, "a validated shared subscription name");
    }

    /// Removes a session's subscription from the trie or from its shared group.
    pub fn unsubscribe(&mut self, filter: &MqttString, skey: SessionKey) {
        if !is_shared(filter.as_str()) {
            self.trie
                .remove_where(filter.as_str(), |sub| sub.session == skey);
            return;
        }
        self.router.shared_leave(filter.as_str(), skey);
    }

    /// Whether this shard has ordinary (not shared) subscriptions: without any, a publish has
    /// no local fan-out to match (issue 17: the empty match cost ~130 instructions of every
    /// message into a shared subscription).
    #[inline]
    pub fn has_local_subscriptions(&self) -> bool {
        !self.trie.is_empty()
    }

    /// Something may have let a session take a message again (its window or outgoing buffer
    /// opened, it came online): shared-subscription groups found busy are checked again.
    #[inline]
    pub fn note_member_progress(&mut self) {
        self.member_progress = self.member_progress.wrapping_add(1);
    }

    /// See [`Delivery::note_member_progress`].
    #[inline]
    pub fn member_progress(&self) -> u64 {
        self.member_progress
    }

    /// A fresh pseudo-random number (xorshift64*; for the random strategy, not for security).
    pub fn next_random(&mut self) -> u64 {
        let mut x = self.random_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Wraps a publish received at `now` for routing, in the allocation of the previous message
    /// when nothing kept that one (saves an allocation and a free per message).
    pub fn new_message(
        &mut self,
        publish: Publish,
        frame: Option<ReceivedFrame>,
        now: Instant,
    ) -> MessageRef {
        if let Some(mut spare) = self.spare_messages.pop() {
            if let Some(message) = Arc::get_mut(&mut spare) {
                message.publish = publish;
                message.received_at = now;
                message.frame = frame;
                return spare;
            }
        }
        Arc::new(Message {
            publish,
            received_at: now,
            frame,
        })
    }

    /// Keeps `message`'s allocation for [`Delivery::new_message`] if nothing else holds it (no
    /// queue, no other shard, no retained store), dropping its fields so that the spare does
    /// not keep the publisher's read buffer alive. Returns the emptied allocation when this
    /// shard keeps enough already (issue 17: the caller offers it to the other shards,
    /// `Mesh::give_spare_message`).
    pub fn recycle_message(&mut self, mut message: MessageRef) -> Option<MessageRef> {
        let spare = Arc::get_mut(&mut message)?;
        spare.publish.topic = MqttString::default();
        spare.publish.payload = Bytes::new();
        spare.publish.properties = Properties::default();
        spare.frame = None;
        if self.spare_messages.len() >= SPARE_MESSAGES_MAX {
            return Some(message);
        }
        self.spare_messages.push(message);
        None
    }

    /// Whether a message allocation is kept for the next [`Delivery::new_message`].
    pub fn has_spare_message(&self) -> bool {
        !self.spare_messages.is_empty()
    }

    /// Keeps an emptied allocation another shard gave back (`Mesh::take_spare_message`).
    pub fn add_spare_message(&mut self, spare: MessageRef) {
        if self.spare_messages.len() < SPARE_MESSAGES_MAX {
            self.spare_messages.push(spare);
        }
    }

    /// The local subscriptions matching `topic`, grouped by session (sorted by key), without
    /// the No Local ones of `origin` ([MQTT-3.8.3-3]); and how the match cache answered. The
    /// vector is lent: give it back with [`Delivery::recycle_matches`]. A new delivery starts:
    /// the layouts of the previous one are dropped.
    pub fn take_matches(
        &mut self,
        topic: &[u8],
        origin: Option<SessionKey>,
    ) -> (Vec<LocalSub>, CacheLookup) {
        let mut matches = std::mem::take(&mut self.matches);
        matches.clear();
        // The topic's UTF-8 was checked once, by the codec: the trie matches its bytes.
        let lookup = self
            .match_cache
            .for_each_match(&self.trie, topic, |sub| matches.push(*sub));
        if let Some(origin) = origin {
            matches.retain(|m| !(m.session == origin && m.options.no_local));
        }
        // One match (the common point-to-point case) needs no grouping by session.
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|m| m.session);
        }
        if !matches.is_empty() {
            self.layouts.clear();
        }
        (matches, lookup)
    }

    /// The vector [`Delivery::take_matches`] lent.
    pub fn recycle_matches(&mut self, matches: Vec<LocalSub>) {
        self.matches = matches;
    }

    /// A new delivery starts with the matches of the previous one (same topic, trie unchanged:
    /// `batch.rs`): the layouts of the previous one are dropped, as `take_matches` does.
    pub fn start_delivery(&mut self) {
        self.layouts.clear();
    }

    /// Changes with every subscription added to or removed from the local trie: matches taken
    /// at one generation hold while it stays.
    pub fn trie_generation(&self) -> u64 {
        self.trie.generation()
    }

    /// An empty vector for the subscription identifiers of one recipient; give it back with
    /// [`Delivery::recycle_identifiers`].
    pub fn take_identifiers(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.subscription_ids)
    }

    pub fn recycle_identifiers(&mut self, mut identifiers: Vec<u32>) {
        identifiers.clear();
        self.subscription_ids = identifiers;
    }

    /// An empty vector for the shared-subscription targets of one publish; give it back with
    /// [`Delivery::recycle_shared_targets`].
    pub fn take_shared_targets(&mut self) -> Vec<(ShardId, GroupKey)> {
        let mut targets = std::mem::take(&mut self.shared_targets);
        targets.clear();
        targets
    }

    pub fn recycle_shared_targets(&mut self, targets: Vec<(ShardId, GroupKey)>) {
        self.shared_targets = targets;
    }

    /// An empty vector for the retained messages of one subscribe; give it back with
    /// [`Delivery::recycle_retained`].
    pub fn take_retained(&mut self) -> Vec<MessageRef> {
        let mut messages = std::mem::take(&mut self.retained_scratch);
        messages.clear();
        messages
    }

    pub fn recycle_retained(&mut self, mut messages: Vec<MessageRef>) {
        messages.clear();
        self.retained_scratch = messages;
    }

    /// The layout of the publish being delivered for (`version`, `qos`, `retain`), encoded on
    /// first use and shared by every subscriber that takes it.
    #[inline]
    pub fn cached_layout(
        &mut self,
        message: &MessageRef,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Result<&Layout, EncodeError> {
        self.layouts
            .get(message, version, qos, retain, &mut self.encode_buf)
    }

    /// A layout for one send only (own properties, DUP, a topic alias; or a queued message).
    /// Issue 17: with default options (a message sent from the queue) it is cut from the
    /// publisher's frame when that is forwardable, instead of encoded again.
    pub fn fresh_layout(
        &mut self,
        message: &MessageRef,
        version: ProtocolVersion,
        options: LayoutOptions,
    ) -> Result<Layout, EncodeError> {
        let defaults = !options.dup
            && options.message_expiry_interval.is_none()
            && options.topic_alias.is_none();
        if defaults {
            if let Some(layout) = forwarded_layout(message, version, options.qos, options.retain) {
                return Ok(layout);
            }
        }
        encode_layout(message, version, options, &mut self.encode_buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;

    fn sub(session: usize, no_local: bool) -> LocalSub {
        LocalSub {
            session: SessionKey::new(session),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local,
                ..SubscriptionOptions::default()
            },
            identifier: 0,
        }
    }

    fn filter(text: &str) -> MqttString {
        MqttString::from(text)
    }

    #[test]
    fn matches_come_grouped_by_session_without_no_local_ones() {
        let mut delivery = Delivery::new(0, 1, 7);
        delivery.subscribe(&filter("a/#"), sub(3, false));
        delivery.subscribe(&filter("a/+"), sub(1, true));
        delivery.subscribe(&filter("a/b"), sub(3, false));
        delivery.subscribe(&filter("x"), sub(2, false));
        let (matches, _) = delivery.take_matches(b"a/b", None);
        let sessions: Vec<usize> = matches.iter().map(|m| m.session.index()).collect();
        assert_eq!(sessions, [1, 3, 3]);
        delivery.recycle_matches(matches);
        let (matches, _) = delivery.take_matches(b"a/b", Some(SessionKey::new(1)));
        assert!(
            matches.iter().all(|m| m.session != SessionKey::new(1)),
            "No Local"
        );
        assert_eq!(matches.len(), 2);
        delivery.recycle_matches(matches);
        delivery.unsubscribe(&filter("a/#"), SessionKey::new(3));
        let (matches, _) = delivery.take_matches(b"a/b", Some(SessionKey::new(1)));
        assert_eq!(matches.len(), 1);
    }

    #[test]
    fn shared_subscriptions_stay_out_of_the_trie() {
        let mut delivery = Delivery::new(0, 1, 7);
        let share = filter("$share/g/t");
        delivery.subscribe(&share, sub(1, false));
        delivery.subscribe(&share, sub(2, false));
        delivery.subscribe(&share, sub(1, false));
        assert_eq!(delivery.take_matches(b"t", None).0.len(), 0);
        assert_eq!(delivery.take_matches(b"$share/g/t", None).0.len(), 0);
        let group = delivery
            .router()
            .shared_group("$share/g/t")
            .expect("a group");
        let members = delivery.router_mut().shared_members_mut(group);
        assert_eq!(
            members.expect("members").members.len(),
            2,
            "one entry per session"
        );
        delivery.unsubscribe(&share, SessionKey::new(1));
        delivery.unsubscribe(&share, SessionKey::new(2));
        assert!(
            delivery.router().shared_group("$share/g/t").is_none(),
            "empty groups go"
        );
        assert!(
            delivery.router_mut().shared_members_mut(group).is_none(),
            "an old key finds nothing"
        );
    }

    #[test]
    fn a_message_allocation_is_reused_once_nothing_holds_it() {
        let mut delivery = Delivery::new(0, 1, 7);
        let now = Instant::now();
        let publish = Publish {
            topic: filter("t"),
            payload: Bytes::from_static(b"p"),
            ..Publish::default()
        };
        let first = delivery.new_message(publish.clone(), None, now);
        let address = Arc::as_ptr(&first);
        delivery.recycle_message(first);
        let second = delivery.new_message(publish.clone(), None, now);
        assert_eq!(Arc::as_ptr(&second), address, "reused");
        assert_eq!(second.payload, Bytes::from_static(b"p"));
        let held = second.clone();
        delivery.recycle_message(second);
        let third = delivery.new_message(publish, None, now);
        assert_ne!(
            Arc::as_ptr(&third),
            Arc::as_ptr(&held),
            "still held elsewhere"
        );
    }

    #[test]
    fn the_random_strategy_never_sticks_at_zero() {
        let mut delivery = Delivery::new(0, 1, 0);
        let draws: Vec<u64> = (0..4).map(|_| delivery.next_random()).collect();
        assert!(draws.iter().all(|&d| d != 0));
        assert_ne!(draws[0], draws[1]);
    }
}
