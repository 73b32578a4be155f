//! The load engine: worker threads, each a mio `Poll` over a slab of connections, each connection
//! driving one sans-IO [`LoadSession`].
//!
//! ```text
//!  coordinator (run)                     worker thread k (of --threads)
//!  ─────────────────                     ───────────────────────────────────────────
//!  SETUP: wait until every connection    open connections k, k+T, k+2T ... (paced),
//!         has CONNACK (and SUBACK)       CONNECT, SUBSCRIBE, count `ready`
//!  RUN:   warmup, then measure;          publishers: a heap of (due time, publisher);
//!         progress line every second     each turn appends every owed PUBLISH into the
//!                                        connection's write buffer, then writes once
//!  DRAIN: wait for stragglers            subscribers: stamp -> latency, SeqTracker
//!  STOP:  join, merge tallies            DISCONNECT, return the thread's Tally
//! ```
//!
//! Only messages whose send time falls in the measurement window (after warmup, before the end)
//! are counted, at both ends, so `sent` and `received` compare exactly.

use crate::payload::{epoch, nanos_since_epoch, Stamp};
use crate::session::{LoadSession, MqttVersion, SessionEvent};
use crate::stats::{latency_histogram, SeqTracker, Tally};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Publishes one publisher appends per loop turn at most (the batch written with one `write`).
pub const PUBLISH_BATCH_MAX: u64 = 64;
/// A publisher stops producing while its connection's write buffer holds this many bytes.
pub const TX_HIGH_WATER_BYTES: usize = 256 * 1024;
/// TCP handshakes one worker keeps in progress at most.
pub const CONNECTS_IN_PROGRESS_MAX: usize = 256;
/// Read calls per connection per turn before other connections get their turn.
pub const READS_PER_TURN_MAX: usize = 64;
/// Size of each read.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How often every session's keep-alive timer is checked.
const TIMER_INTERVAL: Duration = Duration::from_millis(250);
/// How often a worker publishes its counters for the progress line and the drain check.
const SHARE_INTERVAL: Duration = Duration::from_millis(100);

/// What one connection does.
#[derive(Clone, Debug)]
pub enum Role {
    /// Publishes stamped messages to `topic`; `publisher_id` indexes the run's publishers.
    Publisher { publisher_id: u64, topic: String },
    /// Subscribes to `filter` and measures what arrives.
    Subscriber { filter: String },
    /// Connects and stays connected (the `conn` scenario).
    Idle,
}

/// One connection of a plan.
#[derive(Clone, Debug)]
pub struct ConnSpec {
    pub client_id: String,
    pub role: Role,
}

/// Everything a run needs, built by `scenario`.
#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub version: MqttVersion,
    pub qos: u8,
    pub payload_len: usize,
    /// Messages per second per publisher; 0 = as fast as the window and the socket allow.
    pub rate_per_publisher: f64,
    /// QoS 1/2 publishes in flight per publisher at most.
    pub inflight: usize,
    /// New connections per second over all threads; 0 = as fast as handshakes complete.
    pub connect_rate: f64,
    /// MQTT handshakes (TCP connect to CONNACK) in progress over all threads at most; 0 = no
    /// limit but [`CONNECTS_IN_PROGRESS_MAX`] TCP handshakes per thread.
    pub max_handshakes: usize,
    /// The broker's process id: its CPU time over the measurement window is read from /proc.
    pub broker_pid: Option<u32>,
    pub keep_alive_secs: u16,
    pub connections: Vec<ConnSpec>,
    /// Publishers in `connections`; their ids are `0..publishers`.
    pub publishers: usize,
    /// Tags this run's payloads (the high 32 bits of the publisher id field) so that messages a
    /// broker still holds from an earlier run are recognised as foreign, not counted.
    pub run_tag: u32,
    /// Track sequences per worker instead of per subscriber: shared subscriptions spread one
    /// publisher's messages over several subscribers, so only their union is in sequence.
    /// Duplicates across workers stay undetected (use `--threads 1` for an exact count).
    pub track_per_worker: bool,
    /// How many subscribers receive each message (S for fanout and fanin, 1 for p2p).
    pub deliveries_per_message: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// How long connection setup may take before the run is abandoned.
    pub setup_timeout: Duration,
    /// Longest wait for stragglers after the publishers stop.
    pub drain_timeout: Duration,
    pub threads: usize,
    /// Pin worker k to core k.
    pub pin_cores: bool,
    /// Print a progress line every second.
    pub progress: bool,
    /// Connect over TLS (`--tls-ca`).
    pub tls: Option<crate::tls::TlsClient>,
}

const SETUP: u8 = 0;
const RUN: u8 = 1;
const DRAIN: u8 = 2;
const STOP: u8 = 3;

