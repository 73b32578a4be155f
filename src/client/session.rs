//! The sans-IO client session: every protocol rule of one MQTT client, no sockets, no clock.
//!
//! Inputs: [`ClientSession::handle_input`] (bytes from the server), [`ClientSession::handle_timeout`]
//! (the clock), and the application's calls ([`ClientSession::publish`],
//! [`ClientSession::subscribe`], ...). Outputs: [`ClientSession::poll_transmit`] (bytes for the
//! server, all pending frames batched into one buffer), [`ClientSession::poll_event`] (what
//! happened) and [`ClientSession::poll_timeout`] (when to call `handle_timeout` next).
//!
//! Invariants:
//! - Packet identifiers of outgoing QoS 1/2 publishes and of SUBSCRIBE/UNSUBSCRIBE awaiting their
//!   acknowledgement share one space and are never reused while in use ([MQTT-2.2.1-3]).
//! - At most `window()` QoS 1/2 publishes are on the wire (sent, not yet completed) at once
//!   ([MQTT-3.3.4-7]); further accepted ones wait in `unsent`. `publish` refuses with
//!   `WindowFull` once `inflight_len() >= window()`.
//! - Nothing but CONNECT is transmitted before a successful CONNACK, so the server's Receive
//!   Maximum and Maximum Packet Size are known before the first PUBLISH leaves.
//! - Keep-alive: a PINGREQ is queued after `keep_alive` without transmission; the session fails
//!   with `KeepAliveTimeout` if no PINGRESP arrives within `keep_alive` of it.

use super::{ClientError, ConnectOptions, EnhancedAuth};
use crate::codec::{
    self, Ack, ConnAck, Connect, Disconnect, MqttString, Packet, Properties, ProtocolVersion,
    Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Filters per SUBSCRIBE when re-subscribing after a reconnect.
const RESUBSCRIBE_CHUNK: usize = 32;

/// What happened on the session, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The first successful CONNACK.
    Connected(ConnAck),
    /// A successful CONNACK after [`ClientSession::reset_for_reconnect`].
    Reconnected(ConnAck),
    /// An incoming application message (already acknowledged; QoS 2 duplicates are dropped).
    Publish(Publish),
    /// An outgoing QoS 1 publish is complete (PUBACK received); its packet id is free.
    PubAck(u16),
    /// An outgoing QoS 2 publish is complete (PUBCOMP, or PUBREC with an error code).
    PubComp(u16),
    /// A SUBACK for one of our SUBSCRIBEs (including automatic re-subscriptions).
    SubAck(SubAck),
    /// An UNSUBACK.
    UnsubAck(UnsubAck),
    /// A PINGRESP.
    PingResp,
    /// The connection ended: `Some` when the server sent DISCONNECT (MQTT 5), `None` after our
    /// own DISCONNECT was transmitted.
    Disconnected(Option<Disconnect>),
}

/// Where the session is in its connection's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// `start` not called yet.
    Idle,
    /// CONNECT queued or sent, CONNACK not received.
    Connecting,
    /// CONNACK received with Success.
    Connected,
    /// The connection ended (DISCONNECT either way, a refusal, a timeout or a protocol error).
    Disconnected,
}

/// Counters of unusual events; none of them is an error by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Successful CONNACKs.
    pub connects: u64,
    /// PUBLISH packets handed to `poll_transmit`, resends included.
    pub publishes_sent: u64,
    /// Resent PUBLISH (DUP) and PUBREL packets after reconnects.
    pub resends: u64,
    /// Incoming PUBLISH packets.
    pub publishes_received: u64,
    /// Incoming QoS 2 duplicates dropped (already received, PUBREL not yet seen).
    pub duplicates_dropped: u64,
    /// Acknowledgements for packet ids we did not have in flight (ignored).
    pub unexpected_acks: u64,
    /// PUBACK/PUBREC with an error reason code (MQTT 5): the server refused the message.
    pub publishes_rejected: u64,
    /// `publish` calls refused with `WindowFull`.
    pub window_full: u64,
    /// Calls refused with `TransmitQueueFull`.
    pub transmit_queue_full: u64,
    /// PINGREQ packets queued.
    pub pings_sent: u64,
    /// SUBSCRIBE packets queued by automatic re-subscription.
    pub resubscribes: u64,
}

