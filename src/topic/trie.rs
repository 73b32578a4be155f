//! [`TopicTrie`]: a trie of topic filters matched against topic names without allocating.
//!
//! Nodes live in one arena (`Vec<Node>`) with a free list, addressed by `u32` indices. A node at
//! depth `d` stands for the first `d` levels of the filters below it and holds:
//! - `literal`: the children for literal levels, by level text;
//! - `plus`: the child for a `+` level;
//! - `hash`: the values of filters `<path>/#` (or `#` at a root), which match every name that
//!   reaches this node, the parent level included (`a/#` matches `a`);
//! - `exact`: the values of filters that end at this node.
//!
//! There are two roots: filters whose first level starts with `$` go under the dollar root, all
//! others under the normal root, and a name starting with `$` is matched only against the dollar
//! root. So a filter starting with `+` or `#` never matches a `$` name ([MQTT-4.7.2-1]).
//!
//! Matching is a depth-first walk that keeps no stack: each node records its parent and whether
//! it is its parent's `+` child, which is all the walk needs to go back up and try the `+` sibling
//! after a literal child. Memory and time stay bounded for any depth, and no call allocates.
//!
//! Literal children are found by hashing the level's bytes with [`super::hash::LevelHasher`]
//! (foldhash, keyed with a per-process random seed): one hash per level of every published
//! topic is the trie's main cost, and SipHash was several times slower for short levels.

use super::hash::{level_hasher, LevelHasher};
use hashbrown::HashMap;

/// An arena index; `NONE` marks a missing link.
type NodeIndex = u32;
const NONE: NodeIndex = NodeIndex::MAX;
const ROOT: NodeIndex = 0;
const DOLLAR_ROOT: NodeIndex = 1;
const ROOT_COUNT: usize = 2;

struct Node<V> {
    /// Keyed by the level's bytes (a topic is matched as bytes, its UTF-8 checked once by the
    /// codec), with a keyed fast hasher.
    literal: HashMap<Box<[u8]>, NodeIndex, LevelHasher>,
    plus: NodeIndex,
    hash: Vec<V>,
    exact: Vec<V>,
    parent: NodeIndex,
    /// Whether this node is its parent's `+` child (else a literal child, or a root).
    is_plus: bool,
}

impl<V> Node<V> {
    fn new(parent: NodeIndex, is_plus: bool) -> Self {
        Self {
            literal: HashMap::with_hasher(level_hasher()),
            plus: NONE,
            hash: Vec::new(),
            exact: Vec::new(),
            parent,
            is_plus,
        }
    }

    fn is_unused(&self) -> bool {
        self.literal.is_empty()
            && self.plus == NONE
            && self.hash.is_empty()
            && self.exact.is_empty()
    }
}

/// A filter split into the levels that lead to its node (`path`) and whether it ends in `#`.
///
/// `path` is `None` when the filter is `#` alone (its node is the root); otherwise its levels are
/// `path.split('/')`, so `/#` has the path `""` with one empty level.
struct FilterPath<'a> {
    path: Option<&'a str>,
    ends_in_hash: bool,
}

impl<'a> FilterPath<'a> {
    fn new(filter: &'a str) -> Self {
        if filter == "#" {
            Self {
                path: None,
                ends_in_hash: true,
            }
        } else if let Some(path) = filter.strip_suffix("/#") {
            Self {
                path: Some(path),
                ends_in_hash: true,
            }
        } else {
            Self {
                path: Some(filter),
                ends_in_hash: false,
            }
        }
    }

    fn levels(&self) -> impl DoubleEndedIterator<Item = &'a str> {
        self.path.into_iter().flat_map(|path| path.split('/'))
    }
}

/// Which root a filter or name belongs under.
fn root_for(text: &str) -> NodeIndex {
    root_for_bytes(text.as_bytes())
}

fn root_for_bytes(text: &[u8]) -> NodeIndex {
    if text.first() == Some(&b'$') {
        DOLLAR_ROOT
    } else {
        ROOT
    }
}

