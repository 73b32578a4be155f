//! Shared subscriptions `$share/{group}/{filter}` (MQTT 5 spec 4.8.2; also accepted from MQTT
//! 3.x clients, as Mosquitto, EMQX and VerneMQ allow): each message goes to ONE member of the
//! group, whichever shard the members are on.
//!
//! The publishing shard asks its routing replica ([`crate::broker::core::delivery::router::Router::shared_targets`]) for
//! one shard per matching group, among the shards with members, by the configured strategy. That
//! shard picks one of its local members by the same strategy, skipping members that are offline
//! or whose in-flight window is full while another member can take the message; when none can,
//! the message is queued to the member the strategy picked (it is not lost).
//!
//! Local members live outside the ordinary trie (a topic named `$share/...` must never match
//! them): in the router's table, one entry per shared subscription name, each with its members
//! in subscribe order. Issue 17: on the per-message path a subscription is its
//! [`GroupKey`] (carried from the router's match to the member pick), so no name is hashed,
//! compared or cloned there; names travel only to other shards.

use crate::broker::core::config::SharedStrategy;
use crate::broker::core::delivery::fanout::{with_subscription_identifiers, Encoding};
use crate::broker::core::delivery::router::GroupKey;
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::keys::SessionKey;
use crate::broker::core::mesh::ShardMsg;
use crate::broker::core::sessions::session::{MessageRef, OutgoingState, SessionState};
use crate::broker::core::shard::ShardCore;
use crate::broker::core::stats::bump;
use crate::codec::{MqttString, QoS};

/// The members of one shared subscription on this shard.
#[derive(Debug, Default)]
pub struct SharedMembers {
    /// In subscribe order; one entry per session.
    pub members: Vec<LocalSub>,
    /// Round-robin position (the last member picked).
    pub cursor: usize,
    /// The sticky strategy's current member (index into `members`).
    pub sticky: Option<usize>,
    /// The shard's member progress ([`crate::broker::core::delivery::Delivery::member_progress`])
    /// when no member could take a QoS 1/2 message: until it moves (an acknowledgement, a
    /// written-down buffer, a connect, a discarded in-flight message) none can, and the pick
    /// does not check them all again (issue 17: O(1) per message while the group is busy).
    pub all_busy_at: Option<u64>,
}

/// Whether a (validated) filter names a shared subscription.
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with("$share/")
}

