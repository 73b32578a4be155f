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
//! Each shard is two layers, and the folder tree shows which is which:
//!
//! ```text
//!  socket ─▶ runtime/ (mio loop, read/write until WouldBlock, wakers, acceptors)
//!               │ handle_bytes, handle_mesh, handle_timeout (+ now)   ▲ flush_writes, poll_close,
//!               ▼                                                     │ drain_wakes, poll_timeout
//!            core/ ShardCore (no sockets, no clock, no threads): one component per folder,
//!               │  each a struct with private fields and a small API (its `mod.rs`)
//!               ├─ connection/: protocol state per client, the outgoing buffer and its byte
//!               │  accounting (`OutBuf`, outgoing.rs), packets after CONNECT (dispatch.rs)
//!               ├─ sessions/: `Sessions` (slab + client id index, takeovers), one session's
//!               │  state (session.rs), CONNECT/detach/takeover logic (lifecycle.rs)
//!               ├─ delivery/: `Delivery` (trie, match cache, routing replica, shared groups,
//!               │  layouts), fan-out logic (fanout.rs, shared_subscriptions.rs)
//!               ├─ backpressure/: `Backpressure` (paused publishers, congested count),
//!               │  `MemoryBudget` (memory.rs), the shard's glue (congestion.rs, overload.rs)
//!               └─ mesh out: messages to other shards (mesh.rs; the runtime receives and wakes)
//! ```
//!
//! - [`core`]: everything a shard decides. Its inputs and outputs are in `core/io.rs`
//!   (quinn-proto's `handle_*` / `poll_*`, with the time passed in); the same core runs under
//!   the mio runtime and under the deterministic simulation ([`crate::sim`]).
//! - [`runtime`]: the thin I/O layer: `runtime/shard_loop.rs` (one thread per shard: poll,
//!   sockets kept by `ConnKey`, reads into the core, the core's buffers written out),
//!   `runtime/inbox.rs` (mesh receivers, sleeping flag, wakers), `runtime/acceptor.rs`
//!   (listeners, `max_connections`), `runtime/stream.rs` (the socket type, named once, so that
//!   TLS and WebSocket streams plug in there).
//! - Broker-wide state ([`Global`], touched off the per-message path only): `config.rs`
//!   limits, `registry.rs` client ids across shards, `retained.rs` the retained store,
//!   `stats.rs` counters.
//! - Reload (`reconfigure.rs`, issue 15): `BrokerHandle::reconfigure` applies a new
//!   configuration all or nothing: listeners started, switched or stopped, the live limits, and
//!   a new configuration snapshot that each shard takes between two turns.
//! - Fault isolation (`fault.rs`): a panic while decoding one connection's packet closes only
//!   that connection (counted, logged with the input); any other panic in a shard or acceptor
//!   thread, or one of them stopping, stops the whole broker and is reported by
//!   [`BrokerHandle::failure`] (the binary exits with status 70).
//!
//! A PUBLISH read on shard A is decoded once into `Bytes` slices, delivered to A's matching
//! sessions, and sent as ONE `Arc`'d message to each other shard the routing replica names.
//! Each shard encodes each wire layout (version, QoS, retain) once and its subscribers share it.
//! The functions it passes, from socket read to subscriber write (a QoS 0 PUBLISH, publisher
//! on shard A, subscriber on shard B; QoS 1 adds the PUBACK of step 6), in order:
//!
//! 1. `ShardLoop::read_socket` (`runtime/shard_loop.rs`, A): `read` into the loop's scratch
//!    buffer, then `ShardCore::handle_bytes` (`core/io.rs`): appended to the read buffer;
//! 2. `ShardCore::process_input` (`core/shard.rs`): `pause_if_outgoing_full`
//!    (`core/backpressure/overload.rs`), `codec::split_frame`, then `codec::decode_frame`
//!    inside `fault::contain` (`broker/fault.rs`): one frame; `partial_packet_done`
//!    (`overload.rs`);
//! 3. `ShardCore::handle_packet`, `ShardCore::handle_publish` (`core/connection/dispatch.rs`):
//!    checks, `fidelity::is_reserved_publish_topic` (`connection/fidelity.rs`), `may_publish`
//!    (`connection/access.rs`);
//! 4. `Delivery::new_message` (`core/delivery/mod.rs`): the publish wrapped once, in a reused
//!    allocation; `store_route_start` (`core/sessions/persist.rs`);
//! 5. `ShardCore::route_publish` (`core/delivery/fanout.rs`): `Backpressure::start_publish`
//!    (`core/backpressure/mod.rs`), local delivery (as in 9-11, on A), then
//!    `Router::destinations_bytes` (`delivery/router.rs`) and `Mesh::publish` (`core/mesh.rs`)
//!    once per destination shard: into the turn's batch for that shard; and `route_shared`
//!    (`delivery/shared_subscriptions.rs`);
//! 6. back in `handle_publish`: `Delivery::recycle_message`; QoS 1: `send_publish_ack`
//!    (`persist.rs`), `ShardCore::send_packet` (`core/shard.rs`), `OutBuf::push_packet`
//!    (`connection/outgoing.rs`); then `Backpressure::take_blocker`;
//! 7. end of A's turn: `ShardCore::drain_wakes` (`core/io.rs`), `Mesh::drain_wakes`: one
//!    channel item per destination shard carrying the turn's publishes for it
//!    (`ShardMsg::Publishes`), then `Inbox::wake` (`runtime/inbox.rs`);
//! 8. B's turn: `Inbox::drain_into` (`runtime/inbox.rs`), `ShardCore::handle_mesh`
//!    (`core/io.rs`), steps 9-11 for each publish of the batch, then `Mesh::recycle` hands the
//!    emptied vector back to A;
//! 9. `ShardCore::deliver_local` (`core/delivery/fanout.rs`): `Delivery::take_matches`
//!    (`delivery/mod.rs`): `MatchCache::for_each_match` over the trie (`topic/cache.rs`,
//!    `topic/trie.rs`), grouped by session;
//! 10. `ShardCore::deliver_to_session` (`fanout.rs`): `access::may_read`, the session's
//!     decision (`Session::deliver_paced`, `core/sessions/session.rs`), `note_recipient`
//!     (`core/backpressure/congestion.rs`);
//! 11. `ShardCore::write_publish` (`fanout.rs`): `Delivery::cached_layout` (`delivery/mod.rs`)
//!     and `LayoutCache::get` (`connection/protocol.rs`) encode the layout once per
//!     (version, QoS, retain); `OutBuf::push_publish` (`connection/outgoing.rs`) queues it and
//!     counts it (`MemoryBudget::hold`, `backpressure/memory.rs`); `mark_dirty`
//!     (`core/shard.rs`); `check_pressure_start` (`congestion.rs`);
//! 12. `ShardCore::flush_writes` (`core/io.rs`, from B's `ShardLoop::turn`): `OutBuf::write_to`
//!     (`outgoing.rs`): one vectored write per connection per turn, the written bytes leaving
//!     the budget (`MemoryBudget::release`); `resume_if_written_down`, `written_progress`
//!     (`overload.rs`).
//!
//! While a session moves between shards (`core/sessions/handover.rs`, finding F1), steps 5 and
//! 8 on the shard it left also forward matching messages to its new shard, and step 9 on the new
//! shard may hold one back until the old shard's forwards are through; with no handover in
//! progress each of these costs one `is_empty` check.

