//! Deterministic simulation of a whole broker in one thread: N [`ShardCore`]s, an in-memory
//! mesh whose delivery order the simulation chooses, a simulated clock, and in-memory
//! connections in place of sockets. quinn-proto's test `Pair` is the model: the same core the
//! runtime drives over mio is driven here through the same `handle_*`/`poll_*` interface
//! (`broker::core::io`), so a property test or a fuzz target exercises the broker's real logic
//! with no socket, no thread and no sleep, and replays exactly from its seed.
//!
//! [`Sim`] is the broker side (raw bytes in and out per connection); [`SimClient`] puts the
//! crate's sans-IO MQTT client on a connection and records every packet the broker sent it.

mod client;
pub mod script;

pub use client::SimClient;

use crate::broker::core::keys::ConnKey;
use crate::broker::core::mesh::{Mesh, MeshLinks, ShardId, ShardMsg};
use crate::broker::core::ShardCore;
use crate::broker::{Config, Global};
use bytes::BytesMut;
use crossbeam_channel::Receiver;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A simulated connection's index in [`Sim`] (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub usize);

/// The broker's end of a simulated connection: what it wrote, and how much it may write
/// before the "socket" reports `WouldBlock` (a slow reader).
#[derive(Debug, Default)]
pub struct Pipe {
    written: BytesMut,
    /// Bytes the reader has not taken that the pipe holds at most; `usize::MAX` = unbounded.
    capacity_bytes: usize,
}

impl io::Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.capacity_bytes.saturating_sub(self.written.len());
        if room == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(room);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One simulated connection.
#[derive(Debug)]
struct SimConn {
    shard: ShardId,
    key: ConnKey,
    /// Bytes the client sent that the broker has not read yet (the kernel's receive buffer).
    inbound: BytesMut,
    /// Bytes the broker wrote that the client has not taken yet, once the broker closed it.
    leftover: BytesMut,
    closed: bool,
}

/// How the simulation delivers mesh messages in a turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeshDelivery {
    /// Every waiting message, sources in order (what a busy runtime does).
    All,
    /// A pseudo-random number of each source's waiting messages (order per source kept, as
    /// the channels keep it), sources interleaved at random: the delays threads would cause.
    Random,
}

/// N shard cores in one thread.
pub struct Sim {
    global: Arc<Global>,
    cores: Vec<ShardCore>,
    /// `receivers[target][source]`: the mesh channel from `source` to `target`.
    receivers: Vec<Vec<Receiver<ShardMsg>>>,
    /// `pipes[shard][key]`: the broker's end of each connection, as the runtime's sockets.
    pipes: Vec<Vec<Option<Pipe>>>,
    conns: Vec<SimConn>,
    start: Instant,
    elapsed: Duration,
    rng: u64,
    /// How mesh messages are delivered (default [`MeshDelivery::All`]).
    pub mesh_delivery: MeshDelivery,
    /// Most bytes handed to the core per read (the runtime's read chunk); 0 picks at random
    /// between 1 and 256 per read, to split packets at every boundary.
    pub read_chunk_bytes: usize,
    messages: Vec<ShardMsg>,
}

