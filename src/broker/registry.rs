//! The global client-id registry: which shard holds the session of a client id.
//!
//! Touched only on connect, session end and takeover, never per message. Each claim carries a
//! unique number so that a shard releasing an old session cannot remove a newer claim made by a
//! takeover in the meantime.
//!
//! The registry does not keep the client id itself (the session on its shard does): an entry is
//! a 96-bit keyed hash of the id and the claim, 24 bytes, because every connected client holds
//! one (see BENCHMARKS.md "Idle memory"). Two distinct ids collide with probability 2^-96 per
//! pair (about 10^-17 for a million ids); the hashes are SipHash with random keys chosen per
//! process, so a client cannot pick colliding ids. A collision would be survivable anyway: the
//! shard asked for a takeover compares the real client id and answers "no session".

use super::mesh::ShardId;
use crate::codec::MqttString;
use hashbrown::HashTable;
use parking_lot::Mutex;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

/// Who holds a client id: the shard and the claim number it got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub shard: ShardId,
    pub number: u64,
}

/// One registry entry: the id's key and its claim, 24 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Also the hash table's hash.
    key_low: u64,
    number: u64,
    key_high: u32,
    /// Shard ids stay far below `u32::MAX` (the config bounds `shards`).
    shard: u32,
}

impl Entry {
    fn claim(&self) -> Claim {
        Claim {
            shard: self.shard as ShardId,
            number: self.number,
        }
    }
}

/// The 96-bit key of a client id: (64 bits, 32 more bits from an independent hash).
type Key = (u64, u32);

/// Client id -> claim. Bounded by the number of sessions, which `max_connections` and session
/// expiry bound.
#[derive(Debug, Default)]
pub struct Registry {
    table: Mutex<HashTable<Entry>>,
    /// Two hashers with distinct random keys: their outputs make up the 96-bit key.
    hashers: [RandomState; 2],
    next_number: AtomicU64,
}

impl Registry {
    fn key(&self, client_id: &MqttString) -> Key {
        let id = client_id.as_str();
        (
            self.hashers[0].hash_one(id),
            self.hashers[1].hash_one(id) as u32,
        )
    }

    /// Claims `client_id` for `shard`; returns the new claim and the one it replaced.
    pub fn claim(&self, client_id: &MqttString, shard: ShardId) -> (Claim, Option<Claim>) {
        debug_assert!(u32::try_from(shard).is_ok(), "shard id {shard} exceeds u32");
        let claim = Claim {
            shard,
            number: self.next_number.fetch_add(1, Ordering::Relaxed),
        };
        let (key_low, key_high) = self.key(client_id);
        let entry = Entry {
            key_low,
            number: claim.number,
            key_high,
            shard: shard as u32,
        };
        let mut table = self.table.lock();
        let found = table.find_mut(key_low, |e| e.key_low == key_low && e.key_high == key_high);
        if let Some(existing) = found {
            let previous = existing.claim();
            *existing = entry;
            return (claim, Some(previous));
        }
        table.insert_unique(key_low, entry, |e| e.key_low);
        (claim, None)
    }

    /// Removes the entry if it is still `claim`. Returns whether it was removed.
    pub fn release(&self, client_id: &MqttString, claim: Claim) -> bool {
        let (key_low, key_high) = self.key(client_id);
        let mut table = self.table.lock();
        let found = table.find_entry(key_low, |e| {
            e.key_low == key_low && e.key_high == key_high && e.claim() == claim
        });
        match found {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// The shard holding `client_id`, if any.
    #[cfg(test)]
    pub fn holder(&self, client_id: &MqttString) -> Option<Claim> {
        let (key_low, key_high) = self.key(client_id);
        let table = self.table.lock();
        table
            .find(key_low, |e| e.key_low == key_low && e.key_high == key_high)
            .map(Entry::claim)
    }

    /// The number of client ids held.
    pub fn len(&self) -> usize {
        self.table.lock().len()
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
        assert_eq!(registry.holder(&id), Some(second));
        assert!(registry.release(&id, second));
        assert!(registry.is_empty());
        assert_eq!(registry.holder(&id), None);
    }

    #[test]
    fn many_ids_are_told_apart() {
        let registry = Registry::default();
        let ids: Vec<MqttString> = (0..5000)
            .map(|i| MqttString::from(format!("client-{i}").as_str()))
            .collect();
        let claims: Vec<Claim> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let (claim, previous) = registry.claim(id, i % 4);
                assert_eq!(previous, None);
                claim
            })
            .collect();
        assert_eq!(registry.len(), ids.len());
        for (id, claim) in ids.iter().zip(&claims) {
            assert_eq!(registry.holder(id), Some(*claim));
        }
        for (id, claim) in ids.iter().zip(&claims).step_by(2) {
            assert!(registry.release(id, *claim));
        }
        assert_eq!(registry.len(), ids.len() / 2);
        assert_eq!(registry.holder(&ids[1]), Some(claims[1]));
        assert_eq!(registry.holder(&ids[0]), None);
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }
}
