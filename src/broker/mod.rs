//! The thread-per-core broker.
//!
//! ```text
//!               ┌────────────┐  accepted sockets, connection k -> shard k % N
//!  TCP ───────▶ │ acceptor(s)│ ──────────────┬───────────────┬──────────────┐
//!               └────────────┘  control chan ▼               ▼              ▼
//!                                      ┌──────────┐    ┌──────────┐   ┌──────────┐
//!    clients ◀──── mio Poll ─────────▶ │ shard 0  │◀──▶│ shard 1  │◀─▶│ shard N-1│
//!                                      │ conns,   │    │          │   │          │
//!                                      │ sessions,│    │          │   │          │
//!                                      │ trie,    │    │          │   │          │
//!                                      │ routes,  │    │          │   │          │
//!                                      │ timers   │    │          │   │          │
//!                                      └──────────┘    └──────────┘   └──────────┘
//!          one bounded crossbeam channel per (source, target) shard pair; one mio Waker per
//!          shard, woken only when it may be asleep, at most once per loop turn
//! ```
//!
//! - Each shard thread owns a mio `Poll`, a slab of connections, a slab of sessions, its part of
//!   the subscription trie (its own clients' subscriptions), a replica of the routing table
//!   (which other shards want which filters) and a timer heap. Other threads reach it only
//!   through its channels ([`mesh`]).
//! - A PUBLISH read on shard A is decoded once into `Bytes` slices, delivered to A's matching
//!   sessions, and sent as ONE `Arc`'d message to each other shard the routing replica names.
//!   Each shard encodes each wire layout (version, QoS, retain) once and its subscribers share it.
//! - Shared state touched off the per-message path only: the client-id registry
//!   ([`registry`], connect/disconnect) and the retained store ([`retained`], retained
//!   publishes and subscribe).
//!
//! Folder guide: `config.rs` limits; `acceptor.rs` listeners; `shard.rs` the event loop and
//! socket IO; `dispatch.rs` packet handling; `congestion.rs` QoS 1/2 backpressure on publishers; `authn.rs` passwords and
//! enhanced authentication (AUTH); `lifecycle.rs` connect, takeover, close, session
//! end; `fanout.rs` publish delivery; `mesh.rs` channels and wakers; `router.rs` the routing
//! replica and SUBACK barrier; `shared.rs` shared subscriptions; `session.rs` sans-IO session state; `protocol.rs` CONNECT
//! validation and PUBLISH layouts; `connection.rs` buffers; `timers.rs`; `stats.rs`.

mod acceptor;
mod authn;
mod client_ids;
pub mod config;
mod congestion;
pub mod connection;
mod dispatch;
mod fanout;
mod lifecycle;
pub mod mesh;
mod persist;
pub mod protocol;
pub mod registry;
pub mod retained;
pub mod router;
pub mod session;
mod shard;
pub mod shared;
pub mod stats;
pub mod timers;

pub use config::Config;
pub use stats::Stats;

use mesh::{ShardMsg, ShardSignal};
use mio::{Poll, Waker};
use registry::Registry;
use retained::Retained;
use stats::ShardCounters;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The mio token of each shard's and acceptor's waker.
pub(crate) const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);
/// Capacity of each acceptor-to-shard control channel.
const CONTROL_CHANNEL_CAPACITY: usize = 1024;

/// State shared by every thread. Nothing here is touched per message.
pub(crate) struct Shared {
    pub config: Config,
    pub registry: Registry,
    pub retained: Retained,
    /// One per shard, index = shard id.
    pub counters: Vec<ShardCounters>,
    pub acceptor_counters: ShardCounters,
    /// `congested[shard]`: the shard has congested sessions (QoS 1/2 backpressure). Written by
    /// that shard on the rare transitions, read by publishers' shards.
    pub congested: Vec<stats::CongestionFlag>,
    pub shutdown: AtomicBool,
    /// Open connections over all shards, for `max_connections`.
    pub connections_open: AtomicUsize,
    /// Sessions over all shards, for `max_sessions`.
    pub sessions_open: AtomicUsize,
    /// Source of assigned client identifiers.
    pub assigned_ids: AtomicU64,
    /// Makes assigned ids differ between broker runs.
    pub instance: u64,
    /// Enhanced-authentication methods offered (MQTT 5 AUTH).
    pub authenticators: crate::auth::Authenticators,
    /// Username/password check for plain CONNECTs, when configured.
    pub passwords: Option<crate::auth::PasswordAuthenticator>,
    /// What the shards' persistence stores share (src/store); `None` when persistence is off.
    pub store: Option<Arc<crate::store::StoreShared>>,
}

