//! Operations (issue 15) on the real binary: a Mosquitto configuration file run by shardmq and
//! by Debian's `mosquitto` with the same scripted session, `--test-config`, reload on SIGHUP
//! with a good and a bad file, `$SYS` values and Prometheus `/metrics` (parsed by Python's
//! `prometheus_client`) against known traffic, and the metrics server's limits.

use crate::support::broker::*;
use crate::support::mosquitto::free_port;
use crate::support::transport::{echo, tls, Mqtt, Pki};
use shardmq::codec::{Packet, ProtocolVersion, QoS};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker process whose stderr lines arrive on a channel; killed when dropped.
pub(crate) struct Process {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Process {
    pub(crate) fn spawn(mut command: Command) -> Process {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let (tx, rx) = std::sync::mpsc::channel();
        for pipe in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Process {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The first line (seen before or arriving) containing `text`; panics after `WAIT`.
    pub(crate) fn find_line(&mut self, text: &str) -> String {
        match self.seen.iter().find(|l| l.contains(text)) {
            Some(line) => line.clone(),
            None => self.wait_line(text),
        }
    }

    /// The first line (from now on) containing `text`; panics after `WAIT`.
    pub(crate) fn wait_line(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    panic!("no line with {text:?}; lines: {:#?}", self.seen)
                }
            }
        }
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn shardmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardmq"))
}

/// An address from a "... listening on [ADDR]" or "... listening on ADDR ..." log line.
pub(crate) fn address_in(line: &str) -> SocketAddr {
    let rest = line.split("listening on ").nth(1).unwrap();
    let text = rest.trim_start_matches('[');
    let end = text.find([']', ' ', ',']).unwrap_or(text.len());
    text[..end].parse().unwrap()
}

pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmq-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Mosquitto started as root drops to user `mosquitto` before writing its pid file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    dir
}

/// A Mosquitto configuration as an operator writes it; `PORT` and `DIR` are filled in.
const MOSQUITTO_CONF: &str = "\
# A Mosquitto 2 configuration file, used as it is by both brokers.
per_listener_settings false
listener PORT 127.0.0.1
socket_domain ipv4
protocol mqtt
max_connections 100
allow_anonymous true
password_file DIR/passwords
acl_file DIR/acl
max_inflight_messages 20
max_queued_messages 100
max_packet_size 65536
max_keepalive 600
max_qos 1
retain_available true
persistence false
sys_interval 1
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
pid_file DIR/broker.pid

# MQTT over TLS, client certificates required.
listener TLSPORT 127.0.0.1
cafile PKI/ca.pem
certfile PKI/server.pem
keyfile PKI/server.key
require_certificate true
tls_version tlsv1.2
";

/// Anonymous clients may use every topic; alice (password `secret`) only `alice/#`.
const ACL: &str = "\
# anonymous clients
topic readwrite #
topic read $SYS/#

user alice
topic readwrite alice/#
";

/// A password file written by Debian's `mosquitto_passwd` (`$7$` hashes).
fn write_passwords(dir: &Path) {
    let path = dir.join("passwords");
    let status = Command::new("mosquitto_passwd")
        .args(["-b", "-c"])
        .arg(&path)
        .args(["alice", "secret"])
        .status()
        .expect("mosquitto_passwd (Debian's mosquitto package; .ci/test installs it)");
    assert!(status.success());
}

fn write_conf(dir: &Path, port: u16, tls_port: u16, pki: &Path) -> PathBuf {
    write_passwords(dir);
    std::fs::write(dir.join("acl"), ACL).unwrap();
    #[cfg(unix)]
    for name in ["passwords", "acl"] {
        use std::os::unix::fs::PermissionsExt;
        // Mosquitto started as root reads them as user `mosquitto`.
        let mode = std::fs::Permissions::from_mode(0o644);
        std::fs::set_permissions(dir.join(name), mode).unwrap();
    }
    let path = dir.join("mosquitto.conf");
    let text = MOSQUITTO_CONF
        .replace("TLSPORT", &tls_port.to_string())
        .replace("PORT", &port.to_string())
        .replace("DIR", dir.to_str().unwrap())
        .replace("PKI", pki.to_str().unwrap());
    std::fs::write(&path, text).unwrap();
    path
}

fn wait_accepting(addr: SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything a subscriber to `filter` receives within `window` (after SUBACK).
fn collect(raw: &mut Raw, window: Duration) -> Vec<shardmq::codec::Publish> {
    let deadline = Instant::now() + window;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return out;
        }
        match raw.recv(left) {
            Ok(Packet::Publish(p)) => out.push(p),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => return out,
        }
    }
}

