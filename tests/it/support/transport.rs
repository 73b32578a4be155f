//! Shared by the transport tests: certificates made at test time (rcgen; no private key is
//! committed), brokers with TLS / WebSocket / PROXY listeners on 127.0.0.1 port 0, and small
//! blocking MQTT clients over TLS (rustls) and WebSocket (tungstenite).

use bytes::BytesMut;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shardmq::broker::{Broker, BrokerHandle, Config};
use shardmq::codec::{self, Packet, ProtocolVersion};
use shardmq::transport::{ListenerConfig, TransportKind};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(5);

/// A CA, a server certificate for 127.0.0.1/localhost, a client certificate (CN `alice`)
/// signed by the CA, and a client certificate signed by another CA, as PEM files in a fresh
/// temporary directory.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn leaf(
    cn: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
) -> (String, String) {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "shardmq-transport-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_cert, ca_key) = ca("shardmq test CA");
        let (rogue_ca, rogue_ca_key) = ca("rogue CA");
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca = write("ca.pem", &ca_cert.pem());
        let (cert, key) = leaf(
            "shardmq test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &ca_cert,
            &ca_key,
        );
        let server_cert = write("server.pem", &cert);
        let server_key = write("server.key", &key);
        let (cert, key) = leaf(
            "alice",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &ca_cert,
            &ca_key,
        );
        let client_cert = write("client.pem", &cert);
        let client_key = write("client.key", &key);
        let (cert, key) = leaf(
            "mallory",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
            &rogue_ca,
            &rogue_ca_key,
        );
        let rogue_cert = write("rogue.pem", &cert);
        let rogue_key = write("rogue.key", &key);
        Pki {
            dir,
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            rogue_cert,
            rogue_key,
            ca_cert,
            ca_key,
        }
    }

    /// A new server certificate with subject CN `cn`, signed by the same CA, written over
    /// the server certificate and key files (for reload tests).
    pub fn replace_server_cert(&self, cn: &str) {
        let (cert, key) = leaf(
            cn,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            &self.ca_cert,
            &self.ca_key,
        );
        std::fs::write(&self.server_cert, cert).unwrap();
        std::fs::write(&self.server_key, key).unwrap();
    }

    /// A listener of `transport` on 127.0.0.1:0 with the server certificate.
    pub fn listener(&self, transport: TransportKind) -> ListenerConfig {
        let mut listener = ListenerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)), transport);
        if transport.is_tls() {
            listener.cert_file = Some(self.server_cert.clone());
            listener.key_file = Some(self.server_key.clone());
        }
        listener
    }

    /// `listener` asking for client certificates signed by the CA (`required` or optional).
    pub fn with_client_ca(&self, mut listener: ListenerConfig, required: bool) -> ListenerConfig {
        listener.ca_file = Some(self.ca.clone());
        listener.require_certificate = required;
        listener
    }

    /// A rustls client trusting the CA, with `client` = Some((cert, key)) files to present.
    pub fn client_config(
        &self,
        client: Option<(&Path, &Path)>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        #[allow(deprecated)] // the ring provider, as the broker uses
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap();
                let key = PrivateKeyDer::from_pem_file(key).unwrap();
                builder.with_client_auth_cert(certs, key).unwrap()
            }
        })
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A broker with `listeners` only (one shard per two cores is plenty here).
pub fn start(listeners: Vec<ListenerConfig>, tune: impl FnOnce(&mut Config)) -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    let mut config = Config {
        listen: Vec::new(),
        listeners,
        shards: 2,
        ..Config::default()
    };
    tune(&mut config);
    Broker::start(config).expect("broker starts")
}

