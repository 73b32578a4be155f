//! Listeners and transports with Rust clients (rustls, tungstenite): TLS 1.2/1.3, client
//! certificates and certificate logins, certificate reload, WebSocket and secure WebSocket,
//! PROXY protocol v1/v2, per-listener limits, and bad input on each layer closing only its own
//! connection. Independent clients (mosquitto, openssl, paho, MQTT.js): transport_interop.rs.

use crate::support::transport::*;
use shardmq::codec::{Packet, ReasonCode};
use shardmq::transport::{ProxyProtocol, TransportKind};
use std::io::{Read, Write};
use std::time::Duration;

const TLS_ALL: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[test]
fn tls_1_2_and_1_3_carry_mqtt() {
    let pki = Pki::new();
    let broker = start(vec![pki.listener(TransportKind::MqttTls)], |_| {});
    let addr = broker.local_addrs()[0];
    for (version, name) in [
        (&rustls::version::TLS13, "tls13"),
        (&rustls::version::TLS12, "tls12"),
    ] {
        let stream = tls(addr, pki.client_config(None, &[version])).expect("handshake");
        assert_eq!(
            stream.conn.protocol_version(),
            Some(version.version),
            "{name}"
        );
        let mut mqtt = Mqtt::new(stream);
        // A payload larger than one TLS record (16 KiB) and than one shard read.
        let payload = vec![b'x'; 100_000];
        echo(&mut mqtt, name, &format!("tls/{name}"), &payload);
    }
}

#[test]
fn client_certificates_are_verified_and_can_be_the_login() {
    let pki = Pki::new();
    let required = pki.with_client_ca(pki.listener(TransportKind::MqttTls), true);
    let mut identity = required.clone();
    identity.use_identity_as_username = true;
    let optional = pki.with_client_ca(pki.listener(TransportKind::MqttTls), false);
    // A password file makes every plain login need a password; the identity listener takes the
    // certificate instead.
    let passwords = pki.dir.join("passwords");
    // A Mosquitto-format (hashed) file: plain-text password files are refused (issue 13).
    let hash = shardmq::auth::PasswordHash::generate(b"secret", 101).unwrap();
    std::fs::write(&passwords, format!("bob:{}\n", hash.encode())).unwrap();
    let broker = start(vec![required, identity, optional], |c| {
        c.password_file = Some(passwords.clone());
    });
    let [required, identity, optional] = broker.local_addrs()[..] else {
        panic!("three listeners");
    };
    let with_cert = pki.client_config(Some((&pki.client_cert, &pki.client_key)), TLS_ALL);
    let without = pki.client_config(None, TLS_ALL);
    let rogue = pki.client_config(Some((&pki.rogue_cert, &pki.rogue_key)), TLS_ALL);

    // Required: no certificate or an unknown CA fails the handshake (TLS 1.3 reports the
    // server's alert on the first read).
    for (config, who) in [
        (without.clone(), "no certificate"),
        (rogue.clone(), "rogue CA"),
    ] {
        let refused = tls(required, config).and_then(|mut s| {
            s.write_all(&[0xc0, 0x00])?;
            s.read(&mut [0u8; 16])
        });
        assert!(refused.is_err(), "{who} must be refused, got {refused:?}");
    }
    // With a valid certificate: the password is still needed on the plain listener (no
    // credentials at all: not authorized, as Mosquitto 2 answers)...
    let mut mqtt = Mqtt::new(tls(required, with_cert.clone()).unwrap());
    mqtt.send(&connect("alice-1", None));
    match mqtt.recv() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::NotAuthorized),
        other => panic!("expected a refusing CONNACK, got {other:?}"),
    }
    // ...and not on the identity listener, where the certificate is the login.
    let mut mqtt = Mqtt::new(tls(identity, with_cert.clone()).unwrap());
    mqtt.send(&connect("alice-2", Some("someone-else")));
    match mqtt.recv() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    // Optional: a client without a certificate completes the handshake, a rogue one does not.
    assert!(tls(optional, without).is_ok());
    let rogue = tls(optional, rogue).and_then(|mut s| {
        s.write_all(&[0xc0, 0x00])?;
        s.read(&mut [0u8; 16])
    });
    assert!(rogue.is_err(), "rogue certificate accepted: {rogue:?}");
}

#[test]
fn certificates_reload_without_restart_and_a_broken_file_keeps_the_old_one() {
    let pki = Pki::new();
    let broker = start(vec![pki.listener(TransportKind::MqttTls)], |_| {});
    let addr = broker.local_addrs()[0];
    let config = pki.client_config(None, TLS_ALL);
    let subject = |stream: &TlsStream| {
        let der = stream.conn.peer_certificates().unwrap()[0].to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        cn.as_str().unwrap().to_string()
    };
    let mut before = Mqtt::new(tls(addr, config.clone()).unwrap());
    echo(&mut before, "before", "reload/a", b"1");
    assert_eq!(subject(&before.io), "shardmq test server");

    pki.replace_server_cert("renewed server");
    assert!(broker.reload_tls().is_empty());
    let after = tls(addr, config.clone()).unwrap();
    assert_eq!(subject(&after), "renewed server");
    // The established connection is untouched.
    subscribe_and_echo(&mut before, "before", "reload/b", b"2");

    std::fs::write(&pki.server_key, "not a key").unwrap();
    let errors = broker.reload_tls();
    assert_eq!(errors.len(), 1, "{errors:?}");
    let still = tls(addr, config).unwrap();
    assert_eq!(subject(&still), "renewed server");
}

