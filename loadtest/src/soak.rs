//! The bounded soak (`shardmq-loadtest soak`): well-behaved QoS 0 and QoS 1 publisher/subscriber
//! pairs (the engine's `p2p` runs, one per interval and QoS) next to hostile clients on plain
//! blocking sockets, one thread each:
//!
//! 1. a client that pipelines PINGREQs and never reads;
//! 2. a QoS 1 subscriber to the busy topic that never reads;
//! 3. a client that sends part of a PUBLISH and stalls (reconnecting when the broker closes it);
//! 4. persistent sessions (clean session 0) that subscribe, disconnect, and then have messages
//!    published to them (removed with a clean connect at the end);
//! 5. a `$share` group member that never reads.
//!
//! A hostile publisher feeds 2, 4 and 5 with QoS 1 messages at a fixed rate. Every interval the
//! broker's RSS (`--pid`, VmRSS) and the well-behaved delivery are printed. Everything stops at
//! `--duration`; only loopback addresses are accepted.

use crate::cli::{host_port, parse_pid, resolve_loopback, SoakArgs};
use crate::engine::process_rss_bytes;
use crate::{bench, scenario::Scenario};
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// Hostile traffic is capped in bytes as well as in time.
const PING_BYTES_MAX: u64 = 1 << 30;
const TOPIC_BUSY: &str = "soak/hostile/busy";
const TOPIC_OFFLINE: &str = "soak/hostile/offline";
const TOPIC_SHARED: &str = "soak/hostile/shared";

/// The well-behaved pairs of one QoS over one interval.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Delivery {
    pub sent: u64,
    /// First deliveries.
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub p99_ms: f64,
    pub connection_errors: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakInterval {
    /// Seconds since the soak started, at the end of the interval.
    pub t_s: f64,
    /// The broker's largest RSS seen in the interval (`--pid`).
    pub rss_bytes: Option<u64>,
    pub qos0: Delivery,
    pub qos1: Delivery,
}

/// What the hostile clients did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Hostile {
    pub pingreq_bytes_written: u64,
    pub partial_packets_closed: u64,
    pub hostile_published: u64,
    pub hostile_reconnects: u64,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SoakReport {
    pub intervals: Vec<SoakInterval>,
    pub hostile: Hostile,
}

impl SoakReport {
    /// Every well-behaved message of every interval received, none lost.
    pub fn well_behaved_complete(&self) -> bool {
        !self.intervals.is_empty()
            && self.intervals.iter().all(|i| {
                [&i.qos0, &i.qos1]
                    .iter()
                    .all(|d| d.sent > 0 && d.received == d.sent && d.lost == 0)
            })
    }

    pub fn rss_max(&self) -> Option<u64> {
        self.intervals.iter().filter_map(|i| i.rss_bytes).max()
    }
}

#[derive(Default)]
struct Counters {
    ping_bytes: AtomicU64,
    partial_closed: AtomicU64,
    published: AtomicU64,
    reconnects: AtomicU64,
}

struct Shared {
    addr: SocketAddr,
    stop: AtomicBool,
    deadline: Instant,
    counters: Counters,
    tag: String,
    errors: std::sync::Mutex<Vec<String>>,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().expect("errors");
        if errors.len() < 20 {
            errors.push(e);
        }
    }

    /// Sleeps up to `d`, less if the soak ends.
    fn nap(&self, d: Duration) {
        let end = (Instant::now() + d).min(self.deadline);
        while self.running() && Instant::now() < end {
            thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
    }
}

