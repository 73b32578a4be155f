//! Disk persistence: retained messages, sessions that outlive their connection, their queued
//! and unacknowledged messages, and incoming QoS 2 ids awaiting PUBREL survive a restart or a
//! `kill -9` (`docs/persistence.md` has the design and the measurements behind it).
//!
//! Each shard owns one append-only log (`shard-N.log` in `persistence_dir`) and writes it from
//! its own thread: records are encoded into a buffer while the loop turn runs and written with
//! one `write` before the turn's socket writes (group commit); in `sync` mode the same step
//! `fdatasync`s, so every acknowledgement and every PUBLISH that goes out in that turn is
//! covered by a durable record. No shard ever waits for another shard's disk: a QoS 1/2
//! publish whose message went to a session on another shard has its PUBACK/PUBREC held (not
//! the loop) until that shard reports the message durable (`StoreShared::durable`).
//!
//! Folder guide: `record.rs` the record layout; `log.rs` appending, scanning with damage
//! skipped, atomic replacement; `recovery.rs` startup; `writer.rs` the per-shard store the
//! broker calls (`ShardStore`).

pub mod log;
pub mod record;
pub mod recovery;
mod writer;

pub use recovery::{Recovered, RecoveredSession, RecoveryReport};
pub use writer::ShardStore;

use parking_lot::Mutex;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// When a shard's log is fsynced (`--persistence`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Every loop turn that wrote records ends with `fdatasync` before its acknowledgements and
    /// PUBLISH packets are sent: a power failure loses nothing that was acknowledged.
    Sync,
    /// Records are written every loop turn (a crash of the process loses nothing: they are in
    /// the kernel's page cache) and fsynced every `persistence_interval_ms`: a power failure
    /// loses at most that window.
    Periodic,
    /// Nothing is written: a restart loses every session and retained message (the default).
    #[default]
    Off,
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Durability, String> {
        match s {
            "sync" => Ok(Durability::Sync),
            "periodic" => Ok(Durability::Periodic),
            "off" => Ok(Durability::Off),
            _ => Err(format!(
                "unknown persistence mode {s:?} (sync, periodic or off)"
            )),
        }
    }
}

