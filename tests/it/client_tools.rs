//! The `shardmq-pub` and `shardmq-sub` binaries against Mosquitto, cross-checked with
//! mosquitto_sub / mosquitto_pub and with the library client.

use crate::support::client::{options, TestClient, TIMEOUT};
use crate::support::mosquitto::{free_port, Mosquitto};
use crossbeam_channel::Receiver;
use shardmq::client::Event;
use shardmq::codec::{ProtocolVersion, QoS};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PUB: &str = env!("CARGO_BIN_EXE_shardmq-pub");
const SUB: &str = env!("CARGO_BIN_EXE_shardmq-sub");

/// Runs a command to completion within [`TIMEOUT`].
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_output(&mut child)
}

fn wait_output(child: &mut Child) -> Output {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            if let Some(mut out) = child.stdout.take() {
                out.read_to_end(&mut stdout).expect("stdout");
            }
            if let Some(mut err) = child.stderr.take() {
                err.read_to_end(&mut stderr).expect("stderr");
            }
            return Output {
                status,
                stdout,
                stderr,
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr_lines(child: &mut Child) -> Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a `-d` debug line of the sub tool showing its SUBACK.
fn wait_subscribed(lines: &Receiver<String>) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("shardmq-sub reported its SUBACK");
        if line.contains("SubAck") {
            return;
        }
    }
}

fn spawn_sub(port: u16, extra: &[&str]) -> Child {
    Command::new(SUB)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-d"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardmq-sub")
}

fn subscriber(port: u16, filter: &str) -> TestClient {
    let client = TestClient::connect(
        options(&format!("check-{filter}"), ProtocolVersion::V5),
        port,
    );
    client
        .client
        .subscribe(filter, QoS::ExactlyOnce)
        .expect("subscribe");
    client.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    client
}

fn next_payload(client: &TestClient) -> Vec<u8> {
    match client.wait_for("message", |e| matches!(e, Event::Publish(_))) {
        Event::Publish(publish) => publish.payload.to_vec(),
        _ => unreachable!(),
    }
}

#[test]
fn pub_tool_message_reaches_mosquitto_sub() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    for (version, qos) in [("mqttv311", "1"), ("5", "2"), ("mqttv31", "0")] {
        let topic = format!("tools/ret/{version}");
        let out = run(Command::new(PUB).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            &topic,
            "-m",
            "hello",
            "-q",
            qos,
            "-r",
            "-V",
            version,
        ]));
        assert!(out.status.success(), "{out:?}");
        // Retained, so mosquitto_sub gets it whenever it subscribes.
        let out = run(Command::new("mosquitto_sub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            &topic,
            "-C",
            "1",
            "-W",
            "10",
        ]));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    }
}

#[test]
fn pub_tool_reads_lines_files_null_and_repeats() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    let check = subscriber(broker.port, "tools/in/#");

    let mut child = Command::new(PUB)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "tools/in/lines",
            "-l",
            "-q",
            "2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"one\ntwo\nthree\n")
        .expect("write stdin");
    let out = wait_output(&mut child);
    assert!(out.status.success(), "{out:?}");
    for expected in ["one", "two", "three"] {
        assert_eq!(next_payload(&check), expected.as_bytes());
    }

    let file = std::env::temp_dir().join(format!("shardmq-pub-file-{}", std::process::id()));
    std::fs::write(&file, b"file\ncontents\0binary").expect("write file");
    let out = run(Command::new(PUB)
        .args([
            "-p",
            &port,
            "-h",
            "127.0.0.1",
            "-t",
            "tools/in/f",
            "-q",
            "1",
        ])
        .arg("-f")
        .arg(&file));
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(next_payload(&check), b"file\ncontents\0binary");

    let out =
        run(Command::new(PUB).args(["-p", &port, "-h", "127.0.0.1", "-t", "tools/in/n", "-n"]));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(next_payload(&check), b"");

    let out = run(Command::new(PUB).args([
        "-p",
        &port,
        "-h",
        "127.0.0.1",
        "-t",
        "tools/in/r",
        "-m",
        "again",
        "--repeat",
        "3",
        "--repeat-delay",
        "0.01",
        "-q",
        "1",
    ]));
    assert!(out.status.success(), "{out:?}");
    for _ in 0..3 {
        assert_eq!(next_payload(&check), b"again");
    }
}

