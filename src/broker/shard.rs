//! The shard event loop: one thread, one mio `Poll`, its connections, sessions, trie, routing
//! replica and timers.
//!
//! One loop turn: poll; read every readable socket until `WouldBlock` (decoding and handling
//! each whole packet as it arrives); handle the inbox; fire due timers; move overflowed mesh
//! messages; resume connections that were paused or parked; write each connection touched this
//! turn once (until `WouldBlock`); close the connections marked for closing; wake peers sent to.

use super::connection::{
    ConnState, Connection, ReadOutcome, WillMessage, PAUSED_MESH, READ_CHUNK_BYTES,
    TIMER_HANDSHAKE_PENDING, TIMER_KEEP_ALIVE_ON_HANDSHAKE,
};
use super::lifecycle::PendingTakeover;
use super::mesh::{Mesh, ShardId, ShardMsg};
use super::protocol::LayoutCache;
use super::router::Router;
use super::session::{Session, SharedPublish};
use super::shared::SharedMembers;
use super::stats::{bump, drop_one, ShardCounters};
use super::timers::{TimerKind, Timers};
use super::{Shared, WAKER_TOKEN};
use crate::codec::{
    self, Disconnect, MqttString, Packet, Properties, QoS, ReasonCode, SubAck, SubscriptionOptions,
};
use crate::topic::{MatchCache, TopicTrie};
use bytes::BytesMut;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages taken per inbound channel per loop turn, so one busy peer cannot starve sockets.
const INBOX_BUDGET_PER_SOURCE: usize = 1024;
/// `read` calls per connection per loop turn (of `READ_CHUNK_BYTES` each). A publisher that
/// sends faster than the shard reads would otherwise keep `handle_readable` reading it while
/// every other socket, the inbox and the turn's writes wait: under a flood the subscribers'
/// writes would starve and delivery collapse. The rest is read next turn (`read_more`).
const READS_PER_TURN_MAX: usize = 4;
/// Poll timeout while a mesh overflow waits for room.
const OVERFLOW_RETRY: Duration = Duration::from_millis(1);

/// One subscription in the shard's trie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalSub {
    /// Session slab key.
    pub session: usize,
    pub options: SubscriptionOptions,
    /// MQTT 5 Subscription Identifier; 0 = none.
    pub identifier: u32,
}

/// A session living on this shard.
pub struct ShardSession {
    pub session: Session,
    /// The number of this shard's registry claim on the client id (the claim is
    /// `Claim { shard: this shard, number }`: a session only lives where its id was claimed).
    pub claim_number: u64,
    /// The connection slab key while online.
    pub connection: Option<usize>,
    /// Changes whenever the session goes offline; guards its timers.
    pub generation: u64,
    /// A will waiting for its Will Delay Interval (or the end of the session).
    pub pending_will: Option<Box<WillMessage>>,
}

/// What waits for the routing barrier.
pub enum Awaited {
    /// A SUBACK, with the (filter, granted QoS, subscription identifier) whose retained
    /// messages go out after it.
    SubAck {
        suback: SubAck,
        retained: Vec<(MqttString, QoS, u32)>,
    },
    /// The CONNACK of a session that moved here with its subscriptions.
    ConnAck {
        connack: Packet,
        keep_alive_secs: u16,
    },
}

/// An answer waiting until every peer has applied the routes broadcast up to `epoch`.
pub struct PendingAck {
    pub epoch: u64,
    pub connection: usize,
    pub connection_id: u64,
    pub awaited: Awaited,
}

/// Why a connection is closed (logged, and mapped to the DISCONNECT an MQTT 5 client gets).
#[derive(Clone, Debug)]
pub enum CloseReason {
    /// The client sent DISCONNECT.
    ClientDisconnect(ReasonCode),
    /// The peer closed the TCP connection without DISCONNECT.
    PeerClosed,
    Io(io::ErrorKind),
    /// A malformed packet or protocol violation; the code goes into DISCONNECT.
    Protocol(ReasonCode, String),
    KeepAliveTimeout,
    HandshakeTimeout,
    TakenOver,
    SlowConsumer,
    /// CONNACK with an error code was sent.
    ConnectRefused(ReasonCode),
}

