//! The byte limits a session's deliveries are checked against (kept apart so that
//! `session.rs` stays short).

/// The byte limits a delivery is checked against, from the shard's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteLimits {
    /// `max_queued_bytes`: the queue's [`super::queued_bytes`] at most.
    pub queued: u32,
    /// `max_inflight_bytes`: the in-flight window takes no new message at or over this.
    pub inflight: u32,
}

impl ByteLimits {
    /// No byte limit.
    pub const NONE: ByteLimits = ByteLimits {
        queued: u32::MAX,
        inflight: u32::MAX,
    };

    /// The limits of `config` (validated there to fit in a u32).
    pub fn of(config: &crate::broker::Config) -> ByteLimits {
        ByteLimits {
            queued: u32::try_from(config.max_queued_bytes).unwrap_or(u32::MAX),
            inflight: u32::try_from(config.max_inflight_bytes).unwrap_or(u32::MAX),
        }
    }
}