/// Loads the authenticators the config names.
fn load_auth(
    config: &Config,
) -> io::Result<(
    crate::auth::Authenticators,
    Option<crate::auth::PasswordAuthenticator>,
)> {
    use crate::auth::{
        PasswordAuthenticator, ScramSha256Authenticator, ScramUserStore, SCRAM_ITERATIONS_DEFAULT,
    };
    let invalid = |what: &std::path::Path, e: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: {e}", what.display()),
        )
    };
    let passwords = match &config.password_file {
        Some(path) => Some(PasswordAuthenticator::from_file(path).map_err(|e| invalid(path, &e))?),
        None => None,
    };
    let mut authenticators = crate::auth::Authenticators::new();
    if let Some(path) = &config.scram_users_file {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(path, &e))?;
        let entries = crate::auth::parse_password_file(&text).map_err(|e| invalid(path, &e))?;
        let users = ScramUserStore::from_entries(&entries, SCRAM_ITERATIONS_DEFAULT)
            .map_err(|e| invalid(path, &e))?;
        let scram = ScramSha256Authenticator::new(users).map_err(|e| invalid(path, &e))?;
        authenticators.add(Box::new(scram));
    }
    Ok((authenticators, passwords))
}

/// Starts brokers.
pub struct Broker;

impl Broker {
    /// Binds every listen address, starts the shard and acceptor threads and returns a handle.
    /// Fails (nothing left running) if the config is invalid or an address cannot be bound.
    pub fn start(config: Config) -> io::Result<BrokerHandle> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listeners = config
            .listen
            .iter()
            .map(|addr| acceptor::bind(*addr))
            .collect::<io::Result<Vec<_>>>()?;
        let local_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let (authenticators, passwords) = load_auth(&config)?;
        let shards = config.shards;
        // Persistence (src/store): the logs are read back before any shard runs.
        let startup = crate::store::start(&config)?;
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let shared = Arc::new(Shared {
            retained: Retained::new(config.max_retained_messages),
            registry: Registry::default(),
            counters: (0..shards).map(|_| ShardCounters::default()).collect(),
            acceptor_counters: ShardCounters::default(),
            congested: (0..shards).map(|_| Default::default()).collect(),
            shutdown: AtomicBool::new(false),
            connections_open: AtomicUsize::new(0),
            sessions_open: AtomicUsize::new(0),
            assigned_ids: AtomicU64::new(0),
            instance,
            authenticators,
            passwords,
            store: startup.shared.clone(),
            config,
        });
        for message in &startup.retained {
            shared.retained.store(message);
        }

        let mut polls = Vec::with_capacity(shards);
        let mut signals = Vec::with_capacity(shards);
        for _ in 0..shards {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
            signals.push(Arc::new(ShardSignal {
                waker,
                sleeping: AtomicBool::new(false),
            }));
            polls.push(poll);
        }
        let signals: Arc<[Arc<ShardSignal>]> = signals.into();

        // senders[s][t] and receivers[t][s]: the channel from shard s to shard t.
        let mut senders: Vec<Vec<_>> = (0..shards).map(|_| Vec::with_capacity(shards)).collect();
        let mut receivers: Vec<Vec<_>> = (0..shards)
            .map(|_| Vec::with_capacity(shards + 1))
            .collect();
        for target_receivers in receivers.iter_mut() {
            for source_senders in senders.iter_mut() {
                let (tx, rx) =
                    crossbeam_channel::bounded::<ShardMsg>(shared.config.mesh_channel_capacity);
                source_senders.push(tx);
                target_receivers.push(rx);
            }
        }
        let mut control_senders = Vec::with_capacity(shards);
        for target_receivers in receivers.iter_mut() {
            let (tx, rx) = crossbeam_channel::bounded::<ShardMsg>(CONTROL_CHANNEL_CAPACITY);
            control_senders.push(tx);
            target_receivers.push(rx);
        }

