//! Topic names, topic filters, shared-subscription filters, the topic trie and the retained
//! tree. Sans-IO: nothing here touches a socket or a clock.
//!
//! - `validate.rs`: [`validate_topic_name`], [`validate_topic_filter`], [`parse_shared`],
//!   [`filter_matches`] (the reference matcher), [`level_count`], and the validated borrowed
//!   newtypes [`TopicName`] and [`TopicFilter`].
//! - `trie.rs`: [`TopicTrie`], a trie of filters (literal, `+` and `#` children, a separate root
//!   for `$` topics) whose matching allocates nothing. Used for subscriptions.
//! - `cache.rs`: [`MatchCache`], a bounded direct-mapped cache of match results by topic name,
//!   made stale by any change of its trie ([`TopicTrie::generation`]).
//! - `hash.rs`: the keyed fast hasher of the trie's levels (foldhash, per-process random seed).
//! - `retained.rs`: [`RetainedTree`], values stored by topic name and found by filter. Used for
//!   retained messages.
//!
//! The rules, with their spec statements:
//! - a name or filter is at least one character ([MQTT-4.7.3-1]), at most 65,535 bytes
//!   ([MQTT-4.7.3-3]) and has no U+0000 ([MQTT-4.7.3-2]); empty levels are valid (`a//b`, `/a`);
//! - a topic name has no wildcard ([MQTT-3.3.2-2]);
//! - `#` is alone in the last level of a filter ([MQTT-4.7.1-1]) and matches the parent level too
//!   (`sensors/#` matches `sensors`); `+` is alone in its level ([MQTT-4.7.1-2]) and matches one
//!   level, possibly empty (`+/+` matches `/finance`, `+` does not match `a/b`);
//! - a filter starting with a wildcard does not match a name starting with `$` ([MQTT-4.7.2-1]);
//! - `$share/{ShareName}/{filter}`: a ShareName of at least one character without `/`, `+` or `#`,
//!   followed by `/` and a valid filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
//!
//! The trie and the retained tree take plain filters: the caller strips `$share/{group}/` with
//! [`parse_shared`] first. The broker enforces its topic-level limit with [`level_count`].

mod cache;
mod hash;
mod retained;
mod trie;
mod validate;

#[cfg(test)]
mod tests;

pub use cache::{
    CacheLookup, MatchCache, MATCH_CACHE_SLOTS, MATCH_CACHE_TOPIC_LEN_MAX, MATCH_CACHE_VALUES_MAX,
};
pub use retained::RetainedTree;
pub use trie::TopicTrie;
pub use validate::{
    filter_matches, level_count, parse_shared, validate_topic_filter, validate_topic_name,
    SharedFilter, TopicFilter, TopicName, SHARE_PREFIX,
};

/// Maximum length of a topic name or filter in bytes (the UTF-8 string limit, [MQTT-4.7.3-3]).
pub const TOPIC_LEN_MAX: usize = 65_535;

/// Why a topic name or filter is not valid; the text names the spec rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicError(pub &'static str);

impl std::fmt::Display for TopicError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TopicError {}
