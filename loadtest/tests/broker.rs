//! Small load runs against shardmq's broker started inside the test: the counts must add up.

use shardmq::broker::{Broker, BrokerHandle, Config};
use shardmq_loadtest::bench;
use shardmq_loadtest::scenario::Scenario;

fn broker(shards: usize) -> BrokerHandle {
    let config = Config {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        shards,
        ..Config::default()
    };
    Broker::start(config).expect("start the broker")
}

fn run(handle: &BrokerHandle, words: &[&str]) -> shardmq_loadtest::report::Report {
    let port = handle.local_addrs()[0].port().to_string();
    let mut all: Vec<&str> = words.to_vec();
    all.extend(["--port", &port, "--quiet"]);
    bench::execute(&Scenario::parse(&all).expect("valid scenario")).expect("run")
}

#[test]
fn p2p_qos1_sent_equals_received_with_zero_loss() {
    let handle = broker(2);
    for engine in ["client", "raw"] {
        for mqtt in ["3.1.1", "5"] {
            let report = run(
                &handle,
                &[
                    "p2p",
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
                    "--mqtt",
                    mqtt,
                ],
            );
            let r = &report.runs[0];
            let what = format!("{engine} MQTT {mqtt}");
            assert!(r.sent > 0, "{what}: nothing sent");
            assert_eq!(r.expected, r.sent, "{what}");
            assert_eq!((r.unique, r.received), (r.sent, r.sent), "{what}: {r:?}");
            assert_eq!((r.lost, r.duplicates), (0, 0), "{what}: {r:?}");
            assert_eq!(r.connection_errors, 0, "{what}: {:?}", r.errors);
            assert!(r.guarantee_broken.is_none(), "{what}");
            assert!(
                r.acked_total >= r.sent,
                "{what}: publishes not acknowledged"
            );
        }
    }
}

#[test]
fn fanout_qos2_across_shards_reaches_every_subscriber_once() {
    let handle = broker(2);
    let report = run(
        &handle,
        &[
            "fanout",
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
        ],
    );
    let r = &report.runs[0];
    assert!(r.sent > 0);
    assert_eq!(r.expected, r.sent * 5);
    assert_eq!(
        (r.unique, r.lost, r.duplicates, r.reordered),
        (r.expected, 0, 0, 0),
        "{r:?}"
    );
}