/// One outgoing QoS 1/2 publish, from acceptance to completion.
#[derive(Debug)]
struct Outgoing {
    publish: Publish,
    /// PUBREC received and PUBREL sent (QoS 2): waiting for PUBCOMP.
    released: bool,
    /// Sent on the current connection (counts against the window).
    on_wire: bool,
    /// Sent on some connection already: a resend carries DUP = 1 ([MQTT-3.3.1-1]).
    ever_sent: bool,
    /// Acceptance order, kept for resends in the original order ([MQTT-4.6.0-1]).
    seq: u64,
}

/// A SUBSCRIBE or UNSUBSCRIBE awaiting its acknowledgement; resent after a reconnect.
#[derive(Debug)]
struct Request {
    packet: Packet,
    seq: u64,
}

/// The protocol state of one MQTT client, sans IO. See the module documentation.
#[derive(Debug)]
pub struct ClientSession {
    options: ConnectOptions,
    state: SessionState,
    version: ProtocolVersion,
    /// The client id in use: the configured one, or the one the server assigned.
    client_id: String,
    /// Whether the next CONNACK follows `reset_for_reconnect`.
    reconnecting: bool,
    /// Whether the CONNECT of this connection carried Clean Start = 1.
    sent_clean_start: bool,
    // Server limits from CONNACK.
    server_receive_maximum: u16,
    server_max_packet_size: Option<u32>,
    server_maximum_qos: QoS,
    server_retain_available: bool,
    server_topic_alias_maximum: u16,
    keep_alive: Duration,
    // Packet identifiers and outgoing flows.
    next_packet_id: u16,
    next_seq: u64,
    outgoing: HashMap<u16, Outgoing>,
    /// Outgoing publishes accepted but not sent on this connection, in acceptance order.
    unsent: VecDeque<u16>,
    /// Outgoing publishes sent on this connection and not complete.
    on_wire: usize,
    requests: HashMap<u16, Request>,
    /// Active subscriptions (acknowledged with a success code), re-subscribed after reconnects.
    subscriptions: Vec<(MqttString, SubscriptionOptions)>,
    // Incoming flows.
    /// QoS 2 packet ids received and not yet released (PUBREL); duplicates are dropped.
    incoming_qos2: HashSet<u16>,
    /// Topic aliases the server set on this connection (MQTT 5).
    incoming_aliases: HashMap<u16, MqttString>,
    /// Topic aliases we assigned on this connection (MQTT 5), at most
    /// min(`topic_alias_outgoing_max`, server's Topic Alias Maximum) entries.
    outgoing_aliases: HashMap<MqttString, u16>,
    // Transmission.
    connect_packet: Option<Packet>,
    tx: VecDeque<Packet>,
    /// The latest `now` any call carried: the time stamped on transmissions, since
    /// `poll_transmit` takes no clock (it errs early, never late, for keep-alive).
    latest_now: Option<Instant>,
    last_send: Option<Instant>,
    ping_sent: Option<Instant>,
    connect_sent: Option<Instant>,
    /// Our DISCONNECT is queued; nothing else may be queued after it.
    closing: bool,
    events: VecDeque<Event>,
    stats: SessionStats,
    /// MQTT 5 enhanced authentication, restarted on every connection.
    enhanced_auth: Option<Box<dyn EnhancedAuth>>,
    /// Our AUTH 0x18 answer, sent while still connecting.
    auth_packet: Option<Packet>,
    /// An error found by `start` (which returns nothing), reported by the next `handle_timeout`.
    deferred_error: Option<ClientError>,
}

