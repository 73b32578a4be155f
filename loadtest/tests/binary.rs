//! The binary end to end: a run with --json, and the refusals.

mod common;

use shardmq_loadtest::relay::Relay;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_shardmq-loadtest");

#[test]
fn p2p_run_writes_json_that_parses() {
    let relay = Relay::start("127.0.0.1:0", 1).expect("relay");
    let dir = std::env::temp_dir().join(format!("shardmq-loadtest-json-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("p2p.json");
    let output = Command::new(BIN)
        .args([
            "p2p",
            "--pairs",
            "3",
            "--qos",
            "1",
            "--rate",
            "100",
            "--duration",
            "1",
        ])
        .args(["--warmup", "0.3", "--engine", "raw", "--port"])
        .arg(relay.local_addr().port().to_string())
        .arg("--json")
        .arg(&json)
        // The relay runs in this test process: its CPU time is this process's.
        .arg("--pid")
        .arg(format!("broker={}", std::process::id()))
        .output()
        .expect("run the binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("latency ms"), "no summary table: {stdout}");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json parses");
    assert_eq!(doc["scenario"], "p2p");
    assert_eq!(doc["qos"], 1);
    let run = &doc["runs"][0];
    let sent = run["sent"].as_u64().expect("sent");
    assert!(sent > 0);
    assert_eq!(run["unique"].as_u64(), Some(sent));
    assert_eq!(run["lost"].as_u64(), Some(0));
    for field in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            run["latency_ms"][field].as_f64().is_some(),
            "latency_ms.{field}"
        );
    }
    assert!(run["guarantee_broken"].is_null());
    let cpu = run["broker_cpu_s"].as_f64().expect("broker_cpu_s measured");
    assert!(cpu >= 0.0, "{cpu}");
    assert!(run["broker_cores"].as_f64().is_some());
    assert!(
        run["broker_rss_max_bytes"]
            .as_u64()
            .expect("broker RSS sampled")
            > 0
    );
    assert_eq!(doc["summary"][0]["target"], "broker");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn non_loopback_hosts_are_refused() {
    let output = Command::new(BIN)
        .args(["p2p", "--host", "192.0.2.1", "--duration", "1"])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    let output = Command::new(BIN)
        .args(["relay", "--listen", "0.0.0.0:0"])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn a_refused_connection_fails_the_run_quickly_with_the_reason() {
    let port = common::free_port().to_string();
    let began = std::time::Instant::now();
    let output = Command::new(BIN)
        .args(["p2p", "--pairs", "2", "--duration", "1", "--port", &port])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("failed during setup") && stderr.contains("refused"),
        "{stderr}"
    );
    assert!(
        began.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        began.elapsed()
    );
}

/// `--handshakes N` caps MQTT handshakes in progress over all threads: against a listener that
/// accepts but never answers CONNECT, the generator holds exactly N connections open.
#[test]
fn handshakes_cap_connections_waiting_for_connack() {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port().to_string();
    listener.set_nonblocking(true).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    // Accepts and holds every connection, reads CONNECT and never answers.
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        while !stop.load(Ordering::Acquire) {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
                    let _ = stream.read(&mut [0u8; 64]);
                    counter.fetch_add(1, Ordering::AcqRel);
                    held.push(stream);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    });
    let began = Instant::now();
    let output = Command::new(BIN)
        .args([
            "conn",
            "--connections",
            "50",
            "--threads",
            "2",
            "--handshakes",
            "3",
            "--setup-timeout",
            "2",
            "--duration",
            "1",
            "--port",
            &port,
        ])
        .output()
        .expect("run the binary");
    done.store(true, Ordering::Release);
    let held = server.join().expect("server thread");
    assert_ne!(output.status.code(), Some(0), "no CONNACK: the run fails");
    assert_eq!(
        accepted.load(Ordering::Acquire),
        3,
        "at most 3 handshakes in flight, none completes (held {held})"
    );
    assert!(began.elapsed() < Duration::from_secs(30));
}
