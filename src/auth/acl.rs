//! Mosquitto ACL files (`acl_file`), read unchanged, with Mosquitto 2's decisions.
//!
//! ```text
//! # before any `user` line: rules for anonymous clients
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! pattern write devices/%c/out      # every client; %c = client id, %u = user name
//! ```
//!
//! - `topic [read|write|readwrite|deny] TOPIC` adds a rule to the current block: the anonymous
//!   block before any `user NAME` line, that user's block after it. Without an access word the
//!   rule is `readwrite`. `pattern ...` adds a rule that applies to every client, with `%u` and
//!   `%c` replaced; a `%u` pattern never applies to an anonymous client.
//! - A client's own block is checked first, then the patterns. In each, `deny` rules come first
//!   (deny wins), then the others in file order; the first rule whose filter matches the topic
//!   and grants the access decides. No match denies. A client whose user name or client id holds
//!   `+` or `#` gets nothing from patterns (it could widen its own rules).
//! - A topic starting with `$` is only matched by rules starting with `$` ([MQTT-4.7.2-1]).
//!
//! Where Mosquitto differs: Mosquitto grants every SUBSCRIBE and filters on delivery; shardmq
//! filters on delivery the same way and also refuses (0x87) a filter under which no topic could
//! ever be delivered: one no rule could grant reading, or one wholly under a `deny`.

use crate::topic::{filter_matches, validate_topic_filter};
use std::collections::HashMap;

/// Access bit: the client may receive messages on the topic (SUBSCRIBE, delivery).
pub const ACL_READ: u8 = 1;
/// Access bit: the client may publish on the topic (PUBLISH, will).
pub const ACL_WRITE: u8 = 2;

/// One rule: a topic filter and the access it grants; `access == 0` is `deny`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    filter: String,
    access: u8,
}

impl Rule {
    fn is_deny(&self) -> bool {
        self.access == 0
    }
}

/// Why an ACL file could not be loaded.
#[derive(Debug)]
pub enum AclFileError {
    /// The file could not be read.
    Io(std::io::Error),
    /// A line is not a valid rule; `line` counts from 1.
    Line {
        /// The 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl std::fmt::Display for AclFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(error) => write!(f, "acl file: {error}"),
            Self::Line { line, reason } => write!(f, "acl file line {line}: {reason}"),
        }
    }
}

impl std::error::Error for AclFileError {}

/// A parsed ACL file. Immutable; a reload builds a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AclFile {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

/// Adds a rule to a block: denies at the front (after earlier denies), others at the end.
fn push_rule(block: &mut Vec<Rule>, rule: Rule) {
    if rule.is_deny() {
        let at = block.iter().take_while(|r| r.is_deny()).count();
        block.insert(at, rule);
    } else {
        block.push(rule);
    }
}

