//! A connection's outgoing buffer and its byte accounting, in one place.
//!
//! The buffer is a queue of `Bytes` chunks written with one vectored write per loop turn
//! (repeated until `WouldBlock`): large shared pieces of a fanned-out PUBLISH (its encoded
//! header and payload) are queued without copying, small packets are appended to a staging
//! `BytesMut`. Buffers are released when empty, so an idle connection holds no buffer memory.
//!
//! Accounting: every byte in an [`OutBuf`] is counted in the shard's [`MemoryBudget`], and
//! `OutBuf` is the only code that changes that count for outgoing bytes: each method that adds
//! or removes bytes takes the budget, so no caller can forget it. Bytes leave the accounting
//! when written, or all at once when the core hands a closed connection's last bytes to its
//! driver as [`Unsent`], which is no longer counted.

use crate::broker::core::backpressure::MemoryBudget;
use crate::codec::{EncodeError, Packet, ProtocolVersion};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};

/// Pieces at most this long are copied into the staging buffer rather than queued shared:
/// copying a few hundred bytes costs less than a reference count and an iovec entry, and keeps
/// the vectored write short. Payloads above it are shared, never copied per subscriber.
pub(crate) const COPY_THRESHOLD_BYTES: usize = 256;
/// The most chunks given to one vectored write.
const IOV_MAX_CHUNKS: usize = 64;

/// Room the staging buffer starts with: a turn's small packets for one connection fit without
/// the doubling reallocations a buffer growing from empty would go through.
const STAGING_INITIAL_BYTES: usize = 2048;

/// One piece of the queue: a run of the staging buffer, or a shared piece.
#[derive(Debug)]
enum Chunk {
    /// The next this many bytes of the staging buffer.
    Staged(usize),
    Shared(Bytes),
}

/// The outgoing byte queue of a connection, counted in its shard's [`MemoryBudget`].
///
/// Copied bytes all go into one staging buffer. While nothing shared is queued, `chunks` is
/// empty and the staging buffer is the whole queue; otherwise `chunks` covers every queued byte
/// in order, a staged run as a length (so queueing a shared piece after copied bytes neither
/// splits nor reallocates the staging buffer). Written bytes are advanced past, so one staging
/// allocation serves the connection's whole busy period; it is freed once everything is written.
#[derive(Debug, Default)]
pub struct OutBuf {
    chunks: VecDeque<Chunk>,
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

    /// Encodes `packet` into the buffer and counts its bytes in `memory`; a packet over a
    /// wire-format limit (built from what a client sent) is refused and nothing is queued.
    pub fn push_packet(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
        memory: &mut MemoryBudget,
    ) -> Result<(), EncodeError> {
        let before = self.len;
        self.encode_packet(packet, version, memory)?;
        memory.hold(self.len - before);
        Ok(())
    }

    /// Appends a four-byte acknowledgement (`codec::short_ack`) and counts it in `memory`.
    #[inline]
    pub fn push_ack(&mut self, bytes: [u8; 4], memory: &mut MemoryBudget) {
        self.push_copy(&bytes, memory);
        memory.hold(bytes.len());
    }

    /// Appends a PUBLISH encoded as a layout (`connection::protocol::Layout`): `head`, then for
    /// QoS 1/2 the packet id and `tail`. Its bytes are counted in `memory`; returns how many.
    #[inline]
    pub fn push_publish(
        &mut self,
        head: &Bytes,
        rest: Option<(u16, &Bytes)>,
        memory: &mut MemoryBudget,
    ) -> usize {
        let before = self.len;
        self.push_shared(head, memory);
        if let Some((packet_id, tail)) = rest {
            self.push_copy(&packet_id.to_be_bytes(), memory);
            self.push_shared(tail, memory);
        }
        let added = self.len - before;
        memory.hold(added);
        added
    }

