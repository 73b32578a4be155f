//! `ShardCore`: one shard's state (connections' protocol state, sessions, trie, routing
//! replica, timers) and the inputs and outputs through which the runtime drives it
//! ([`super::io`]). It owns no socket, no poll, no thread and reads no clock.

use super::connection::{
    ConnState, Connection, PAUSED_MESH, TIMER_HANDSHAKE_PENDING, TIMER_KEEP_ALIVE_ON_HANDSHAKE,
};
use super::keys::{ConnKey, SessionKey, Slots};
use super::mesh::{Mesh, ShardId};
use super::stats::{bump, drop_one, ShardCounters};
use super::timers::{TimerKind, Timers};
use super::Global;
use crate::broker::fault;
use crate::codec::{
    self, Ack, Disconnect, MqttString, Packet, PacketType, Properties, QoS, ReasonCode, SubAck,
};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How soon the runtime calls back while a mesh overflow waits for room.
pub(super) const OVERFLOW_RETRY: Duration = Duration::from_millis(1);

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
    pub connection: ConnKey,
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
    /// A packet the server had to send does not fit the client's Maximum Packet Size even
    /// without its optional parts (issue 16, `fidelity.rs`); nothing more is sent.
    ClientMaxPacketSize {
        size_bytes: usize,
        max: u32,
    },
    /// The transport failed (src/transport): a TLS alert or failed handshake, a refused
    /// WebSocket upgrade or bad frame, a bad PROXY header. Logged once, at info.
    Transport(String),
    /// Issue 11: a packet did not complete within `partial_packet_timeout_ms` per 64 KiB.
    PartialPacketTimeout,
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
            CloseReason::SlowConsumer => {
                f.write_str("outgoing buffer full and not read for the slow-consumer timeout")
            }
            CloseReason::ConnectRefused(code) => write!(f, "CONNECT refused ({code:?})"),
            CloseReason::ClientMaxPacketSize { size_bytes, max } => write!(
                f,
                "a {size_bytes}-byte packet exceeds the client's Maximum Packet Size {max}"
            ),
            CloseReason::Transport(why) => f.write_str(why),
            CloseReason::PartialPacketTimeout => f.write_str("partial packet timed out"),
        }
    }
}

/// One shard's sans-IO core.
pub struct ShardCore {
    pub(super) id: ShardId,
    pub(super) global: Arc<Global>,
    /// The configuration in force on this shard: the broker's at start, replaced by a reload
    /// between two turns (`set_config`, issue 15). Read instead of `global` so that a reload
    /// never takes a lock on the per-message path.
    pub(super) config: Arc<crate::broker::Config>,
    pub(super) mesh: Mesh,
    pub(super) connections: Slots<ConnKey, Connection>,
    /// Sessions on this shard, their client id index and takeover bookkeeping.
    pub(super) sessions: super::sessions::Sessions,
    /// Local subscriptions and delivery: trie, match cache, shared-subscription members,
    /// wire layouts and the scratch of the publish being routed.
    pub(super) delivery: super::delivery::Delivery,
    /// SUBACKs waiting for the routing barrier, in epoch order.
    pub(super) pending_acks: VecDeque<PendingAck>,
    /// Sessions moving to or from this shard, and what they are sent meanwhile (handover.rs).
    pub(super) handovers: super::sessions::handover::Handovers,
    pub(super) timers: Timers,
    /// Disk persistence of this shard's sessions and retained publishes (src/store; does
    /// nothing when persistence is off), and the acknowledgements it holds (persist.rs).
    pub(super) store: crate::store::ShardStore,
    pub(super) persist: super::sessions::persist::PersistState,
    pub(super) next_connection_id: u64,
    pub(super) now: Instant,
    /// `now` in the timer heap's millisecond ticks ([`Timers::ticks_ms`]).
    pub(super) now_ms: u32,
    /// Connections with bytes to write this turn.
    pub(super) dirty: Vec<ConnKey>,
    /// Connections to close at the end of this turn.
    pub(super) closing: Vec<ConnKey>,
    /// Paused publishers, congested sessions and the memory budget.
    pub(super) backpressure: super::backpressure::Backpressure,
    /// Connections whose buffered input must be processed (after a takeover completed).
    pub(super) ready: Vec<ConnKey>,
    /// Output: connections resumed (unpaused, unparked) whose socket the runtime must read
    /// again, since no new readiness event will come for bytes already there.
    pub(super) to_read: Vec<ConnKey>,
    /// Access control (issue 13): this shard's verified-login cache and password-check budget.
    pub(super) login: crate::auth::ShardLogin,
    /// Issue 11 (`retained_pacing.rs`): QoS 0 messages waiting for a full outgoing buffer.
    pub retained_backlog: super::delivery::retained_pacing::RetainedBacklogs,
}

