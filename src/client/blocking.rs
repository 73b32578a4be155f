//! A synchronous MQTT client over one mio TCP connection, in the style of rumqttc's sync API.
//!
//! [`Client::new`] returns a [`Client`] (cheap to clone, `Send`) and its [`Connection`]. The
//! client sends commands to the connection through a bounded crossbeam channel and wakes its
//! poller with a mio [`Waker`]. **The I/O loop runs in the thread that drives the connection**
//! ([`Connection::recv`], [`Connection::recv_timeout`] or [`Connection::iter`]): nothing is read,
//! written, pinged or reconnected while no thread drives it. Typically one thread iterates the
//! connection while others publish.
//!
//! ```text
//!  Client (any thread) ──commands (bounded)──▶ Connection (the driving thread)
//!         ▲                 + Waker                 │ mio Poll: socket, waker, timers
//!         └──── reply (publish accepted) ◀──────────┤ ClientSession (sans-IO)
//!                                                   ▼
//!                                   Result<Event, ClientError> notifications
//! ```
//!
//! Backpressure: [`Client::publish`] blocks until the session accepts the message, that is
//! until the in-flight window (min of ours and the server's Receive Maximum) has room for a
//! QoS 1/2 message, the rate limit allows it, and the write buffer is below its limit.
//! [`Client::try_publish`] returns `WindowFull` or `Throttled` instead of waiting.
//!
//! Reconnect: after a lost connection the notification stream carries the error, then the
//! connection retries with exponential backoff (`reconnect_delay_min` doubling up to
//! `reconnect_delay_max`). The session resends incomplete QoS 1/2 flows and, when the server
//! has no session for us, re-subscribes every active subscription; [`Event::Reconnected`]
//! reports each new connection.

use super::{ClientError, ClientSession, ConnectOptions, Event, SessionState, TokenBucket};
use crate::codec::{MqttString, Properties, Publish, QoS, SubscriptionOptions};
use bytes::{Buf, Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Default capacity of the command channel from [`Client`] to [`Connection`].
pub const COMMAND_CAPACITY_DEFAULT: usize = 64;
/// Default limit on bytes waiting in the write buffer before commands stop being taken.
pub const WRITE_BUFFER_MAX_DEFAULT: usize = 1024 * 1024;
/// Bytes read from the socket per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Default first reconnect delay.
pub const RECONNECT_DELAY_MIN_DEFAULT: Duration = Duration::from_millis(100);
/// Default largest reconnect delay.
pub const RECONNECT_DELAY_MAX_DEFAULT: Duration = Duration::from_secs(5);

/// Options of the blocking client: the session's [`ConnectOptions`] plus reconnect, throttling
/// and buffer limits.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// What goes into CONNECT and the session's limits.
    pub connect: ConnectOptions,
    /// Reconnect automatically after the connection is lost (default true). When false the
    /// notification stream ends after the first connection error.
    pub reconnect: bool,
    /// First delay before reconnecting; doubled after each failed attempt.
    pub reconnect_delay_min: Duration,
    /// Largest delay before reconnecting.
    pub reconnect_delay_max: Duration,
    /// Publish rate limit in messages per second (all QoS), `None` for unlimited.
    pub max_rate_per_sec: Option<f64>,
    /// Publishes that may pass at once after an idle period under `max_rate_per_sec` (>= 1).
    pub rate_burst: u32,
    /// Capacity of the command channel.
    pub command_capacity: usize,
    /// Write-buffer size above which commands wait (a slow or stalled socket).
    pub write_buffer_max: usize,
    /// Read-buffer size above which the socket is not read until the session consumed it.
    pub read_buffer_max: usize,
}

impl From<ConnectOptions> for ClientOptions {
    fn from(connect: ConnectOptions) -> ClientOptions {
        let read_buffer_max = connect.max_packet_size as usize + READ_CHUNK;
        ClientOptions {
            connect,
            reconnect: true,
            reconnect_delay_min: RECONNECT_DELAY_MIN_DEFAULT,
            reconnect_delay_max: RECONNECT_DELAY_MAX_DEFAULT,
            max_rate_per_sec: None,
            rate_burst: 1,
            command_capacity: COMMAND_CAPACITY_DEFAULT,
            write_buffer_max: WRITE_BUFFER_MAX_DEFAULT,
            read_buffer_max,
        }
    }
}