        let mut threads = Vec::new();
        let cores = if shared.config.pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        // Persistence: each shard restores its sessions on its own thread; the acceptors start
        // once all have (a CONNECT must find its restored session).
        let (restored_tx, restored_rx) = crossbeam_channel::bounded::<()>(shards);
        let mut expired_wills = Some(startup.expired_wills);
        for (id, (((poll, shard_senders), shard_receivers), (store, sessions))) in polls
            .into_iter()
            .zip(senders)
            .zip(receivers)
            .zip(startup.shards)
            .enumerate()
        {
            let mesh = mesh::Mesh::new(id, shard_senders, shard_receivers, signals.clone());
            let mut shard = shard::Shard::new(id, shared.clone(), poll, mesh);
            let wills = expired_wills.take().unwrap_or_default();
            let restored_tx = restored_tx.clone();
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            log::warn!("shard {id}: could not pin to core {}", core.id);
                        }
                    }
                    shard.restore(store, sessions, wills);
                    let _ = restored_tx.send(());
                    shard.run();
                })?;
            threads.push(thread);
        }

        for _ in 0..shards {
            if restored_rx.recv().is_err() {
                break;
            }
        }
        let next_connection = Arc::new(AtomicUsize::new(0));
        let mut acceptor_wakers = Vec::new();
        for (listener, addr) in listeners.into_iter().zip(&local_addrs) {
            let acceptor = acceptor::Acceptor::new(
                listener,
                shared.clone(),
                control_senders.clone(),
                signals.clone(),
                next_connection.clone(),
            )?;
            acceptor_wakers.push(acceptor.waker());
            let thread = std::thread::Builder::new()
                .name(format!("acceptor-{addr}"))
                .spawn(move || acceptor.run())?;
            threads.push(thread);
        }
        log::info!("shardmq listening on {local_addrs:?} with {shards} shards");
        Ok(BrokerHandle {
            shared,
            local_addrs,
            threads,
            signals,
            acceptor_wakers,
        })
    }
}

/// A running broker. Dropping it shuts the broker down and waits for its threads.
pub struct BrokerHandle {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    signals: Arc<[Arc<ShardSignal>]>,
    acceptor_wakers: Vec<Arc<Waker>>,
}

impl BrokerHandle {
    /// The bound addresses, in `Config::listen` order (with the real port for port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Starts a graceful shutdown: acceptors stop, shards send MQTT 5 clients DISCONNECT 0x8B,
    /// flush for at most `shutdown_timeout_ms` and exit. Returns at once; `join` waits.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for signal in self.signals.iter() {
            signal.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = signal.waker.wake() {
                log::error!("cannot wake a shard for shutdown: {e}");
            }
        }
        for waker in &self.acceptor_wakers {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake an acceptor for shutdown: {e}");
            }
        }
    }

    /// Waits until every broker thread has exited (after `shutdown`).
    pub fn join(mut self) {
        self.join_threads();
    }

    fn join_threads(&mut self) {
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a broker thread panicked");
            }
        }
    }

    /// A snapshot of the counters summed over shards, with per-shard connection counts.
    pub fn stats(&self) -> Stats {
        Stats::collect(&self.shared.counters, &self.shared.acceptor_counters)
    }

    /// Persistence counters and the startup recovery report; `None` when persistence is off.
    pub fn persistence_stats(&self) -> Option<crate::store::PersistenceStats> {
        self.shared.store.as_ref().map(|s| s.stats())
    }

    /// The number of retained messages held.
    pub fn retained_messages(&self) -> usize {
        self.shared.retained.len()
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
            self.join_threads();
        }
    }
}
