//! A shard thread's event loop: one mio `Poll`, the sockets of its connections, and the mesh's
//! receiving end, around one [`ShardCore`]. It only moves bytes and events between the sockets
//! and the core (the order of one turn is in `core::io`'s doc); every decision is the core's.

use super::inbox::Inbox;
use super::stats::{bump, bump_by};
use super::stream::{Accepted, Stream};
use super::{Global, WAKER_TOKEN};
use crate::broker::core::keys::ConnKey;
use crate::broker::core::ShardCore;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages taken per inbound channel per loop turn, so one busy peer cannot starve sockets.
const INBOX_BUDGET_PER_SOURCE: usize = 1024;
/// `read` calls per connection per loop turn (of `READ_CHUNK_BYTES` each). A publisher that
/// sends faster than the shard reads would otherwise keep `read_socket` reading it while
/// every other socket, the inbox and the turn's writes wait: under a flood the subscribers'
/// writes would starve and delivery collapse. The rest is read next turn (`read_more`).
const READS_PER_TURN_MAX: usize = 4;
/// Bytes read per `read` call, into the loop's scratch buffer (then appended to the
/// connection's read buffer in the core, which so holds only bytes actually received).
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Bytes of a closing connection's unread input drained before its socket is dropped.
const CLOSE_DRAIN_BYTES: usize = 16 * 4096;

/// A shard thread: its poll, its sockets (indexed by [`ConnKey`]), its inbox and its core.
pub struct ShardLoop {
    core: ShardCore,
    global: Arc<Global>,
    poll: Poll,
    inbox: Inbox,
    /// `streams[key]`: the socket of the core's connection `key`.
    streams: Vec<Option<Stream>>,
    /// Every socket read lands here first.
    read_scratch: Box<[u8]>,
    /// Connections that used their read budget this turn with bytes left to read.
    read_more: Vec<ConnKey>,
    /// Scratch for the inbox's messages.
    messages: Vec<crate::broker::core::mesh::ShardMsg>,
    /// The reload generation of the core's configuration (issue 15, `Global::set_config`).
    config_generation: u64,
}

impl ShardLoop {
    pub fn new(core: ShardCore, global: Arc<Global>, poll: Poll, inbox: Inbox) -> ShardLoop {
        ShardLoop {
            core,
            global,
            poll,
            inbox,
            streams: Vec::new(),
            read_scratch: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            read_more: Vec::new(),
            messages: Vec::new(),
            config_generation: 0,
        }
    }