#[test]
fn bad_tls_input_closes_only_that_connection() {
    let pki = Pki::new();
    let broker = start(vec![pki.listener(TransportKind::MqttTls)], |c| {
        c.handshake_timeout_ms = 1_000;
    });
    let addr = broker.local_addrs()[0];
    let config = pki.client_config(None, TLS_ALL);
    let mut good = Mqtt::new(tls(addr, config.clone()).unwrap());
    echo(&mut good, "good", "bad-tls/a", b"before");

    // A record of an unknown content type; then plain MQTT on the TLS port.
    for garbage in [
        &b"\x63\x03\x03\x00\x05hello"[..],
        &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..],
    ] {
        let mut raw = tcp(addr);
        raw.write_all(garbage).unwrap();
        assert!(closed_by_broker(&mut raw), "garbage {garbage:?} not closed");
    }
    // A ClientHello cut short and then silence: closed by the handshake timeout.
    let mut stalled = tcp(addr);
    stalled
        .write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    assert!(
        closed_by_broker(&mut stalled),
        "stalled handshake not closed"
    );

    subscribe_and_echo(&mut good, "good", "bad-tls/b", b"after");
    assert!(broker.stats().handshake_timeouts >= 1);
}

#[test]
fn websocket_carries_mqtt_across_frame_boundaries() {
    let pki = Pki::new();
    let broker = start(
        vec![
            pki.listener(TransportKind::Ws),
            pki.listener(TransportKind::Wss),
        ],
        |_| {},
    );
    let [ws, wss] = broker.local_addrs()[..] else {
        panic!("two listeners");
    };
    // Old clients offer mqttv3.1 only.
    let socket = websocket(tcp(ws), ws, "/mqtt", "mqttv3.1").expect("upgrade");
    let mut mqtt = Mqtt::new(WsIo::new(socket));
    echo(&mut mqtt, "ws-old", "ws/old", b"hello");

    let mut socket = websocket(tcp(ws), ws, "/mqtt", "mqtt").expect("upgrade");
    // CONNECT split over three frames, then SUBSCRIBE and PUBLISH in one frame.
    let mut bytes = bytes::BytesMut::new();
    connect("ws-split", None)
        .encode(shardmq::codec::ProtocolVersion::V3_1_1, &mut bytes)
        .expect("encodable");
    for part in [&bytes[..3], &bytes[3..7], &bytes[7..]] {
        socket
            .send(tungstenite::Message::binary(part.to_vec()))
            .unwrap();
    }
    let mut mqtt = Mqtt::new(WsIo::new(socket));
    assert!(matches!(mqtt.recv(), Some(Packet::ConnAck(_))));
    subscribe_and_echo(&mut mqtt, "ws-split", "ws/split", &vec![7u8; 200_000]);
    // A ping is answered with a pong (tungstenite answers it in the broker).
    mqtt.io
        .socket
        .send(tungstenite::Message::Ping(b"p".to_vec().into()))
        .unwrap();

    let stream = tls(wss, pki.client_config(None, TLS_ALL)).unwrap();
    let socket = websocket(stream, wss, "/mqtt", "mqtt").expect("wss upgrade");
    let mut mqtt = Mqtt::new(WsIo::new(socket));
    echo(&mut mqtt, "wss", "wss/a", &vec![9u8; 70_000]);
}

#[test]
fn bad_websocket_input_closes_only_that_connection() {
    let pki = Pki::new();
    let broker = start(vec![pki.listener(TransportKind::Ws)], |c| {
        c.max_packet_size = 64 * 1024;
    });
    let addr = broker.local_addrs()[0];
    let socket = websocket(tcp(addr), addr, "/mqtt", "mqtt").unwrap();
    let mut good = Mqtt::new(WsIo::new(socket));
    echo(&mut good, "good", "bad-ws/a", b"before");

    let upgrade = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             {protocol}\r\n"
        )
    };
    for (request, status) in [
        ("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), "400"),
        (upgrade("/mqtt", "Sec-WebSocket-Protocol: chat\r\n"), "400"),
        (upgrade("/mqtt", ""), "400"),
        (upgrade("/other", "Sec-WebSocket-Protocol: mqtt\r\n"), "404"),
    ] {
        let mut raw = tcp(addr);
        raw.write_all(request.as_bytes()).unwrap();
        let answer = String::from_utf8_lossy(&read_until_closed(&mut raw)).to_string();
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?} answered {answer:?}"
        );
    }
    // A frame header announcing 2^62 bytes, and a text frame: closed, nothing allocated.
    for frame in [
        &b"\x82\xff\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
        &b"\x81\x82\x00\x00\x00\x00hi"[..],
    ] {
        let mut raw = tcp(addr);
        raw.write_all(upgrade("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").as_bytes())
            .unwrap();
        let mut head = [0u8; 12];
        raw.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 101");
        raw.write_all(frame).unwrap();
        assert!(closed_by_broker(&mut raw), "frame {frame:?} not closed");
    }
    subscribe_and_echo(&mut good, "good", "bad-ws/b", b"after");
}

