//! Operating the broker: configuration files (our TOML or Mosquitto's), `$SYS` topics,
//! Prometheus metrics and health checks, logs, reload on SIGHUP, systemd notification.
//!
//! Nothing here is on the per-message path: it reads the shards' counters
//! ([`crate::broker::BrokerHandle::stats`]) and talks to the broker through its handle.
//!
//! Folder guide: `config.rs` the `[ops]` settings; `mosquitto/` Mosquitto configuration files;
//! `load.rs` reading a configuration file of either kind.

pub mod config;
pub mod daemon;
pub mod health;
pub mod http;
pub mod live;
pub mod load;
pub mod logging;
pub mod metrics;
pub mod mosquitto;
pub mod observer;
pub mod reload;
pub mod sys;

pub use config::OpsConfig;
