//! Tables and property tests for validation, the reference matcher, the trie and the retained
//! tree. The trie and the tree are both checked against `filter_matches`.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// (filter, topic name, matches?) — each row is checked against all three matchers.
const WILDCARD_TABLE: &[(&str, &str, bool)] = &[
    ("sensors/+/temp", "sensors/a/temp", true),
    ("sensors/+/temp", "sensors//temp", true),
    ("sensors/+/temp", "sensors/a/b/temp", false),
    ("sensors/+/temp", "sensors/temp", false),
    ("sensors/#", "sensors", true),
    ("sensors/#", "sensors/", true),
    ("sensors/#", "sensors/a/b/c", true),
    ("sensors/#", "sensorsx", false),
    ("sensors/#", "other/a", false),
    ("#", "a", true),
    ("#", "/", true),
    ("#", "/a", true),
    ("#", "a/b/c", true),
    ("#", "$SYS/x", false),
    ("#", "$SYS", false),
    ("+", "a", true),
    ("+", "a/b", false),
    ("+", "/", false),
    ("+", "/finance", false),
    ("+", "$SYS", false),
    ("+/+", "/finance", true),
    ("+/+", "/", true),
    ("/+", "/finance", true),
    ("+/+/+", "a/b/c", true),
    ("+/+/+", "a/b", false),
    ("+/+/+", "a/b/c/d", false),
    ("+/+/+", "$SYS/b/c", false),
    ("+/#", "$SYS/x", false),
    ("+/#", "a", true),
    ("$SYS/#", "$SYS/x", true),
    ("$SYS/#", "$SYS", true),
    ("$SYS/#", "$SYSX", false),
    ("$SYS/+", "$SYS/x", true),
    ("$SYS/+", "$SYS/x/y", false),
    ("$SYS/x", "$SYS/x", true),
    ("$SYS/x", "$SYS/y", false),
    ("a/$x", "a/$x", true),
    ("a/+", "a/$x", true),
    ("a/#", "a/$x/y", true),
    ("a//b", "a//b", true),
    ("a//b", "a/b", false),
    ("a/+/b", "a//b", true),
    ("/a", "/a", true),
    ("/a", "a", false),
    ("a/", "a/", true),
    ("a/", "a", false),
    ("a/+", "a/", true),
    ("a/#", "a/", true),
    ("/#", "/", true),
    ("/#", "/a/b", true),
    ("/#", "a", false),
    ("a/b", "a/b", true),
    ("a/b", "A/b", false),
    ("a/b/#", "a/b/c/d", true),
    ("a/+/c/#", "a/x/c", true),
    ("a/+/c/#", "a/x/d", false),
    ("a/b/c", "a/b", false),
    ("a/b", "a/b/c", false),
];

#[test]
fn wildcard_table_reference_matcher() {
    for &(filter, topic, expected) in WILDCARD_TABLE {
        assert_eq!(
            filter_matches(filter, topic),
            expected,
            "filter {filter:?} topic {topic:?}"
        );
    }
}

#[test]
fn wildcard_table_trie() {
    for &(filter, topic, expected) in WILDCARD_TABLE {
        let mut trie = TopicTrie::new();
        trie.insert(filter, 7u32);
        let mut found = Vec::new();
        trie.match_into(topic, &mut found);
        let want: &[u32] = if expected { &[7] } else { &[] };
        assert_eq!(found, want, "filter {filter:?} topic {topic:?}");
    }
}

#[test]
fn wildcard_table_trie_all_filters_at_once() {
    let mut trie = TopicTrie::new();
    for (index, &(filter, _, _)) in WILDCARD_TABLE.iter().enumerate() {
        trie.insert(filter, index);
    }
    for &(_, topic, _) in WILDCARD_TABLE {
        let mut found = Vec::new();
        trie.for_each_match(topic, |&index| found.push(index));
        found.sort_unstable();
        let want: Vec<usize> = (0..WILDCARD_TABLE.len())
            .filter(|&i| filter_matches(WILDCARD_TABLE[i].0, topic))
            .collect();
        assert_eq!(found, want, "topic {topic:?}");
    }
}

