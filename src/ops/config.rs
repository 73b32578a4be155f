//! Operations settings: `$SYS`, metrics, logs, pid file. One table of [`crate::broker::Config`]
//! (`[ops]` in the TOML file), so that the broker's own fields stay apart from them.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Longest `sys_interval_secs` accepted: one day.
pub const SYS_INTERVAL_SECS_MAX: u64 = 86_400;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `2026-12-04T20:30:00Z INFO connect client_id=a addr=... shard=0 ...` (default).
    #[default]
    Text,
    /// One JSON object per line, the message's `key=value` pairs as fields.
    Json,
}

/// Where log lines go.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogDestination {
    /// Standard error (default; journald and container runtimes collect it).
    #[default]
    Stderr,
    /// Standard output.
    Stdout,
    /// A file, appended to, reopened on SIGUSR1 (for logrotate).
    File(PathBuf),
}

/// Operations settings. Field docs give the range and the default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct OpsConfig {
    /// Seconds between two publications of the `$SYS` tree, 0..=86,400; 0 turns `$SYS` off.
    /// Default 10 (Mosquitto's `sys_interval`).
    pub sys_interval_secs: u64,
    /// Address of the Prometheus `/metrics` and `/healthz` HTTP listener. Default none (off).
    pub metrics_listen: Option<SocketAddr>,
    /// Log level: `off`, `error`, `warn`, `info`, `debug` or `trace`. Default none: `info`
    /// unless `--log-level` says otherwise.
    pub log_level: Option<String>,
    /// Plain text (default) or JSON lines.
    pub log_format: LogFormat,
    /// Where log lines go. Default standard error.
    pub log_destination: LogDestination,
    /// Whether connects and disconnects are logged at `info` (Mosquitto's
    /// `connection_messages`). Default true; false moves them to `debug`.
    pub connection_messages: bool,
    /// File the broker writes its process id to at start and removes at exit. Default none.
    pub pid_file: Option<PathBuf>,
}

impl Default for OpsConfig {
    fn default() -> OpsConfig {
        OpsConfig {
            sys_interval_secs: 10,
            metrics_listen: None,
            log_level: None,
            log_format: LogFormat::Text,
            log_destination: LogDestination::Stderr,
            connection_messages: true,
            pid_file: None,
        }
    }
}

impl OpsConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), String> {
        if self.sys_interval_secs > SYS_INTERVAL_SECS_MAX {
            return Err(format!(
                "ops.sys_interval_secs must be in 0..={SYS_INTERVAL_SECS_MAX}, got {}",
                self.sys_interval_secs
            ));
        }
        if let Some(level) = &self.log_level {
            level
                .parse::<log::LevelFilter>()
                .map_err(|_| format!("ops.log_level: unknown level {level:?}"))?;
        }
        Ok(())
    }

    /// The log level in force: the file's, else `info`.
    pub fn level(&self) -> log::LevelFilter {
        self.log_level
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or(log::LevelFilter::Info)
    }
}