#[test]
fn sub_tool_prints_what_mosquitto_pub_sends_minus_filtered_topics() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    let mut child = spawn_sub(
        broker.port,
        &["-t", "tools/s/#", "-v", "-C", "2", "-q", "1"],
    );
    let debug_lines = stderr_lines(&mut child);
    wait_subscribed(&debug_lines);
    for message in ["one", "two"] {
        let out = run(Command::new("mosquitto_pub").args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "tools/s/x",
            "-m",
            message,
            "-q",
            "1",
        ]));
        assert!(out.status.success(), "{out:?}");
    }
    let out = wait_output(&mut child);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "tools/s/x one\ntools/s/x two\n"
    );
}

#[test]
fn sub_tool_skips_stale_messages_and_can_omit_newlines() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    let out = run(Command::new("mosquitto_pub").args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "tools/r",
        "-m",
        "stale",
        "-r",
    ]));
    assert!(out.status.success(), "{out:?}");
    let mut child = spawn_sub(
        broker.port,
        &["-t", "tools/r", "-R", "-N", "-C", "1", "-V", "5"],
    );
    let debug_lines = stderr_lines(&mut child);
    wait_subscribed(&debug_lines);
    let out = run(Command::new(PUB).args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "tools/r",
        "-m",
        "fresh",
    ]));
    assert!(out.status.success(), "{out:?}");
    let out = wait_output(&mut child);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "fresh");
}

#[test]
fn sub_tool_will_is_published_when_it_dies() {
    let broker = Mosquitto::start();
    let check = subscriber(broker.port, "tools/will");
    let mut child = spawn_sub(
        broker.port,
        &[
            "-t",
            "tools/x",
            "--will-topic",
            "tools/will",
            "--will-payload",
            "bye",
            "--will-qos",
            "1",
        ],
    );
    let debug_lines = stderr_lines(&mut child);
    wait_subscribed(&debug_lines);
    child.kill().expect("kill");
    let _ = child.wait();
    assert_eq!(next_payload(&check), b"bye");
}

#[test]
fn sub_tool_timeout_exits_27() {
    let broker = Mosquitto::start();
    let out = run(Command::new(SUB).args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port.to_string(),
        "-t",
        "quiet",
        "-W",
        "1",
    ]));
    assert_eq!(out.status.code(), Some(27), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
}

#[test]
fn tools_exit_1_with_a_message_when_the_connection_is_refused() {
    let port = free_port().to_string();
    for tool in [PUB, SUB] {
        let out = run(Command::new(tool).args(
            ["-h", "127.0.0.1", "-p", &port, "-t", "x", "-m", "y"]
                .iter()
                .filter(|a| tool == PUB || (**a != "-m" && **a != "y")),
        ));
        assert_eq!(out.status.code(), Some(1), "{tool}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("Error:") && stderr.contains("refused"),
            "{stderr}"
        );
    }
}

#[test]
fn bad_arguments_exit_2_and_missing_message_exits_1() {
    let out = run(Command::new(PUB).args(["-t", "x", "-m", "y", "-q", "3"]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(Command::new(SUB).args(["-V", "mqttv4", "-t", "x"]));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(Command::new(PUB).args(["-t", "x"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to publish"));
    let out = run(Command::new(PUB).args(["-t", "bad/#", "-m", "y"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn scram_is_offered_as_enhanced_authentication() {
    let broker = Mosquitto::start();
    let port = broker.port.to_string();
    // Mosquitto has no SCRAM plugin here: it refuses the method, which shows it was offered.
    let out = run(Command::new(PUB).args([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "x",
        "-m",
        "y",
        "-V",
        "5",
        "--scram",
        "-u",
        "alice",
        "-P",
        "secret",
    ]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("BadAuthenticationMethod"), "{stderr}");
    let out = run(Command::new(PUB).args(["-t", "x", "-m", "y", "--scram", "-u", "alice"]));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs MQTT 5"));
}
