//! Access control over real TCP (issue 13): Mosquitto password files from Debian's
//! `mosquitto_passwd` in shardmq, files from `shardmq-passwd` in a real Mosquitto, one ACL file
//! giving the same deliveries in both brokers, SCRAM with stored keys, JWT logins with keys made
//! here, and reloads that keep the old rules when a file is bad. Every server listens on
//! 127.0.0.1 with a free port; `.ci/test` installs `mosquitto` and `openssl`.

use crate::support::broker::*;
use bytes::Bytes;
use shardmq::broker::{BrokerHandle, Config};
use shardmq::codec::{
    Auth, Connect, MqttString, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
    SubscriptionOptions,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A fresh directory for one test's files, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "shardmq-acl-{}-{name}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("run a tool (.ci/test installs it)");
    assert!(output.status.success(), "{command:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn our_passwd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardmq-passwd"))
}

/// A Mosquitto on 127.0.0.1 with a free port and extra config lines; killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
}

impl Mosquitto {
    fn start(dir: &TempDir, extra: &str) -> Mosquitto {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.file(
                "mosquitto.conf",
                // `user root`: as root, Mosquitto would switch to its own user, which cannot read
                // the test's private (0600) files; as another user the line has no effect.
                &format!("listener {port} 127.0.0.1\npersistence false\nuser root\n{extra}"),
            );
            let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
                .into_iter()
                .find(|p| Path::new(p).exists())
                .unwrap_or("mosquitto");
            let mut child = Command::new(binary)
                .arg("-c")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn mosquitto (.ci/test installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Mosquitto { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("mosquitto did not start");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn login(
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut connect = connect_packet(version, id, true);
    connect.username = user.map(MqttString::from);
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    connect
}

fn connack_code(
    addr: SocketAddr,
    version: ProtocolVersion,
    user: &str,
    password: &str,
) -> ReasonCode {
    let (_raw, connack) =
        Raw::connect_with(addr, login(version, "pwcheck", Some(user), Some(password)));
    connack.reason_code
}

fn broker_with(config: Config) -> BrokerHandle {
    start_with(Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        shards: 1,
        ..config
    })
}

/// Files written by Debian's `mosquitto_passwd` ($7$ by default, $6$ with `-H sha512`) are read
/// unchanged; a plain-text file is refused with a message naming the line and the fix.
#[test]
fn mosquitto_passwd_files_are_accepted() {
    let dir = TempDir::new("mosq-passwd");
    let file = dir.0.join("passwd");
    run(Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(&file)
        .args(["alice", "secret"]));
    run(Command::new("mosquitto_passwd")
        .args(["-H", "sha512", "-b"])
        .arg(&file)
        .args(["bob", "builder"]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("alice:$7$101$") && text.contains("bob:$6$"),
        "{text}"
    );
    let broker = broker_with(Config {
        password_file: Some(file.clone()),
        ..Config::default()
    });
    let addr = addr(&broker);
    for version in [V4, V5] {
        assert_eq!(
            connack_code(addr, version, "alice", "secret"),
            ReasonCode::Success
        );
        assert_eq!(
            connack_code(addr, version, "bob", "builder"),
            ReasonCode::Success
        );
        assert_eq!(
            connack_code(addr, version, "alice", "builder"),
            ReasonCode::BadUserNameOrPassword
        );
    }
    let plain = dir.file("plain", "alice:secret\n");
    let error = shardmq::broker::Broker::start(Config {
        password_file: Some(plain),
        ..config(1)
    })
    .err()
    .expect("a plain-text file is refused")
    .to_string();
    assert!(
        error.contains("line 1") && error.contains("shardmq-passwd -U"),
        "{error}"
    );
}

/// Files written by `shardmq-passwd` (-c, -b, -H sha512, -U, -D) are accepted by a real
/// Mosquitto and by shardmq alike.
#[test]
fn our_passwd_files_work_in_mosquitto() {
    let dir = TempDir::new("our-passwd");
    let file = dir.0.join("passwd");
    run(our_passwd()
        .args(["-c", "-b"])
        .arg(&file)
        .args(["carol", "c-pass"]));
    run(our_passwd()
        .args(["-H", "sha512", "-b"])
        .arg(&file)
        .args(["dave", "d-pass"]));
    run(our_passwd().arg("-b").arg(&file).args(["erin", "e-pass"]));
    run(our_passwd().arg("-D").arg(&file).arg("erin"));
    // -U hashes a plain file in place, leaving hashed lines as they are.
    let plain = dir.file("plain", "frank:f-pass\n");
    run(our_passwd().arg("-U").arg(&plain));
    let hashed = std::fs::read_to_string(&plain).unwrap();
    assert!(
        hashed.starts_with("frank:$7$101$") && !hashed.contains("f-pass"),
        "{hashed}"
    );
    let mut text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("erin") && !text.contains("pass"), "{text}");
    text.push_str(&hashed);
    std::fs::write(&file, &text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.0.join("passwd"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the password file is private");
    }

    let mosquitto = Mosquitto::start(
        &dir,
        &format!("allow_anonymous false\npassword_file {}\n", file.display()),
    );
    let broker = broker_with(Config {
        password_file: Some(file.clone()),
        ..Config::default()
    });
    for addr in [mosquitto.addr(), addr(&broker)] {
        for version in [V4, V5] {
            for (user, password) in [("carol", "c-pass"), ("dave", "d-pass"), ("frank", "f-pass")] {
                assert_eq!(
                    connack_code(addr, version, user, password),
                    ReasonCode::Success
                );
            }
            // Refused by both (Mosquitto answers 3.1.1 with return code 5, shardmq with 4).
            let wrong = connack_code(addr, version, "carol", "d-pass");
            assert!(wrong.is_error(), "{addr} {version:?}: {wrong:?}");
        }
    }
}

const TABLE_ACL: &str = "\
# anonymous clients
topic read public/#
topic deny public/secret

user alice
topic readwrite alice/#
topic deny alice/private/#
topic write public/#
topic write inbox/#

user bob
topic read alice/#
topic readwrite bob/#

pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

/// One row: who publishes on which topic, who subscribes with which filter, and whether the
/// message is delivered (the same in both brokers).
struct Case {
    publisher: Option<&'static str>,
    subscriber: Option<&'static str>,
    /// The subscriber's client id (`%c`); the publisher uses it too when it is the subscriber.
    client_id: &'static str,
    filter: &'static str,
    topic: &'static str,
    same_client: bool,
    delivered: bool,
}

const fn case(
    publisher: Option<&'static str>,
    subscriber: Option<&'static str>,
    filter: &'static str,
    topic: &'static str,
    delivered: bool,
) -> Case {
    Case {
        publisher,
        subscriber,
        client_id: "sub",
        filter,
        topic,
        same_client: false,
        delivered,
    }
}

const CASES: &[Case] = &[
    case(Some("alice"), Some("bob"), "alice/#", "alice/x", true),
    case(
        Some("alice"),
        Some("bob"),
        "alice/#",
        "alice/private/x",
        false,
    ),
    case(Some("alice"), None, "public/#", "public/news", true),
    case(Some("alice"), None, "public/#", "public/secret", false),
    case(Some("bob"), Some("alice"), "#", "bob/x", false),
    case(Some("bob"), Some("bob"), "alice/#", "alice/y", false),
    case(None, None, "public/#", "public/z", false),
    case(Some("alice"), Some("bob"), "inbox/#", "inbox/bob/m", true),
    case(
        Some("alice"),
        Some("bob"),
        "inbox/#",
        "inbox/carol/m",
        false,
    ),
    case(Some("alice"), Some("bob"), "+/x", "alice/x", true),
    case(Some("alice"), None, "alice/#", "alice/x", false),
    Case {
        client_id: "dev3",
        same_client: true,
        ..case(None, None, "devices/dev3/#", "devices/dev3/t", true)
    },
    Case {
        client_id: "dev4",
        same_client: true,
        ..case(None, None, "devices/#", "devices/dev5/t", false)
    },
];

/// What one case did on one broker: the SUBACK code, the PUBACK code, and delivery.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    suback: ReasonCode,
    puback: ReasonCode,
    delivered: bool,
}

fn run_case(addr: SocketAddr, case: &Case) -> Outcome {
    let password = |user: Option<&str>| user.map(|u| format!("{u}-pw"));
    let sub_password = password(case.subscriber);
    let (mut sub, connack) = Raw::connect_with(
        addr,
        login(V5, case.client_id, case.subscriber, sub_password.as_deref()),
    );
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let suback = sub.subscribe(case.filter, QoS::AtLeastOnce);
    let pub_password = password(case.publisher);
    let mut publisher = if case.same_client {
        None
    } else {
        let (raw, connack) = Raw::connect_with(
            addr,
            login(V5, "pub", case.publisher, pub_password.as_deref()),
        );
        assert_eq!(connack.reason_code, ReasonCode::Success);
        Some(raw)
    };
    let sender = publisher.as_mut().unwrap_or(&mut sub);
    sender.publish(case.topic, b"probe", QoS::AtLeastOnce, false, 7);
    // The PUBACK comes after the broker routed the message; a PINGREQ round trip on the
    // subscriber then shows whether a PUBLISH was queued for it (one shard, one thread).
    let mut delivered = false;
    let puback = loop {
        match sender.next() {
            Packet::PubAck(ack) => break ack.reason_code,
            Packet::Publish(_) if case.same_client => delivered = true,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    };
    sub.send(&Packet::PingReq);
    loop {
        match sub.next() {
            Packet::PingResp => break,
            Packet::Publish(p) => {
                assert_eq!(p.topic.as_str(), case.topic);
                delivered = true;
                sub.send(&Packet::PubAck(ack(p.packet_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    Outcome {
        suback,
        puback,
        delivered,
    }
}

/// The same ACL file in shardmq and in Mosquitto: the same messages delivered and the same
/// publishes refused, for every row of the table. (Subscriptions: Mosquitto grants every
/// filter and filters on delivery; shardmq refuses a filter under which nothing is readable.)
#[test]
fn acl_table_matches_mosquitto() {
    let dir = TempDir::new("acl-table");
    let acl = dir.file("acl", TABLE_ACL);
    let passwd = dir.0.join("passwd");
    run(our_passwd()
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["alice", "alice-pw"]));
    run(our_passwd().arg("-b").arg(&passwd).args(["bob", "bob-pw"]));
    let mosquitto = Mosquitto::start(
        &dir,
        &format!(
            "allow_anonymous true\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            acl.display()
        ),
    );
    let broker = broker_with(Config {
        password_file: Some(passwd.clone()),
        acl_file: Some(acl.clone()),
        allow_anonymous: Some(true),
        ..Config::default()
    });
    let mut table = String::from(
        "publisher | subscriber (client id) | filter | topic | delivered | PUBACK shardmq/mosquitto | SUBACK shardmq/mosquitto\n",
    );
    for case in CASES {
        let ours = run_case(addr(&broker), case);
        let theirs = run_case(mosquitto.addr(), case);
        table.push_str(&format!(
            "{} | {} ({}) | {} | {} | {}/{} | {:?}/{:?} | {:?}/{:?}\n",
            case.publisher.unwrap_or("anonymous"),
            case.subscriber.unwrap_or("anonymous"),
            case.client_id,
            case.filter,
            case.topic,
            ours.delivered,
            theirs.delivered,
            ours.puback,
            theirs.puback,
            ours.suback,
            theirs.suback
        ));
        assert_eq!(ours.delivered, case.delivered, "shardmq: {}", case.topic);
        assert_eq!(
            theirs.delivered, case.delivered,
            "mosquitto: {}",
            case.topic
        );
        let refused = |code: ReasonCode| code == ReasonCode::NotAuthorized;
        assert_eq!(
            refused(ours.puback),
            refused(theirs.puback),
            "{}",
            case.topic
        );
    }
    println!("{table}");
    let stats = broker.stats();
    assert!(
        stats.acl_denied_publish > 0 && stats.acl_denied_delivery > 0,
        "{stats:?}"
    );
    assert!(stats.acl_denied_subscribe > 0, "{stats:?}");
}

/// MQTT 3.1.1: a denied QoS 1 publish is acknowledged and dropped, a refused filter gets 0x80;
/// a will on a topic the client may not write refuses the CONNECT; a retained message the
/// subscriber may not read is not sent at subscribe.
#[test]
fn v311_answers_wills_and_retained() {
    let dir = TempDir::new("acl-v311");
    let acl = dir.file(
        "acl",
        "topic readwrite open/#\ntopic write drop/#\ntopic deny hidden/#\n",
    );
    let broker = broker_with(Config {
        acl_file: Some(acl),
        ..Config::default()
    });
    let addr = addr(&broker);
    let mut client = Raw::connect(addr, V4, "v311");
    assert_eq!(
        client.subscribe("hidden/#", QoS::AtLeastOnce),
        ReasonCode::UnspecifiedError
    );
    client.publish("nope/x", b"x", QoS::AtLeastOnce, false, 3);
    assert_eq!(client.expect_puback().packet_id, 3);
    client.publish_acked("open/a", b"seen", QoS::AtLeastOnce, true, 4);
    client.publish_acked("drop/a", b"retained", QoS::AtLeastOnce, true, 5);
    client.publish_acked("nope/b", b"dropped", QoS::ExactlyOnce, true, 6);
    assert_eq!(
        client.subscribe("open/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(client.receive_and_ack().payload.as_ref(), b"seen");

    // "#" overlaps open/#, so it is granted; the retained message on drop/a (write-only) is
    // not sent at subscribe, the one on open/a is.
    let mut other = Raw::connect(addr, V5, "v5");
    assert_eq!(
        other.subscribe("#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    let retained = other.receive_and_ack();
    assert_eq!(retained.topic.as_str(), "open/a");
    other.expect_nothing();
    assert_eq!(broker.stats().acl_denied_publish, 2);

    let will = with_will(
        connect_packet(V5, "w", true),
        "hidden/will",
        b"",
        QoS::AtMostOnce,
        false,
    );
    let (_raw, connack) = Raw::connect_with(addr, will);
    assert_eq!(connack.reason_code, ReasonCode::NotAuthorized);
    assert_eq!(broker.stats().acl_denied_will, 1);
}

/// A client connected before a reload follows the new ACL from its next publish; a reload
/// with a bad ACL or password file keeps the previous version (and says why).
#[test]
fn reload_applies_new_rules_and_bad_files_keep_old_ones() {
    let dir = TempDir::new("acl-reload");
    let acl = dir.file("acl", "topic readwrite a/#\n");
    let passwd = dir.0.join("passwd");
    run(our_passwd()
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["alice", "one"]));
    let broker = broker_with(Config {
        acl_file: Some(acl.clone()),
        password_file: Some(passwd.clone()),
        allow_anonymous: Some(true),
        ..Config::default()
    });
    let addr = addr(&broker);
    let mut client = Raw::connect(addr, V5, "reloaded");
    let publish = |client: &mut Raw, id: u16| {
        client.publish("a/x", b"x", QoS::AtLeastOnce, false, id);
        client.expect_puback().reason_code
    };
    assert_eq!(publish(&mut client, 1), ReasonCode::NoMatchingSubscribers);

    std::fs::write(&acl, "topic sometimes a/#\n").unwrap();
    std::fs::write(&passwd, "alice:plain\n").unwrap();
    let errors = broker.reload_auth();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("acl file line 1")),
        "{errors:?}"
    );
    assert_eq!(
        publish(&mut client, 2),
        ReasonCode::NoMatchingSubscribers,
        "old ACL kept"
    );
    assert_eq!(
        connack_code(addr, V5, "alice", "one"),
        ReasonCode::Success,
        "old passwords kept"
    );

    std::fs::write(&acl, "topic readwrite b/#\n").unwrap();
    run(our_passwd()
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["alice", "two"]));
    assert!(broker.reload_auth().is_empty());
    assert_eq!(
        publish(&mut client, 3),
        ReasonCode::NotAuthorized,
        "new ACL in force"
    );
    assert_eq!(connack_code(addr, V5, "alice", "two"), ReasonCode::Success);
    assert_eq!(
        connack_code(addr, V5, "alice", "one"),
        ReasonCode::BadUserNameOrPassword
    );
}

/// SCRAM-SHA-256 against a `--scram-users` file written by `shardmq-passwd --scram`: the file
/// holds stored keys only, and the exchange succeeds with the right password only.
#[test]
#[allow(clippy::field_reassign_with_default)] // the properties sit behind DerefMut
fn scram_with_stored_keys_from_our_tool() {
    use shardmq::auth::ScramClient;
    let dir = TempDir::new("scram");
    let file = dir.0.join("scram");
    run(our_passwd()
        .args(["--scram", "-c", "-b"])
        .arg(&file)
        .args(["sam", "s3cret"]));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.starts_with("sam:SCRAM-SHA-256$4096:") && !text.contains("s3cret"),
        "{text}"
    );
    let broker = broker_with(Config {
        scram_users_file: Some(file),
        ..Config::default()
    });
    let exchange = |password: &str| -> ReasonCode {
        let client = ScramClient::new("sam", password).unwrap();
        let mut connect = connect_packet(V5, "scram", true);
        connect.properties.authentication_method = Some(MqttString::from("SCRAM-SHA-256"));
        connect.properties.authentication_data = Some(Bytes::from(client.client_first()));
        let mut raw = Raw::tcp(addr(&broker));
        raw.version = V5;
        raw.send(&Packet::Connect(Box::new(connect)));
        let Packet::Auth(auth) = raw.next() else {
            panic!("expected AUTH");
        };
        let (last, _verifier) = client
            .handle_server_first(auth.properties.authentication_data.as_deref())
            .unwrap();
        let mut properties = Properties::default();
        properties.authentication_method = Some(MqttString::from("SCRAM-SHA-256"));
        properties.authentication_data = Some(Bytes::from(last));
        raw.send(&Packet::Auth(Auth {
            reason_code: ReasonCode::ContinueAuthentication,
            properties,
        }));
        raw.expect_connack().reason_code
    };
    assert_eq!(exchange("s3cret"), ReasonCode::Success);
    assert_eq!(exchange("wrong"), ReasonCode::BadUserNameOrPassword);
}

fn openssl(args: &[&str]) {
    run(Command::new("openssl").args(args));
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(
    algorithm: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    claims: serde_json::Value,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, key).unwrap()
}

fn jwt_broker(settings: shardmq::auth::JwtSettings) -> BrokerHandle {
    broker_with(Config {
        jwt: Some(settings),
        ..Config::default()
    })
}

fn token_login(addr: SocketAddr, version: ProtocolVersion, token: &str) -> (Raw, ReasonCode) {
    let (raw, connack) =
        Raw::connect_with(addr, login(version, "jwt", Some("ignored"), Some(token)));
    (raw, connack.reason_code)
}

/// JWT logins with RS256, ES256 and HS256 keys made here: a valid token connects as its `sub`;
/// an expired one, one signed by another key or with another algorithm is refused and counted.
#[test]
fn jwt_logins_with_keys_generated_here() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use shardmq::auth::{JwtAlgorithm, JwtSettings};
    let dir = TempDir::new("jwt");
    let path = |name: &str| dir.0.join(name).to_str().unwrap().to_owned();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("rsa.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &path("rsa.pem"),
        "-pubout",
        "-out",
        &path("rsa.pub"),
    ]);
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &path("ec.pem"),
    ]);
    openssl(&[
        "pkey",
        "-in",
        &path("ec.pem"),
        "-pubout",
        "-out",
        &path("ec.pub"),
    ]);
    let secret = dir.file("hs.key", "a shared secret of some length\n");
    let read = |name: &str| std::fs::read(dir.0.join(name)).unwrap();
    let now = unix_now_secs();
    let valid = serde_json::json!({"sub": "device-1", "exp": now + 600});
    let expired = serde_json::json!({"sub": "device-1", "exp": now - 600});

    let rsa = EncodingKey::from_rsa_pem(&read("rsa.pem")).unwrap();
    let ec = EncodingKey::from_ec_pem(&read("ec.pem")).unwrap();
    let hs = EncodingKey::from_secret(b"a shared secret of some length");
    for (algorithm, settings_algorithm, key_file, key) in [
        (
            Algorithm::RS256,
            JwtAlgorithm::RS256,
            dir.0.join("rsa.pub"),
            &rsa,
        ),
        (
            Algorithm::ES256,
            JwtAlgorithm::ES256,
            dir.0.join("ec.pub"),
            &ec,
        ),
        (Algorithm::HS256, JwtAlgorithm::HS256, secret.clone(), &hs),
    ] {
        let broker = jwt_broker(JwtSettings::new(settings_algorithm, key_file));
        let addr = addr(&broker);
        for version in [V4, V5] {
            let (_raw, code) = token_login(addr, version, &token(algorithm, key, valid.clone()));
            assert_eq!(code, ReasonCode::Success, "{algorithm:?}");
        }
        let (_raw, code) = token_login(addr, V5, &token(algorithm, key, expired.clone()));
        assert_eq!(code, ReasonCode::BadUserNameOrPassword);
        let other = EncodingKey::from_secret(b"another secret");
        let (_raw, code) = token_login(addr, V5, &token(Algorithm::HS256, &other, valid.clone()));
        assert_eq!(
            code,
            ReasonCode::BadUserNameOrPassword,
            "wrong key or algorithm"
        );
        let (_raw, code) = token_login(addr, V5, "eyJ.not.a-token");
        assert_eq!(code, ReasonCode::BadUserNameOrPassword);
        let (_raw, connack) = Raw::connect_with(addr, login(V5, "anon", None, None));
        assert_eq!(
            connack.reason_code,
            ReasonCode::NotAuthorized,
            "JWT-only: no anonymous"
        );
        let stats = broker.stats();
        assert_eq!(stats.auth_expired_token, 1, "{algorithm:?}");
        assert_eq!(stats.auth_bad_password, 2, "{algorithm:?}");
    }
}

/// Topic claims act as the client's ACL; with `disconnect_on_expiry` the connection is closed
/// with DISCONNECT 0xA0 when the token expires.
#[test]
fn jwt_topic_claims_and_expiry_disconnect() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    use shardmq::auth::{JwtAlgorithm, JwtSettings};
    let dir = TempDir::new("jwt-claims");
    let secret = dir.file("hs.key", "claims secret");
    let key = EncodingKey::from_secret(b"claims secret");
    let broker = jwt_broker(JwtSettings {
        username_claim: "device".into(),
        publish_claim: Some("pub".into()),
        subscribe_claim: Some("sub_topics".into()),
        leeway_secs: 0,
        disconnect_on_expiry: true,
        ..JwtSettings::new(JwtAlgorithm::HS256, secret)
    });
    let addr = addr(&broker);
    let claims = serde_json::json!({
        "device": "d1",
        "exp": unix_now_secs() + 3,
        "pub": ["dev/d1/#"],
        "sub_topics": ["cmd/d1/#"],
    });
    let (mut raw, code) = token_login(addr, V5, &token(Algorithm::HS256, &key, claims));
    assert_eq!(code, ReasonCode::Success);
    assert_eq!(
        raw.subscribe("cmd/d1/+", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(
        raw.subscribe("cmd/d2/+", QoS::AtLeastOnce),
        ReasonCode::NotAuthorized
    );
    raw.publish("dev/d1/temp", b"1", QoS::AtLeastOnce, false, 1);
    assert_eq!(
        raw.expect_puback().reason_code,
        ReasonCode::NoMatchingSubscribers
    );
    raw.publish("dev/d2/temp", b"1", QoS::AtLeastOnce, false, 2);
    assert_eq!(raw.expect_puback().reason_code, ReasonCode::NotAuthorized);
    // The token expires within three seconds: DISCONNECT 0xA0, then the close.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        assert!(Instant::now() < deadline, "no disconnect at expiry");
        match raw.recv(Duration::from_millis(500)) {
            Ok(Packet::Disconnect(d)) => {
                assert_eq!(d.reason_code, ReasonCode::MaximumConnectTime);
                break;
            }
            Err(RecvError::Timeout) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
    raw.expect_closed();
    assert_eq!(broker.stats().token_expired_disconnects, 1);
}

/// Per-listener policy: one listener keeps the broker-wide policy (anonymous clients, no ACL),
/// another has its own `[listener.auth]` (password file, ACL, no anonymous clients); a TLS
/// listener with `use_identity_as_username` makes the certificate's CN (`alice`) the user the
/// ACL applies to.
#[test]
fn per_listener_policy_and_certificate_identity() {
    use crate::support::transport::{self as tls_support, Mqtt, Pki};
    use shardmq::auth::AuthPolicy;
    use shardmq::transport::{ListenerConfig, TransportKind};
    let dir = TempDir::new("listeners");
    let acl = dir.file("acl", "user alice\ntopic readwrite alice/#\n");
    let passwd = dir.0.join("passwd");
    run(our_passwd()
        .args(["-c", "-b"])
        .arg(&passwd)
        .args(["alice", "pw"]));
    let own = AuthPolicy {
        allow_anonymous: Some(false),
        password_file: Some(passwd),
        acl_file: Some(acl.clone()),
        ..AuthPolicy::default()
    };
    let open = ListenerConfig::mqtt(SocketAddr::from(([127, 0, 0, 1], 0)));
    let guarded = ListenerConfig {
        auth: Some(own.clone()),
        ..open.clone()
    };
    let pki = Pki::new();
    let mut identity = pki.with_client_ca(pki.listener(TransportKind::MqttTls), true);
    identity.use_identity_as_username = true;
    identity.auth = Some(AuthPolicy {
        password_file: None,
        ..own
    });
    let broker = tls_support::start(vec![open, guarded, identity], |_| {});
    let [open, guarded, identity] = broker.local_addrs()[..] else {
        panic!("three listeners");
    };
    let publish_code = |raw: &mut Raw, topic: &str| {
        raw.publish(topic, b"x", QoS::AtLeastOnce, false, 1);
        raw.expect_puback().reason_code
    };
    let mut anonymous = Raw::connect(open, V5, "anon");
    assert_eq!(
        publish_code(&mut anonymous, "bob/x"),
        ReasonCode::NoMatchingSubscribers
    );
    let (_raw, connack) = Raw::connect_with(guarded, login(V5, "anon2", None, None));
    assert_eq!(connack.reason_code, ReasonCode::NotAuthorized);
    let (mut alice, connack) =
        Raw::connect_with(guarded, login(V5, "a", Some("alice"), Some("pw")));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        publish_code(&mut alice, "alice/x"),
        ReasonCode::NoMatchingSubscribers
    );
    assert_eq!(publish_code(&mut alice, "bob/x"), ReasonCode::NotAuthorized);

    // The certificate (CN alice) is the login; the user name sent is ignored. (The TLS test
    // client speaks MQTT 3.1.1: a refused filter gets 0x80.)
    let with_cert = pki.client_config(
        Some((&pki.client_cert, &pki.client_key)),
        &[&rustls::version::TLS13],
    );
    let mut mqtt = Mqtt::new(tls_support::tls(identity, with_cert).unwrap());
    mqtt.send(&tls_support::connect("cert", Some("mallory")));
    match mqtt.recv() {
        Some(Packet::ConnAck(ack)) => assert_eq!(ack.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let both = SubscriptionOptions::default();
    mqtt.send(&subscribe_packet(
        1,
        &[("alice/#", both), ("mallory/#", both)],
    ));
    match mqtt.recv() {
        Some(Packet::SubAck(ack)) => assert_eq!(
            ack.reason_codes,
            [ReasonCode::Success, ReasonCode::UnspecifiedError]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    mqtt.send(&tls_support::publish("alice/t", b"mine"));
    match mqtt.recv() {
        Some(Packet::Publish(p)) => assert_eq!(p.topic.as_str(), "alice/t"),
        other => panic!("expected the message back, got {other:?}"),
    }
}

/// The daemon end to end: a Mosquitto configuration with `acl_file` runs as it is, SIGHUP
/// re-reads the ACL (connected clients follow it from their next publish), and a bad file on
/// SIGHUP is logged and keeps the rules in force.
#[test]
fn sighup_reloads_the_acl_of_a_mosquitto_configuration() {
    use std::io::{BufRead, BufReader};
    let dir = TempDir::new("hup");
    let acl = dir.file("acl", "topic readwrite a/#\n");
    let conf = dir.file(
        "mosquitto.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 0\nacl_file {}\n",
            acl.display()
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardmq"))
        .args(["--shards", "1", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shardmq");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |text: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?}"),
            }
        }
    };
    let line = wait_line("listening on ");
    let rest = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim_start_matches('[');
    let end = rest.find([']', ' ', ',']).unwrap_or(rest.len());
    let addr: SocketAddr = rest[..end].parse().unwrap();
    let hup = |child: &Child| {
        let status = Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let mut client = Raw::connect(addr, V5, "hup");
    let mut id = 0;
    let mut publish = |client: &mut Raw| {
        id += 1;
        client.publish("a/x", b"x", QoS::AtLeastOnce, false, id);
        client.expect_puback().reason_code
    };
    assert_eq!(publish(&mut client), ReasonCode::NoMatchingSubscribers);
    std::fs::write(&acl, "topic readwrite b/#\n").unwrap();
    hup(&child);
    wait_line("access-control files re-read");
    assert_eq!(publish(&mut client), ReasonCode::NotAuthorized);
    std::fs::write(&acl, "topic readwrite a/#\ntopic maybe b/#\n").unwrap();
    hup(&child);
    wait_line("keeping the previous version");
    assert_eq!(
        publish(&mut client),
        ReasonCode::NotAuthorized,
        "old rules kept"
    );
    let _ = child.kill();
    let _ = child.wait();
}