impl AclFile {
    /// Parses the text of an ACL file (see the module documentation). Lines starting with `#`
    /// and blank lines are skipped; anything else that is not a rule is an error naming its line.
    pub fn parse(text: &str) -> Result<Self, AclFileError> {
        let mut acl = AclFile::default();
        let mut user: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim_end();
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let error = |reason: String| AclFileError::Line {
                line: index + 1,
                reason,
            };
            let line = line.trim_start_matches(' ');
            let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
            let rest = rest.trim_start_matches(' ');
            match keyword {
                "user" => {
                    let name = rest.trim();
                    if name.is_empty() {
                        return Err(error("`user` without a user name".into()));
                    }
                    user = Some(name.to_owned());
                }
                "topic" | "pattern" => {
                    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
                    if first.is_empty() {
                        return Err(error(format!("`{keyword}` without a topic")));
                    }
                    let after = after.trim();
                    // Mosquitto: with one word it is the topic, with readwrite access.
                    let (access, filter) = if after.is_empty() {
                        (ACL_READ | ACL_WRITE, first)
                    } else {
                        let access = match first {
                            "read" => ACL_READ,
                            "write" => ACL_WRITE,
                            "readwrite" => ACL_READ | ACL_WRITE,
                            "deny" => 0,
                            other => {
                                return Err(error(format!(
                                    "access {other:?} is not read, write, readwrite or deny"
                                )))
                            }
                        };
                        (access, after)
                    };
                    if let Err(why) = validate_topic_filter(filter) {
                        return Err(error(format!("invalid topic filter {filter:?}: {why}")));
                    }
                    let rule = Rule {
                        filter: filter.to_owned(),
                        access,
                    };
                    if keyword == "pattern" {
                        push_rule(&mut acl.patterns, rule);
                    } else {
                        match &user {
                            Some(name) => {
                                push_rule(acl.users.entry(name.clone()).or_default(), rule)
                            }
                            None => push_rule(&mut acl.anonymous, rule),
                        }
                    }
                }
                other => return Err(error(format!("unknown keyword {other:?}"))),
            }
        }
        Ok(acl)
    }

    /// Reads and parses an ACL file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, AclFileError> {
        let text = super::password::read_limited(path).map_err(AclFileError::Io)?;
        Self::parse(&text)
    }

    /// The number of rules, patterns included.
    pub fn len(&self) -> usize {
        self.anonymous.len()
            + self.patterns.len()
            + self.users.values().map(Vec::len).sum::<usize>()
    }

    /// Whether the file has no rules (every client is denied everything, as in Mosquitto).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rules that apply to one client, with `%u` and `%c` substituted. Built once per
    /// session (and again after a reload), so a check never formats strings.
    pub fn rules_for(&self, username: Option<&str>, client_id: &str) -> ClientRules {
        let own = match username {
            Some(name) => self.users.get(name).cloned().unwrap_or_default(),
            None => self.anonymous.clone(),
        };
        // Mosquitto: a user name or client id with a wildcard gets nothing from patterns.
        let dangerous = |s: &str| s.contains(['+', '#']);
        let patterns = if username.is_some_and(dangerous) || dangerous(client_id) {
            Vec::new()
        } else {
            self.patterns
                .iter()
                .filter(|rule| username.is_some() || !rule.filter.contains("%u"))
                .map(|rule| Rule {
                    filter: substitute(&rule.filter, username, client_id),
                    access: rule.access,
                })
                .collect()
        };
        ClientRules { own, patterns }
    }
}

