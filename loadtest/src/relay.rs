//! The raw relay: the ceiling of this machine, not a broker.
//!
//! A byte-copying forwarder that speaks just enough MQTT for the load generator's clients to
//! run: it answers CONNECT with CONNACK, SUBSCRIBE with SUBACK (granting what was asked),
//! PINGREQ with PINGRESP, acknowledges publishes (PUBACK, or PUBREC then PUBCOMP on PUBREL) and
//! answers a subscriber's PUBREC with PUBREL, so QoS 1 and 2 flows complete. A PUBLISH is copied
//! unchanged (only its packet identifier is rewritten per subscriber) to every subscriber whose
//! filter is exactly the topic or matches it with `+` and `#` (a plain level-by-level match, no
//! trie: a list of wildcard filters is scanned per publish), and a `$share/{group}/{filter}`
//! group receives what its filter would, one member in turn. While any
//! subscriber's write buffer is over a high-water mark, no worker reads from publishers, so TCP
//! pushes back on them (drops happen only past a hard limit, counted). No
//! validation, no sessions, no retained messages, no per-version
//! re-encoding: what a load run measures through it is the load generator and the kernel.
//!
//! ```text
//!  acceptor ──(round-robin, channel + waker)──▶ worker 0 .. worker N-1 (mio Poll + Slab)
//!  worker A: PUBLISH from a publisher ─▶ routes (RwLock, read once per read chunk)
//!            local subscriber: copy into its write buffer
//!            remote subscriber: one batch per destination worker per turn, then wake it
//! ```

use crate::cli::resolve_loopback;
use crate::wire;
use bytes::{Bytes, BytesMut};
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

/// Bytes a subscriber's write buffer may hold; publishes beyond it are dropped and counted.
pub const RELAY_TX_MAX_BYTES: usize = 16 * 1024 * 1024;
/// A subscriber whose write buffer holds more than this is congested: while any subscriber is,
/// no worker reads from publishers, so TCP pushes back on them instead of the relay dropping.
pub const RELAY_TX_HIGH_WATER_BYTES: usize = 2 * 1024 * 1024;
/// A congested subscriber is clear again once its write buffer is below this.
pub const RELAY_TX_LOW_WATER_BYTES: usize = 512 * 1024;
/// Batches waiting in one worker's inbox at most; a full inbox drops the batch (counted).
pub const RELAY_INBOX_MAX: usize = 4096;
/// Connections one relay accepts at most.
pub const RELAY_CONNECTIONS_MAX: usize = 200_000;
const READ_CHUNK_BYTES: usize = 64 * 1024;
const WAKER: Token = Token(usize::MAX);
const LISTENER: Token = Token(usize::MAX - 1);

/// Counters of a running relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub connections: u64,
    /// PUBLISH frames received from publishers.
    pub publishes_in: u64,
    /// PUBLISH copies written towards subscribers.
    pub forwarded: u64,
    /// Copies dropped because a write buffer or an inbox was full.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    publishes_in: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
}

/// Where a subscriber lives: worker, slab key, and the connection's unique id (keys are reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    worker: usize,
    key: usize,
    conn_id: u64,
}

#[derive(Default)]
struct Routes {
    exact: HashMap<Bytes, Vec<Route>>,
    /// Filters with `+` or `#`, each with its subscriber.
    wildcard: Vec<(Bytes, Route)>,
    /// `$share/{group}/{filter}` subscriptions by (group, filter): each message goes to one
    /// member, in turn.
    shared: HashMap<(Bytes, Bytes), SharedGroup>,
}

#[derive(Default)]
struct SharedGroup {
    members: Vec<Route>,
    next: AtomicUsize,
}