impl ClientOptions {
    /// Sets the publish rate limit (messages per second).
    pub fn max_rate_per_sec(mut self, rate: f64) -> ClientOptions {
        self.max_rate_per_sec = Some(rate);
        self
    }

    /// Enables or disables automatic reconnect.
    pub fn reconnect(mut self, reconnect: bool) -> ClientOptions {
        self.reconnect = reconnect;
        self
    }

    /// Sets the reconnect backoff range.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> ClientOptions {
        self.reconnect_delay_min = min;
        self.reconnect_delay_max = max.max(min);
        self
    }
}

type Reply<T> = Sender<Result<T, ClientError>>;

enum Command {
    Publish {
        publish: Publish,
        wait: bool,
        reply: Reply<Option<u16>>,
    },
    Subscribe {
        subs: Vec<(MqttString, SubscriptionOptions)>,
        reply: Reply<u16>,
    },
    Unsubscribe {
        filters: Vec<MqttString>,
        reply: Reply<u16>,
    },
    Disconnect,
}

impl Command {
    fn refuse(self, error: fn() -> ClientError) {
        // A caller that gave up waiting dropped its receiver; nothing to tell then.
        match self {
            Command::Publish { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Command::Subscribe { reply, .. } | Command::Unsubscribe { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Command::Disconnect => {}
        }
    }
}

/// The handle to publish, subscribe and disconnect. Clone it freely; every clone talks to the
/// same [`Connection`]. All calls fail with `ConnectionClosed` once the connection is dropped.
#[derive(Clone)]
pub struct Client {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the broker at `host:port` and its connection. Nothing happens on the network
    /// until a thread drives the [`Connection`].
    pub fn new(
        options: impl Into<ClientOptions>,
        host: impl Into<String>,
        port: u16,
    ) -> Result<(Client, Connection), ClientError> {
        let options = options.into();
        let session = ClientSession::new(options.connect.clone());
        Client::with_session(session, options, host, port)
    }

    /// Like [`Client::new`] with a prepared session, for example one with
    /// [`ClientSession::with_enhanced_auth`]. The session's own [`ConnectOptions`] apply;
    /// `options.connect` is not used.
    pub fn with_session(
        session: ClientSession,
        options: ClientOptions,
        host: impl Into<String>,
        port: u16,
    ) -> Result<(Client, Connection), ClientError> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (commands_tx, commands_rx) =
            crossbeam_channel::bounded(options.command_capacity.max(1));
        let now = Instant::now();
        let throttle = options
            .max_rate_per_sec
            .map(|rate| TokenBucket::new(rate, options.rate_burst, now));
        let connection = Connection {
            session,
            backoff: options.reconnect_delay_min,
            options,
            host: host.into(),
            port,
            addrs: Vec::new(),
            addr_index: 0,
            poll,
            events: Events::with_capacity(16),
            commands: commands_rx,
            socket: None,
            link: Link::Down { retry_at: now },
            read_ready: false,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(READ_CHUNK),
            chunk: vec![0; READ_CHUNK],
            queued: VecDeque::new(),
            throttle,
            throttled_until: None,
            notifications: VecDeque::new(),
            user_closing: false,
            closed: false,
        };
        let client = Client {
            commands: commands_tx,
            waker,
        };
        Ok((client, connection))
    }

    fn send(&self, command: Command) -> Result<(), ClientError> {
        match self.commands.try_send(command) {
            Ok(()) => {}
            Err(TrySendError::Full(command)) => {
                // Wake the connection first so it drains the channel while we wait.
                self.waker.wake()?;
                self.commands
                    .send(command)
                    .map_err(|_| ClientError::ConnectionClosed)?;
            }
            Err(TrySendError::Disconnected(_)) => return Err(ClientError::ConnectionClosed),
        }
        self.waker.wake()?;
        Ok(())
    }

    fn call<T>(&self, build: impl FnOnce(Reply<T>) -> Command) -> Result<T, ClientError> {
        let (reply_tx, reply_rx) = crossbeam_channel::bounded(1);
        self.send(build(reply_tx))?;
        reply_rx.recv().map_err(|_| ClientError::ConnectionClosed)?
    }

    /// Publishes, blocking until the session accepts the message (window, rate limit and write
    /// buffer permitting). Returns the packet id for QoS 1/2; completion is reported by
    /// [`Event::PubAck`] / [`Event::PubComp`] on the connection.
    ///
    /// Every call except [`Client::disconnect`] is one round trip to the thread driving the
    /// [`Connection`], so make it from another thread: made from the driving thread itself it
    /// waits forever.
    pub fn publish(
        &self,
        topic: impl Into<MqttString>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<Option<u16>, ClientError> {
        self.publish_message(message(topic.into(), qos, retain, payload.into()))
    }

    /// Like [`Client::publish`] but fails with `WindowFull` or `Throttled` instead of waiting.
    pub fn try_publish(
        &self,
        topic: impl Into<MqttString>,
        qos: QoS,
        retain: bool,
        payload: impl Into<Bytes>,
    ) -> Result<Option<u16>, ClientError> {
        let publish = message(topic.into(), qos, retain, payload.into());
        self.call(|reply| Command::Publish {
            publish,
            wait: false,
            reply,
        })
    }

    /// Publishes a prepared PUBLISH (MQTT 5 properties included), blocking like
    /// [`Client::publish`].
    pub fn publish_message(&self, publish: Publish) -> Result<Option<u16>, ClientError> {
        self.call(|reply| Command::Publish {
            publish,
            wait: true,
            reply,
        })
    }

    /// Subscribes to one filter; returns the SUBSCRIBE's packet id once queued. The SUBACK
    /// arrives as [`Event::SubAck`].
    pub fn subscribe(&self, filter: impl Into<MqttString>, qos: QoS) -> Result<u16, ClientError> {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.subscribe_many(vec![(filter.into(), options)])
    }

    /// Subscribes to several filters with one SUBSCRIBE.
    pub fn subscribe_many(
        &self,
        subs: Vec<(MqttString, SubscriptionOptions)>,
    ) -> Result<u16, ClientError> {
        self.call(|reply| Command::Subscribe { subs, reply })
    }

    /// Unsubscribes from filters with one UNSUBSCRIBE.
    pub fn unsubscribe(&self, filters: Vec<MqttString>) -> Result<u16, ClientError> {
        self.call(|reply| Command::Unsubscribe { filters, reply })
    }

    /// Sends DISCONNECT after what is already queued and closes the connection; the
    /// notification stream then ends.
    pub fn disconnect(&self) -> Result<(), ClientError> {
        self.send(Command::Disconnect)
    }
}

fn message(topic: MqttString, qos: QoS, retain: bool, payload: Bytes) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic,
        packet_id: 0,
        properties: Properties::default(),
        payload,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// No socket; the next attempt is due at `retry_at`.
    Down { retry_at: Instant },
    /// TCP handshake in progress.
    Opening,
    /// TCP connected (MQTT CONNECT/CONNACK run on top).
    Up,
}

/// The I/O side of a [`Client`]: drive it from one thread to make everything happen.
pub struct Connection {
    session: ClientSession,
    options: ClientOptions,
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
    addr_index: usize,
    poll: Poll,
    events: Events,
    commands: Receiver<Command>,
    socket: Option<TcpStream>,
    link: Link,
    /// Readiness is edge-triggered: remember it until `WouldBlock`. Writes are simply
    /// attempted whenever there is something to write.
    read_ready: bool,
    read_buf: BytesMut,
    write_buf: BytesMut,
    chunk: Vec<u8>,
    /// Commands taken from the channel and not yet run, at most `command_capacity`. The front
    /// one may be a publish waiting for room in the window, a rate token or the write buffer.
    queued: VecDeque<Command>,
    throttle: Option<TokenBucket>,
    throttled_until: Option<Instant>,
    backoff: Duration,
    notifications: VecDeque<Result<Event, ClientError>>,
    user_closing: bool,
    closed: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("link", &self.link)
            .field("state", &self.session.state())
            .finish_non_exhaustive()
    }
}

