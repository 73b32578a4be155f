//! The hasher of the topic trie's literal levels: foldhash (the fast hasher hashbrown uses by
//! default), keyed with a secret seed drawn from the operating system once per process.
//!
//! Topic levels come from clients, so the hash must not be predictable (hash flooding: a client
//! choosing levels that all land in one bucket would make every lookup slow). Each map also
//! gets its own per-map seed, so equal levels in two maps are not laid out alike.

use foldhash::fast::SeedableRandomState;
use foldhash::SharedSeed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The `BuildHasher` of a trie node's literal children.
pub type LevelHasher = SeedableRandomState;

/// The process-wide secret seed.
static SHARED_SEED: OnceLock<SharedSeed> = OnceLock::new();
/// Distinguishes the maps of one process (not secret: the shared seed is).
static MAP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hasher for one new map.
pub(crate) fn level_hasher() -> LevelHasher {
    let shared = SHARED_SEED.get_or_init(|| match getrandom::u64() {
        Ok(seed) => SharedSeed::from_u64(seed),
        // No OS randomness (not expected on the platforms mio supports): foldhash's own
        // process seed, drawn from address-space layout and the clock.
        Err(_) => SharedSeed::global_random().clone(),
    });
    let per_map = MAP_COUNTER.fetch_add(1, Ordering::Relaxed);
    SeedableRandomState::with_seed(per_map, shared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn maps_are_keyed_apart() {
        let (a, b) = (level_hasher(), level_hasher());
        // Two maps hash the same level differently (a collision of all of these is ~2^-256).
        let levels = ["a", "b", "sensor", "1", "", "$SYS"];
        assert!(levels.iter().any(|l| a.hash_one(l) != b.hash_one(l)));
        // One map hashes a level the same way every time.
        assert_eq!(a.hash_one("level"), a.hash_one("level"));
    }
}