/// The TLS part of the session: a client with a certificate signed by the CA talks MQTT, one
/// without a certificate is refused.
fn tls_session(tls_addr: SocketAddr, pki: &Pki, t: &mut Vec<String>) {
    let versions = &[&rustls::version::TLS13, &rustls::version::TLS12];
    let with_cert = pki.client_config(Some((&pki.client_cert, &pki.client_key)), versions);
    let mut mqtt = Mqtt::new(tls(tls_addr, with_cert).expect("TLS handshake"));
    echo(&mut mqtt, "ops-tls", "tls/echo", b"over tls");
    t.push("tls with certificate: echo".into());
    let without = pki.client_config(None, versions);
    let refused = tls(tls_addr, without).and_then(|mut s| {
        s.write_all(&[0xc0, 0x00])?;
        s.read(&mut [0u8; 16])
    });
    t.push(format!(
        "tls without certificate refused: {}",
        refused.is_err()
    ));
}

/// The password and ACL part: a wrong password is refused, alice may publish and subscribe
/// under `alice/` only.
fn auth_session(addr: SocketAddr, t: &mut Vec<String>) {
    let login = |version, password: &[u8]| {
        let mut connect = connect_packet(version, "ops-alice", true);
        connect.username = Some("alice".into());
        connect.password = Some(bytes::Bytes::copy_from_slice(password));
        Raw::connect_with(addr, connect)
    };
    let (_, connack) = login(V4, b"wrong");
    t.push(format!("wrong password v4: {:?}", connack.reason_code));
    let (_, connack) = login(V5, b"wrong");
    t.push(format!("wrong password v5: {:?}", connack.reason_code));
    let (mut alice, connack) = login(V5, b"secret");
    t.push(format!("alice v5: {:?}", connack.reason_code));
    alice.publish("alice/x", b"1", QoS::AtLeastOnce, false, 1);
    t.push(format!(
        "alice publish alice/x: {:?}",
        alice.expect_puback().reason_code
    ));
    alice.publish("other/x", b"1", QoS::AtLeastOnce, false, 2);
    t.push(format!(
        "alice publish other/x: {:?}",
        alice.expect_puback().reason_code
    ));
    t.push(format!(
        "alice subscribe alice/#: {:?}",
        alice.subscribe("alice/#", QoS::AtLeastOnce)
    ));
}

/// One scripted client session; the transcript is what a client could observe.
fn scripted_session(addr: SocketAddr, tls_addr: SocketAddr, pki: &Pki) -> Vec<String> {
    let mut t = Vec::new();
    tls_session(tls_addr, pki, &mut t);
    auth_session(addr, &mut t);
    let mut sub = Raw::connect(addr, V5, "ops-sub");
    t.push(format!(
        "suback t/# {:?}",
        sub.subscribe("t/#", QoS::AtLeastOnce)
    ));
    // max_qos 1: a QoS 2 subscription is granted QoS 1.
    t.push(format!(
        "suback q/# {:?}",
        sub.subscribe("q/#", QoS::ExactlyOnce)
    ));
    let mut publisher = Raw::connect(addr, V4, "ops-pub");
    publisher.publish_acked("t/r", b"hello", QoS::AtLeastOnce, true, 1);
    let p = sub.receive_and_ack();
    t.push(format!(
        "sub got {} {:?} retain={} {:?}",
        p.topic, p.qos, p.retain, p.payload
    ));
    let mut late = Raw::connect(addr, V4, "ops-late");
    t.push(format!(
        "late suback {:?}",
        late.subscribe("t/r", QoS::AtLeastOnce)
    ));
    let p = late.receive_and_ack();
    t.push(format!(
        "late got {} {:?} retain={} {:?}",
        p.topic, p.qos, p.retain, p.payload
    ));
    // `#` sees the retained message but never `$SYS`, although both publish it every second.
    let mut all = Raw::connect(addr, V4, "ops-all");
    t.push(format!(
        "all suback {:?}",
        all.subscribe("#", QoS::AtMostOnce)
    ));
    let topics: Vec<String> = collect(&mut all, Duration::from_millis(2500))
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    t.push(format!("# got {topics:?}"));
    let mut sys = Raw::connect(addr, V4, "ops-sys");
    t.push(format!(
        "sys suback {:?}",
        sys.subscribe("$SYS/broker/uptime", QoS::AtMostOnce)
    ));
    let uptime = sys.expect_publish();
    let text = String::from_utf8_lossy(&uptime.payload).to_string();
    t.push(format!(
        "uptime retain={} ends with seconds={}",
        uptime.retain,
        text.ends_with(" seconds")
    ));
    // Clearing the retained message: a new subscriber gets nothing.
    publisher.publish_acked("t/r", b"", QoS::AtLeastOnce, true, 2);
    let p = sub.receive_and_ack();
    t.push(format!("sub got clear {} {:?}", p.topic, p.payload));
    let mut after = Raw::connect(addr, V4, "ops-after");
    after.subscribe("t/r", QoS::AtLeastOnce);
    t.push(format!(
        "after clear got {}",
        collect(&mut after, Duration::from_millis(300)).len()
    ));
    t
}

fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("Debian's mosquitto is needed (.ci/test installs it)");
}

#[test]
fn a_mosquitto_config_runs_and_a_session_matches_mosquitto() {
    let pki = Pki::new();
    let dir = temp_dir("same");
    let port = free_port();
    let tls_port = free_port();
    let conf = write_conf(&dir, port, tls_port, &pki.dir);
    let check = shardmq().arg("-t").arg("-c").arg(&conf).output().unwrap();
    assert!(check.status.success(), "{check:?}");
    let mut ours = Process::spawn({
        let mut c = shardmq();
        c.args(["--shards", "2", "-c"]).arg(&conf);
        c
    });
    let addr = address_in(&ours.wait_line("listening on"));
    assert_eq!(addr.port(), port);
    let pid = std::fs::read_to_string(dir.join("broker.pid")).unwrap();
    assert_eq!(pid.trim(), ours.child.id().to_string());
    let our_transcript = scripted_session(addr, SocketAddr::from(([127, 0, 0, 1], tls_port)), &pki);
    ours.wait_line("connect client_id=ops-sub");
    drop(ours);

    let mosquitto_dir = temp_dir("mosquitto");
    let mosquitto_port = free_port();
    let mosquitto_tls_port = free_port();
    let mosquitto_conf = write_conf(&mosquitto_dir, mosquitto_port, mosquitto_tls_port, &pki.dir);
    let theirs = Process::spawn({
        let mut c = Command::new(mosquitto_binary());
        c.arg("-c").arg(&mosquitto_conf);
        c
    });
    let mosquitto_addr = SocketAddr::from(([127, 0, 0, 1], mosquitto_port));
    let mosquitto_tls_addr = SocketAddr::from(([127, 0, 0, 1], mosquitto_tls_port));
    wait_accepting(mosquitto_addr);
    wait_accepting(mosquitto_tls_addr);
    let their_transcript = scripted_session(mosquitto_addr, mosquitto_tls_addr, &pki);
    drop(theirs);
    // One known difference, asserted on each side: a wrong password gets 0x86 Bad User Name or
    // Password (3.1.1: return code 4) from shardmq, as the spec words it, and 0x87 Not
    // Authorized (3.1.1: 5) from Mosquitto 2.0 (README, "Moving from Mosquitto").
    let wrong_password = |transcript: &[String], code: &str| {
        for version in ["v4", "v5"] {
            let line = format!("wrong password {version}: {code}");
            assert!(transcript.contains(&line), "{line} in {transcript:#?}");
        }
    };
    wrong_password(&our_transcript, "BadUserNameOrPassword");
    wrong_password(&their_transcript, "NotAuthorized");
    let rest = |transcript: &[String]| -> Vec<String> {
        transcript
            .iter()
            .filter(|l| !l.starts_with("wrong password"))
            .cloned()
            .collect()
    };
    assert_eq!(rest(&our_transcript), rest(&their_transcript));
    assert!(our_transcript.iter().any(|l| l == "# got [\"t/r\"]"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&mosquitto_dir);
}

#[test]
fn test_config_exits_0_or_1_with_the_errors() {
    let dir = temp_dir("check");
    let good = dir.join("good.conf");
    std::fs::write(
        &good,
        "listener 1883 127.0.0.1\nallow_anonymous true\nuser x\n",
    )
    .unwrap();
    let out = shardmq()
        .arg("--test-config")
        .arg("-c")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("good.conf:3: warning: user"), "{stderr}");
    let bad = dir.join("bad.conf");
    std::fs::write(
        &bad,
        "listener 8883\nallow_anonymous true\ncertfile /etc/x.pem\npersistence true\nbogus 1\n",
    )
    .unwrap();
    let out = shardmq().arg("-t").arg("-c").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.conf:5: error: bogus: unknown directive"),
        "{stderr}"
    );
    let toml = dir.join("ours.toml");
    std::fs::write(&toml, "shards = 2\n[ops]\nsys_interval_secs = 3\n").unwrap();
    let out = shardmq().arg("-t").arg("-c").arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    std::fs::write(&toml, "shards = 0\n").unwrap();
    let out = shardmq().arg("-t").arg("-c").arg(&toml).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one() {
    let dir = temp_dir("hup");
    let conf = dir.join("mosquitto.conf");
    let base = "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 0\n";
    std::fs::write(
        &conf,
        format!("{base}log_type information\nmax_queued_messages 10\n"),
    )
    .unwrap();
    let mut broker = Process::spawn({
        let mut c = shardmq();
        c.args(["--shards", "1", "-c"]).arg(&conf);
        c
    });
    let addr = address_in(&broker.wait_line("listening on"));
    let mut client = Raw::connect(addr, V4, "hup-client");
    // A good file: the log level, max_connections, the queue limit and the listener's own
    // connection limit apply live (the listener keeps its socket, switched to new settings).
    std::fs::write(
        &conf,
        format!("{base}max_connections 2\nlog_type debug\nmax_queued_messages 20\n"),
    )
    .unwrap();
    broker.signal("HUP");
    broker.wait_line("reload done: 4 applied, 0 need a restart");
    broker.find_line("reload: max_connections changed from 100000 to 2 (applied)");
    broker.find_line(
        "reload: ops.log_level changed from Some(\"info\") to Some(\"debug\") (applied)",
    );
    broker.find_line("reload: max_queued_messages changed from 10 to 20 (applied)");
    broker.find_line(&format!("reload: listener {addr} switched to new settings"));
    // Debug lines now appear: a socket closed before CONNECT is logged at debug. With it open,
    // the broker holds 2 connections, its new limit: a third is refused at accept.
    let probe = TcpStream::connect(addr).unwrap();
    let mut third = Raw::tcp(addr);
    broker.wait_line("max_connections (2) reached");
    assert!(third.expect_closed().is_empty());
    drop(probe);
    broker.wait_line("close addr=");
    // A bad file: every error logged, nothing changes, clients stay.
    std::fs::write(
        &conf,
        format!("{base}log_type information\nno_such 1\ncertfile /x\n"),
    )
    .unwrap();
    broker.signal("HUP");
    broker.wait_line("reload failed: configuration unchanged");
    broker.find_line("mosquitto.conf:5: error: no_such: unknown directive");
    client.ping();
    let probe = TcpStream::connect(addr).unwrap();
    let mut third = Raw::tcp(addr);
    broker.wait_line("max_connections (2) reached");
    assert!(third.expect_closed().is_empty());
    drop(probe);
    broker.wait_line("close addr=");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET path` on the metrics server: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// The status line's code for raw request bytes.
fn http_raw(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)[9..12].parse().unwrap()
}

/// Sums of each sample name, from Python's Prometheus text parser (OpenMetrics flavour, which
/// is what prometheus-client writes).
fn parse_with_python(text: &str) -> std::collections::HashMap<String, f64> {
    let script = [
        "import sys, json",
        "from prometheus_client.openmetrics.parser import text_string_to_metric_families",
        "sums = {}",
        "for family in text_string_to_metric_families(sys.stdin.read()):",
        "    for s in family.samples:",
        "        sums[s.name] = sums.get(s.name, 0) + s.value",
        "print(json.dumps(sums))",
    ]
    .join("\n");
    let mut python = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    python
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (.ci/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: std::collections::HashMap<String, serde_json::Value> =
        serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|(k, v)| (k, v.as_f64().unwrap()))
        .collect()
}

/// The latest value of each `$SYS` topic received within `window`.
fn sys_values(raw: &mut Raw, window: Duration) -> std::collections::HashMap<String, String> {
    collect(raw, window)
        .into_iter()
        .map(|p| {
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).to_string(),
            )
        })
        .collect()
}

#[test]
fn sys_and_metrics_count_known_traffic() {
    let mut broker = Process::spawn({
        let mut c = shardmq();
        c.args([
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "2",
            "--sys-interval",
            "1",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
        c
    });
    let metrics = address_in(&broker.wait_line("metrics listening on"));
    let addr = address_in(&broker.find_line("shardmq listening on"));
    // A persistent session left offline: counted in clients/total and disconnected.
    let (persistent, _) = Raw::connect_with(addr, connect_packet(V4, "load-offline", false));
    persistent.disconnect();
    // A socket without CONNECT: a connection, not a client.
    let _socket_only = TcpStream::connect(addr).unwrap();
    let mut subscriber = Raw::connect(addr, V4, "load-sub");
    subscriber.subscribe("load/#", QoS::AtMostOnce);
    let mut clients: Vec<Raw> = (0..5)
        .map(|i| Raw::connect(addr, V4, &format!("load-{i}")))
        .collect();
    let payload = [7u8; 100];
    for round in 0..20u16 {
        for client in clients.iter_mut() {
            client.publish_acked("load/x", &payload, QoS::AtLeastOnce, false, round + 1);
        }
    }
    for _ in 0..100 {
        subscriber.expect_publish();
    }
    let mut sys = Raw::connect(addr, V4, "sys-reader");
    sys.subscribe("$SYS/#", QoS::AtMostOnce);
    // Rounds come every second; the second one after the traffic has every value final.
    let values = sys_values(&mut sys, Duration::from_millis(2500));
    let value = |topic: &str| -> u64 {
        values
            .get(&format!("$SYS/broker/{topic}"))
            .unwrap_or_else(|| panic!("no {topic} in {values:#?}"))
            .parse()
            .unwrap()
    };
    // Packets of every type, as Mosquitto counts them: CONNECT x 8 (offline session,
    // subscriber, 5 publishers, $SYS reader), DISCONNECT x 1, SUBSCRIBE x 2, PUBLISH x 100.
    assert_eq!(value("messages/received"), 111);
    assert_eq!(value("publish/messages/received"), 100);
    // CONNACK x 8, SUBACK x 2, PUBACK x 100, PUBLISH x 100 to the subscriber, and the
    // $SYS messages to their reader.
    assert!(value("messages/sent") > 210, "{}", value("messages/sent"));
    assert!(value("publish/messages/sent") > 100);
    // MQTT clients after CONNACK, not sockets (the bare socket is a connection only).
    assert_eq!(value("clients/connected"), 7);
    assert_eq!(value("clients/active"), 7);
    assert_eq!(value("clients/disconnected"), 1);
    assert_eq!(value("clients/inactive"), 1);
    assert_eq!(value("clients/total"), 8);
    assert_eq!(value("clients/maximum"), 8);
    assert_eq!(value("connections/socket/count"), 9);
    // The message data buffered now and at most (nothing waits once everything is read),
    // and the process's resident size beside it.
    assert!(value("heap/maximum") >= value("heap/current"));
    assert!(value("process/resident_bytes") > 1 << 20);
    assert!(value("process/resident_bytes_maximum") >= value("process/resident_bytes"));
    assert!(values.contains_key("$SYS/broker/load/publish/dropped/1min"));
    assert_eq!(value("subscriptions/count"), 2);
    assert_eq!(value("publish/messages/dropped"), 0);
    assert!(value("bytes/received") > 100 * 100);
    assert!(value("bytes/sent") > 100 * 100);
    assert_eq!(
        value("shards/0/messages/received") + value("shards/1/messages/received"),
        100
    );
    assert_eq!(
        value("shards/0/connections") + value("shards/1/connections"),
        8
    );
    assert!(values["$SYS/broker/version"].starts_with("shardmq version "));
    assert!(values.contains_key("$SYS/broker/load/messages/received/1min"));
    assert!(
        value("retained messages/count") > 20,
        "the $SYS tree is retained"
    );

    let (status, body) = http_get(metrics, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, text) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let sums = parse_with_python(&text);
    assert_eq!(sums["shardmq_messages_received_total"], 100.0);
    assert!(sums["shardmq_messages_sent_total"] >= 100.0);
    assert_eq!(sums["shardmq_connections_open"], 8.0);
    assert_eq!(sums["shardmq_clients_online"], 7.0);
    assert_eq!(sums["shardmq_clients_connected_total"], 8.0);
    assert_eq!(sums["shardmq_packets_received_total"], 111.0);
    assert_eq!(sums["shardmq_subscriptions"], 2.0);
    assert!(sums["shardmq_received_bytes_total"] > 10_000.0);
    assert!(sums["shardmq_sent_bytes_total"] > 10_000.0);
    assert_eq!(sums["shardmq_shard_up"], 2.0);
    assert_eq!(sums["shardmq_healthy"], 1.0);

    // The HTTP side refuses what it should, and the broker is not affected.
    assert_eq!(http_get(metrics, "/nope").0, 404);
    assert_eq!(http_raw(metrics, b"POST /metrics HTTP/1.1\r\n\r\n"), 405);
    let mut huge = b"GET /metrics HTTP/1.1\r\n".to_vec();
    huge.extend(vec![b'a'; 20_000]);
    assert_eq!(http_raw(metrics, &huge), 431);
    let started = Instant::now();
    assert_eq!(http_raw(metrics, b"GET /metrics HTTP/1.1\r\n"), 408);
    assert!(started.elapsed() < WAIT);
    subscriber.ping();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    let sums = parse_with_python(&http_get(metrics, "/metrics").1);
    assert_eq!(sums["shardmq_metrics_http_bad_requests_total"], 2.0);
}

#[test]
fn healthz_answers_503_once_the_broker_stops() {
    let broker = start_broker(2);
    let server =
        shardmq::ops::http::MetricsServer::start("127.0.0.1:0".parse().unwrap(), broker.observer())
            .unwrap();
    let metrics = server.local_addr();
    assert_eq!(http_get(metrics, "/healthz").0, 200);
    broker.shutdown();
    let (status, body) = http_get(metrics, "/healthz");
    assert_eq!(status, 503, "{body}");
    broker.join();
    let (status, body) = http_get(metrics, "/healthz");
    assert_eq!(status, 503);
    assert!(body.contains("shard 0 stopped"), "{body}");
    let (_, text) = http_get(metrics, "/metrics");
    assert!(text.contains("shardmq_shard_up{shard=\"1\"} 0"), "{text}");
}

#[test]
fn systemd_gets_ready_watchdog_reloading_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = temp_dir("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut broker = Process::spawn({
        let mut c = shardmq();
        c.args(["--listen", "127.0.0.1:0", "--shards", "2"])
            .env("NOTIFY_SOCKET", &socket_path)
            // A 200 ms watchdog: the broker pings every 100 ms while its shards turn.
            .env("WATCHDOG_USEC", "200000");
        c
    });
    broker.wait_line("listening on");
    let next = || {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    assert_eq!(next(), "READY=1\n");
    for _ in 0..3 {
        assert_eq!(next(), "WATCHDOG=1\n");
    }
    broker.signal("HUP");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        seen.push(next());
    }
    assert!(
        seen.iter().any(|m| m.starts_with("RELOADING=1")),
        "{seen:?}"
    );
    broker.signal("TERM");
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("STOPPING=1")) {
        seen.push(next());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_log_file_is_reopened_on_sigusr1() {
    let dir = temp_dir("logs");
    let log = dir.join("shardmq.log");
    let broker = Process::spawn({
        let mut c = shardmq();
        c.args(["--listen", "127.0.0.1:0", "--shards", "1", "--log-json"])
            .arg("--log-file")
            .arg(&log);
        c
    });
    let read_lines = |path: &Path, wanted: &str| -> Vec<serde_json::Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<serde_json::Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("every line is JSON"))
                .collect();
            if lines
                .iter()
                .any(|l| l["msg"].as_str().unwrap().contains(wanted))
            {
                return lines;
            }
            assert!(Instant::now() < deadline, "no {wanted:?} in {text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let lines = read_lines(&log, "listening on");
    let start = lines
        .iter()
        .find(|l| l["msg"].as_str().unwrap().contains("shardmq listening on"))
        .unwrap();
    let addr = address_in(start["msg"].as_str().unwrap());
    // logrotate moves the file away, then signals.
    let rotated = dir.join("shardmq.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    broker.signal("USR1");
    let lines = read_lines(&log, "log file reopened");
    assert!(lines
        .iter()
        .all(|l| l["level"].is_string() && l["ts"].is_string()));
    let client = Raw::connect(addr, V4, "json-client");
    let lines = read_lines(&log, "connect client_id=json-client");
    let connect = lines.iter().find(|l| l["event"] == "connect").unwrap();
    assert_eq!(connect["client_id"], "json-client");
    assert_eq!(connect["shard"], 0);
    assert_eq!(connect["listener"], 0);
    assert!(connect["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
    client.disconnect();
    let lines = read_lines(&log, "disconnect client_id=json-client");
    let disconnect = lines.iter().find(|l| l["event"] == "disconnect").unwrap();
    assert!(disconnect["reason"].is_string(), "{disconnect}");
    // The rotated file kept what came before the signal, and nothing after it.
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(old.contains("listening on") && !old.contains("json-client"));
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
