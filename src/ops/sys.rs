//! The `$SYS` tree: Mosquitto's topics and meanings (its `src/sys_tree.c`), published every
//! `sys_interval_secs` from the operations thread. Where a value cannot mean exactly what
//! Mosquitto's does, the topic's line below and README.md ("Moving from Mosquitto") say how it
//! differs. Values come from the shards' counters (a snapshot, summed), never
//! from the per-message path; each message is injected through shard 0's control channel and
//! routed like a received PUBLISH, retained as Mosquitto does. Topic matching keeps `$SYS` out
//! of `#` and `+` ([MQTT-4.7.2-1]); `$SYS/#` subscribes to it.

use super::observer::Observer;
use crate::broker::Stats;
use std::time::Instant;

/// The load averages' windows, in seconds, and their topic suffixes.
const LOAD_WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// The quantities with load averages, as `$SYS/broker/load/{name}/{window}`.
const LOAD_NAMES: [&str; 9] = [
    "messages/received",
    "messages/sent",
    "publish/received",
    "publish/sent",
    "publish/dropped",
    "bytes/received",
    "bytes/sent",
    "connections",
    "sockets",
];

/// Publishes the `$SYS` tree and keeps what it needs between rounds (load averages, maxima).
#[derive(Debug)]
pub struct SysTree {
    last: Option<(Instant, [u64; LOAD_NAMES.len()])>,
    /// Per-minute rates, exponentially averaged, per (name, window).
    loads: [[f64; LOAD_WINDOWS.len()]; LOAD_NAMES.len()],
    /// The highest `clients/total` seen (Mosquitto's `clients/maximum`).
    clients_maximum: u64,
    /// The highest resident memory size seen.
    resident_maximum: u64,
}

impl Default for SysTree {
    fn default() -> SysTree {
        SysTree::new()
    }
}

/// The counters behind each load average, in `LOAD_NAMES` order.
fn load_inputs(stats: &Stats) -> [u64; LOAD_NAMES.len()] {
    [
        // Mosquitto's messages/* count packets of every type, publish/* PUBLISH packets.
        stats.packets_received,
        stats.packets_sent,
        stats.messages_received,
        stats.messages_sent,
        dropped(stats),
        stats.received_bytes,
        stats.sent_bytes,
        // Mosquitto's "connections": CONNECT packets received (answered either way here).
        stats.clients_connected + stats.connects_refused,
        // "sockets": TCP connections accepted.
        stats.connections_accepted,
    ]
}

/// Messages dropped instead of delivered or queued, by any limit.
pub fn dropped(stats: &Stats) -> u64 {
    stats.dropped_queue_full
        + stats.dropped_outgoing_buffer_full
        + stats.dropped_memory_limit
        + stats.dropped_client_packet_size
        + stats.messages_expired
}

impl SysTree {
    pub fn new() -> SysTree {
        SysTree {
            last: None,
            loads: [[0.0; LOAD_WINDOWS.len()]; LOAD_NAMES.len()],
            clients_maximum: 0,
            resident_maximum: 0,
        }
    }