/// Counters a worker shares with the coordinator, updated every [`SHARE_INTERVAL`].
#[derive(Default)]
struct WorkerShare {
    sent_window: AtomicU64,
    unique_window: AtomicU64,
    sent_total: AtomicU64,
    received_total: AtomicU64,
    inflight: AtomicU64,
    /// Latencies recorded since the run began (measurement window only).
    latency_us: Mutex<Option<Histogram<u64>>>,
}

/// State shared by the coordinator and the workers.
struct Shared {
    phase: AtomicU8,
    /// Connections that completed their handshake (CONNACK, and SUBACK for subscribers).
    ready: AtomicUsize,
    /// Connections that failed during setup.
    failed: AtomicUsize,
    run_start_ns: AtomicU64,
    measure_start_ns: AtomicU64,
    measure_end_ns: AtomicU64,
    workers: Vec<WorkerShare>,
}

/// The outcome of one run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub tally: Tally,
    /// Expected deliveries: messages sent in the window times subscribers per message.
    pub expected: u64,
    /// The measurement window actually used.
    pub measured: Duration,
    /// Time from the first connection attempt to the last connection ready.
    pub setup: Duration,
    pub connections: usize,
    pub connections_ready: usize,
    /// The broker's CPU seconds (user + system, all threads) over the measurement window, when
    /// `Plan::broker_pid` was given and /proc could be read at both ends.
    pub broker_cpu_s: Option<f64>,
    /// The broker's largest resident set seen during the run (`Plan::broker_pid`), in bytes.
    pub broker_rss_max_bytes: Option<u64>,
}

/// What the coordinator read of the broker's process.
#[derive(Default)]
struct BrokerSamples {
    cpu_start: Option<f64>,
    cpu_end: Option<f64>,
    rss_max: Option<u64>,
}

/// Resident set of process `pid` in bytes (VmRSS of /proc/PID/status). None if unreadable.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU time of process `pid` so far in seconds: utime + stime of /proc/PID/stat (every thread),
/// in USER_HZ ticks (100 per second on Linux). None if it cannot be read.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    const USER_HZ: f64 = 100.0;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod cpu_tests {
    #[test]
    fn own_cpu_time_grows_while_spinning() {
        let pid = std::process::id();
        let before = super::process_cpu_seconds(pid).expect("/proc/self/stat readable");
        let began = std::time::Instant::now();
        let mut x = 0u64;
        // 50 ms of CPU: 5 ticks of USER_HZ (a loaded machine only makes it take longer).
        while super::process_cpu_seconds(pid).unwrap_or(before) - before < 0.05 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            assert!(began.elapsed() < std::time::Duration::from_secs(60), "{x}");
        }
        assert!(super::process_cpu_seconds(pid).unwrap() > before);
        assert!(super::process_cpu_seconds(u32::MAX).is_none());
        assert!(super::process_rss_bytes(pid).expect("VmRSS") > 0);
        assert!(super::process_rss_bytes(u32::MAX).is_none());
    }
}

impl RunResult {
    /// Expected deliveries that never arrived.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.tally.unique)
    }

    /// Messages per second sent in the window.
    pub fn sent_rate(&self) -> f64 {
        per_second(self.tally.sent, self.measured)
    }

    /// Deliveries per second received (first deliveries only).
    pub fn received_rate(&self) -> f64 {
        per_second(self.tally.unique, self.measured)
    }
}

fn per_second(count: u64, window: Duration) -> f64 {
    if window.is_zero() {
        0.0
    } else {
        count as f64 / window.as_secs_f64()
    }
}

/// Runs `plan` with sessions of type `S` and returns the merged result. Errors are setup failures
/// (no connection could be made, or setup timed out).
pub fn run<S: LoadSession + 'static>(plan: &Plan) -> Result<RunResult, String> {
    let threads = plan.threads.max(1);
    // The epoch must exist before any timestamp is taken.
    let _ = epoch();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(SETUP),
        ready: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        run_start_ns: AtomicU64::new(u64::MAX),
        measure_start_ns: AtomicU64::new(u64::MAX),
        measure_end_ns: AtomicU64::new(u64::MAX),
        workers: (0..threads).map(|_| WorkerShare::default()).collect(),
    });
    let mut handles = Vec::with_capacity(threads);
    let setup_began = Instant::now();
    for index in 0..threads {
        let specs: Vec<ConnSpec> = plan
            .connections
            .iter()
            .skip(index)
            .step_by(threads)
            .cloned()
            .collect();
        let plan = plan.clone();
        let shared = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name(format!("load-{index}"))
            .spawn(move || {
                Worker::<S>::new(index, threads, plan, shared, specs).and_then(Worker::run)
            })
            .map_err(|e| format!("cannot spawn a worker thread: {e}"))?;
        handles.push(handle);
    }
    let mut broker = BrokerSamples::default();
    let outcome = coordinate(plan, &shared, setup_began, &mut broker);
    shared.phase.store(STOP, Ordering::Release);
    let mut tally = Tally::default();
    for handle in handles {
        match handle.join() {
            Ok(Ok(worker_tally)) => tally.merge(&worker_tally),
            Ok(Err(e)) => return Err(format!("worker failed: {e}")),
            Err(_) => return Err("a worker thread panicked".into()),
        }
    }
    let (setup, measured) = outcome.map_err(|e| match tally.errors.first() {
        Some(first) => format!("{e} (first error: {first})"),
        None => e,
    })?;
    Ok(RunResult {
        expected: tally.sent * plan.deliveries_per_message,
        tally,
        measured,
        setup,
        connections: plan.connections.len(),
        connections_ready: shared.ready.load(Ordering::Acquire),
        broker_cpu_s: match (broker.cpu_start, broker.cpu_end) {
            (Some(start), Some(end)) => Some((end - start).max(0.0)),
            _ => None,
        },
        broker_rss_max_bytes: broker.rss_max,
    })
}

