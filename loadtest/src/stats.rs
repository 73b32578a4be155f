//! Delivery accounting and latency histograms.
//!
//! Every subscriber keeps one [`SeqTracker`] per publisher it hears from. A tracker remembers the
//! highest sequence number seen and a window of [`SEQ_WINDOW`] sequence numbers below it, so an
//! arrival is classified exactly as new, reordered (new but below the highest seen) or duplicate
//! (seen before). Arrivals older than the window are counted as `late` and treated as new: the
//! tracker cannot tell a duplicate from a reorder that far back, and says so in the report.
//! Loss is what is left: expected deliveries minus unique deliveries.

use hdrhistogram::Histogram;

/// Sequence numbers below the highest seen that a tracker can still classify exactly.
pub const SEQ_WINDOW: u64 = 1024;
const WINDOW_WORDS: usize = (SEQ_WINDOW / 64) as usize;

/// Highest latency the histograms record, in microseconds (one hour); higher values saturate.
pub const LATENCY_US_MAX: u64 = 3_600_000_000;

/// A latency histogram in microseconds with three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, LATENCY_US_MAX, 3) {
        Ok(histogram) => histogram,
        // The bounds are constants that hdrhistogram accepts; reaching this is a bug.
        Err(_) => unreachable!("constant histogram bounds are valid"),
    }
}

/// What one arrival was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Seen for the first time, in order.
    New,
    /// Seen for the first time, after a higher sequence number.
    Reordered,
    /// Seen before.
    Duplicate,
    /// Below the window: counted as new, cannot be classified.
    Late,
}

/// Per-publisher sequence tracking at one subscriber.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// Highest sequence number seen plus one; 0 = nothing seen yet.
    next: u64,
    /// Bit `i` is set when `next - 1 - i` was seen.
    window: [u64; WINDOW_WORDS],
}

impl SeqTracker {
    /// Classifies the arrival of `seq` and records it.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let shift = seq + 1 - self.next;
            self.shift(shift);
            self.window[0] |= 1;
            self.next = seq + 1;
            return Arrival::New;
        }
        let back = self.next - 1 - seq;
        if back >= SEQ_WINDOW {
            return Arrival::Late;
        }
        let (word, bit) = ((back / 64) as usize, back % 64);
        if self.window[word] & (1 << bit) != 0 {
            Arrival::Duplicate
        } else {
            self.window[word] |= 1 << bit;
            Arrival::Reordered
        }
    }

    /// Moves the window up by `shift` sequence numbers (bit i becomes bit i + shift).
    fn shift(&mut self, shift: u64) {
        if self.next == 0 || shift >= SEQ_WINDOW {
            self.window = [0; WINDOW_WORDS];
            return;
        }
        let words = (shift / 64) as usize;
        let bits = (shift % 64) as u32;
        for i in (0..WINDOW_WORDS).rev() {
            let low = i.checked_sub(words).map_or(0, |j| self.window[j]);
            let carry = match i.checked_sub(words + 1) {
                Some(j) if bits > 0 => self.window[j] >> (64 - bits),
                _ => 0,
            };
            self.window[i] = if bits > 0 { (low << bits) | carry } else { low };
        }
    }
}

/// Counters and histograms of one worker thread (or, merged, of a whole run).
#[derive(Clone, Debug)]
pub struct Tally {
    /// PUBLISH messages sent with a send time inside the measurement window.
    pub sent: u64,
    /// QoS 1/2 publishes acknowledged by the broker over the whole run, warmup included
    /// (PUBACK for QoS 1, PUBCOMP for QoS 2).
    pub acked: u64,
    /// Messages received whose send time is inside the measurement window (duplicates included).
    pub received: u64,
    /// Of those, first deliveries of a (publisher, sequence) at a subscriber.
    pub unique: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub late: u64,
    /// Received payloads that do not carry a stamp of this run (too short or unknown publisher).
    pub foreign: u64,
    /// End-to-end latency of received messages, microseconds.
    pub latency_us: Histogram<u64>,
    /// TCP connect to CONNACK, microseconds.
    pub connect_us: Histogram<u64>,
    /// Connections that failed to connect, were refused, or closed before the end.
    pub connection_errors: u64,
    /// The first few error descriptions, for the report.
    pub errors: Vec<String>,
}

