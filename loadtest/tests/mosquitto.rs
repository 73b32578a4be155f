//! Small load runs against a Mosquitto started by the test: the counts must add up.

mod common;

use shardmq_loadtest::bench;
use shardmq_loadtest::scenario::Scenario;

/// The MQTT stacks the load generator can drive.
const ENGINES: &[&str] = &["raw", "client"];

fn scenario(words: &[&str]) -> Scenario {
    Scenario::parse(words).expect("valid scenario")
}

#[test]
fn p2p_qos1_sent_equals_received_with_zero_loss() {
    let broker = common::Mosquitto::start();
    let port = broker.addr.port().to_string();
    for &engine in ENGINES {
        let s = scenario(&[
            "p2p",
            "--port",
            &port,
            "--pairs",
            "4",
            "--qos",
            "1",
            "--rate",
            "200",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--threads",
            "2",
            "--engine",
            engine,
            "--quiet",
        ]);
        let report = bench::execute(&s).expect("run");
        assert_eq!(report.runs.len(), 1);
        let run = &report.runs[0];
        assert!(run.sent > 0, "{engine}: nothing sent: {run:?}");
        assert_eq!(
            run.expected, run.sent,
            "{engine}: p2p expects one delivery per message"
        );
        assert_eq!(run.unique, run.sent, "{engine}: sent != received: {run:?}");
        assert_eq!(run.received, run.sent, "{engine}: {run:?}");
        assert_eq!((run.lost, run.duplicates), (0, 0), "{engine}: {run:?}");
        assert_eq!(run.connection_errors, 0, "{engine}: {:?}", run.errors);
        assert!(run.guarantee_broken.is_none());
        assert!(run.latency_ms.count == run.received && run.latency_ms.p99 > 0.0);
        assert!(
            run.acked_total >= run.sent,
            "{engine}: every publish acknowledged"
        );
    }
}

#[test]
fn fanout_qos2_reaches_every_subscriber_exactly_once() {
    let broker = common::Mosquitto::start();
    let port = broker.addr.port().to_string();
    let s = scenario(&[
        "fanout",
        "--port",
        &port,
        "--publishers",
        "2",
        "--subscribers",
        "5",
        "--qos",
        "2",
        "--rate",
        "100",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--engine",
        "raw",
        "--quiet",
    ]);
    let report = bench::execute(&s).expect("run");
    let run = &report.runs[0];
    assert!(run.sent > 0);
    assert_eq!(run.expected, run.sent * 5);
    assert_eq!(run.unique, run.expected, "{run:?}");
    assert_eq!(
        (run.lost, run.duplicates, run.reordered),
        (0, 0, 0),
        "{run:?}"
    );
}

#[test]
fn conn_scenario_reports_connect_percentiles() {
    let broker = common::Mosquitto::start();
    let port = broker.addr.port().to_string();
    let s = scenario(&[
        "conn",
        "--port",
        &port,
        "--connections",
        "200",
        "--connect-rate",
        "1000",
        "--duration",
        "1",
        "--engine",
        "raw",
        "--quiet",
    ]);
    let report = bench::execute(&s).expect("run");
    let run = &report.runs[0];
    assert_eq!(
        (run.connections, run.connections_ready),
        (200, 200),
        "{run:?}"
    );
    assert_eq!(run.connect_ms.count, 200);
    assert!(run.connect_ms.p50 > 0.0 && run.connect_ms.p99 >= run.connect_ms.p50);
    // 200 connections at 1000 per second take about 0.2 s; at least the pacing held them back.
    assert!(
        run.setup_s >= 0.15,
        "connections were not paced: {}",
        run.setup_s
    );
}

#[test]
fn sharedsub_qos1_delivers_each_message_once_over_the_group() {
    let broker = common::Mosquitto::start();
    let port = broker.addr.port().to_string();
    let s = scenario(&[
        "sharedsub",
        "--port",
        &port,
        "--publishers",
        "3",
        "--subscribers",
        "3",
        "--qos",
        "1",
        "--rate",
        "100",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--threads",
        "1",
        "--engine",
        "raw",
        "--quiet",
    ]);
    let report = bench::execute(&s).expect("run");
    let run = &report.runs[0];
    assert!(run.sent > 0);
    assert_eq!(
        run.expected, run.sent,
        "a shared subscription delivers each message once"
    );
    assert_eq!(
        (run.unique, run.lost, run.duplicates),
        (run.sent, 0, 0),
        "{run:?}"
    );
}
