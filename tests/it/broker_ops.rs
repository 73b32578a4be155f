//! Operations: graceful shutdown through the handle and through SIGTERM/SIGINT on the real
//! binary, command-line errors and exit codes.

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn shardmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardmq"))
}

/// Waits for the child to exit within `timeout`; kills it and panics otherwise.
fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("shardmq did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts the binary on a free port with `args`; returns the child and its address (read from
/// the "listening on" log line).
fn spawn_broker(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = shardmq()
        .args(["--listen", "127.0.0.1:0", "--log-level", "info"])
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn shardmq");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on [").nth(1) {
                let addr: SocketAddr = rest.split(']').next().unwrap().parse().unwrap();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx.recv_timeout(WAIT).expect("broker reports its address");
    (child, addr)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn shutdown_sends_0x8b_to_v5_clients_and_closes_everyone() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut v5 = placer.raw_on(0, V5, "v5");
    let mut v4 = placer.raw_on(1, V4, "v4");
    v5.subscribe("x", QoS::AtMostOnce);
    broker.shutdown();
    match v5.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown),
        other => panic!("{other:?}"),
    }
    assert!(v4.expect_closed().is_empty());
    let started = Instant::now();
    broker.join();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn sigterm_and_sigint_exit_zero_quickly_after_telling_clients() {
    for name in ["TERM", "INT"] {
        let (mut child, addr) = spawn_broker(&["--shards", "2"]);
        let mut client = Raw::connect(addr, V5, "signalled");
        client.ping();
        let sent = Instant::now();
        signal(&child, name);
        match client.expect_closed().as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason_code, ReasonCode::ServerShuttingDown),
            other => panic!("{other:?}"),
        }
        let status = wait_exit(&mut child, Duration::from_secs(5));
        assert!(status.success(), "SIG{name}: {status:?}");
        assert!(sent.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn port_in_use_is_a_one_line_error_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = shardmq().args(["--port", &port]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&port), "{stderr}");
}

#[test]
fn bad_flags_are_one_line_errors_with_exit_1() {
    for args in [
        &["--bogus"][..],
        &["--shards", "zero"],
        &["--shards", "0"],
        &["--max-packet-size", "1"],
    ] {
        let output = shardmq().args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn help_explains_every_flag_and_version_prints() {
    let output = shardmq().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--listen",
        "--port",
        "--shards",
        "--pin-cores",
        "--max-connections",
        "--max-packet-size",
        "--max-inflight",
        "--max-queued-messages",
        "--queue-qos0",
        "--max-subscriptions-per-client",
        "--max-topic-levels",
        "--max-outgoing-bytes",
        "--handshake-timeout",
        "--max-keep-alive",
        "--max-retained-messages",
        "--log-level",
        "--config",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    assert!(help.contains("default"));
    let output = shardmq().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn config_file_is_loaded_and_flags_override_it() {
    let dir = std::env::temp_dir().join(format!("shardmq-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("shardmq.toml");
    std::fs::write(&file, "shards = 1\nmax_connections = 1\n").unwrap();
    let (mut child, addr) =
        spawn_broker(&["--config", file.to_str().unwrap(), "--max-connections", "2"]);
    let a = Raw::connect(addr, V4, "one");
    let b = Raw::connect(addr, V4, "two");
    let mut third = Raw::tcp(addr);
    assert!(
        third.expect_closed().is_empty(),
        "the flag's limit of 2 applies"
    );
    drop((a, b));
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    std::fs::write(&file, "no_such_setting = 1\n").unwrap();
    let output = shardmq()
        .args(["--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn several_listen_addresses_share_round_robin_placement() {
    let mut config = config(2);
    config
        .listen
        .push(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let broker = start_with(config);
    let addrs = broker.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2);
    assert_ne!(addrs[0].port(), addrs[1].port());
    let mut sub = Raw::connect(addrs[0], V4, "on-first");
    sub.subscribe("multi", QoS::AtMostOnce);
    let mut publisher = Raw::connect(addrs[1], V5, "on-second");
    publisher.publish_acked("multi", b"across listeners", QoS::AtLeastOnce, false, 1);
    assert_eq!(&sub.expect_publish().payload[..], b"across listeners");
    wait_until("one connection per shard", || {
        broker.stats().connections_per_shard == vec![1, 1]
    });
}
