//! One client connection's protocol state: its read buffer and its outgoing buffer
//! ([`OutBuf`], `outgoing.rs`, with its byte accounting); the socket is the runtime's, kept under
//! the same key. The read buffer is released once a read finds the socket empty, the outgoing
//! buffer when written out, so an idle connection holds no buffer memory.

// Access control (issue 13): the core's hooks into `crate::auth`.
pub(crate) mod access;
pub(crate) mod authn;
pub(crate) mod dispatch;
pub(crate) mod fidelity;
pub mod outgoing;
pub mod protocol;

pub use outgoing::{OutBuf, Unsent};

use crate::broker::core::keys::SessionKey;
use crate::codec::{MqttString, ProtocolVersion, Publish};
use bytes::BytesMut;
use std::fmt;
use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Accepted; the first packet must be CONNECT ([MQTT-3.1.0-1]).
    AwaitConnect,
    /// CONNECT accepted, CONNACK not sent yet: waiting for another shard to hand over the
    /// session, or for the route barrier of the subscriptions the session brought along.
    Parked,
    /// CONNACK sent.
    Connected,
    /// Being closed at the end of this loop turn.
    Closing,
}

/// A will message armed by CONNECT.
#[derive(Clone, Debug)]
pub struct WillMessage {
    /// Becomes a [`crate::broker::core::sessions::session::Message`] when published (its expiry runs from then).
    pub message: Publish,
    /// MQTT 5 Will Delay Interval, seconds (0 for 3.x).
    pub delay_secs: u32,
}

/// `Connection::paused` bit: a mesh channel was full.
pub const PAUSED_MESH: u8 = 1;
/// `Connection::paused` bit: a recipient of its QoS 1/2 publishes was congested.
pub const PAUSED_CONGESTION: u8 = 2;
/// `Connection::paused` bit (issue 11, docs/memory.md): its outgoing buffer reached
/// `max_outgoing_bytes`, so the replies its next packets would cause could not be written;
/// cleared when the buffer is written down to half.
pub const PAUSED_OUTGOING: u8 = 4;

/// `Connection::timer` bit: the handshake timer entry armed on accept has not fired yet.
pub const TIMER_HANDSHAKE_PENDING: u8 = 1;
/// `Connection::timer` bit: the pending handshake entry checks the keep-alive when it fires
/// (instead of a second entry in the heap, see [`Connection::timer`]).
pub const TIMER_KEEP_ALIVE_ON_HANDSHAKE: u8 = 2;
/// `Connection::timer` bit (issue 11, `overload.rs`): a packet started and has not completed
/// since `partial_since_ms`.
pub const TIMER_PARTIAL_STARTED: u8 = 4;
/// `Connection::timer` bit (issue 11): a partial-packet timer entry is armed (at most one).
pub const TIMER_PARTIAL_ARMED: u8 = 8;

/// The peer's address, for logs, in 16 bytes instead of `SocketAddr`'s 32: IPv4 inline, IPv6
/// (with its flow info and scope id) boxed, since most idle connections are IPv4 and every
/// connection holds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    V4 { ip: [u8; 4], port: u16 },
    V6(Box<SocketAddrV6>),
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        match addr {
            SocketAddr::V4(v4) => PeerAddr::V4 {
                ip: v4.ip().octets(),
                port: v4.port(),
            },
            SocketAddr::V6(v6) => PeerAddr::V6(Box::new(v6)),
        }
    }
}

impl PeerAddr {
    /// The address as a `SocketAddr`.
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            PeerAddr::V4 { ip, port } => SocketAddr::new(IpAddr::from(*ip), *port),
            PeerAddr::V6(v6) => SocketAddr::V6(**v6),
        }
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.socket_addr().fmt(f)
    }
}

