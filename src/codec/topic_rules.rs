//! The topic name and filter rules decoding enforces (4.7). Filters are checked by the topic
//! module's validator; names by a single wildcard scan here, because the PUBLISH hot path has
//! already checked UTF-8 and U+0000, and emptiness depends on the version (MQTT 5 Topic Alias).

use super::reader::check_utf8;
use super::DecodeError;

/// Checks the bytes of a PUBLISH topic name: well-formed UTF-8 without U+0000 ([MQTT-1.5.4-1],
/// [MQTT-1.5.4-2]) and no wildcards ([MQTT-3.3.2-2]). The hot path: one pass the compiler can
/// vectorize settles the common case (ASCII without NUL, `+` or `#`); anything else takes the
/// full checks, in the same order as for any other string.
pub(crate) fn check_publish_topic(topic: &[u8]) -> Result<(), DecodeError> {
    let mut suspicious = 0u8;
    for &b in topic {
        suspicious |= (b >> 7) | u8::from(b == 0) | u8::from(b == b'+') | u8::from(b == b'#');
    }
    if suspicious == 0 {
        return Ok(());
    }
    check_utf8(topic)?;
    check_topic_name(topic)
}

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
    fn publish_topic_fast_path_agrees_with_the_full_checks() {
        let cases: [&[u8]; 9] = [
            b"a/b",
            b"",
            b"a/+",
            b"#",
            b"a\0b",
            "\u{e9}t\u{e9}".as_bytes(),
            &[0xC3, 0x28],
            &[0xED, 0xA0, 0x80],
            "\u{e9}/#".as_bytes(),
        ];
        for topic in cases {
            let full = check_utf8(topic).and_then(|()| check_topic_name(topic));
            assert_eq!(check_publish_topic(topic), full, "{topic:?}");
        }
    }

    #[test]
    fn topic_names() {
        assert_eq!(check_topic_name(b"a/b"), Ok(()));
        assert!(check_topic_name(b"a/+").is_err());
        assert!(check_topic_name(b"a/#").is_err());
    }
}
