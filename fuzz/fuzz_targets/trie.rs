//! Interprets the input as insert/remove/match operations on a `TopicTrie` and checks every match
//! against a plain list of (filter, value) pairs matched with the reference `filter_matches`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardmq::topic::{filter_matches, validate_topic_filter, validate_topic_name, TopicTrie};

/// The levels filters and topics are built from: a small alphabet so that they collide often.
const FILTER_LEVELS: [&str; 8] = ["a", "b", "", "+", "#", "$SYS", "ab", "c"];
const TOPIC_LEVELS: [&str; 6] = ["a", "b", "", "$SYS", "ab", "c"];

/// Builds a `/`-joined string of up to 5 levels from the next bytes.
fn build(data: &mut impl Iterator<Item = u8>, alphabet: &[&str]) -> Option<String> {
    let count = usize::from(data.next()? % 5) + 1;
    let mut levels = Vec::with_capacity(count);
    for _ in 0..count {
        levels.push(alphabet[usize::from(data.next()?) % alphabet.len()]);
    }
    Some(levels.join("/"))
}

fuzz_target!(|data: &[u8]| {
    let mut data = data.iter().copied();
    let mut trie: TopicTrie<u8> = TopicTrie::new();
    let mut model: Vec<(String, u8)> = Vec::new();
    while let Some(op) = data.next() {
        match op % 3 {
            0 => {
                let Some(filter) = build(&mut data, &FILTER_LEVELS) else {
                    break;
                };
                let Some(value) = data.next() else { break };
                if validate_topic_filter(&filter).is_err() {
                    continue;
                }
                let value = value % 4;
                trie.insert(&filter, value);
                model.push((filter, value));
            }
            1 => {
                let Some(filter) = build(&mut data, &FILTER_LEVELS) else {
                    break;
                };
                let Some(value) = data.next() else { break };
                let value = value % 4;
                let position = model.iter().position(|(f, v)| *f == filter && *v == value);
                if let Some(at) = position {
                    model.remove(at);
                }
                assert_eq!(
                    trie.remove(&filter, &value),
                    position.is_some(),
                    "remove {filter} {value}"
                );
            }
            _ => {
                let Some(topic) = build(&mut data, &TOPIC_LEVELS) else {
                    break;
                };
                if validate_topic_name(&topic).is_err() {
                    continue;
                }
                let mut from_trie = Vec::new();
                trie.for_each_match(&topic, |v| from_trie.push(*v));
                let mut collected = Vec::new();
                trie.match_into(&topic, &mut collected);
                let mut expected: Vec<u8> = model
                    .iter()
                    .filter(|(filter, _)| filter_matches(filter, &topic))
                    .map(|(_, v)| *v)
                    .collect();
                from_trie.sort_unstable();
                collected.sort_unstable();
                expected.sort_unstable();
                assert_eq!(from_trie, expected, "for_each_match {topic} over {model:?}");
                assert_eq!(collected, expected, "match_into {topic}");
            }
        }
        assert_eq!(trie.len(), model.len());
    }
    // Removing everything leaves an empty, pruned trie.
    for (filter, value) in &model {
        assert!(trie.remove(filter, value));
    }
    assert!(trie.is_empty());
    assert_eq!(trie.node_count(), 2, "every node pruned");
});
