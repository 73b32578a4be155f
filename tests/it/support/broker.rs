//! Helpers for the broker integration tests: a broker on 127.0.0.1 port 0 inside the test, and a
//! raw-bytes MQTT client built on the codec (blocking std sockets with timeouts).

use bytes::{Bytes, BytesMut};
use shardmq::broker::{Broker, BrokerHandle, Config};
use shardmq::codec::{
    self, Ack, ConnAck, Connect, Disconnect, MqttString, Packet, Properties, ProtocolVersion,
    Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck,
    Unsubscribe, Will,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Generous timeout for anything that should happen (loaded 2-core machines).
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to wait when checking that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// A test config: loopback port 0, `shards` shards.
pub fn config(shards: usize) -> Config {
    Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        shards,
        ..Config::default()
    }
}

pub fn start_broker(shards: usize) -> BrokerHandle {
    start_with(config(shards))
}

pub fn start_with(config: Config) -> BrokerHandle {
    let _ = env_logger::builder().is_test(true).try_init();
    Broker::start(config).expect("broker starts")
}

pub fn addr(broker: &BrokerHandle) -> SocketAddr {
    broker.local_addrs()[0]
}

/// Raises this process's soft limit of open files to at least `wanted` (up to the hard limit),
/// for tests that hold many sockets: the broker's and the clients' ends live in one process.
pub fn raise_fd_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur >= wanted as libc::rlim_t {
            return;
        }
        limit.rlim_cur = (wanted as libc::rlim_t).min(limit.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

/// Waits until `f` holds, polling; panics with `what` after `WAIT`.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Why `recv` returned no packet.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    Timeout,
    Closed,
    Decode(String),
}

/// A raw MQTT client: whatever bytes the test wants, decoded answers.
pub struct Raw {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a TCP connection (no MQTT yet).
    pub fn tcp(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: BytesMut::new(),
            version: ProtocolVersion::V3_1_1,
        }
    }

    /// TCP connect, CONNECT with `connect`, expect CONNACK (any code). Returns the CONNACK.
    pub fn connect_with(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::tcp(addr);
        raw.version = connect.protocol_version;
        raw.send(&Packet::Connect(Box::new(connect)));
        let connack = raw.expect_connack();
        (raw, connack)
    }

    /// Connects with `client_id`, clean start, no keep-alive; asserts success.
    pub fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> Raw {
        let (raw, connack) = Raw::connect_with(addr, connect_packet(version, client_id, true));
        assert_eq!(
            connack.reason_code,
            ReasonCode::Success,
            "CONNACK for {client_id}"
        );
        raw
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encodes");
        self.stream.write_all(&out).expect("send");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send bytes");
    }

    /// The next packet within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Result<Packet, RecvError> {
        let deadline = Instant::now() + timeout;
        loop {
            match codec::decode(&mut self.buf, self.version, u32::MAX) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(RecvError::Decode(e.to_string())),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            self.stream.set_read_timeout(Some(deadline - now)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(RecvError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(RecvError::Timeout)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(RecvError::Closed),
            }
        }
    }

    /// The next packet, which must arrive within `WAIT`.
    pub fn next(&mut self) -> Packet {
        match self.recv(WAIT) {
            Ok(packet) => packet,
            Err(e) => panic!("expected a packet, got {e:?}"),
        }
    }

    pub fn expect_connack(&mut self) -> ConnAck {
        match self.next() {
            Packet::ConnAck(c) => c,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn expect_suback(&mut self) -> SubAck {
        match self.next() {
            Packet::SubAck(s) => s,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    pub fn expect_unsuback(&mut self) -> UnsubAck {
        match self.next() {
            Packet::UnsubAck(s) => s,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    pub fn expect_publish(&mut self) -> Publish {
        match self.next() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub fn expect_puback(&mut self) -> Ack {
        match self.next() {
            Packet::PubAck(a) => a,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    #[allow(dead_code)] // no test expects a DISCONNECT today; kept for the next that does
    pub fn expect_disconnect(&mut self) -> Disconnect {
        match self.next() {
            Packet::Disconnect(d) => d,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    /// Asserts that nothing arrives for `QUIET`.
    pub fn expect_nothing(&mut self) {
        match self.recv(QUIET) {
            Err(RecvError::Timeout) => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Asserts the broker closes the connection within `WAIT` (packets before are returned).
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut before = Vec::new();
        loop {
            match self.recv(WAIT) {
                Ok(packet) => before.push(packet),
                Err(RecvError::Closed) => return before,
                Err(e) => panic!("expected the connection to close, got {e:?} after {before:?}"),
            }
        }
    }

    /// SUBSCRIBE one filter and wait for its SUBACK; returns the reason code.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> ReasonCode {
        self.subscribe_with(
            filter,
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )
    }

    pub fn subscribe_with(&mut self, filter: &str, options: SubscriptionOptions) -> ReasonCode {
        self.send(&subscribe_packet(1, &[(filter, options)]));
        let suback = self.expect_suback();
        assert_eq!(suback.packet_id, 1);
        suback.reason_codes[0]
    }

    /// PUBLISH (QoS 0 needs no packet id; 1 and 2 use `packet_id`).
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: u16) {
        self.send(&publish_packet(topic, payload, qos, retain, packet_id));
    }

    /// PUBLISH and complete the QoS handshake from the publisher's side.
    pub fn publish_acked(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
        packet_id: u16,
    ) {
        self.publish(topic, payload, qos, retain, packet_id);
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert_eq!(self.expect_puback().packet_id, packet_id),
            QoS::ExactlyOnce => {
                match self.next() {
                    Packet::PubRec(a) => assert_eq!(a.packet_id, packet_id),
                    other => panic!("expected PUBREC, got {other:?}"),
                }
                self.send(&Packet::PubRel(ack(packet_id)));
                match self.next() {
                    Packet::PubComp(a) => assert_eq!(a.packet_id, packet_id),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
            }
        }
    }

    /// Receives a PUBLISH and acknowledges it as a subscriber would.
    pub fn receive_and_ack(&mut self) -> Publish {
        let publish = self.expect_publish();
        match publish.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(ack(publish.packet_id))),
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(ack(publish.packet_id)));
                match self.next() {
                    Packet::PubRel(a) => assert_eq!(a.packet_id, publish.packet_id),
                    other => panic!("expected PUBREL, got {other:?}"),
                }
                self.send(&Packet::PubComp(ack(publish.packet_id)));
            }
        }
        publish
    }

    /// A PINGREQ/PINGRESP round trip: everything the broker did before is visible after it.
    pub fn ping(&mut self) {
        self.send(&Packet::PingReq);
        match self.next() {
            Packet::PingResp => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default()));
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }
}

pub fn ack(packet_id: u16) -> Ack {
    Ack {
        packet_id,
        reason_code: ReasonCode::Success,
        properties: Properties::default(),
    }
}

pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol_version: version,
        clean_start,
        keep_alive_secs: 0,
        client_id: MqttString::from(client_id),
        ..Connect::default()
    }
}

/// A CONNECT with a will on `topic`.
pub fn with_will(
    mut connect: Connect,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> Connect {
    connect.will = Some(Will {
        topic: MqttString::from(topic),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Properties::default(),
    });
    connect
}

pub fn subscribe_packet(packet_id: u16, filters: &[(&str, SubscriptionOptions)]) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        subscriptions: filters
            .iter()
            .map(|(f, o)| Subscription {
                filter: MqttString::from(*f),
                options: *o,
            })
            .collect(),
    })
}