macro_rules! store_counters {
    ($( $(#[$doc:meta])* $name:ident ),* $(,)?) => {
        /// Live counters of the stores, summed over shards (relaxed atomics; written on loop
        /// turns that commit, not per message).
        #[derive(Debug, Default)]
        pub struct StoreCounters {
            $( $(#[$doc])* pub $name: AtomicU64, )*
        }

        /// A snapshot of [`StoreCounters`] with the startup report.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct PersistenceStats {
            $( $(#[$doc])* pub $name: u64, )*
            /// What startup recovery read, dropped and restored.
            pub recovery: RecoveryReport,
        }

        impl StoreCounters {
            fn snapshot(&self, recovery: RecoveryReport) -> PersistenceStats {
                PersistenceStats {
                    $( $name: self.$name.load(Ordering::Relaxed), )*
                    recovery,
                }
            }
        }
    };
}

store_counters! {
    /// Records appended to the logs.
    records_written,
    /// Bytes appended to the logs.
    bytes_written,
    /// `fdatasync` calls on the logs.
    fsyncs,
    /// Loop turns that wrote records (group commits).
    commits,
    /// Logs rewritten to their live records.
    compactions,
    /// QoS 1/2 messages for persistent sessions not queued because the shard's part of
    /// `persistence_max_bytes` was used (the documented policy: drop and count).
    dropped_disk_full,
    /// QoS 1/2 messages sent at once to an online persistent session without a record because
    /// the disk limit was reached (they are not resent after a restart).
    unpersisted_disk_full,
    /// PUBACK/PUBREC held until another shard made the message durable (`sync`, cross-shard).
    acks_deferred,
    /// Failed writes, fsyncs and compactions. A failed compaction is logged and the log kept;
    /// a failed write or fsync stops the broker (exit 70), see `writer::stop_broker`.
    io_errors,
}

/// What the shards' stores share. Off the per-message path except the durable counters,
/// which are read and written once per loop turn.
#[derive(Debug)]
pub struct StoreShared {
    shards: usize,
    /// Order of session and retained records over all logs (see `SessionRecord::seq`).
    seq: AtomicU64,
    /// `durable[target * shards + source]`: mesh messages from `source` that `target` has
    /// handled and made durable (in `sync` mode).
    durable: Vec<AtomicU64>,
    /// `waiting[shard]`: the shard holds acknowledgements until peers catch up.
    waiting: Vec<AtomicBool>,
    pub counters: StoreCounters,
    recovery: Mutex<RecoveryReport>,
}

impl StoreShared {
    pub fn new(shards: usize, next_seq: u64, recovery: RecoveryReport) -> StoreShared {
        StoreShared {
            shards,
            seq: AtomicU64::new(next_seq.max(1)),
            durable: (0..shards * shards).map(|_| AtomicU64::new(0)).collect(),
            waiting: (0..shards).map(|_| AtomicBool::new(false)).collect(),
            counters: StoreCounters::default(),
            recovery: Mutex::new(recovery),
        }
    }

    /// The next order number for a session or retained record.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Mesh messages from `source` that `target` made durable.
    pub fn durable(&self, target: usize, source: usize) -> u64 {
        self.durable[target * self.shards + source].load(Ordering::Acquire)
    }

    /// `target` made every message from `source` up to `count` durable; returns whether
    /// `source` waits for that.
    pub fn set_durable(&self, target: usize, source: usize, count: u64) -> bool {
        self.durable[target * self.shards + source].store(count, Ordering::Release);
        self.waiting[source].load(Ordering::Acquire)
    }

    /// Says whether `shard` holds acknowledgements for its peers' durability.
    pub fn set_waiting(&self, shard: usize, waiting: bool) {
        self.waiting[shard].store(waiting, Ordering::Release);
    }

    pub fn stats(&self) -> PersistenceStats {
        self.counters.snapshot(self.recovery.lock().clone())
    }

    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the broker starts with: one store per shard, and what recovery restored.
pub struct Startup {
    /// `None` when persistence is off.
    pub shared: Option<std::sync::Arc<StoreShared>>,
    /// One per shard, with the sessions recovery gave that shard.
    pub shards: Vec<(ShardStore, Vec<RecoveredSession>)>,
    pub retained: Vec<crate::broker::session::MessageRef>,
    pub expired_wills: Vec<crate::codec::Publish>,
}

/// Reads back the logs in `config.persistence_dir` (when persistence is on) and opens each
/// shard's store on a fresh log holding exactly what was recovered for it.
pub fn start(config: &crate::broker::Config) -> std::io::Result<Startup> {
    let shards = config.shards;
    if config.persistence == Durability::Off {
        return Ok(Startup {
            shared: None,
            shards: (0..shards)
                .map(|_| (ShardStore::disabled(), Vec::new()))
                .collect(),
            retained: Vec::new(),
            expired_wills: Vec::new(),
        });
    }
    let dir = &config.persistence_dir;
    std::fs::create_dir_all(dir)?;
    let started = std::time::Instant::now();
    let recovered = recovery::recover(dir, shards, wall_clock_ms(), std::time::Instant::now());
    let report = recovered.report.clone();
    let shared = std::sync::Arc::new(StoreShared::new(shards, recovered.next_seq, report.clone()));
    let Recovered {
        sessions,
        retained,
        expired_wills,
        ..
    } = recovered;
    // Each shard's fresh log is written on its own thread (startup time).
    let opened: Vec<std::io::Result<ShardStore>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sessions
            .iter()
            .zip(&retained)
            .enumerate()
            .map(|(shard, (sessions, retained))| {
                let shared = shared.clone();
                scope.spawn(move || ShardStore::open(shard, config, shared, sessions, retained))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("store thread panicked")))
            })
            .collect()
    });
    let stores = opened.into_iter().collect::<std::io::Result<Vec<_>>>()?;
    // Logs of shards beyond the current count were merged into the others: remove them.
    for index in shards..SHARDS_SCAN_MAX {
        let path = recovery::log_path(dir, index);
        if path.exists() {
            std::fs::remove_file(&path)?;
        }
    }
    ShardStore::write_manifest(config)?;
    ::log::info!(
        "persistence: {:?} in {}: restored {} sessions, {} messages, {} retained from {} bytes \
         in {} ms (dropped: {} records, {} bytes, {} damaged regions, {} torn tails, {} missing \
         files; expired: {} sessions, {} messages); ready after {} ms",
        config.persistence,
        dir.display(),
        report.sessions,
        report.messages,
        report.retained,
        report.bytes_read,
        report.duration_ms,
        report.records_dropped,
        report.bytes_dropped,
        report.damaged_regions,
        report.torn_tails,
        report.files_missing,
        report.sessions_expired,
        report.messages_expired,
        started.elapsed().as_millis()
    );
    Ok(Startup {
        shared: Some(shared),
        shards: stores.into_iter().zip(sessions).collect(),
        retained: retained.into_iter().flatten().map(|(_, m)| m).collect(),
        expired_wills,
    })
}

/// Log files above the shard count that startup looks for (left by a run with more shards).
const SHARDS_SCAN_MAX: usize = crate::broker::config::SHARDS_MAX;