    /// The whole tree now: (topic, payload) pairs. Also advances the load averages.
    pub fn snapshot(&mut self, observer: &Observer, now: Instant) -> Vec<(String, String)> {
        let stats = observer.stats();
        // Mosquitto: connected = clients with a socket and a session, total = sessions
        // (clients known by id, connected or not), disconnected = total - connected,
        // maximum = the highest total.
        let connected = stats.clients_online;
        let total = (observer.sessions() as u64).max(connected);
        self.clients_maximum = self.clients_maximum.max(total);
        let mut out: Vec<(String, String)> = Vec::with_capacity(96);
        let mut put = |topic: &str, value: String| {
            out.push((format!("$SYS/broker/{topic}"), value));
        };
        put(
            "version",
            format!("shardmq version {}", env!("CARGO_PKG_VERSION")),
        );
        put("uptime", format!("{} seconds", observer.uptime_secs()));
        put("clients/connected", connected.to_string());
        put("clients/active", connected.to_string());
        let disconnected = total - connected;
        put("clients/disconnected", disconnected.to_string());
        put("clients/inactive", disconnected.to_string());
        put("clients/total", total.to_string());
        put("clients/maximum", self.clients_maximum.to_string());
        put("clients/expired", stats.sessions_expired.to_string());
        put(
            "connections/socket/count",
            stats.connections_accepted.to_string(),
        );
        put("messages/received", stats.packets_received.to_string());
        put("messages/sent", stats.packets_sent.to_string());
        put(
            "publish/messages/received",
            stats.messages_received.to_string(),
        );
        put("publish/messages/sent", stats.messages_sent.to_string());
        put("publish/messages/dropped", dropped(&stats).to_string());
        let retained = observer.retained_messages() as u64;
        put("messages/stored", retained.to_string());
        put("store/messages/count", retained.to_string());
        put("retained messages/count", retained.to_string());
        put("bytes/received", stats.received_bytes.to_string());
        put("bytes/sent", stats.sent_bytes.to_string());
        put("subscriptions/count", stats.subscriptions.to_string());
        // Mosquitto's heap/* count every byte it allocated (its memory tracking); we count
        // the message data buffered (outgoing buffers and session queues, what
        // `max_buffered_bytes` bounds), and publish the process's resident size beside it.
        put("heap/current", stats.buffered_bytes.to_string());
        put("heap/maximum", stats.buffered_bytes_peak.to_string());
        let (resident, resident_peak) = memory_bytes();
        self.resident_maximum = self.resident_maximum.max(resident).max(resident_peak);
        put("process/resident_bytes", resident.to_string());
        put(
            "process/resident_bytes_maximum",
            self.resident_maximum.to_string(),
        );
        self.advance_loads(&stats, now);
        for (name, windows) in LOAD_NAMES.iter().zip(&self.loads) {
            for ((_, suffix), value) in LOAD_WINDOWS.iter().zip(windows) {
                put(&format!("load/{name}/{suffix}"), format!("{value:.2}"));
            }
        }
        let congested = observer.shards_congested();
        for (shard, s) in observer.shard_stats().iter().enumerate() {
            let base = format!("shards/{shard}");
            put(
                &format!("{base}/connections"),
                s.connections_open.to_string(),
            );
            put(
                &format!("{base}/messages/received"),
                s.messages_received.to_string(),
            );
            put(
                &format!("{base}/messages/sent"),
                s.messages_sent.to_string(),
            );
            put(&format!("{base}/messages/dropped"), dropped(s).to_string());
            put(
                &format!("{base}/subscriptions"),
                s.subscriptions.to_string(),
            );
            put(
                &format!("{base}/buffered_bytes"),
                s.buffered_bytes.to_string(),
            );
            put(
                &format!("{base}/congested"),
                u8::from(congested.get(shard).copied().unwrap_or(false)).to_string(),
            );
        }
        out
    }

    /// Mosquitto's load averages: per-minute rates over the last interval, averaged with
    /// weight `exp(-interval / window)` on the previous value.
    fn advance_loads(&mut self, stats: &Stats, now: Instant) {
        let inputs = load_inputs(stats);
        if let Some((then, previous)) = self.last {
            let interval_secs = now.saturating_duration_since(then).as_secs_f64();
            if interval_secs > 0.0 {
                for (i, loads) in self.loads.iter_mut().enumerate() {
                    let per_minute =
                        inputs[i].saturating_sub(previous[i]) as f64 * 60.0 / interval_secs;
                    for ((window, _), load) in LOAD_WINDOWS.iter().zip(loads.iter_mut()) {
                        let weight = (-interval_secs / window).exp();
                        *load = per_minute + weight * (*load - per_minute);
                    }
                }
            }
        }
        self.last = Some((now, inputs));
    }

    /// Publishes the tree (retained, QoS 0). Returns the number of messages the control
    /// channel took.
    pub fn publish(&mut self, observer: &Observer, now: Instant) -> usize {
        let mut sent = 0;
        for (topic, value) in self.snapshot(observer, now) {
            if observer.inject(&topic, value.into_bytes(), true) {
                sent += 1;
            }
        }
        sent
    }
}

/// The process's resident memory now and at its peak, in bytes (VmRSS and VmHWM from
/// /proc/self/status; 0 where that file does not exist), for `$SYS/broker/process/...`.
fn memory_bytes() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