#[test]
fn wildcard_table_retained_tree() {
    for &(filter, topic, expected) in WILDCARD_TABLE {
        let mut tree = RetainedTree::new();
        tree.insert(topic, 7u32);
        let mut found = Vec::new();
        tree.for_each_matching(filter, |name, &value| found.push((name.to_owned(), value)));
        let want = if expected {
            vec![(topic.to_owned(), 7)]
        } else {
            vec![]
        };
        assert_eq!(found, want, "filter {filter:?} topic {topic:?}");
    }
}

/// Checks that an error names the expected spec statement.
fn assert_rule(result: Result<(), TopicError>, rule: Option<&str>, input: &str) {
    match (result, rule) {
        (Ok(()), None) => {}
        (Err(error), Some(rule)) => {
            assert!(
                error.0.contains(rule),
                "{input:?}: {error} should cite {rule}"
            )
        }
        (result, rule) => panic!("{input:?}: got {result:?}, want {rule:?}"),
    }
}

#[test]
fn topic_name_validation_table() {
    let long_ok = "a".repeat(TOPIC_LEN_MAX);
    let too_long = "a".repeat(TOPIC_LEN_MAX + 1);
    let table: &[(&str, Option<&str>)] = &[
        ("a", None),
        ("/", None),
        ("a//b", None),
        ("/a", None),
        ("a/", None),
        ("$SYS/broker/uptime", None),
        ("caf\u{e9}/\u{1F600}", None),
        (&long_ok, None),
        ("", Some("MQTT-4.7.3-1")),
        (&too_long, Some("MQTT-4.7.3-3")),
        ("a\0b", Some("MQTT-4.7.3-2")),
        ("a/+", Some("MQTT-3.3.2-2")),
        ("a+b", Some("MQTT-3.3.2-2")),
        ("#", Some("MQTT-3.3.2-2")),
        ("a/#", Some("MQTT-3.3.2-2")),
    ];
    for &(name, rule) in table {
        assert_rule(validate_topic_name(name), rule, name);
        assert_eq!(TopicName::new(name).is_ok(), rule.is_none(), "{name:?}");
    }
}

#[test]
fn topic_filter_validation_table() {
    let long_ok = "+/".repeat(TOPIC_LEN_MAX / 2) + "#";
    let too_long = "a".repeat(TOPIC_LEN_MAX + 1);
    let shared_too_long = format!("$share/g/{}", "a".repeat(TOPIC_LEN_MAX));
    let table: &[(&str, Option<&str>)] = &[
        ("#", None),
        ("+", None),
        ("a/#", None),
        ("+/+/+", None),
        ("a/+/b/#", None),
        ("a//b", None),
        ("/", None),
        ("/#", None),
        ("$SYS/#", None),
        ("$share", None),
        ("$sharex/a", None),
        ("$share/g/a/#", None),
        ("$share/g/+", None),
        ("$share/g//", None),
        (&long_ok, None),
        ("", Some("MQTT-4.7.3-1")),
        (&too_long, Some("MQTT-4.7.3-3")),
        (&shared_too_long, Some("MQTT-4.7.3-3")),
        ("a\0", Some("MQTT-4.7.3-2")),
        ("a/#/b", Some("MQTT-4.7.1-1")),
        ("#/", Some("MQTT-4.7.1-1")),
        ("a#", Some("MQTT-4.7.1-1")),
        ("a/b#", Some("MQTT-4.7.1-1")),
        ("##", Some("MQTT-4.7.1-1")),
        ("a+", Some("MQTT-4.7.1-2")),
        ("+a/b", Some("MQTT-4.7.1-2")),
        ("a/++", Some("MQTT-4.7.1-2")),
        ("$share/g", Some("MQTT-4.8.2-2")),
        ("$share/", Some("MQTT-4.8.2-2")),
        ("$share//a", Some("MQTT-4.8.2-1")),
        ("$share/g+/a", Some("MQTT-4.8.2-2")),
        ("$share/g#/a", Some("MQTT-4.8.2-2")),
        ("$share/g/", Some("MQTT-4.8.2-2")),
        ("$share/g/a#", Some("MQTT-4.7.1-1")),
        ("$share/g/a\0", Some("MQTT-4.7.3-2")),
    ];
    for &(filter, rule) in table {
        assert_rule(validate_topic_filter(filter), rule, filter);
        assert_eq!(
            TopicFilter::new(filter).is_ok(),
            rule.is_none(),
            "{filter:?}"
        );
    }
}

