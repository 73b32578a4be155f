//! Instruction-count probe of the broker's per-message work (issue 10: no regression in CPU per
//! message), run under valgrind. The deterministic simulation drives the real shard cores in
//! one thread, so a count depends on the code only, not on timing: no batching that follows
//! the load, no system calls, the same count on every run.
//!
//! Args: scenario (`p2p` | `fanout` | `qos1`), messages per publisher. Two shards; p2p and
//! qos1: 8 publisher/subscriber pairs on topic `bench/{pair}`, half of them across shards;
//! fanout: 1 publisher on shard 0, 8 subscribers of `bench/0` spread over both shards. 64-byte
//! payloads, MQTT 3.1.1, publishers send 16 messages per round.
//!
//! Measure (instructions inside the broker's loop turns only, `Sim::turn` inclusive, so the
//! clients' encoding and decoding are not counted), for two message counts, and divide the
//! difference by the difference in messages published:
//!
//! ```sh
//! valgrind --tool=callgrind --toggle-collect='*Sim*turn*' --callgrind-out-file=/dev/null \
//!     target/release/examples/core_cost p2p 2000
//! ```
use bytes::{Bytes, BytesMut};
use shardmq::broker::Config;
use shardmq::client::ConnectOptions;
use shardmq::codec::{
    MqttString, Packet, Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions,
};
use shardmq::sim::{Sim, SimClient};

const BATCH: u32 = 16;

/// (shard, topic or filter) per client.
type Placement = Vec<(usize, String)>;

fn quiesce(sim: &mut Sim, clients: &mut [SimClient]) {
    for _ in 0..100_000 {
        sim.step();
        for client in clients.iter_mut() {
            client.pump(sim);
        }
        if sim.is_idle() {
            return;
        }
    }
    panic!("the simulation did not settle");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args.get(1).cloned().unwrap_or_else(|| "p2p".into());
    let messages: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let qos = if scenario == "qos1" {
        QoS::AtLeastOnce
    } else {
        QoS::AtMostOnce
    };
    let config = Config {
        shards: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config, 1).expect("valid config");
    let options = |id: String| {
        ConnectOptions::new(id.as_str())
            .protocol(ProtocolVersion::V3_1_1)
            .keep_alive_secs(0)
            .inflight_window(64)
    };
    // (publisher shard, topic) and (subscriber shard, filter).
    let (publishers, subscribers): (Placement, Placement) = if scenario == "fanout" {
        let subs = (0..8).map(|i| (i % 2, "bench/0".to_string())).collect();
        (vec![(0, "bench/0".to_string())], subs)
    } else {
        let pubs = (0..8).map(|i| (i % 2, format!("bench/{i}"))).collect();
        let subs = (0..8)
            .map(|i| ((i / 2) % 2, format!("bench/{i}")))
            .collect();
        (pubs, subs)
    };
    let mut clients: Vec<SimClient> = Vec::new();
    for (i, (shard, filter)) in subscribers.iter().enumerate() {
        let mut client =
            SimClient::connect(&mut sim, *shard, options(format!("sub{i}"))).expect("connects");
        let sub = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        client
            .session
            .subscribe(&[(MqttString::from(filter.as_str()), sub)]);
        client.flush(&mut sim);
        clients.push(client);
    }
    let mut publisher_conns = Vec::new();
    for (i, (shard, _)) in publishers.iter().enumerate() {
        let client =
            SimClient::connect(&mut sim, *shard, options(format!("pub{i}"))).expect("connects");
        publisher_conns.push(client.conn);
        clients.push(client);
    }
    quiesce(&mut sim, &mut clients);
    // Publishers send pre-encoded PUBLISH frames from here on (their client sessions are
    // left out: the broker's answers to them are taken and dropped).
    let publisher_clients = clients.split_off(subscribers.len());
    drop(publisher_clients);
    let mut frames: Vec<Vec<BytesMut>> = Vec::new();
    for (_, topic) in &publishers {
        let mut per_id = Vec::new();
        for packet_id in 1..=BATCH as u16 {
            let publish = Publish {
                dup: false,
                qos,
                retain: false,
                topic: MqttString::from(topic.as_str()),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
                properties: Properties::default(),
                payload: Bytes::from(vec![7u8; 64]),
            };
            let mut wire = BytesMut::new();
            Packet::Publish(publish)
                .encode(ProtocolVersion::V3_1_1, &mut wire)
                .expect("encodes");
            per_id.push(wire);
        }
        frames.push(per_id);
    }
    let mut sent = 0u64;
    let mut rounds = 0;
    let mut delivered = 0usize;
    while sent < u64::from(messages) * publishers.len() as u64 {
        for (p, &conn) in publisher_conns.iter().enumerate() {
            for frame in &frames[p] {
                sim.send(conn, frame);
            }
            sent += u64::from(BATCH);
        }
        quiesce(&mut sim, &mut clients);
        for &conn in &publisher_conns {
            drop(sim.take_output(conn));
        }
        for client in clients.iter_mut() {
            delivered += client.received.len();
            client.received.clear();
            client.events.clear();
        }
        rounds += 1;
    }
    println!("{scenario}: {sent} messages published in {rounds} rounds, {delivered} delivered");
}
