//! Listeners and transports with independent clients: Mosquitto's `mosquitto_pub` /
//! `mosquitto_sub` over TLS with `--cafile`, `--cert`/`--key` (and refused without a certificate
//! where one is required), `openssl s_client` for protocol versions and alerts, Python paho-mqtt
//! over TLS and over WebSocket (tests/interop/transport_paho.py), and MQTT.js over `ws://` and
//! `wss://` in Node (tests/interop/transport_mqttjs.js). `.ci/test` installs all of them; a
//! missing one fails the test with what to install, never skips it.

use crate::support::transport::*;
use shardmq::transport::TransportKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Runs `program` with `args` under a 20-second limit; returns whether it exited 0 and its
/// output (stdout and stderr).
fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut command = Command::new("timeout");
    command
        .arg("20")
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e} (run .ci/test to install it)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(
        output.status.code(),
        Some(127),
        "{program} is not installed: run .ci/test\n{text}"
    );
    (output.status.success(), text)
}

fn interop(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(file)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn mosquitto_clients_over_tls_with_ca_and_client_certificates() {
    let pki = Pki::new();
    let required = pki.with_client_ca(pki.listener(TransportKind::MqttTls), true);
    let broker = start(vec![pki.listener(TransportKind::MqttTls), required], |_| {});
    let [tls, required] = broker.local_addrs()[..] else {
        panic!("two listeners");
    };
    let (tls_port, required_port) = (tls.port().to_string(), required.port().to_string());
    // `localhost` matches the server certificate's name; the clients verify it.
    let common = [
        "-h",
        "localhost",
        "--cafile",
        path(&pki.ca),
        "-t",
        "mosq/tls",
    ];
    let (ok, out) = run(
        "mosquitto_pub",
        &[
            &common[..],
            &["-p", &tls_port, "-r", "-q", "1", "-m", "over tls"],
        ]
        .concat(),
        &[],
    );
    assert!(ok, "mosquitto_pub over TLS failed: {out}");
    let (ok, out) = run(
        "mosquitto_sub",
        &[&common[..], &["-p", &tls_port, "-C", "1", "-W", "10"]].concat(),
        &[],
    );
    assert!(ok && out.contains("over tls"), "mosquitto_sub got: {out}");

    let (ok, out) = run(
        "mosquitto_pub",
        &[&common[..], &["-p", &required_port, "-m", "no cert"]].concat(),
        &[],
    );
    assert!(!ok, "a client without a certificate was accepted: {out}");
    let with_cert = [
        "--cert",
        path(&pki.client_cert),
        "--key",
        path(&pki.client_key),
    ];
    let (ok, out) = run(
        "mosquitto_pub",
        &[
            &common[..],
            &with_cert[..],
            &["-p", &required_port, "-r", "-m", "with cert"],
        ]
        .concat(),
        &[],
    );
    assert!(ok, "mosquitto_pub with a client certificate failed: {out}");
    let (ok, out) = run(
        "mosquitto_sub",
        &[
            &common[..],
            &with_cert[..],
            &["-p", &required_port, "-C", "1", "-W", "10"],
        ]
        .concat(),
        &[],
    );
    assert!(ok && out.contains("with cert"), "mosquitto_sub got: {out}");
}

#[test]
fn openssl_s_client_sees_tls_1_2_and_1_3_and_alerts() {
    let pki = Pki::new();
    let required = pki.with_client_ca(pki.listener(TransportKind::MqttTls), true);
    // s_client sends nothing after the handshake: the handshake timeout (no CONNECT) ends it.
    let broker = start(vec![pki.listener(TransportKind::MqttTls), required], |c| {
        c.handshake_timeout_ms = 1_000;
    });
    let [tls, required] = broker.local_addrs()[..] else {
        panic!("two listeners");
    };
    let (tls, required) = (tls.to_string(), required.to_string());
    let s_client = |addr: &str, extra: &[&str]| {
        let base = [
            "s_client",
            "-connect",
            addr,
            "-servername",
            "localhost",
            "-CAfile",
            path(&pki.ca),
            "-verify_return_error",
            "-ign_eof",
        ];
        run("openssl", &[&base[..], extra].concat(), &[])
    };
    for (flag, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (_, out) = s_client(&tls, &[flag]);
        assert!(
            out.contains(&format!("New, {name}")) && out.contains("Verify return code: 0 (ok)"),
            "{flag}: {out}"
        );
    }
    // TLS 1.1 (allowed on the client side only at security level 0) is refused with an alert.
    let (ok, out) = s_client(&tls, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
    assert!(!ok && out.contains("alert"), "TLS 1.1: {out}");
    // No client certificate where one is required: the server's alert ends the connection.
    let (ok, out) = s_client(&required, &["-tls1_3"]);
    assert!(
        !ok && out.contains("alert certificate required"),
        "no certificate: {out}"
    );
    let (_, out) = s_client(
        &required,
        &[
            "-tls1_2",
            "-cert",
            path(&pki.client_cert),
            "-key",
            path(&pki.client_key),
        ],
    );
    assert!(out.contains("New, TLSv1.2"), "with a certificate: {out}");
}

#[test]
fn paho_over_tls_websocket_and_secure_websocket() {
    let pki = Pki::new();
    let broker = start(
        vec![
            pki.listener(TransportKind::MqttTls),
            pki.listener(TransportKind::Ws),
            pki.listener(TransportKind::Wss),
        ],
        |_| {},
    );
    let script = interop("transport_paho.py");
    for (addr, transport, tls) in [
        (broker.local_addrs()[0], "tcp", "tls"),
        (broker.local_addrs()[1], "websockets", "plain"),
        (broker.local_addrs()[2], "websockets", "tls"),
    ] {
        let port = addr.port().to_string();
        let (ok, out) = run(
            "python3",
            &[path(&script), transport, &port, tls, path(&pki.ca)],
            &[],
        );
        assert!(
            ok && out.contains("OK"),
            "paho {transport} {tls}: {out} (paho-mqtt 2.x is installed by .ci/test)"
        );
    }
}

#[test]
fn mqtt_js_over_ws_and_wss() {
    let pki = Pki::new();
    let broker = start(
        vec![
            pki.listener(TransportKind::Ws),
            pki.listener(TransportKind::Wss),
        ],
        |_| {},
    );
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/npm/node_modules");
    assert!(
        modules.join("mqtt").is_dir(),
        "MQTT.js is not installed in {}: run .ci/test (npm install --prefix target/npm mqtt@5)",
        modules.display()
    );
    let script = interop("transport_mqttjs.js");
    let ws = format!("ws://localhost:{}/mqtt", broker.local_addrs()[0].port());
    let wss = format!("wss://localhost:{}/mqtt", broker.local_addrs()[1].port());
    let env = [("NODE_PATH", path(&modules))];
    let (ok, out) = run("node", &[path(&script), &ws], &env);
    assert!(ok && out.contains("OK"), "MQTT.js over ws: {out}");
    let (ok, out) = run("node", &[path(&script), &wss, path(&pki.ca)], &env);
    assert!(ok && out.contains("OK"), "MQTT.js over wss: {out}");
}

/// The `shardmq` binary with `--proxy-protocol required`: the connect line names the address
/// the PROXY header gave, not the proxy's.
#[test]
fn proxy_protocol_address_is_the_one_logged() {
    use std::io::{BufRead, BufReader, Write};
    let port = crate::support::mosquitto::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--proxy-protocol",
            "required",
            "--shards",
            "1",
            "--log-level",
            "info",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardmq");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |text: &str| -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?}"),
            }
        }
    };
    wait_line("listening on");
    let mut raw = tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    raw.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n")
        .unwrap();
    let mut mqtt = Mqtt::new(raw);
    mqtt.send(&connect("proxied-client", None));
    assert!(matches!(
        mqtt.recv(),
        Some(shardmq::codec::Packet::ConnAck(_))
    ));
    let line = wait_line("client_id=proxied-client");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("addr=192.0.2.7:40000"), "{line}");
}