#[test]
fn parse_shared_cases() {
    let shared = |group, filter| Ok(Some(SharedFilter { group, filter }));
    assert_eq!(parse_shared("$share/g/a/b"), shared("g", "a/b"));
    assert_eq!(parse_shared("$share/g/#"), shared("g", "#"));
    assert_eq!(parse_shared("$share/g//"), shared("g", "/"));
    assert_eq!(
        parse_shared("$share/group-1/$SYS/#"),
        shared("group-1", "$SYS/#")
    );
    assert_eq!(
        parse_shared("$share/g/$share/h/x"),
        shared("g", "$share/h/x")
    );
    assert_eq!(parse_shared("a/b"), Ok(None));
    assert_eq!(parse_shared("$share"), Ok(None));
    assert_eq!(parse_shared("$SHARE/g/a"), Ok(None));
    assert_eq!(parse_shared("#"), Ok(None));
    for bad in [
        "$share/g",
        "$share/",
        "$share//a",
        "$share/+/a",
        "$share/g/",
        "$share/g/a/#/b",
    ] {
        assert!(parse_shared(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn topic_filter_newtype_parts() {
    let filter = TopicFilter::new("$share/g/a/+").unwrap();
    assert_eq!(filter.share_group(), Some("g"));
    assert_eq!(filter.plain(), "a/+");
    assert!(filter.has_wildcard());
    assert!(filter.matches(TopicName::new("a/b").unwrap()));
    let plain = TopicFilter::new("a/b").unwrap();
    assert_eq!(plain.share_group(), None);
    assert!(!plain.has_wildcard());
    assert!(TopicName::new("$SYS").unwrap().is_dollar());
}

#[test]
fn level_counts() {
    assert_eq!(level_count("a"), 1);
    assert_eq!(level_count("/"), 2);
    assert_eq!(level_count("a//b"), 3);
    assert_eq!(level_count("a/b/c/#"), 4);
    assert_eq!(TopicName::new("/a/").unwrap().level_count(), 3);
}

#[test]
fn trie_duplicates_remove_and_remove_where() {
    let mut trie = TopicTrie::new();
    trie.insert("a/+", 1);
    trie.insert("a/+", 1);
    trie.insert("a/+", 2);
    trie.insert("a/#", 1);
    assert_eq!(trie.len(), 4);
    let mut found = Vec::new();
    trie.match_into("a/b", &mut found);
    found.sort_unstable();
    assert_eq!(found, [1, 1, 1, 2]);

    assert!(trie.remove("a/+", &1));
    assert_eq!(trie.len(), 3);
    assert!(!trie.remove("a/+", &3));
    assert!(!trie.remove("a/b", &1));
    assert!(!trie.remove("x/y/z", &1));
    assert_eq!(trie.remove_where("a/+", |_| true), 2);
    assert_eq!(trie.remove_where("a/+", |_| true), 0);
    assert_eq!(trie.len(), 1);
    assert!(trie.remove("a/#", &1));
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 2);
}

#[test]
fn trie_parent_keeps_children_when_pruned() {
    let mut trie = TopicTrie::new();
    trie.insert("a/b/c", 1);
    trie.insert("a", 2);
    trie.insert("a/+/c", 3);
    assert!(trie.remove("a", &2));
    let mut found = Vec::new();
    trie.match_into("a/b/c", &mut found);
    found.sort_unstable();
    assert_eq!(found, [1, 3]);
    assert!(trie.remove("a/b/c", &1));
    assert!(trie.remove("a/+/c", &3));
    assert_eq!(trie.node_count(), 2);
    // Freed slots are reused.
    trie.insert("x/y", 4);
    assert_eq!(trie.node_count(), 4);
}

#[test]
fn trie_and_tree_handle_very_deep_topics() {
    // Matching keeps no stack, so depth is only bounded by the topic length limit.
    let depth = 20_000;
    let topic = vec!["a"; depth].join("/");
    let plus = vec!["+"; depth].join("/");
    let mut trie = TopicTrie::new();
    trie.insert(&topic, 1);
    trie.insert(&plus, 2);
    trie.insert(&format!("{}/#", vec!["a"; depth - 1].join("/")), 3);
    let mut found = Vec::new();
    trie.match_into(&topic, &mut found);
    found.sort_unstable();
    assert_eq!(found, [1, 2, 3]);
    assert!(trie.remove(&topic, &1));
    assert!(trie.remove(&plus, &2));
    assert_eq!(
        trie.remove_where(&format!("{}/#", vec!["a"; depth - 1].join("/")), |_| true),
        1
    );
    assert_eq!(trie.node_count(), 2);

    let mut tree = RetainedTree::new();
    tree.insert(&topic, 1);
    let mut count = 0;
    tree.for_each_matching(&plus, |_, _| count += 1);
    tree.for_each_matching("#", |_, _| count += 1);
    assert_eq!(count, 2);
    assert_eq!(tree.remove(&topic), Some(1));
    assert_eq!(tree.node_count(), 2);
}

#[test]
fn retained_insert_replace_get_remove_retain() {
    let mut tree = RetainedTree::new();
    assert_eq!(tree.insert("a/b", 1), None);
    assert_eq!(tree.insert("a/b", 2), Some(1));
    assert_eq!(tree.insert("a", 3), None);
    assert_eq!(tree.insert("$SYS/a", 4), None);
    assert_eq!(tree.len(), 3);
    assert_eq!(tree.get("a/b"), Some(&2));
    assert_eq!(tree.get("a/c"), None);
    assert_eq!(tree.get("a/b/c"), None);
    assert_eq!(tree.remove("a/c"), None);

    let mut all = Vec::new();
    tree.for_each_matching("#", |name, &value| all.push((name.to_owned(), value)));
    all.sort();
    assert_eq!(all, [("a".to_owned(), 3), ("a/b".to_owned(), 2)]);

    tree.retain(|&value| value != 3 && value != 2);
    assert_eq!(tree.len(), 1);
    assert_eq!(tree.get("a/b"), None);
    assert_eq!(tree.get("$SYS/a"), Some(&4));
    assert_eq!(tree.remove("$SYS/a"), Some(4));
    assert!(tree.is_empty());
    assert_eq!(tree.node_count(), 2);
}

/// Topic filters from a small alphabet of levels, kept only when valid.
fn filter_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "$x", "", "+", "#"]),
        1..6,
    )
    .prop_map(|levels| levels.join("/"))
    .prop_filter("valid filter", |filter| {
        validate_topic_filter(filter).is_ok()
    })
}