/// Limits a connection was told (its CONNACK; before CONNECT, the configuration at accept) that a
/// reload must not tighten under it (issue 15): a client keeps within what it was announced,
/// and being closed for it later would break [MQTT-3.2.2-11], [MQTT-3.2.2-14], [MQTT-3.3.2-9]
/// and the Maximum Packet Size it was given. Eight bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announced {
    /// Largest packet read from the client, bytes (`max_packet_size`, 0 there = `u32::MAX`).
    pub max_packet_size: u32,
    /// Topic Alias Maximum: aliases the client may set.
    pub topic_alias_maximum: u16,
    /// Maximum QoS of the client's PUBLISH packets.
    pub max_qos: u8,
    /// Retain Available.
    pub retain_available: bool,
}

impl Announced {
    /// What `config` announces.
    pub fn of(config: &crate::broker::Config) -> Announced {
        Announced {
            max_packet_size: fidelity::inbound_packet_limit(config),
            topic_alias_maximum: config.topic_alias_maximum,
            max_qos: config.max_qos,
            retain_available: config.retain_available,
        }
    }
}

impl Default for Announced {
    /// The defaults' announcement, for connections built outside a shard (tests).
    fn default() -> Announced {
        Announced::of(&crate::broker::Config::default())
    }
}

/// One client connection on a shard.
pub struct Connection {
    /// The client's address: the socket's peer, or the one a PROXY header named.
    pub peer: PeerAddr,
    /// The listener it was accepted on (index into `Global::listeners`, src/transport), for
    /// per-listener settings such as `use_identity_as_username`.
    pub listener: crate::transport::ListenerId,
    /// Unique on this shard, never reused: guards timers and deferred work against slab reuse.
    pub id: u64,
    pub state: ConnState,
    pub version: ProtocolVersion,
    pub read_buf: BytesMut,
    pub out: OutBuf,
    /// The session slab key once CONNECT was accepted.
    pub session: Option<SessionKey>,
    /// Keep-alive granted, seconds, zero for none (the client id is in the session only).
    pub keep_alive_secs: u16,
    /// When the last packet arrived, in the shard's wrapping millisecond ticks
    /// ([`crate::broker::core::timers::Timers::ticks_ms`]): 4 bytes instead of an `Instant`'s 16. Only
    /// differences are used, and they stay far below the 49.7 days a `u32` wraps at (the
    /// keep-alive check runs at most 1.5 x 65,535 s after the packet).
    pub last_received_ms: u32,
    /// Issue 11 (`overload.rs`): when the packet being received started, in the same ticks;
    /// meaningful while the [`TIMER_PARTIAL_STARTED`] bit is set.
    pub partial_since_ms: u32,
    /// Issue 11 (`overload.rs`): when the outgoing buffer was last below `max_outgoing_bytes`
    /// or last had bytes written, in whole seconds of the shard's ticks, wrapping (the
    /// slow-consumer clock; 2 bytes keep the struct within its size bound, and the timeout is
    /// at most an hour, far below the 18 hours it wraps at).
    pub out_progress_secs: u16,
    /// [`TIMER_HANDSHAKE_PENDING`] and [`TIMER_KEEP_ALIVE_ON_HANDSHAKE`] bits. An idle
    /// connection holds one timer entry, not two: when its keep-alive timeout is at least the
    /// handshake timeout, the handshake entry (whose deadline is then the earlier one) checks
    /// the keep-alive when it fires and re-arms as the keep-alive timer.
    pub timer: u8,
    /// The client's MQTT 5 Maximum Packet Size (u32::MAX when unset).
    pub client_max_packet_size: u32,
    /// What the broker announced to it (issue 15: kept across reloads).
    pub announced: Announced,
    /// Boxed: most connections have none, and the struct stays small for idle connections.
    pub will: Option<Box<WillMessage>>,
    /// Why reading stopped, 0 = not paused: [`PAUSED_MESH`] (a mesh channel was full) and
    /// [`PAUSED_CONGESTION`] (a recipient of its QoS 1/2 publishes was congested) bits. One byte
    /// for both keeps the struct within its size bound.
    pub paused: u8,
    /// In the shard's list of connections to write at the end of the turn.
    pub dirty: bool,
    /// A SUBACK waits for the routing barrier: later packets wait too, so that the client sees
    /// its answers in the order of its requests.
    pub suback_pending: bool,
    /// MQTT 5 state most connections never use (topic aliases, enhanced authentication),
    /// allocated on first use so that an idle connection stays small.
    pub extras: Option<Box<ConnectionExtras>>,
}

