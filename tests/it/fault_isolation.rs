//! Fault isolation (`shardmq::broker::fault`), shown on the real `shardmq` binary with the
//! debug-build fault injection `SHARDMQ_FAULT_INJECT`: a panic while decoding one client's
//! packet closes only that connection (counted, logged with the input, everyone else served);
//! a panic anywhere else in a shard, or in the acceptor, ends the process with status 70 and
//! a `shardmq: fatal:` line, instead of a broker that runs without a shard or an acceptor.

use crate::support::broker::*;
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The binary under test and everything it wrote to stderr so far.
struct Broker {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Broker {
    /// Starts `shardmq` on 127.0.0.1 port 0, one shard, with `SHARDMQ_FAULT_INJECT=inject`.
    fn start(inject: &str) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "1",
                "--log-level",
                "debug",
            ])
            .env("SHARDMQ_FAULT_INJECT", inject)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shardmq");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on [").nth(1) {
                    if let Some(addr) = rest.split(']').next().and_then(|a| a.parse().ok()) {
                        let _ = tx.send(addr);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx.recv_timeout(WAIT).expect("shardmq reports its address");
        Broker {
            child,
            addr,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until stderr has a line containing `text`.
    fn wait_for_line(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no line with {text:?} in:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "shardmq still runs:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the final counters it logs (debug level).
    fn stop_and_counters(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        assert_eq!(self.wait_exit().code(), Some(0));
        self.wait_for_line("final counters");
        self.stderr()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_panic_while_decoding_closes_only_that_connection() {
    let broker = Broker::start("decode:INJECT-A-DECODE-PANIC");
    let mut bystander = Raw::connect(broker.addr, V5, "bystander");
    bystander.subscribe("news", QoS::AtLeastOnce);
    let mut victim = Raw::connect(broker.addr, V5, "victim");
    victim.send(&publish_packet(
        "news",
        b"INJECT-A-DECODE-PANIC",
        QoS::AtMostOnce,
        false,
        0,
    ));
    // Only the victim is closed, with 0x83 Implementation specific error.
    let last = victim.expect_closed();
    assert!(
        matches!(last.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ImplementationSpecificError),
        "{last:?}"
    );
    broker.wait_for_line("panic while decoding a packet from");
    let log = broker.stderr();
    assert!(
        log.contains("injected fault: decoding a frame that contains the marker"),
        "{log}"
    );
    // The offending input, in hex: the PUBLISH's fixed header, topic, empty property list and
    // the marker's first bytes.
    assert!(
        log.contains("input 30 bytes: 30 1c 00 04 6e 65 77 73 00 49 4e 4a"),
        "{log}"
    );
    // Everyone else is served by the same (only) shard, and new clients are accepted.
    let mut publisher = Raw::connect(broker.addr, V5, "publisher");
    publisher.publish_acked("news", b"still here", QoS::AtLeastOnce, false, 1);
    let got = bystander.receive_and_ack();
    assert_eq!(&got.payload[..], b"still here");
    bystander.ping();
    let counters = broker.stop_and_counters();
    assert!(counters.contains("connection_panics: 1,"), "{counters}");
}

#[test]
fn a_panic_while_handling_a_packet_ends_the_process_with_status_70() {
    let mut broker = Broker::start("handle:doomed");
    let mut bystander = Raw::connect(broker.addr, V5, "bystander");
    bystander.ping();
    let mut doomed = Raw::tcp(broker.addr);
    doomed.send(&Packet::Connect(Box::new(connect_packet(
        V5, "doomed", true,
    ))));
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(70), "{}", broker.stderr());
    broker.wait_for_line("shardmq: fatal:");
    let log = broker.stderr();
    assert!(
        log.contains(
            "shardmq: fatal: broker thread shard-0 failed: panicked: injected fault: handling \
             the CONNECT of doomed"
        ),
        "{log}"
    );
    // Nothing is left listening.
    assert!(TcpStream::connect(broker.addr).is_err());
}

#[test]
fn a_panic_in_the_acceptor_ends_the_process_with_status_70() {
    let mut broker = Broker::start("accept:2");
    let mut first = Raw::connect(broker.addr, V5, "first");
    first.ping();
    // The second connection makes the acceptor panic: the broker must not go on without it.
    let _second = TcpStream::connect(broker.addr).expect("the kernel accepts it");
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(70), "{}", broker.stderr());
    broker.wait_for_line("shardmq: fatal:");
    let log = broker.stderr();
    let fatal = log
        .lines()
        .find(|line| line.starts_with("shardmq: fatal:"))
        .unwrap_or_default();
    assert!(
        fatal.contains("broker thread acceptor-127.0.0.1:")
            && fatal.contains("panicked: injected fault: accepting connection 2"),
        "{log}"
    );
}