impl CloseReason {
    /// The reason code of the DISCONNECT sent to an MQTT 5 client, if any.
    fn disconnect_code(&self) -> Option<ReasonCode> {
        match self {
            CloseReason::Protocol(code, _) => Some(*code),
            CloseReason::KeepAliveTimeout => Some(ReasonCode::KeepAliveTimeout),
            CloseReason::TakenOver => Some(ReasonCode::SessionTakenOver),
            _ => None,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ClientDisconnect(code) => write!(f, "client disconnected ({code:?})"),
            CloseReason::PeerClosed => f.write_str("connection closed by peer"),
            CloseReason::Io(kind) => write!(f, "socket error: {kind}"),
            CloseReason::Protocol(code, why) => write!(f, "{why} ({code:?})"),
            CloseReason::KeepAliveTimeout => f.write_str("keep-alive timeout"),
            CloseReason::HandshakeTimeout => f.write_str("no CONNECT within the handshake timeout"),
            CloseReason::TakenOver => f.write_str("session taken over"),
            CloseReason::SlowConsumer => f.write_str("outgoing buffer over twice its limit"),
            CloseReason::ConnectRefused(code) => write!(f, "CONNECT refused ({code:?})"),
        }
    }
}

/// One shard.
pub struct Shard {
    pub id: ShardId,
    pub shared: Arc<Shared>,
    pub poll: Poll,
    pub mesh: Mesh,
    pub connections: Slab<Connection>,
    pub sessions: Slab<ShardSession>,
    /// Client id -> session slab key, for sessions on this shard.
    pub client_ids: super::client_ids::ClientIds,
    /// This shard's clients' subscriptions.
    pub trie: TopicTrie<LocalSub>,
    /// Recent match results of `trie` by topic name.
    pub match_cache: MatchCache<LocalSub>,
    /// This shard's members of shared subscriptions, by `$share/{group}/{filter}`.
    pub shared_members: HashMap<MqttString, SharedMembers>,
    /// Scratch: the (shard, shared subscription) targets of the message being routed.
    pub shared_targets: Vec<(ShardId, MqttString)>,
    /// State of the shared subscriptions' random strategy.
    pub random_state: u64,
    pub router: Router,
    /// SUBACKs waiting for the routing barrier, in epoch order.
    pub pending_acks: VecDeque<PendingAck>,
    /// Takeovers this shard asked another shard for, by request number.
    pub pending_takeovers: HashMap<u64, PendingTakeover>,
    pub next_request: u64,
    pub timers: Timers,
    /// Disk persistence of this shard's sessions and retained publishes (src/store; does
    /// nothing when persistence is off), and the acknowledgements it holds (persist.rs).
    pub store: crate::store::ShardStore,
    pub persist: super::persist::PersistState,
    pub next_connection_id: u64,
    pub next_generation: u64,
    pub now: Instant,
    /// `now` in the timer heap's millisecond ticks ([`Timers::ticks_ms`]).
    pub now_ms: u32,
    // Scratch space reused every turn.
    pub matches: Vec<LocalSub>,
    pub subscription_ids: Vec<u32>,
    pub layouts: LayoutCache,
    pub encode_buf: BytesMut,
    /// A message allocation kept for the next publish (`Shard::new_message`), emptied so that
    /// it pins no read buffer.
    pub spare_message: Option<SharedPublish>,
    /// Every socket read lands here first (`READ_CHUNK_BYTES`).
    pub read_scratch: Box<[u8]>,
    pub retained_scratch: Vec<SharedPublish>,
    pub inbox: Vec<ShardMsg>,
    /// Connections with bytes to write this turn.
    pub dirty: Vec<usize>,
    /// Connections to close at the end of this turn.
    pub closing: Vec<usize>,
    /// Connections paused by a full mesh channel.
    pub paused: Vec<usize>,
    /// Publishers paused for QoS 1/2 congestion: (connection key, connection id, what they wait
    /// for). At most one entry per connection (its `PAUSED_CONGESTION` bit).
    pub paused_congestion: Vec<(usize, u64, super::congestion::Blocker)>,
    /// Scratch for `resume_congested`.
    pub resumed_scratch: Vec<(usize, u64)>,
    /// Sessions on this shard that are `Congestion::Congested`; `Shared::congested[id]` says
    /// whether it is above zero.
    pub congested_sessions: usize,
    /// The first congested recipient met while routing the current publish.
    pub congestion_blocker: Option<super::congestion::Blocker>,
    /// Connections whose buffered input must be processed (after a takeover completed).
    pub ready: Vec<usize>,
    /// Connections that used their read budget this turn with bytes left to read.
    pub read_more: Vec<usize>,
    /// This shard's part of `max_buffered_bytes` and what its buffers and queues hold.
    pub memory: super::congestion::MemoryBudget,
}

