//! What the client puts into CONNECT, and the limits of its session.

use crate::codec::{MqttString, Properties, ProtocolVersion, QoS, Will};
use bytes::Bytes;
use std::time::Duration;

/// Default in-flight window for outgoing QoS 1 and 2 publishes (further capped by the server's
/// Receive Maximum).
pub const INFLIGHT_WINDOW_DEFAULT: u16 = 64;
/// Default Receive Maximum we announce: how many incoming QoS 1/2 publishes may be unacknowledged.
pub const RECEIVE_MAXIMUM_DEFAULT: u16 = 64;
/// Default limit on packets queued in the session and not yet taken by `poll_transmit`.
pub const TRANSMIT_QUEUE_MAX_DEFAULT: usize = 4096;
/// Default limit on events not yet taken by `poll_event`; `handle_input` stops decoding there.
pub const EVENT_QUEUE_MAX_DEFAULT: usize = 4096;
/// Default largest packet we accept from the server (1 MiB), announced as Maximum Packet Size.
pub const MAX_PACKET_SIZE_DEFAULT: u32 = 1024 * 1024;
/// Default time the server has to answer CONNECT with CONNACK.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Default keep-alive interval in seconds (as mosquitto_pub's `-k`).
pub const KEEP_ALIVE_SECS_DEFAULT: u16 = 60;

/// Connect options: the CONNECT packet's fields and the session's limits.
///
/// `Default` gives MQTT 3.1.1, an empty client id (the server assigns one; 3.1.1 then requires
/// `clean_start`), keep-alive 60 s, clean start, no will and no credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Client Identifier. Empty asks the server to assign one ([MQTT-3.1.3-6]).
    pub client_id: String,
    /// Protocol version spoken on the connection.
    pub protocol: ProtocolVersion,
    /// Keep Alive in seconds; 0 disables keep-alive. The server's Server Keep Alive overrides it
    /// ([MQTT-3.2.2-21]).
    pub keep_alive_secs: u16,
    /// Clean Start (MQTT 5) / Clean Session (MQTT 3.x) on the first connection.
    pub clean_start: bool,
    /// Session Expiry Interval in seconds (MQTT 5 only; 0 ends the session with the connection,
    /// `u32::MAX` never expires).
    pub session_expiry_secs: u32,
    /// User Name.
    pub username: Option<String>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// Will message.
    pub will: Option<Will>,
    /// Receive Maximum we announce (MQTT 5): incoming QoS 1/2 publishes that may be
    /// unacknowledged at once, 1..=65535. Also bounds the QoS 2 deduplication set.
    pub receive_maximum: u16,
    /// Further CONNECT properties (MQTT 5): user properties, authentication method, request
    /// response information, Topic Alias Maximum. Receive Maximum, Session Expiry Interval and
    /// Maximum Packet Size are set from the fields above.
    pub properties: Properties,
    /// Our outgoing in-flight window for QoS 1/2 publishes, 1..=65535; the effective window is
    /// the minimum of this and the server's Receive Maximum ([MQTT-3.3.4-7]).
    pub inflight_window: u16,
    /// Largest packet we accept, announced as Maximum Packet Size in MQTT 5.
    pub max_packet_size: u32,
    /// How long to wait for CONNACK.
    pub connect_timeout: Duration,
    /// Limit on packets queued in the session and not yet taken by `poll_transmit`, and on
    /// SUBSCRIBE/UNSUBSCRIBE requests awaiting their acknowledgement.
    pub transmit_queue_max: usize,
    /// Limit on events not yet taken by `poll_event`.
    pub event_queue_max: usize,
    /// Whether to re-subscribe every active subscription after a reconnect in which the server
    /// reports no session (`session_present = false`).
    pub resubscribe: bool,
    /// Most topic aliases we assign on outgoing PUBLISH packets (MQTT 5), further capped by the
    /// server's Topic Alias Maximum ([MQTT-3.3.2-9]); 0 (the default) sends full topic names.
    /// The first `topic_alias_outgoing_max` distinct topics of a connection get an alias.
    pub topic_alias_outgoing_max: u16,
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            client_id: String::new(),
            protocol: ProtocolVersion::V3_1_1,
            keep_alive_secs: KEEP_ALIVE_SECS_DEFAULT,
            clean_start: true,
            session_expiry_secs: 0,
            username: None,
            password: None,
            will: None,
            receive_maximum: RECEIVE_MAXIMUM_DEFAULT,
            properties: Properties::default(),
            inflight_window: INFLIGHT_WINDOW_DEFAULT,
            max_packet_size: MAX_PACKET_SIZE_DEFAULT,
            connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            transmit_queue_max: TRANSMIT_QUEUE_MAX_DEFAULT,
            event_queue_max: EVENT_QUEUE_MAX_DEFAULT,
            resubscribe: true,
            topic_alias_outgoing_max: 0,
        }
    }
}

impl ConnectOptions {
    /// Default options with this client id.
    pub fn new(client_id: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            client_id: client_id.into(),
            ..ConnectOptions::default()
        }
    }

    /// Sets the protocol version.
    pub fn protocol(mut self, protocol: ProtocolVersion) -> ConnectOptions {
        self.protocol = protocol;
        self
    }

    /// Sets the keep-alive interval in seconds (0 disables it).
    pub fn keep_alive_secs(mut self, secs: u16) -> ConnectOptions {
        self.keep_alive_secs = secs;
        self
    }

    /// Sets Clean Start / Clean Session.
    pub fn clean_start(mut self, clean_start: bool) -> ConnectOptions {
        self.clean_start = clean_start;
        self
    }

    /// Sets the MQTT 5 Session Expiry Interval.
    pub fn session_expiry_secs(mut self, secs: u32) -> ConnectOptions {
        self.session_expiry_secs = secs;
        self
    }

    /// Sets user name and password.
    pub fn credentials(
        mut self,
        username: impl Into<String>,
        password: Option<Bytes>,
    ) -> ConnectOptions {
        self.username = Some(username.into());
        self.password = password;
        self
    }

    /// Sets the will message.
    pub fn will(
        mut self,
        topic: impl Into<MqttString>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> ConnectOptions {
        self.will = Some(Will {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
        });
        self
    }

    /// Sets our outgoing in-flight window (clamped to at least 1).
    pub fn inflight_window(mut self, window: u16) -> ConnectOptions {
        self.inflight_window = window.max(1);
        self
    }

    /// Sets the Receive Maximum we announce (clamped to at least 1).
    pub fn receive_maximum(mut self, receive_maximum: u16) -> ConnectOptions {
        self.receive_maximum = receive_maximum.max(1);
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = timeout;
        self
    }
}
