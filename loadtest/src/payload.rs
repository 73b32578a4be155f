//! The measurement payload every publisher sends.
//!
//! Layout (little-endian), padded with zeros to the requested size:
//!
//! | bytes  | field                                                              |
//! |--------|--------------------------------------------------------------------|
//! | 0..8   | publisher id: run tag in the high 32 bits, index `0..publishers` low |
//! | 8..16  | sequence number, 0, 1, 2, ... per publisher                        |
//! | 16..24 | send time in nanoseconds since the process-wide [`epoch`]          |
//!
//! Publishers and subscribers live in the same process, so one monotonic epoch serves both ends
//! and no clock synchronisation is needed.

use std::sync::OnceLock;
use std::time::Instant;

/// The smallest payload that holds the three fields.
pub const PAYLOAD_LEN_MIN: usize = 24;

/// The process-wide time origin of every timestamp in payloads.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `at` (0 if `at` is earlier, which cannot happen after the
/// first call to `epoch`).
pub fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// The three measured fields of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub publisher_id: u64,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// Appends the payload for this stamp, zero-padded to `payload_len` bytes (at least
    /// [`PAYLOAD_LEN_MIN`]).
    pub fn write(&self, payload_len: usize, out: &mut impl Extend<u8>) {
        out.extend(self.publisher_id.to_le_bytes());
        out.extend(self.seq.to_le_bytes());
        out.extend(self.sent_ns.to_le_bytes());
        let padding = payload_len.saturating_sub(PAYLOAD_LEN_MIN);
        out.extend(std::iter::repeat_n(0u8, padding));
    }

    /// Reads the stamp at the front of a payload; `None` if it is too short to be ours.
    pub fn read(payload: &[u8]) -> Option<Stamp> {
        let field = |at: usize| -> Option<u64> {
            let bytes: [u8; 8] = payload.get(at..at + 8)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        };
        Some(Stamp {
            publisher_id: field(0)?,
            seq: field(8)?,
            sent_ns: field(16)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trip_and_padding() {
        let stamp = Stamp {
            publisher_id: 7,
            seq: 1 << 40,
            sent_ns: 123_456_789,
        };
        let mut out = Vec::new();
        stamp.write(64, &mut out);
        assert_eq!(out.len(), 64);
        assert_eq!(Stamp::read(&out), Some(stamp));
        let mut short = Vec::new();
        stamp.write(0, &mut short);
        assert_eq!(short.len(), PAYLOAD_LEN_MIN);
        assert_eq!(Stamp::read(&short[..23]), None);
    }

    #[test]
    fn epoch_is_stable() {
        let a = epoch();
        assert_eq!(a, epoch());
        assert!(nanos_since_epoch(Instant::now()) < u64::MAX);
    }
}
