//! The raw relay: everything sent through it at a low rate arrives, at every QoS.

mod common;

use shardmq_loadtest::bench;
use shardmq_loadtest::relay::Relay;
use shardmq_loadtest::scenario::Scenario;

fn run(relay: &Relay, words: &[&str]) -> shardmq_loadtest::report::Report {
    let port = relay.local_addr().port().to_string();
    let mut all: Vec<&str> = words.to_vec();
    all.extend(["--port", &port, "--quiet", "--engine", "raw"]);
    bench::execute(&Scenario::parse(&all).expect("valid scenario")).expect("run")
}

#[test]
fn relay_p2p_qos0_delivers_everything_at_low_rate() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    let report = run(
        &relay,
        &[
            "p2p",
            "--pairs",
            "8",
            "--rate",
            "200",
            "--duration",
            "2",
            "--warmup",
            "0.5",
        ],
    );
    let r = &report.runs[0];
    assert!(r.sent > 0);
    assert_eq!((r.unique, r.lost, r.duplicates), (r.sent, 0, 0), "{r:?}");
    let stats = relay.stats();
    assert_eq!(stats.dropped, 0);
    assert!(
        stats.forwarded >= r.sent && stats.publishes_in >= r.sent,
        "{stats:?}"
    );
}

#[test]
fn relay_completes_qos1_and_qos2_flows_v5() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    for qos in ["1", "2"] {
        let report = run(
            &relay,
            &[
                "fanin",
                "--publishers",
                "6",
                "--subscribers",
                "2",
                "--qos",
                qos,
                "--mqtt",
                "5",
                "--rate",
                "100",
                "--duration",
                "1.5",
                "--warmup",
                "0.5",
            ],
        );
        let r = &report.runs[0];
        assert!(r.sent > 0);
        assert_eq!(r.expected, r.sent * 2);
        assert_eq!(
            (r.unique, r.lost, r.duplicates),
            (r.expected, 0, 0),
            "qos {qos}: {r:?}"
        );
        assert!(
            r.acked_total >= r.sent,
            "qos {qos}: publishes not completed: {r:?}"
        );
    }
}

#[test]
fn relay_refuses_non_loopback_addresses() {
    let err = Relay::start("0.0.0.0:0", 1).err().expect("refused");
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn capacity_search_against_the_relay_finds_a_rate() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    let report = run(
        &relay,
        &[
            "p2p",
            "--pairs",
            "2",
            "--find-max",
            "--start-rate",
            "500",
            "--step-factor",
            "2",
            "--max-steps",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--p99-bound-ms",
            "2000",
        ],
    );
    assert_eq!(report.searches.len(), 1);
    let search = &report.searches[0];
    assert_eq!(search.steps.len(), 2);
    assert!((search.steps[1].offered_rate - 1000.0).abs() < 1e-6);
    assert!(search.steps[0].passed, "{:?}", search.steps[0].reason);
    assert!(search.max_offered_rate >= 500.0 && search.max_received_per_s > 0.0);
    // Bounded only if some step failed; otherwise the maximum is a lower bound.
    assert_eq!(search.bounded, search.steps.iter().any(|s| !s.passed));
}

#[test]
fn targets_alternate_and_report_medians_and_ratios() {
    let a = Relay::start("127.0.0.1:0", 1).expect("relay a");
    let b = common::Mosquitto::start();
    let ta = format!("relay={}", a.local_addr());
    let tb = format!("mosquitto={}", b.addr);
    let s = Scenario::parse(&[
        "p2p",
        "--pairs",
        "2",
        "--rate",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.2",
        "--repeat",
        "2",
        "--target",
        &ta,
        "--target",
        &tb,
        "--quiet",
        "--engine",
        "raw",
    ])
    .expect("valid");
    let report = bench::execute(&s).expect("run");
    let order: Vec<&str> = report.runs.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(order, ["relay", "mosquitto", "relay", "mosquitto"]);
    assert_eq!(report.summary.len(), 2);
    assert!(report
        .summary
        .iter()
        .all(|s| s.runs == 2 && s.median_received_per_s > 0.0));
    assert!(report
        .ratios
        .iter()
        .any(|r| r.metric == "received_per_s" && r.numerator == "mosquitto" && r.ratio > 0.0));
}

#[test]
fn relay_pushes_back_instead_of_dropping_under_an_unpaced_fanin() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    let report = run(
        &relay,
        &[
            "fanin",
            "--publishers",
            "8",
            "--subscribers",
            "1",
            "--qos",
            "1",
            "--inflight",
            "256",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ],
    );
    let r = &report.runs[0];
    assert!(r.sent > 0);
    assert_eq!((r.unique, r.lost), (r.expected, 0), "{r:?}");
    assert_eq!(relay.stats().dropped, 0);
}

#[test]
fn relay_shared_subscription_delivers_each_message_to_one_member() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    let report = run(
        &relay,
        &[
            "sharedsub",
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
            "0.3",
            "--threads",
            "1",
        ],
    );
    let r = &report.runs[0];
    assert!(r.sent > 0);
    assert_eq!(r.expected, r.sent);
    assert_eq!((r.unique, r.lost, r.duplicates), (r.sent, 0, 0), "{r:?}");
    assert_eq!(relay.stats().forwarded, relay.stats().publishes_in);
}

#[test]
fn two_thousand_connections_from_one_process() {
    let relay = Relay::start("127.0.0.1:0", 2).expect("relay");
    let report = run(
        &relay,
        &[
            "p2p",
            "--pairs",
            "1000",
            "--rate",
            "2",
            "--qos",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ],
    );
    let r = &report.runs[0];
    assert_eq!(
        (r.connections, r.connections_ready),
        (2000, 2000),
        "{:?}",
        r.errors
    );
    assert!(r.sent >= 1000, "{r:?}");
    assert_eq!((r.unique, r.lost), (r.sent, 0), "{r:?}");
}