/// FNV-1a of the publisher's client id: the same on every shard, so the hash strategy sends one
/// publisher's messages to one member.
pub fn client_id_hash(client_id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in client_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl ShardCore {
    /// A fresh random number for the strategies that read one (random and sticky), else 0:
    /// round robin and hash need none on the per-message path.
    fn strategy_random(&mut self, strategy: SharedStrategy) -> u64 {
        match strategy {
            SharedStrategy::Random | SharedStrategy::Sticky => self.delivery.next_random(),
            SharedStrategy::RoundRobin | SharedStrategy::Hash => 0,
        }
    }

    /// Sends a message published on this shard to one member of each matching shared
    /// subscription. Returns whether any group matched and whether a mesh channel was full.
    pub(crate) fn route_shared(
        &mut self,
        message: &MessageRef,
        origin: Option<SessionKey>,
    ) -> (bool, bool) {
        if !self.delivery.router().has_shared() {
            // No shared subscription anywhere: nothing to hash or draw.
            return (false, false);
        }
        let strategy = self.config.shared_subscription_strategy;
        // Only the hash strategy reads the publisher's hash (issue 17 profile: hashing and
        // UTF-8-checking the client id cost ~200 instructions per message otherwise).
        let hash = origin
            .filter(|_| strategy == SharedStrategy::Hash)
            .and_then(|skey| self.sessions.get(skey))
            .map_or(0, |s| client_id_hash(s.session.state.client_id.as_str()));
        let random = self.strategy_random(strategy);
        let mut targets = self.delivery.take_shared_targets();
        self.delivery.router_mut().shared_targets(
            message.topic.as_bytes(),
            strategy,
            hash,
            random,
            &mut targets,
        );
        let matched = !targets.is_empty();
        let mut overflowed = false;
        for &(shard, group) in &targets {
            if shard == self.id {
                self.deliver_shared(group, message, hash, 0);
                continue;
            }
            // Another shard knows the subscription by its name.
            let Some(share) = self.delivery.router().shared_name(group).cloned() else {
                continue;
            };
            let msg = ShardMsg::MessageRef {
                message: message.clone(),
                share,
                publisher_hash: hash,
                hops: 0,
            };
            if !self.mesh.send(shard, msg) {
                overflowed = true;
                bump(&self.global.counters[self.id].mesh_channel_full);
            }
        }
        self.delivery.recycle_shared_targets(targets);
        (matched, overflowed)
    }

    /// Delivers a message for the shared subscription named `share` (from another shard, or
    /// from a handover) to one local member.
    pub(crate) fn deliver_shared_named(
        &mut self,
        share: &MqttString,
        message: &MessageRef,
        publisher_hash: u64,
        hops: u8,
    ) {
        match self.delivery.router().shared_group(share.as_str()) {
            Some(group) => self.deliver_shared(group, message, publisher_hash, hops),
            None => {
                // Finding F1: the member was a session handed over from here (handover.rs).
                if self.handovers.has_outgoing()
                    && self.handover_forward_shared(share, message, publisher_hash)
                {
                    return;
                }
                // No shard has members any more, as far as this one knows.
                bump(&self.global.counters[self.id].shared_no_member);
            }
        }
    }

    /// Delivers a message to one local member of `group`.
    pub(crate) fn deliver_shared(
        &mut self,
        group: GroupKey,
        message: &MessageRef,
        publisher_hash: u64,
        hops: u8,
    ) {
        let strategy = self.config.shared_subscription_strategy;
        let random = self.strategy_random(strategy);
        let Some((sub, can_take)) =
            self.pick_member(group, message.qos, strategy, publisher_hash, random)
        else {
            self.deliver_shared_elsewhere(group, message, publisher_hash, hops);
            return;
        };
        // Issue 11 hook: when no member here can take it, another shard with members gets it
        // (once); it queues here only when that was already tried.
        if !can_take && hops == 0 && self.forward_shared(group, message, publisher_hash) {
            return;
        }
        let qos = sub.options.qos.min(message.qos);
        // [MQTT-3.3.1-12]/[MQTT-3.3.1-13]: Retain As Published applies as for any subscription.
        let retain = sub.options.retain_as_published && message.retain;
        let fresh = Encoding::Fresh { dup: false };
        if sub.identifier != 0 || !message.properties.subscription_identifiers.is_empty() {
            // [MQTT-3.3.4-3]: the identifier of the matching subscription (a redelivered
            // message may carry another member's).
            let identifiers: &[u32] = if sub.identifier != 0 {
                &[sub.identifier]
            } else {
                &[]
            };
            let own = with_subscription_identifiers(message, identifiers);
            self.deliver_to_session(sub.session, &own, qos, retain, fresh);
        } else {
            self.deliver_to_session(sub.session, message, qos, retain, fresh);
        }
    }

    /// `group` has no member on this shard any more.
    fn deliver_shared_elsewhere(
        &mut self,
        group: GroupKey,
        message: &MessageRef,
        publisher_hash: u64,
        hops: u8,
    ) {
        let share = self.delivery.router().shared_name(group).cloned();
        let Some(share) = share else {
            // Gone everywhere (its last member here left while this message was routed).
            bump(&self.global.counters[self.id].shared_no_member);
            return;
        };
        // Finding F1: the member was a session handed over from here, whose route this shard
        // keeps until the handover ends: it follows the session (handover.rs).
        if self.handovers.has_outgoing()
            && self.handover_forward_shared(&share, message, publisher_hash)
        {
            return;
        }
        // The last member left after the publishing shard routed the message here (its route
        // removal was still on the way): hand it to another shard with members. Again if it was
        // passed on already (the shard that passed it on may have had busy members only, and
        // picked this one by a stale route), up to one hop per shard.
        let random = self.delivery.next_random();
        let other = self.delivery.router().shared_other_shard(group, random);
        match other {
            Some(target) if usize::from(hops) < self.mesh.shards() => {
                let msg = ShardMsg::MessageRef {
                    message: message.clone(),
                    share,
                    publisher_hash,
                    hops: hops + 1,
                };
                if !self.mesh.send(target, msg) {
                    bump(&self.global.counters[self.id].mesh_channel_full);
                }
            }
            _ => bump(&self.global.counters[self.id].shared_no_member),
        }
    }

    /// A session that ended (its member already left every group) hands its undelivered
    /// shared-subscription messages to other members: QoS 1/2 messages in flight but not yet
    /// received (no PUBREC) and queued messages whose topic matches one of its shared
    /// subscriptions go to the group again, as a new delivery.
    pub(crate) fn redeliver_shared(&mut self, state: &SessionState) {
        let shares: Vec<(MqttString, &str)> = state
            .subscriptions
            .keys()
            .filter_map(|key| match crate::topic::parse_shared(key.as_str()) {
                Ok(Some(parsed)) => Some((key.clone(), parsed.filter)),
                _ => None,
            })
            .collect();
        if shares.is_empty() {
            return;
        }
        let unreceived = state
            .inflight
            .iter()
            .filter(|o| o.state != OutgoingState::AwaitPubComp)
            .map(|o| &o.message)
            .chain(state.queued.iter().map(|q| &q.message));
        for message in unreceived {
            for (share, filter) in &shares {
                if !crate::topic::filter_matches(filter, message.topic.as_str()) {
                    continue;
                }
                let random = self.delivery.next_random();
                let router = self.delivery.router();
                let Some(group) = router.shared_group(share.as_str()) else {
                    continue;
                };
                let Some(target) = router.shared_pick(group, random) else {
                    continue;
                };
                bump(&self.global.counters[self.id].shared_redelivered);
                if target == self.id {
                    self.deliver_shared(group, message, 0, 0);
                } else {
                    let msg = ShardMsg::MessageRef {
                        message: message.clone(),
                        share: share.clone(),
                        publisher_hash: 0,
                        hops: 0,
                    };
                    if !self.mesh.send(target, msg) {
                        bump(&self.global.counters[self.id].mesh_channel_full);
                    }
                }
            }
        }
    }

    /// Picks the member of `group` that gets the next message: the strategy's choice if it can
    /// take it now, else the next member in order that can, else the strategy's choice anyway
    /// (the message waits in its queue).
    fn pick_member(
        &mut self,
        group: GroupKey,
        qos: QoS,
        strategy: SharedStrategy,
        publisher_hash: u64,
        random: u64,
    ) -> Option<(LocalSub, bool)> {
        let sessions = &self.sessions;
        // Issue 11: a member whose outgoing buffer is full cannot take a message either.
        let connections = &self.connections;
        let max_outgoing = self.config.max_outgoing_bytes;
        let max_inflight_bytes =
            crate::broker::core::sessions::session::ByteLimits::of(&self.config).inflight;
        let progress = self.delivery.member_progress();
        let group = self.delivery.router_mut().shared_members_mut(group)?;
        let n = group.members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            // The member after the last one picked, without a division.
            SharedStrategy::RoundRobin if group.cursor + 1 < n => group.cursor + 1,
            SharedStrategy::RoundRobin => 0,
            SharedStrategy::Random => (random % n as u64) as usize,
            SharedStrategy::Hash => (publisher_hash % n as u64) as usize,
            SharedStrategy::Sticky => group
                .sticky
                .filter(|&i| i < n)
                .unwrap_or((random % n as u64) as usize),
        };
        let can_take = |sub: &LocalSub| {
            sessions.get(sub.session).is_some_and(|s| {
                s.connection
                    .and_then(|key| connections.get(key))
                    .is_some_and(|c| c.out.len() < max_outgoing)
                    && (qos == QoS::AtMostOnce || s.session.can_send_now(max_inflight_bytes))
            })
        };
        // The strategy's member first (the common case: one check), then the others in order;
        // none while nothing moved since every member was found busy. A QoS 0 message needs no
        // window, so it is always checked.
        let busy = qos != QoS::AtMostOnce;
        let mut chosen = None;
        if !(busy && group.all_busy_at == Some(progress)) {
            let mut index = start;
            for _ in 0..n {
                if can_take(&group.members[index]) {
                    chosen = Some(index);
                    break;
                }
                index = if index + 1 < n { index + 1 } else { 0 };
            }
        }
        let index = match chosen {
            Some(i) => i,
            None => {
                if busy {
                    group.all_busy_at = Some(progress);
                }
                bump(&self.global.counters[self.id].shared_all_members_busy);
                start
            }
        };
        group.cursor = index;
        if strategy == SharedStrategy::Sticky {
            group.sticky = Some(index);
        }
        Some((group.members[index], chosen.is_some()))
    }

    /// Issue 11: hands a shared message no local member can take to another shard with
    /// members (one hop: it queues there if no member there can take it either). Returns
    /// whether it was sent.
    fn forward_shared(
        &mut self,
        group: GroupKey,
        message: &MessageRef,
        publisher_hash: u64,
    ) -> bool {
        let random = self.delivery.next_random();
        let router = self.delivery.router();
        let Some(target) = router.shared_other_shard(group, random) else {
            return false;
        };
        let Some(share) = router.shared_name(group).cloned() else {
            return false;
        };
        let msg = ShardMsg::MessageRef {
            message: message.clone(),
            share,
            publisher_hash,
            hops: 1,
        };
        if !self.mesh.send(target, msg) {
            bump(&self.global.counters[self.id].mesh_channel_full);
        }
        true
    }
}