/// The rarely used per-connection MQTT 5 state (see [`Connection::extras`]).
#[derive(Debug, Default)]
pub struct ConnectionExtras {
    /// Topic aliases the client set, index alias - 1; at most our Topic Alias Maximum entries
    /// ([MQTT-3.3.2-9]).
    pub topic_aliases_in: Vec<Option<MqttString>>,
    /// Topic aliases the broker sends this client (MQTT 5 with Topic Alias Maximum > 0).
    pub topic_aliases_out: OutgoingAliases,
    /// An enhanced-authentication exchange in progress (CONNECT waiting for AUTH, or a
    /// re-authentication).
    pub auth: Option<Box<crate::broker::core::connection::authn::AuthProgress>>,
    /// The Authentication Method and identity this connection authenticated with.
    pub auth_method: Option<MqttString>,
    pub auth_username: Option<String>,
    /// The client sent Request Problem Information 0 ([MQTT-3.1.2-29]).
    pub no_problem_information: bool,
    /// The verified TLS client certificate's identity (subject CN, else first DNS/email/URI
    /// SAN), set by the runtime when the handshake completes (src/transport). With the
    /// listener's `use_identity_as_username` it is the MQTT username and the login.
    pub certificate_identity: Option<Box<str>>,
}

impl Connection {
    /// The MQTT 5 extras, allocated on first use.
    pub fn extras_mut(&mut self) -> &mut ConnectionExtras {
        self.extras.get_or_insert_with(Default::default)
    }

    /// Whether Reason Strings may go on acknowledgements (MQTT 5, [MQTT-3.1.2-29]).
    pub fn wants_problem_information(&self) -> bool {
        self.version.is_v5()
            && !self
                .extras
                .as_ref()
                .is_some_and(|e| e.no_problem_information)
    }

    /// The verified client certificate's identity (see
    /// [`ConnectionExtras::certificate_identity`]).
    pub fn certificate_identity(&self) -> Option<&str> {
        self.extras.as_ref()?.certificate_identity.as_deref()
    }

    /// Whether an enhanced-authentication exchange is in progress.
    pub fn authenticating(&self) -> bool {
        self.extras.as_ref().is_some_and(|e| e.auth.is_some())
    }

    /// A connection accepted at `now_ms` (shard ticks), its handshake timer armed.
    pub fn new(peer: SocketAddr, id: u64, now_ms: u32) -> Connection {
        Connection {
            peer: PeerAddr::from(peer),
            listener: 0,
            id,
            state: ConnState::AwaitConnect,
            version: ProtocolVersion::V3_1_1,
            read_buf: BytesMut::new(),
            out: OutBuf::default(),
            session: None,
            keep_alive_secs: 0,
            last_received_ms: now_ms,
            partial_since_ms: now_ms,
            out_progress_secs: (now_ms / 1000) as u16,
            timer: TIMER_HANDSHAKE_PENDING,
            client_max_packet_size: u32::MAX,
            announced: Announced::default(),
            will: None,
            paused: 0,
            dirty: false,
            suback_pending: false,
            extras: None,
        }
    }

    /// Drops the read buffer's memory when nothing is buffered and room is left in it. An
    /// emptied buffer with no room left (its last frame ended at its capacity, as when a read
    /// is sized to what arrived) is kept: it still shares the allocation its frames came from,
    /// and the next read reuses that allocation when they are gone instead of allocating anew
    /// (issue 17: measured, dropping it costs an allocation and a free per read at a paced
    /// rate). It holds at most one read's bytes.
    pub fn release_read_buffer(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
    }

    /// Whether input may be read and handled now (not closing, paused, parked for a takeover
    /// or waiting for a SUBACK barrier).
    pub fn may_process(&self) -> bool {
        !(self.state == ConnState::Closing
            || self.state == ConnState::Parked
            || self.paused != 0
            || self.suback_pending)
    }