impl Sim {
    /// A broker with `config` (its `shards` cores; `listen` is ignored). `seed` fixes every
    /// random choice (mesh interleavings, read sizes, the broker's own random strategies).
    pub fn new(config: Config, seed: u64) -> io::Result<Sim> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let shards = config.shards;
        let capacity = config.mesh_channel_capacity;
        let global = Global::new(config, seed)?;
        let mut senders: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<_>> = (0..shards).map(|_| Vec::new()).collect();
        for target_receivers in receivers.iter_mut() {
            for source_senders in senders.iter_mut() {
                let (tx, rx) = crossbeam_channel::bounded(capacity);
                source_senders.push(tx);
                target_receivers.push(rx);
            }
        }
        let start = Instant::now();
        let links = MeshLinks::new(shards);
        let cores = senders
            .into_iter()
            .enumerate()
            .map(|(id, tx)| {
                let mesh = Mesh::new(id, tx, links.clone());
                ShardCore::new(id, global.clone(), mesh, start)
            })
            .collect();
        Ok(Sim {
            global,
            cores,
            receivers,
            pipes: (0..shards).map(|_| Vec::new()).collect(),
            conns: Vec::new(),
            start,
            elapsed: Duration::ZERO,
            rng: seed | 1,
            mesh_delivery: MeshDelivery::All,
            read_chunk_bytes: 64 * 1024,
            messages: Vec::new(),
        })
    }

    /// The broker-wide state (counters, config).
    pub fn global(&self) -> &Global {
        &self.global
    }

    /// Shard `id`'s core, for inspection.
    pub fn core(&self, id: ShardId) -> &ShardCore {
        &self.cores[id]
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.cores.len()
    }

    /// The simulated time.
    pub fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    /// A pseudo-random number (xorshift64*), from the seed.
    pub fn random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Opens a connection to shard `shard`. `None` when `max_connections` is reached.
    pub fn connect(&mut self, shard: ShardId) -> Option<ConnId> {
        if !self.global.admit_connection() {
            return None;
        }
        let id = ConnId(self.conns.len());
        let port = u16::try_from(id.0 % 65_535).unwrap_or(0) + 1;
        let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let core = &mut self.cores[shard];
        let key = core.handle_accept(peer);
        let pipes = &mut self.pipes[shard];
        if pipes.len() <= key.index() {
            pipes.resize_with(key.index() + 1, || None);
        }
        pipes[key.index()] = Some(Pipe {
            written: BytesMut::new(),
            capacity_bytes: usize::MAX,
        });
        self.conns.push(SimConn {
            shard,
            key,
            inbound: BytesMut::new(),
            leftover: BytesMut::new(),
            closed: false,
        });
        Some(id)
    }

    /// The shard a connection is on.
    pub fn shard_of(&self, conn: ConnId) -> ShardId {
        self.conns[conn.0].shard
    }

    /// Queues bytes from the client; the broker reads them in its next turn (when it may).
    pub fn send(&mut self, conn: ConnId, bytes: &[u8]) {
        let c = &mut self.conns[conn.0];
        if !c.closed {
            c.inbound.extend_from_slice(bytes);
        }
    }

    /// Takes what the broker wrote to the client so far.
    pub fn take_output(&mut self, conn: ConnId) -> BytesMut {
        let c = &mut self.conns[conn.0];
        if c.closed {
            return c.leftover.split();
        }
        match self.pipes[c.shard]
            .get_mut(c.key.index())
            .and_then(Option::as_mut)
        {
            Some(pipe) => pipe.written.split(),
            None => BytesMut::new(),
        }
    }

    /// Limits what the broker may write to the client before it takes it (`usize::MAX`:
    /// unbounded), to simulate a slow reader.
    pub fn set_write_capacity(&mut self, conn: ConnId, bytes: usize) {
        let c = &self.conns[conn.0];
        if c.closed {
            return;
        }
        if let Some(pipe) = self.pipes[c.shard]
            .get_mut(c.key.index())
            .and_then(Option::as_mut)
        {
            pipe.capacity_bytes = bytes;
            self.cores[c.shard].handle_writable(c.key);
        }
    }

    /// Whether the broker closed the connection (or the client did).
    pub fn is_closed(&self, conn: ConnId) -> bool {
        self.conns[conn.0].closed
    }

    /// The client closes its side (TCP FIN without DISCONNECT).
    pub fn hang_up(&mut self, conn: ConnId) {
        let c = &self.conns[conn.0];
        if c.closed {
            return;
        }
        let (shard, key) = (c.shard, c.key);
        self.cores[shard].handle_peer_closed(key, None);
    }

    /// Moves the clock forward by `by` (no turn is run).
    pub fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Moves the clock to the earliest timer deadline of any shard, if one is armed later than
    /// now; returns whether it moved.
    pub fn advance_to_next_deadline(&mut self) -> bool {
        let now = self.now();
        let next = self
            .cores
            .iter()
            .filter_map(ShardCore::next_deadline)
            .filter(|d| *d > now)
            .min();
        match next {
            Some(deadline) => {
                self.elapsed += deadline - now;
                true
            }
            None => false,
        }
    }

    /// One loop turn on every shard, in shard order.
    pub fn step(&mut self) {
        for shard in 0..self.cores.len() {
            self.turn(shard);
        }
    }

    /// Runs turns until nothing is left to do now (no unread client bytes a shard may read, no
    /// mesh message in a channel or waiting in a shard's overflow queue, no resumed
    /// connection), at most `max_turns`; returns whether it settled.
    pub fn settle(&mut self, max_turns: usize) -> bool {
        for _ in 0..max_turns {
            self.step();
            if self.is_idle() {
                return true;
            }
        }
        false
    }

    /// Whether a turn now would do nothing.
    pub fn is_idle(&self) -> bool {
        let now = self.now();
        let readable = self
            .conns
            .iter()
            .any(|c| !c.closed && !c.inbound.is_empty() && self.cores[c.shard].may_read(c.key));
        let mesh = self
            .receivers
            .iter()
            .any(|r| r.iter().any(|rx| !rx.is_empty()));
        let busy = self
            .cores
            .iter()
            .any(|c| c.poll_timeout(now) == Some(Duration::ZERO));
        // Finding F2: messages in a full channel's overflow queue move on the shard's next
        // turn (the runtime retries after `OVERFLOW_RETRY`); a settle that stopped before
        // would check the memory budget in the middle of, say, a session handover.
        let overflow = self.cores.iter().any(ShardCore::has_mesh_overflow);
        !(readable || mesh || busy || overflow)
    }

    /// One loop turn of `shard`, in the runtime's order (`broker::core::io`).
    pub fn turn(&mut self, shard: ShardId) {
        let now = self.now();
        self.cores[shard].set_now(now);
        for i in 0..self.conns.len() {
            if self.conns[i].shard == shard {
                self.read(ConnId(i));
            }
        }
        self.deliver_mesh(shard);
        self.cores[shard].handle_timeout(now);
        while let Some(key) = self.cores[shard].poll_read() {
            if let Some(i) = self
                .conns
                .iter()
                .position(|c| c.shard == shard && c.key == key && !c.closed)
            {
                self.read(ConnId(i));
            }
        }
        self.cores[shard].flush_writes(&mut self.pipes[shard]);
        while let Some((key, mut out)) = self.cores[shard].poll_close() {
            let Some(mut pipe) = self.pipes[shard]
                .get_mut(key.index())
                .and_then(Option::take)
            else {
                continue;
            };
            let _ = out.write_to(&mut pipe);
            if let Some(c) = self
                .conns
                .iter_mut()
                .find(|c| c.shard == shard && c.key == key && !c.closed)
            {
                c.closed = true;
                c.inbound.clear();
                c.leftover = pipe.written;
            }
        }
        self.cores[shard].end_turn();
        self.cores[shard].drain_wakes(|_| {});
    }

    /// Hands the core what the client sent, in chunks, while the core may read.
    fn read(&mut self, conn: ConnId) {
        let (shard, key) = (self.conns[conn.0].shard, self.conns[conn.0].key);
        while !self.conns[conn.0].closed
            && !self.conns[conn.0].inbound.is_empty()
            && self.cores[shard].may_read(key)
        {
            let chunk = match self.read_chunk_bytes {
                0 => 1 + (self.random() % 256) as usize,
                n => n,
            };
            let c = &mut self.conns[conn.0];
            let n = chunk.min(c.inbound.len());
            let bytes = c.inbound.split_to(n);
            self.cores[shard].handle_bytes(key, &bytes);
        }
        if self.conns[conn.0].inbound.is_empty() {
            self.cores[shard].handle_read_drained(key);
        }
    }

    /// Hands `target` the mesh messages this turn delivers.
    fn deliver_mesh(&mut self, target: ShardId) {
        let sources = self.receivers[target].len();
        let offset = match self.mesh_delivery {
            MeshDelivery::All => 0,
            MeshDelivery::Random => (self.random() as usize) % sources.max(1),
        };
        for i in 0..sources {
            let source = (i + offset) % sources;
            let waiting = self.receivers[target][source].len();
            let take = match self.mesh_delivery {
                MeshDelivery::All => waiting,
                MeshDelivery::Random if waiting == 0 => 0,
                MeshDelivery::Random => (self.random() as usize) % (waiting + 1),
            };
            self.messages
                .extend(self.receivers[target][source].try_iter().take(take));
        }
        let mut messages = std::mem::take(&mut self.messages);
        for msg in messages.drain(..) {
            self.cores[target].handle_mesh(msg);
        }
        self.messages = messages;
    }
}