/// A TCP connection with read/write timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` (handshake completed), or the handshake's error.
pub fn tls(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream> {
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp(addr));
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// A WebSocket (client side) over `stream`, offering `subprotocols` on `path`.
pub fn websocket<S: Read + Write>(
    stream: S,
    addr: SocketAddr,
    path: &str,
    subprotocols: &str,
) -> Result<tungstenite::WebSocket<S>, String> {
    use tungstenite::client::IntoClientRequest;
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if !subprotocols.is_empty() {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", subprotocols.parse().unwrap());
    }
    match tungstenite::client::client(request, stream) {
        Ok((socket, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_string());
            assert!(
                chosen.as_deref().is_some_and(|c| subprotocols.contains(c)),
                "subprotocol answered: {chosen:?}"
            );
            Ok(socket)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// MQTT packets over any byte stream (blocking, with the stream's timeouts).
pub struct Mqtt<S> {
    pub io: S,
    buf: BytesMut,
}

impl<S: Read + Write> Mqtt<S> {
    pub fn new(io: S) -> Mqtt<S> {
        Mqtt {
            io,
            buf: BytesMut::new(),
        }
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet
            .encode(ProtocolVersion::V3_1_1, &mut out)
            .expect("encodable");
        self.io.write_all(&out).unwrap();
        self.io.flush().unwrap();
    }

    /// The next packet; `None` when the connection closed or nothing came within `WAIT`.
    pub fn recv(&mut self) -> Option<Packet> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(Some(packet)) =
                codec::decode(&mut self.buf, ProtocolVersion::V3_1_1, u32::MAX)
            {
                return Some(packet);
            }
            if Instant::now() > deadline {
                return None;
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }
}

/// CONNECT as `client_id` (3.1.1, clean session) with an optional username.
pub fn connect(client_id: &str, username: Option<&str>) -> Packet {
    let mut connect = codec::Connect {
        protocol_version: ProtocolVersion::V3_1_1,
        clean_start: true,
        keep_alive_secs: 30,
        client_id: client_id.into(),
        ..Default::default()
    };
    connect.username = username.map(Into::into);
    Packet::Connect(Box::new(connect))
}

/// CONNECT, SUBSCRIBE to `topic`, PUBLISH `payload` to it at QoS 0 and receive it back:
/// panics unless every step works.
pub fn echo<S: Read + Write>(mqtt: &mut Mqtt<S>, client_id: &str, topic: &str, payload: &[u8]) {
    mqtt.send(&connect(client_id, None));
    match mqtt.recv() {
        Some(Packet::ConnAck(ack)) => {
            assert_eq!(ack.reason_code, codec::ReasonCode::Success, "{client_id}")
        }
        other => panic!("{client_id}: expected CONNACK, got {other:?}"),
    }
    subscribe_and_echo(mqtt, client_id, topic, payload);
}

/// SUBSCRIBE to `topic`, PUBLISH `payload` and receive it.
pub fn subscribe_and_echo<S: Read + Write>(
    mqtt: &mut Mqtt<S>,
    client_id: &str,
    topic: &str,
    payload: &[u8],
) {
    let subscribe = Packet::Subscribe(codec::Subscribe {
        packet_id: 1,
        subscriptions: vec![codec::Subscription {
            filter: topic.into(),
            options: codec::SubscriptionOptions::default(),
        }],
        properties: Default::default(),
    });
    mqtt.send(&subscribe);
    assert!(
        matches!(mqtt.recv(), Some(Packet::SubAck(_))),
        "{client_id}: SUBACK"
    );
    mqtt.send(&publish(topic, payload));
    match mqtt.recv() {
        Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], payload, "{client_id}"),
        other => panic!("{client_id}: expected PUBLISH, got {other:?}"),
    }
}

pub fn publish(topic: &str, payload: &[u8]) -> Packet {
    Packet::Publish(codec::Publish {
        topic: topic.into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    })
}

/// Whether `stream` is closed by the broker within `WAIT` (reads end or fail).
pub fn closed_by_broker<S: Read>(stream: &mut S) -> bool {
    let deadline = Instant::now() + WAIT;
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
    false
}

/// The bytes the broker sent before closing (up to `WAIT`).
pub fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&chunk[..n]),
        }
    }
}
