//! Delivery of a batch of publishes from another shard (`ShardMsg::Publishes`, issue 17): a run
//! of consecutive messages on one topic (a publisher's burst read in one turn, a fan-in topic)
//! is matched against the local trie once, and each message of the run is delivered to those
//! matches in order. The matches are taken again whenever the trie changed meanwhile (a
//! delivery that closes a slow consumer may end its session), so every message sees exactly
//! what a match of its own would have found.

use crate::broker::core::delivery::fanout::count_lookup;
use crate::broker::core::delivery::LocalSub;
use crate::broker::core::mesh::ShardId;
use crate::broker::core::sessions::session::MessageRef;
use crate::broker::core::shard::ShardCore;
use crate::topic::CacheLookup;

impl ShardCore {
    /// Delivers the publishes `from` routed here in one batch, in order, and forwards each to
    /// a session handed over from here that may still need it (finding F1).
    pub(crate) fn deliver_batch(&mut self, from: ShardId, messages: &[MessageRef]) {
        let mut start = 0;
        while start < messages.len() {
            let topic = messages[start].topic.as_bytes();
            let same = messages[start + 1..]
                .iter()
                .take_while(|m| m.topic.as_bytes() == topic)
                .count();
            let end = start + 1 + same;
            self.deliver_run(from, &messages[start..end]);
            start = end;
        }
    }

    /// Messages on one topic, matched once while the trie stays as it was.
    fn deliver_run(&mut self, from: ShardId, run: &[MessageRef]) {
        let mut taken: Option<(Vec<LocalSub>, u64)> = None;
        for message in run {
            if self.delivery.has_local_subscriptions() {
                let generation = self.delivery.trie_generation();
                let matches = match taken.take() {
                    Some((matches, at)) if at == generation => {
                        self.delivery.start_delivery();
                        count_lookup(&self.global.counters[self.id], CacheLookup::Hit);
                        matches
                    }
                    stale => {
                        if let Some((matches, _)) = stale {
                            self.delivery.recycle_matches(matches);
                        }
                        let topic = message.topic.as_bytes();
                        let (matches, lookup) = self.delivery.take_matches(topic, None);
                        count_lookup(&self.global.counters[self.id], lookup);
                        matches
                    }
                };
                self.deliver_matches(message, &matches, Some(from));
                taken = Some((matches, generation));
            }
            if self.handovers.has_outgoing() {
                self.handover_forward(message, from);
            }
        }
        if let Some((matches, _)) = taken {
            self.delivery.recycle_matches(matches);
        }
    }
}
