//! A shard's client id -> session slab key index.
//!
//! The table holds only the 4-byte slab key: the client id itself is read from the session it
//! points to, so each client id is stored once on the shard (an idle connection holds one such
//! entry, see BENCHMARKS.md "Performance (issue 6)").

use super::shard::ShardSession;
use crate::codec::MqttString;
use hashbrown::HashTable;
use slab::Slab;
use std::hash::{BuildHasher, RandomState};

/// Client id -> session slab key for the sessions on one shard. Every key in the table is a
/// live session whose client id hashes to the entry: [`ClientIds::remove`] runs whenever a
/// session leaves the slab.
#[derive(Debug, Default)]
pub struct ClientIds {
    table: HashTable<u32>,
    hasher: RandomState,
}

fn id_of(sessions: &Slab<ShardSession>, skey: u32) -> Option<&str> {
    let session = sessions.get(skey as usize)?;
    Some(session.session.state.client_id.as_str())
}

impl ClientIds {
    /// The session holding `client_id`.
    pub fn get(&self, client_id: &MqttString, sessions: &Slab<ShardSession>) -> Option<usize> {
        let client_id = client_id.as_str();
        let hash = self.hasher.hash_one(client_id);
        let found = self
            .table
            .find(hash, |&k| id_of(sessions, k) == Some(client_id))?;
        Some(*found as usize)
    }

    /// Points `client_id` at `skey`, which must already hold a session with that id.
    pub fn insert(&mut self, client_id: &MqttString, skey: usize, sessions: &Slab<ShardSession>) {
        let client_id = client_id.as_str();
        debug_assert_eq!(id_of(sessions, skey as u32), Some(client_id));
        debug_assert!(
            u32::try_from(skey).is_ok(),
            "session key {skey} exceeds u32"
        );
        let hash = self.hasher.hash_one(client_id);
        if let Some(k) = self
            .table
            .find_mut(hash, |&k| id_of(sessions, k) == Some(client_id))
        {
            *k = skey as u32;
            return;
        }
        let hasher = &self.hasher;
        self.table.insert_unique(hash, skey as u32, |&k| {
            hasher.hash_one(id_of(sessions, k).unwrap_or_default())
        });
    }

    /// Removes the entry of `client_id` if it still points at `skey` (the session may already
    /// have left the slab). Returns whether it was removed.
    pub fn remove(&mut self, client_id: &MqttString, skey: usize) -> bool {
        let client_id = client_id.as_str();
        let hash = self.hasher.hash_one(client_id);
        match self.table.find_entry(hash, |&k| k as usize == skey) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}
