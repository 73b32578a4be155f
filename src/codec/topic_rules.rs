//! The wire-level rules on topic names and topic filters that decoding enforces (4.7). The topic
//! module holds the full validators used by the broker; these are the checks a frame must pass.

use super::DecodeError;

/// Whether `topic` contains a wildcard character (`+` or `#`).
pub(crate) fn has_wildcard(topic: &[u8]) -> bool {
    topic.iter().any(|&b| b == b'+' || b == b'#')
}

/// Checks a PUBLISH or Will topic name: no wildcards ([MQTT-3.3.2-2], [MQTT-4.7.0-1]). Emptiness is
/// checked by the caller, since an MQTT 5 PUBLISH may carry an empty name with a Topic Alias.
pub(crate) fn check_topic_name(topic: &[u8]) -> Result<(), DecodeError> {
    if has_wildcard(topic) {
        return Err(DecodeError::TopicNameInvalid(
            "[MQTT-3.3.2-2] wildcard character in a topic name",
        ));
    }
    Ok(())
}

/// Checks a SUBSCRIBE/UNSUBSCRIBE topic filter: at least one character ([MQTT-4.7.3-1]); `#` only
/// as the whole last level ([MQTT-4.7.1-1]); `+` only as a whole level ([MQTT-4.7.1-2]); a shared
/// subscription `$share/{group}/{filter}` has a non-empty group without wildcards or `/` and a
/// non-empty filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
pub(crate) fn check_topic_filter(filter: &[u8]) -> Result<(), DecodeError> {
    if filter.is_empty() {
        return Err(DecodeError::TopicFilterInvalid(
            "[MQTT-4.7.3-1] empty topic filter",
        ));
    }
    let filter = match filter.strip_prefix(b"$share/") {
        Some(rest) => {
            let slash = rest.iter().position(|&b| b == b'/');
            let (group, inner) = match slash {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            if group.is_empty() || has_wildcard(group) {
                return Err(DecodeError::TopicFilterInvalid(
                    "[MQTT-4.8.2-2] shared subscription group empty or with wildcards",
                ));
            }
            if inner.is_empty() {
                return Err(DecodeError::TopicFilterInvalid(
                    "[MQTT-4.8.2-1] shared subscription without a topic filter",
                ));
            }
            inner
        }
        None => filter,
    };
    let mut levels = filter.split(|&b| b == b'/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains(&b'#') && (level != b"#" || !is_last) {
            return Err(DecodeError::TopicFilterInvalid(
                "[MQTT-4.7.1-1] '#' not alone as the last level",
            ));
        }
        if level.contains(&b'+') && level != b"+" {
            return Err(DecodeError::TopicFilterInvalid(
                "[MQTT-4.7.1-2] '+' not alone in its level",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_filters() {
        for f in [
            "a",
            "#",
            "+",
            "a/+/b",
            "a/#",
            "+/+",
            "/",
            "//",
            "$SYS/#",
            "$share/g/a/#",
            "$share/g/+",
            "sport/tennis/player1",
        ] {
            assert_eq!(check_topic_filter(f.as_bytes()), Ok(()), "{f}");
        }
    }

    #[test]
    fn invalid_filters() {
        for f in [
            "",
            "a#",
            "a/#/b",
            "#/",
            "a+",
            "+a/b",
            "a/b+",
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert!(
                matches!(
                    check_topic_filter(f.as_bytes()),
                    Err(DecodeError::TopicFilterInvalid(_))
                ),
                "{f}"
            );
        }
    }

    #[test]
    fn topic_names() {
        assert_eq!(check_topic_name(b"a/b"), Ok(()));
        assert!(check_topic_name(b"a/+").is_err());
        assert!(check_topic_name(b"a/#").is_err());
    }
}
