//! One client connection: the socket, its read buffer and its outgoing buffer.
//!
//! The outgoing buffer is a queue of `Bytes` chunks written with one vectored write per loop turn
//! (repeated until `WouldBlock`): large shared pieces of a fanned-out PUBLISH (its encoded header
//! and payload) are queued without copying, small packets are appended to a staging `BytesMut`.
//! Buffers are released when empty so an idle connection holds no buffer memory beyond its
//! read buffer's last allocation.

use crate::codec::{MqttString, Packet, ProtocolVersion, Publish};
use bytes::{Buf, Bytes, BytesMut};
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Pieces at most this long are copied into the staging buffer rather than queued shared:
/// copying a few hundred bytes costs less than a reference count and an iovec entry, and keeps
/// the vectored write short. Payloads above it are shared, never copied per subscriber.
const COPY_THRESHOLD_BYTES: usize = 256;
/// The most chunks given to one vectored write.
const IOV_MAX_CHUNKS: usize = 64;
/// Bytes read per `read` call.
pub const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The outgoing byte queue of a connection.
#[derive(Debug, Default)]
pub struct OutBuf {
    chunks: VecDeque<Bytes>,
    staging: BytesMut,
    len: usize,
}

impl OutBuf {
    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`.
    pub fn push_copy(&mut self, data: &[u8]) {
        self.staging.extend_from_slice(data);
        self.len += data.len();
    }

    /// Appends `data`, sharing it unless it is small.
    pub fn push_shared(&mut self, data: &Bytes) {
        if data.len() <= COPY_THRESHOLD_BYTES {
            self.push_copy(data);
            return;
        }
        self.seal_staging();
        self.len += data.len();
        self.chunks.push_back(data.clone());
    }

    /// Encodes `packet` into the buffer.
    pub fn push_packet(&mut self, packet: &Packet, version: ProtocolVersion) {
        let before = self.staging.len();
        packet.encode(version, &mut self.staging);
        self.len += self.staging.len() - before;
    }

    fn seal_staging(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub fn write_to<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
        self.seal_staging();
        while !self.chunks.is_empty() {
            let mut slices = [IoSlice::new(&[]); IOV_MAX_CHUNKS];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            let written = match socket.write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.consume(written);
        }
        self.release();
        Ok(true)
    }

    fn consume(&mut self, mut written: usize) {
        self.len -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                debug_assert!(false, "wrote more than was queued");
                return;
            };
            if front.len() <= written {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(written);
                written = 0;
            }
        }
    }

    /// Frees the memory of an empty queue.
    fn release(&mut self) {
        debug_assert!(self.len == 0 && self.chunks.is_empty() && self.staging.is_empty());
        self.staging = BytesMut::new();
        if self.chunks.capacity() > 16 {
            self.chunks = VecDeque::new();
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Accepted; the first packet must be CONNECT ([MQTT-3.1.0-1]).
    AwaitConnect,
    /// CONNECT accepted, waiting for another shard to hand over the session.
    AwaitTakeover,
    /// CONNACK sent.
    Connected,
    /// Being closed at the end of this loop turn.
    Closing,
}

/// A will message armed by CONNECT.
#[derive(Clone, Debug)]
pub struct WillMessage {
    /// Becomes a [`super::session::Message`] when published (its expiry runs from then).
    pub message: Publish,
    /// MQTT 5 Will Delay Interval, seconds (0 for 3.x).
    pub delay_secs: u32,
}

/// One client connection on a shard.
pub struct Connection {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    /// Unique on this shard, never reused: guards timers and deferred work against slab reuse.
    pub id: u64,
    pub state: ConnState,
    pub version: ProtocolVersion,
    pub read_buf: BytesMut,
    pub out: OutBuf,
    /// The session slab key once CONNECT was accepted.
    pub session: Option<usize>,
    pub client_id: MqttString,
    /// Keep-alive granted, zero for none.
    pub keep_alive: Duration,
    pub last_received: Instant,
    /// The client's MQTT 5 Maximum Packet Size (u32::MAX when unset).
    pub client_max_packet_size: u32,
    pub will: Option<WillMessage>,
    /// Reading stopped because a mesh channel was full.
    pub paused: bool,
    /// In the shard's list of connections to write at the end of the turn.
    pub dirty: bool,
    /// A SUBACK waits for the routing barrier: later packets wait too, so that the client sees
    /// its answers in the order of its requests.
    pub suback_pending: bool,
}

/// What a read attempt found.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes were appended to the read buffer.
    Data,
    /// Nothing more to read now.
    WouldBlock,
    /// The peer closed its side.
    Closed,
}

impl Connection {
    pub fn new(stream: TcpStream, peer: SocketAddr, id: u64, now: Instant) -> Connection {
        Connection {
            stream,
            peer,
            id,
            state: ConnState::AwaitConnect,
            version: ProtocolVersion::V3_1_1,
            read_buf: BytesMut::new(),
            out: OutBuf::default(),
            session: None,
            client_id: MqttString::default(),
            keep_alive: Duration::ZERO,
            last_received: now,
            client_max_packet_size: u32::MAX,
            will: None,
            paused: false,
            dirty: false,
            suback_pending: false,
        }
    }

    /// One `read` into the read buffer.
    pub fn read_once(&mut self) -> io::Result<ReadOutcome> {
        let start = self.read_buf.len();
        self.read_buf.resize(start + READ_CHUNK_BYTES, 0);
        let result = loop {
            match self.stream.read(&mut self.read_buf[start..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => {
                self.read_buf.truncate(start);
                Ok(ReadOutcome::Closed)
            }
            Ok(n) => {
                self.read_buf.truncate(start + n);
                Ok(ReadOutcome::Data)
            }
            Err(e) => {
                self.read_buf.truncate(start);
                if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(ReadOutcome::WouldBlock)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Drops the read buffer's memory when nothing is buffered.
    pub fn release_read_buffer(&mut self) {
        if self.read_buf.is_empty() && self.read_buf.capacity() > 0 {
            self.read_buf = BytesMut::new();
        }
    }

    /// Whether input may be read and handled now (not closing, paused, parked for a takeover
    /// or waiting for a SUBACK barrier).
    pub fn may_process(&self) -> bool {
        !(self.state == ConnState::Closing
            || self.state == ConnState::AwaitTakeover
            || self.paused
            || self.suback_pending)
    }

    /// Whether CONNACK went out (packets other than CONNECT/CONNACK are allowed).
    pub fn is_connected(&self) -> bool {
        self.state == ConnState::Connected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `limit` bytes per call and then blocks once.
    struct Trickle {
        written: Vec<u8>,
        limit: usize,
        block_next: bool,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.block_next) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.block_next = true;
            let n = buf.len().min(self.limit);
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn shared_and_copied_pieces_come_out_in_order() {
        let mut out = OutBuf::default();
        let big = Bytes::from(vec![7u8; 1000]);
        out.push_copy(b"ab");
        out.push_shared(&big);
        out.push_copy(b"cd");
        assert_eq!(out.len(), 1004);
        let mut sink = Trickle {
            written: Vec::new(),
            limit: 300,
            block_next: false,
        };
        let mut rounds = 0;
        while !out.write_to(&mut sink).unwrap() {
            rounds += 1;
            assert!(rounds < 100);
        }
        assert!(out.is_empty());
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"cd");
        assert_eq!(sink.written, expected);
    }
}
