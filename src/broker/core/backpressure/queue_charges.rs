//! Issue 11 item 1 (docs/memory.md): a message held by many session queues on a shard counts
//! once in that shard's memory budget, not once per queue.
//!
//! A fanned-out message is one allocation (`MessageRef`, an `Arc`) that every queue holding it
//! references. [`QueueCharges`] counts, per shard, the queue entries referencing each
//! allocation: the first entry on the shard charges the message's bytes
//! ([`queued_bytes`]: topic, payload, properties, fixed overhead), every entry charges
//! [`QUEUE_ENTRY_BYTES`] for its own slot, and the last entry released refunds the message.
//! So 100 offline sessions holding the same 1,000 messages of 4 KB count about 4 MB plus
//! 100 x 1,000 entries, not 400 MB. Each session's own limits (`max_queued_messages`,
//! `max_queued_bytes`) still count its whole view (`Session::queued_bytes`), as Mosquitto's
//! options of those names do.
//!
//! The key is the allocation's address. It is unique while the entry exists: an entry lives
//! only while a queue on this shard holds a clone of the `Arc`, so the allocation cannot be
//! freed and its address reused. The map is touched only when a message enters or leaves a
//! queue (never on the direct-send path) and is owned by the shard: no atomics.
//!
//! Limit: one map entry per distinct queued message, so the map is bounded by the queue
//! entries the shard may hold (the queues' share of the budget divided by the smallest charge,
//! [`QUEUE_ENTRY_BYTES`] + the message's bytes); its size is the gauge
//! `queued_messages_distinct`.

use crate::broker::core::sessions::session::{queued_bytes, MessageRef, Queued};
use hashbrown::HashMap;
use std::sync::Arc;

/// What each queue entry charges for itself, whoever else holds its message: the slot in the
/// session's `VecDeque`.
pub const QUEUE_ENTRY_BYTES: usize = std::mem::size_of::<Queued>();

/// Capacity under which the map is never shrunk (a burst's worth is kept for the next one).
const SHRINK_ABOVE_CAPACITY: usize = 1024;

/// Queue entries on this shard per shared message allocation.
#[derive(Debug, Default)]
pub struct QueueCharges {
    /// Allocation address -> entries referencing it (at least 1).
    entries: HashMap<usize, u32, foldhash::fast::RandomState>,
}

impl QueueCharges {
    /// A queue entry holding `message` was added: the bytes to charge (its slot, plus the
    /// message itself when it is the first entry on this shard to hold it).
    #[inline]
    pub fn charge(&mut self, message: &MessageRef) -> usize {
        let count = self.entries.entry(key(message)).or_insert(0);
        *count += 1;
        if *count == 1 {
            QUEUE_ENTRY_BYTES + queued_bytes(message)
        } else {
            QUEUE_ENTRY_BYTES
        }
    }

    /// A queue entry holding `message` left: the bytes to refund (its slot, plus the message
    /// when it was the last entry on this shard to hold it).
    #[inline]
    pub fn refund(&mut self, message: &MessageRef) -> usize {
        let key = key(message);
        let Some(count) = self.entries.get_mut(&key) else {
            debug_assert!(false, "refund of a message never charged");
            return 0;
        };
        *count -= 1;
        if *count > 0 {
            return QUEUE_ENTRY_BYTES;
        }
        self.entries.remove(&key);
        let capacity = self.entries.capacity();
        if capacity > SHRINK_ABOVE_CAPACITY && self.entries.len() < capacity / 8 {
            self.entries.shrink_to(capacity / 4);
        }
        QUEUE_ENTRY_BYTES + queued_bytes(message)
    }

    /// Distinct messages held by this shard's queues.
    pub fn distinct(&self) -> usize {
        self.entries.len()
    }
}

fn key(message: &MessageRef) -> usize {
    Arc::as_ptr(message) as usize
}

/// What a set of queues holding `messages` charges, computed from scratch (debug checks and
/// the simulation's invariant).
pub fn charge_of<'a>(messages: impl Iterator<Item = &'a MessageRef>) -> usize {
    let mut seen = std::collections::HashSet::new();
    messages
        .map(|m| {
            if seen.insert(key(m)) {
                QUEUE_ENTRY_BYTES + queued_bytes(m)
            } else {
                QUEUE_ENTRY_BYTES
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::core::sessions::session::Message;
    use crate::codec::{MqttString, Publish, QoS};
    use bytes::Bytes;
    use std::time::Instant;

    fn message(payload_bytes: usize) -> MessageRef {
        Message::new_ref(
            Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: MqttString::from("t"),
                packet_id: 0,
                properties: Default::default(),
                payload: Bytes::from(vec![0; payload_bytes]),
            },
            Instant::now(),
        )
    }

    #[test]
    fn a_shared_message_is_charged_once_and_refunded_with_its_last_entry() {
        let mut charges = QueueCharges::default();
        let m = message(4000);
        let size = queued_bytes(&m);
        let mut total = 0;
        for _ in 0..100 {
            total += charges.charge(&m.clone());
        }
        assert_eq!(total, size + 100 * QUEUE_ENTRY_BYTES);
        assert_eq!(charges.distinct(), 1);
        for _ in 0..99 {
            total -= charges.refund(&m);
        }
        assert_eq!(total, size + QUEUE_ENTRY_BYTES);
        total -= charges.refund(&m);
        assert_eq!(total, 0);
        assert_eq!(charges.distinct(), 0);
    }

    #[test]
    fn distinct_messages_are_charged_apart() {
        let mut charges = QueueCharges::default();
        let (a, b) = (message(10), message(10));
        let both = charges.charge(&a) + charges.charge(&b);
        assert_eq!(both, 2 * (QUEUE_ENTRY_BYTES + queued_bytes(&a)));
        assert_eq!(
            charge_of([&a, &b, &a].into_iter()),
            both + QUEUE_ENTRY_BYTES
        );
    }

    #[test]
    fn the_map_shrinks_after_a_burst() {
        let mut charges = QueueCharges::default();
        let messages: Vec<_> = (0..10_000).map(|_| message(1)).collect();
        for m in &messages {
            charges.charge(m);
        }
        let grown = charges.entries.capacity();
        for m in &messages {
            charges.refund(m);
        }
        assert!(charges.entries.capacity() < grown / 4, "{grown}");
    }
}