impl SharedGroup {
    /// The member whose turn it is, if the group takes `topic`.
    fn pick(&self, filter: &[u8], topic: &[u8]) -> Option<Route> {
        if self.members.is_empty() || !filter_matches(filter, topic) {
            return None;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        Some(self.members[turn % self.members.len()])
    }
}

/// Splits `$share/{group}/{filter}` into group and filter.
fn split_shared(filter: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = filter.strip_prefix(b"$share/")?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    Some((&rest[..slash], &rest[slash + 1..]))
}

fn has_wildcard(filter: &[u8]) -> bool {
    filter.iter().any(|&b| b == b'#' || b == b'+')
}

/// Whether an MQTT topic filter matches a topic name, level by level (`+` one level, `#` the
/// rest). The load generator's topics never start with `$`, so that rule is not checked.
fn filter_matches(filter: &[u8], topic: &[u8]) -> bool {
    let mut topic_levels = topic.split(|&b| b == b'/');
    for level in filter.split(|&b| b == b'/') {
        if level == b"#" {
            return true;
        }
        match topic_levels.next() {
            Some(name) if level == b"+" || level == name => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

enum Inbox {
    Accepted(TcpStream),
    Forward(Vec<(usize, u64, Bytes)>),
}

struct Shared {
    routes: RwLock<Routes>,
    stop: AtomicBool,
    /// Congested subscribers over all workers (see [`RELAY_TX_HIGH_WATER_BYTES`]).
    congested: AtomicUsize,
    counters: Counters,
    inboxes: Vec<Sender<Inbox>>,
    wakers: Vec<Arc<Waker>>,
}

/// A running relay; dropping it stops it.
pub struct Relay {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor_waker: Arc<Waker>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Starts a relay on `listen` (a loopback address; port 0 picks one) with `threads` workers.
    pub fn start(listen: &str, threads: usize) -> Result<Relay, String> {
        let addr = resolve_loopback(listen)?;
        let threads = threads.max(1);
        let mut listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let mut polls = Vec::with_capacity(threads);
        let mut wakers = Vec::with_capacity(threads);
        let mut receivers = Vec::with_capacity(threads);
        let mut inboxes = Vec::with_capacity(threads);
        for _ in 0..threads {
            let poll = Poll::new().map_err(|e| e.to_string())?;
            wakers.push(Arc::new(
                Waker::new(poll.registry(), WAKER).map_err(|e| e.to_string())?,
            ));
            polls.push(poll);
            let (tx, rx) = bounded(RELAY_INBOX_MAX);
            inboxes.push(tx);
            receivers.push(rx);
        }
        let shared = Arc::new(Shared {
            routes: RwLock::new(Routes::default()),
            stop: AtomicBool::new(false),
            congested: AtomicUsize::new(0),
            counters: Counters::default(),
            inboxes,
            wakers,
        });
        let mut handles = Vec::with_capacity(threads + 1);
        for (index, (poll, inbox)) in polls.into_iter().zip(receivers).enumerate() {
            let worker = RelayWorker {
                index,
                poll,
                inbox,
                shared: Arc::clone(&shared),
                peers: Slab::new(),
                next_conn_id: (index as u64) << 48,
                scratch: vec![0; READ_CHUNK_BYTES],
                outbox: vec![Vec::new(); threads],
                flush: Vec::new(),
                paused: Vec::new(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("relay-{index}"))
                .spawn(move || worker.run())
                .map_err(|e| e.to_string())?;
            handles.push(handle);
        }
        let accept_poll = Poll::new().map_err(|e| e.to_string())?;
        accept_poll
            .registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(|e| e.to_string())?;
        let acceptor_waker =
            Arc::new(Waker::new(accept_poll.registry(), WAKER).map_err(|e| e.to_string())?);
        let accept_shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || accept_loop(accept_poll, listener, accept_shared))
            .map_err(|e| e.to_string())?;
        handles.push(handle);
        Ok(Relay {
            local_addr,
            shared,
            acceptor_waker,
            threads: handles,
        })
    }

    /// The address the relay listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> RelayStats {
        let c = &self.shared.counters;
        RelayStats {
            connections: c.connections.load(Ordering::Relaxed),
            publishes_in: c.publishes_in.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Asks every thread to stop.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.acceptor_waker.wake();
        for waker in &self.shared.wakers {
            let _ = waker.wake();
        }
    }

    /// Waits for every thread (after [`Relay::shutdown`], or forever).
    pub fn join(mut self) {
        for handle in std::mem::take(&mut self.threads) {
            let _ = handle.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
        for handle in std::mem::take(&mut self.threads) {
            let _ = handle.join();
        }
    }
}

fn accept_loop(mut poll: Poll, listener: TcpListener, shared: Arc<Shared>) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    while !shared.stop.load(Ordering::Acquire) {
        if poll.poll(&mut events, None).is_err() {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let total = shared.counters.connections.fetch_add(1, Ordering::Relaxed);
                    if total as usize >= RELAY_CONNECTIONS_MAX {
                        continue; // Dropping the stream closes it.
                    }
                    let worker = next % shared.inboxes.len();
                    next += 1;
                    if shared.inboxes[worker].send(Inbox::Accepted(stream)).is_ok() {
                        let _ = shared.wakers[worker].wake();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }
}

struct Peer {
    stream: TcpStream,
    conn_id: u64,
    v5: bool,
    rx: BytesMut,
    tx: Vec<u8>,
    /// Bytes at the front of `tx` already written.
    tx_head: usize,
    /// Packet identifiers of forwarded QoS 1/2 publishes are rewritten from this counter.
    next_packet_id: u16,
    subscribed: bool,
    /// Has sent a PUBLISH: its reads pause while any subscriber is congested.
    publisher: bool,
    /// Its write buffer is over the high-water mark (counted in `Shared::congested`).
    congested: bool,
    dirty: bool,
}

struct RelayWorker {
    index: usize,
    poll: Poll,
    inbox: Receiver<Inbox>,
    shared: Arc<Shared>,
    peers: Slab<Peer>,
    next_conn_id: u64,
    scratch: Vec<u8>,
    /// Forwards for other workers collected this turn, one batch per destination.
    outbox: Vec<Vec<(usize, u64, Bytes)>>,
    flush: Vec<usize>,
    /// Publishers whose reads were skipped while a subscriber was congested.
    paused: Vec<usize>,
}

impl RelayWorker {
    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        while !self.shared.stop.load(Ordering::Acquire) {
            // Paused publishers are retried every millisecond in case the wake-up was missed.
            let timeout = (!self.paused.is_empty()).then(|| std::time::Duration::from_millis(1));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return;
                }
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.on_readable(key);
                        }
                        if event.is_writable() {
                            self.mark_flush(key);
                        }
                    }
                }
            }
            self.drain_inbox();
            self.send_outbox();
            self.flush_all();
            if !self.paused.is_empty() && self.shared.congested.load(Ordering::Acquire) == 0 {
                for key in std::mem::take(&mut self.paused) {
                    self.on_readable(key);
                }
                self.send_outbox();
                self.flush_all();
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(message) = self.inbox.try_recv() {
            match message {
                Inbox::Accepted(stream) => self.add_peer(stream),
                Inbox::Forward(batch) => {
                    for (key, conn_id, bytes) in batch {
                        self.deliver(key, conn_id, &bytes);
                    }
                }
            }
        }
    }

    fn add_peer(&mut self, mut stream: TcpStream) {
        let entry = self.peers.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            return;
        }
        let _ = stream.set_nodelay(true);
        self.next_conn_id += 1;
        entry.insert(Peer {
            stream,
            conn_id: self.next_conn_id,
            v5: false,
            rx: BytesMut::new(),
            tx: Vec::new(),
            tx_head: 0,
            next_packet_id: 0,
            subscribed: false,
            publisher: false,
            congested: false,
            dirty: false,
        });
    }

    fn on_readable(&mut self, key: usize) {
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return;
            };
            if peer.publisher && self.shared.congested.load(Ordering::Relaxed) > 0 {
                if !self.paused.contains(&key) {
                    self.paused.push(key);
                }
                return;
            }
            match peer.stream.read(&mut self.scratch) {
                Ok(0) => return self.close(key),
                Ok(n) => {
                    peer.rx.extend_from_slice(&self.scratch[..n]);
                    if self.handle_frames(key).is_err() {
                        return self.close(key);
                    }
                    if n < self.scratch.len() {
                        return; // Drained: the next arrival raises a new edge.
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key),
            }
        }
    }