impl ClientSession {
    /// A session for these options, in state [`SessionState::Idle`].
    pub fn new(options: ConnectOptions) -> ClientSession {
        ClientSession {
            version: options.protocol,
            client_id: options.client_id.clone(),
            keep_alive: Duration::from_secs(u64::from(options.keep_alive_secs)),
            options,
            state: SessionState::Idle,
            reconnecting: false,
            sent_clean_start: false,
            server_receive_maximum: u16::MAX,
            server_max_packet_size: None,
            server_maximum_qos: QoS::ExactlyOnce,
            server_retain_available: true,
            server_topic_alias_maximum: 0,
            next_packet_id: 1,
            next_seq: 0,
            outgoing: HashMap::new(),
            unsent: VecDeque::new(),
            on_wire: 0,
            requests: HashMap::new(),
            subscriptions: Vec::new(),
            incoming_qos2: HashSet::new(),
            incoming_aliases: HashMap::new(),
            outgoing_aliases: HashMap::new(),
            connect_packet: None,
            tx: VecDeque::new(),
            latest_now: None,
            last_send: None,
            ping_sent: None,
            connect_sent: None,
            closing: false,
            events: VecDeque::new(),
            stats: SessionStats::default(),
            enhanced_auth: None,
            auth_packet: None,
            deferred_error: None,
        }
    }

    /// Authenticates every connection with this MQTT 5 enhanced-authentication mechanism
    /// (section 4.12); for example [`crate::client::ScramSha256Auth`].
    pub fn with_enhanced_auth(mut self, auth: Box<dyn EnhancedAuth>) -> ClientSession {
        self.enhanced_auth = Some(auth);
        self
    }

    // ---- accessors ----

    /// The connection state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether a successful CONNACK was received and the connection has not ended.
    pub fn is_connected(&self) -> bool {
        self.state == SessionState::Connected
    }

    /// The protocol version of the session.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client id in use (the server-assigned one after a CONNACK that carried it).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Outgoing QoS 1/2 publishes accepted and not yet complete (sent or waiting to be sent).
    pub fn inflight_len(&self) -> usize {
        self.outgoing.len()
    }

    /// The effective in-flight window: min(our window, the server's Receive Maximum), at least 1.
    pub fn window(&self) -> usize {
        usize::from(
            self.options
                .inflight_window
                .min(self.server_receive_maximum)
                .max(1),
        )
    }

    /// Whether a QoS 1/2 publish would be accepted now.
    pub fn can_publish(&self) -> bool {
        self.outgoing.len() < self.window() && !self.closing
    }

    /// The keep-alive interval in use (zero when disabled).
    pub fn keep_alive(&self) -> Duration {
        self.keep_alive
    }

    /// The server's Maximum Packet Size, if it announced one.
    pub fn server_max_packet_size(&self) -> Option<u32> {
        self.server_max_packet_size
    }

    /// Active subscriptions (acknowledged with a success code), in subscription order.
    pub fn subscriptions(&self) -> &[(MqttString, SubscriptionOptions)] {
        &self.subscriptions
    }

    /// Packets queued and not yet taken by `poll_transmit`.
    pub fn transmit_queue_len(&self) -> usize {
        self.tx.len() + usize::from(self.connect_packet.is_some())
    }

    /// The counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The options the session was created with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    // ---- connection life ----

    /// Queues CONNECT and enters [`SessionState::Connecting`]. Call again after
    /// [`ClientSession::reset_for_reconnect`] for each new network connection.
    pub fn start(&mut self, now: Instant) {
        // MQTT 5 reconnects ask to resume the session (the server keeps it only if the Session
        // Expiry Interval allows); MQTT 3.x keeps the configured Clean Session so that a
        // clean client never leaves a never-expiring session behind.
        let clean_start = if self.reconnecting && self.version.is_v5() {
            false
        } else {
            self.options.clean_start
        };
        self.sent_clean_start = clean_start;
        self.keep_alive = Duration::from_secs(u64::from(self.options.keep_alive_secs));
        let mut connect = Connect {
            protocol_version: self.version,
            clean_start,
            keep_alive_secs: self.options.keep_alive_secs,
            client_id: MqttString::from(self.client_id.as_str()),
            will: self.options.will.clone().map(|mut will| {
                if !self.version.is_v5() {
                    will.properties = Properties::default();
                }
                will
            }),
            username: self.options.username.as_deref().map(MqttString::from),
            password: self.options.password.clone(),
            properties: self.connect_properties(),
        };
        self.auth_packet = None;
        self.deferred_error = None;
        if let Some(auth) = &mut self.enhanced_auth {
            if !self.version.is_v5() {
                self.deferred_error = Some(ClientError::InvalidArgument(
                    "enhanced authentication needs MQTT 5",
                ));
            } else {
                match auth.start() {
                    Ok(data) => {
                        connect.properties.authentication_method =
                            Some(MqttString::from(auth.method()));
                        connect.properties.authentication_data = data;
                    }
                    Err(error) => self.deferred_error = Some(error),
                }
            }
        }
        self.connect_packet = Some(Packet::Connect(Box::new(connect)));
        self.state = SessionState::Connecting;
        self.closing = false;
        self.stamp(now);
        self.connect_sent = Some(now);
        self.last_send = Some(now);
        self.ping_sent = None;
    }

