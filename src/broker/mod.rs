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
mod access;
mod authn;
mod client_ids;
pub mod config;
mod congestion;
pub mod connection;
mod dispatch;
mod fanout;
mod lifecycle;
pub mod mesh;
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
    /// Access control (issue 13): password file, JWT, ACL, reloadable (`BrokerHandle::reload_auth`).
    pub access: Arc<crate::auth::AccessControl>,
}

/// Loads the access-control files the config names (issue 13, `crate::auth`), and the
/// enhanced-authentication methods (SCRAM reads its keys through the reloadable state).
fn load_auth(
    config: &Config,
) -> io::Result<(crate::auth::Authenticators, Arc<crate::auth::AccessControl>)> {
    let policy = crate::auth::AuthPolicy::from(config);
    for address in &config.listen {
        if let Some(warning) = policy.open_listener_warning(address) {
            log::warn!("{warning}");
        }
    }
    let access = crate::auth::AccessControl::load(policy)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let access = Arc::new(access);
    let mut authenticators = crate::auth::Authenticators::new();
    if config.scram_users_file.is_some() {
        authenticators.add(Box::new(crate::auth::ReloadableScram(access.clone())));
    }
    Ok((authenticators, access))
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
        let (authenticators, access) = load_auth(&config)?;
        let shards = config.shards;
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
            access,
            config,
        });

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
        for (id, ((poll, shard_senders), shard_receivers)) in
            polls.into_iter().zip(senders).zip(receivers).enumerate()
        {
            let mesh = mesh::Mesh::new(id, shard_senders, shard_receivers, signals.clone());
            let shard = shard::Shard::new(id, shared.clone(), poll, mesh);
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core) {
                            log::warn!("shard {id}: could not pin to core {}", core.id);
                        }
                    }
                    shard.run();
                })?;
            threads.push(thread);
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

    /// Re-reads the password, SCRAM and ACL files (SIGHUP). A file that fails keeps its previous
    /// version; the errors (also logged) are returned. Connected clients follow the new ACL from
    /// their next publish or delivery.
    pub fn reload_auth(&self) -> Vec<String> {
        self.shared.access.reload()
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
