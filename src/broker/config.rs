//! Broker configuration: every limit in one place, each with its range and default.
//!
//! `Config::default()` gives the documented defaults; `Config::from_toml_str` loads a TOML file
//! (any field may be omitted); the command line overrides both.

use serde::Deserialize;
use std::net::SocketAddr;

/// Every setting and limit of the broker. Field docs give the range and the default.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses to listen on, one acceptor thread each. Default `127.0.0.1:1883` (loopback only,
    /// as Mosquitto 2 does). Port 0 picks a free port; `BrokerHandle::local_addrs` reports it.
    pub listen: Vec<SocketAddr>,
    /// Number of shard threads, 1..=[`SHARDS_MAX`]. Default: the number of cores.
    pub shards: usize,
    /// Pin shard `i` to core `i % cores`. Default false.
    pub pin_cores: bool,
    /// Maximum simultaneous connections over all listeners, 1..=10,000,000. Default 100,000.
    /// Connections over the limit are closed at accept (counted in `connections_rejected`).
    pub max_connections: usize,
    /// Maximum MQTT packet size accepted from clients in bytes (fixed header included),
    /// 16..=268,435,460, or 0 for none but the protocol's (as Mosquitto's `max_packet_size 0`).
    /// Default 1 MiB. Advertised to MQTT 5 clients as Maximum Packet Size when below the
    /// protocol maximum.
    pub max_packet_size: u32,
    /// Outgoing in-flight window (unacknowledged QoS 1/2 messages per client), 1..=65,535.
    /// Default 4,096 (issue 17, chosen by measurement: BENCHMARKS.md "Issue 17"). MQTT 5
    /// clients get min(their Receive Maximum, this).
    pub max_inflight: u16,
    /// Incoming QoS 2 messages awaiting PUBREL per client, 1..=65,535. Default 1,024. Advertised
    /// to MQTT 5 clients as Receive Maximum; exceeding it is a protocol error (0x93).
    pub receive_maximum: u16,
    /// Messages queued per session while offline or while the in-flight window is full,
    /// 0..=10,000,000. Default 1,000. Over the limit new messages are dropped and counted.
    pub max_queued_messages: usize,
    /// Queue QoS 0 messages for offline sessions too. Default false.
    pub queue_qos0: bool,
    /// Maximum subscriptions per client, 1..=1,000,000. Default 1,000. Over the limit a filter
    /// is refused (0x97 Quota exceeded, 0x80 for MQTT 3.x).
    pub max_subscriptions_per_client: usize,
    /// Maximum levels of a topic name or filter, 1..=65,535. Default 128.
    pub max_topic_levels: usize,
    /// Per-connection outgoing buffer limit in bytes, 1 KiB..=1 GiB. Default 1 MiB. Over it QoS 0
    /// messages to that client are dropped (counted), QoS 1/2 ones wait in its session queue,
    /// and the client is not read (issue 11, docs/memory.md); a full buffer unwritten for
    /// `slow_consumer_timeout_ms` disconnects it.
    pub max_outgoing_bytes: usize,
    /// Time allowed between TCP accept and CONNECT, in milliseconds, 1..=3,600,000. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// Largest keep-alive the broker accepts in seconds, 1..=65,535. Default 65,535. MQTT 5
    /// clients asking more (or 0) get Server Keep Alive; MQTT 3.x clients asking more are
    /// rejected with return code 2, as Mosquitto does.
    pub max_keep_alive_secs: u16,
    /// Maximum retained messages held, 0..=100,000,000. Default 100,000. Over it a new retained
    /// topic is not stored (counted); replacing or clearing an existing one always works.
    pub max_retained_messages: usize,
    /// Capacity of each shard-to-shard channel in messages, 1..=1,000,000. Default 4,096 (the
    /// publishes of a batch count one each; other messages one each in a bound of as many
    /// items). When one is full, publishers feeding it are paused (TCP backpressure) until it
    /// drains.
    pub mesh_channel_capacity: usize,
    /// How long a congested session (a connected QoS 1/2 subscriber whose queue passed half of
    /// `max_queued_messages`) may hold its publishers paused without draining to a quarter, in
    /// milliseconds, 1..=3,600,000. Default 2,000. After it the session is stalled: publishers
    /// resume and its excess is dropped (counted in `dropped_queue_full`) until it drains.
    pub congestion_timeout_ms: u64,
    /// QoS 0 backpressure. Default true: a connected subscriber whose outgoing buffer (bytes not
    /// yet written to its socket) passes half of `max_outgoing_bytes` is congested like a QoS 1/2
    /// one, and the publishers feeding it (QoS 0 included) stop being read until it is written
    /// down to a quarter, for at most `congestion_timeout_ms` per episode; after that it is
    /// stalled and QoS 0 to it is dropped at `max_outgoing_bytes` (counted). False: QoS 0
    /// publishers are never paused, QoS 0 is only dropped at the limit (pure dropping).
    pub qos0_backpressure: bool,
    /// Bound on message data buffered by the whole broker, in bytes, split evenly over the
    /// shards, 1 MiB..=1 TiB. Default 256 MiB. Counts the outgoing buffers and the session
    /// queues of each shard (queued messages by their approximate encoded length). At three
    /// quarters of a shard's part its publishers are paused as for congestion (QoS 0 ones only
    /// with `qos0_backpressure`) until it falls to a half, for at most `congestion_timeout_ms`
    /// per episode; at its part QoS 0 deliveries and new queue entries are dropped (counted in
    /// `dropped_memory_limit`).
    pub max_buffered_bytes: usize,
    /// Maximum sessions (online and offline) over all shards, 1..=100,000,000. Default
    /// 1,000,000. A CONNECT needing a new session over it is refused (0x97 Quota exceeded,
    /// 3.1.1 return code 3) and counted.
    pub max_sessions: usize,
    /// Time allowed for graceful shutdown (telling clients and flushing), in milliseconds,
    /// 0..=60,000. Default 2,000.
    pub shutdown_timeout_ms: u64,
    /// How each message of a shared subscription (`$share/{group}/{filter}`) picks the one
    /// member it goes to. Default `round_robin`.
    pub shared_subscription_strategy: SharedStrategy,
    /// Topic Alias Maximum advertised to MQTT 5 clients: the aliases a client may set per
    /// connection, 0..=65,535 (0 = none). Default 10, as Mosquitto. An alias of 0 or above it
    /// closes the connection with 0x94 Topic Alias Invalid ([MQTT-3.3.2-8], [MQTT-3.3.2-9]).
    pub topic_alias_maximum: u16,
    /// Highest QoS accepted from publishers, 0..=2. Default 2. Below 2 it is advertised to MQTT 5
    /// clients as Maximum QoS ([MQTT-3.2.2-9]); a PUBLISH above it closes the connection (0x9B,
    /// [MQTT-3.2.2-11]), a will above it refuses the CONNECT (0x9B, [MQTT-3.2.2-12]), and
    /// subscriptions are granted at most this QoS ([MQTT-3.2.2-10]).
    pub max_qos: u8,
    /// Whether retained messages are supported. Default true. When false, MQTT 5 clients get
    /// Retain Available 0, a retained PUBLISH closes the connection (0x9A, [MQTT-3.2.2-14]) and a
    /// retained will refuses the CONNECT (0x9A, [MQTT-3.2.2-13]).
    pub retain_available: bool,
    /// Plain username/password authentication: a Mosquitto password file (`user:$7$...` or
    /// `user:$6$...` lines, as `mosquitto_passwd` or `shardmq-passwd` write them; see
    /// [`crate::auth::parse_password_file`]). When set, a CONNECT without an Authentication
    /// Method needs a listed user and its password (else CONNACK 0x86, 3.1.1 return code 4).
    /// Default none: anonymous clients are accepted.
    pub password_file: Option<std::path::PathBuf>,
    /// MQTT 5 enhanced authentication with SCRAM-SHA-256 (spec 4.12): a file of RFC 5802 stored
    /// keys, `user:SCRAM-SHA-256$ITERATIONS:SALT$STOREDKEY:SERVERKEY` lines written by
    /// `shardmq-passwd --scram`; it holds no password.
    /// Default none: a CONNECT with an Authentication Method gets 0x8C Bad authentication method.
    pub scram_users_file: Option<std::path::PathBuf>,
    /// Keep-alive cap for MQTT 5 clients only, in seconds, 1..=65,535: a client asking more (or
    /// 0) is told this Server Keep Alive ([MQTT-3.2.2-21]); MQTT 3.x clients are not affected
    /// (unlike `max_keep_alive_secs`, which refuses them). Default none.
    pub server_keep_alive_secs: Option<u16>,
    /// Response Information prefix: an MQTT 5 client that sets Request Response Information 1
    /// gets `{prefix}{client id}` as Response Information in CONNACK, a topic base for its
    /// responses (spec 3.1.2.11.7, 4.10). Default none: no Response Information is sent.
    pub response_information: Option<String>,
    /// For operators moving clients: every CONNECT is answered with CONNACK 0x9C Use another
    /// server carrying this Server Reference (spec 4.11; MQTT 3.x clients get return code 3).
    /// Default none.
    pub server_reference: Option<String>,
    /// Access control (issue 13): a Mosquitto ACL file (`topic`/`user`/`pattern` lines),
    /// checked on PUBLISH, SUBSCRIBE, delivery, wills and retained messages. Default none: every
    /// client may publish and subscribe to every topic.
    pub acl_file: Option<std::path::PathBuf>,
    /// Access control: whether clients without user name and password are admitted. Default
    /// none: yes unless `password_file` or `jwt` is set (Mosquitto 2 refuses them then too).
    pub allow_anonymous: Option<bool>,
    /// Access control: JWT logins (the token is the CONNECT password); see
    /// [`crate::auth::JwtSettings`]. Default none.
    pub jwt: Option<crate::auth::JwtSettings>,
    /// Listeners beyond the plain `listen` addresses, one `[[listener]]` TOML section each
    /// (address, transport `mqtt` | `mqtt+tls` | `ws` | `wss`, max connections, certificates,
    /// WebSocket path, PROXY protocol; see [`crate::transport::ListenerConfig`]). Default none.
    /// When any is given and `listen` was left at its default, the default plain listener on
    /// 127.0.0.1:1883 is not opened (as Mosquitto drops its default listener).
    #[serde(rename = "listener")]
    pub listeners: Vec<crate::transport::ListenerConfig>,
    /// Disk persistence (`src/store`, docs/persistence.md): `sync` (a QoS 1/2 message to a
    /// persistent session and a retained message are fsynced before their PUBACK/PUBREC goes
    /// out, one fsync per loop turn), `periodic` (written every loop turn, fsynced every
    /// `persistence_interval_ms`) or `off` (memory only). Default `off`: today's behaviour,
    /// no files written unasked, and the speed most deployments measure against (Mosquitto's
    /// default is `persistence false` too).
    pub persistence: crate::store::Durability,
    /// Directory of the per-shard logs (`shard-N.log`, `MANIFEST`), created if missing.
    /// Default `shardmq-data` (relative to the working directory).
    pub persistence_dir: std::path::PathBuf,
    /// `periodic` mode: milliseconds between fsyncs, 1..=3,600,000. Default 1,000; a power
    /// failure loses at most this window (a crash of the process alone loses nothing).
    pub persistence_interval_ms: u64,
    /// Disk space the logs may use, in bytes, split evenly over the shards, 1 MiB..=1 PiB.
    /// Default 4 GiB. At a shard's part new QoS 1/2 messages for offline persistent sessions
    /// are dropped (counted in `dropped_disk_full`) and ones sent at once are not recorded
    /// (`unpersisted_disk_full`) until compaction makes room.
    pub persistence_max_bytes: u64,
    /// Operations settings (`[ops]` in TOML): `$SYS` interval, metrics listener, logs, pid
    /// file; see [`crate::ops::OpsConfig`] for each field's default and range.
    pub ops: crate::ops::OpsConfig,
    /// Issue 11 (docs/memory.md): time a client has to complete a packet it started, in
    /// milliseconds per started 64 KiB of the packet's length, 0..=3,600,000 (0 = no limit).
    /// Default 5,000 (a client must send at least about 13 KB/s once a packet started). Counts
    /// whatever the keep-alive, 0 included; over it the connection is closed
    /// (`partial_packet_timeouts`).
    pub partial_packet_timeout_ms: u64,
    /// Issue 11 (docs/memory.md): a subscriber whose outgoing buffer stays at
    /// `max_outgoing_bytes` with nothing written for this long is disconnected as a slow
    /// consumer (checked when a message for it arrives), in milliseconds, 1..=3,600,000.
    /// Default 60,000. A subscriber that reads is never disconnected for the size of what it
    /// receives: its QoS 1/2 deliveries wait in its queue while the buffer is full.
    pub slow_consumer_timeout_ms: u64,
    /// Issue 11 (docs/memory.md): bytes queued per session at most (topic, payload, MQTT 5
    /// properties and a small overhead per message), as Mosquitto's `max_queued_bytes`,
    /// 1 KiB..=4 GiB - 1. Default 64 MiB. Over it new messages are dropped (counted in
    /// `dropped_queue_full`).
    pub max_queued_bytes: usize,
    /// Issue 11 (docs/memory.md): retained messages one SUBSCRIBE sends at most, over all its
    /// filters, 0..=100,000,000. Default 100,000 (as `max_retained_messages`). The rest are not
    /// sent (counted once in `retained_subscribe_bound_hit`).
    pub max_retained_per_subscribe: usize,
    /// Issue 11: bytes of retained messages (counted as queue entries: topic, payload,
    /// properties, overhead) one SUBSCRIBE sends at most, 0..=1 TiB. Default 256 MiB.
    pub max_retained_bytes_per_subscribe: usize,
    /// Issue 17 (with issue 11's bounds): bytes of QoS 1/2 messages written to one subscriber
    /// and not yet acknowledged (counted as queue entries: topic, payload, properties,
    /// overhead), as Mosquitto's `max_inflight_bytes`, 1 KiB..=4 GiB - 1. Default 4 MiB. At it,
    /// the in-flight window (`max_inflight` messages) takes nothing more until an
    /// acknowledgement comes; further messages wait in the session's queue. An empty window
    /// always takes one message, however large. This bounds what a client that reads but
    /// never acknowledges pins, whatever the window's message count.
    pub max_inflight_bytes: usize,
}