impl ShardCore {
    /// A shard whose clock starts at `now`.
    pub fn new(id: ShardId, global: Arc<Global>, mesh: Mesh, now: Instant) -> ShardCore {
        let shards = mesh.shards();
        let config = global.config();
        let memory = super::backpressure::MemoryBudget::new(config.max_buffered_bytes, shards);
        let random_state = (global.instance ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1;
        let epoch = now;
        ShardCore {
            id,
            global,
            config,
            mesh,
            connections: Slots::default(),
            sessions: Default::default(),
            delivery: super::delivery::Delivery::new(id, shards, random_state),
            pending_acks: VecDeque::new(),
            handovers: Default::default(),
            timers: Timers::new(epoch),
            store: crate::store::ShardStore::disabled(),
            persist: Default::default(),
            next_connection_id: 0,
            now: epoch,
            now_ms: 0,
            dirty: Vec::new(),
            closing: Vec::new(),
            backpressure: super::backpressure::Backpressure::new(memory),
            ready: Vec::new(),
            to_read: Vec::new(),
            login: crate::auth::ShardLogin::new(),
            retained_backlog: Default::default(),
        }
    }

    pub fn counters(&self) -> &ShardCounters {
        &self.global.counters[self.id]
    }

    /// Decodes and handles every whole packet in the read buffer, unless the connection gets
    /// paused, parked or closed on the way.
    pub fn process_input(&mut self, key: ConnKey) {
        loop {
            let Some(conn) = self.connections.get_mut(key) else {
                return;
            };
            if !conn.may_process() {
                return;
            }
            // Issue 11 hook: replies this packet would cause must fit the outgoing limit.
            if self.pause_if_outgoing_full(key) {
                return;
            }
            let Some(conn) = self.connections.get_mut(key) else {
                return;
            };
            let v5_connect = conn.state == ConnState::AwaitConnect
                && super::connection::protocol::is_v5_connect(&conn.read_buf);
            let version = conn.version;
            // Issue 16: `max_packet_size` 0 means the protocol's own limit; issue 15: the one
            // this connection was announced, whatever a reload set since.
            let max_packet_size = conn.announced.max_packet_size;
            let decoded = match codec::split_frame(&mut conn.read_buf, version, max_packet_size) {
                Ok(Some((header, frame))) => {
                    // Fault isolation (`broker::fault`, policy 1): parsing is pure, so a panic
                    // in it is contained to this connection.
                    let parsed = fault::contain(|| {
                        fault::inject_decode(&frame);
                        codec::decode_frame(&header, &frame, version)
                    });
                    match parsed {
                        Ok(result) => result.map(|packet| Some((packet, frame))),
                        Err(panic) => {
                            self.decode_panicked(key, &frame, &panic);
                            return;
                        }
                    }
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match decoded {
                Ok(Some((packet, frame))) => {
                    bump(&self.global.counters[self.id].packets_received);
                    if let Some(conn) = self.connections.get_mut(key) {
                        conn.last_received_ms = self.now_ms;
                    }
                    // Issue 11 hook: the partial-packet clock restarts with the next packet.
                    self.partial_packet_done(key);
                    fault::inject_handle(&packet);
                    self.handle_packet(key, packet, frame);
                }
                Ok(None) => {
                    // Issue 11 hook: a started packet must complete in time.
                    self.partial_packet_pending(key);
                    return;
                }
                Err(e) => {
                    self.decode_failed(key, e, v5_connect);
                    return;
                }
            }
        }
    }

    /// Decoding `frame` panicked (a bug, contained: `broker::fault` policy 1): counted, logged
    /// with the input, and only this connection closed.
    #[cold]
    fn decode_panicked(&mut self, key: ConnKey, frame: &[u8], panic: &str) {
        bump(&self.global.counters[self.id].connection_panics);
        if let Some(conn) = self.connections.get(key) {
            log::error!(
                "shard {}: panic while decoding a packet from {}, connection closed: {panic}; \
                 input {}",
                self.id,
                conn.peer,
                fault::InputSample(frame)
            );
        }
        self.close(
            key,
            CloseReason::Protocol(
                ReasonCode::ImplementationSpecificError,
                "internal error while decoding this packet".into(),
            ),
        );
    }

    /// A frame could not be decoded. `v5_connect`: it was an MQTT 5 CONNECT, answered with a
    /// CONNACK carrying the reason code (spec 4.13.1) instead of a bare close.
    fn decode_failed(&mut self, key: ConnKey, error: codec::DecodeError, v5_connect: bool) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if let codec::DecodeError::PacketTooLarge { .. } = error {
            bump(&self.global.counters[self.id].packets_too_large);
        }
        if conn.state == ConnState::AwaitConnect {
            if let codec::DecodeError::UnsupportedProtocolVersion(_) = error {
                // [MQTT-3.1.2-2]: CONNACK return code 0x01 (MQTT 5: 0x84), then close. The
                // level is unknown, so answer in the 3.1.1 format every version can read.
                self.queue_bounded(
                    key,
                    &super::connection::protocol::connack_refused(
                        ReasonCode::UnsupportedProtocolVersion,
                    ),
                    codec::ProtocolVersion::V3_1_1,
                );
                self.close(
                    key,
                    CloseReason::ConnectRefused(ReasonCode::UnsupportedProtocolVersion),
                );
                return;
            }
            if v5_connect {
                bump(&self.global.counters[self.id].protocol_errors);
                let code = error.reason_code();
                log::warn!("refused CONNECT from {}: {error}", conn.peer);
                self.queue_bounded(
                    key,
                    &super::connection::protocol::connack_refused(code),
                    codec::ProtocolVersion::V5,
                );
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
    /// Sends PUBACK, PUBREC, PUBREL or PUBCOMP (`packet_type`) for `packet_id` with `code`.
    /// Issue 17: a plain one (every 3.x acknowledgement, an MQTT 5 one with Success) goes out as
    /// its four bytes without a packet being built: what `send_packet` would write for it
    /// (`codec::short_ack`).
    pub fn send_ack(
        &mut self,
        key: ConnKey,
        packet_type: PacketType,
        packet_id: u16,
        code: ReasonCode,
    ) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        // [MQTT-3.1.2-24]: four bytes fit any Maximum Packet Size but a nonsensical one below
        // four, which `send_packet` handles.
        if (code == ReasonCode::Success || !conn.version.is_v5())
            && conn.client_max_packet_size >= 4
        {
            let memory = self.backpressure.memory_mut();
            conn.out
                .push_ack(codec::short_ack(packet_type, packet_id), memory);
            bump(&self.global.counters[self.id].packets_sent);
            self.mark_dirty(key);
            return;
        }
        self.send_packet(key, &ack_packet(packet_type, packet_id, code));
    }

    pub fn send_packet(&mut self, key: ConnKey, packet: &Packet) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        // Issue 16 hook: the client's Maximum Packet Size holds for every packet
        // ([MQTT-3.1.2-24]); PUBLISH is fitted where it is encoded (fanout.rs).
        if conn.client_max_packet_size != u32::MAX
            && packet.encoded_len(conn.version) > conn.client_max_packet_size as usize
        {
            self.send_fitted(key, packet.clone());
            return;
        }
        let memory = self.backpressure.memory_mut();
        if let Err(error) = conn.out.push_packet(packet, conn.version, memory) {
            self.refuse_unencodable(key, packet, &error);
            return;
        }
        bump(&self.global.counters[self.id].packets_sent);
        self.mark_dirty(key);
    }

    /// A packet built from what a client sent was over a wire-format limit (each such value is
    /// bounded where the packet is built; this is the backstop): not sent, counted, logged, and
    /// the connection closed with 0x83 Implementation specific error (a refused CONNACK when
    /// it was the CONNACK, which a DISCONNECT must not precede).
    #[cold]
    fn refuse_unencodable(&mut self, key: ConnKey, packet: &Packet, error: &codec::EncodeError) {
        bump(&self.global.counters[self.id].packets_unencodable);
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        log::warn!("{}: packet not sent: {error}", conn.peer);
        let code = ReasonCode::ImplementationSpecificError;
        if let Packet::ConnAck(_) = packet {
            let version = conn.version;
            self.queue_bounded(
                key,
                &super::connection::protocol::connack_refused(code),
                version,
            );
            self.close(key, CloseReason::ConnectRefused(code));
        } else {
            self.close(
                key,
                CloseReason::Protocol(code, format!("cannot encode: {error}")),
            );
        }
    }

    pub fn mark_dirty(&mut self, key: ConnKey) {
        if let Some(conn) = self.connections.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Closes a connection: DISCONNECT for MQTT 5 where the reason has a code, will and session
    /// handling now, socket teardown at the end of the turn.
    pub fn close(&mut self, key: ConnKey, reason: CloseReason) {
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
                // Issue 16: not even the bare DISCONNECT when it exceeds the client's Maximum
                // Packet Size ([MQTT-3.1.2-24]); the connection just closes.
                if packet.encoded_len(conn.version) <= conn.client_max_packet_size as usize {
                    let memory = self.backpressure.memory_mut();
                    push_bounded(&mut conn.out, &packet, conn.version, memory);
                }
            }
        }
        let was_connected = conn.state == ConnState::Connected;
        conn.state = ConnState::Closing;
        // The client id lives only in the session (not copied into every connection).
        let client_id = conn
            .session
            .and_then(|skey| self.sessions.get(skey))
            .map_or("", |s| s.session.state.client_id.as_str());
        // Issue 16: client-supplied text is escaped in log lines (log_escape.rs).
        let client_id = crate::broker::log_escape::Escaped(client_id);
        match &reason {
            CloseReason::Transport(_) => log::info!(
                "close addr={} shard={} listener={} reason={reason}",
                conn.peer,
                self.id,
                conn.listener
            ),
            CloseReason::Protocol(..) | CloseReason::SlowConsumer => log::warn!(
                "disconnect client_id={client_id} addr={} shard={} listener={} reason={reason}",
                conn.peer,
                self.id,
                conn.listener
            ),
            _ if was_connected || !client_id.0.is_empty() => log::info!(
                "disconnect client_id={client_id} addr={} shard={} listener={} reason={reason}",
                conn.peer,
                self.id,
                conn.listener
            ),
            _ => log::debug!("close addr={} shard={} reason={reason}", conn.peer, self.id),
        }
        match reason {
            CloseReason::Protocol(code, _) if code != ReasonCode::PacketTooLarge => {
                bump(&self.global.counters[self.id].protocol_errors)
            }
            CloseReason::KeepAliveTimeout => {
                bump(&self.global.counters[self.id].keep_alive_timeouts)
            }
            CloseReason::SlowConsumer => {
                bump(&self.global.counters[self.id].slow_consumer_disconnects)
            }
            _ => {}
        }
        let will = conn.will.take();
        let session = conn.session.take();
        self.closing.push(key);
        match session {
            // On a takeover too: the will goes out now (Will Delay 0), or waits for its delay
            // or the end of the session; see "Wills on takeover" in fidelity.rs (issue 16).
            Some(session) => {
                // Operations ($SYS clients/connected): it was counted when its session attached.
                drop_one(&self.global.counters[self.id].clients_online);
                self.detach_session(session, will)
            }
            None => {
                // A connection parked for a takeover never got its CONNACK: its will is not
                // armed yet, so it is not published.
            }
        }
    }

    pub(super) fn handle_timers(&mut self) {
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer.kind {
                TimerKind::Handshake => {
                    self.handshake_timer(ConnKey::new(timer.key), timer.generation)
                }
                TimerKind::KeepAlive => {
                    self.keep_alive_timer(ConnKey::new(timer.key), timer.generation)
                }
                TimerKind::WillDelay => {
                    let Some(session) = self.sessions.get_mut(SessionKey::new(timer.key)) else {
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
                TimerKind::Congestion => {
                    self.congestion_timeout(SessionKey::new(timer.key), timer.generation)
                }
                TimerKind::MemoryPressure => self.memory_pressure_timeout(timer.generation),
                TimerKind::PartialPacket => {
                    self.partial_packet_timer(ConnKey::new(timer.key), timer.generation)
                }
                // Access control (issue 13, access.rs).
                TimerKind::TokenExpiry => {
                    self.token_expired(ConnKey::new(timer.key), timer.generation)
                }
                TimerKind::SessionExpiry => {
                    let Some(session) = self.sessions.get(SessionKey::new(timer.key)) else {
                        continue;
                    };
                    if session.generation == timer.generation && session.connection.is_none() {
                        bump(&self.global.counters[self.id].sessions_expired);
                        self.end_session(SessionKey::new(timer.key));
                    }
                }
            }
        }
    }

    /// The handshake entry armed on accept fired: no CONNECT yet closes the connection; a
    /// connection that asked for it (`TIMER_KEEP_ALIVE_ON_HANDSHAKE`) gets its keep-alive
    /// checked.
    fn handshake_timer(&mut self, key: ConnKey, connection_id: u64) {
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
                bump(&self.global.counters[self.id].handshake_timeouts);
                self.close(key, CloseReason::HandshakeTimeout);
            }
            ConnState::Connected if keep_alive => self.keep_alive_timer(key, connection_id),
            _ => {}
        }
    }

    /// [MQTT-3.1.2-24]: one and a half times the keep-alive without a packet closes the
    /// connection; otherwise the check is re-armed for when it would.
    fn keep_alive_timer(&mut self, key: ConnKey, connection_id: u64) {
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
                    .arm(deadline, TimerKind::KeepAlive, key.index(), connection_id);
            }
        }
    }

    /// Marks a connection paused because a mesh channel is full.
    pub fn pause(&mut self, key: ConnKey) {
        if let Some(conn) = self.connections.get_mut(key) {
            if conn.paused & PAUSED_MESH == 0 {
                conn.paused |= PAUSED_MESH;
                self.backpressure.pause_on_mesh(key);
            }
        }
    }
}

