//! The core's inputs and outputs, in quinn-proto's manner: the caller hands in what happened
//! (`handle_*`, with the time) and takes out what to do (`poll_*`, `flush_writes`,
//! `drain_wakes`). No method here blocks, reads a clock or touches a socket type: bytes come in
//! as slices and go out through any `std::io::Write` (a TCP socket in the runtime, a TLS or
//! WebSocket stream later, an in-memory pipe in the simulation).
//!
//! One loop turn of a driver (the runtime's `shard_loop`, the simulation's `Sim`):
//! 1. `set_now(now)`;
//! 2. for each readable connection, while `may_read`: `handle_bytes` with what the socket
//!    gave, `handle_read_drained` when it was empty, `handle_peer_closed` on EOF or error;
//!    `handle_writable` for a writable one;
//! 3. `handle_accept` for new connections and `handle_mesh` for each message from a peer;
//! 4. `handle_timeout` (timers, mesh overflow, resumed connections);
//! 5. read again every connection `poll_read` names (as in 2);
//! 6. `flush_writes`: one write per connection touched this turn;
//! 7. `poll_close` until `None`: write the last bytes, close the socket;
//! 8. `end_turn`, then `drain_wakes` to send the turn's batches of publishes and wake the
//!    peers sent to, and sleep at most
//!    `poll_timeout`.

