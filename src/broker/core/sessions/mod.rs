//! Sessions: the session slab, the client id index, takeovers across shards and the store hooks.
//!
//! [`Sessions`] is the component's state with its own small API: the slab of sessions living on
//! this shard and the client id index kept in step with it (one method inserts into both, one
//! removes from both), the takeovers this shard asked other shards for, and the generation
//! counter that guards session timers. The shard's logic around it (CONNECT, detach, end, the
//! takeover protocol) is `lifecycle.rs`, what a session moving between shards is sent meanwhile
//! `handover.rs` (finding F1, its own component), the store hooks `persist.rs`, and one
//! session's protocol state `session.rs`.

pub(crate) mod client_ids;
// Finding F1: what a session moving between shards is sent meanwhile, without loss, duplicate
// or reordering.
pub mod handover;
pub(crate) mod lifecycle;
pub(crate) mod persist;
pub mod session;

use super::connection::WillMessage;
use super::keys::{ConnKey, SessionKey, Slots};
use crate::codec::MqttString;
use client_ids::ClientIds;
use lifecycle::PendingTakeover;
use session::Session;
use std::collections::HashMap;

/// A session living on this shard.
pub struct ShardSession {
    pub session: Session,
    /// The number of this shard's registry claim on the client id (the claim is
    /// `Claim { shard: this shard, number }`: a session only lives where its id was claimed).
    pub claim_number: u64,
    /// The connection slab key while online.
    pub connection: Option<ConnKey>,
    /// Changes whenever the session goes offline; guards its timers.
    pub generation: u64,
    /// A will waiting for its Will Delay Interval (or the end of the session).
    pub pending_will: Option<Box<WillMessage>>,
    /// Access control (issue 13): who the session's client is and its ACL decision cache;
    /// `None` when nothing can restrict it (no ACL file, no JWT topic claims).
    pub access: Option<Box<crate::auth::SessionAccess>>,
}

/// The sessions on one shard and their bookkeeping. Invariant: every session in the slab is
/// in the client id index under its own id, and nothing else is.
#[derive(Default)]
pub struct Sessions {
    slab: Slots<SessionKey, ShardSession>,
    /// Client id -> slab key.
    client_ids: ClientIds,
    /// Takeovers this shard asked another shard for, by request number (the number of the
    /// client id claim that asked, unique broker-wide).
    takeovers: HashMap<u64, PendingTakeover>,
    /// The next value of [`ShardSession::generation`] (unique on this shard).
    next_generation: u64,
}

impl Sessions {
    #[inline]
    pub fn get(&self, skey: SessionKey) -> Option<&ShardSession> {
        self.slab.get(skey)
    }

    #[inline]
    pub fn get_mut(&mut self, skey: SessionKey) -> Option<&mut ShardSession> {
        self.slab.get_mut(skey)
    }

    pub fn contains(&self, skey: SessionKey) -> bool {
        self.slab.contains(skey)
    }

    /// Sessions on this shard.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (SessionKey, &ShardSession)> {
        self.slab.iter()
    }

    /// The session holding `client_id` on this shard.
    pub fn find(&self, client_id: &MqttString) -> Option<SessionKey> {
        self.client_ids.get(client_id, &self.slab)
    }

    /// Puts a session into the slab and its client id into the index (replacing an entry of
    /// the same id, which the caller ended or moved before).
    pub fn insert(&mut self, session: ShardSession) -> SessionKey {
        let skey = self.slab.insert(session);
        // Borrowed, not cloned: the first clone of a client id made from a `Vec` allocates a
        // shared header that the idle session would then keep (BENCHMARKS.md, issue 6).
        let client_id = &self.slab[skey].session.state.client_id;
        self.client_ids.insert(client_id, skey, &self.slab);
        skey
    }

    /// Takes a session out of the slab and the index; `None` when `skey` is vacant.
    pub fn remove(&mut self, skey: SessionKey) -> Option<ShardSession> {
        let session = self.slab.try_remove(skey)?;
        self.client_ids
            .remove(&session.session.state.client_id, skey);
        Some(session)
    }

    /// A new session generation (a session going online or offline takes one, so that timers
    /// armed for an earlier one do nothing).
    pub fn next_generation(&mut self) -> u64 {
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// Records a takeover this shard asks another shard for; returns its request number: the
    /// number of the pending connection's claim (finding F3: it orders the requests).
    pub fn start_takeover(&mut self, pending: PendingTakeover) -> u64 {
        let request = pending.claim.number;
        self.takeovers.insert(request, pending);
        request
    }

    /// The takeover this shard waits for on behalf of its own CONNECT for `client_id` (not one
    /// it forwards for another shard) whose claim came last before claim number `before`.
    ///
    /// Finding F3: a client id reconnecting on two shards in turn leaves several takeovers for
    /// it waiting here; a request from claim N supersedes the claim just before N, so the
    /// latest one before N is the one that passes the session on (the first one the map's
    /// random order offered made the outcome vary from run to run, and could make two shards
    /// wait for each other forever).
    pub fn waiting_takeover_mut(
        &mut self,
        client_id: &MqttString,
        before: u64,
    ) -> Option<&mut PendingTakeover> {
        self.takeovers
            .values_mut()
            .filter(|p| {
                p.accepted.client_id == *client_id && p.forward.is_none() && p.claim.number < before
            })
            .max_by_key(|p| p.claim.number)
    }

    /// Takeovers this shard asked other shards for and still waits on (for invariant checks:
    /// none once the mesh has settled).
    pub fn takeovers_pending(&self) -> usize {
        self.takeovers.len()
    }

    /// The takeover of `request` was answered: it is no longer pending.
    pub fn finish_takeover(&mut self, request: u64) -> Option<PendingTakeover> {
        self.takeovers.remove(&request)
    }
}

#[cfg(test)]
mod tests {
    use super::session::{SessionLimits, SessionState};
    use super::*;

    fn session(client_id: &str) -> ShardSession {
        let state = SessionState {
            client_id: MqttString::from(client_id),
            ..SessionState::default()
        };
        let limits = SessionLimits {
            max_queued_messages: 10,
            queue_qos0: false,
            receive_maximum: 10,
            congested_overshoot: 0,
        };
        ShardSession {
            session: Session::new(state, 10, limits),
            claim_number: 0,
            connection: None,
            generation: 0,
            pending_will: None,
            access: None,
        }
    }

    fn id(text: &str) -> MqttString {
        MqttString::from(text)
    }

    #[test]
    fn the_index_follows_the_slab() {
        let mut sessions = Sessions::default();
        let a = sessions.insert(session("a"));
        let b = sessions.insert(session("b"));
        assert_eq!(
            (sessions.find(&id("a")), sessions.find(&id("b"))),
            (Some(a), Some(b))
        );
        assert_eq!(sessions.len(), 2);
        let removed = sessions.remove(a).expect("present");
        assert_eq!(removed.session.state.client_id, id("a"));
        assert_eq!(sessions.find(&id("a")), None);
        assert!(sessions.remove(a).is_none(), "removed once");
        // The slab reuses the key: the index names the new session only.
        let c = sessions.insert(session("c"));
        assert_eq!(c, a);
        assert_eq!(
            (sessions.find(&id("a")), sessions.find(&id("c"))),
            (None, Some(c))
        );
        assert_eq!(sessions.find(&id("b")), Some(b));
    }

    #[test]
    fn generations_never_repeat() {
        let mut sessions = Sessions::default();
        let first = sessions.next_generation();
        assert_ne!(first, sessions.next_generation());
    }
}
