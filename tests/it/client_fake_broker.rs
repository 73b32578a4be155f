//! The blocking client against a scripted fake broker on 127.0.0.1:0 that withholds
//! acknowledgements until told: backpressure, the server's Receive Maximum, keep-alive
//! timeouts, refusals.

use crate::support::client::{TestClient, TIMEOUT};
use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender};
use shardmq::client::{ClientError, ClientOptions, ConnectOptions, Event};
use shardmq::codec::{
    self, Ack, ConnAck, MoreProperties, Packet, Properties, ProtocolVersion, QoS, ReasonCode,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// How the fake broker behaves.
#[derive(Clone)]
struct Script {
    connack: ConnAck,
    answer_pings: bool,
    /// Close the first connection after this many PUBLISH packets; later connections that
    /// ask to resume (Clean Start = 0) get Session Present = 1.
    drop_first_after: Option<usize>,
    /// Close the connection right after CONNACK (as a broker does after refusing).
    close_after_connack: bool,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            connack: ConnAck::default(),
            answer_pings: true,
            drop_first_after: None,
            close_after_connack: false,
        }
    }
}

enum Order {
    /// Send PUBACK for this packet id.
    PubAck(u16),
}

/// What the fake broker saw.
#[derive(Debug)]
enum Seen {
    Connected,
    Packet(Packet),
    /// The most QoS 1 publishes outstanding (received, not yet acknowledged) at once.
    Closed {
        max_outstanding: usize,
    },
}

struct FakeBroker {
    port: u16,
    orders: Sender<Order>,
    seen: Receiver<Seen>,
}

impl FakeBroker {
    /// Serves connections one after another, each with `script`.
    fn start(script: Script) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (orders_tx, orders) = crossbeam_channel::unbounded();
        let (seen_tx, seen) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for (index, stream) in listener.incoming().enumerate() {
                let Ok(stream) = stream else { return };
                let drop_after = if index == 0 {
                    script.drop_first_after
                } else {
                    None
                };
                if serve(stream, &script, drop_after, &orders, &seen_tx).is_err() {
                    return;
                }
            }
        });
        FakeBroker {
            port,
            orders: orders_tx,
            seen,
        }
    }

    fn next_seen(&self) -> Seen {
        self.seen.recv_timeout(TIMEOUT).expect("fake broker event")
    }

    /// Waits for the next PUBLISH the broker receives; returns its packet id.
    fn next_publish(&self) -> u16 {
        loop {
            match self.next_seen() {
                Seen::Packet(Packet::Publish(publish)) => return publish.packet_id,
                Seen::Packet(_) | Seen::Connected => {}
                Seen::Closed { .. } => panic!("connection closed while waiting for PUBLISH"),
            }
        }
    }
}

/// One connection: CONNACK per script, record everything, PUBACK only when ordered. Returns
/// `Err` when the test is gone.
fn serve(
    mut stream: TcpStream,
    script: &Script,
    drop_after: Option<usize>,
    orders: &Receiver<Order>,
    seen: &Sender<Seen>,
) -> Result<(), ()> {
    stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|_| ())?;
    let mut version = ProtocolVersion::V3_1_1;
    let mut input = BytesMut::new();
    let mut chunk = [0u8; 4096];
    let mut outstanding = 0usize;
    let mut max_outstanding = 0usize;
    let mut publishes = 0usize;
    loop {
        let mut out = BytesMut::new();
        while let Ok(order) = orders.try_recv() {
            match order {
                Order::PubAck(packet_id) => {
                    outstanding = outstanding.saturating_sub(1);
                    Packet::PubAck(Ack {
                        packet_id,
                        reason_code: ReasonCode::Success,
                        properties: Properties::default(),
                    })
                    .encode(version, &mut out)
                    .expect("encodes");
                }
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return seen.send(Seen::Closed { max_outstanding }).map_err(|_| ());
            }
            Ok(n) => input.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return seen.send(Seen::Closed { max_outstanding }).map_err(|_| ()),
        }
        while let Some(packet) =
            codec::decode(&mut input, version, u32::MAX).expect("client sends valid packets")
        {
            match &packet {
                Packet::Connect(connect) => {
                    version = connect.protocol_version;
                    let mut connack = script.connack.clone();
                    connack.session_present =
                        !connect.clean_start && script.drop_first_after.is_some();
                    Packet::ConnAck(connack)
                        .encode(version, &mut out)
                        .expect("encodes");
                    seen.send(Seen::Connected).map_err(|_| ())?;
                    if script.close_after_connack {
                        let _ = stream.write_all(&out);
                        return seen.send(Seen::Closed { max_outstanding }).map_err(|_| ());
                    }
                }
                Packet::Publish(publish) => {
                    publishes += 1;
                    if publish.qos == QoS::AtLeastOnce {
                        outstanding += 1;
                        max_outstanding = max_outstanding.max(outstanding);
                    }
                }
                Packet::PingReq if script.answer_pings => {
                    Packet::PingResp.encode(version, &mut out).expect("encodes");
                }
                _ => {}
            }
            seen.send(Seen::Packet(packet)).map_err(|_| ())?;
            if drop_after == Some(publishes) {
                // Vanish mid-flight: no acknowledgement, just a closed socket.
                return seen.send(Seen::Closed { max_outstanding }).map_err(|_| ());
            }
        }
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return seen.send(Seen::Closed { max_outstanding }).map_err(|_| ());
        }
    }
}