#[test]
fn fanin_qos1_wildcard_counts_add_up() {
    let handle = broker(2);
    let report = run(
        &handle,
        &[
            "fanin",
            "--publishers",
            "8",
            "--subscribers",
            "2",
            "--qos",
            "1",
            "--rate",
            "100",
            "--duration",
            "2",
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
        "{r:?}"
    );
}

#[test]
fn json_of_a_broker_run_parses_with_the_expected_fields() {
    let handle = broker(1);
    let report = run(
        &handle,
        &[
            "p2p",
            "--pairs",
            "2",
            "--qos",
            "1",
            "--rate",
            "100",
            "--duration",
            "1",
            "--warmup",
            "0.3",
        ],
    );
    let text = serde_json::to_string(&report).expect("serialize");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("parses");
    assert_eq!(doc["scenario"], "p2p");
    let run = &doc["runs"][0];
    assert_eq!(run["sent"], run["unique"]);
    assert_eq!(run["lost"], 0);
    assert!(run["latency_ms"]["p99"].as_f64().is_some());
    assert!(
        doc["summary"][0]["median_received_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
}

/// Under an unpaced QoS 1 load the broker pauses publishers whose subscribers' queues fill
/// (QoS 1/2 backpressure) instead of dropping for them. Whatever it does, the loss the load
/// generator reports must be the broker's own drop count (the generator itself loses nothing),
/// and it says loudly when the guarantee was broken. With backpressure both are zero.
#[test]
fn unpaced_qos1_loss_matches_the_brokers_drop_counters() {
    let handle = broker(2);
    let report = run(
        &handle,
        &[
            "p2p",
            "--pairs",
            "4",
            "--qos",
            "1",
            "--inflight",
            "256",
            "--duration",
            "1.5",
            "--warmup",
            "0.3",
        ],
    );
    let r = &report.runs[0];
    let stats = handle.stats();
    assert!(r.sent > 0);
    assert_eq!(r.duplicates, 0, "{r:?}");
    let dropped = stats.dropped_queue_full + stats.dropped_outgoing_buffer_full;
    assert!(
        r.lost <= dropped,
        "generator lost {} but the broker dropped {dropped}: {r:?}",
        r.lost
    );
    assert_eq!(r.guarantee_broken.is_some(), r.lost > 0, "{r:?}");
    assert_eq!(dropped, 0, "no subscriber stalls here: {stats:?}");
    assert_eq!(r.lost, 0, "{r:?}");
}

/// The run that found the problem: `p2p --qos 1 --rate 0` (unpaced) against a 2-shard broker.
/// The publishers outrun their subscribers' in-flight windows, are paused instead of having
/// their messages dropped, and every message arrives.
#[test]
fn unpaced_qos1_p2p_loses_nothing_with_backpressure() {
    let handle = broker(2);
    let report = run(
        &handle,
        &[
            "p2p",
            "--pairs",
            "4",
            "--qos",
            "1",
            "--rate",
            "0",
            "--duration",
            "3",
            "--warmup",
            "0.5",
            "--threads",
            "2",
        ],
    );
    let r = &report.runs[0];
    let stats = handle.stats();
    assert!(r.sent > 0);
    assert_eq!((r.lost, r.duplicates), (0, 0), "{r:?}");
    assert_eq!(r.unique, r.expected, "{r:?}");
    assert!(r.guarantee_broken.is_none(), "{r:?}");
    assert_eq!(stats.dropped_queue_full, 0, "{stats:?}");
    assert_eq!(r.connection_errors, 0, "{:?}", r.errors);
}

#[test]
fn conn_scenario_against_the_broker() {
    let handle = broker(2);
    let report = run(
        &handle,
        &[
            "conn",
            "--connections",
            "300",
            "--connect-rate",
            "2000",
            "--duration",
            "0.5",
        ],
    );
    let r = &report.runs[0];
    assert_eq!(
        (r.connections_ready, r.connection_errors),
        (300, 0),
        "{:?}",
        r.errors
    );
    assert_eq!(r.connect_ms.count, 300);
}

/// `--tls-ca`: the same counts over TLS, against a TLS listener with a certificate made here.
#[test]
fn p2p_qos1_over_tls_sent_equals_received() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    use shardmq::transport::{ListenerConfig, TransportKind};
    let dir = std::env::temp_dir().join(format!("shardmq-loadtest-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "loadtest CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let mut listener =
        ListenerConfig::new("127.0.0.1:0".parse().expect("addr"), TransportKind::MqttTls);
    listener.cert_file = Some(write("server.pem", server.pem()));
    listener.key_file = Some(write("server.key", server_key.serialize_pem()));
    let config = Config {
        listen: Vec::new(),
        listeners: vec![listener],
        shards: 2,
        ..Config::default()
    };
    let handle = Broker::start(config).expect("start the broker");
    let ca_arg = ca_file.to_str().expect("utf-8 path");
    let report = run(
        &handle,
        &[
            "p2p",
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
            "raw",
            "--tls-ca",
            ca_arg,
        ],
    );
    let r = &report.runs[0];
    assert_eq!(r.connections_ready, 8, "{:?}", r.errors);
    assert!(r.sent > 0, "nothing sent over TLS");
    assert_eq!((r.unique, r.received), (r.sent, r.sent), "{r:?}");
    assert_eq!((r.lost, r.duplicates), (0, 0), "{r:?}");
    assert!(r.acked_total >= r.sent, "publishes not acknowledged");
    let _ = std::fs::remove_dir_all(&dir);
}