/// A trie of plain topic filters (no `$share/group/` prefix), each holding values of type `V`.
///
/// The same value may be inserted several times under one filter; [`TopicTrie::remove`] takes out
/// one copy. Filters are assumed valid (see [`super::validate_topic_filter`]); an invalid one is
/// stored by its levels as they are and never panics.
pub struct TopicTrie<V> {
    nodes: Vec<Node<V>>,
    free: Vec<NodeIndex>,
    len: usize,
    /// Changes with every insertion and every removal that removed something; starts at 1.
    generation: u64,
}

impl<V> Default for TopicTrie<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> TopicTrie<V> {
    /// An empty trie: just the two roots.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::new(NONE, false), Node::new(NONE, false)],
            free: Vec::new(),
            len: 0,
            generation: 1,
        }
    }

    /// The number of values stored, over all filters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A number that changes whenever the set of (filter, value) pairs changes (never 0), so
    /// that a cache of match results ([`super::MatchCache`]) knows when it is stale.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of live nodes, the two roots included (2 for an empty trie, since `remove`
    /// prunes every node left without values or children).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn alloc(&mut self, parent: NodeIndex, is_plus: bool) -> NodeIndex {
        let node = Node::new(parent, is_plus);
        match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                let index = self.nodes.len() as NodeIndex;
                assert!(index != NONE, "topic trie arena is full");
                self.nodes.push(node);
                index
            }
        }
    }

    /// Adds `value` under `filter`.
    pub fn insert(&mut self, filter: &str, value: V) {
        let path = FilterPath::new(filter);
        let mut node = root_for(filter);
        for level in path.levels() {
            node = self.child_or_insert(node, level);
        }
        let node = &mut self.nodes[node as usize];
        if path.ends_in_hash {
            node.hash.push(value);
        } else {
            node.exact.push(value);
        }
        self.len += 1;
        self.generation += 1;
    }

    fn child_or_insert(&mut self, node: NodeIndex, level: &str) -> NodeIndex {
        if level == "+" {
            let plus = self.nodes[node as usize].plus;
            if plus != NONE {
                return plus;
            }
            let child = self.alloc(node, true);
            self.nodes[node as usize].plus = child;
            return child;
        }
        if let Some(&child) = self.nodes[node as usize].literal.get(level.as_bytes()) {
            return child;
        }
        let child = self.alloc(node, false);
        self.nodes[node as usize]
            .literal
            .insert(level.as_bytes().into(), child);
        child
    }

    /// The node for `filter`'s path, if it exists.
    fn find(&self, path: &FilterPath<'_>, root: NodeIndex) -> Option<NodeIndex> {
        let mut node = root;
        for level in path.levels() {
            let current = &self.nodes[node as usize];
            node = if level == "+" {
                current.plus
            } else {
                current
                    .literal
                    .get(level.as_bytes())
                    .copied()
                    .unwrap_or(NONE)
            };
            if node == NONE {
                return None;
            }
        }
        Some(node)
    }

    /// Removes one value equal to `value` from `filter`; returns whether one was found.
    /// Nodes left without values or children are freed.
    pub fn remove(&mut self, filter: &str, value: &V) -> bool
    where
        V: PartialEq,
    {
        let mut found = false;
        self.remove_where(filter, |candidate| {
            if !found && candidate == value {
                found = true;
                true
            } else {
                false
            }
        });
        found
    }

    /// Removes every value of `filter` for which `pred` returns true; returns how many.
    /// Nodes left without values or children are freed.
    pub fn remove_where(&mut self, filter: &str, mut pred: impl FnMut(&V) -> bool) -> usize {
        let path = FilterPath::new(filter);
        let Some(node) = self.find(&path, root_for(filter)) else {
            return 0;
        };
        let values = if path.ends_in_hash {
            &mut self.nodes[node as usize].hash
        } else {
            &mut self.nodes[node as usize].exact
        };
        let before = values.len();
        // Order within one filter carries no meaning, so `swap_remove` keeps removal O(1).
        let mut index = 0;
        while index < values.len() {
            if pred(&values[index]) {
                values.swap_remove(index);
            } else {
                index += 1;
            }
        }
        let removed = before - values.len();
        self.len -= removed;
        if removed > 0 {
            self.generation += 1;
            self.prune(node, &path);
        }
        removed
    }

    /// Frees `node` and its ancestors while they hold nothing; `path` names the levels above.
    fn prune(&mut self, mut node: NodeIndex, path: &FilterPath<'_>) {
        let mut levels = path.levels().rev();
        while (node as usize) >= ROOT_COUNT && self.nodes[node as usize].is_unused() {
            let Some(level) = levels.next() else {
                debug_assert!(false, "pruning went above the filter's path");
                return;
            };
            let parent = self.nodes[node as usize].parent;
            if parent == NONE {
                debug_assert!(false, "pruning reached a freed node");
                return;
            }
            let is_plus = self.nodes[node as usize].is_plus;
            let parent_node = &mut self.nodes[parent as usize];
            if is_plus {
                parent_node.plus = NONE;
            } else {
                parent_node.literal.remove(level.as_bytes());
            }
            // Drop the node's (empty) map and vectors now rather than when the slot is reused.
            self.nodes[node as usize] = Node::new(NONE, false);
            self.free.push(node);
            node = parent;
        }
    }

    /// Calls `f` with every value whose filter matches the topic name `topic`. Allocates nothing.
    ///
    /// A value inserted under several matching filters (say `a/+` and `a/#`) is reported once per
    /// filter; the caller merges them when a client needs one delivery.
    pub fn for_each_match(&self, topic: &str, f: impl FnMut(&V)) {
        self.for_each_match_bytes(topic.as_bytes(), f);
    }

    /// [`TopicTrie::for_each_match`] on the bytes of a topic name, for callers that hold the
    /// bytes of a name already checked as UTF-8 (the publish path), so it is not checked again.
    pub fn for_each_match_bytes(&self, bytes: &[u8], mut f: impl FnMut(&V)) {
        let root = root_for_bytes(bytes);
        let mut node = root;
        // `start` is the byte offset of the next level to consume; `topic.len() + 1` once the
        // last level has been consumed.
        let mut start = 0usize;
        // Whether the walk went down a literal child beside which a `+` child waits: until it
        // has, going back up would find nothing left to visit, so the walk ends at once (the
        // usual case of topics without wildcard subscriptions on their path).
        let mut plus_left_behind = false;
        'descend: loop {
            let current = &self.nodes[node as usize];
            current.hash.iter().for_each(&mut f);
            if start > bytes.len() {
                current.exact.iter().for_each(&mut f);
            } else {
                let end = memchr_slash(bytes, start).unwrap_or(bytes.len());
                let level = &bytes[start..end];
                let next = match current.literal.get(level) {
                    Some(&child) => {
                        plus_left_behind |= current.plus != NONE;
                        child
                    }
                    None => current.plus,
                };
                if next != NONE {
                    node = next;
                    start = end + 1;
                    continue 'descend;
                }
            }
            if !plus_left_behind {
                return;
            }
            // Go back up until a node whose `+` sibling has not been visited yet.
            loop {
                if node == root {
                    return;
                }
                let current = &self.nodes[node as usize];
                let parent = &self.nodes[current.parent as usize];
                // The level consumed to reach `node` started after the previous '/'.
                let level_start = previous_level_start(bytes, start);
                if !current.is_plus && parent.plus != NONE {
                    node = parent.plus;
                    continue 'descend;
                }
                node = current.parent;
                start = level_start;
            }
        }
    }

    /// Appends a clone of every value whose filter matches `topic` to `out`.
    pub fn match_into(&self, topic: &str, out: &mut Vec<V>)
    where
        V: Clone,
    {
        self.for_each_match(topic, |value| out.push(value.clone()));
    }
}

/// The offset of the next `/` at or after `from`.
fn memchr_slash(bytes: &[u8], from: usize) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == b'/')
        .map(|i| from + i)
}

/// Given `start`, the offset just after the level that was last consumed (plus its `/`), the
/// offset where that level began.
fn previous_level_start(bytes: &[u8], start: usize) -> usize {
    // `start - 1` is the '/' (or the virtual end) after the consumed level.
    let level_end = start - 1;
    bytes[..level_end]
        .iter()
        .rposition(|&b| b == b'/')
        .map_or(0, |i| i + 1)
}