fn options(window: u16) -> ConnectOptions {
    ConnectOptions::new("fake-client").inflight_window(window)
}

#[test]
fn publish_blocks_while_the_window_is_full() {
    let broker = FakeBroker::start(Script::default());
    let client = TestClient::connect(options(4), broker.port);
    for expected in 1..=4 {
        let packet_id = client
            .client
            .try_publish("bp/t", QoS::AtLeastOnce, false, "x")
            .expect("room in the window");
        assert_eq!(packet_id, Some(expected));
    }
    let full = client
        .client
        .try_publish("bp/t", QoS::AtLeastOnce, false, "x");
    assert!(matches!(full, Err(ClientError::WindowFull)), "{full:?}");
    // QoS 0 is not held by the window.
    client
        .client
        .try_publish("bp/t", QoS::AtMostOnce, false, "zero")
        .expect("QoS 0 passes");
    for expected in 1..=4 {
        assert_eq!(broker.next_publish(), expected);
    }
    assert_eq!(broker.next_publish(), 0, "the QoS 0 message");

    let (done_tx, done) = crossbeam_channel::bounded(1);
    let blocked_client = client.client.clone();
    std::thread::spawn(move || {
        let result = blocked_client.publish("bp/t", QoS::AtLeastOnce, false, "fifth");
        let _ = done_tx.send(result);
    });
    // It cannot complete while nothing is acknowledged, however slow the machine is.
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "publish returned although the window is full"
    );
    broker.orders.send(Order::PubAck(2)).expect("order");
    let result = done
        .recv_timeout(TIMEOUT)
        .expect("publish unblocked by the PUBACK");
    assert_eq!(result.expect("accepted"), Some(5));
    assert_eq!(broker.next_publish(), 5);
    client.wait_for("PUBACK 2", |e| *e == Event::PubAck(2));

    client.client.disconnect().expect("disconnect");
    loop {
        match broker.next_seen() {
            Seen::Closed { max_outstanding } => {
                assert_eq!(max_outstanding, 4, "never more than the window in flight");
                break;
            }
            Seen::Packet(_) | Seen::Connected => {}
        }
    }
}

#[test]
fn the_window_is_capped_by_the_server_receive_maximum() {
    let connack = ConnAck {
        properties: Properties::from(MoreProperties {
            receive_maximum: Some(2),
            ..MoreProperties::default()
        }),
        ..ConnAck::default()
    };
    let broker = FakeBroker::start(Script {
        connack,
        ..Script::default()
    });
    let client = TestClient::connect(options(10).protocol(ProtocolVersion::V5), broker.port);
    for _ in 0..2 {
        client
            .client
            .try_publish("rm/t", QoS::ExactlyOnce, false, "x")
            .expect("room");
    }
    let full = client
        .client
        .try_publish("rm/t", QoS::AtLeastOnce, false, "x");
    assert!(matches!(full, Err(ClientError::WindowFull)), "{full:?}");
}

#[test]
fn missing_pingresp_is_a_keep_alive_timeout_then_the_client_reconnects() {
    let broker = FakeBroker::start(Script {
        answer_pings: false,
        ..Script::default()
    });
    let client = TestClient::connect(
        ClientOptions::from(options(4).keep_alive_secs(1))
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
        broker.port,
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match client.events.recv_timeout(TIMEOUT) {
            Ok(Err(ClientError::KeepAliveTimeout)) => break,
            Ok(other) => assert!(other.is_ok(), "unexpected {other:?}"),
            Err(_) => panic!("no keep-alive timeout"),
        }
        assert!(Instant::now() < deadline);
    }
    client.wait_for("reconnect", |e| matches!(e, Event::Reconnected(_)));
}

#[test]
fn a_refused_connection_ends_the_iterator_when_reconnect_is_off() {
    let broker = FakeBroker::start(Script {
        connack: ConnAck {
            reason_code: ReasonCode::NotAuthorized,
            ..ConnAck::default()
        },
        ..Script::default()
    });
    let client = TestClient::spawn(
        ClientOptions::from(options(4)).reconnect(false),
        broker.port,
    );
    let first = client.events.recv_timeout(TIMEOUT).expect("a notification");
    assert!(
        matches!(
            first,
            Err(ClientError::ConnectionRefused(ReasonCode::NotAuthorized))
        ),
        "{first:?}"
    );
    // The driving thread's iterator ended, so the channel closes.
    assert!(matches!(
        client.events.recv_timeout(TIMEOUT),
        Err(crossbeam_channel::RecvTimeoutError::Disconnected)
    ));
    assert!(matches!(
        client.client.publish("t", QoS::AtMostOnce, false, "x"),
        Err(ClientError::ConnectionClosed)
    ));
}

