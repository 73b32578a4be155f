//! Authentication over real TCP: `--password-file` for plain CONNECT (MQTT 5 and 3.1.1), and
//! MQTT 5 enhanced authentication (spec 4.12) with the SCRAM-SHA-256 authenticator of
//! `--scram-users`: the AUTH exchange, failures, unknown methods, re-authentication, driven by
//! raw bytes (with the crate's SCRAM client) and by our client engine.

use crate::support::broker::*;
use bytes::{Bytes, BytesMut};
use shardmq::auth::{
    encode_scram_credentials, PasswordHash, ScramClient, ScramCredentials, SCRAM_SHA_256,
};
use shardmq::broker::{BrokerHandle, Config};
use shardmq::client::{ClientSession, ConnectOptions, Event, ScramSha256Auth};
use shardmq::codec::{Auth, Connect, MqttString, Packet, Properties, ProtocolVersion, ReasonCode};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "shardmq-{}-{name}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scram_broker(shards: usize) -> (BrokerHandle, TempFile) {
    // Stored keys, as `shardmq-passwd --scram` writes them: the file holds no password.
    let line = |user: &str, password: &str| {
        let keys = ScramCredentials::generate(password, 4096).unwrap();
        format!("{user}:{}\n", encode_scram_credentials(&keys))
    };
    let text = line("alice", "wonderland") + &line("bob", "builder");
    let users = TempFile::new("scram", &text);
    let broker = start_with(Config {
        scram_users_file: Some(users.0.clone()),
        ..config(shards)
    });
    (broker, users)
}

// The authentication properties sit behind `Properties`' DerefMut: no struct literal.
#[allow(clippy::field_reassign_with_default)]
fn auth_packet(code: ReasonCode, method: &str, data: Option<Vec<u8>>) -> Packet {
    let mut properties = Properties::default();
    properties.authentication_method = Some(MqttString::from(method));
    properties.authentication_data = data.map(Bytes::from);
    Packet::Auth(Auth {
        reason_code: code,
        properties,
    })
}

fn scram_connect(client_id: &str, first: Vec<u8>) -> Connect {
    let mut connect = connect_packet(V5, client_id, true);
    connect.properties.authentication_method = Some(MqttString::from(SCRAM_SHA_256));
    connect.properties.authentication_data = Some(Bytes::from(first));
    connect
}

fn expect_auth(raw: &mut Raw, code: ReasonCode) -> Auth {
    match raw.next() {
        Packet::Auth(auth) => {
            assert_eq!(auth.reason_code, code, "{auth:?}");
            // [MQTT-4.12.0-5]: the server repeats the method.
            assert_eq!(
                auth.properties
                    .authentication_method
                    .as_ref()
                    .map(|m| m.as_str()),
                Some(SCRAM_SHA_256)
            );
            auth
        }
        other => panic!("expected AUTH, got {other:?}"),
    }
}

/// A raw connection that completed SCRAM as `user` on the given shard.
fn scram_login(placer: &mut Placer, shard: usize, client_id: &str, user: &str, pw: &str) -> Raw {
    let client = ScramClient::new(user, pw).unwrap();
    let mut raw = placer.tcp_on(shard);
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(scram_connect(
        client_id,
        client.client_first(),
    ))));
    let challenge = expect_auth(&mut raw, ReasonCode::ContinueAuthentication);
    let (client_final, verifier) = client
        .handle_server_first(challenge.properties.authentication_data.as_deref())
        .unwrap();
    raw.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        SCRAM_SHA_256,
        Some(client_final),
    ));
    let connack = raw.expect_connack();
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack
            .properties
            .authentication_method
            .as_ref()
            .map(|m| m.as_str()),
        Some(SCRAM_SHA_256)
    );
    verifier
        .verify_server_final(connack.properties.authentication_data.as_deref())
        .expect("the broker proves it knows the credentials");
    raw
}

/// Spec 4.12: CONNECT with SCRAM-SHA-256, AUTH 0x18 challenge [MQTT-4.12.0-2], AUTH 0x18
/// answer, CONNACK 0x00 with the server signature; the client then publishes and subscribes
/// across shards like any other.
#[test]
fn scram_sha_256_exchange_succeeds_over_raw_bytes() {
    let (broker, _users) = scram_broker(2);
    let mut placer = Placer::new(&broker);
    let mut sub = scram_login(&mut placer, 0, "scram-sub", "alice", "wonderland");
    sub.subscribe("auth/#", shardmq::codec::QoS::AtLeastOnce);
    let mut publisher = scram_login(&mut placer, 1, "scram-pub", "bob", "builder");
    publisher.publish_acked(
        "auth/t",
        b"hello",
        shardmq::codec::QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(&sub.receive_and_ack().payload[..], b"hello");
}

/// [MQTT-4.12.0-4]: a wrong password ends the exchange with an error CONNACK and the close.
#[test]
fn scram_wrong_password_is_refused() {
    let (broker, _users) = scram_broker(1);
    let client = ScramClient::new("alice", "not-it").unwrap();
    let mut raw = Raw::tcp(addr(&broker));
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(scram_connect(
        "bad",
        client.client_first(),
    ))));
    let challenge = expect_auth(&mut raw, ReasonCode::ContinueAuthentication);
    let (client_final, _) = client
        .handle_server_first(challenge.properties.authentication_data.as_deref())
        .unwrap();
    raw.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        SCRAM_SHA_256,
        Some(client_final),
    ));
    let code = raw.expect_connack().reason_code;
    assert!(
        matches!(
            code,
            ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized
        ),
        "{code:?}"
    );
    raw.expect_closed();
    assert_eq!(broker.stats().authentication_failures, 1);
}

