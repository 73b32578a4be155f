//! Heap bytes held per idle connection and session, in-process (issue 10: no regression of
//! idle memory). The deterministic simulation connects N clients (MQTT 3.1.1, clean session,
//! keep-alive 60 s) to two shard cores; a counting global allocator reports the live heap bytes
//! before and after, so the figure is the core's state per idle client plus the simulation's own
//! per-connection bookkeeping (the same in every build, so builds compare exactly), without
//! the runtime's socket and the allocator's own overhead that VmRSS includes.
//!
//! Args: connections (default 10,000).
use bytes::BytesMut;
use shardmq::broker::Config;
use shardmq::codec::{Connect, MqttString, Packet, ProtocolVersion};
use shardmq::sim::Sim;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let config = Config {
        shards: 2,
        max_connections: n + 10,
        ..Config::default()
    };
    let mut sim = Sim::new(config, 1).expect("valid config");
    let mut conns = Vec::with_capacity(n);
    let mut wire = BytesMut::new();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..n {
        let conn = sim.connect(i % 2).expect("room");
        let connect = Connect {
            protocol_version: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive_secs: 60,
            client_id: MqttString::from(format!("idle-{i:08}")),
            ..Connect::default()
        };
        wire.clear();
        Packet::Connect(Box::new(connect))
            .encode(ProtocolVersion::V3_1_1, &mut wire)
            .expect("encodes");
        sim.send(conn, &wire);
        conns.push(conn);
        if i % 256 == 255 {
            assert!(sim.settle(1000));
            for &c in &conns[i - 255..=i] {
                drop(sim.take_output(c));
            }
        }
    }
    assert!(sim.settle(1000));
    for &c in &conns {
        drop(sim.take_output(c));
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let (connections, sessions) = (0..2).fold((0, 0), |acc, s| {
        let (c, s) = sim.core(s).population();
        (acc.0 + c, acc.1 + s)
    });
    assert_eq!((connections, sessions), (n, n), "every client connected");
    println!(
        "{n} idle connections: {} heap bytes held, {:.1} per connection",
        after - before,
        (after - before) as f64 / n as f64
    );
}
