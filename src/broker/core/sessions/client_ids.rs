//! A shard's client id -> session slab key index.
//!
//! The table holds only the 4-byte slab key: the client id itself is read from the session it
//! points to, so each client id is stored once on the shard (an idle connection holds one such
//! entry, see BENCHMARKS.md "Performance (issue 6)").

use crate::broker::core::keys::{SessionKey, Slots};
use crate::broker::core::sessions::ShardSession;
use crate::codec::MqttString;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// Client id -> session slab key for the sessions on one shard. Every key in the table is a
/// live session whose client id hashes to the entry: [`ClientIds::remove`] runs whenever a
/// session leaves the slab.
#[derive(Debug, Default)]
pub struct ClientIds {
    table: HashTable<SessionKey>,
    hasher: RandomState,
}

fn id_of(sessions: &Slots<SessionKey, ShardSession>, skey: SessionKey) -> Option<&str> {
    let session = sessions.get(skey)?;
    Some(session.session.state.client_id.as_str())
}

impl ClientIds {
    /// The session holding `client_id`.
    pub fn get(
        &self,
        client_id: &MqttString,
        sessions: &Slots<SessionKey, ShardSession>,
    ) -> Option<SessionKey> {
        let client_id = client_id.as_str();
        let hash = self.hasher.hash_one(client_id);
        let found = self
            .table
            .find(hash, |&k| id_of(sessions, k) == Some(client_id))?;
        Some(*found)
    }

    /// Points `client_id` at `skey`, which must already hold a session with that id.
    pub fn insert(
        &mut self,
        client_id: &MqttString,
        skey: SessionKey,
        sessions: &Slots<SessionKey, ShardSession>,
    ) {
        let client_id = client_id.as_str();
        debug_assert_eq!(id_of(sessions, skey), Some(client_id));
        let hash = self.hasher.hash_one(client_id);
        if let Some(k) = self
            .table
            .find_mut(hash, |&k| id_of(sessions, k) == Some(client_id))
        {
            *k = skey;
            return;
        }
        let hasher = &self.hasher;
        self.table.insert_unique(hash, skey, |&k| {
            hasher.hash_one(id_of(sessions, k).unwrap_or_default())
        });
    }

    /// Removes the entry of `client_id` if it still points at `skey` (the session may already
    /// have left the slab). Returns whether it was removed.
    pub fn remove(&mut self, client_id: &MqttString, skey: SessionKey) -> bool {
        let client_id = client_id.as_str();
        let hash = self.hasher.hash_one(client_id);
        match self.table.find_entry(hash, |&k| k == skey) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }
}