    fn handle_frames(&mut self, key: usize) -> Result<(), wire::WireError> {
        let shared = Arc::clone(&self.shared);
        let mut routes_guard = None;
        loop {
            let Some(peer) = self.peers.get_mut(key) else {
                return Ok(());
            };
            let Some(frame) = wire::frame(&peer.rx)? else {
                return Ok(());
            };
            let bytes = peer.rx.split_to(frame.len()).freeze();
            let body = &bytes[frame.header_len..];
            match frame.packet_type() {
                wire::CONNECT => {
                    peer.v5 = wire::connect_level(body)? == 5;
                    wire::put_connack(&mut peer.tx, peer.v5);
                }
                wire::PUBLISH => {
                    peer.publisher = true;
                    let (topic, packet_id) = wire::publish_topic_and_id(&frame, &bytes)?;
                    match (frame.first_byte >> 1) & 0x03 {
                        0 => {}
                        1 => wire::put_ack(&mut peer.tx, wire::PUBACK, packet_id),
                        _ => wire::put_ack(&mut peer.tx, wire::PUBREC, packet_id),
                    }
                    shared.counters.publishes_in.fetch_add(1, Ordering::Relaxed);
                    let routes = routes_guard.get_or_insert_with(|| match shared.routes.read() {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    });
                    let exact = routes.exact.get(topic).map(Vec::as_slice).unwrap_or(&[]);
                    for route in exact {
                        self.route(*route, &bytes);
                    }
                    for (filter, route) in &routes.wildcard {
                        if filter_matches(filter, topic) {
                            self.route(*route, &bytes);
                        }
                    }
                    for ((_, filter), group) in &routes.shared {
                        if let Some(route) = group.pick(filter, topic) {
                            self.route(route, &bytes);
                        }
                    }
                }
                wire::PUBREL => wire::put_ack(&mut peer.tx, wire::PUBCOMP, wire::packet_id(body)?),
                wire::PUBREC => wire::put_ack(&mut peer.tx, wire::PUBREL, wire::packet_id(body)?),
                wire::PUBACK | wire::PUBCOMP => {}
                wire::SUBSCRIBE => {
                    let (packet_id, filters) = wire::subscribe_filters(body, peer.v5)?;
                    let granted: Vec<u8> = filters.iter().map(|(_, qos)| *qos).collect();
                    wire::put_suback(&mut peer.tx, packet_id, &granted, peer.v5);
                    peer.subscribed = true;
                    let route = Route {
                        worker: self.index,
                        key,
                        conn_id: peer.conn_id,
                    };
                    // Release the read guard before taking the write lock.
                    routes_guard = None;
                    let mut routes = match shared.routes.write() {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    for (filter, _) in filters {
                        if let Some((group, inner)) = split_shared(filter) {
                            let key =
                                (Bytes::copy_from_slice(group), Bytes::copy_from_slice(inner));
                            routes.shared.entry(key).or_default().members.push(route);
                        } else if has_wildcard(filter) {
                            routes
                                .wildcard
                                .push((Bytes::copy_from_slice(filter), route));
                        } else {
                            let filter = Bytes::copy_from_slice(filter);
                            routes.exact.entry(filter).or_default().push(route);
                        }
                    }
                }
                wire::UNSUBSCRIBE => {
                    let filters = wire::unsubscribe_count(body, peer.v5)?;
                    wire::put_unsuback(&mut peer.tx, wire::packet_id(body)?, filters, peer.v5);
                }
                wire::PINGREQ => wire::put_pingresp(&mut peer.tx),
                wire::DISCONNECT => {
                    drop(routes_guard);
                    self.close(key);
                    return Ok(());
                }
                _ => {}
            }
            self.mark_flush(key);
        }
    }

    /// Sends one PUBLISH copy to a subscriber: directly when local, batched when remote.
    fn route(&mut self, route: Route, bytes: &Bytes) {
        if route.worker == self.index {
            self.deliver(route.key, route.conn_id, bytes);
        } else {
            self.outbox[route.worker].push((route.key, route.conn_id, bytes.clone()));
        }
    }

    /// Appends a PUBLISH to a local subscriber's write buffer, with its own packet identifier.
    fn deliver(&mut self, key: usize, conn_id: u64, bytes: &[u8]) {
        let counters = &self.shared.counters;
        let Some(peer) = self.peers.get_mut(key).filter(|p| p.conn_id == conn_id) else {
            return; // The subscriber went away; its slot may belong to someone else now.
        };
        if peer.tx.len() - peer.tx_head + bytes.len() > RELAY_TX_MAX_BYTES {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let start = peer.tx.len();
        peer.tx.extend_from_slice(bytes);
        if let Ok(Some(frame)) = wire::frame(bytes) {
            if (frame.first_byte >> 1) & 0x03 > 0 {
                if let Ok((topic, _)) = wire::publish_topic_and_id(&frame, bytes) {
                    peer.next_packet_id = peer.next_packet_id.wrapping_add(1).max(1);
                    let at = start + frame.header_len + 2 + topic.len();
                    peer.tx[at..at + 2].copy_from_slice(&peer.next_packet_id.to_be_bytes());
                }
            }
        }
        counters.forwarded.fetch_add(1, Ordering::Relaxed);
        if !peer.congested && peer.tx.len() - peer.tx_head > RELAY_TX_HIGH_WATER_BYTES {
            peer.congested = true;
            self.shared.congested.fetch_add(1, Ordering::AcqRel);
        }
        if !peer.dirty {
            peer.dirty = true;
            self.flush.push(key);
        }
    }

    fn send_outbox(&mut self) {
        for worker in 0..self.outbox.len() {
            if self.outbox[worker].is_empty() {
                continue;
            }
            let batch = std::mem::take(&mut self.outbox[worker]);
            let count = batch.len() as u64;
            match self.shared.inboxes[worker].try_send(Inbox::Forward(batch)) {
                Ok(()) => {
                    let _ = self.shared.wakers[worker].wake();
                }
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    self.shared
                        .counters
                        .dropped
                        .fetch_add(count, Ordering::Relaxed);
                }
            }
        }
    }

    fn mark_flush(&mut self, key: usize) {
        if let Some(peer) = self.peers.get_mut(key) {
            if !peer.dirty {
                peer.dirty = true;
                self.flush.push(key);
            }
        }
    }

    fn flush_all(&mut self) {
        for key in std::mem::take(&mut self.flush) {
            let Some(peer) = self.peers.get_mut(key) else {
                continue;
            };
            peer.dirty = false;
            let mut written = peer.tx_head;
            let mut failed = false;
            while written < peer.tx.len() {
                match peer.stream.write(&peer.tx[written..]) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            // Compact only when the written part is large, so a slow reader costs no memmove
            // per write.
            if written == peer.tx.len() {
                peer.tx.clear();
                peer.tx_head = 0;
            } else if written > READ_CHUNK_BYTES && written * 2 > peer.tx.len() {
                peer.tx.drain(..written);
                peer.tx_head = 0;
            } else {
                peer.tx_head = written;
            }
            if peer.congested && peer.tx.len() - peer.tx_head < RELAY_TX_LOW_WATER_BYTES {
                peer.congested = false;
                self.clear_congestion();
            }
            if failed {
                self.close(key);
            }
        }
    }

    /// One congested subscriber less; the last one wakes every worker to resume reading.
    fn clear_congestion(&self) {
        if self.shared.congested.fetch_sub(1, Ordering::AcqRel) == 1 {
            for waker in &self.shared.wakers {
                let _ = waker.wake();
            }
        }
    }

    fn close(&mut self, key: usize) {
        if !self.peers.contains(key) {
            return;
        }
        let mut peer = self.peers.remove(key);
        if peer.congested {
            self.clear_congestion();
        }
        let _ = self.poll.registry().deregister(&mut peer.stream);
        if peer.subscribed {
            let mut routes = match self.shared.routes.write() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            let gone = |r: &Route| r.worker == self.index && r.conn_id == peer.conn_id;
            routes.wildcard.retain(|(_, r)| !gone(r));
            routes.exact.retain(|_, list| {
                list.retain(|r| !gone(r));
                !list.is_empty()
            });
            routes.shared.retain(|_, group| {
                group.members.retain(|r| !gone(r));
                !group.members.is_empty()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::filter_matches;

    #[test]
    fn wildcard_filters_match_level_by_level() {
        assert!(filter_matches(b"a/b", b"a/b"));
        assert!(filter_matches(b"bench/many/3/+", b"bench/many/3/103"));
        assert!(!filter_matches(b"bench/many/3/+", b"bench/many/4/104"));
        assert!(!filter_matches(b"bench/many/3/+", b"bench/many/3/103/x"));
        assert!(!filter_matches(b"bench/many/3/+", b"bench/many/3"));
        assert!(filter_matches(b"bench/fanin/#", b"bench/fanin/7"));
        assert!(filter_matches(b"#", b"x/y"));
        assert!(!filter_matches(b"bench/fanin/#", b"bench/other/7"));
        assert!(filter_matches(b"+/+", b"a/b"));
        assert!(!filter_matches(b"+", b"a/b"));
    }
}