#[test]
fn try_publish_reports_throttling() {
    let broker = FakeBroker::start(Script::default());
    let mut options = ClientOptions::from(options(4));
    // One token per 20 s: the second call comes long before the next token.
    options.max_rate_per_sec = Some(0.05);
    let client = TestClient::connect(options, broker.port);
    client
        .client
        .try_publish("th/t", QoS::AtMostOnce, false, "first")
        .expect("the burst token");
    let second = client
        .client
        .try_publish("th/t", QoS::AtMostOnce, false, "second");
    assert!(matches!(second, Err(ClientError::Throttled)), "{second:?}");
}

#[test]
fn a_lost_connection_resends_unacknowledged_publishes_with_dup() {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let broker = FakeBroker::start(Script {
            drop_first_after: Some(2),
            ..Script::default()
        });
        let client = TestClient::connect(
            ClientOptions::from(
                options(4)
                    .protocol(version)
                    .clean_start(false)
                    .session_expiry_secs(60),
            )
            .reconnect_delay(Duration::from_millis(50), Duration::from_millis(200)),
            broker.port,
        );
        for _ in 0..2 {
            client
                .client
                .publish("dup/t", QoS::AtLeastOnce, false, "x")
                .expect("publish");
        }
        let mut first = Vec::new();
        let mut second = Vec::new();
        let mut connections = 0;
        while second.len() < 2 {
            match broker.next_seen() {
                Seen::Connected => connections += 1,
                Seen::Packet(Packet::Publish(publish)) if connections == 1 => {
                    first.push((publish.packet_id, publish.dup))
                }
                Seen::Packet(Packet::Publish(publish)) => {
                    second.push((publish.packet_id, publish.dup))
                }
                Seen::Packet(_) | Seen::Closed { .. } => {}
            }
        }
        assert_eq!(first, vec![(1, false), (2, false)], "{version:?}");
        assert_eq!(
            second,
            vec![(1, true), (2, true)],
            "resent in order with DUP, {version:?}"
        );
        let event = client.wait_for("reconnect", |e| matches!(e, Event::Reconnected(_)));
        let Event::Reconnected(connack) = event else {
            unreachable!()
        };
        assert!(connack.session_present);
        broker.orders.send(Order::PubAck(1)).expect("order");
        broker.orders.send(Order::PubAck(2)).expect("order");
        client.wait_for("PUBACK 1", |e| *e == Event::PubAck(1));
        client.wait_for("PUBACK 2", |e| *e == Event::PubAck(2));
    }
}

#[test]
fn disconnect_releases_a_publish_waiting_for_the_window() {
    let broker = FakeBroker::start(Script::default());
    let client = TestClient::connect(options(1), broker.port);
    client
        .client
        .publish("w/t", QoS::AtLeastOnce, false, "fills the window")
        .expect("publish");
    let (done_tx, done) = crossbeam_channel::bounded(1);
    let waiting = client.client.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(waiting.publish("w/t", QoS::AtLeastOnce, false, "waits"));
    });
    assert!(
        done.recv_timeout(Duration::from_millis(300)).is_err(),
        "must wait"
    );
    client.client.disconnect().expect("disconnect");
    let result = done
        .recv_timeout(TIMEOUT)
        .expect("released by the disconnect");
    assert!(
        matches!(result, Err(ClientError::ConnectionClosed)),
        "{result:?}"
    );
    client.wait_for("our DISCONNECT", |e| matches!(e, Event::Disconnected(None)));
    loop {
        match broker.next_seen() {
            Seen::Packet(Packet::Disconnect(_)) => break,
            Seen::Packet(Packet::Publish(publish)) => {
                assert_eq!(&publish.payload[..], b"fills the window")
            }
            Seen::Closed { .. } => panic!("closed without DISCONNECT"),
            Seen::Packet(_) | Seen::Connected => {}
        }
    }
}

#[test]
fn a_refusal_followed_by_a_close_is_reported_as_the_refusal() {
    let broker = FakeBroker::start(Script {
        connack: ConnAck {
            reason_code: ReasonCode::BadUserNameOrPassword,
            ..ConnAck::default()
        },
        close_after_connack: true,
        ..Script::default()
    });
    let client = TestClient::spawn(
        ClientOptions::from(options(4).protocol(ProtocolVersion::V5)).reconnect(false),
        broker.port,
    );
    let first = client.events.recv_timeout(TIMEOUT).expect("a notification");
    assert!(
        matches!(
            first,
            Err(ClientError::ConnectionRefused(
                ReasonCode::BadUserNameOrPassword
            ))
        ),
        "{first:?}"
    );
}