/// Runs the soak; prints a line per interval and a summary.
pub fn run(args: &SoakArgs) -> Result<SoakReport, String> {
    if !(args.duration.is_finite() && args.duration > 0.0) {
        return Err("--duration must be a positive number of seconds".into());
    }
    if args.interval.is_nan() || args.interval < 2.0 {
        return Err("--interval must be at least 2 seconds".into());
    }
    if args.pairs == 0 || args.rate <= 0.0 || args.hostile_rate <= 0.0 {
        return Err("--pairs, --rate and --hostile-rate must be positive".into());
    }
    let addr = resolve_loopback(&host_port(&args.host, args.port))?;
    let pid = args.pid.as_deref().map(parse_pid).transpose()?.map(|p| p.1);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        addr,
        stop: AtomicBool::new(false),
        deadline: start + Duration::from_secs_f64(args.duration),
        counters: Counters::default(),
        tag: format!(
            "{}-{}",
            std::process::id(),
            crate::payload::nanos_since_epoch(Instant::now()) % 1_000_000_007
        ),
        errors: std::sync::Mutex::new(Vec::new()),
    });
    let offline: Vec<String> = (0..args.offline_sessions)
        .map(|i| format!("soak-offline-{}-{i}", shared.tag))
        .collect();
    for id in &offline {
        let mut s = open(addr, id, false)?;
        subscribe(&mut s, TOPIC_OFFLINE)?;
        s.write_all(&[0xE0, 0x00]).map_err(|e| e.to_string())?;
    }
    let mut hostile = Vec::new();
    {
        let (sh, rate, payload) = (shared.clone(), args.hostile_rate, args.hostile_payload);
        hostile.push(thread::spawn(move || hostile_publisher(&sh, rate, payload)));
    }
    for f in [
        pingreq_flood,
        partial_packet,
        never_reading_subscriber,
        share_member,
    ] {
        let sh = shared.clone();
        hostile.push(thread::spawn(move || f(&sh)));
    }

    let mut intervals = Vec::new();
    loop {
        let remaining = shared.deadline.saturating_duration_since(Instant::now());
        // Setup and warmup take about a second; the last interval takes what is left.
        if remaining < Duration::from_secs_f64(2.0) {
            break;
        }
        let measured = (args.interval.min(remaining.as_secs_f64()) - 1.0).max(0.5);
        let runs: Vec<_> = [0u8, 1]
            .into_iter()
            .map(|qos| {
                let words = p2p_words(args, qos, measured, pid);
                thread::spawn(move || {
                    let words: Vec<&str> = words.iter().map(String::as_str).collect();
                    bench::execute(&Scenario::parse(&words)?)
                })
            })
            .collect();
        let mut deliveries = Vec::new();
        let mut rss = None;
        for r in runs {
            let report = r.join().map_err(|_| "a well-behaved run panicked")??;
            let run = report.runs.first().ok_or("no run in the report")?;
            rss = rss.max(run.broker_rss_max_bytes);
            deliveries.push(Delivery {
                sent: run.sent,
                received: run.unique,
                lost: run.lost,
                duplicates: run.duplicates,
                p99_ms: run.latency_ms.p99,
                connection_errors: run.connection_errors,
            });
        }
        rss = rss.max(pid.and_then(process_rss_bytes));
        let interval = SoakInterval {
            t_s: start.elapsed().as_secs_f64(),
            rss_bytes: rss,
            qos1: deliveries.pop().unwrap_or_default(),
            qos0: deliveries.pop().unwrap_or_default(),
        };
        print_interval(&interval);
        intervals.push(interval);
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in hostile {
        let _ = h.join();
    }
    // The persistent sessions go with a clean connect, so the soak leaves nothing behind.
    for id in &offline {
        if let Ok(mut s) = open(addr, id, true) {
            let _ = s.write_all(&[0xE0, 0x00]);
        }
    }
    let c = &shared.counters;
    let report = SoakReport {
        intervals,
        hostile: Hostile {
            pingreq_bytes_written: c.ping_bytes.load(Ordering::Relaxed),
            partial_packets_closed: c.partial_closed.load(Ordering::Relaxed),
            hostile_published: c.published.load(Ordering::Relaxed),
            hostile_reconnects: c.reconnects.load(Ordering::Relaxed),
            errors: shared.errors.lock().expect("errors").clone(),
        },
    };
    print_summary(&report);
    Ok(report)
}