/// How a shared subscription group spreads messages over its members. The publishing shard
/// picks one shard among those with members, that shard picks one of its members; offline
/// members and members whose in-flight window is full are skipped while another can take it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SharedStrategy {
    /// Members in turn (default).
    #[default]
    RoundRobin,
    /// A member picked at random for each message.
    Random,
    /// The same member while it stays online and keeps up.
    Sticky,
    /// By a hash of the publisher's client id: one publisher's messages go to one member.
    Hash,
}

impl std::str::FromStr for SharedStrategy {
    type Err = String;

    fn from_str(s: &str) -> Result<SharedStrategy, String> {
        match s {
            "round_robin" => Ok(SharedStrategy::RoundRobin),
            "random" => Ok(SharedStrategy::Random),
            "sticky" => Ok(SharedStrategy::Sticky),
            "hash" => Ok(SharedStrategy::Hash),
            _ => Err(format!(
                "unknown strategy {s:?} (round_robin, random, sticky or hash)"
            )),
        }
    }
}

/// The largest shard count accepted (the mesh has shards² channels).
pub const SHARDS_MAX: usize = 256;

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin_cores: false,
            max_connections: 100_000,
            max_packet_size: crate::codec::MAX_PACKET_SIZE_DEFAULT,
            max_inflight: 4096,
            receive_maximum: 1024,
            max_queued_messages: 1000,
            queue_qos0: false,
            max_subscriptions_per_client: 1000,
            max_topic_levels: 128,
            max_outgoing_bytes: 1024 * 1024,
            handshake_timeout_ms: 10_000,
            max_keep_alive_secs: 65_535,
            max_retained_messages: 100_000,
            mesh_channel_capacity: 4096,
            congestion_timeout_ms: 2_000,
            qos0_backpressure: true,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_sessions: 1_000_000,
            shutdown_timeout_ms: 2_000,
            shared_subscription_strategy: SharedStrategy::RoundRobin,
            topic_alias_maximum: 10,
            max_qos: 2,
            retain_available: true,
            password_file: None,
            scram_users_file: None,
            server_keep_alive_secs: None,
            response_information: None,
            server_reference: None,
            acl_file: None,
            allow_anonymous: None,
            jwt: None,
            listeners: Vec::new(),
            persistence: crate::store::Durability::Off,
            persistence_dir: std::path::PathBuf::from("shardmq-data"),
            persistence_interval_ms: 1_000,
            persistence_max_bytes: 4 << 30,
            ops: crate::ops::OpsConfig::default(),
            partial_packet_timeout_ms: 5_000,
            slow_consumer_timeout_ms: 60_000,
            max_queued_bytes: 64 * 1024 * 1024,
            max_retained_per_subscribe: 100_000,
            max_retained_bytes_per_subscribe: 256 * 1024 * 1024,
            max_inflight_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Config {
    /// Parses a TOML document; omitted fields keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Every listener the broker opens, in `BrokerHandle::local_addrs` order: the plain `listen`
    /// addresses, then the `[[listener]]` sections (the default `listen` address is left out
    /// when sections are given).
    pub fn effective_listeners(&self) -> Vec<crate::transport::ListenerConfig> {
        let default_listen = self.listen == Config::default().listen;
        let plain = if self.listeners.is_empty() || !default_listen {
            self.listen.as_slice()
        } else {
            &[]
        };
        plain
            .iter()
            .map(|addr| crate::transport::ListenerConfig::mqtt(*addr))
            .chain(self.listeners.iter().cloned())
            .collect()
    }

    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), String> {
        fn range<T: PartialOrd + std::fmt::Display>(
            name: &str,
            value: T,
            min: T,
            max: T,
        ) -> Result<(), String> {
            if value < min || value > max {
                return Err(format!("{name} must be in {min}..={max}, got {value}"));
            }
            Ok(())
        }
        if self.listen.is_empty() && self.listeners.is_empty() {
            return Err("at least one listen address is needed".into());
        }
        for listener in &self.listeners {
            listener.validate()?;
        }
        if self.effective_listeners().len() > crate::transport::LISTENERS_MAX {
            return Err(format!(
                "at most {} listeners",
                crate::transport::LISTENERS_MAX
            ));
        }
        range("shards", self.shards, 1, SHARDS_MAX)?;
        range("max_connections", self.max_connections, 1, 10_000_000)?;
        // 0 = no limit but the protocol's (Mosquitto's `max_packet_size 0`), issue 16.
        if self.max_packet_size != 0 {
            range("max_packet_size", self.max_packet_size, 16, 268_435_460)?;
        }
        range("max_inflight", self.max_inflight, 1, u16::MAX)?;
        range("receive_maximum", self.receive_maximum, 1, u16::MAX)?;
        range(
            "max_queued_messages",
            self.max_queued_messages,
            0,
            10_000_000,
        )?;
        range(
            "max_subscriptions_per_client",
            self.max_subscriptions_per_client,
            1,
            1_000_000,
        )?;
        range("max_topic_levels", self.max_topic_levels, 1, 65_535)?;
        range("max_outgoing_bytes", self.max_outgoing_bytes, 1024, 1 << 30)?;
        range(
            "handshake_timeout_ms",
            self.handshake_timeout_ms,
            1,
            3_600_000,
        )?;
        range("max_keep_alive_secs", self.max_keep_alive_secs, 1, u16::MAX)?;
        range(
            "max_retained_messages",
            self.max_retained_messages,
            0,
            100_000_000,
        )?;
        range(
            "mesh_channel_capacity",
            self.mesh_channel_capacity,
            1,
            1_000_000,
        )?;
        range(
            "congestion_timeout_ms",
            self.congestion_timeout_ms,
            1,
            3_600_000,
        )?;
        range(
            "max_buffered_bytes",
            self.max_buffered_bytes as u64,
            1 << 20,
            1 << 40,
        )?;
        range("max_sessions", self.max_sessions, 1, 100_000_000)?;
        range("shutdown_timeout_ms", self.shutdown_timeout_ms, 0, 60_000)?;
        range("max_qos", self.max_qos, 0, 2)?;
        range(
            "partial_packet_timeout_ms",
            self.partial_packet_timeout_ms,
            0,
            3_600_000,
        )?;
        range(
            "max_queued_bytes",
            self.max_queued_bytes as u64,
            1024,
            u64::from(u32::MAX),
        )?;
        range(
            "max_inflight_bytes",
            self.max_inflight_bytes as u64,
            1024,
            u64::from(u32::MAX),
        )?;
        range(
            "max_retained_per_subscribe",
            self.max_retained_per_subscribe,
            0,
            100_000_000,
        )?;
        range(
            "max_retained_bytes_per_subscribe",
            self.max_retained_bytes_per_subscribe as u64,
            0,
            1 << 40,
        )?;
        range(
            "slow_consumer_timeout_ms",
            self.slow_consumer_timeout_ms,
            1,
            3_600_000,
        )?;
        range(
            "persistence_interval_ms",
            self.persistence_interval_ms,
            1,
            3_600_000,
        )?;
        range(
            "persistence_max_bytes",
            self.persistence_max_bytes,
            1 << 20,
            1 << 50,
        )?;
        if let Some(secs) = self.server_keep_alive_secs {
            range("server_keep_alive_secs", secs, 1, u16::MAX)?;
        }
        if let Some(jwt) = &self.jwt {
            range("jwt.leeway_secs", jwt.leeway_secs, 0, 300)?;
        }
        // Sent as MQTT UTF-8 strings (1.5.4): at most 65,535 bytes, no U+0000 [MQTT-1.5.4-2].
        // The Response Information sent is the prefix and a client id; over 65,535 bytes
        // together, it is left out for that client (`protocol::validate_connect`).
        for (name, value) in [
            ("response_information", &self.response_information),
            ("server_reference", &self.server_reference),
        ] {
            if let Some(value) = value {
                if value.len() > crate::codec::FIELD_LEN_MAX || value.contains('\0') {
                    return Err(format!(
                        "{name} must be at most 65,535 bytes of UTF-8 without U+0000"
                    ));
                }
            }
        }
        self.ops.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_sent_to_clients_must_fit_an_mqtt_string() {
        for field in [0, 1] {
            for (value, valid) in [
                ("x".repeat(65_535), true),
                ("x".repeat(65_536), false),
                ("a\0b".to_string(), false),
            ] {
                let mut config = Config::default();
                let slot = if field == 0 {
                    &mut config.response_information
                } else {
                    &mut config.server_reference
                };
                *slot = Some(value);
                assert_eq!(config.validate().is_ok(), valid, "field {field}");
            }
        }
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.max_connections, 100_000);
        assert_eq!(config.max_queued_messages, 1000);
        assert_eq!(config.listen[0].to_string(), "127.0.0.1:1883");
        assert!(config.qos0_backpressure);
        assert_eq!(config.max_buffered_bytes, 256 << 20);
    }

    #[test]
    fn toml_overrides_some_fields() {
        let config = Config::from_toml_str("shards = 3\nmax_inflight = 5\n").unwrap();
        assert_eq!(config.shards, 3);
        assert_eq!(config.max_inflight, 5);
        assert_eq!(config.max_packet_size, Config::default().max_packet_size);
        assert!(Config::from_toml_str("shards = 0").is_err());
        assert!(Config::from_toml_str("no_such_field = 1").is_err());
        let config =
            Config::from_toml_str("qos0_backpressure = false\nmax_buffered_bytes = 4194304\n")
                .unwrap();
        assert!(!config.qos0_backpressure);
        assert_eq!(config.max_buffered_bytes, 4 << 20);
        assert!(Config::from_toml_str("max_buffered_bytes = 1000").is_err());
        let config = Config::from_toml_str(
            "persistence = \"sync\"\npersistence_dir = \"/tmp/x\"\npersistence_interval_ms = 50\n",
        )
        .unwrap();
        assert_eq!(config.persistence, crate::store::Durability::Sync);
        assert_eq!(config.persistence_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(config.persistence_interval_ms, 50);
        assert!(Config::from_toml_str("persistence = \"always\"").is_err());
        assert!(Config::from_toml_str("persistence_max_bytes = 10").is_err());
    }
}