    /// [MQTT-3.1.2-24]: one and a half times the keep-alive without a packet closes the
    /// connection. At most 98,302,500 ms.
    pub fn keep_alive_timeout_ms(&self) -> u32 {
        u32::from(self.keep_alive_secs) * 1500
    }

    /// The keep-alive check at `now_ms`: `None` when the keep-alive timed out, else the
    /// milliseconds until it would. Ticks are whole milliseconds, so a timeout is declared
    /// only once more than `keep_alive_timeout_ms` ticks have passed: never early, at most
    /// 2 ms late.
    pub fn keep_alive_left_ms(&self, now_ms: u32) -> Option<u32> {
        let elapsed_ms = now_ms.wrapping_sub(self.last_received_ms);
        let limit_ms = self.keep_alive_timeout_ms() + 1;
        (elapsed_ms < limit_ms).then(|| limit_ms - elapsed_ms)
    }

    /// Whether CONNACK went out (packets other than CONNECT/CONNACK are allowed).
    pub fn is_connected(&self) -> bool {
        self.state == ConnState::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle connection costs its `Connection` and `ShardSession` slab entries plus a few map
    /// entries; these bounds keep the per-connection memory near Mosquitto's (BENCHMARKS.md).
    #[test]
    fn connection_and_session_structs_stay_small() {
        let connection = std::mem::size_of::<Connection>();
        let session = std::mem::size_of::<crate::broker::core::sessions::ShardSession>();
        println!("Connection {connection} bytes, ShardSession {session} bytes");
        // The socket is the runtime's (4 bytes a slot in release builds, 16 in debug ones);
        // the session key is a u32 (`keys::SessionKey`).
        // The listener id (src/transport, for per-listener settings) takes one more word.
        // +8 bytes for the limits its CONNACK announced (issue 15, `Connection::announced`),
        // which a reload must not tighten under a connected client.
        assert!(connection <= 184, "Connection grew to {connection} bytes");
        // +8 bytes for the access-control state pointer (issue 13, `ShardSession::access`).
        // +8 bytes for the queue's byte count (issue 11, `Session::queued_bytes`), as
        // Mosquitto's per-context `msg_bytes`: a bound per session needs it.
        assert!(session <= 240, "ShardSession grew to {session} bytes");
        assert!(std::mem::size_of::<Option<Box<WillMessage>>>() == 8);
        assert!(std::mem::size_of::<PeerAddr>() == 16);
    }

    #[test]
    fn peer_addresses_print_as_socket_addresses() {
        for text in ["127.0.0.1:1883", "[::1]:8883", "[fe80::1%2]:1883"] {
            let addr: SocketAddr = text.parse().unwrap();
            let peer = PeerAddr::from(addr);
            assert_eq!(peer.socket_addr(), addr);
            assert_eq!(peer.to_string(), addr.to_string());
        }
        assert!(matches!(
            PeerAddr::from("10.1.2.3:4".parse::<SocketAddr>().unwrap()),
            PeerAddr::V4 {
                ip: [10, 1, 2, 3],
                port: 4
            }
        ));
    }

    #[test]
    fn keep_alive_expires_after_more_than_one_and_a_half_times() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        // Last packet just before the tick counter wraps.
        let last_ms = u32::MAX - 100;
        let mut conn = Connection::new(addr, 0, last_ms);
        conn.keep_alive_secs = 2;
        assert_eq!(conn.keep_alive_timeout_ms(), 3000);
        assert_eq!(conn.keep_alive_left_ms(last_ms), Some(3001));
        assert_eq!(conn.keep_alive_left_ms(last_ms.wrapping_add(2999)), Some(2));
        assert_eq!(conn.keep_alive_left_ms(last_ms.wrapping_add(3000)), Some(1));
        assert_eq!(conn.keep_alive_left_ms(last_ms.wrapping_add(3001)), None);
        assert_eq!(conn.keep_alive_left_ms(last_ms.wrapping_add(90_000)), None);
        conn.keep_alive_secs = u16::MAX;
        assert_eq!(conn.keep_alive_timeout_ms(), 98_302_500);
    }
}

