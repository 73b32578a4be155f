//! [`RetainedTree`]: values stored by topic name and found by topic filter (retained messages).
//!
//! The tree mirrors [`super::TopicTrie`] turned around: nodes are topic-name levels (literal only)
//! in an arena with a free list, each node holds at most one value, and a filter walks the tree
//! (`+` visits every child, `#` the whole subtree including the node it hangs from). Names
//! starting with `$` live under a separate root, so a filter starting with a wildcard never
//! reaches them ([MQTT-4.7.2-1]).
//!
//! Matching a filter keeps its work list in a `Vec` (one allocation per call): it runs once per
//! SUBSCRIBE, not per PUBLISH. The broker bounds the number of retained messages itself.

use std::collections::HashMap;

type NodeIndex = u32;
const NONE: NodeIndex = NodeIndex::MAX;
const ROOT: NodeIndex = 0;
const DOLLAR_ROOT: NodeIndex = 1;
const ROOT_COUNT: usize = 2;

struct Node<V> {
    children: HashMap<Box<str>, NodeIndex>,
    /// The full topic name and its value, when a value is stored at this node.
    entry: Option<(Box<str>, V)>,
    parent: NodeIndex,
}

impl<V> Node<V> {
    fn new(parent: NodeIndex) -> Self {
        Self {
            children: HashMap::new(),
            entry: None,
            parent,
        }
    }
}

fn root_for(text: &str) -> NodeIndex {
    if text.starts_with('$') {
        DOLLAR_ROOT
    } else {
        ROOT
    }
}

/// One value per topic name, found by filter. Names are assumed valid
/// (see [`super::validate_topic_name`]); nothing here panics on any input.
pub struct RetainedTree<V> {
    nodes: Vec<Node<V>>,
    free: Vec<NodeIndex>,
    len: usize,
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> RetainedTree<V> {
    /// An empty tree: just the two roots.
    pub fn new() -> Self {
        Self {
            nodes: vec![Node::new(NONE), Node::new(NONE)],
            free: Vec::new(),
            len: 0,
        }
    }

    /// The number of stored values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no value is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of live nodes, the two roots included (2 when empty).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    fn alloc(&mut self, parent: NodeIndex) -> NodeIndex {
        let node = Node::new(parent);
        match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                let index = self.nodes.len() as NodeIndex;
                assert!(index != NONE, "retained tree arena is full");
                self.nodes.push(node);
                index
            }
        }
    }

    fn find(&self, topic: &str) -> Option<NodeIndex> {
        let mut node = root_for(topic);
        for level in topic.split('/') {
            node = *self.nodes[node as usize].children.get(level)?;
        }
        Some(node)
    }

    /// Stores `value` under `topic`, returning the value it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = root_for(topic);
        for level in topic.split('/') {
            node = match self.nodes[node as usize].children.get(level) {
                Some(&child) => child,
                None => {
                    let child = self.alloc(node);
                    self.nodes[node as usize]
                        .children
                        .insert(level.into(), child);
                    child
                }
            };
        }
        let old = self.nodes[node as usize]
            .entry
            .replace((topic.into(), value));
        if old.is_none() {
            self.len += 1;
        }
        old.map(|(_, value)| value)
    }

    /// Removes and returns the value stored under `topic`; frees the nodes left empty.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let node = self.find(topic)?;
        let (_, value) = self.nodes[node as usize].entry.take()?;
        self.len -= 1;
        self.prune(node, topic);
        Some(value)
    }

    /// The value stored under `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let node = self.find(topic)?;
        self.nodes[node as usize]
            .entry
            .as_ref()
            .map(|(_, value)| value)
    }

    /// Frees `node` and its ancestors while they hold nothing; `topic` names the levels.
    fn prune(&mut self, mut node: NodeIndex, topic: &str) {
        let mut levels = topic.split('/').rev();
        while (node as usize) >= ROOT_COUNT {
            let current = &self.nodes[node as usize];
            if current.entry.is_some() || !current.children.is_empty() {
                return;
            }
            let Some(level) = levels.next() else {
                debug_assert!(false, "pruning went above the topic's levels");
                return;
            };
            let parent = current.parent;
            if parent == NONE {
                // Already freed by an earlier prune in `retain`.
                return;
            }
            self.nodes[parent as usize].children.remove(level);
            self.nodes[node as usize] = Node::new(NONE);
            self.free.push(node);
            node = parent;
        }
    }

    /// Calls `f(topic, value)` for every stored value whose topic name matches `filter`
    /// (a plain filter: `+` one level, `#` the rest including the parent level).
    pub fn for_each_matching(&self, filter: &str, mut f: impl FnMut(&str, &V)) {
        let bytes = filter.as_bytes();
        // Work items: a node and the offset of the next filter level (`len + 1` when consumed).
        let mut pending: Vec<(NodeIndex, usize)> = vec![(root_for(filter), 0)];
        let mut subtree: Vec<NodeIndex> = Vec::new();
        while let Some((node, start)) = pending.pop() {
            let current = &self.nodes[node as usize];
            if start > bytes.len() {
                Self::emit(current, &mut f);
                continue;
            }
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b'/')
                .map_or(bytes.len(), |i| start + i);
            let next = end + 1;
            match &filter[start..end] {
                "#" => {
                    subtree.push(node);
                    while let Some(node) = subtree.pop() {
                        let current = &self.nodes[node as usize];
                        Self::emit(current, &mut f);
                        subtree.extend(current.children.values().copied());
                    }
                }
                "+" => pending.extend(current.children.values().map(|&child| (child, next))),
                level => {
                    if let Some(&child) = current.children.get(level) {
                        pending.push((child, next));
                    }
                }
            }
        }
    }

    fn emit(node: &Node<V>, f: &mut impl FnMut(&str, &V)) {
        if let Some((topic, value)) = &node.entry {
            f(topic, value);
        }
    }

    /// Keeps only the values for which `keep` returns true (e.g. to drop expired messages).
    pub fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        let mut dropped: Vec<(NodeIndex, Box<str>)> = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            let drop_it = matches!(&node.entry, Some((_, value)) if !keep(value));
            if drop_it {
                if let Some((topic, _)) = node.entry.take() {
                    dropped.push((index as NodeIndex, topic));
                }
            }
        }
        self.len -= dropped.len();
        for (node, topic) in dropped {
            self.prune(node, &topic);
        }
    }
}
