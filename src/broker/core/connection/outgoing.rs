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

/// The outgoing byte queue of a connection, counted in its shard's [`MemoryBudget`].
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

    /// Encodes `packet` into the buffer and counts its bytes in `memory`; a packet over a
    /// wire-format limit (built from what a client sent) is refused and nothing is queued.
    pub fn push_packet(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
        memory: &mut MemoryBudget,
    ) -> Result<(), EncodeError> {
        let before = self.len;
        self.encode_packet(packet, version)?;
        memory.hold(self.len - before);
        Ok(())
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
        self.push_shared(head);
        if let Some((packet_id, tail)) = rest {
            self.push_copy(&packet_id.to_be_bytes());
            self.push_shared(tail);
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
        result
    }

    /// Takes every byte out of the buffer and the accounting: what is left for a closing
    /// connection, for its driver to write if the socket takes it.
    pub fn take_unsent(&mut self, memory: &mut MemoryBudget) -> Unsent {
        memory.release(self.len);
        Unsent(std::mem::take(self))
    }

    /// Appends a copy of `data`.
    fn push_copy(&mut self, data: &[u8]) {
        self.staging.extend_from_slice(data);
        self.len += data.len();
    }

    /// Appends `data`, sharing it unless it is small.
    fn push_shared(&mut self, data: &Bytes) {
        if data.len() <= COPY_THRESHOLD_BYTES {
            self.push_copy(data);
            return;
        }
        self.seal_staging();
        self.len += data.len();
        self.chunks.push_back(data.clone());
    }

    fn encode_packet(
        &mut self,
        packet: &Packet,
        version: ProtocolVersion,
    ) -> Result<(), EncodeError> {
        let before = self.staging.len();
        packet.encode(version, &mut self.staging)?;
        self.len += self.staging.len() - before;
        Ok(())
    }

    fn seal_staging(&mut self) {
        if !self.staging.is_empty() {
            self.chunks.push_back(self.staging.split().freeze());
        }
    }

    /// Writes until the queue is empty (`Ok(true)`) or the socket would block (`Ok(false)`).
    fn write_all_to<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
        if self.chunks.is_empty() {
            return self.write_staging(socket);
        }
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

    /// The common case of small packets only: the staging buffer is written as it is, with no
    /// chunk queue (so no allocation for one).
    fn write_staging<W: Write>(&mut self, socket: &mut W) -> io::Result<bool> {
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
        out.push_copy(b"hello");
        out.push_copy(b" world");
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
        out.push_copy(b"ab");
        out.push_shared(&big);
        out.push_copy(b"cd");
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