    /// Runs the loop until shutdown. `Err` says why it stopped otherwise (its poll failed): a
    /// broker failure (`broker::fault`), never a shard gone silently.
    pub fn run(mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(1024);
        loop {
            // Work waiting now: no sleep, and no sleeping flag raised (a peer seeing it would
            // make a wake-up system call for nothing).
            let timeout = if self.read_more.is_empty() && !self.inbox.pending() {
                self.core.poll_timeout(Instant::now())
            } else {
                Some(Duration::ZERO)
            };
            // A peer that clears its congestion flag after our last check wakes us only if it
            // sees us asleep: check the flags again after announcing the sleep.
            let may_sleep = timeout != Some(Duration::ZERO)
                && self.inbox.prepare_sleep()
                && !self.core.congestion_resumable()
                && !self.core.held_acks_releasable();
            let timeout = if may_sleep {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll failed: {e}"));
                }
            }
            self.inbox.woke_up();
            // Operations: the systemd watchdog pings only while every shard's turns advance.
            bump(&self.global.counters[self.core.id()].loop_turns);
            let now = Instant::now();
            self.core.set_now(now);
            // A reload (issue 15): one atomic load a turn, the lock only when it changed.
            let generation = self.global.config_generation.load(Ordering::SeqCst);
            if generation != self.config_generation {
                self.config_generation = generation;
                self.core.set_config(self.global.config());
            }
            if self.global.shutdown.load(Ordering::SeqCst) {
                // Persistence: what was written is made durable before the process exits.
                self.core.sync_store();
                self.shutdown(&mut events);
                return Ok(());
            }
            // Before this turn's events, so that what they leave over waits a turn.
            self.read_leftovers();
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    continue;
                }
                let key = ConnKey::new(event.token().0);
                let hang_up = event.is_read_closed() || event.is_error();
                if event.is_readable() || hang_up {
                    self.read_socket(key, !hang_up);
                }
                if event.is_writable() {
                    self.write_transport(key);
                    self.core.handle_writable(key);
                }
            }
            self.turn(now);
        }
    }

    /// Everything after socket events, at the time read after the poll.
    fn turn(&mut self, now: Instant) {
        for accepted in self.inbox.accepted(INBOX_BUDGET_PER_SOURCE) {
            accept(
                &mut self.core,
                &self.global,
                &self.poll,
                &mut self.streams,
                accepted,
            );
        }
        self.apply_inbox();
        self.core.handle_timeout(now);
        while let Some(key) = self.core.poll_read() {
            self.read_socket(key, false);
        }
        // Persistence: the group commit goes before the turn's socket writes, so that in `sync`
        // mode every PUBACK/PUBREC and PUBLISH sent is covered by fsynced records.
        self.core.commit_store(self.inbox.received_counts());
        self.core.flush_writes(&mut self.streams);
        while let Some((key, mut out)) = self.core.poll_close() {
            if let Some(mut stream) = self.streams.get_mut(key.index()).and_then(Option::take) {
                // Whatever the last write does not take goes with the connection.
                let _ = out.write_to(&mut stream);
                if let Some(listener) = self.global.listeners.get(stream.listener()) {
                    listener.closed();
                }
                close_socket(stream);
            }
        }
        self.core.end_turn();
        let inbox = &self.inbox;
        self.core.drain_wakes(|target| inbox.wake(target));
        // Routes broadcast by this turn's own work (takeovers, timers): flagged too (issue 16).
        if self.core.take_routes_sent() {
            self.inbox.wake_for_routes();
        }
    }

    /// Hands the inbox's messages to the core (in the turn, and before a read when a peer
    /// flagged a route change).
    fn apply_inbox(&mut self) {
        self.inbox
            .drain_into(&mut self.messages, INBOX_BUDGET_PER_SOURCE);
        for msg in self.messages.drain(..) {
            self.core.handle_mesh(msg);
        }
    }

    /// Reads until `WouldBlock` or the turn's budget (`READS_PER_TURN_MAX`), handing each read
    /// to the core. With `stop_on_short_read` (a readiness event that reported no hang-up or
    /// error) a short read ends it too: the socket was empty then, and later bytes raise a new
    /// edge-triggered event, so the `read` that could only say `WouldBlock` is saved.
    fn read_socket(&mut self, key: ConnKey, stop_on_short_read: bool) {
        for _ in 0..READS_PER_TURN_MAX {
            if !self.core.may_read(key) {
                return;
            }
            let Some(stream) = self.streams.get_mut(key.index()).and_then(Option::as_mut) else {
                return;
            };
            let result = loop {
                match stream.read(&mut self.read_scratch) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            // Transport hook: a PROXY header's address or a client certificate's identity,
            // before the bytes that may hold CONNECT (never on plain TCP).
            if let Some(info) = stream.take_info() {
                self.core.handle_transport_info(key, info);
            }
            match result {
                Ok(0) => {
                    self.core.handle_peer_closed(key, None);
                    return;
                }
                Ok(n) => {
                    // Operations: `$SYS/broker/bytes/received` and the metrics.
                    bump_by(
                        &self.global.counters[self.core.id()].received_bytes,
                        n as u64,
                    );
                    // Issue 16 (subscribe visibility): routes a peer broadcast before this read
                    // are applied before the bytes are handled; and a route this input created
                    // is announced to the peers at once (core/connection/fidelity.rs).
                    if self.inbox.take_routes_pending() {
                        self.apply_inbox();
                    }
                    self.core.handle_bytes(key, &self.read_scratch[..n]);
                    if self.core.take_routes_sent() {
                        self.inbox.wake_for_routes();
                    }
                    if n < self.read_scratch.len() && stop_on_short_read {
                        self.core.handle_read_drained(key);
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.core.handle_read_drained(key);
                    return;
                }
                // Transports say why they failed in an InvalidData error (src/transport).
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.core.handle_transport_error(key, e.to_string());
                    return;
                }
                Err(e) => {
                    self.core.handle_peer_closed(key, Some(e.kind()));
                    return;
                }
            }
        }
        // Budget used up with bytes possibly left: no new edge will come for them.
        self.read_more.push(key);
    }

    /// Writes what a transport layer still holds (TLS records, WebSocket frames) once the socket
    /// takes bytes again. Never does anything on plain TCP.
    fn write_transport(&mut self, key: ConnKey) {
        let Some(stream) = self.streams.get_mut(key.index()).and_then(Option::as_mut) else {
            return;
        };
        if !stream.wants_write() {
            return;
        }
        match stream.write_pending() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.core.handle_transport_error(key, e.to_string())
            }
            Err(e) => self.core.handle_peer_closed(key, Some(e.kind())),
        }
    }

    /// Continues reading the connections that used their budget last turn, without stopping
    /// on a short read: a hang-up seen with the earlier event would not be reported again.
    fn read_leftovers(&mut self) {
        if self.read_more.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut self.read_more);
        for key in keys.drain(..) {
            self.read_socket(key, false);
        }
        // Reuse the allocation unless this turn refilled the list.
        if self.read_more.is_empty() {
            self.read_more = keys;
        }
    }

    /// Graceful shutdown: DISCONNECT 0x8B to MQTT 5 clients, flush within the deadline, close.
    fn shutdown(&mut self, events: &mut Events) {
        self.core.begin_shutdown();
        let deadline =
            Instant::now() + Duration::from_millis(self.global.config().shutdown_timeout_ms);
        loop {
            let pending = self.core.flush_for_shutdown(&mut self.streams);
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            let _ = self.poll.poll(
                events,
                Some((deadline - now).min(Duration::from_millis(10))),
            );
        }
        for stream in self.streams.iter().flatten() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            if let Some(listener) = self.global.listeners.get(stream.listener()) {
                listener.closed();
            }
        }
        self.streams.clear();
        self.core.finish_shutdown();
    }
}