fn p2p_words(args: &SoakArgs, qos: u8, measured: f64, pid: Option<u32>) -> Vec<String> {
    let mut w: Vec<String> = [
        "p2p",
        "--host",
        &args.host,
        "--port",
        &args.port.to_string(),
        "--pairs",
        &args.pairs.to_string(),
        "--qos",
        &qos.to_string(),
        "--rate",
        &args.rate.to_string(),
        "--duration",
        &format!("{measured:.3}"),
        "--warmup",
        "0.5",
        "--threads",
        &args.threads.to_string(),
        "--setup-timeout",
        "10",
        "--topic",
        &format!("soak/good/q{qos}/%i"),
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(pid) = pid {
        w.push("--pid".into());
        w.push(format!("broker={pid}"));
    }
    w
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / 1048576.0))
}

fn print_interval(i: &SoakInterval) {
    let d = |d: &Delivery| {
        format!(
            "sent {} received {} lost {} p99 {:.2} ms",
            d.sent, d.received, d.lost, d.p99_ms
        )
    };
    println!(
        "soak t={:.0}s rss {} | qos0 {} | qos1 {}",
        i.t_s,
        mib(i.rss_bytes),
        d(&i.qos0),
        d(&i.qos1)
    );
}

fn print_summary(r: &SoakReport) {
    let sum = |f: fn(&SoakInterval) -> &Delivery| {
        r.intervals.iter().fold((0, 0, 0, 0.0f64), |a, i| {
            let d = f(i);
            (
                a.0 + d.sent,
                a.1 + d.received,
                a.2 + d.lost,
                a.3.max(d.p99_ms),
            )
        })
    };
    for (name, (s, rc, l, p)) in [("qos0", sum(|i| &i.qos0)), ("qos1", sum(|i| &i.qos1))] {
        println!("soak total {name}: sent {s} received {rc} lost {l} worst interval p99 {p:.2} ms");
    }
    let h = &r.hostile;
    println!(
        "soak broker rss: first {} last {} max {}; hostile: {} PINGREQ bytes written, {} QoS 1 \
         published, {} partial packets closed, {} reconnects, {} errors",
        mib(r.intervals.first().and_then(|i| i.rss_bytes)),
        mib(r.intervals.last().and_then(|i| i.rss_bytes)),
        mib(r.rss_max()),
        h.pingreq_bytes_written,
        h.hostile_published,
        h.partial_packets_closed,
        h.hostile_reconnects,
        h.errors.len()
    );
}

fn remaining_length(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// MQTT 3.1.1 connection, keep-alive 0; waits for a successful CONNACK.
fn open(addr: SocketAddr, id: &str, clean: bool) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {id}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut body = Vec::new();
    string(b"MQTT", &mut body);
    body.extend_from_slice(&[4, if clean { 0x02 } else { 0x00 }, 0, 0]);
    string(id.as_bytes(), &mut body);
    s.write_all(&packet(0x10, &body))
        .map_err(|e| format!("CONNECT {id}: {e}"))?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack)
        .map_err(|e| format!("CONNACK {id}: {e}"))?;
    if ack[0] != 0x20 || ack[3] != 0 {
        return Err(format!("CONNACK {id}: {ack:?}"));
    }
    Ok(s)
}

/// QoS 1 subscription; waits for the SUBACK.
fn subscribe(s: &mut TcpStream, filter: &str) -> Result<(), String> {
    let mut body = vec![0, 1];
    string(filter.as_bytes(), &mut body);
    body.push(1);
    s.write_all(&packet(0x82, &body))
        .map_err(|e| format!("SUBSCRIBE {filter}: {e}"))?;
    let mut ack = [0u8; 5];
    s.read_exact(&mut ack)
        .map_err(|e| format!("SUBACK {filter}: {e}"))?;
    if ack[0] != 0x90 || ack[4] > 2 {
        return Err(format!("SUBACK {filter}: {ack:?}"));
    }
    Ok(())
}

/// Holds a connected socket, never reading, until the soak ends.
fn hold(sh: &Shared, id: &str, filter: &str) {
    // The SUBACK is not read: the broker may send matching PUBLISHes before it (MQTT 3.1.1
    // 3.8.4), and this client reads nothing.
    let sub = |mut s: TcpStream| {
        let mut body = vec![0, 1];
        string(filter.as_bytes(), &mut body);
        body.push(1);
        s.write_all(&packet(0x82, &body))
            .map(|_| s)
            .map_err(|e| format!("SUBSCRIBE {filter}: {e}"))
    };
    match open(sh.addr, id, true).and_then(sub) {
        Ok(s) => {
            sh.nap(sh.deadline.saturating_duration_since(Instant::now()));
            drop(s);
        }
        Err(e) => sh.error(e),
    }
}