/// The coordinator's part: setup barrier, timed phases, progress, drain. Returns (setup time,
/// measurement window). `broker` gets the broker's CPU seconds at the window's start and end
/// and its largest resident set (sampled once a second) when `plan.broker_pid` is set.
fn coordinate(
    plan: &Plan,
    shared: &Shared,
    setup_began: Instant,
    broker: &mut BrokerSamples,
) -> Result<(Duration, Duration), String> {
    let total = plan.connections.len();
    loop {
        let ready = shared.ready.load(Ordering::Acquire);
        let failed = shared.failed.load(Ordering::Acquire);
        if ready + failed >= total {
            if failed > 0 {
                return Err(format!(
                    "{failed} of {total} connections failed during setup"
                ));
            }
            break;
        }
        if setup_began.elapsed() > plan.setup_timeout {
            return Err(format!(
                "setup timed out after {:?}: {ready} of {total} connections ready, {failed} failed",
                plan.setup_timeout
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let setup = setup_began.elapsed();
    let run_start = Instant::now();
    let measure_start = run_start + plan.warmup;
    let measure_end = measure_start + plan.duration;
    shared
        .measure_start_ns
        .store(nanos_since_epoch(measure_start), Ordering::Release);
    shared
        .measure_end_ns
        .store(nanos_since_epoch(measure_end), Ordering::Release);
    shared
        .run_start_ns
        .store(nanos_since_epoch(run_start), Ordering::Release);
    shared.phase.store(RUN, Ordering::Release);
    let mut progress = Progress::new(run_start);
    let mut cpu_sampled = plan.broker_pid.is_none();
    while Instant::now() < measure_end {
        let mut next = (progress.next_line_at).min(measure_end);
        if !cpu_sampled {
            next = next.min(measure_start);
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        if !cpu_sampled && Instant::now() >= measure_start {
            cpu_sampled = true;
            broker.cpu_start = plan.broker_pid.and_then(process_cpu_seconds);
        }
        if Instant::now() >= progress.next_line_at {
            if let Some(rss) = plan.broker_pid.and_then(process_rss_bytes) {
                broker.rss_max = Some(broker.rss_max.unwrap_or(0).max(rss));
            }
            if plan.progress {
                progress.print(shared, measure_start);
            } else {
                // Quiet: only the next tick moves (no busy loop until the window ends).
                progress.next_line_at += Duration::from_secs(1);
            }
        }
    }
    broker.cpu_end = plan.broker_pid.and_then(process_cpu_seconds);
    if let Some(rss) = plan.broker_pid.and_then(process_rss_bytes) {
        broker.rss_max = Some(broker.rss_max.unwrap_or(0).max(rss));
    }
    shared.phase.store(DRAIN, Ordering::Release);
    drain(plan, shared);
    Ok((setup, plan.duration))
}

/// Waits until every expected delivery in the window arrived and no publish is in flight, or
/// nothing changed for a second, or the drain timeout passed.
fn drain(plan: &Plan, shared: &Shared) {
    let began = Instant::now();
    let mut last_change = began;
    let mut last_seen = (0, 0, 0);
    // Let workers publish their final counters at least once.
    std::thread::sleep(SHARE_INTERVAL * 2);
    while began.elapsed() < plan.drain_timeout {
        let sum = |f: fn(&WorkerShare) -> &AtomicU64| -> u64 {
            shared
                .workers
                .iter()
                .map(|w| f(w).load(Ordering::Relaxed))
                .sum()
        };
        let sent = sum(|w| &w.sent_window);
        let unique = sum(|w| &w.unique_window);
        let inflight = sum(|w| &w.inflight);
        let received = sum(|w| &w.received_total);
        if unique >= sent * plan.deliveries_per_message && inflight == 0 {
            return;
        }
        // Anything still arriving (even from before the window) may be followed by ours.
        if (unique, inflight, received) != last_seen {
            last_seen = (unique, inflight, received);
            last_change = Instant::now();
        } else if last_change.elapsed() > Duration::from_secs(1) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The once-a-second progress line.
struct Progress {
    run_start: Instant,
    next_line_at: Instant,
    last: (u64, u64, Instant),
}

impl Progress {
    fn new(run_start: Instant) -> Progress {
        Progress {
            run_start,
            next_line_at: run_start + Duration::from_secs(1),
            last: (0, 0, run_start),
        }
    }

    fn print(&mut self, shared: &Shared, measure_start: Instant) {
        let now = Instant::now();
        let sent: u64 = shared
            .workers
            .iter()
            .map(|w| w.sent_total.load(Ordering::Relaxed))
            .sum();
        let received: u64 = shared
            .workers
            .iter()
            .map(|w| w.received_total.load(Ordering::Relaxed))
            .sum();
        let mut latency = latency_histogram();
        for worker in &shared.workers {
            if let Ok(guard) = worker.latency_us.lock() {
                if let Some(h) = guard.as_ref() {
                    let _ = latency.add(h);
                }
            }
        }
        let span = now.duration_since(self.last.2).as_secs_f64().max(1e-9);
        let sent_rate = (sent - self.last.0.min(sent)) as f64 / span;
        let received_rate = (received - self.last.1.min(received)) as f64 / span;
        let p99 = if latency.is_empty() {
            "-".to_string()
        } else {
            format!("{:.2} ms", latency.value_at_quantile(0.99) as f64 / 1000.0)
        };
        let phase = if now < measure_start { " (warmup)" } else { "" };
        println!(
            "{:>5.1}s  sent/s {:>10.0}  received/s {:>10.0}  p99 {}{}",
            now.duration_since(self.run_start).as_secs_f64(),
            sent_rate,
            received_rate,
            p99,
            phase
        );
        self.last = (sent, received, now);
        self.next_line_at += Duration::from_secs(1);
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    /// TCP handshake in progress.
    Connecting,
    /// CONNECT sent, waiting for CONNACK.
    Handshaking,
    /// SUBSCRIBE sent, waiting for SUBACK.
    Subscribing,
    /// Counted as ready.
    Ready,
    Closed,
}

/// Pacing state of a publisher.
struct Pacer<T> {
    publisher_id: u64,
    topic: T,
    /// When this publisher's schedule starts (ns since epoch).
    start_ns: u64,
    /// Messages published so far (the next sequence number).
    count: u64,
    /// In the due-heap.
    scheduled: bool,
}

struct Conn<S: LoadSession> {
    stream: TcpStream,
    /// The TLS state with `--tls-ca` (src/tls.rs).
    tls: Option<Box<rustls::ClientConnection>>,
    session: S,
    state: ConnState,
    rx: BytesMut,
    tx: BytesMut,
    /// False after a write hit `WouldBlock`, until the next writable event.
    writable: bool,
    /// In this turn's flush list.
    dirty: bool,
    started_at: Instant,
    subscriber_filter: Option<String>,
    pacer: Option<Pacer<S::Topic>>,
    /// Per-publisher sequence trackers (subscribers only).
    trackers: HashMap<u64, SeqTracker>,
}

struct Worker<S: LoadSession> {
    index: usize,
    plan: Plan,
    shared: Arc<Shared>,
    poll: Poll,
    conns: Slab<Conn<S>>,
    /// Connections not yet opened.
    to_open: VecDeque<ConnSpec>,
    /// How many this worker has opened, for connect pacing.
    opened: u64,
    connect_rate: f64,
    connecting: usize,
    /// Connections between TCP connect and CONNACK (or close).
    handshaking: usize,
    /// This worker's share of `Plan::max_handshakes` (0 = none).
    handshake_limit: usize,
    setup_began: Instant,
    due: BinaryHeap<Reverse<(u64, usize)>>,
    /// Connections with a reason to flush this turn.
    flush: Vec<usize>,
    /// Connections whose reads were cut short by [`READS_PER_TURN_MAX`].
    more_to_read: Vec<usize>,
    arena: BytesMut,
    scratch: Vec<u8>,
    tally: Tally,
    /// Sequence trackers of all this worker's subscribers (when `plan.track_per_worker`).
    worker_trackers: HashMap<u64, SeqTracker>,
    /// Latencies since the last share, merged into the shared histogram.
    recent_latency: Histogram<u64>,
    sent_total: u64,
    received_total: u64,
    measure_start_ns: u64,
    measure_end_ns: u64,
}

impl<S: LoadSession> Worker<S> {
    fn new(
        index: usize,
        threads: usize,
        plan: Plan,
        shared: Arc<Shared>,
        specs: Vec<ConnSpec>,
    ) -> Result<Worker<S>, String> {
        let poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        let connect_rate = plan.connect_rate / threads as f64;
        // Split the run's handshake limit over the workers, at least one each.
        let handshake_limit = match plan.max_handshakes {
            0 => 0,
            n => (n / threads + usize::from(index < n % threads)).max(1),
        };
        Ok(Worker {
            index,
            conns: Slab::with_capacity(specs.len()),
            to_open: specs.into(),
            plan,
            shared,
            poll,
            opened: 0,
            connect_rate,
            connecting: 0,
            handshaking: 0,
            handshake_limit,
            setup_began: Instant::now(),
            due: BinaryHeap::new(),
            flush: Vec::new(),
            more_to_read: Vec::new(),
            arena: BytesMut::new(),
            scratch: vec![0; READ_CHUNK_BYTES],
            tally: Tally::default(),
            worker_trackers: HashMap::new(),
            recent_latency: latency_histogram(),
            sent_total: 0,
            received_total: 0,
            measure_start_ns: u64::MAX,
            measure_end_ns: u64::MAX,
        })
    }

    fn run(mut self) -> Result<Tally, String> {
        if self.plan.pin_cores {
            let cores = core_affinity::get_core_ids().unwrap_or_default();
            if let Some(&core) = cores.get(self.index % cores.len().max(1)) {
                // Best effort: an unpinned worker still works.
                let _ = core_affinity::set_for_current(core);
            }
        }
        let mut events = Events::with_capacity(1024);
        let mut next_timers = Instant::now() + TIMER_INTERVAL;
        let mut next_share = Instant::now() + SHARE_INTERVAL;
        let mut running = false;
        loop {
            let phase = self.shared.phase.load(Ordering::Acquire);
            if phase == STOP {
                break;
            }
            if phase == RUN && !running {
                running = true;
                self.begin_publishing();
            }
            let now = Instant::now();
            self.open_connections(now);
            let timeout = self.poll_timeout(now, phase);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll failed: {e}"));
                }
            }
            let now = Instant::now();
            for event in events.iter() {
                let key = event.token().0;
                if event.is_writable() {
                    self.on_writable(key, now);
                }
                if event.is_readable() || event.is_read_closed() || event.is_error() {
                    self.on_readable(key, now);
                }
            }
            for key in std::mem::take(&mut self.more_to_read) {
                self.on_readable(key, now);
            }
            if phase == RUN {
                self.publish_due(now);
            }
            if now >= next_timers {
                self.run_timers(now);
                next_timers = now + TIMER_INTERVAL;
            }
            self.flush_all(now);
            if now >= next_share {
                self.share();
                next_share = now + SHARE_INTERVAL;
            }
        }
        self.share();
        self.close_all();
        Ok(self.tally)
    }

    fn poll_timeout(&self, now: Instant, phase: u8) -> Duration {
        if !self.more_to_read.is_empty() {
            return Duration::ZERO;
        }
        let mut timeout = Duration::from_millis(10);
        if phase == SETUP && !self.to_open.is_empty() && self.connect_rate > 0.0 {
            timeout = timeout.min(Duration::from_millis(1));
        }
        if phase == RUN {
            if let Some(Reverse((due_ns, _))) = self.due.peek() {
                let now_ns = nanos_since_epoch(now);
                timeout = timeout.min(Duration::from_nanos(due_ns.saturating_sub(now_ns)));
            }
        }
        timeout
    }

    /// Opens connections while the pacing and the handshake limit allow.
    fn open_connections(&mut self, now: Instant) {
        while self.connecting < CONNECTS_IN_PROGRESS_MAX
            && (self.handshake_limit == 0 || self.handshaking < self.handshake_limit)
        {
            if self.connect_rate > 0.0 {
                let allowed = (now.duration_since(self.setup_began).as_secs_f64()
                    * self.connect_rate) as u64
                    + 1;
                if self.opened >= allowed {
                    return;
                }
            }
            let Some(spec) = self.to_open.pop_front() else {
                return;
            };
            self.opened += 1;
            if let Err(e) = self.open(spec, now) {
                self.tally.connection_error(e);
                self.shared.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn open(&mut self, spec: ConnSpec, now: Instant) -> Result<(), String> {
        let tls = match &self.plan.tls {
            Some(client) => Some(client.connect()?),
            None => None,
        };
        let mut stream = TcpStream::connect(self.plan.addr)
            .map_err(|e| format!("connect to {}: {e}", self.plan.addr))?;
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| format!("register: {e}"))?;
        let (subscriber_filter, pacer) = match spec.role {
            Role::Publisher {
                publisher_id,
                topic,
            } => (
                None,
                Some(Pacer {
                    publisher_id,
                    topic: S::topic(&topic),
                    start_ns: 0,
                    count: 0,
                    scheduled: false,
                }),
            ),
            Role::Subscriber { filter } => (Some(filter), None),
            Role::Idle => (None, None),
        };
        entry.insert(Conn {
            stream,
            tls,
            session: S::new(
                &spec.client_id,
                self.plan.version,
                self.plan.keep_alive_secs,
                self.plan.inflight,
            ),
            state: ConnState::Connecting,
            rx: BytesMut::new(),
            tx: BytesMut::new(),
            writable: false,
            dirty: false,
            started_at: now,
            subscriber_filter,
            pacer,
            trackers: HashMap::new(),
        });
        self.connecting += 1;
        self.handshaking += 1;
        Ok(())
    }

    fn on_writable(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return; // A stale token is a no-op.
        };
        if conn.state == ConnState::Connecting {
            // A failed handshake leaves its error on the socket (SO_ERROR).
            match conn.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    self.fail(key, format!("connect to {}: {e}", self.plan.addr));
                    return;
                }
            }
            // Readiness is a hint: the handshake is done only if the socket has a peer.
            match conn.stream.peer_addr() {
                Ok(_) => {
                    let _ = conn.stream.set_nodelay(true);
                    conn.state = ConnState::Handshaking;
                    conn.session.start(now);
                    self.connecting -= 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.fail(key, format!("connect to {}: {e}", self.plan.addr));
                    return;
                }
            }
        }
        conn.writable = true;
        self.mark_flush(key);
        self.schedule_now(key, now);
    }

    fn on_readable(&mut self, key: usize, now: Instant) {
        let mut reads = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.state == ConnState::Connecting || conn.state == ConnState::Closed {
                return;
            }
            if reads == READS_PER_TURN_MAX {
                self.more_to_read.push(key);
                return;
            }
            reads += 1;
            match crate::tls::read(&mut conn.stream, &mut conn.tls, &mut self.scratch) {
                Ok(0) => {
                    self.fail(key, "the server closed the connection".into());
                    return;
                }
                Ok(n) => {
                    conn.rx.extend_from_slice(&self.scratch[..n]);
                    if !self.consume_input(key, now) || n < self.scratch.len() {
                        // A short read drained the socket: the next arrival raises a new edge,
                        // so the extra read that would only say WouldBlock is skipped (as
                        // tokio does).
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(key, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    /// Feeds the read buffer to the session until it is consumed; the session may stop early
    /// when its event queue is full, so events are drained between calls. False when the
    /// connection was closed.
    fn consume_input(&mut self, key: usize, now: Instant) -> bool {
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return false;
            };
            let before = conn.rx.len();
            if let Err(e) = conn.session.handle_input(&mut conn.rx, now) {
                self.fail(key, format!("protocol error from the server: {e}"));
                return false;
            }
            let consumed = before != conn.rx.len();
            let events = self.process_events(key, now);
            match self.conns.get(key) {
                Some(conn) if conn.state != ConnState::Closed => {
                    if conn.rx.is_empty() || (!consumed && events == 0) {
                        return true;
                    }
                }
                _ => return false,
            }
        }
    }

    /// Handles every pending session event; returns how many there were.
    fn process_events(&mut self, key: usize, now: Instant) -> usize {
        let mut count = 0;
        while let Some(event) = self.conns.get_mut(key).and_then(|c| c.session.poll_event()) {
            count += 1;
            match event {
                SessionEvent::Connected { accepted: false } => {
                    self.fail(key, "CONNACK refused the connection".into());
                    return count;
                }
                SessionEvent::Connected { accepted: true } => self.on_connected(key, now),
                SessionEvent::Subscribed {
                    refused: Some(code),
                } => {
                    let message =
                        format!("SUBACK refused the subscription (reason code {code:#04x})");
                    self.fail(key, message);
                    return count;
                }
                SessionEvent::Subscribed { refused: None } => self.set_ready(key),
                SessionEvent::Message { payload } => self.on_message(key, &payload, now),
                SessionEvent::Delivered => {
                    self.tally.acked += 1;
                    self.schedule_now(key, now);
                }
                SessionEvent::Closed => {
                    self.fail(key, "the server sent DISCONNECT".into());
                    return count;
                }
            }
            self.mark_flush(key);
        }
        count
    }

    fn on_connected(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.state != ConnState::Handshaking {
            return;
        }
        self.handshaking -= 1;
        let micros =
            u64::try_from(now.duration_since(conn.started_at).as_micros()).unwrap_or(u64::MAX);
        self.tally.connect_us.saturating_record(micros.max(1));
        let Some(filter) = conn.subscriber_filter.as_deref() else {
            return self.set_ready(key);
        };
        if let Err(e) = conn.session.subscribe(filter, self.plan.qos) {
            return self.fail(key, format!("subscribe: {e}"));
        }
        conn.state = ConnState::Subscribing;
    }

    fn set_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.state != ConnState::Ready {
                conn.state = ConnState::Ready;
                self.shared.ready.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn on_message(&mut self, key: usize, payload: &[u8], now: Instant) {
        self.received_total += 1;
        let Some(stamp) = Stamp::read(payload) else {
            self.tally.foreign += 1;
            return;
        };
        let publisher_id = stamp.publisher_id & u64::from(u32::MAX);
        if stamp.publisher_id >> 32 != u64::from(self.plan.run_tag)
            || publisher_id >= self.plan.publishers as u64
        {
            self.tally.foreign += 1;
            return;
        }
        if stamp.sent_ns < self.measure_start_ns || stamp.sent_ns >= self.measure_end_ns {
            return;
        }
        let trackers = if self.plan.track_per_worker {
            &mut self.worker_trackers
        } else {
            match self.conns.get_mut(key) {
                Some(conn) => &mut conn.trackers,
                None => return,
            }
        };
        let arrival = trackers.entry(publisher_id).or_default().record(stamp.seq);
        let latency_us = nanos_since_epoch(now).saturating_sub(stamp.sent_ns) / 1000;
        self.tally.count_arrival(arrival, latency_us);
        self.recent_latency.saturating_record(latency_us.max(1));
    }

    fn begin_publishing(&mut self) {
        self.measure_start_ns = self.shared.measure_start_ns.load(Ordering::Acquire);
        self.measure_end_ns = self.shared.measure_end_ns.load(Ordering::Acquire);
        let run_start_ns = self.shared.run_start_ns.load(Ordering::Acquire);
        let rate = self.plan.rate_per_publisher;
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.pacer.is_some())
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            if let Some(pacer) = self.conns[key].pacer.as_mut() {
                // Spread publishers over one message interval so they do not send in lockstep.
                let offset_ns = if rate > 0.0 {
                    let interval_ns = 1e9 / rate;
                    let fraction = (pacer.publisher_id % 1000) as f64 / 1000.0;
                    (interval_ns * fraction) as u64
                } else {
                    0
                };
                pacer.start_ns = run_start_ns + offset_ns;
                pacer.scheduled = true;
                self.due.push(Reverse((pacer.start_ns, key)));
            }
        }
    }

    /// Puts a publisher back on the heap to be looked at in this turn.
    fn schedule_now(&mut self, key: usize, now: Instant) {
        if self.shared.phase.load(Ordering::Relaxed) != RUN || self.measure_end_ns == u64::MAX {
            return;
        }
        if let Some(pacer) = self.conns.get_mut(key).and_then(|c| c.pacer.as_mut()) {
            if !pacer.scheduled {
                pacer.scheduled = true;
                self.due.push(Reverse((nanos_since_epoch(now), key)));
            }
        }
    }

    /// Lets every publisher whose time has come append its owed messages.
    fn publish_due(&mut self, now: Instant) {
        let now_ns = nanos_since_epoch(now);
        let mut reschedule = Vec::new();
        while let Some(&Reverse((due_ns, key))) = self.due.peek() {
            if due_ns > now_ns {
                break;
            }
            self.due.pop();
            if let Some(next_due) = self.publish_owed(key, now, now_ns) {
                reschedule.push(Reverse((next_due, key)));
            }
        }
        for entry in reschedule {
            self.due.push(entry);
        }
    }

    /// Appends this publisher's owed messages; returns when it is next due, or `None` when it
    /// waits for an event (window full, socket full, end of run) and is off the heap.
    fn publish_owed(&mut self, key: usize, now: Instant, now_ns: u64) -> Option<u64> {
        let plan = &self.plan;
        let conn = self.conns.get_mut(key)?;
        let pacer = conn.pacer.as_mut()?;
        pacer.scheduled = false;
        if conn.state != ConnState::Ready || now_ns >= self.measure_end_ns {
            return None;
        }
        let rate = plan.rate_per_publisher;
        let owed = if rate > 0.0 {
            let elapsed_s = now_ns.saturating_sub(pacer.start_ns) as f64 / 1e9;
            let target = (elapsed_s * rate) as u64 + 1;
            target.saturating_sub(pacer.count).min(PUBLISH_BATCH_MAX)
        } else {
            PUBLISH_BATCH_MAX
        };
        let mut blocked = false;
        for _ in 0..owed {
            if !conn.writable || conn.tx.len() >= TX_HIGH_WATER_BYTES {
                blocked = true;
                break;
            }
            if plan.qos > 0 && conn.session.inflight_len() >= plan.inflight {
                blocked = true;
                break;
            }
            let stamp = Stamp {
                publisher_id: (u64::from(plan.run_tag) << 32) | pacer.publisher_id,
                seq: pacer.count,
                sent_ns: now_ns,
            };
            if self.arena.capacity() < plan.payload_len {
                self.arena.reserve(plan.payload_len.max(64 * 1024));
            }
            stamp.write(plan.payload_len, &mut self.arena);
            let payload = self.arena.split().freeze();
            match conn.session.publish(&pacer.topic, payload, plan.qos, now) {
                Ok(true) => {}
                Ok(false) => {
                    blocked = true;
                    break;
                }
                Err(e) => {
                    self.tally.connection_error(format!("publish: {e}"));
                    return None;
                }
            }
            pacer.count += 1;
            self.sent_total += 1;
            if now_ns >= self.measure_start_ns {
                self.tally.sent += 1;
            }
            // Append to the write buffer now so that the high-water mark sees it.
            conn.session.poll_transmit(&mut conn.tx);
        }
        if !conn.dirty {
            conn.dirty = true;
            self.flush.push(key);
        }
        if blocked {
            return None;
        }
        pacer.scheduled = true;
        if rate > 0.0 {
            let next_ns = pacer.start_ns + (pacer.count as f64 * 1e9 / rate) as u64;
            Some(next_ns.max(now_ns))
        } else {
            Some(now_ns)
        }
    }

    fn run_timers(&mut self, now: Instant) {
        let keys: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.state != ConnState::Connecting && c.state != ConnState::Closed)
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.session.poll_timeout().is_some_and(|t| t <= now) {
                if let Err(e) = conn.session.handle_timeout(now) {
                    self.fail(key, format!("session timer: {e}"));
                    continue;
                }
                self.mark_flush(key);
            }
        }
        // Handshakes that never complete count as failures after the setup timeout.
        if self.shared.phase.load(Ordering::Relaxed) == SETUP
            && self.setup_began.elapsed() > self.plan.setup_timeout
        {
            let stuck: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.state != ConnState::Ready && c.state != ConnState::Closed)
                .map(|(k, _)| k)
                .collect();
            for key in stuck {
                self.fail(
                    key,
                    "handshake did not complete before the setup timeout".into(),
                );
            }
            // Setup is over: the slots the failures freed must not open more connections.
            let never_opened = std::mem::take(&mut self.to_open).len();
            self.shared.failed.fetch_add(never_opened, Ordering::AcqRel);
        }
    }

    fn mark_flush(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.flush.push(key);
            }
        }
    }

    /// One write per connection per turn: everything the session has queued goes out together.
    fn flush_all(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.flush) {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Connecting || conn.state == ConnState::Closed {
                continue;
            }
            conn.session.poll_transmit(&mut conn.tx);
            match write_out(&mut conn.stream, &mut conn.tls, &mut conn.tx) {
                Ok(true) => {
                    if !conn.writable {
                        conn.writable = true;
                    }
                }
                Ok(false) => conn.writable = false,
                Err(e) => {
                    self.fail(key, format!("write: {e}"));
                    continue;
                }
            }
            // A publisher blocked only on its buffer can go on once the buffer drained.
            let resume = conn.writable
                && conn.tx.len() < TX_HIGH_WATER_BYTES
                && conn.pacer.as_ref().is_some_and(|p| !p.scheduled);
            if resume {
                self.schedule_now(key, now);
            }
        }
    }

    fn fail(&mut self, key: usize, description: String) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let phase = self.shared.phase.load(Ordering::Acquire);
        let state = conn.state;
        if state == ConnState::Closed {
            return;
        }
        conn.state = ConnState::Closed;
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if state == ConnState::Connecting {
            self.connecting -= 1;
        }
        if state == ConnState::Connecting || state == ConnState::Handshaking {
            self.handshaking -= 1;
        }
        if phase == STOP {
            return;
        }
        self.tally.connection_error(description);
        if state != ConnState::Ready {
            self.shared.failed.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn share(&mut self) {
        let share = &self.shared.workers[self.index];
        share.sent_window.store(self.tally.sent, Ordering::Relaxed);
        share
            .unique_window
            .store(self.tally.unique, Ordering::Relaxed);
        share.sent_total.store(self.sent_total, Ordering::Relaxed);
        share
            .received_total
            .store(self.received_total, Ordering::Relaxed);
        let inflight: usize = self
            .conns
            .iter()
            .filter(|(_, c)| c.state == ConnState::Ready)
            .map(|(_, c)| c.session.inflight_len())
            .sum();
        share.inflight.store(inflight as u64, Ordering::Relaxed);
        if !self.recent_latency.is_empty() {
            if let Ok(mut guard) = share.latency_us.lock() {
                let total = guard.get_or_insert_with(latency_histogram);
                let _ = total.add(&self.recent_latency);
            }
            self.recent_latency.reset();
        }
    }

    /// Sends DISCONNECT on every open connection, best effort, and drops them.
    fn close_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            if conn.state == ConnState::Connecting || conn.state == ConnState::Closed {
                continue;
            }
            conn.session.disconnect();
            conn.session.poll_transmit(&mut conn.tx);
            let _ = write_out(&mut conn.stream, &mut conn.tls, &mut conn.tx);
            let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        }
        self.conns.clear();
    }
}

/// Writes `tx` (through TLS with `--tls-ca`) until it is empty (`Ok(true)`) or the socket is
/// full (`Ok(false)`).
fn write_out(
    stream: &mut TcpStream,
    tls: &mut Option<Box<rustls::ClientConnection>>,
    tx: &mut BytesMut,
) -> io::Result<bool> {
    if !crate::tls::flush(stream, tls)? {
        return Ok(false);
    }
    while !tx.is_empty() {
        match crate::tls::write(stream, tls, tx) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
            Ok(n) => tx.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