/// How many error descriptions a tally keeps.
pub const ERRORS_KEPT_MAX: usize = 8;

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            sent: 0,
            acked: 0,
            received: 0,
            unique: 0,
            duplicates: 0,
            reordered: 0,
            late: 0,
            foreign: 0,
            latency_us: latency_histogram(),
            connect_us: latency_histogram(),
            connection_errors: 0,
            errors: Vec::new(),
        }
    }
}

impl Tally {
    /// Counts one arrival.
    pub fn count_arrival(&mut self, arrival: Arrival, latency_us: u64) {
        self.received += 1;
        match arrival {
            Arrival::New => self.unique += 1,
            Arrival::Reordered => {
                self.unique += 1;
                self.reordered += 1;
            }
            Arrival::Duplicate => self.duplicates += 1,
            Arrival::Late => {
                self.unique += 1;
                self.late += 1;
            }
        }
        self.latency_us.saturating_record(latency_us.max(1));
    }

    /// Records a connection error, keeping the first [`ERRORS_KEPT_MAX`] descriptions.
    pub fn connection_error(&mut self, description: String) {
        self.connection_errors += 1;
        if self.errors.len() < ERRORS_KEPT_MAX {
            self.errors.push(description);
        }
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Tally) {
        self.sent += other.sent;
        self.acked += other.acked;
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.late += other.late;
        self.foreign += other.foreign;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.connect_us.add(&other.connect_us);
        self.connection_errors += other.connection_errors;
        for error in &other.errors {
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(error.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_is_new() {
        let mut t = SeqTracker::default();
        for seq in 0..3000 {
            assert_eq!(t.record(seq), Arrival::New);
        }
    }

    #[test]
    fn duplicate_and_reorder_are_told_apart() {
        let mut t = SeqTracker::default();
        assert_eq!(t.record(0), Arrival::New);
        assert_eq!(t.record(2), Arrival::New);
        assert_eq!(t.record(1), Arrival::Reordered);
        assert_eq!(t.record(1), Arrival::Duplicate);
        assert_eq!(t.record(2), Arrival::Duplicate);
        assert_eq!(t.record(0), Arrival::Duplicate);
    }

    #[test]
    fn window_survives_shifts_across_words() {
        let mut t = SeqTracker::default();
        for seq in (0..500).step_by(2) {
            assert_eq!(t.record(seq), Arrival::New);
        }
        // 65..=129 below the top crosses word boundaries.
        assert_eq!(t.record(498 - 65), Arrival::Reordered);
        assert_eq!(t.record(498 - 130), Arrival::Duplicate);
        assert_eq!(t.record(498 - 129), Arrival::Reordered);
        // Jump far ahead: everything older is late.
        assert_eq!(t.record(498 + SEQ_WINDOW + 10), Arrival::New);
        assert_eq!(t.record(497), Arrival::Late);
        assert_eq!(t.record(498 + SEQ_WINDOW + 9), Arrival::Reordered);
    }

    #[test]
    fn tally_counts_and_merges() {
        let mut a = Tally::default();
        a.count_arrival(Arrival::New, 100);
        a.count_arrival(Arrival::Duplicate, 200);
        let mut b = Tally::default();
        b.count_arrival(Arrival::Reordered, 300);
        b.sent = 2;
        a.merge(&b);
        assert_eq!(
            (a.received, a.unique, a.duplicates, a.reordered, a.sent),
            (3, 2, 1, 1, 2)
        );
        assert_eq!(a.latency_us.len(), 3);
    }
}
