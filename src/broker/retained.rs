//! The global retained-message store: a `RetainedTree` behind a `RwLock`, written on retained
//! publishes and read on subscribe (FlashMQ also keeps a locked global retained store). Not on
//! the path of ordinary publishes.

use super::session::MessageRef;
use crate::topic::RetainedTree;
use parking_lot::RwLock;

/// Retained messages by topic name, at most `max` of them.
pub struct Retained {
    tree: RwLock<RetainedTree<MessageRef>>,
    /// `max_retained_messages`; a reload changes it (issue 15): lowered, nothing held is
    /// removed, new topics are refused until the count falls under it.
    max: std::sync::atomic::AtomicUsize,
}

/// What a retained publish did to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetainOutcome {
    Stored,
    Cleared,
    /// A new topic over `max_retained_messages`: not stored (counted by the caller).
    Refused,
}

impl Retained {
    pub fn new(max: usize) -> Retained {
        Retained {
            tree: RwLock::new(RetainedTree::new()),
            max: std::sync::atomic::AtomicUsize::new(max),
        }
    }

    /// A reload (issue 15): the new `max_retained_messages`.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets, replaces or (empty payload, [MQTT-3.3.1-10]) clears the retained message of the
    /// publish's topic.
    pub fn store(&self, message: &MessageRef) -> RetainOutcome {
        let topic = message.topic.as_str();
        let mut tree = self.tree.write();
        if message.payload.is_empty() {
            tree.remove(topic);
            return RetainOutcome::Cleared;
        }
        if tree.len() >= self.max.load(std::sync::atomic::Ordering::Relaxed)
            && tree.get(topic).is_none()
        {
            return RetainOutcome::Refused;
        }
        tree.insert(topic, message.clone());
        RetainOutcome::Stored
    }

    /// Appends every retained message matching `filter` to `out`.
    pub fn collect_matching(&self, filter: &str, out: &mut Vec<MessageRef>) {
        self.tree
            .read()
            .for_each_matching(filter, |_, message| out.push(message.clone()));
    }

    /// The retained message of `topic`, if any (persistence: a shard's compaction keeps its
    /// record only while the store still holds that very message).
    pub fn get(&self, topic: &str) -> Option<MessageRef> {
        self.tree.read().get(topic).cloned()
    }

    /// The number of retained messages.
    pub fn len(&self) -> usize {
        self.tree.read().len()
    }

    /// Whether no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