#[test]
fn proxy_protocol_headers_are_read_and_required() {
    let pki = Pki::new();
    let mut required = pki.listener(TransportKind::Mqtt);
    required.proxy_protocol = ProxyProtocol::Required;
    let mut optional = pki.listener(TransportKind::MqttTls);
    optional.proxy_protocol = ProxyProtocol::Optional;
    let broker = start(vec![required, optional], |_| {});
    let [required, optional] = broker.local_addrs()[..] else {
        panic!("two listeners");
    };
    // v1 then MQTT.
    let mut raw = tcp(required);
    raw.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n")
        .unwrap();
    echo(&mut Mqtt::new(raw), "proxied-v1", "proxy/v1", b"1");
    // v2 then TLS, on the optional listener; and TLS without a header there.
    let addresses: ppp::v2::Addresses = (
        "[2001:db8::5]:5000"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        "[2001:db8::1]:8883"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
    )
        .into();
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap();
    let mut raw = tcp(optional);
    raw.write_all(&header).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(pki.client_config(None, TLS_ALL), name).unwrap();
    echo(
        &mut Mqtt::new(rustls::StreamOwned::new(conn, raw)),
        "proxied-v2",
        "proxy/v2",
        b"2",
    );
    let direct = tls(optional, pki.client_config(None, TLS_ALL)).unwrap();
    echo(&mut Mqtt::new(direct), "direct", "proxy/direct", b"3");
    // No header where one is required; a malformed header.
    for bytes in [
        &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..],
        &b"PROXY TCP4 not-an-address\r\n"[..],
    ] {
        let mut raw = tcp(required);
        raw.write_all(bytes).unwrap();
        assert!(closed_by_broker(&mut raw), "{bytes:?} not closed");
    }
}

#[test]
fn listeners_have_their_own_connection_limit_and_toml_sections() {
    let pki = Pki::new();
    let toml = format!(
        "shards = 1\nlisten = [\"127.0.0.1:0\"]\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\ntransport = \"mqtt\"\nmax_connections = 1\n\
         [[listener]]\naddress = \"127.0.0.1:0\"\ntransport = \"wss\"\n\
         cert_file = {:?}\nkey_file = {:?}\nws_path = \"/broker\"\n",
        pki.server_cert, pki.server_key
    );
    let config = shardmq::broker::Config::from_toml_str(&toml).unwrap();
    assert_eq!(config.effective_listeners().len(), 3);
    let broker = shardmq::broker::Broker::start(config).unwrap();
    let [plain, limited, wss] = broker.local_addrs()[..] else {
        panic!("three listeners");
    };
    let mut first = Mqtt::new(tcp(limited));
    echo(&mut first, "first", "limit/a", b"1");
    let mut second = tcp(limited);
    assert!(closed_by_broker(&mut second), "over the listener's limit");
    echo(&mut Mqtt::new(tcp(plain)), "plain", "limit/b", b"2");
    let stream = tls(wss, pki.client_config(None, TLS_ALL)).unwrap();
    let socket = websocket(stream, wss, "/broker", "mqtt").expect("upgrade on /broker");
    echo(&mut Mqtt::new(WsIo::new(socket)), "wss", "limit/c", b"3");
    drop(first);
    // The closed connection frees its slot.
    transport_support_wait(|| {
        let mut again = Mqtt::new(tcp(limited));
        again.send(&connect("again", None));
        matches!(again.recv(), Some(Packet::ConnAck(_)))
    });
}

fn transport_support_wait(mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A tungstenite client socket as a byte stream: each write one binary message.
pub struct WsIo<S: Read + Write> {
    pub socket: tungstenite::WebSocket<S>,
    pending: Vec<u8>,
}

impl<S: Read + Write> WsIo<S> {
    pub fn new(socket: tungstenite::WebSocket<S>) -> WsIo<S> {
        WsIo {
            socket,
            pending: Vec::new(),
        }
    }
}

impl<S: Read + Write> Read for WsIo<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.socket.read() {
                Ok(tungstenite::Message::Binary(data)) => self.pending = data.to_vec(),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl<S: Read + Write> Write for WsIo<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.socket
            .send(tungstenite::Message::binary(buf.to_vec()))
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
