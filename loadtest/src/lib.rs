//! shardmq-loadtest: a load generator for MQTT brokers on this machine, and the raw relay that
//! measures its ceiling.
//!
//! Folder guide:
//! - `cli.rs`: command-line options; the loopback-only address check.
//! - `scenario.rs`: `conn`, `fanin`, `fanout`, `p2p`, `sharedsub`, `manytopics` as lists of
//!   connections.
//! - `engine.rs`: worker threads (mio poll + slab of connections), pacing, measurement.
//! - `session.rs`: the sans-IO session trait the engine drives, and the raw session.
//! - `client_session.rs`: the trait for `shardmq::client::ClientSession` (`--engine client`).
//! - `payload.rs`: the stamped payload (publisher id, sequence, send time).
//! - `stats.rs`: sequence tracking (loss, duplicates, reordering) and histograms.
//! - `bench.rs`: repeats, targets in alternation, capacity search, medians, ratios.
//! - `report.rs`: the summary table and the JSON document.
//! - `soak.rs`: the bounded soak: well-behaved pairs next to hostile clients, RSS over time.
//! - `table.rs`: markdown tables from JSON reports (for compare.sh and BENCHMARKS.md).
//! - `relay.rs` and `wire.rs`: the raw relay and the few wire forms it understands.
//! - `tls.rs`: the `--tls-ca` option (rustls clients in the workers' poll loops).
#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod client_session;
pub mod engine;
pub mod payload;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod session;
pub mod soak;
pub mod stats;
pub mod table;
pub mod tls;
pub mod wire;