/// Replaces `%c` with the client id and `%u` with the user name, left to right.
fn substitute(filter: &str, username: Option<&str>, client_id: &str) -> String {
    let mut out = String::with_capacity(filter.len() + client_id.len());
    let mut rest = filter;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match (rest.as_bytes().get(at + 1), username) {
            (Some(b'c'), _) => out.push_str(client_id),
            (Some(b'u'), Some(name)) => out.push_str(name),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

/// The rules of one client: its own block (or the anonymous one) and the substituted patterns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientRules {
    own: Vec<Rule>,
    patterns: Vec<Rule>,
}

/// Decides one list: `Some(true)` granted, `Some(false)` denied by a `deny`, `None` no match.
fn decide(rules: &[Rule], topic: &str, access: u8) -> Option<bool> {
    for rule in rules {
        if topic.starts_with('$') && !rule.filter.starts_with('$') {
            continue;
        }
        if filter_matches(&rule.filter, topic) {
            if rule.is_deny() {
                return Some(false);
            }
            if rule.access & access != 0 {
                return Some(true);
            }
        }
    }
    None
}

impl ClientRules {
    /// Rules granting `access` to exactly the filters given (JWT topic claims).
    pub fn granting(filters: &[String], access: u8) -> Self {
        Self {
            own: filters
                .iter()
                .map(|filter| Rule {
                    filter: filter.clone(),
                    access,
                })
                .collect(),
            patterns: Vec::new(),
        }
    }

    /// Whether the client may read (`ACL_READ`) or write (`ACL_WRITE`) a topic name.
    pub fn allows(&self, topic: &str, access: u8) -> bool {
        match decide(&self.own, topic, access) {
            Some(granted) => granted,
            None => decide(&self.patterns, topic, access) == Some(true),
        }
    }

    /// Whether a SUBSCRIBE filter (plain, without `$share/group/`) could deliver anything: some
    /// rule granting read overlaps it, and no `deny` that would decide first covers it whole.
    /// Messages under an accepted filter are still checked one by one on delivery.
    pub fn may_subscribe(&self, filter: &str) -> bool {
        let covered_by_deny = |rules: &[Rule]| {
            rules
                .iter()
                .take_while(|r| r.is_deny())
                .any(|r| covers(&r.filter, filter))
        };
        let grants = |rules: &[Rule]| {
            rules
                .iter()
                .any(|r| r.access & ACL_READ != 0 && intersects(&r.filter, filter))
        };
        if covered_by_deny(&self.own) {
            return false;
        }
        if grants(&self.own) {
            return true;
        }
        !covered_by_deny(&self.patterns) && grants(&self.patterns)
    }
}

/// Whether a `$` topic could be matched by a filter: only if both start with `$` or neither.
fn dollar_compatible(a: &str, b: &str) -> bool {
    let wild = |s: &str| s.starts_with('+') || s.starts_with('#');
    !(a.starts_with('$') && wild(b) || b.starts_with('$') && wild(a))
}

/// Whether some topic name matches both filters.
pub fn intersects(a: &str, b: &str) -> bool {
    if !dollar_compatible(a, b) {
        return false;
    }
    let mut a_levels = a.split('/');
    let mut b_levels = b.split('/');
    loop {
        match (a_levels.next(), b_levels.next()) {
            (Some("#"), _) | (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(x), Some(y)) if x == "+" || y == "+" || x == y => {}
            // One ended: the other must end with `#` here (`a/#` matches `a`).
            (Some(x), None) | (None, Some(x)) => {
                return x == "#";
            }
            _ => return false,
        }
    }
}

/// Whether every topic name matched by `inner` is matched by `outer`.
pub fn covers(outer: &str, inner: &str) -> bool {
    if !dollar_compatible(outer, inner) {
        return false;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (_, Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(x), Some(y)) if x == y && y != "+" => {}
            _ => return false,
        }
    }
}

/// The largest number of topics a session's decision cache holds before it is emptied.
pub const ACL_CACHE_ENTRIES_MAX: usize = 1024;

/// Decisions already taken for one session, by topic name: bit `ACL_READ`/`ACL_WRITE` set when
/// granted, and bit `<< 4` set when that access was decided. Bounded by
/// [`ACL_CACHE_ENTRIES_MAX`]; emptied whole when full (cheap, and the working set of a device
/// is usually a handful of topics). The last topic looked up is kept aside: a subscriber of
/// one busy topic, or a device publishing on one, then costs a string comparison, no hash.
#[derive(Debug, Default)]
pub struct AclCache {
    decisions: HashMap<Box<str>, u8, foldhash::fast::RandomState>,
    last: Option<(Box<str>, u8)>,
}

impl AclCache {
    /// The cached decision, else `decide()` stored.
    pub fn check(&mut self, topic: &str, access: u8, decide: impl FnOnce() -> bool) -> bool {
        let known = access << 4;
        if let Some((last, bits)) = &self.last {
            if **last == *topic && bits & known != 0 {
                return bits & access != 0;
            }
        }
        let bits = match self.decisions.get(topic) {
            Some(&bits) if bits & known != 0 => bits,
            _ => {
                let granted = decide();
                if self.decisions.len() >= ACL_CACHE_ENTRIES_MAX
                    && !self.decisions.contains_key(topic)
                {
                    self.decisions.clear();
                }
                let bits = self.decisions.entry(topic.into()).or_insert(0);
                *bits |= known | if granted { access } else { 0 };
                *bits
            }
        };
        match &mut self.last {
            Some((last, last_bits)) if **last == *topic => *last_bits = bits,
            last => *last = Some((topic.into(), bits)),
        }
        bits & access != 0
    }

    /// Forgets every decision (after a reload).
    pub fn clear(&mut self) {
        self.decisions.clear();
        self.last = None;
    }
}