/// [MQTT-4.12.0-1]: an Authentication Method the broker does not offer gets CONNACK 0x8C.
#[test]
fn unknown_authentication_method_gets_0x8c() {
    let (broker, _users) = scram_broker(1);
    let mut connect = connect_packet(V5, "kerberos", true);
    connect.properties.authentication_method = Some(MqttString::from("GSSAPI"));
    let mut raw = Raw::tcp(addr(&broker));
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(connect)));
    assert_eq!(
        raw.expect_connack().reason_code,
        ReasonCode::BadAuthenticationMethod
    );
    raw.expect_closed();
    // Without --scram-users no method is offered at all.
    let plain = start_broker(1);
    let mut raw = Raw::tcp(addr(&plain));
    raw.version = V5;
    raw.send(&Packet::Connect(Box::new(scram_connect(
        "x",
        b"n,,n=a,r=b".to_vec(),
    ))));
    assert_eq!(
        raw.expect_connack().reason_code,
        ReasonCode::BadAuthenticationMethod
    );
}

/// [MQTT-4.12.0-5]: an AUTH with another method during the exchange is a protocol error; so
/// is any packet other than AUTH.
#[test]
fn auth_with_another_method_or_other_packet_mid_exchange_closes() {
    let (broker, _users) = scram_broker(1);
    for bad in [
        auth_packet(ReasonCode::ContinueAuthentication, "PLAIN", None),
        Packet::PingReq,
    ] {
        let client = ScramClient::new("alice", "wonderland").unwrap();
        let mut raw = Raw::tcp(addr(&broker));
        raw.version = V5;
        raw.send(&Packet::Connect(Box::new(scram_connect(
            "mid",
            client.client_first(),
        ))));
        expect_auth(&mut raw, ReasonCode::ContinueAuthentication);
        raw.send(&bad);
        let before = raw.expect_closed();
        assert!(
            !before
                .iter()
                .any(|p| matches!(p, Packet::ConnAck(c) if c.reason_code == ReasonCode::Success)),
            "{before:?}"
        );
    }
}

/// [MQTT-4.12.1-1]: AUTH 0x19 re-authenticates a connected client (AUTH 0x18 both ways, then
/// AUTH 0x00 with the server signature) and the connection keeps working; re-authenticating
/// as another user is refused with DISCONNECT 0x87 [MQTT-4.12.1-2].
#[test]
fn re_authentication_succeeds_and_cannot_change_user() {
    let (broker, _users) = scram_broker(2);
    let mut placer = Placer::new(&broker);
    let mut raw = scram_login(&mut placer, 1, "reauth", "alice", "wonderland");
    let again = ScramClient::new("alice", "wonderland").unwrap();
    raw.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM_SHA_256,
        Some(again.client_first()),
    ));
    let challenge = expect_auth(&mut raw, ReasonCode::ContinueAuthentication);
    let (client_final, verifier) = again
        .handle_server_first(challenge.properties.authentication_data.as_deref())
        .unwrap();
    raw.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        SCRAM_SHA_256,
        Some(client_final),
    ));
    let done = expect_auth(&mut raw, ReasonCode::Success);
    verifier
        .verify_server_final(done.properties.authentication_data.as_deref())
        .unwrap();
    raw.ping();

    let other = ScramClient::new("bob", "builder").unwrap();
    raw.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM_SHA_256,
        Some(other.client_first()),
    ));
    let challenge = expect_auth(&mut raw, ReasonCode::ContinueAuthentication);
    let (client_final, _) = other
        .handle_server_first(challenge.properties.authentication_data.as_deref())
        .unwrap();
    raw.send(&auth_packet(
        ReasonCode::ContinueAuthentication,
        SCRAM_SHA_256,
        Some(client_final),
    ));
    let before = raw.expect_closed();
    let code = before.iter().find_map(|p| match p {
        Packet::Disconnect(d) => Some(d.reason_code),
        _ => None,
    });
    assert_eq!(code, Some(ReasonCode::NotAuthorized), "{before:?}");
}

/// AUTH from a client that used no Authentication Method in CONNECT is a protocol error.
#[test]
fn auth_without_method_in_connect_is_protocol_error() {
    let (broker, _users) = scram_broker(1);
    let mut raw = Raw::connect(addr(&broker), V5, "no-method");
    raw.send(&auth_packet(
        ReasonCode::ReAuthenticate,
        SCRAM_SHA_256,
        None,
    ));
    let before = raw.expect_closed();
    assert!(
        before.iter().any(
            |p| matches!(p, Packet::Disconnect(d) if d.reason_code == ReasonCode::ProtocolError)
        ),
        "{before:?}"
    );
}