pub mod config;
pub mod core;
pub mod fault;
pub(crate) mod log_escape;
mod reconfigure;
pub mod registry;
pub mod retained;
pub mod runtime;
pub mod stats;

// The core's modules under their former paths (`broker::session`, ...), for the library's users.
pub use self::core::connection::{self, protocol};
pub use self::core::delivery::{router, shared_subscriptions};
pub use self::core::sessions::session;
pub use self::core::{mesh, timers};

pub use config::Config;
pub use fault::BrokerFailure;
pub use stats::Stats;

use self::core::mesh::ShardMsg;
use mio::{Poll, Waker};
use registry::Registry;
use retained::Retained;
use runtime::inbox::{Inbox, ShardSignal};
use runtime::stream::Accepted;
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

/// Broker-wide state every shard and acceptor reads (the one meaning of "global" in the
/// broker). Nothing here is touched per message.
pub struct Global {
    /// The configuration in force (issue 15: a reload replaces it; `config_generation` counts
    /// the replacements, and each shard takes the new one at the start of its next turn).
    config: parking_lot::RwLock<Arc<Config>>,
    pub(crate) config_generation: AtomicU64,
    pub(crate) registry: Registry,
    pub(crate) retained: Retained,
    /// One per shard, index = shard id.
    pub(crate) counters: Vec<ShardCounters>,
    pub(crate) acceptor_counters: ShardCounters,
    /// `congested[shard]`: the shard has congested sessions (QoS 1/2 backpressure). Written by
    /// that shard on the rare transitions, read by publishers' shards.
    pub(crate) congested: Vec<stats::CongestionFlag>,
    pub(crate) shutdown: AtomicBool,
    /// Open connections over all shards, for `max_connections`.
    pub(crate) connections_open: AtomicUsize,
    /// Sessions over all shards, for `max_sessions`.
    pub(crate) sessions_open: AtomicUsize,
    /// Source of assigned client identifiers.
    pub(crate) assigned_ids: AtomicU64,
    /// Makes assigned ids differ between broker runs.
    pub(crate) instance: u64,
    /// Enhanced-authentication methods offered (MQTT 5 AUTH).
    pub(crate) authenticators: crate::auth::Authenticators,
    /// Access control (issue 13): password file, JWT, ACL, reloadable (`reload_auth`).
    pub(crate) access: Arc<crate::auth::AccessControl>,
    /// Listeners (src/transport): per-listener settings, TLS acceptors and connection counts,
    /// by the listener id each connection carries (`Config::effective_listeners` order).
    pub(crate) listeners: crate::transport::Listeners,
    /// What the shards' persistence stores share (src/store); set by `Broker::start` when
    /// persistence is on.
    pub(crate) store: std::sync::OnceLock<Arc<crate::store::StoreShared>>,
    /// Fault isolation (`fault.rs`): the first broker thread that failed, and why.
    pub(crate) failure: parking_lot::Mutex<Option<fault::BrokerFailure>>,
    /// What wakes every shard and acceptor to stop; set once they exist.
    pub(crate) stopper: std::sync::OnceLock<Stopper>,
    /// Operations: the limits a reload changes while running (`max_connections`, ...).
    pub(crate) live: crate::ops::live::LiveLimits,
}