/// Most outgoing topic aliases kept per connection, whatever larger Topic Alias Maximum the
/// client allows (each one holds a topic name; looked up by a linear scan).
pub const OUTGOING_TOPIC_ALIASES_MAX: u16 = 64;

/// The topic aliases the broker sends one MQTT 5 connection ([MQTT-3.3.2-11]: never above the
/// client's Topic Alias Maximum): the most recently used topics keep their alias, the least
/// recently used one is reassigned when all are taken.
#[derive(Debug, Default)]
pub struct OutgoingAliases {
    /// Aliases usable: min(client's Topic Alias Maximum, [`OUTGOING_TOPIC_ALIASES_MAX`]).
    max: u16,
    /// (topic, alias, last use); alias = index + 1.
    entries: Vec<(MqttString, u64)>,
    clock: u64,
}

impl OutgoingAliases {
    pub fn new(client_topic_alias_maximum: u16) -> OutgoingAliases {
        OutgoingAliases {
            max: client_topic_alias_maximum.min(OUTGOING_TOPIC_ALIASES_MAX),
            entries: Vec::new(),
            clock: 0,
        }
    }

    /// Whether aliases may be sent at all.
    pub fn enabled(&self) -> bool {
        self.max > 0
    }

    /// The alias to send `topic` with and whether the client already knows it (then the topic
    /// is left out). Nothing changes until [`OutgoingAliases::commit`].
    pub fn plan(&self, topic: &str) -> Option<(u16, bool)> {
        if self.max == 0 {
            return None;
        }
        if let Some(i) = self.entries.iter().position(|(t, _)| t.as_str() == topic) {
            return Some((i as u16 + 1, true));
        }
        if self.entries.len() < usize::from(self.max) {
            return Some((self.entries.len() as u16 + 1, false));
        }
        let lru = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, used))| *used)
            .map(|(i, _)| i)?;
        Some((lru as u16 + 1, false))
    }

    /// Records that `alias` now names `topic` (the PUBLISH carrying both was written).
    pub fn commit(&mut self, topic: &MqttString, alias: u16) {
        self.clock += 1;
        let index = usize::from(alias.saturating_sub(1));
        if index < self.entries.len() {
            if self.entries[index].0 != *topic {
                self.entries[index].0 = MqttString::from(topic.as_str());
            }
            self.entries[index].1 = self.clock;
        } else if index == self.entries.len() && index < usize::from(self.max) {
            // An owned copy: the entry must not pin a publisher's read buffer.
            self.entries
                .push((MqttString::from(topic.as_str()), self.clock));
        }
    }
}

#[cfg(test)]
mod alias_tests {
    use super::*;

    #[test]
    fn outgoing_aliases_reuse_hot_topics_and_evict_the_least_recent() {
        let mut aliases = OutgoingAliases::new(2);
        let (a, b, c) = (
            MqttString::from("a"),
            MqttString::from("b"),
            MqttString::from("c"),
        );
        assert_eq!(aliases.plan("a"), Some((1, false)));
        aliases.commit(&a, 1);
        assert_eq!(aliases.plan("a"), Some((1, true)));
        assert_eq!(aliases.plan("b"), Some((2, false)));
        aliases.commit(&b, 2);
        aliases.commit(&a, 1);
        // "b" is the least recently used: "c" takes its alias.
        assert_eq!(aliases.plan("c"), Some((2, false)));
        aliases.commit(&c, 2);
        assert_eq!(aliases.plan("b"), Some((1, false)));
        assert_eq!(aliases.plan("c"), Some((2, true)));
        assert_eq!(OutgoingAliases::new(0).plan("a"), None);
        assert_eq!(OutgoingAliases::new(1000).max, OUTGOING_TOPIC_ALIASES_MAX);
    }
}
