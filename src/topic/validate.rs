//! Validation of topic names and filters, shared-subscription parsing and the reference matcher.
//!
//! Everything here works on borrowed `&str` and allocates nothing. A topic name or filter is a
//! sequence of levels separated by `/`; an empty level is valid (`a//b`, `/a`, `a/`).

use super::{TopicError, TOPIC_LEN_MAX};

/// The prefix of a shared-subscription filter, `$share/{ShareName}/{filter}` ([MQTT-4.8.2-1]).
pub const SHARE_PREFIX: &str = "$share/";

/// A parsed shared-subscription filter `$share/{group}/{filter}`; both parts borrow the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The ShareName: at least one character, no `/`, `+` or `#` ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
    pub group: &'a str,
    /// The plain topic filter after the ShareName, already validated.
    pub filter: &'a str,
}

/// The number of levels in a topic name or filter: one more than the number of `/`.
///
/// The broker enforces its own topic-level limit with this; `a//b` has three levels and `/` two.
pub fn level_count(topic: &str) -> usize {
    topic.bytes().filter(|&b| b == b'/').count() + 1
}

/// The checks shared by names and filters: non-empty, not too long, no U+0000.
fn validate_common(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError(
            "topic must be at least one character long [MQTT-4.7.3-1]",
        ));
    }
    if topic.len() > TOPIC_LEN_MAX {
        return Err(TopicError(
            "topic is longer than 65,535 bytes [MQTT-4.7.3-3]",
        ));
    }
    if topic.as_bytes().contains(&0) {
        return Err(TopicError("topic contains U+0000 [MQTT-4.7.3-2]"));
    }
    Ok(())
}

/// Checks a PUBLISH topic name: non-empty ([MQTT-4.7.3-1]), at most [`TOPIC_LEN_MAX`] bytes
/// ([MQTT-4.7.3-3]), no U+0000 ([MQTT-4.7.3-2]), and no `+` or `#` ([MQTT-3.3.2-2],
/// [MQTT-4.7.0-1]).
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    validate_common(topic)?;
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError(
            "topic name contains a wildcard character [MQTT-3.3.2-2]",
        ));
    }
    Ok(())
}

/// Checks a plain (not shared) topic filter: the common checks, then `#` only alone in the last
/// level ([MQTT-4.7.1-1]) and `+` only alone in its level ([MQTT-4.7.1-2]).
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    validate_common(filter)?;
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return Err(TopicError(
                "'#' must be alone in the last level of a filter [MQTT-4.7.1-1]",
            ));
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError(
                "'+' must be alone in its level of a filter [MQTT-4.7.1-2]",
            ));
        }
    }
    Ok(())
}

/// Checks a SUBSCRIBE/UNSUBSCRIBE topic filter, including `$share/{group}/{filter}`
/// (see [`parse_shared`] for the shared-subscription rules).
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    match parse_shared(filter)? {
        Some(_) => Ok(()),
        None => validate_plain_filter(filter),
    }
}

/// Splits a shared-subscription filter `$share/{group}/{filter}`.
///
/// Returns `Ok(None)` for a filter that does not start with `$share/` (such a filter is not
/// checked here), `Ok(Some(..))` for a valid shared filter whose inner filter is also valid, and
/// an error when the ShareName is empty ([MQTT-4.8.2-1]), contains `+` or `#` ([MQTT-4.8.2-2]),
/// is not followed by `/` and a filter ([MQTT-4.8.2-2]), or the inner filter is invalid.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let Some((group, inner)) = rest.split_once('/') else {
        return Err(TopicError(
            "ShareName must be followed by '/' and a topic filter [MQTT-4.8.2-2]",
        ));
    };
    if group.is_empty() {
        return Err(TopicError(
            "ShareName must be at least one character long [MQTT-4.8.2-1]",
        ));
    }
    if group.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(TopicError(
            "ShareName must not contain '+' or '#' [MQTT-4.8.2-2]",
        ));
    }
    if inner.is_empty() {
        return Err(TopicError(
            "ShareName must be followed by a topic filter [MQTT-4.8.2-2]",
        ));
    }
    // The length and U+0000 checks apply to the whole filter; the inner part is shorter.
    validate_common(filter)?;
    validate_plain_filter(inner)?;
    Ok(Some(SharedFilter {
        group,
        filter: inner,
    }))
}

/// The reference matcher: does the plain topic `filter` match the topic `name`?
///
/// Both are assumed valid (a filter from [`validate_topic_filter`] without the `$share/group/`
/// prefix, a name from [`validate_topic_name`]). `+` matches exactly one level (possibly empty),
/// `#` matches the rest including the parent level (`sensors/#` matches `sensors`), and a filter
/// starting with a wildcard does not match a name starting with `$` ([MQTT-4.7.2-1]).
/// The trie and the retained tree are tested against this function.
pub fn filter_matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false; // [MQTT-4.7.2-1]
    }
    let mut filter_levels = filter.split('/');
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            // The name ended one level early: `a/#` still matches `a` [MQTT-4.7.1-1].
            (Some(f), None) => return f == "#" && filter_levels.next().is_none(),
            _ => return false,
        }
    }
}

/// A validated PUBLISH topic name, borrowing its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicName<'a>(&'a str);

impl<'a> TopicName<'a> {
    /// Validates `name` with [`validate_topic_name`].
    pub fn new(name: &'a str) -> Result<Self, TopicError> {
        validate_topic_name(name)?;
        Ok(Self(name))
    }

    /// The name's text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// Whether the name starts with `$` (such names are not matched by leading wildcards).
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The number of levels, see [`level_count`].
    pub fn level_count(&self) -> usize {
        level_count(self.0)
    }
}

/// A validated topic filter (plain or shared), borrowing its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicFilter<'a> {
    text: &'a str,
    /// The ShareName when the filter is `$share/{group}/{filter}`.
    group: Option<&'a str>,
    /// The plain filter: `text` itself, or the part after `$share/{group}/`.
    plain: &'a str,
}

impl<'a> TopicFilter<'a> {
    /// Validates `filter` with [`validate_topic_filter`] and splits a shared filter.
    pub fn new(filter: &'a str) -> Result<Self, TopicError> {
        let (group, plain) = match parse_shared(filter)? {
            Some(shared) => (Some(shared.group), shared.filter),
            None => {
                validate_plain_filter(filter)?;
                (None, filter)
            }
        };
        Ok(Self {
            text: filter,
            group,
            plain,
        })
    }

    /// The whole filter as received.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// The ShareName of a shared subscription, `None` for a plain filter.
    pub fn share_group(&self) -> Option<&'a str> {
        self.group
    }

    /// The plain filter (without `$share/{group}/`): what goes into the trie.
    pub fn plain(&self) -> &'a str {
        self.plain
    }

    /// Whether the plain filter contains `+` or `#`.
    pub fn has_wildcard(&self) -> bool {
        self.plain
            .split('/')
            .any(|level| level == "+" || level == "#")
    }

    /// Whether `name` matches this filter ([`filter_matches`] on the plain filter).
    pub fn matches(&self, name: TopicName<'_>) -> bool {
        filter_matches(self.plain, name.as_str())
    }
}
