//! The global client-id registry: which shard holds the session of a client id.
//!
//! Touched only on connect, session end and takeover, never per message. Each claim carries a
//! unique number so that a shard releasing an old session cannot remove a newer claim made by a
//! takeover in the meantime.

use super::mesh::ShardId;
use crate::codec::MqttString;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Who holds a client id: the shard and the claim number it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub shard: ShardId,
    pub number: u64,
}

/// Client id -> claim. Bounded by the number of sessions, which `max_connections` and session
/// expiry bound.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<MqttString, Claim>>,
    next_number: AtomicU64,
}

impl Registry {
    /// Claims `client_id` for `shard`; returns the new claim and the one it replaced.
    pub fn claim(&self, client_id: &MqttString, shard: ShardId) -> (Claim, Option<Claim>) {
        let claim = Claim {
            shard,
            number: self.next_number.fetch_add(1, Ordering::Relaxed),
        };
        let previous = self.map.lock().insert(client_id.clone(), claim);
        (claim, previous)
    }

    /// Removes the entry if it is still `claim`. Returns whether it was removed.
    pub fn release(&self, client_id: &MqttString, claim: Claim) -> bool {
        let mut map = self.map.lock();
        if map.get(client_id) == Some(&claim) {
            map.remove(client_id);
            return true;
        }
        false
    }

    /// The number of client ids held.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    /// Whether no client id is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_release_keeps_the_newer_claim() {
        let registry = Registry::default();
        let id = MqttString::from("c");
        let (first, previous) = registry.claim(&id, 0);
        assert_eq!(previous, None);
        let (second, previous) = registry.claim(&id, 1);
        assert_eq!(previous, Some(first));
        assert!(!registry.release(&id, first));
        assert_eq!(registry.len(), 1);
        assert!(registry.release(&id, second));
        assert!(registry.is_empty());
    }
}