impl Shard {
    pub fn new(id: ShardId, shared: Arc<Shared>, poll: Poll, mesh: Mesh) -> Shard {
        let shards = mesh.shards();
        let memory = super::congestion::MemoryBudget::new(shared.config.max_buffered_bytes, shards);
        let random_state = (shared.instance ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let epoch = Instant::now();
        Shard {
            id,
            shared,
            poll,
            mesh,
            connections: Slab::new(),
            sessions: Slab::new(),
            client_ids: Default::default(),
            trie: TopicTrie::new(),
            match_cache: MatchCache::new(),
            shared_members: HashMap::new(),
            shared_targets: Vec::new(),
            random_state,
            router: Router::new(id, shards),
            pending_acks: VecDeque::new(),
            pending_takeovers: HashMap::new(),
            next_request: 0,
            timers: Timers::new(epoch),
            store: crate::store::ShardStore::disabled(),
            persist: Default::default(),
            next_connection_id: 0,
            next_generation: 0,
            now: epoch,
            now_ms: 0,
            matches: Vec::new(),
            subscription_ids: Vec::new(),
            layouts: LayoutCache::default(),
            encode_buf: BytesMut::new(),
            spare_message: None,
            read_scratch: vec![0; READ_CHUNK_BYTES].into_boxed_slice(),
            retained_scratch: Vec::new(),
            inbox: Vec::new(),
            dirty: Vec::new(),
            closing: Vec::new(),
            paused: Vec::new(),
            paused_congestion: Vec::new(),
            resumed_scratch: Vec::new(),
            congested_sessions: 0,
            congestion_blocker: None,
            ready: Vec::new(),
            read_more: Vec::new(),
            memory,
        }
    }

    pub fn counters(&self) -> &ShardCounters {
        &self.shared.counters[self.id]
    }

    /// Runs the loop until shutdown.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            // A peer that clears its congestion flag after our last check wakes us only if it
            // sees us asleep: check the flags again after announcing the sleep.
            let may_sleep = timeout != Some(Duration::ZERO)
                && self.mesh.prepare_sleep()
                && !self.congestion_resumable()
                && !self.held_acks_releasable();
            let timeout = if may_sleep {
                timeout
            } else {
                Some(Duration::ZERO)
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    log::error!("shard {}: poll failed: {e}", self.id);
                }
            }
            self.mesh.woke_up();
            self.now = Instant::now();
            self.now_ms = self.timers.ticks_ms(self.now);
            if self.shared.shutdown.load(Ordering::SeqCst) {
                // Persistence: what was written is made durable before the process exits.
                self.store.sync_now();
                self.shutdown(&mut events);
                return;
            }
            // Before this turn's events, so that what they leave over waits a turn.
            self.read_leftovers();
            for event in events.iter() {
                if event.token() == WAKER_TOKEN {
                    continue;
                }
                let key = event.token().0;
                let hang_up = event.is_read_closed() || event.is_error();
                if event.is_readable() || hang_up {
                    self.handle_readable(key, !hang_up);
                }
                if event.is_writable() {
                    self.mark_dirty(key);
                }
            }
            self.turn();
        }
    }

    /// Everything after socket events.
    fn turn(&mut self) {
        self.handle_inbox();
        self.handle_timers();
        self.mesh.flush_overflow();
        self.resume_connections();
        self.resume_congested();
        // Persistence: the group commit goes before the turn's socket writes, so that in
        // `sync` mode every PUBACK/PUBREC and PUBLISH sent is covered by fsynced records.
        self.store_commit();
        self.flush_writes();
        self.finish_closes();
        self.check_memory();
        #[cfg(debug_assertions)]
        self.debug_check_buffered();
        self.mesh.wake_peers();
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty() || !self.read_more.is_empty() || self.mesh.inbox_pending() {
            return Some(Duration::ZERO);
        }
        // Persistence (`periodic`): wake up for the fsync that is due.
        let deadline = match (self.timers.next_deadline(), self.store.sync_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timer = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if self.mesh.has_overflow() {
            return Some(timer.map_or(OVERFLOW_RETRY, |t| t.min(OVERFLOW_RETRY)));
        }
        timer
    }

    /// Reads until `WouldBlock` or the turn's budget (`READS_PER_TURN_MAX`), handling each
    /// whole packet as it arrives. With `stop_on_short_read` (a readiness event that reported
    /// no hang-up or error) a short read ends it too: the socket was empty then, and later
    /// bytes raise a new edge-triggered event, so the `read` that could only say `WouldBlock`
    /// is saved.
    pub fn handle_readable(&mut self, key: usize, stop_on_short_read: bool) {
        for _ in 0..READS_PER_TURN_MAX {
            let Some(conn) = self.connections.get_mut(key) else {
                return;
            };
            if !conn.may_process() {
                return;
            }
            match conn.read_once(&mut self.read_scratch) {
                Ok(ReadOutcome::Data { drained }) => {
                    self.process_input(key);
                    if drained && stop_on_short_read {
                        if let Some(conn) = self.connections.get_mut(key) {
                            conn.release_read_buffer();
                        }
                        return;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => {
                    conn.release_read_buffer();
                    return;
                }
                Ok(ReadOutcome::Closed) => {
                    self.close(key, CloseReason::PeerClosed);
                    return;
                }
                Err(e) => {
                    self.close(key, CloseReason::Io(e.kind()));
                    return;
                }
            }
        }
        // Budget used up with bytes possibly left: no new edge will come for them.
        self.read_more.push(key);
    }

    /// Continues reading the connections that used their budget last turn, without stopping
    /// on a short read: a hang-up seen with the earlier event would not be reported again.
    fn read_leftovers(&mut self) {
        if self.read_more.is_empty() {
            return;
        }
        let mut keys = std::mem::take(&mut self.read_more);
        for key in keys.drain(..) {
            self.handle_readable(key, false);
        }
        // Reuse the allocation unless this turn refilled the list.
        if self.read_more.is_empty() {
            self.read_more = keys;
        }
    }

    /// Decodes and handles every whole packet in the read buffer, unless the connection gets
    /// paused, parked or closed on the way.
    pub fn process_input(&mut self, key: usize) {
        let max_packet_size = self.shared.config.max_packet_size;
        loop {
            let Some(conn) = self.connections.get_mut(key) else {
                return;
            };
            if !conn.may_process() {
                return;
            }
            let v5_connect = conn.state == ConnState::AwaitConnect
                && super::protocol::is_v5_connect(&conn.read_buf);
            match codec::decode_with_frame(&mut conn.read_buf, conn.version, max_packet_size) {
                Ok(Some((packet, frame))) => {
                    conn.last_received_ms = self.now_ms;
                    self.handle_packet(key, packet, frame);
                }
                Ok(None) => return,
                Err(e) => {
                    self.decode_failed(key, e, v5_connect);
                    return;
                }
            }
        }
    }

    /// A frame could not be decoded. `v5_connect`: it was an MQTT 5 CONNECT, answered with a
    /// CONNACK carrying the reason code (spec 4.13.1) instead of a bare close.
    fn decode_failed(&mut self, key: usize, error: codec::DecodeError, v5_connect: bool) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if let codec::DecodeError::PacketTooLarge { .. } = error {
            bump(&self.shared.counters[self.id].packets_too_large);
        }
        if conn.state == ConnState::AwaitConnect {
            if let codec::DecodeError::UnsupportedProtocolVersion(_) = error {
                // [MQTT-3.1.2-2]: CONNACK return code 0x01 (MQTT 5: 0x84), then close. The
                // level is unknown, so answer in the 3.1.1 format every version can read.
                let before = conn.out.len();
                conn.out.push_packet(
                    &super::protocol::connack_refused(ReasonCode::UnsupportedProtocolVersion),
                    codec::ProtocolVersion::V3_1_1,
                );
                self.memory.hold(conn.out.len() - before);
                self.mark_dirty(key);
                self.close(
                    key,
                    CloseReason::ConnectRefused(ReasonCode::UnsupportedProtocolVersion),
                );
                return;
            }
            if v5_connect {
                bump(&self.shared.counters[self.id].protocol_errors);
                let code = error.reason_code();
                log::warn!("refused CONNECT from {}: {error}", conn.peer);
                let before = conn.out.len();
                conn.out.push_packet(
                    &super::protocol::connack_refused(code),
                    codec::ProtocolVersion::V5,
                );
                self.memory.hold(conn.out.len() - before);
                self.mark_dirty(key);
                self.close(key, CloseReason::ConnectRefused(code));
                return;
            }
        }
        self.close(
            key,
            CloseReason::Protocol(error.reason_code(), error.to_string()),
        );
    }

    /// Queues a packet on a connection and schedules its write.
    pub fn send_packet(&mut self, key: usize, packet: &Packet) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        let before = conn.out.len();
        conn.out.push_packet(packet, conn.version);
        self.memory.hold(conn.out.len() - before);
        self.mark_dirty(key);
    }

    pub fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.connections.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// One write (until `WouldBlock`) per connection touched this turn.
    fn flush_writes(&mut self) {
        let low = self.shared.config.max_outgoing_bytes / 4;
        let qos0_backpressure = self.shared.config.qos0_backpressure;
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            let Some(conn) = self.connections.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Closing || conn.out.is_empty() {
                continue;
            }
            let before = conn.out.len();
            let result = conn.out.write_to(&mut conn.stream);
            let after = conn.out.len();
            self.memory.release(before - after);
            match result {
                Err(e) => self.close(key, CloseReason::Io(e.kind())),
                // QoS 0 backpressure: written down across the low watermark.
                Ok(_) if qos0_backpressure && after <= low && before > low => {
                    self.outgoing_written(key)
                }
                Ok(_) => {}
            }
        }
        self.dirty = dirty;
    }

    /// Closes a connection: DISCONNECT for MQTT 5 where the reason has a code, will and session
    /// handling now, socket teardown at the end of the turn.
    pub fn close(&mut self, key: usize, reason: CloseReason) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        if conn.state == ConnState::Connected && conn.version.is_v5() {
            if let Some(code) = reason.disconnect_code() {
                let mut packet = Packet::Disconnect(Disconnect {
                    reason_code: code,
                    properties: Properties::default(),
                });
                // A Reason String says what was wrong (DISCONNECT may carry one even with
                // Request Problem Information 0, [MQTT-3.1.2-29]); it is left out when it would
                // exceed the client's Maximum Packet Size ([MQTT-3.14.2-3]).
                if let CloseReason::Protocol(_, why) = &reason {
                    packet = with_reason_string(packet, why);
                    if packet.encoded_len(conn.version) > conn.client_max_packet_size as usize {
                        packet = Packet::Disconnect(Disconnect {
                            reason_code: code,
                            properties: Properties::default(),
                        });
                    }
                }
                let before = conn.out.len();
                conn.out.push_packet(&packet, conn.version);
                self.memory.hold(conn.out.len() - before);
            }
        }
        let was_connected = conn.state == ConnState::Connected;
        conn.state = ConnState::Closing;
        // The client id lives only in the session (not copied into every connection).
        let client_id = conn
            .session
            .and_then(|skey| self.sessions.get(skey))
            .map_or("", |s| s.session.state.client_id.as_str());
        match &reason {
            CloseReason::Protocol(..) | CloseReason::SlowConsumer => log::warn!(
                "disconnect client_id={client_id} addr={} shard={} reason={reason}",
                conn.peer,
                self.id
            ),
            _ if was_connected || !client_id.is_empty() => log::info!(
                "disconnect client_id={client_id} addr={} shard={} reason={reason}",
                conn.peer,
                self.id
            ),
            _ => log::debug!("close addr={} shard={} reason={reason}", conn.peer, self.id),
        }
        match reason {
            CloseReason::Protocol(code, _) if code != ReasonCode::PacketTooLarge => {
                bump(&self.shared.counters[self.id].protocol_errors)
            }
            CloseReason::KeepAliveTimeout => {
                bump(&self.shared.counters[self.id].keep_alive_timeouts)
            }
            CloseReason::SlowConsumer => {
                bump(&self.shared.counters[self.id].slow_consumer_disconnects)
            }
            _ => {}
        }
        let will = conn.will.take();
        let session = conn.session.take();
        self.closing.push(key);
        match session {
            Some(session) => self.detach_session(session, will),
            None => {
                // A connection parked for a takeover never got its CONNACK: its will is not
                // armed yet, so it is not published.
            }
        }
    }

    /// Tears closed connections down: a last write, FIN, then the socket is dropped.
    fn finish_closes(&mut self) {
        let mut closing = std::mem::take(&mut self.closing);
        for key in closing.drain(..) {
            if !self.connections.contains(key) {
                continue;
            }
            let mut conn = self.connections.remove(key);
            // Whatever the last write does not take goes with the connection.
            self.memory.release(conn.out.len());
            let _ = conn.out.write_to(&mut conn.stream);
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
            // Drain what the peer already sent so that close() does not answer with RST, which
            // could destroy the DISCONNECT just written.
            let mut sink = [0u8; 4096];
            for _ in 0..16 {
                match io::Read::read(&mut conn.stream, &mut sink) {
                    Ok(n) if n > 0 => continue,
                    _ => break,
                }
            }
            drop_one(&self.shared.counters[self.id].connections_open);
            self.shared.connections_open.fetch_sub(1, Ordering::SeqCst);
        }
        self.closing = closing;
    }

    /// Handles what other threads sent.
    fn handle_inbox(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.mesh.drain_into(&mut inbox, INBOX_BUDGET_PER_SOURCE);
        for msg in inbox.drain(..) {
            match msg {
                ShardMsg::Connection { stream, peer } => self.add_connection(stream, peer),
                ShardMsg::Publish(message) => {
                    self.deliver_local(&message, None);
                }
                ShardMsg::SharedPublish {
                    message,
                    share,
                    publisher_hash,
                    forwarded,
                } => self.deliver_shared(&share, &message, publisher_hash, forwarded),
                ShardMsg::RouteAdd {
                    from,
                    filters,
                    epoch,
                } => {
                    for filter in &filters {
                        self.router.remote_add(from, filter.as_str());
                    }
                    self.mesh.send(
                        from,
                        ShardMsg::RouteAck {
                            from: self.id,
                            epoch,
                        },
                    );
                }
                ShardMsg::RouteAck { from, epoch } => {
                    self.router.ack(from, epoch);
                    self.release_acks();
                }
                ShardMsg::RouteRemove { from, filters } => {
                    for filter in &filters {
                        self.router.remote_remove(from, filter.as_str());
                    }
                }
                ShardMsg::Takeover {
                    from,
                    request,
                    client_id,
                    keep_state,
                } => self.handle_takeover_request(from, request, client_id, keep_state),
                ShardMsg::TakeoverReply { request, state } => {
                    self.handle_takeover_reply(request, state)
                }
            }
        }
        self.inbox = inbox;
    }

    fn add_connection(&mut self, mut stream: mio::net::TcpStream, peer: std::net::SocketAddr) {
        let entry = self.connections.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::error!("shard {}: cannot register {peer}: {e}", self.id);
            self.shared.connections_open.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        let id = self.next_connection_id;
        self.next_connection_id += 1;
        entry.insert(Connection::new(stream, peer, id, self.now_ms));
        bump(&self.shared.counters[self.id].connections_open);
        let deadline = self.now + Duration::from_millis(self.shared.config.handshake_timeout_ms);
        self.timers.arm(deadline, TimerKind::Handshake, key, id);
        log::debug!("shard {}: accepted {peer}", self.id);
        // Data may already be waiting; the first readiness event will tell.
    }

    fn handle_timers(&mut self) {
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer.kind {
                TimerKind::Handshake => self.handshake_timer(timer.key, timer.generation),
                TimerKind::KeepAlive => self.keep_alive_timer(timer.key, timer.generation),
                TimerKind::WillDelay => {
                    let Some(session) = self.sessions.get_mut(timer.key) else {
                        continue;
                    };
                    if session.generation == timer.generation && session.connection.is_none() {
                        if let Some(will) = session.pending_will.take() {
                            // Persistence: the will is not published again after a restart.
                            self.store.will_published(&session.session.state);
                            self.publish_will(*will);
                        }
                    }
                }
                TimerKind::Congestion => self.congestion_timeout(timer.key, timer.generation),
                TimerKind::MemoryPressure => self.memory_pressure_timeout(timer.generation),
                TimerKind::SessionExpiry => {
                    let Some(session) = self.sessions.get(timer.key) else {
                        continue;
                    };
                    if session.generation == timer.generation && session.connection.is_none() {
                        bump(&self.shared.counters[self.id].sessions_expired);
                        self.end_session(timer.key);
                    }
                }
            }
        }
    }

    /// The handshake entry armed on accept fired: no CONNECT yet closes the connection; a
    /// connection that asked for it (`TIMER_KEEP_ALIVE_ON_HANDSHAKE`) gets its keep-alive
    /// checked.
    fn handshake_timer(&mut self, key: usize, connection_id: u64) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.id != connection_id {
            return;
        }
        let keep_alive = conn.timer & TIMER_KEEP_ALIVE_ON_HANDSHAKE != 0;
        conn.timer &= !(TIMER_HANDSHAKE_PENDING | TIMER_KEEP_ALIVE_ON_HANDSHAKE);
        match conn.state {
            ConnState::AwaitConnect => {
                bump(&self.shared.counters[self.id].handshake_timeouts);
                self.close(key, CloseReason::HandshakeTimeout);
            }
            ConnState::Connected if keep_alive => self.keep_alive_timer(key, connection_id),
            _ => {}
        }
    }

    /// [MQTT-3.1.2-24]: one and a half times the keep-alive without a packet closes the
    /// connection; otherwise the check is re-armed for when it would.
    fn keep_alive_timer(&mut self, key: usize, connection_id: u64) {
        let Some(conn) = self.connections.get(key) else {
            return;
        };
        if conn.id != connection_id
            || conn.state != ConnState::Connected
            || conn.keep_alive_secs == 0
        {
            return;
        }
        match conn.keep_alive_left_ms(self.now_ms) {
            None => self.close(key, CloseReason::KeepAliveTimeout),
            Some(left_ms) => {
                let deadline = self.now + Duration::from_millis(u64::from(left_ms));
                self.timers
                    .arm(deadline, TimerKind::KeepAlive, key, connection_id);
            }
        }
    }

    /// Resumes connections paused by mesh backpressure once the overflow drained, and processes
    /// input that waited while a connection was parked for a takeover.
    fn resume_connections(&mut self) {
        if !self.ready.is_empty() {
            let ready = std::mem::take(&mut self.ready);
            for &key in &ready {
                self.process_input(key);
                self.handle_readable(key, false);
            }
        }
        if self.paused.is_empty() || self.mesh.has_overflow() {
            return;
        }
        let paused = std::mem::take(&mut self.paused);
        for &key in &paused {
            if let Some(conn) = self.connections.get_mut(key) {
                conn.paused &= !PAUSED_MESH;
            }
            self.process_input(key);
            self.handle_readable(key, false);
        }
    }

    /// Marks a connection paused because a mesh channel is full.
    pub fn pause(&mut self, key: usize) {
        if let Some(conn) = self.connections.get_mut(key) {
            if conn.paused & PAUSED_MESH == 0 {
                conn.paused |= PAUSED_MESH;
                self.paused.push(key);
            }
        }
    }

    /// Graceful shutdown: DISCONNECT 0x8B to MQTT 5 clients, flush within the deadline, close.
    fn shutdown(&mut self, events: &mut Events) {
        let packet = Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::ServerShuttingDown,
            properties: Properties::default(),
        });
        for (_, conn) in self.connections.iter_mut() {
            if conn.state == ConnState::Connected && conn.version.is_v5() {
                conn.out.push_packet(&packet, conn.version);
            }
        }
        let deadline =
            Instant::now() + Duration::from_millis(self.shared.config.shutdown_timeout_ms);
        loop {
            let mut pending = false;
            for (_, conn) in self.connections.iter_mut() {
                if conn.out.is_empty() {
                    continue;
                }
                match conn.out.write_to(&mut conn.stream) {
                    Ok(true) => {}
                    Ok(false) => pending = true,
                    Err(_) => conn.out = Default::default(),
                }
            }
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            let _ = self.poll.poll(
                events,
                Some((deadline - now).min(Duration::from_millis(10))),
            );
        }
        for (_, conn) in self.connections.iter_mut() {
            let _ = conn.stream.shutdown(std::net::Shutdown::Both);
        }
        let open = self.connections.len();
        self.shared.counters[self.id]
            .connections_open
            .fetch_sub(open as u64, Ordering::Relaxed);
        self.shared
            .connections_open
            .fetch_sub(open, Ordering::SeqCst);
        self.connections.clear();
        log::debug!("shard {} stopped: {:?}", self.id, self.counters());
    }
}

/// `packet` (a DISCONNECT) with `why` as its Reason String, at most 256 bytes of it.
#[allow(clippy::field_reassign_with_default)] // the property sits behind DerefMut
fn with_reason_string(mut packet: Packet, why: &str) -> Packet {
    if let Packet::Disconnect(disconnect) = &mut packet {
        let mut end = why.len().min(256);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        disconnect.properties.reason_string = Some(MqttString::from(&why[..end]));
    }
    packet
}