    fn connect_properties(&self) -> Properties {
        if !self.version.is_v5() {
            return Properties::default();
        }
        let mut properties = self.options.properties.clone();
        if self.options.session_expiry_secs != 0 {
            properties.session_expiry_interval = Some(self.options.session_expiry_secs);
        }
        if self.options.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(self.options.receive_maximum.max(1));
        }
        properties.maximum_packet_size = Some(self.options.max_packet_size.max(1));
        properties
    }

    /// Prepares the session for a new network connection after the old one was lost: pending
    /// transmissions are dropped (except QoS 0 publishes not yet sent), every incomplete QoS 1/2
    /// publish and every unacknowledged SUBSCRIBE/UNSUBSCRIBE will be resent after the next
    /// CONNACK. Call [`ClientSession::start`] next.
    pub fn reset_for_reconnect(&mut self) {
        if self.state == SessionState::Idle {
            return;
        }
        self.state = SessionState::Disconnected;
        self.reconnecting = true;
        self.connect_packet = None;
        self.auth_packet = None;
        self.closing = false;
        self.tx.retain(|packet| match packet {
            Packet::Publish(publish) => publish.qos == QoS::AtMostOnce,
            _ => false,
        });
        self.on_wire = 0;
        let mut order: Vec<(u64, u16)> = self
            .outgoing
            .iter_mut()
            .map(|(&id, entry)| {
                entry.on_wire = false;
                (entry.seq, id)
            })
            .collect();
        order.sort_unstable();
        self.unsent = order.into_iter().map(|(_, id)| id).collect();
        // [MQTT-3.3.2-7]: aliases do not carry over to another network connection.
        self.incoming_aliases.clear();
        self.outgoing_aliases.clear();
        self.ping_sent = None;
    }

    /// Queues DISCONNECT (normal disconnection). The state becomes
    /// [`SessionState::Disconnected`] and [`Event::Disconnected`]`(None)` is emitted once
    /// `poll_transmit` has taken it. Before a CONNACK the session ends at once.
    pub fn disconnect(&mut self) {
        if self.state != SessionState::Connected {
            self.state = SessionState::Disconnected;
            self.connect_packet = None;
            self.tx.clear();
            return;
        }
        if !self.closing {
            self.closing = true;
            self.tx.push_back(Packet::Disconnect(Disconnect::default()));
        }
    }

    // ---- application calls ----

    /// Publishes an application message. QoS 0 returns `Ok(None)` once queued; QoS 1/2 returns
    /// the packet identifier, and [`Event::PubAck`] / [`Event::PubComp`] report completion.
    ///
    /// Errors: `WindowFull` (QoS 1/2 and the in-flight window is full), `TransmitQueueFull`
    /// (QoS 0 and the transmit queue is full), `QoSNotSupported`, `RetainNotSupported`,
    /// `PacketTooLarge` (server limits from CONNACK), `InvalidTopic`, `ConnectionClosed` (after
    /// `disconnect`). A refused call changes nothing.
    pub fn publish(
        &mut self,
        topic: MqttString,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        now: Instant,
    ) -> Result<Option<u16>, ClientError> {
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: 0,
            properties: Properties::default(),
            payload,
        };
        self.publish_message(publish, now)
    }

    /// Publishes a prepared PUBLISH (MQTT 5 properties included); `dup` and `packet_id` are
    /// set by the session. Errors as for [`ClientSession::publish`].
    pub fn publish_message(
        &mut self,
        mut publish: Publish,
        now: Instant,
    ) -> Result<Option<u16>, ClientError> {
        self.stamp(now);
        self.check_publish(&publish)?;
        publish.dup = false;
        if publish.qos == QoS::AtMostOnce {
            publish.packet_id = 0;
            if self.tx.len() >= self.options.transmit_queue_max {
                self.stats.transmit_queue_full += 1;
                return Err(ClientError::TransmitQueueFull);
            }
            self.tx.push_back(Packet::Publish(publish));
            return Ok(None);
        }
        if self.outgoing.len() >= self.window() {
            self.stats.window_full += 1;
            return Err(ClientError::WindowFull);
        }
        let Some(packet_id) = self.allocate_packet_id() else {
            self.stats.window_full += 1;
            return Err(ClientError::WindowFull);
        };
        publish.packet_id = packet_id;
        let seq = self.next_seq();
        self.outgoing.insert(
            packet_id,
            Outgoing {
                publish,
                released: false,
                on_wire: false,
                ever_sent: false,
                seq,
            },
        );
        self.unsent.push_back(packet_id);
        self.flush_outgoing();
        Ok(Some(packet_id))
    }

    fn check_publish(&self, publish: &Publish) -> Result<(), ClientError> {
        if self.closing || self.state == SessionState::Disconnected && !self.reconnecting {
            return Err(ClientError::ConnectionClosed);
        }
        // Topic aliases are the session's business, not the caller's ([MQTT-3.3.2-9]).
        if publish.properties.topic_alias.is_some() {
            return Err(ClientError::InvalidArgument(
                "topic aliases are managed by the session",
            ));
        }
        crate::topic::validate_topic_name(publish.topic.as_str())
            .map_err(|e| ClientError::InvalidTopic(e.0))?;
        if publish.topic.is_empty() {
            return Err(ClientError::InvalidTopic(
                "[MQTT-4.7.3-1] a topic name is at least one character long",
            ));
        }
        if publish.qos > self.server_maximum_qos {
            // [MQTT-3.2.2-11]
            return Err(ClientError::QoSNotSupported(publish.qos));
        }
        if publish.retain && !self.server_retain_available {
            // [MQTT-3.2.2-14]
            return Err(ClientError::RetainNotSupported);
        }
        // A property over 65,535 bytes (or a packet over 268,435,455) cannot be encoded; the
        // packet id is not chosen yet, any non-zero one checks the same.
        let flags = crate::codec::PublishFlags {
            packet_id: 1,
            ..publish.flags()
        };
        if publish.check(self.version, flags).is_err() {
            return Err(ClientError::InvalidArgument(
                "a field of the PUBLISH is over a limit of MQTT (a string over 65,535 bytes)",
            ));
        }
        if let Some(max) = self.server_max_packet_size {
            // [MQTT-3.2.2-15]: the packet id is two bytes whatever its value.
            let size = publish_encoded_len(publish, self.version);
            if size > max as usize {
                return Err(ClientError::PacketTooLarge { size, max });
            }
        }
        Ok(())
    }

    /// Subscribes to these filters with one SUBSCRIBE. Returns its packet identifier, or 0 when
    /// nothing was queued (see [`ClientSession::try_subscribe`] for why).
    pub fn subscribe(&mut self, subs: &[(MqttString, SubscriptionOptions)]) -> u16 {
        self.try_subscribe(subs).unwrap_or(0)
    }

    /// Subscribes to these filters with one SUBSCRIBE and returns its packet identifier.
    /// Errors: `InvalidArgument` (no filter, [MQTT-3.8.3-2]), `InvalidTopic`,
    /// `TransmitQueueFull`, `WindowFull` (no free packet identifier), `ConnectionClosed`.
    pub fn try_subscribe(
        &mut self,
        subs: &[(MqttString, SubscriptionOptions)],
    ) -> Result<u16, ClientError> {
        if subs.is_empty() {
            return Err(ClientError::InvalidArgument(
                "[MQTT-3.8.3-2] a SUBSCRIBE carries at least one topic filter",
            ));
        }
        for (filter, _) in subs {
            crate::topic::validate_topic_filter(filter.as_str())
                .map_err(|e| ClientError::InvalidTopic(e.0))?;
            if filter.is_empty() {
                return Err(ClientError::InvalidTopic(
                    "[MQTT-4.7.3-1] a topic filter is at least one character long",
                ));
            }
        }
        let subscriptions = subs
            .iter()
            .map(|(filter, options)| Subscription {
                filter: filter.clone(),
                options: *options,
            })
            .collect();
        let packet_id = self.queue_request(|packet_id| {
            Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                subscriptions,
            })
        })?;
        Ok(packet_id)
    }

    /// Unsubscribes from these filters with one UNSUBSCRIBE. Returns its packet identifier, or 0
    /// when nothing was queued (see [`ClientSession::try_unsubscribe`]).
    pub fn unsubscribe(&mut self, filters: &[MqttString]) -> u16 {
        self.try_unsubscribe(filters).unwrap_or(0)
    }

    /// Unsubscribes with one UNSUBSCRIBE and returns its packet identifier. Errors as for
    /// [`ClientSession::try_subscribe`] ([MQTT-3.10.3-2]).
    pub fn try_unsubscribe(&mut self, filters: &[MqttString]) -> Result<u16, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::InvalidArgument(
                "[MQTT-3.10.3-2] an UNSUBSCRIBE carries at least one topic filter",
            ));
        }
        let filters = filters.to_vec();
        self.queue_request(|packet_id| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters,
            })
        })
    }

    fn queue_request(&mut self, build: impl FnOnce(u16) -> Packet) -> Result<u16, ClientError> {
        if self.closing || self.state == SessionState::Disconnected && !self.reconnecting {
            return Err(ClientError::ConnectionClosed);
        }
        // Unacknowledged requests count against the same limit: while disconnected they are
        // recorded without being queued.
        if self.tx.len() >= self.options.transmit_queue_max
            || self.requests.len() >= self.options.transmit_queue_max
        {
            self.stats.transmit_queue_full += 1;
            return Err(ClientError::TransmitQueueFull);
        }
        let Some(packet_id) = self.allocate_packet_id() else {
            return Err(ClientError::WindowFull);
        };
        let packet = build(packet_id);
        if self.state == SessionState::Connected {
            self.tx.push_back(packet.clone());
        }
        // Before CONNACK the request is only recorded; the CONNACK handler queues it.
        let seq = self.next_seq();
        self.requests.insert(packet_id, Request { packet, seq });
        Ok(packet_id)
    }

    fn allocate_packet_id(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let packet_id = self.next_packet_id;
            self.next_packet_id = if packet_id == u16::MAX {
                1
            } else {
                packet_id + 1
            };
            if !self.outgoing.contains_key(&packet_id) && !self.requests.contains_key(&packet_id) {
                return Some(packet_id);
            }
        }
        None
    }

    fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Moves accepted publishes onto the wire while the window allows (only when connected, so
    /// that the server's Receive Maximum is known).
    fn flush_outgoing(&mut self) {
        if self.state != SessionState::Connected || self.closing {
            return;
        }
        while self.on_wire < self.window() {
            let Some(packet_id) = self.unsent.pop_front() else {
                break;
            };
            let Some(entry) = self.outgoing.get_mut(&packet_id) else {
                continue;
            };
            entry.on_wire = true;
            self.on_wire += 1;
            if entry.ever_sent {
                self.stats.resends += 1;
            }
            let packet = if entry.released {
                Packet::PubRel(make_ack(packet_id, ReasonCode::Success))
            } else {
                let mut publish = entry.publish.clone();
                publish.dup = entry.ever_sent;
                entry.ever_sent = true;
                Packet::Publish(publish)
            };
            self.tx.push_back(packet);
        }
    }

    // ---- outputs ----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends every pending frame to `out` (CONNECT alone before CONNACK).
    pub fn poll_transmit(&mut self, out: &mut BytesMut) {
        while let Some(packet) = self.poll_packet() {
            // The caller's topics are checked when queued (`check_publish`); a property value
            // over 65,535 bytes is not, and such a packet is dropped rather than sent cut.
            if let Err(error) = packet.encode(self.version, out) {
                log::error!("client: packet not sent: {error}");
            }
        }
    }

    /// The next pending packet, unencoded (what `poll_transmit` would encode next).
    pub fn poll_packet(&mut self) -> Option<Packet> {
        if let Some(connect) = self.connect_packet.take() {
            self.last_send = self.latest_now;
            return Some(connect);
        }
        if let Some(auth) = self.auth_packet.take() {
            self.last_send = self.latest_now;
            return Some(auth);
        }
        if self.state != SessionState::Connected {
            return None;
        }
        let mut packet = self.tx.pop_front()?;
        self.last_send = self.latest_now;
        match &mut packet {
            Packet::Publish(publish) => {
                self.stats.publishes_sent += 1;
                self.apply_outgoing_alias(publish);
            }
            Packet::Disconnect(_) => {
                self.state = SessionState::Disconnected;
                self.tx.clear();
                self.events.push_back(Event::Disconnected(None));
            }
            _ => {}
        }
        Some(packet)
    }

    /// Replaces the topic by its alias when one is assigned, or assigns one while the limit
    /// allows. Applied at transmission so that queued and resent packets carry the full topic.
    fn apply_outgoing_alias(&mut self, publish: &mut Publish) {
        let limit = self
            .options
            .topic_alias_outgoing_max
            .min(self.server_topic_alias_maximum);
        if limit == 0 || !self.version.is_v5() {
            return;
        }
        if let Some(&alias) = self.outgoing_aliases.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = MqttString::default();
            return;
        }
        if self.outgoing_aliases.len() >= usize::from(limit) {
            return;
        }
        if let Some(max) = self.server_max_packet_size {
            // The alias property adds three bytes, and may lengthen the property length.
            if publish_encoded_len(publish, self.version) + 4 > max as usize {
                return;
            }
        }
        // Aliases 1..=limit, in order of first use ([MQTT-3.3.2-8]: never 0).
        let alias = self.outgoing_aliases.len() as u16 + 1;
        self.outgoing_aliases.insert(publish.topic.clone(), alias);
        publish.properties.topic_alias = Some(alias);
    }

    /// When `handle_timeout` must be called next: the CONNACK deadline, the next PINGREQ, or the
    /// PINGRESP deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.deferred_error.is_some() {
            return self.connect_sent;
        }
        match self.state {
            SessionState::Connecting => self
                .connect_sent
                .map(|sent| sent + self.options.connect_timeout),
            SessionState::Connected if !self.keep_alive.is_zero() => match self.ping_sent {
                Some(sent) => Some(sent + self.keep_alive),
                None => self.last_send.map(|sent| sent + self.keep_alive),
            },
            _ => None,
        }
    }

    // ---- inputs ----

    /// Advances the clock: queues PINGREQ after `keep_alive` of send-idleness, fails with
    /// `KeepAliveTimeout` when its PINGRESP is late, and with `ConnectTimeout` when CONNACK is.
    /// On error the state is [`SessionState::Disconnected`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        self.stamp(now);
        if let Some(error) = self.deferred_error.take() {
            self.state = SessionState::Disconnected;
            self.connect_packet = None;
            return Err(error);
        }
        match self.state {
            SessionState::Connecting => {
                if let Some(sent) = self.connect_sent {
                    if now >= sent + self.options.connect_timeout {
                        self.state = SessionState::Disconnected;
                        return Err(ClientError::ConnectTimeout);
                    }
                }
            }
            SessionState::Connected if !self.keep_alive.is_zero() => {
                if let Some(sent) = self.ping_sent {
                    if now >= sent + self.keep_alive {
                        self.state = SessionState::Disconnected;
                        return Err(ClientError::KeepAliveTimeout);
                    }
                } else if let Some(last) = self.last_send {
                    // [MQTT-3.1.2-23]: a control packet at least every keep-alive interval.
                    if now >= last + self.keep_alive && !self.closing {
                        self.tx.push_back(Packet::PingReq);
                        self.ping_sent = Some(now);
                        self.stats.pings_sent += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes every whole frame in `buf` (consuming it) and handles each packet, stopping early
    /// when `event_queue_max` events are waiting (drain `poll_event` and call again) or when the
    /// connection ended. On error the state is [`SessionState::Disconnected`].
    pub fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), ClientError> {
        self.stamp(now);
        while self.events.len() < self.options.event_queue_max
            && matches!(
                self.state,
                SessionState::Connecting | SessionState::Connected
            )
        {
            match codec::decode(buf, self.version, self.options.max_packet_size) {
                Ok(Some(packet)) => self.handle_packet(packet, now)?,
                Ok(None) => break,
                Err(e) => {
                    self.state = SessionState::Disconnected;
                    return Err(ClientError::Decode(e));
                }
            }
        }
        Ok(())
    }

    /// Handles one decoded packet from the server. On error the state is
    /// [`SessionState::Disconnected`].
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) -> Result<(), ClientError> {
        self.stamp(now);
        let result = self.dispatch(packet);
        if result.is_err() {
            self.state = SessionState::Disconnected;
        }
        result
    }

    fn dispatch(&mut self, packet: Packet) -> Result<(), ClientError> {
        match self.state {
            SessionState::Connecting => {
                return match packet {
                    Packet::ConnAck(connack) => self.handle_connack(connack),
                    Packet::Auth(auth) => self.handle_auth(auth),
                    // [MQTT-3.2.0-1]: the first packet from the server is CONNACK.
                    _ => Err(ClientError::Protocol(
                        "[MQTT-3.2.0-1] the first packet from the server must be CONNACK",
                    )),
                };
            }
            SessionState::Connected => {}
            // Bytes after the end of the connection are ignored.
            SessionState::Idle | SessionState::Disconnected => return Ok(()),
        }
        match packet {
            Packet::Publish(publish) => self.handle_publish(publish),
            Packet::PubAck(ack) => {
                self.handle_puback(ack);
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.handle_pubrec(ack);
                Ok(())
            }
            Packet::PubRel(ack) => {
                self.handle_pubrel(ack);
                Ok(())
            }
            Packet::PubComp(ack) => {
                self.handle_pubcomp(ack);
                Ok(())
            }
            Packet::SubAck(suback) => self.handle_suback(suback),
            Packet::UnsubAck(unsuback) => self.handle_unsuback(unsuback),
            Packet::PingResp => {
                self.ping_sent = None;
                self.events.push_back(Event::PingResp);
                Ok(())
            }
            Packet::Disconnect(disconnect) => {
                self.state = SessionState::Disconnected;
                self.events.push_back(Event::Disconnected(Some(disconnect)));
                Ok(())
            }
            Packet::ConnAck(_) => Err(ClientError::Protocol(
                "[MQTT-3.2.0-2] the server sent a second CONNACK",
            )),
            Packet::Auth(_) => Err(ClientError::Protocol(
                "AUTH received, but no authentication method was sent (section 4.12)",
            )),
            Packet::Connect(_)
            | Packet::Subscribe(_)
            | Packet::Unsubscribe(_)
            | Packet::PingReq => Err(ClientError::Protocol(
                "the server sent a packet only a client may send",
            )),
        }
    }

    /// Records the clock of a call; transmissions are stamped with the latest one.
    fn stamp(&mut self, now: Instant) {
        match self.latest_now {
            Some(latest) if latest >= now => {}
            _ => self.latest_now = Some(now),
        }
    }
}

fn make_ack(packet_id: u16, reason_code: ReasonCode) -> Ack {
    Ack {
        packet_id,
        reason_code,
        properties: Properties::default(),
    }
}

/// Wire size of a PUBLISH with a packet id, computed without cloning the payload's bytes.
fn publish_encoded_len(publish: &Publish, version: ProtocolVersion) -> usize {
    let mut probe = publish.clone();
    if probe.qos != QoS::AtMostOnce && probe.packet_id == 0 {
        probe.packet_id = 1;
    }
    Packet::Publish(probe).encoded_len(version)
}

mod incoming;
#[cfg(test)]
mod tests;
