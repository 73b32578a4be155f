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

/// Settings a reload cannot change: they keep their running values and the log says they need
/// a restart. Every other field of `Config` applies on reload (`broker::reconfigure`; which of
/// them reach existing connections: `ShardCore::set_config`). A test checks that every field is
/// named here or in [`LIVE_FIELDS`], so that a new field is classified on purpose.
pub const RESTART_FIELDS: &[&str] = &[
    // The shard threads, their channels and their core pinning exist from the start.
    "shards",
    "pin_cores",
    "mesh_channel_capacity",
    // Persistence: the logs' place and mode are fixed while they are open.
    "persistence",
    "persistence_dir",
    "persistence_interval_ms",
    "persistence_max_bytes",
    // Access control: the files' contents reload (`Global::reload_auth`), not which files
    // they are or the policy around them.
    "password_file",
    "scram_users_file",
    "acl_file",
    "allow_anonymous",
    "jwt",
    // Operations services bound or opened at start.
    "ops.metrics_listen",
    "ops.pid_file",
    "ops.log_destination",
];

/// Settings a reload applies (the complement of [`RESTART_FIELDS`] among `Config`'s fields).
pub const LIVE_FIELDS: &[&str] = &[
    "listen",
    "listeners",
    "max_connections",
    "max_packet_size",
    "max_inflight",
    "receive_maximum",
    "max_queued_messages",
    "queue_qos0",
    "max_subscriptions_per_client",
    "max_topic_levels",
    "max_outgoing_bytes",
    "handshake_timeout_ms",
    "max_keep_alive_secs",
    "max_retained_messages",
    "congestion_timeout_ms",
    "qos0_backpressure",
    "max_buffered_bytes",
    "max_sessions",
    "shutdown_timeout_ms",
    "shared_subscription_strategy",
    "topic_alias_maximum",
    "max_qos",
    "retain_available",
    "server_keep_alive_secs",
    "response_information",
    "server_reference",
    "partial_packet_timeout_ms",
    "slow_consumer_timeout_ms",
    "max_queued_bytes",
    "max_inflight_bytes",
    "max_retained_per_subscribe",
    "max_retained_bytes_per_subscribe",
    "ops.sys_interval_secs",
    "ops.log_level",
    "ops.log_format",
    "ops.connection_messages",
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
            live: !RESTART_FIELDS.contains(&name.as_str()),
        });
    }
    changes
}

/// `new` with the settings that need a restart kept as `running` has them: what the broker
/// runs after a reload.
pub fn apply_live(running: &Config, new: &Config) -> Config {
    let mut next = new.clone();
    next.shards = running.shards;
    next.pin_cores = running.pin_cores;
    next.mesh_channel_capacity = running.mesh_channel_capacity;
    next.persistence = running.persistence;
    next.persistence_dir.clone_from(&running.persistence_dir);
    next.persistence_interval_ms = running.persistence_interval_ms;
    next.persistence_max_bytes = running.persistence_max_bytes;
    next.password_file.clone_from(&running.password_file);
    next.scram_users_file.clone_from(&running.scram_users_file);
    next.acl_file.clone_from(&running.acl_file);
    next.allow_anonymous = running.allow_anonymous;
    next.jwt.clone_from(&running.jwt);
    next.ops.metrics_listen = running.ops.metrics_listen;
    next.ops.pid_file.clone_from(&running.ops.pid_file);
    next.ops
        .log_destination
        .clone_from(&running.ops.log_destination);
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
        assert!(changes.iter().all(|c| c.live), "{changes:?}");
        assert!(changes[0].new.contains("1999"), "{:?}", changes[0]);
        assert!(diff(&old, &old).is_empty());
        let applied = apply_live(&old, &new);
        assert_eq!(applied.max_connections, 5);
        assert_eq!(applied.listen, new.listen);
        assert_eq!(applied.ops.sys_interval_secs, 1);
    }

    #[test]
    fn restart_only_settings_are_reported_and_kept() {
        let old = Config::default();
        let mut new = old.clone();
        new.shards = old.shards + 1;
        new.persistence_dir = "/elsewhere".into();
        new.max_qos = 1;
        let changes = diff(&old, &new);
        let live: Vec<_> = changes.iter().map(|c| (c.field.as_str(), c.live)).collect();
        assert_eq!(
            live,
            [
                ("shards", false),
                ("max_qos", true),
                ("persistence_dir", false)
            ]
        );
        let applied = apply_live(&old, &new);
        assert_eq!(applied.shards, old.shards);
        assert_eq!(applied.persistence_dir, old.persistence_dir);
        assert_eq!(applied.max_qos, 1);
        // What `apply_live` keeps is exactly what `diff` calls restart-only.
        let mut everything = Config::from_toml_str(
            "shards = 3\npin_cores = true\nmesh_channel_capacity = 7\npersistence = \"sync\"\n\
             persistence_dir = \"/x\"\npersistence_interval_ms = 9\n\
             persistence_max_bytes = 2097152\npassword_file = \"/p\"\n\
             scram_users_file = \"/s\"\nacl_file = \"/a\"\nallow_anonymous = false\n\
             [ops]\nmetrics_listen = \"127.0.0.1:9\"\npid_file = \"/pid\"\n\
             log_destination = { file = \"/log\" }\n",
        )
        .unwrap();
        everything.jwt = Some(crate::auth::JwtSettings::new(
            crate::auth::JwtAlgorithm::HS256,
            "/k".into(),
        ));
        let kept = apply_live(&old, &everything);
        assert!(diff(&old, &kept).is_empty(), "{:?}", diff(&old, &kept));
        let restart: Vec<_> = diff(&old, &everything)
            .into_iter()
            .map(|c| c.field)
            .collect();
        let mut expected: Vec<_> = RESTART_FIELDS.iter().map(|f| f.to_string()).collect();
        expected.sort();
        let mut restart_sorted = restart.clone();
        restart_sorted.sort();
        assert_eq!(restart_sorted, expected);
    }

    #[test]
    fn every_field_is_classified() {
        let all = fields(&Config::default());
        for (name, _) in &all {
            // A table whose fields are listed one by one (`ops`) is not a setting of its own.
            let prefix = format!("{name}.");
            if all.iter().any(|(n, _)| n.starts_with(&prefix)) {
                continue;
            }
            let top = name.split('.').next().unwrap_or_default();
            let classified = |f: &&str| *f == name.as_str() || *f == top;
            assert!(
                LIVE_FIELDS.iter().any(classified) || RESTART_FIELDS.iter().any(classified),
                "{name} is neither live nor restart-only"
            );
        }
    }
}
