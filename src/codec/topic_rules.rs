//! The topic name and filter rules decoding enforces (4.7). Filters are checked by the topic
//! module's validator; names by a single wildcard scan here, because the PUBLISH hot path has
//! already checked UTF-8 and U+0000, and emptiness depends on the version (MQTT 5 Topic Alias).

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

/// Checks a SUBSCRIBE/UNSUBSCRIBE topic filter with the topic module's validator (one definition
/// of the rules): non-empty ([MQTT-4.7.3-1]), `#` only alone as the last level ([MQTT-4.7.1-1]),
/// `+` only alone in its level ([MQTT-4.7.1-2]), and for `$share/{group}/{filter}` a non-empty
/// group without wildcards followed by a valid filter ([MQTT-4.8.2-1], [MQTT-4.8.2-2]).
pub(crate) fn check_topic_filter(filter: &str) -> Result<(), DecodeError> {
    crate::topic::validate_topic_filter(filter).map_err(|e| DecodeError::TopicFilterInvalid(e.0))
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
            assert_eq!(check_topic_filter(f), Ok(()), "{f}");
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
                    check_topic_filter(f),
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
