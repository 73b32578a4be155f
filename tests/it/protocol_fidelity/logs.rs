//! Item 8: client ids, user names, topics and reason strings from clients are escaped in log
//! lines: a newline in a client id does not forge a second line. Runs the real `shardmq` binary
//! and reads its log (stderr).

use super::bytes::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn send(stream: &mut TcpStream, bytes: &[u8]) -> Vec<u8> {
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap_or(0);
    buf[..n].to_vec()
}

#[test]
fn client_text_cannot_forge_log_lines() {
    let dir = std::env::temp_dir().join(format!("shardmq-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let passwords = dir.join("users.txt");
    // A Mosquitto-format `$6$` line: plain-text password files are refused (issue 13).
    let hash = shardmq::auth::PasswordHash::sha512(b"secret", b"0123456789abcdef");
    std::fs::write(&passwords, format!("alice:{}\n", hash.encode())).unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--shards", "1"])
        .args(["--log-level", "debug", "--password-file"])
        .arg(&passwords)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run shardmq");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < deadline, "shardmq did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let forged = "\n[2026-12-04T22:00:00Z INFO ] forged-";
    // A client id with a newline (MQTT allows it), user alice, a publish to a reserved topic
    // (logged at debug), then DISCONNECT with a Reason String.
    let login = [&str16(b"alice")[..], &str16(b"secret")].concat();
    let connect = connect_v5(0xC2, &[], &format!("id{forged}client"), &login);
    let connack = send(&mut stream, &connect);
    assert_eq!((connack[0], connack[3]), (0x20, 0x00), "{connack:02X?}");
    let topic = format!("$SYS/t{forged}topic");
    stream
        .write_all(&frame(
            0x30,
            &[&str16(topic.as_bytes())[..], &[0], b"x"].concat(),
        ))
        .unwrap();
    let reason = [&[0x1F][..], &str16(format!("bye{forged}reason").as_bytes())].concat();
    stream
        .write_all(&frame(0xE0, &[&[0x00][..], &props(&reason)].concat()))
        .unwrap();
    // A refused login with a forged user name.
    let mut refused = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let login = [
        &str16(format!("u{forged}user").as_bytes())[..],
        &str16(b"x"),
    ]
    .concat();
    let answer = send(&mut refused, &connect_v5(0xC2, &[], "bad-login", &login));
    assert_eq!(answer[..4], [0x20, 0x03, 0x00, 0x86]);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    for what in ["client", "topic", "reason", "user"] {
        let marker = format!("forged-{what}");
        assert!(
            !log.lines()
                .any(|l| l.starts_with('[') && l.contains(&marker) && !l.contains("\\n")),
            "a forged {what} line in:\n{log}"
        );
        assert!(
            log.contains(&format!("\\n[2026-12-04T22:00:00Z INFO ] {marker}")),
            "the {what} is not in the log, escaped:\n{log}"
        );
        assert!(
            !log.lines().any(|l| l.starts_with("[2026-12-04T22:00:00Z")),
            "forged line in:\n{log}"
        );
    }
}