/// The wakers of every shard and acceptor, to make them see the shutdown flag.
pub(crate) struct Stopper {
    signals: Arc<[Arc<ShardSignal>]>,
    /// A reload adds the wakers of the acceptors it starts (issue 15).
    acceptor_wakers: parking_lot::Mutex<Vec<Arc<Waker>>>,
}

impl Global {
    /// The broker-wide state for `config` (already validated): authentication files loaded,
    /// counters zeroed. `instance` makes assigned client ids differ between runs.
    pub fn new(config: Config, instance: u64) -> io::Result<Arc<Global>> {
        let (authenticators, access) = load_auth(&config)?;
        // Listener hook (src/transport): certificates load before anything is bound, so a bad
        // file fails the start with nothing left running.
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let listeners = crate::transport::Listeners::new(Vec::new()).map_err(invalid)?;
        for listener in config.effective_listeners() {
            listeners
                .add(open_listener(&config, listener)?)
                .map_err(invalid)?;
        }
        let shards = config.shards;
        Ok(Arc::new(Global {
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
            listeners,
            store: std::sync::OnceLock::new(),
            failure: parking_lot::Mutex::new(None),
            stopper: std::sync::OnceLock::new(),
            live: crate::ops::live::LiveLimits::new(&config),
            config: parking_lot::RwLock::new(Arc::new(config)),
            config_generation: AtomicU64::new(0),
        }))
    }

