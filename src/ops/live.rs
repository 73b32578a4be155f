//! Broker-wide limits a reload changes while the broker runs, read outside the shards (the
//! acceptors check `max_connections`, CONNECT checks `max_sessions`): each one an atomic in the
//! broker-wide state. The shards read every other limit from their own configuration snapshot,
//! which a reload replaces (`broker::reconfigure`, `ShardCore::set_config`).

use crate::broker::Config;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The live values of the reloadable limits.
#[derive(Debug)]
pub struct LiveLimits {
    max_connections: AtomicUsize,
    max_sessions: AtomicUsize,
}

impl LiveLimits {
    /// The limits as `config` sets them.
    pub fn new(config: &Config) -> LiveLimits {
        LiveLimits {
            max_connections: AtomicUsize::new(config.max_connections),
            max_sessions: AtomicUsize::new(config.max_sessions),
        }
    }

    /// `max_connections` now. Lowering it refuses new connections; open ones stay.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// `max_sessions` now. Lowering it refuses new sessions; existing ones stay.
    pub fn max_sessions(&self) -> usize {
        self.max_sessions.load(Ordering::Relaxed)
    }

    /// Takes the reloadable limits of `config` (already validated).
    pub fn apply(&self, config: &Config) {
        self.max_connections
            .store(config.max_connections, Ordering::Relaxed);
        self.max_sessions
            .store(config.max_sessions, Ordering::Relaxed);
    }
}