use super::connection::{ConnState, Connection, Unsent, PAUSED_MESH};
use super::keys::ConnKey;
use super::mesh::ShardMsg;
use super::sessions::handover::HandoverLeg;
use super::shard::{CloseReason, ShardCore, OVERFLOW_RETRY};
use super::stats::{bump, bump_by, drop_one};
use super::timers::TimerKind;
use crate::codec::{Disconnect, Packet, Properties, ReasonCode};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl ShardCore {
    /// This shard's id.
    pub fn id(&self) -> super::mesh::ShardId {
        self.id
    }

    /// Moves the core's clock to `now` (never backwards: an earlier `now` is ignored).
    pub fn set_now(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
            self.now_ms = self.timers.ticks_ms(now);
        }
    }

    /// A reload (issue 15): the configuration in force from now on. New connections and new
    /// CONNECTs follow it; an existing connection keeps what its CONNACK announced (Maximum
    /// Packet Size, Maximum QoS, Retain Available, Topic Alias Maximum: `Connection::announced`)
    /// and what was granted at its CONNECT (keep-alive, in-flight window, Receive Maximum,
    /// session queue limits); the rest (outgoing limits, timeouts, topic levels, subscription
    /// limits, shared-subscription strategy, ...) applies to every connection from the next
    /// packet or delivery on.
    pub fn set_config(&mut self, config: std::sync::Arc<crate::broker::Config>) {
        let shards = self.mesh.shards();
        (self.backpressure.memory_mut()).set_limit(config.max_buffered_bytes, shards);
        self.config = config;
    }

    /// The key the next `handle_accept` will return (the runtime registers the socket under it
    /// first).
    pub fn vacant_conn_key(&self) -> ConnKey {
        self.connections.vacant_key()
    }

    /// A new connection from `peer` (already admitted under `max_connections` by
    /// [`crate::broker::Global::admit_connection`]); its handshake timer starts now.
    pub fn handle_accept(&mut self, peer: SocketAddr) -> ConnKey {
        let id = self.next_connection_id;
        self.next_connection_id += 1;
        let mut connection = Connection::new(peer, id, self.now_ms);
        connection.announced = super::connection::Announced::of(&self.config);
        let key = self.connections.insert(connection);
        bump(&self.counters().connections_open);
        let deadline = self.now + Duration::from_millis(self.config.handshake_timeout_ms);
        self.timers
            .arm(deadline, TimerKind::Handshake, key.index(), id);
        log::debug!("shard {}: accepted {peer}", self.id);
        key
    }

    /// A new connection from `peer` on listener `listener` (src/transport), as
    /// [`ShardCore::handle_accept`].
    pub fn handle_accept_on(
        &mut self,
        peer: SocketAddr,
        listener: crate::transport::ListenerId,
    ) -> ConnKey {
        let key = self.handle_accept(peer);
        if let Some(conn) = self.connections.get_mut(key) {
            conn.listener = listener;
        }
        key
    }

    /// What a transport learned about `key` (src/transport): the client's real address from a
    /// PROXY header, the verified client certificate's identity after the TLS handshake.
    pub fn handle_transport_info(&mut self, key: ConnKey, info: crate::transport::TransportInfo) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if let Some(peer) = info.peer {
            conn.peer = super::connection::PeerAddr::from(peer);
        }
        if let Some(identity) = info.certificate_identity {
            conn.extras_mut().certificate_identity = Some(identity);
        }
    }

    /// `key`'s transport failed (src/transport): `why` is logged once and the connection closed.
    pub fn handle_transport_error(&mut self, key: ConnKey, why: String) {
        self.close(key, CloseReason::Transport(why));
    }

    /// Whether the runtime should read `key`'s socket now: false while the connection is
    /// paused (backpressure), parked (takeover), waiting for a SUBACK barrier, closing or gone.
    /// Bytes left unread then stay in the kernel, which is the backpressure on the client.
    pub fn may_read(&self, key: ConnKey) -> bool {
        self.connections.get(key).is_some_and(|c| c.may_process())
    }

    /// Bytes received on `key`: buffered, and every whole packet among them handled.
    pub fn handle_bytes(&mut self, key: ConnKey, bytes: &[u8]) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        conn.read_buf.extend_from_slice(bytes);
        self.process_input(key);
    }

    /// The socket of `key` had nothing more to read: its read buffer is freed if empty, so an
    /// idle connection holds no buffer memory.
    pub fn handle_read_drained(&mut self, key: ConnKey) {
        if let Some(conn) = self.connections.get_mut(key) {
            conn.release_read_buffer();
        }
    }

    /// The peer closed `key` (EOF) or its socket failed.
    pub fn handle_peer_closed(&mut self, key: ConnKey, error: Option<io::ErrorKind>) {
        let reason = error.map_or(CloseReason::PeerClosed, CloseReason::Io);
        self.close(key, reason);
    }

    /// `key`'s socket can take bytes again.
    pub fn handle_writable(&mut self, key: ConnKey) {
        self.mark_dirty(key);
    }

    /// One message from another shard.
    pub fn handle_mesh(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Publishes { from, messages } => {
                self.deliver_batch(from, &messages);
                self.mesh.recycle(from, messages);
            }
            // Operations: a `$SYS` message made by the broker, routed as if received here.
            ShardMsg::Inject(message) => {
                self.route_publish(&message, None);
            }
            ShardMsg::MessageRef {
                message,
                share,
                publisher_hash,
                hops,
            } => self.deliver_shared_named(&share, &message, publisher_hash, hops),
            ShardMsg::RouteAdd {
                from,
                filters,
                epoch,
            } => {
                for filter in &filters {
                    self.delivery.router_mut().remote_add(from, filter.as_str());
                }
                let ack = ShardMsg::RouteAck {
                    from: self.id,
                    epoch,
                };
                self.mesh.send(from, ack);
            }
            ShardMsg::RouteAck { from, epoch } => {
                self.delivery.router_mut().ack(from, epoch);
                self.release_acks();
            }
            ShardMsg::RouteRemove { from, filters } => {
                for filter in &filters {
                    self.delivery
                        .router_mut()
                        .remote_remove(from, filter.as_str());
                }
            }
            ShardMsg::Takeover {
                from,
                request,
                client_id,
                keep_state,
            } => self.handle_takeover_request(from, request, client_id, keep_state),
            ShardMsg::TakeoverReply {
                from: _,
                request,
                state,
                handover,
                hop,
            } => {
                let handover = handover.map(|id| HandoverLeg { id, hop });
                self.handle_takeover_reply(request, state, handover)
            }
            ShardMsg::Handover(msg) => self.handle_handover(msg),
        }
    }

    /// Fires the timers due at `now`, moves mesh messages that waited for room, and resumes
    /// connections that were paused or parked (named by `poll_read` afterwards).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.set_now(now);
        self.handle_timers();
        self.mesh.flush_overflow();
        self.resume_connections();
        self.resume_congested();
    }

    /// A connection whose socket must be read again: resumed after a pause or a takeover,
    /// with bytes possibly waiting in the kernel that no new readiness event will announce.
    pub fn poll_read(&mut self) -> Option<ConnKey> {
        self.to_read.pop()
    }

    /// One write (until `WouldBlock`) per connection touched this turn. `streams[key]` is the
    /// connection's writer; the written bytes leave the outgoing buffer and its accounting.
    pub fn flush_writes<W: io::Write>(&mut self, streams: &mut [Option<W>]) {
        let low = self.config.max_outgoing_bytes / 4;
        let qos0_backpressure = self.config.qos0_backpressure;
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut resumed = Vec::new();
        let mut refill = Vec::new();
        for key in dirty.drain(..) {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Closing || conn.out.is_empty() {
                continue;
            }
            let Some(stream) = streams.get_mut(key.index()).and_then(Option::as_mut) else {
                continue;
            };
            let before = conn.out.len();
            let result = conn.out.write_to(stream, self.backpressure.memory_mut());
            let after = conn.out.len();
            // Issue 11 hooks: a connection not read for its full buffer is read again; one
            // written down below the limit gets its queue refilled (after this loop).
            if self.resume_if_written_down(key, after) {
                resumed.push(key);
            }
            if self.written_progress(key, before, after) {
                refill.push(key);
            }
            // Operations: `$SYS/broker/bytes/sent` and the metrics.
            bump_by(
                &self.global.counters[self.id].sent_bytes,
                (before - after) as u64,
            );
            match result {
                // Transports say why they failed in an InvalidData error (src/transport).
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.close(key, CloseReason::Transport(e.to_string()))
                }
                Err(e) => self.close(key, CloseReason::Io(e.kind())),
                // QoS 0 backpressure: written down across the low watermark.
                Ok(_) if qos0_backpressure && after <= low && before > low => {
                    self.outgoing_written(key)
                }
                Ok(_) => {}
            }
        }
        self.dirty = dirty;
        // Processed, then read, at the start of the next turn (`resume_connections`).
        self.ready.extend(resumed);
        self.refill_queues(&refill);
    }

    /// A connection closed this turn, removed from the core, with the bytes still queued for it
    /// (a DISCONNECT, a refusing CONNACK): the runtime writes what the socket takes, then closes
    /// it. `None` when no close is left.
    pub fn poll_close(&mut self) -> Option<(ConnKey, Unsent)> {
        while let Some(key) = self.closing.pop() {
            if !self.connections.contains(key) {
                continue;
            }
            let mut conn = self.connections.remove(key);
            // Issue 11 hook: its paced QoS 0 messages go with it.
            self.retained_backlog.remove(key);
            let unsent = conn.out.take_unsent(self.backpressure.memory_mut());
            drop_one(&self.counters().connections_open);
            self.global.connections_open.fetch_sub(1, Ordering::SeqCst);
            return Some((key, unsent));
        }
        None
    }

    /// The end of a loop turn, after writes and closes: memory-pressure transitions.
    pub fn end_turn(&mut self) {
        self.check_memory();
        #[cfg(debug_assertions)]
        self.debug_check_buffered();
    }

    /// The end of a turn for the mesh: sends this turn's batches of publishes, then calls
    /// `wake(shard)` once for every peer sent to since the last call.
    pub fn drain_wakes(&mut self, wake: impl FnMut(super::mesh::ShardId)) {
        self.mesh.drain_wakes(wake);
    }

    /// How long the driver may wait for input before calling `handle_timeout` (zero: work is
    /// waiting now; `None`: no deadline). Publishers paused on a peer shard's congestion flag
    /// are not counted: the driver checks `congestion_resumable` after announcing its sleep.
    pub fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.ready.is_empty() || !self.to_read.is_empty() {
            return Some(Duration::ZERO);
        }
        // Persistence (`periodic`): wake up for the fsync that is due.
        let deadline = match (self.timers.next_deadline(), self.store.sync_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = deadline.map(|deadline| deadline.saturating_duration_since(now));
        if self.mesh.has_overflow() {
            return Some(timer.map_or(OVERFLOW_RETRY, |t| t.min(OVERFLOW_RETRY)));
        }
        timer
    }

    /// Bytes this shard holds in outgoing buffers and session queues, and its part of
    /// `max_buffered_bytes` (for invariant checks).
    pub fn buffered_bytes(&self) -> (usize, usize) {
        (
            self.backpressure.memory().buffered(),
            self.backpressure.memory().limit(),
        )
    }

    /// Bytes this shard's session queues count in `buffered_bytes` (issue 11: each distinct
    /// message once, plus a slot per entry) and the messages its handovers hold, computed
    /// from the queues themselves.
    pub fn queued_bytes(&self) -> usize {
        let messages = self
            .sessions
            .iter()
            .flat_map(|(_, s)| s.session.state.queued.iter().map(|queued| &queued.message));
        super::backpressure::queue_charges::charge_of(messages) + self.handovers.held_bytes()
    }

    /// The sessions' own views of their queues (`session::queued_bytes` per entry,
    /// what `max_queued_bytes` bounds), summed over the sessions.
    pub fn session_queued_bytes(&self) -> usize {
        self.sessions
            .iter()
            .map(|(_, s)| s.session.state.queued_bytes())
            .sum()
    }

    /// Whether mesh messages wait in this shard's overflow queues for room in a channel
    /// (moved by `handle_timeout`), or in a batch not sent yet (sent by `drain_wakes`): work a
    /// driver must not call idle.
    pub fn has_mesh_overflow(&self) -> bool {
        self.mesh.has_overflow() || self.mesh.has_open_batches()
    }

    /// Batches of publishes this shard sent to its peers since start, and the publishes they
    /// carried (so a test can see that its traffic crossed shards in batches).
    pub fn mesh_batches_sent(&self) -> (u64, u64) {
        self.mesh.batches_sent()
    }

    /// Session handovers this shard takes part in now (for invariant checks: none once the
    /// mesh has settled).
    pub fn handovers_in_progress(&self) -> usize {
        self.handovers.in_progress()
    }

    /// Takeovers this shard waits on (for invariant checks: none once the mesh has settled;
    /// finding F3's second form was a pair of claims waiting on each other for ever).
    pub fn takeovers_pending(&self) -> usize {
        self.sessions.takeovers_pending()
    }

    /// Open connections and sessions on this shard.
    pub fn population(&self) -> (usize, usize) {
        (self.connections.len(), self.sessions.len())
    }

    /// The earliest timer deadline, if any (for a simulated clock to jump to).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Starts a graceful shutdown: MQTT 5 clients get DISCONNECT 0x8B (Server shutting down).
    pub fn begin_shutdown(&mut self) {
        let packet = Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ServerShuttingDown,
            properties: Properties::default(),
        });
        let memory = self.backpressure.memory_mut();
        for (_, conn) in self.connections.iter_mut() {
            if conn.state == ConnState::Connected && conn.version.is_v5() {
                super::shard::push_bounded(&mut conn.out, &packet, conn.version, memory);
            }
        }
    }

    /// One shutdown write round over every connection; returns whether bytes are still queued.
    pub fn flush_for_shutdown<W: io::Write>(&mut self, streams: &mut [Option<W>]) -> bool {
        let mut pending = false;
        let memory = self.backpressure.memory_mut();
        for (key, conn) in self.connections.iter_mut() {
            if conn.out.is_empty() {
                continue;
            }
            let Some(stream) = streams.get_mut(key.index()).and_then(Option::as_mut) else {
                continue;
            };
            match conn.out.write_to(stream, memory) {
                Ok(true) => {}
                Ok(false) => pending = true,
                Err(_) => drop(conn.out.take_unsent(memory)),
            }
        }
        pending
    }

    /// Drops every connection at the end of a shutdown.
    pub fn finish_shutdown(&mut self) {
        let open = self.connections.len();
        self.counters()
            .connections_open
            .fetch_sub(open as u64, Ordering::Relaxed);
        self.global
            .connections_open
            .fetch_sub(open, Ordering::SeqCst);
        self.connections.clear();
        log::debug!("shard {} stopped: {:?}", self.id, self.counters());
    }

    /// Processes input that waited while a connection was parked for a takeover, and resumes
    /// connections paused by mesh backpressure once the overflow drained. Both are then read
    /// again (`to_read`).
    fn resume_connections(&mut self) {
        if !self.ready.is_empty() {
            let ready = std::mem::take(&mut self.ready);
            for &key in &ready {
                self.process_input(key);
                self.to_read.push(key);
            }
        }
        if !self.backpressure.any_paused_on_mesh() || self.mesh.has_overflow() {
            return;
        }
        let paused = self.backpressure.take_paused_on_mesh();
        for &key in &paused {
            if let Some(conn) = self.connections.get_mut(key) {
                conn.paused &= !PAUSED_MESH;
            }
            self.process_input(key);
            self.to_read.push(key);
        }
    }
}
