//! Checks that `TopicTrie::for_each_match` allocates nothing, with a counting global allocator
//! that counts only on the thread under test.

use crate::support::alloc::allocations;
use shardmq::topic::TopicTrie;

#[test]
fn matching_allocates_nothing() {
    // The counter sees this thread's allocations (else the checks below could not fail).
    let before = allocations();
    let probe = std::hint::black_box(vec![1u8; 8]);
    assert!(allocations() > before);
    drop(probe);

    let mut trie = TopicTrie::new();
    let filters = [
        "sensors/+/temp",
        "sensors/#",
        "#",
        "+/+/+",
        "sensors/kitchen/temp",
        "$SYS/#",
        "+/kitchen/+",
        "a/b/c/d/e/f/g/h/#",
        "+/+/+/+/+/+/+/+/+/+",
    ];
    for (index, filter) in filters.iter().enumerate() {
        trie.insert(filter, index);
    }
    let topics = [
        "sensors/kitchen/temp",
        "sensors",
        "$SYS/uptime",
        "a/b/c/d/e/f/g/h/i/j",
        "x/y",
        "/",
    ];
    let mut matched = 0;
    let before = allocations();
    for topic in topics {
        trie.for_each_match(topic, |_| matched += 1);
    }
    let after = allocations();
    assert_eq!(after - before, 0, "for_each_match allocated");
    // sensors/kitchen/temp: sensors/+/temp, sensors/#, #, +/+/+, the literal, +/kitchen/+ (6);
    // sensors: sensors/#, # (2); $SYS/uptime: $SYS/# (1); a/b/...: a/b/c/d/e/f/g/h/#, #,
    // the ten-level plus (3); x/y: # (1); /: # (1).
    assert_eq!(matched, 14);

    // match_into allocates only to grow the caller's buffer, never once it has room.
    let mut out = Vec::with_capacity(16);
    let before = allocations();
    trie.match_into("sensors/kitchen/temp", &mut out);
    assert_eq!(allocations() - before, 0);
    assert_eq!(out.len(), 6);
}
