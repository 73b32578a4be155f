//! Reload on SIGHUP: what changed between the running configuration and a new one, and which
//! of those changes apply without a restart.
//!
//! The comparison walks the two configurations' `{:#?}` renderings field by field, so a field
//! added to `Config` later is compared (and, until someone makes it live, reported as needing a
//! restart) without touching this file.

use crate::broker::Config;

/// One setting that differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// `max_connections`, or `ops.log_level` for a field of a table.
    pub field: String,
    pub old: String,
    pub new: String,
    /// Whether a running broker takes it without a restart.
    pub live: bool,
}

/// Settings applied by a reload without dropping clients. Everything else is logged as
/// needing a restart and left as it runs.
pub const LIVE_FIELDS: &[&str] = &[
    "max_connections",
    "max_sessions",
    "ops.log_level",
    "ops.log_format",
    "ops.connection_messages",
    "ops.sys_interval_secs",
];

/// The fields of a `{:#?}` rendering: (dotted name, value text), one level of nesting.
fn fields(config: &Config) -> Vec<(String, String)> {
    let text = format!("{config:#?}");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut table: Option<String> = None;
    for line in text.lines().skip(1) {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        let named = trimmed
            .split_once(": ")
            .filter(|(k, _)| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        match (indent, named) {
            (4, Some((key, value))) => {
                table = value.ends_with('{').then(|| key.to_string());
                out.push((key.to_string(), value.to_string()));
            }
            (8, Some((key, value))) if table.is_some() => {
                let prefix = table.as_deref().unwrap_or_default();
                out.push((format!("{prefix}.{key}"), value.to_string()));
            }
            _ => {
                if let Some((_, value)) = out.last_mut() {
                    value.push_str(trimmed);
                }
            }
        }
    }
    // Multi-line values were joined line by line: drop the trailing commas inside them.
    for (_, value) in &mut out {
        *value = value
            .trim_end_matches(',')
            .replace(",)", ")")
            .replace(",]", "]")
            .replace(",}", "}");
    }
    out
}

/// What differs between `old` and `new`, in field order.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let old_fields = fields(old);
    let new_fields = fields(new);
    let mut changes = Vec::new();
    for (name, new_value) in &new_fields {
        let old_value = old_fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        if old_value == Some(new_value.as_str()) {
            continue;
        }
        // A table whose fields are compared one by one is not a change of its own.
        let prefix = format!("{name}.");
        if new_value.contains('{') && new_fields.iter().any(|(n, _)| n.starts_with(&prefix)) {
            continue;
        }
        changes.push(Change {
            field: name.clone(),
            old: old_value
                .unwrap_or("(none)")
                .trim_end_matches(',')
                .to_string(),
            new: new_value.trim_end_matches(',').to_string(),
            live: LIVE_FIELDS.contains(&name.as_str()),
        });
    }
    changes
}

/// `running` with the live changes of `new` applied: what the broker runs after a reload.
pub fn apply_live(running: &Config, new: &Config) -> Config {
    let mut next = running.clone();
    next.max_connections = new.max_connections;
    next.max_sessions = new.max_sessions;
    next.ops.log_level.clone_from(&new.ops.log_level);
    next.ops.log_format = new.ops.log_format;
    next.ops.connection_messages = new.ops.connection_messages;
    next.ops.sys_interval_secs = new.ops.sys_interval_secs;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_each_changed_field_and_whether_it_is_live() {
        let old = Config::default();
        let mut new = old.clone();
        new.max_connections = 5;
        new.ops.log_level = Some("debug".into());
        new.ops.sys_interval_secs = 1;
        new.listen = vec!["127.0.0.1:1999".parse().unwrap()];
        let changes = diff(&old, &new);
        let names: Vec<_> = changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            names,
            [
                "listen",
                "max_connections",
                "ops.sys_interval_secs",
                "ops.log_level"
            ]
        );
        assert_eq!(changes[1].old, "100000");
        assert_eq!(changes[1].new, "5");
        assert!(changes[1].live);
        assert!(changes[2].live && changes[3].live);
        assert!(changes[0].new.contains("1999"), "{:?}", changes[0]);
        assert!(diff(&old, &old).is_empty());
        let applied = apply_live(&old, &new);
        assert_eq!(applied.max_connections, 5);
        assert_eq!(applied.listen, old.listen);
        assert_eq!(applied.ops.sys_interval_secs, 1);
    }
}