pub fn unsubscribe_packet(packet_id: u16, filters: &[&str]) -> Packet {
    Packet::Unsubscribe(Unsubscribe {
        packet_id,
        properties: Properties::default(),
        filters: filters.iter().map(|f| MqttString::from(*f)).collect(),
    })
}

pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    packet_id: u16,
) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: MqttString::from(topic),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Opens `n` raw TCP+MQTT connections so that the next connection lands on the wanted shard:
/// the broker assigns connection k to shard k % shards in accept order.
pub struct Placer {
    pub addr: SocketAddr,
    pub shards: usize,
    pub next: usize,
    /// Connections opened only to skip shards; kept open so counts stay stable.
    pub fillers: Vec<Raw>,
}

impl Placer {
    pub fn new(broker: &BrokerHandle) -> Placer {
        Placer {
            addr: addr(broker),
            shards: broker.stats().connections_per_shard.len(),
            next: 0,
            fillers: Vec::new(),
        }
    }

    /// Opens filler TCP connections until the next one goes to `shard`. Each filler is accepted
    /// (CONNECT sent and answered) before the next connect, so accept order is certain.
    pub fn skip_to(&mut self, shard: usize) {
        while self.next % self.shards != shard {
            let raw = Raw::connect(
                self.addr,
                ProtocolVersion::V3_1_1,
                &format!("filler-{}", self.next),
            );
            self.fillers.push(raw);
            self.next += 1;
        }
    }

    /// A connected raw client on `shard`.
    pub fn raw_on(&mut self, shard: usize, version: ProtocolVersion, client_id: &str) -> Raw {
        self.skip_to(shard);
        self.next += 1;
        Raw::connect(self.addr, version, client_id)
    }

    /// CONNECT with `connect` on `shard`.
    pub fn connect_on(&mut self, shard: usize, connect: Connect) -> (Raw, ConnAck) {
        self.skip_to(shard);
        self.next += 1;
        Raw::connect_with(self.addr, connect)
    }

    /// A plain TCP connection on `shard` (no CONNECT sent). Callers must make sure the accept
    /// happened before placing another client (e.g. by sending CONNECT and reading CONNACK).
    pub fn tcp_on(&mut self, shard: usize) -> Raw {
        self.skip_to(shard);
        self.next += 1;
        Raw::tcp(self.addr)
    }
}