/// Topic names from the same alphabet without wildcards, kept only when valid.
fn topic_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "$x", ""]), 1..6)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("valid name", |name| validate_topic_name(name).is_ok())
}

proptest! {
    #[test]
    fn trie_agrees_with_reference(
        filters in prop::collection::vec(filter_strategy(), 0..40),
        topics in prop::collection::vec(topic_strategy(), 1..20),
    ) {
        let mut trie = TopicTrie::new();
        for (index, filter) in filters.iter().enumerate() {
            trie.insert(filter, index);
        }
        prop_assert_eq!(trie.len(), filters.len());
        for topic in &topics {
            let mut found = Vec::new();
            trie.match_into(topic, &mut found);
            found.sort_unstable();
            let want: Vec<usize> = (0..filters.len())
                .filter(|&i| filter_matches(&filters[i], topic))
                .collect();
            prop_assert_eq!(found, want, "topic {:?}", topic);
        }
    }

    #[test]
    fn match_cache_agrees_with_trie(
        steps in prop::collection::vec(
            (0..3u8, filter_strategy(), topic_strategy()),
            1..60,
        ),
    ) {
        // Inserts, removals and lookups interleaved: the cache answers as the trie does.
        let mut trie = TopicTrie::new();
        let mut cache = MatchCache::new();
        for (index, (op, filter, topic)) in steps.iter().enumerate() {
            match op {
                0 => trie.insert(filter, index),
                1 => {
                    trie.remove_where(filter, |_| true);
                }
                _ => {}
            }
            for _ in 0..2 {
                let mut cached = Vec::new();
                cache.for_each_match(&trie, topic.as_bytes(), |&v| cached.push(v));
                let mut direct = Vec::new();
                trie.match_into(topic, &mut direct);
                prop_assert_eq!(&cached, &direct, "topic {:?}", topic);
            }
        }
    }

    #[test]
    fn retained_tree_agrees_with_reference(
        topics in prop::collection::vec(topic_strategy(), 0..40),
        filters in prop::collection::vec(filter_strategy(), 1..20),
    ) {
        let mut tree = RetainedTree::new();
        let mut naive = BTreeMap::new();
        for (index, topic) in topics.iter().enumerate() {
            prop_assert_eq!(tree.insert(topic, index), naive.insert(topic.clone(), index));
        }
        prop_assert_eq!(tree.len(), naive.len());
        for filter in &filters {
            let mut found = BTreeSet::new();
            tree.for_each_matching(filter, |name, &value| {
                found.insert((name.to_owned(), value));
            });
            let want: BTreeSet<(String, usize)> = naive
                .iter()
                .filter(|(name, _)| filter_matches(filter, name))
                .map(|(name, &value)| (name.clone(), value))
                .collect();
            prop_assert_eq!(found, want, "filter {:?}", filter);
        }
    }

    #[test]
    fn trie_insert_remove_leaves_it_empty(
        (filters, order) in prop::collection::vec(filter_strategy(), 0..30)
            .prop_flat_map(|filters| {
                let order = Just((0..filters.len()).collect::<Vec<_>>()).prop_shuffle();
                (Just(filters), order)
            }),
        probe in topic_strategy(),
    ) {
        let mut trie = TopicTrie::new();
        for (index, filter) in filters.iter().enumerate() {
            trie.insert(filter, index);
        }
        for (removed, &index) in order.iter().enumerate() {
            prop_assert!(!trie.remove(&filters[index], &usize::MAX));
            prop_assert!(trie.remove(&filters[index], &index));
            prop_assert_eq!(trie.len(), filters.len() - removed - 1);
            // The survivors still match as the reference says.
            let mut found = Vec::new();
            trie.match_into(&probe, &mut found);
            found.sort_unstable();
            let alive: BTreeSet<usize> = order[removed + 1..].iter().copied().collect();
            let want: Vec<usize> = alive
                .into_iter()
                .filter(|&i| filter_matches(&filters[i], &probe))
                .collect();
            prop_assert_eq!(found, want);
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 2);
    }

    #[test]
    fn retained_insert_remove_leaves_it_empty(
        topics in prop::collection::vec(topic_strategy(), 0..30)
            .prop_flat_map(|topics| Just(topics).prop_shuffle()),
    ) {
        let mut tree = RetainedTree::new();
        for (index, topic) in topics.iter().enumerate() {
            tree.insert(topic, index);
        }
        let distinct: BTreeSet<&String> = topics.iter().collect();
        prop_assert_eq!(tree.len(), distinct.len());
        for topic in distinct.iter().rev() {
            prop_assert!(tree.remove(topic).is_some());
            prop_assert!(tree.remove(topic).is_none());
        }
        prop_assert!(tree.is_empty());
        prop_assert_eq!(tree.node_count(), 2);
    }

    #[test]
    fn validation_never_panics(text in "[a+#/$\\x00é]{0,12}") {
        let _ = validate_topic_name(&text);
        let _ = validate_topic_filter(&text);
        let _ = parse_shared(&text);
        let _ = level_count(&text);
        let mut trie = TopicTrie::new();
        trie.insert(&text, 1);
        trie.for_each_match(&text, |_| {});
        trie.remove(&text, &1);
        prop_assert_eq!(trie.node_count(), 2);
        let mut tree = RetainedTree::new();
        tree.insert(&text, 1);
        tree.for_each_matching(&text, |_, _| {});
        tree.remove(&text);
        prop_assert_eq!(tree.node_count(), 2);
    }
}