    /// Stops the broker: acceptors stop, shards send MQTT 5 clients DISCONNECT 0x8B, flush for
    /// at most `shutdown_timeout_ms` and exit. Returns at once.
    pub(crate) fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let Some(stopper) = self.stopper.get() else {
            // Threads still starting see the flag on their first turn.
            return;
        };
        for signal in stopper.signals.iter() {
            signal.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = signal.waker.wake() {
                log::error!("cannot wake a shard for shutdown: {e}");
            }
        }
        for waker in stopper.acceptor_wakers.lock().iter() {
            if let Err(e) = waker.wake() {
                log::error!("cannot wake an acceptor for shutdown: {e}");
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// A reload (issue 15): `config` is in force from now on; each shard takes it at the start
    /// of its next turn (the caller wakes them).
    pub(crate) fn set_config(&self, config: Config) {
        *self.config.write() = Arc::new(config);
        self.config_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// A snapshot of the counters summed over shards.
    pub fn stats(&self) -> Stats {
        Stats::collect(&self.counters, &self.acceptor_counters)
    }

    /// Re-reads the password, SCRAM and ACL files (SIGHUP). A file that fails keeps its
    /// previous version; the errors (also logged) are returned. Connected clients follow the new
    /// ACL from their next publish or delivery.
    pub fn reload_auth(&self) -> Vec<String> {
        let mut errors = self.access.reload();
        let own_policies = self.listeners.iter().filter_map(|l| l.access.as_ref());
        for own in own_policies {
            errors.extend(own.reload());
        }
        errors
    }

    /// The number of retained messages held.
    pub fn retained_messages(&self) -> usize {
        self.retained.len()
    }

    /// Counts a new connection against `max_connections`; false (nothing counted) when the
    /// broker is full. The connection is uncounted when the core closes it.
    pub fn admit_connection(&self) -> bool {
        let max = self.live.max_connections();
        if self.connections_open.fetch_add(1, Ordering::SeqCst) >= max {
            self.connections_open.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}

/// The enhanced-authentication methods and the broker-wide access control.
type LoadedAccess = (crate::auth::Authenticators, Arc<crate::auth::AccessControl>);

/// Loads the access-control files the config names (issue 13, `crate::auth`): the broker-wide
/// policy and the enhanced-authentication methods (SCRAM reads its keys through the reloadable
/// state). Each listener's own policy loads with the listener (`open_listener`).
fn load_auth(config: &Config) -> io::Result<LoadedAccess> {
    use crate::auth::{AccessControl, AuthPolicy};
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let access = Arc::new(AccessControl::load(AuthPolicy::from(config)).map_err(invalid)?);
    let mut authenticators = crate::auth::Authenticators::new();
    if config.scram_users_file.is_some() {
        authenticators.add(Box::new(crate::auth::ReloadableScram(access.clone())));
    }
    Ok((authenticators, access))
}

/// A listener of `config` ready to add (src/transport): its certificates loaded, its own access
/// control (`[listener.auth]`) loaded when it has one. Warns about a listener that is not on
/// loopback and lets anyone in. Binds nothing.
pub(crate) fn open_listener(
    config: &Config,
    listener: crate::transport::ListenerConfig,
) -> io::Result<crate::transport::Listener> {
    use crate::auth::{AccessControl, AuthPolicy};
    let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
    let policy = AuthPolicy::from(config);
    let own = listener.auth.clone().map(|own| AuthPolicy {
        use_identity_as_username: listener.use_identity_as_username,
        ..own
    });
    let effective = own.as_ref().unwrap_or(&policy);
    if !listener.use_identity_as_username {
        if let Some(warning) = effective.open_listener_warning(&listener.address) {
            log::warn!("{warning}");
        }
    }
    let access = match own {
        Some(own) => Some(Arc::new(AccessControl::load(own).map_err(invalid)?)),
        None => None,
    };
    let mut opened = crate::transport::Listener::new(listener).map_err(invalid)?;
    opened.access = access;
    Ok(opened)
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
        let shards = config.shards;
        // Persistence (src/store): the logs are read back before any shard runs.
        let startup = crate::store::start(&config)?;
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Before binding: loads the listeners' certificates (src/transport).
        let global = Global::new(config, instance)?;
        let listeners = global
            .listeners
            .iter()
            .map(|listener| runtime::acceptor::bind(listener.config.address))
            .collect::<io::Result<Vec<_>>>()?;
        let local_addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        fault::install_panic_hook();
        if let Some(store) = &startup.shared {
            let _ = global.store.set(store.clone());
        }
        for message in &startup.retained {
            global.retained.store(message);
        }
        let mut restored = startup.shards.into_iter();
        // Operations: running flags of the threads, for /healthz and the watchdog.
        let liveness = crate::ops::health::Liveness::new(shards, 0);

        let mut polls = Vec::with_capacity(shards);
        let mut signals = Vec::with_capacity(shards);
        for _ in 0..shards {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
            signals.push(Arc::new(ShardSignal {
                waker,
                sleeping: AtomicBool::new(false),
                routes_pending: AtomicBool::new(false),
            }));
            polls.push(poll);
        }
        let signals: Arc<[Arc<ShardSignal>]> = signals.into();

        // senders[s][t] and receivers[t][s]: the channel from shard s to shard t.
        let mut senders: Vec<Vec<_>> = (0..shards).map(|_| Vec::with_capacity(shards)).collect();
        let mut receivers: Vec<Vec<_>> = (0..shards).map(|_| Vec::with_capacity(shards)).collect();
        for target_receivers in receivers.iter_mut() {
            for source_senders in senders.iter_mut() {
                let (tx, rx) =
                    crossbeam_channel::bounded::<ShardMsg>(global.config().mesh_channel_capacity);
                source_senders.push(tx);
                target_receivers.push(rx);
            }
        }
        // Operations: one more channel into shard 0, for the `$SYS` messages the broker makes.
        let (ops_sender, ops_receiver) =
            crossbeam_channel::bounded::<ShardMsg>(CONTROL_CHANNEL_CAPACITY);
        receivers[0].push(ops_receiver);
        let mut control_senders = Vec::with_capacity(shards);
        let mut control_receivers = Vec::with_capacity(shards);
        for _ in 0..shards {
            let (tx, rx) = crossbeam_channel::bounded::<Accepted>(CONTROL_CHANNEL_CAPACITY);
            control_senders.push(tx);
            control_receivers.push(rx);
        }

        let mut threads = Vec::new();
        let cores = if global.config().pin_cores {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let start = std::time::Instant::now();
        let links = self::core::mesh::MeshLinks::new(shards);
        for (id, (((poll, shard_senders), shard_receivers), accepted)) in polls
            .into_iter()
            .zip(senders)
            .zip(receivers)
            .zip(control_receivers)
            .enumerate()
        {
            let mut core = self::core::ShardCore::new(
                id,
                global.clone(),
                self::core::mesh::Mesh::new(id, shard_senders, links.clone()),
                start,
            );
            // Persistence: the sessions recovery gave this shard, before any client connects.
            let (store, sessions) = restored.next().unwrap_or_default();
            core.restore(store, sessions, &startup.expired_wills);
            let inbox = Inbox::new(id, shard_receivers, accepted, signals.clone());
            let shard = runtime::shard_loop::ShardLoop::new(core, global.clone(), poll, inbox);
            let pin = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let thread_global = global.clone();
            let alive = liveness.shard_guard(id);
            let thread = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    let _alive = alive;
                    if let Some(pin) = pin {
                        if !core_affinity::set_for_current(pin) {
                            log::warn!("shard {id}: could not pin to core {}", pin.id);
                        }
                    }
                    // A panic stops the broker, never only this shard (`fault.rs`).
                    fault::run_thread(&thread_global, || shard.run());
                })?;
            threads.push(thread);
        }

        let kit = AcceptorKit {
            control_senders,
            next_connection: Arc::new(AtomicUsize::new(0)),
        };
        let mut acceptor_wakers = Vec::new();
        let mut acceptors = Vec::new();
        for (index, ((listener, addr), settings)) in listeners
            .into_iter()
            .zip(&local_addrs)
            .zip(global.listeners.iter())
            .enumerate()
        {
            let id = index as crate::transport::ListenerId;
            let (thread, running, waker) =
                spawn_acceptor(&global, &kit, &signals, &liveness, listener, id, *addr)?;
            acceptor_wakers.push(waker);
            threads.push(thread);
            acceptors.push(RunningAcceptor {
                config: settings.config.clone(),
                ..running
            });
        }
        let ops_signals = signals.clone();
        let stopper = Stopper {
            signals: signals.clone(),
            acceptor_wakers: parking_lot::Mutex::new(acceptor_wakers),
        };
        if global.stopper.set(stopper).is_err() {
            log::error!("bug: the broker's stopper was set twice");
        }
        if global.failure.lock().is_some() {
            // A thread failed before the stopper existed: wake everyone now.
            global.stop();
        }
        log::info!("shardmq listening on {local_addrs:?} with {shards} shards");
        Ok(BrokerHandle {
            global,
            local_addrs,
            threads,
            signals: ops_signals,
            ops_sender,
            liveness,
            started: start,
            acceptors,
            kit,
        })
    }
}

/// What starting an acceptor needs besides the broker-wide state (issue 15: a reload starts
/// acceptors for the listeners it adds).
pub(crate) struct AcceptorKit {
    control_senders: Vec<crossbeam_channel::Sender<Accepted>>,
    next_connection: Arc<AtomicUsize>,
}

/// An acceptor running now (issue 15).
pub(crate) struct RunningAcceptor {
    /// Its listener's settings as configured (port 0 stays 0).
    pub(crate) config: crate::transport::ListenerConfig,
    /// The bound address.
    pub(crate) address: SocketAddr,
    pub(crate) control: Arc<runtime::acceptor::AcceptorControl>,
    /// Its number in `ops::health::Liveness`.
    pub(crate) liveness_id: usize,
}

/// Starts an acceptor thread on `socket` for listener `id`. Its `RunningAcceptor::config` is
/// left to the caller.
fn spawn_acceptor(
    global: &Arc<Global>,
    kit: &AcceptorKit,
    signals: &Arc<[Arc<ShardSignal>]>,
    liveness: &Arc<crate::ops::health::Liveness>,
    socket: std::net::TcpListener,
    id: crate::transport::ListenerId,
    address: SocketAddr,
) -> io::Result<(JoinHandle<()>, RunningAcceptor, Arc<Waker>)> {
    let acceptor = runtime::acceptor::Acceptor::new(
        socket,
        id,
        global.clone(),
        kit.control_senders.clone(),
        signals.clone(),
        kit.next_connection.clone(),
    )?;
    let waker = acceptor.waker();
    let control = acceptor.control();
    let liveness_id = liveness.acceptors_started();
    let alive = liveness.acceptor_guard(liveness_id);
    let thread_global = global.clone();
    let thread = std::thread::Builder::new()
        .name(format!("acceptor-{address}"))
        // A panic or an abnormal stop stops the broker, never silently (`fault.rs`).
        .spawn(move || {
            let _alive = alive;
            fault::run_thread(&thread_global, || acceptor.run())
        })?;
    let running = RunningAcceptor {
        config: crate::transport::ListenerConfig::mqtt(address),
        address,
        control,
        liveness_id,
    };
    Ok((thread, running, waker))
}

/// A running broker. Dropping it shuts the broker down and waits for its threads.
pub struct BrokerHandle {
    global: Arc<Global>,
    local_addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<()>>,
    /// Operations: the shards' wakers, shard 0's channel for `$SYS` messages, thread flags,
    /// start time (see `observer`).
    signals: Arc<[Arc<ShardSignal>]>,
    ops_sender: crossbeam_channel::Sender<ShardMsg>,
    liveness: Arc<crate::ops::health::Liveness>,
    started: std::time::Instant,
    /// Issue 15 (`reconfigure.rs`): the acceptors running, in `local_addrs` order, and what
    /// starting another needs.
    acceptors: Vec<RunningAcceptor>,
    kit: AcceptorKit,
}

impl BrokerHandle {
    /// Reloads the certificates of every TLS listener (what SIGHUP does): new handshakes use
    /// the new files, established connections are untouched; a listener whose files cannot be
    /// loaded keeps its old certificates, and the errors are returned (and logged).
    pub fn reload_tls(&self) -> Vec<String> {
        self.global.listeners.reload_tls()
    }

    /// The bound addresses, in `Config::effective_listeners` order (the `listen` addresses,
    /// then the `[[listener]]` sections), with the real port for port 0. After a reload
    /// (`reconfigure`): the listeners of the new configuration, in its order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Re-reads the password, SCRAM and ACL files (SIGHUP). A file that fails keeps its previous
    /// version; the errors (also logged) are returned. Connected clients follow the new ACL from
    /// their next publish or delivery.
    pub fn reload_auth(&self) -> Vec<String> {
        self.global.reload_auth()
    }

    /// Starts a graceful shutdown: acceptors stop, shards send MQTT 5 clients DISCONNECT 0x8B,
    /// flush for at most `shutdown_timeout_ms` and exit. Returns at once; `join` waits.
    pub fn shutdown(&self) {
        self.global.stop();
    }

    /// Why the broker stopped by itself, if it did: a shard or acceptor thread panicked or
    /// stopped abnormally (`fault.rs`). The broker then stops entirely (never half alive);
    /// `join` returns once its threads are gone.
    pub fn failure(&self) -> Option<BrokerFailure> {
        self.global.failure.lock().clone()
    }

    /// Waits until every broker thread has exited (after `shutdown`).
    pub fn join(mut self) {
        self.join_threads();
    }

    fn join_threads(&mut self) {
        let stopping = !self.threads.is_empty();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                log::error!("a broker thread panicked");
            }
        }
        // Persistence: the store's totals after the shards' last commit (records, fsyncs).
        if let (true, Some(store)) = (stopping, self.global.store.get()) {
            let s = store.stats();
            log::info!(
                "persistence totals: {} records, {} bytes, {} commits, {} fsyncs, {} compactions, \
                 {} acks held for peers, {} dropped at the disk limit, {} io errors",
                s.records_written,
                s.bytes_written,
                s.commits,
                s.fsyncs,
                s.compactions,
                s.acks_deferred,
                s.dropped_disk_full,
                s.io_errors
            );
        }
    }

    /// A snapshot of the counters summed over shards, with per-shard connection counts.
    pub fn stats(&self) -> Stats {
        self.global.stats()
    }

    /// Persistence counters and the startup recovery report; `None` when persistence is off.
    pub fn persistence_stats(&self) -> Option<crate::store::PersistenceStats> {
        self.global.store.get().map(|s| s.stats())
    }

    /// The number of retained messages held.
    pub fn retained_messages(&self) -> usize {
        self.global.retained_messages()
    }

    /// What the operations tools (`$SYS`, metrics, health, watchdog) read and inject.
    pub fn observer(&self) -> crate::ops::observer::Observer {
        crate::ops::observer::Observer::new(
            self.global.clone(),
            self.signals.clone(),
            self.ops_sender.clone(),
            self.liveness.clone(),
            self.started,
        )
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