impl ShardCore {
    /// Queues a packet built from bounded values only (see [`push_bounded`]) on `key` and
    /// schedules the write (the bytes are counted by `OutBuf` itself, `connection/outgoing.rs`).
    pub(super) fn queue_bounded(
        &mut self,
        key: ConnKey,
        packet: &Packet,
        version: codec::ProtocolVersion,
    ) {
        let Some(conn) = self.connections.get_mut(key) else {
            return;
        };
        push_bounded(
            &mut conn.out,
            packet,
            version,
            self.backpressure.memory_mut(),
        );
        bump(&self.global.counters[self.id].packets_sent);
        self.mark_dirty(key);
    }
}

/// Queues a packet built from bounded values only (a CONNACK refusal without properties, a
/// DISCONNECT whose Reason String is at most 256 bytes): it always encodes, so a failure is a
/// bug, logged rather than asserted (the connection is being closed anyway).
pub(super) fn push_bounded(
    out: &mut super::connection::OutBuf,
    packet: &Packet,
    version: codec::ProtocolVersion,
    memory: &mut super::backpressure::MemoryBudget,
) {
    if let Err(error) = out.push_packet(packet, version, memory) {
        log::error!("bug: a packet of bounded size did not encode: {error}");
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

/// The acknowledgement `packet_type` (PUBACK, PUBREC, PUBREL, else PUBCOMP) for `packet_id`
/// with `code` and no properties.
pub(crate) fn ack_packet(packet_type: PacketType, packet_id: u16, code: ReasonCode) -> Packet {
    let ack = Ack {
        packet_id,
        reason_code: code,
        properties: Properties::default(),
    };
    match packet_type {
        PacketType::PubAck => Packet::PubAck(ack),
        PacketType::PubRec => Packet::PubRec(ack),
        PacketType::PubRel => Packet::PubRel(ack),
        _ => Packet::PubComp(ack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::Config;
    use crate::codec::{Ack, ConnAck, Connect, MoreProperties, ProtocolVersion};
    use bytes::BytesMut;

    /// A one-shard core and a connection on it.
    fn core_with_connection() -> (ShardCore, ConnKey, Arc<Global>) {
        let global = Global::new(Config::default(), 0).expect("global");
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let mesh = Mesh::new(0, vec![tx], crate::broker::core::mesh::MeshLinks::new(1));
        let mut core = ShardCore::new(0, global.clone(), mesh, Instant::now());
        let key = core.handle_accept("127.0.0.1:1".parse().expect("address"));
        (core, key, global)
    }

    /// What the core wrote to `key` before closing it.
    fn written_at_close(core: &mut ShardCore, key: ConnKey) -> Vec<Packet> {
        let (closed, mut out) = core.poll_close().expect("the connection is closed");
        assert_eq!(closed, key);
        let mut wire = Vec::new();
        out.write_to(&mut wire).expect("written");
        let mut wire = BytesMut::from(&wire[..]);
        let mut packets = Vec::new();
        while let Some(packet) =
            codec::decode(&mut wire, ProtocolVersion::V5, u32::MAX).expect("valid packets")
        {
            packets.push(packet);
        }
        packets
    }

    fn too_long() -> Properties {
        Properties::from(MoreProperties {
            reason_string: Some(MqttString::from("r".repeat(65_536))),
            response_information: Some(MqttString::from("i".repeat(65_536))),
            ..MoreProperties::default()
        })
    }

    /// The backstop behind every bounded value: a CONNACK that cannot be encoded becomes a
    /// refused CONNACK 0x83; any other packet closes the connection with DISCONNECT 0x83. Both
    /// counted in `packets_unencodable`, and nothing invalid is written.
    #[test]
    fn a_packet_that_cannot_be_encoded_is_not_sent_and_closes_the_connection() {
        let (mut core, key, global) = core_with_connection();
        // As while an MQTT 5 CONNECT is being authenticated (a 3.x CONNACK has no properties).
        if let Some(conn) = core.connections.get_mut(key) {
            conn.version = ProtocolVersion::V5;
        }
        let connack = Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::Success,
            properties: too_long(),
        });
        core.send_packet(key, &connack);
        let written = written_at_close(&mut core, key);
        assert!(
            matches!(&written[..], [Packet::ConnAck(c)] if c.reason_code == ReasonCode::ImplementationSpecificError),
            "{written:?}"
        );
        assert_eq!(global.stats().packets_unencodable, 1);

        let (mut core, key, _) = core_with_connection();
        let connect = Connect {
            protocol_version: ProtocolVersion::V5,
            client_id: MqttString::from("c"),
            clean_start: true,
            ..Connect::default()
        };
        let mut wire = BytesMut::new();
        Packet::Connect(Box::new(connect))
            .encode(ProtocolVersion::V5, &mut wire)
            .expect("encodes");
        core.handle_bytes(key, &wire);
        let puback = Packet::PubAck(Ack {
            packet_id: 1,
            reason_code: ReasonCode::Success,
            properties: too_long(),
        });
        core.send_packet(key, &puback);
        let written = written_at_close(&mut core, key);
        assert!(
            matches!(&written[..], [Packet::ConnAck(c), Packet::Disconnect(d)]
                if c.reason_code == ReasonCode::Success
                    && d.reason_code == ReasonCode::ImplementationSpecificError),
            "{written:?}"
        );
        assert_eq!(core.global.stats().packets_unencodable, 1);
    }
}