/// Wraps an accepted socket in its listener's transport, registers it and hands the connection
/// to the core under the same key.
fn accept(
    core: &mut ShardCore,
    global: &Global,
    poll: &Poll,
    streams: &mut Vec<Option<Stream>>,
    accepted: Accepted,
) {
    let Accepted {
        stream: socket,
        peer,
        listener: listener_id,
    } = accepted;
    let Some(listener) = global.listeners.get(listener_id) else {
        global.connections_open.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    let max_packet_size = global.config().max_packet_size;
    let mut stream = match listener.wrap(socket, listener_id, max_packet_size) {
        Ok(stream) => stream,
        Err(e) => {
            log::error!("shard {}: cannot start TLS for {peer}: {e}", core.id());
            listener.closed();
            global.connections_open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
    };
    let key = core.vacant_conn_key();
    if let Err(e) = poll.registry().register(
        &mut stream,
        Token(key.index()),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        log::error!("shard {}: cannot register {peer}: {e}", core.id());
        listener.closed();
        global.connections_open.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let accepted = core.handle_accept_on(peer, listener_id);
    debug_assert_eq!(accepted, key);
    if streams.len() <= key.index() {
        streams.resize_with(key.index() + 1, || None);
    }
    streams[key.index()] = Some(stream);
    // Data may already be waiting; the first readiness event will tell.
}

/// A last FIN, then the socket is dropped. What the peer already sent is drained first so that
/// close() does not answer with RST, which could destroy the DISCONNECT just written.
fn close_socket(mut stream: Stream) {
    // Transport hook: a WebSocket Close and a TLS close_notify go before the FIN.
    let _ = stream.shutdown_write();
    let mut sink = [0u8; 4096];
    for _ in 0..CLOSE_DRAIN_BYTES / sink.len() {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}