fn never_reading_subscriber(sh: &Shared) {
    hold(sh, &format!("soak-noread-{}", sh.tag), TOPIC_BUSY);
}

fn share_member(sh: &Shared) {
    hold(
        sh,
        &format!("soak-share-{}", sh.tag),
        &format!("$share/soak/{TOPIC_SHARED}"),
    );
}

/// QoS 1 to the busy topic, the offline sessions and the `$share` group in turn, at `rate`;
/// a second thread reads (and drops) the PUBACKs.
fn hostile_publisher(sh: &Shared, rate: f64, payload: usize) {
    let mut s = match open(sh.addr, &format!("soak-pub-{}", sh.tag), true) {
        Ok(s) => s,
        Err(e) => return sh.error(e),
    };
    let mut reader = match s.try_clone() {
        Ok(r) => r,
        Err(e) => return sh.error(e.to_string()),
    };
    let _ = reader.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut buf = vec![0u8; 64 * 1024];
            while sh.running() {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
            }
        });
        let topics = [TOPIC_BUSY, TOPIC_OFFLINE, TOPIC_SHARED];
        let body = vec![0x5Au8; payload];
        let start = Instant::now();
        let mut n: u64 = 0;
        while sh.running() {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            while n < due && sh.running() {
                let mut b = Vec::with_capacity(payload + 64);
                string(topics[(n % 3) as usize].as_bytes(), &mut b);
                b.extend_from_slice(&((n % 65535) as u16 + 1).to_be_bytes());
                b.extend_from_slice(&body);
                if let Err(e) = s.write_all(&packet(0x32, &b)) {
                    sh.error(format!("hostile publisher: {e}"));
                    sh.nap(sh.deadline.saturating_duration_since(Instant::now()));
                    break;
                }
                n += 1;
                sh.counters.published.fetch_add(1, Ordering::Relaxed);
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = s.write_all(&[0xE0, 0x00]);
    });
}

/// PINGREQs written as fast as the socket takes them, never reading; reconnects if closed.
fn pingreq_flood(sh: &Shared) {
    let chunk = [0xC0u8, 0x00].repeat(8192);
    while sh.running() && sh.counters.ping_bytes.load(Ordering::Relaxed) < PING_BYTES_MAX {
        let mut s = match open(sh.addr, &format!("soak-ping-{}", sh.tag), true) {
            Ok(s) => s,
            Err(e) => {
                sh.error(e);
                sh.nap(Duration::from_secs(1));
                continue;
            }
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(100)));
        let mut pos = 0;
        while sh.running() && sh.counters.ping_bytes.load(Ordering::Relaxed) < PING_BYTES_MAX {
            match s.write(&chunk[pos..]) {
                Ok(0) => break,
                Ok(n) => {
                    pos = (pos + n) % chunk.len();
                    sh.counters
                        .ping_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    sh.nap(Duration::from_millis(50))
                }
                Err(_) => break,
            }
        }
        if sh.running() {
            sh.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Part of a 1,000-byte PUBLISH, then nothing; waits for the broker to close, then again.
fn partial_packet(sh: &Shared) {
    while sh.running() {
        let mut s = match open(sh.addr, &format!("soak-partial-{}", sh.tag), true) {
            Ok(s) => s,
            Err(e) => {
                sh.error(e);
                sh.nap(Duration::from_secs(1));
                continue;
            }
        };
        let mut start = vec![0x30u8, 0xE8, 0x07];
        string(b"soak/partial", &mut start);
        if s.write_all(&start).is_err() {
            continue;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 256];
        while sh.running() {
            match s.read(&mut buf) {
                Ok(0) => {
                    sh.counters.partial_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    sh.counters.partial_closed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}