    /// [`OutBuf::push_publish`] for a small PUBLISH given as borrowed parts
    /// (`connection::protocol::forwarded_parts`), copied. Returns how many bytes it added.
    #[inline]
    pub fn push_publish_copied(
        &mut self,
        head: &[u8],
        rest: Option<(u16, &[u8])>,
        memory: &mut MemoryBudget,
    ) -> usize {
        let before = self.len;
        self.push_copy(head, memory);
        if let Some((packet_id, tail)) = rest {
            self.push_copy(&packet_id.to_be_bytes(), memory);
            self.push_copy(tail, memory);
        }
        let added = self.len - before;
        memory.hold(added);
        added
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket would block (`Ok(false)`);
    /// the written bytes leave `memory`.
    pub fn write_to<W: Write>(
        &mut self,
        socket: &mut W,
        memory: &mut MemoryBudget,
    ) -> io::Result<bool> {
        let before = self.len;
        let result = self.write_all_to(socket);
        memory.release(before - self.len);
        if matches!(result, Ok(true)) {
            self.release(memory);
        }
        result
    }

    /// Takes every byte out of the buffer and the accounting: what is left for a closing
    /// connection, for its driver to write if the socket takes it.
    pub fn take_unsent(&mut self, memory: &mut MemoryBudget) -> Unsent {
        memory.release(self.len);
        Unsent(std::mem::take(self))
    }

    /// Appends a copy of `data`.
    fn push_copy(&mut self, data: &[u8], memory: &mut MemoryBudget) {
        self.ensure_staging(data.len(), memory);
        self.staging.extend_from_slice(data);
        self.staged(data.len());
    }

    /// Counts `added` bytes just appended to the staging buffer.
    #[inline]
    fn staged(&mut self, added: usize) {
        self.len += added;
        if self.chunks.is_empty() {
            return;
        }
        match self.chunks.back_mut() {
            Some(Chunk::Staged(run)) => *run += added,
            _ => self.chunks.push_back(Chunk::Staged(added)),
        }
    }

    /// A staging buffer for an empty queue (a spare one when the shard keeps one).
    #[inline]
    fn ensure_staging(&mut self, bytes: usize, memory: &mut MemoryBudget) {
        if self.staging.capacity() == 0 {
            self.staging = memory.buffer(bytes.max(STAGING_INITIAL_BYTES));
        }
    }

    /// Appends `data`, sharing it unless it is small.
    fn push_shared(&mut self, data: &Bytes, memory: &mut MemoryBudget) {
        if data.len() <= COPY_THRESHOLD_BYTES {
            self.push_copy(data, memory);
            return;
        }
        if self.chunks.is_empty() && !self.staging.is_empty() {
            // From now on the chunks cover the staged bytes too.
            self.chunks.push_back(Chunk::Staged(self.staging.len()));
        }
        self.len += data.len();
        self.chunks.push_back(Chunk::Shared(data.clone()));
    }

    fn encode_packet(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
        memory: &mut MemoryBudget,
    ) -> Result<(), EncodeError> {
        self.ensure_staging(0, memory);
        let before = self.staging.len();
        packet.encode(version, &mut self.staging)?;
        self.staged(self.staging.len() - before);
        Ok(())
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket would block (`Ok(false)`).
    fn write_all_to<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
        loop {
            if self.chunks.is_empty() {
                return self.write_staging(socket);
            }
            let mut slices = [IoSlice::new(&[]); IOV_MAX_CHUNKS];
            let mut count = 0;
            let mut staged_at = 0;
            for chunk in self.chunks.iter().take(IOV_MAX_CHUNKS) {
                slices[count] = match chunk {
                    Chunk::Staged(len) => {
                        let run = &self.staging[staged_at..staged_at + len];
                        staged_at += len;
                        IoSlice::new(run)
                    }
                    Chunk::Shared(bytes) => IoSlice::new(bytes),
                };
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
    }

    /// The common case of copied bytes only (small packets): the staging buffer is written as
    /// it is, with no chunk queue (so no allocation for one).
    fn write_staging<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
        debug_assert!(self.chunks.is_empty() && self.len == self.staging.len());
        while !self.staging.is_empty() {
            let written = match socket.write(&self.staging) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.staging.advance(written);
            self.len -= written;
        }
        Ok(true)
    }

    /// Drops the first `written` bytes of the queue.
    fn consume(&mut self, mut written: usize) {
        self.len -= written;
        while written > 0 {
            let Some(front) = self.chunks.front_mut() else {
                debug_assert!(false, "wrote more than was queued");
                return;
            };
            let taken = match front {
                Chunk::Staged(len) => {
                    let taken = written.min(*len);
                    self.staging.advance(taken);
                    *len -= taken;
                    taken
                }
                Chunk::Shared(bytes) => {
                    let taken = written.min(bytes.len());
                    bytes.advance(taken);
                    taken
                }
            };
            written -= taken;
            let empty = match front {
                Chunk::Staged(len) => *len == 0,
                Chunk::Shared(bytes) => bytes.is_empty(),
            };
            if empty {
                self.chunks.pop_front();
            }
        }
    }

    /// Frees the memory of an empty queue; its staging buffer goes to `memory`'s spares.
    fn release(&mut self, memory: &mut MemoryBudget) {
        debug_assert!(self.len == 0 && self.chunks.is_empty() && self.staging.is_empty());
        memory.recycle_buffer(std::mem::take(&mut self.staging));
        if self.chunks.capacity() > 0 {
            self.chunks = VecDeque::new();
        }
    }
}

/// The last bytes of a closed connection, out of the core and its accounting: its driver
/// writes what the socket takes, then closes the socket.
#[derive(Debug, Default)]
pub struct Unsent(OutBuf);

impl Unsent {
    /// Bytes left.
    pub fn len(&self) -> usize {
        self.0.len
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.0.len == 0
    }

    /// Writes until nothing is left (`Ok(true)`) or the socket would block (`Ok(false)`).
    pub fn write_to<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
        self.0.write_all_to(socket)
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
    fn staging_only_writes_need_no_chunk_queue() {
        let mut out = OutBuf::default();
        let mut memory = MemoryBudget::new(1 << 20, 1);
        out.push_copy(b"hello", &mut memory);
        out.push_copy(b" world", &mut memory);
        memory.hold(out.len());
        let mut sink = Trickle {
            written: Vec::new(),
            limit: 4,
            block_next: false,
        };
        let mut rounds = 0;
        while !out.write_to(&mut sink, &mut memory).unwrap() {
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(sink.written, b"hello world");
        assert!(out.is_empty());
        assert_eq!(memory.buffered(), 0);
        assert_eq!(out.chunks.capacity(), 0);
        assert_eq!(out.staging.capacity(), 0);
    }

    #[test]
    fn shared_and_copied_pieces_come_out_in_order() {
        let mut out = OutBuf::default();
        let mut memory = MemoryBudget::new(1 << 20, 1);
        let big = Bytes::from(vec![7u8; 1000]);
        out.push_copy(b"ab", &mut memory);
        out.push_shared(&big, &mut memory);
        out.push_copy(b"cd", &mut memory);
        assert_eq!(out.len(), 1004);
        memory.hold(out.len());
        let mut sink = Trickle {
            written: Vec::new(),
            limit: 300,
            block_next: false,
        };
        let mut rounds = 0;
        while !out.write_to(&mut sink, &mut memory).unwrap() {
            rounds += 1;
            assert!(rounds < 100);
        }
        assert!(out.is_empty());
        let mut expected = b"ab".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"cd");
        assert_eq!(sink.written, expected);
    }

    /// A writer whose vectored write takes up to `limit` bytes across several slices.
    struct VectoredTrickle {
        written: Vec<u8>,
        limit: usize,
        calls: usize,
    }

    impl Write for VectoredTrickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls % 3 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut left = self.limit;
            for buf in bufs {
                let n = buf.len().min(left);
                self.written.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            Ok(self.limit - left)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn interleaved_pieces_survive_partial_vectored_writes() {
        for limit in [1, 7, 100, 257, 1000, 5000] {
            let mut out = OutBuf::default();
            let mut memory = MemoryBudget::new(1 << 24, 1);
            let mut expected = Vec::new();
            let mut sink = VectoredTrickle {
                written: Vec::new(),
                limit,
                calls: 0,
            };
            // More pieces than one vectored write takes, with writes between pushes.
            for i in 0..150u32 {
                let small = i.to_be_bytes();
                let big = Bytes::from(vec![(i % 251) as u8; 300 + i as usize]);
                let head = Bytes::copy_from_slice(&small);
                out.push_publish(&head, Some((i as u16, &big)), &mut memory);
                expected.extend_from_slice(&small);
                expected.extend_from_slice(&(i as u16).to_be_bytes());
                expected.extend_from_slice(&big);
                if i % 40 == 39 {
                    let _ = out.write_to(&mut sink, &mut memory).expect("writes");
                }
            }
            out.push_packet(&Packet::PingResp, ProtocolVersion::V5, &mut memory)
                .expect("encodes");
            expected.extend_from_slice(&[0xd0, 0]);
            let mut rounds = 0;
            while !out.write_to(&mut sink, &mut memory).expect("writes") {
                rounds += 1;
                assert!(rounds < 1_000_000);
            }
            assert_eq!(sink.written, expected, "limit {limit}");
            assert!(out.is_empty());
            assert_eq!(memory.buffered(), 0);
            assert_eq!(out.staging.capacity(), 0, "freed once written");
        }
    }

    #[test]
    fn the_budget_counts_what_is_queued_until_written_or_taken() {
        let mut out = OutBuf::default();
        let mut memory = MemoryBudget::new(1 << 20, 1);
        let head = Bytes::from(vec![1u8; 600]);
        let tail = Bytes::from(vec![2u8; 10]);
        assert_eq!(out.push_publish(&head, Some((7, &tail)), &mut memory), 612);
        assert_eq!(out.push_publish(&head, None, &mut memory), 600);
        let ping = Packet::PingResp;
        out.push_packet(&ping, ProtocolVersion::V5, &mut memory)
            .expect("encodes");
        assert_eq!((out.len(), memory.buffered()), (1214, 1214));
        let mut sink = Trickle {
            written: Vec::new(),
            limit: 1000,
            block_next: false,
        };
        assert!(!out.write_to(&mut sink, &mut memory).expect("written"));
        // The default `write_vectored` writes the first chunk only: the shared 600-byte head.
        assert_eq!((out.len(), memory.buffered()), (614, 614));
        let mut unsent = out.take_unsent(&mut memory);
        assert_eq!((out.len(), memory.buffered(), unsent.len()), (0, 0, 614));
        let mut rest = Vec::new();
        assert!(unsent.write_to(&mut rest).expect("written"));
        sink.written.extend_from_slice(&rest);
        assert_eq!(sink.written.len(), 1214);
        assert_eq!(
            &sink.written[600..602],
            &[0, 7],
            "the packet id after the head"
        );
        assert_eq!(&sink.written[1212..], &[0xd0, 0], "PINGRESP last");
    }
}