/// Drives our sans-IO client over a blocking socket until it reports CONNACK (or fails).
fn client_connect(address: std::net::SocketAddr, session: &mut ClientSession) -> Option<Event> {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    session.start(Instant::now());
    let deadline = Instant::now() + WAIT;
    let mut input = BytesMut::new();
    while Instant::now() < deadline {
        let mut out = BytesMut::new();
        session.poll_transmit(&mut out);
        if !out.is_empty() {
            stream.write_all(&out).unwrap();
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
        if session.handle_input(&mut input, Instant::now()).is_err() {
            return None;
        }
        while let Some(event) = session.poll_event() {
            if matches!(event, Event::Connected(_) | Event::Disconnected(_)) {
                return Some(event);
            }
        }
    }
    panic!("our client: no CONNACK within {WAIT:?}");
}

/// End to end with our client engine (`ScramSha256Auth`), on the second shard: it completes
/// the exchange and checks the broker's signature; a wrong password does not connect.
#[test]
fn our_client_authenticates_with_scram() {
    let (broker, _users) = scram_broker(2);
    let mut placer = Placer::new(&broker);
    placer.skip_to(1);
    let options = ConnectOptions::new("engine").protocol(V5);
    let mut session = ClientSession::new(options)
        .with_enhanced_auth(Box::new(ScramSha256Auth::new("bob", "builder")));
    match client_connect(placer.addr, &mut session) {
        Some(Event::Connected(connack)) => assert_eq!(connack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK Success, got {other:?}"),
    }
    assert!(session.is_connected());
    let options = ConnectOptions::new("engine-bad").protocol(V5);
    let mut session = ClientSession::new(options)
        .with_enhanced_auth(Box::new(ScramSha256Auth::new("bob", "wrong")));
    let outcome = client_connect(placer.addr, &mut session);
    assert!(!session.is_connected(), "{outcome:?}");
}

fn password_broker() -> (BrokerHandle, TempFile) {
    let hash = PasswordHash::generate(b"secret", 101).unwrap().encode();
    let file = TempFile::new("passwords", &format!("alice:{hash}\n"));
    let broker = start_with(Config {
        password_file: Some(file.0.clone()),
        ..config(2)
    });
    (broker, file)
}

fn login(version: ProtocolVersion, user: Option<&str>, password: Option<&[u8]>) -> Connect {
    let mut connect = connect_packet(version, "pw", true);
    connect.username = user.map(MqttString::from);
    connect.password = password.map(Bytes::copy_from_slice);
    connect
}

/// `--password-file`: the right password connects; a wrong one or an unknown user get CONNACK
/// 0x86 Bad User Name or Password (MQTT 5); no credentials get 0x87 Not authorized, as
/// Mosquitto 2 answers when anonymous clients are not allowed.
#[test]
fn password_file_checks_v5_logins() {
    let (broker, _file) = password_broker();
    let (_ok, connack) =
        Raw::connect_with(addr(&broker), login(V5, Some("alice"), Some(b"secret")));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    for (user, password, code) in [
        (
            Some("alice"),
            Some(&b"wrong"[..]),
            ReasonCode::BadUserNameOrPassword,
        ),
        (
            Some("mallory"),
            Some(&b"secret"[..]),
            ReasonCode::BadUserNameOrPassword,
        ),
        (None, None, ReasonCode::NotAuthorized),
    ] {
        let (mut raw, connack) = Raw::connect_with(addr(&broker), login(V5, user, password));
        assert_eq!(connack.reason_code, code);
        raw.expect_closed();
    }
    let stats = broker.stats();
    assert_eq!(stats.authentication_failures, 3);
    assert_eq!(
        (
            stats.auth_bad_password,
            stats.auth_unknown_user,
            stats.auth_anonymous_refused
        ),
        (1, 1, 1)
    );
}

/// MQTT 3.1.1 clients get return code 4 (bad user name or password) from the same file.
#[test]
fn password_file_checks_v311_logins() {
    let (broker, _file) = password_broker();
    let (_ok, connack) =
        Raw::connect_with(addr(&broker), login(V4, Some("alice"), Some(b"secret")));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let (mut raw, connack) =
        Raw::connect_with(addr(&broker), login(V4, Some("alice"), Some(b"no")));
    // The codec decodes 3.1.1 return code 4 as BadUserNameOrPassword.
    assert_eq!(connack.reason_code, ReasonCode::BadUserNameOrPassword);
    raw.expect_closed();
}

/// A broker whose auth files cannot be read does not start.
#[test]
fn unreadable_auth_file_fails_start() {
    let result = shardmq::broker::Broker::start(Config {
        password_file: Some(PathBuf::from("/nonexistent/shardmq-passwords")),
        ..config(1)
    });
    assert!(result.is_err());
}
