//! Throttling holds its rate: blocking publishes under `max_rate_per_sec` never exceed
//! burst + rate x elapsed, and the subscriber receives every one of them.

use crate::support::client::{options, TestClient};
use crate::support::mosquitto::Mosquitto;
use shardmq::client::{ClientOptions, Event};
use shardmq::codec::{ProtocolVersion, QoS};
use std::time::{Duration, Instant};

const RATE_PER_SEC: f64 = 200.0;
const BURST: u32 = 5;
const RUN: Duration = Duration::from_millis(1500);

#[test]
fn throttling_holds_its_rate_with_mosquitto() {
    let broker = Mosquitto::start();
    throttled_run(broker.port);
}

#[test]
fn throttling_holds_its_rate_with_our_broker() {
    let broker = shardmq::broker::Broker::start(shardmq::broker::Config {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        shards: 2,
        ..shardmq::broker::Config::default()
    })
    .expect("start broker");
    throttled_run(broker.local_addrs()[0].port());
}

fn throttled_run(port: u16) {
    let subscriber = TestClient::connect(options("th-sub", ProtocolVersion::V3_1_1), port);
    subscriber
        .client
        .subscribe("th/t", QoS::AtMostOnce)
        .expect("subscribe");
    subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));

    let mut publisher_options = ClientOptions::from(options("th-pub", ProtocolVersion::V3_1_1))
        .max_rate_per_sec(RATE_PER_SEC);
    publisher_options.rate_burst = BURST;
    let publisher = TestClient::connect(publisher_options, port);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < RUN {
        publisher
            .client
            .publish("th/t", QoS::AtMostOnce, false, sent.to_string())
            .expect("publish");
        sent += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("throttle: {sent} publishes in {elapsed:.3} s at {RATE_PER_SEC}/s, burst {BURST}");
    let allowed = f64::from(BURST) + RATE_PER_SEC * elapsed;
    assert!(
        (sent as f64) <= allowed + 1.0,
        "{sent} publishes in {elapsed:.3} s exceed the rate ({allowed:.0} allowed)"
    );
    // Progress, with a wide margin for a loaded machine: a fifth of the rate.
    assert!(
        (sent as f64) >= RATE_PER_SEC * 1.5 / 5.0,
        "only {sent} publishes in {elapsed:.3} s"
    );
    let mut received = 0u64;
    while received < sent {
        subscriber.wait_for("throttled message", |e| matches!(e, Event::Publish(_)));
        received += 1;
    }
}
