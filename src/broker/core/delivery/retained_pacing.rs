//! Issue 11 (docs/memory.md): QoS 0 retained messages sent on subscribe are paced as the
//! subscriber's outgoing buffer drains instead of dropped at `max_outgoing_bytes`.
//!
//! When a SUBSCRIBE's QoS 0 retained messages meet a full outgoing buffer, the rest wait in a
//! per-connection backlog (shared `MessageRef`s, at most the per-subscribe bound of
//! `max_retained_per_subscribe` / `max_retained_bytes_per_subscribe`). While a backlog exists,
//! live QoS 0 messages to that connection queue behind it (so a newer live message on a topic
//! never overtakes the older retained one), up to the same count bound, beyond which they are
//! dropped as at a full buffer (`dropped_outgoing_buffer_full`). The backlog is written as the
//! buffer is written down below the limit, and dropped with its connection.

use crate::broker::core::delivery::fanout::Encoding;
use crate::broker::core::keys::ConnKey;
use crate::broker::core::sessions::session::MessageRef;
use crate::broker::core::shard::ShardCore;
use crate::broker::core::stats::bump;
use crate::codec::QoS;
use std::collections::{HashMap, VecDeque};

/// One connection's waiting QoS 0 messages: (message, retain flag).
#[derive(Debug, Default)]
struct Backlog {
    connection_id: u64,
    messages: VecDeque<(MessageRef, bool)>,
}

/// The backlogs of this shard's connections (usually none).
#[derive(Debug, Default)]
pub struct RetainedBacklogs {
    by_connection: HashMap<ConnKey, Backlog>,
}

impl RetainedBacklogs {
    /// Whether `key` has messages waiting.
    #[inline]
    pub fn has(&self, key: ConnKey) -> bool {
        !self.by_connection.is_empty() && self.by_connection.contains_key(&key)
    }

    /// Forgets `key`'s backlog (its connection is gone).
    pub fn remove(&mut self, key: ConnKey) {
        if !self.by_connection.is_empty() {
            self.by_connection.remove(&key);
        }
    }
}

impl ShardCore {
    /// Puts a QoS 0 message for connection `key` behind its backlog (creating one). Returns
    /// false when the backlog is at `max_retained_per_subscribe` (the message is dropped and
    /// counted).
    pub(crate) fn backlog_qos0(
        &mut self,
        key: ConnKey,
        message: &MessageRef,
        retain: bool,
    ) -> bool {
        let count_max = self.config.max_retained_per_subscribe;
        let Some(connection_id) = self.connections.get(key).map(|c| c.id) else {
            return false;
        };
        let backlog = self.retained_backlog.by_connection.entry(key).or_default();
        if backlog.connection_id != connection_id {
            backlog.connection_id = connection_id;
            backlog.messages.clear();
        }
        if backlog.messages.len() >= count_max {
            bump(&self.global.counters[self.id].dropped_outgoing_buffer_full);
            return false;
        }
        backlog.messages.push_back((message.clone(), retain));
        true
    }

    /// Writes `key`'s backlog while its outgoing buffer is below the limit.
    pub(crate) fn drain_backlog(&mut self, key: ConnKey) {
        let Some(mut backlog) = self.retained_backlog.by_connection.remove(&key) else {
            return;
        };
        let Some((connection_id, skey)) = self.connections.get(key).map(|c| (c.id, c.session))
        else {
            return;
        };
        let Some(skey) = skey.filter(|_| connection_id == backlog.connection_id) else {
            return;
        };
        while !self.outgoing_full(key) {
            let Some((message, retain)) = backlog.messages.pop_front() else {
                return;
            };
            let fresh = Encoding::Fresh { dup: false };
            self.write_publish(key, skey, &message, QoS::AtMostOnce, 0, retain, fresh);
        }
        if !backlog.messages.is_empty() {
            self.retained_backlog.by_connection.insert(key, backlog);
        }
    }
}
