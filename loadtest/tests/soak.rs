//! The soak scenario against shardmq's broker started in the test: the well-behaved pairs get
//! every message while the hostile clients run.

use clap::Parser;
use shardmq::broker::{Broker, Config};
use shardmq_loadtest::cli::{Cli, Command};

#[test]
fn soak_well_behaved_clients_receive_everything_next_to_hostile_ones() {
    let handle = Broker::start(Config {
        listen: vec!["127.0.0.1:0".parse().expect("addr")],
        shards: 2,
        ..Config::default()
    })
    .expect("start the broker");
    let port = handle.local_addrs()[0].port().to_string();
    let pid = format!("broker={}", std::process::id());
    let cli = Cli::try_parse_from([
        "shardmq-loadtest",
        "soak",
        "--port",
        &port,
        "--duration",
        "5",
        "--interval",
        "2.5",
        "--pairs",
        "2",
        "--rate",
        "100",
        "--hostile-rate",
        "300",
        "--offline-sessions",
        "5",
        "--threads",
        "1",
        "--pid",
        &pid,
        "--quiet",
    ])
    .expect("parse");
    let Command::Soak(args) = cli.command else {
        panic!("not the soak command");
    };
    let report = shardmq_loadtest::soak::run(&args).expect("soak");
    assert!(!report.intervals.is_empty(), "{report:?}");
    for i in &report.intervals {
        for d in [&i.qos0, &i.qos1] {
            assert!(d.sent > 0, "{report:?}");
            assert_eq!((d.received, d.lost), (d.sent, 0), "{report:?}");
            assert_eq!(d.connection_errors, 0, "{report:?}");
        }
        assert!(i.rss_bytes.unwrap_or(0) > 0, "{report:?}");
    }
    assert!(report.well_behaved_complete());
    let h = &report.hostile;
    assert!(h.pingreq_bytes_written > 0, "{h:?}");
    assert!(h.hostile_published > 100, "{h:?}");
    assert!(h.errors.is_empty(), "{h:?}");
}
