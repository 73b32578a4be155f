//! Startup time with a large store (issue 14): writes the logs of SESSIONS persistent sessions
//! with MESSAGES queued QoS 1 messages each (PAYLOAD bytes), then times `Broker::start` reading
//! them back, and prints the file sizes. A measurement, not a test:
//!
//! `cargo run --release --example persistence_startup -- DIR [SESSIONS] [MESSAGES] [SHARDS] [PAYLOAD]`
//! (defaults 100000 sessions x 10 messages, 2 shards, 64-byte payloads).

use bytes::Bytes;
use shardmq::broker::session::{Message, Queued, SessionState, StoredSubscription};
use shardmq::broker::{Broker, Config};
use shardmq::codec::{MqttString, Publish, QoS, SubscriptionOptions};
use shardmq::store::{Durability, RecoveredSession, ShardStore, StoreShared};
use std::sync::Arc;
use std::time::Instant;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let (sessions, messages, shards, payload) =
        (arg(2, 100_000), arg(3, 10), arg(4, 2), arg(5, 64));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards,
        persistence: Durability::Sync,
        persistence_dir: dir.clone(),
        max_queued_messages: messages.max(1000),
        ..Config::default()
    };

    let started = Instant::now();
    {
        let now = Instant::now();
        let shared = Arc::new(StoreShared::new(shards, 1, Default::default()));
        let body = Bytes::from(vec![b'x'; payload]);
        for shard in 0..shards {
            let list: Vec<RecoveredSession> = (shard..sessions)
                .step_by(shards)
                .map(|i| {
                    let mut state = SessionState {
                        client_id: MqttString::from(format!("device-{i:06}")),
                        session_expiry_interval_secs: u32::MAX,
                        ..SessionState::default()
                    };
                    let filter = MqttString::from(format!("devices/{i:06}/#"));
                    let options = SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        ..Default::default()
                    };
                    state.subscriptions.insert(
                        filter,
                        StoredSubscription {
                            options,
                            identifier: 0,
                        },
                    );
                    for m in 0..messages {
                        let publish = Publish {
                            qos: QoS::AtLeastOnce,
                            topic: MqttString::from(format!("devices/{i:06}/m{m}")),
                            payload: body.clone(),
                            ..Publish::default()
                        };
                        state.queued.push_back(Queued {
                            message: Message::new_ref(publish, now),
                            qos: QoS::AtLeastOnce,
                            retain: false,
                        });
                    }
                    RecoveredSession {
                        state,
                        will: None,
                        expiry_left: None,
                        will_delay_left: Default::default(),
                    }
                })
                .collect();
            ShardStore::open(shard, &config, shared.clone(), &list, &[]).expect("write log");
        }
        ShardStore::write_manifest(&config).expect("manifest");
    }
    let mut total = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let len = entry.metadata().unwrap().len();
        total += len;
        println!("{:>14} bytes  {}", len, entry.file_name().to_string_lossy());
    }
    println!(
        "wrote {sessions} sessions x {messages} messages ({payload}-byte payloads), {total} bytes in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let rss_before = rss_mib();
    let started = Instant::now();
    let broker = Broker::start(config).expect("broker starts");
    let elapsed = started.elapsed();
    let stats = broker.persistence_stats().expect("persistence on");
    println!(
        "Broker::start: {:.2} s (reading and merging the logs {} ms; restored {} sessions, {} messages); RSS {} MiB -> {} MiB",
        elapsed.as_secs_f64(),
        stats.recovery.duration_ms,
        stats.recovery.sessions,
        stats.recovery.messages,
        rss_before,
        rss_mib()
    );
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