/// Blocking iterator over a connection's notifications; ends when the connection is closed.
#[derive(Debug)]
pub struct Iter<'a> {
    connection: &'a mut Connection,
}

impl Iterator for Iter<'_> {
    type Item = Result<Event, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.connection.recv()
    }
}

impl Connection {
    /// A blocking iterator of notifications (incoming publishes, acks, errors), like rumqttc's
    /// `Connection::iter()`. It ends after [`Client::disconnect`], or after the first connection
    /// error when reconnect is off.
    pub fn iter(&mut self) -> Iter<'_> {
        Iter { connection: self }
    }

    /// The next notification, driving I/O until there is one. `None` once closed.
    pub fn recv(&mut self) -> Option<Result<Event, ClientError>> {
        loop {
            if let Some(notification) = self.notifications.pop_front() {
                return Some(notification);
            }
            if self.closed {
                self.refuse_commands();
                return None;
            }
            self.step(None);
        }
    }

    /// Like [`Connection::recv`] but gives up after `timeout` (`None` then too; see
    /// [`Connection::is_closed`]).
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Result<Event, ClientError>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(notification) = self.notifications.pop_front() {
                return Some(notification);
            }
            if self.closed {
                self.refuse_commands();
                return None;
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.step(Some(deadline));
        }
    }

    /// Whether the connection is closed for good (the iterator has ended).
    pub fn is_closed(&self) -> bool {
        self.closed && self.notifications.is_empty()
    }

    /// The session, for its state, window and counters.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// One turn of the loop: commands, session, then at most one blocking poll.
    fn step(&mut self, deadline: Option<Instant>) {
        let now = Instant::now();
        self.maintain_link(now);
        self.process_commands(now);
        self.drive(now);
        if !self.notifications.is_empty() || self.closed {
            return;
        }
        let timeout = self.next_wakeup(now, deadline);
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                self.notifications.push_back(Err(ClientError::Io(e)));
                self.close();
            }
            return;
        }
        let mut socket_event = false;
        for event in self.events.iter() {
            if event.token() == SOCKET {
                socket_event = true;
                // Errors and hang-ups surface through read/write themselves.
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.read_ready = true;
                }
            }
        }
        if socket_event && self.link == Link::Opening {
            self.check_opened();
        }
        let now = Instant::now();
        self.drive(now);
        self.process_commands(now);
        self.drive(now);
    }

    fn next_wakeup(&mut self, now: Instant, deadline: Option<Instant>) -> Option<Duration> {
        let mut wake = deadline;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        };
        match self.link {
            Link::Down { retry_at } => consider(Some(retry_at)),
            Link::Opening | Link::Up => consider(self.session.poll_timeout()),
        }
        if !self.queued.is_empty() {
            consider(self.throttled_until);
        }
        if self.read_ready && self.link == Link::Up {
            // The socket may hold more than the read buffer took: no new edge will announce it.
            consider(Some(now));
        }
        wake.map(|at| at.saturating_duration_since(now))
    }

    // ---- the link ----

    fn maintain_link(&mut self, now: Instant) {
        if self.closed || self.user_closing {
            return;
        }
        if let Link::Down { retry_at } = self.link {
            if now >= retry_at {
                self.open(now);
            }
        }
    }

    fn open(&mut self, now: Instant) {
        if self.addr_index >= self.addrs.len() {
            self.addr_index = 0;
            match (self.host.as_str(), self.port).to_socket_addrs() {
                Ok(addrs) => self.addrs = addrs.collect(),
                Err(_) => self.addrs.clear(),
            }
            if self.addrs.is_empty() {
                self.lost(Some(ClientError::Resolve(self.host.clone())), now);
                return;
            }
        }
        let addr = self.addrs[self.addr_index];
        let mut socket = match TcpStream::connect(addr) {
            Ok(socket) => socket,
            Err(e) => {
                self.open_failed(e, now);
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut socket,
            SOCKET,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.open_failed(e, now);
            return;
        }
        self.socket = Some(socket);
        self.link = Link::Opening;
        self.read_ready = false;
        self.read_buf.clear();
        self.write_buf.clear();
        // CONNECT waits in the session until the handshake completes; the session's connect
        // timeout covers the handshake too.
        self.session.start(now);
    }

    /// A TCP attempt failed: try the host's next address at once, else back off.
    fn open_failed(&mut self, error: io::Error, now: Instant) {
        self.drop_socket();
        self.addr_index += 1;
        if self.addr_index < self.addrs.len() {
            self.link = Link::Down { retry_at: now };
            return;
        }
        self.lost(Some(ClientError::Io(error)), now);
    }

    /// After a writable event while opening: connected, failed, or not yet (spurious).
    fn check_opened(&mut self) {
        let Some(socket) = &self.socket else {
            return;
        };
        let now = Instant::now();
        match socket.take_error() {
            Ok(Some(e)) | Err(e) => {
                self.open_failed(e, now);
                return;
            }
            Ok(None) => {}
        }
        match socket.peer_addr() {
            Ok(_) => {
                // Small packets (acks, pings) must not wait for Nagle.
                let _ = socket.set_nodelay(true);
                self.link = Link::Up;
                self.addr_index = 0;
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => self.open_failed(e, now),
        }
    }

    fn drop_socket(&mut self) {
        if let Some(mut socket) = self.socket.take() {
            let _ = self.poll.registry().deregister(&mut socket);
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
        self.read_ready = false;
    }

    /// The connection is gone: report, keep the session for resending, and schedule a retry.
    fn lost(&mut self, error: Option<ClientError>, now: Instant) {
        self.drop_socket();
        self.read_buf.clear();
        self.write_buf.clear();
        if let Some(error) = error {
            self.notifications.push_back(Err(error));
        }
        self.session.reset_for_reconnect();
        if self.options.reconnect && !self.user_closing {
            self.link = Link::Down {
                retry_at: now + self.backoff,
            };
            self.backoff = (self.backoff * 2).min(self.options.reconnect_delay_max);
        } else {
            self.close();
        }
    }

    fn close(&mut self) {
        self.drop_socket();
        self.closed = true;
        self.link = Link::Down {
            retry_at: Instant::now(),
        };
        self.refuse_commands();
    }

    fn refuse_commands(&mut self) {
        while let Some(command) = self.queued.pop_front() {
            command.refuse(|| ClientError::ConnectionClosed);
        }
        while let Ok(command) = self.commands.try_recv() {
            command.refuse(|| ClientError::ConnectionClosed);
        }
    }

    // ---- commands ----

    fn process_commands(&mut self, now: Instant) {
        if self.closed {
            self.refuse_commands();
            return;
        }
        self.throttled_until = None;
        // Take what the channel holds, so that a DISCONNECT behind a waiting publish is seen.
        while self.queued.len() < self.options.command_capacity.max(1) {
            match self.commands.try_recv() {
                Ok(command) => self.queued.push_back(command),
                Err(_) => break,
            }
        }
        while self.write_buf.len() < self.options.write_buffer_max {
            let Some(command) = self.queued.pop_front() else {
                break;
            };
            let Some(waiting) = self.execute(command, now) else {
                continue;
            };
            if self
                .queued
                .iter()
                .any(|command| matches!(command, Command::Disconnect))
            {
                // The client is disconnecting: a publish that must wait is refused instead.
                waiting.refuse(|| ClientError::ConnectionClosed);
                continue;
            }
            self.queued.push_front(waiting);
            break;
        }
    }

    /// Runs a command; gives it back when it must wait.
    fn execute(&mut self, command: Command, now: Instant) -> Option<Command> {
        match command {
            Command::Publish {
                publish,
                wait,
                reply,
            } => {
                if let Some(throttle) = &mut self.throttle {
                    let next = throttle.next_available(now);
                    if next > now {
                        if !wait {
                            let _ = reply.send(Err(ClientError::Throttled));
                            return None;
                        }
                        self.throttled_until = Some(next);
                        return Some(Command::Publish {
                            publish,
                            wait,
                            reply,
                        });
                    }
                }
                let room = if publish.qos == QoS::AtMostOnce {
                    self.session.transmit_queue_len() < self.session.options().transmit_queue_max
                } else {
                    self.session.can_publish()
                };
                if !room && wait {
                    return Some(Command::Publish {
                        publish,
                        wait,
                        reply,
                    });
                }
                let result = self.session.publish_message(publish, now);
                if result.is_ok() {
                    if let Some(throttle) = &mut self.throttle {
                        throttle.try_take(now);
                    }
                }
                let _ = reply.send(result);
                None
            }
            Command::Subscribe { subs, reply } => {
                let _ = reply.send(self.session.try_subscribe(&subs));
                None
            }
            Command::Unsubscribe { filters, reply } => {
                let _ = reply.send(self.session.try_unsubscribe(&filters));
                None
            }
            Command::Disconnect => {
                self.user_closing = true;
                let connected = self.link == Link::Up && self.session.is_connected();
                self.session.disconnect();
                if !connected {
                    // Nothing to tell the server: not connected, or before CONNACK.
                    self.close();
                }
                // Otherwise `drive_up` writes DISCONNECT, then closes.
                None
            }
        }
    }

    // ---- I/O and the session ----

    fn drive(&mut self, now: Instant) {
        match self.link {
            Link::Down { .. } => {}
            Link::Opening => {
                if let Err(e) = self.session.handle_timeout(now) {
                    self.lost(Some(e), now);
                }
            }
            Link::Up => self.drive_up(now),
        }
    }

    fn drive_up(&mut self, now: Instant) {
        // A read error or end of stream is reported after the bytes read before it are handled:
        // the server's last words (a refusing CONNACK, a DISCONNECT) explain it better.
        let read_error = if self.read_ready {
            self.read_socket().err()
        } else {
            None
        };
        if !self.read_buf.is_empty() {
            if let Err(error) = self.session.handle_input(&mut self.read_buf, now) {
                self.collect_events();
                self.lost(Some(error), now);
                return;
            }
        }
        if let Some(error) = read_error {
            let server_disconnected = self.collect_events();
            self.lost((!server_disconnected).then_some(error), now);
            return;
        }
        if let Err(error) = self.session.handle_timeout(now) {
            self.collect_events();
            self.lost(Some(error), now);
            return;
        }
        let server_disconnected = self.collect_events();
        if server_disconnected {
            self.lost(None, now);
            return;
        }
        self.session.poll_transmit(&mut self.write_buf);
        if let Err(error) = self.write_socket() {
            self.collect_events();
            self.lost(Some(error), now);
            return;
        }
        self.collect_events();
        if self.user_closing
            && self.session.state() == SessionState::Disconnected
            && self.write_buf.is_empty()
        {
            self.close();
        }
    }

    /// Moves session events to the notification queue; true if the server ended the
    /// connection (DISCONNECT).
    fn collect_events(&mut self) -> bool {
        let mut server_disconnected = false;
        while let Some(event) = self.session.poll_event() {
            match &event {
                Event::Connected(_) | Event::Reconnected(_) => {
                    self.backoff = self.options.reconnect_delay_min;
                }
                Event::Disconnected(Some(_)) => server_disconnected = true,
                _ => {}
            }
            self.notifications.push_back(Ok(event));
        }
        server_disconnected
    }

    fn read_socket(&mut self) -> Result<(), ClientError> {
        let Some(socket) = &mut self.socket else {
            return Ok(());
        };
        while self.read_buf.len() < self.options.read_buffer_max {
            match socket.read(&mut self.chunk) {
                Ok(0) => return Err(ClientError::ServerDisconnected(None)),
                Ok(n) => self.read_buf.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.read_ready = false;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
        // Buffer full: leave `read_ready` set and read again once the session consumed it.
        Ok(())
    }

    fn write_socket(&mut self) -> Result<(), ClientError> {
        let Some(socket) = &mut self.socket else {
            return Ok(());
        };
        while !self.write_buf.is_empty() {
            match socket.write(&self.write_buf) {
                Ok(0) => return Err(ClientError::ServerDisconnected(None)),
                Ok(n) => self.write_buf.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
        }
        Ok(())
    }
}
