//! Issue 11 (docs/memory.md): bounds that hold whatever one client does, each asserting that
//! the bound holds, that an unrelated client's traffic keeps flowing, and that nothing the
//! broker acknowledged is lost. Run in the deterministic simulation (`shardmq::sim`) where the
//! kernel's buffers are not needed.

use bytes::Bytes;
use shardmq::broker::Config;
use shardmq::client::ConnectOptions;
use shardmq::codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
use shardmq::sim::{Sim, SimClient};
use std::time::Duration;

const OUTGOING_LIMIT_BYTES: usize = 4096;

fn config() -> Config {
    Config {
        shards: 1,
        max_outgoing_bytes: OUTGOING_LIMIT_BYTES,
        ..Config::default()
    }
}

fn options(id: &str) -> ConnectOptions {
    ConnectOptions::new(id)
        .protocol(ProtocolVersion::V3_1_1)
        .keep_alive_secs(0)
}

/// Rounds until the simulation is idle (every client pumped each round).
fn quiesce(sim: &mut Sim, clients: &mut [&mut SimClient]) {
    for _ in 0..10_000 {
        sim.step();
        for client in clients.iter_mut() {
            client.pump(sim);
        }
        if sim.is_idle() {
            return;
        }
    }
    panic!("the simulation did not settle");
}

fn connect(sim: &mut Sim, id: &str) -> SimClient {
    let mut client = SimClient::connect(sim, 0, options(id)).expect("room for a connection");
    quiesce(sim, &mut [&mut client]);
    assert!(client.is_connected(), "CONNACK: {:?}", client.events);
    client
}

/// A QoS 0 subscriber and publisher on the hostile client's shard: `count` messages published
/// must all arrive.
fn victim_round_trip(sim: &mut Sim, subscriber: &mut SimClient, publisher: &mut SimClient) {
    let before = subscriber.received.len();
    let now = sim.now();
    for i in 0..50u32 {
        let body = Bytes::from(i.to_be_bytes().to_vec());
        let _ = publisher
            .session
            .publish(MqttString::from("v"), body, QoS::AtMostOnce, false, now);
    }
    publisher.flush(sim);
    quiesce(sim, &mut [subscriber, publisher]);
    assert_eq!(
        subscriber.received.len() - before,
        50,
        "the victim's QoS 0 messages keep flowing"
    );
}

/// A client pipelining `packet` (whose reply is `reply_len` bytes) and never reading: the
/// broker stops reading it at its outgoing limit instead of buffering every reply; a QoS 0
/// pair on the same shard keeps flowing; once it reads, it gets every reply.
fn replies_to_a_client_that_never_reads(packet: &[u8], reply_len: usize) {
    let count = 20_000;
    let mut sim = Sim::new(config(), 1).expect("valid config");
    let mut subscriber = connect(&mut sim, "sub");
    subscriber
        .session
        .subscribe(&[(MqttString::from("v"), SubscriptionOptions::default())]);
    subscriber.flush(&mut sim);
    let mut publisher = connect(&mut sim, "pub");
    quiesce(&mut sim, &mut [&mut subscriber, &mut publisher]);
    let hostile = connect(&mut sim, "hostile");
    sim.set_write_capacity(hostile.conn, 0);
    let flood: Vec<u8> = packet.repeat(count);
    sim.send(hostile.conn, &flood);
    for _ in 0..200 {
        sim.step();
        let (buffered, _) = sim.core(0).buffered_bytes();
        assert!(
            buffered <= OUTGOING_LIMIT_BYTES + reply_len,
            "{buffered} bytes buffered for a client that does not read"
        );
    }
    victim_round_trip(&mut sim, &mut subscriber, &mut publisher);
    assert!(sim.global().stats().reads_paused_outgoing >= 1);
    assert!(!sim.is_closed(hostile.conn));
    // It reads now: every reply comes, in order.
    sim.set_write_capacity(hostile.conn, usize::MAX);
    let mut replies = 0;
    for _ in 0..10_000 {
        sim.step();
        replies += sim.take_output(hostile.conn).len();
        if replies >= count * reply_len && sim.is_idle() {
            break;
        }
    }
    assert_eq!(replies, count * reply_len, "every reply arrives");
    assert!(!sim.is_closed(hostile.conn));
}

/// Issue 11 case 1: PINGREQs pipelined by a client that never reads.
#[test]
fn pingreq_flood_without_reading_is_bounded_by_the_outgoing_limit() {
    replies_to_a_client_that_never_reads(&[0xC0, 0x00], 2);
}

/// Issue 11 case 1: QoS 1 PUBLISHes pipelined by a client that never reads its PUBACKs.
#[test]
fn qos1_publish_flood_without_reading_is_bounded_by_the_outgoing_limit() {
    // PUBLISH QoS 1, topic "h", packet id 1, payload "x".
    let publish = [0x32, 0x06, 0x00, 0x01, b'h', 0x00, 0x01, b'x'];
    replies_to_a_client_that_never_reads(&publish, 4);
}

/// Issue 11 item 7: a packet that started must complete within `partial_packet_timeout_ms`
/// per 64 KiB, even with keep-alive 0; one that completes in time is handled.
#[test]
fn partial_packets_time_out_even_with_keep_alive_zero() {
    let mut config = config();
    config.partial_packet_timeout_ms = 1_000;
    let mut sim = Sim::new(config, 2).expect("valid config");
    let mut slow = connect(&mut sim, "slow");
    let stalled = connect(&mut sim, "stalled");
    // A 100,000-byte PUBLISH (two 64 KiB units: 2 s) of which only the start arrives.
    let body_len = 100_000usize;
    let remaining = 2 + 1 + body_len;
    let mut packet = vec![0x30];
    let mut len = remaining;
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        packet.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&[0x00, 0x01, b'p']);
    packet.resize(packet.len() + body_len, b'x');
    sim.send(stalled.conn, &packet[..1000]);
    // The well-behaved one sends the same packet slowly but within its 2 s.
    for chunk in packet.chunks(packet.len() / 10 + 1) {
        sim.send(slow.conn, chunk);
        sim.step();
        sim.advance(Duration::from_millis(150));
    }
    sim.step();
    slow.pump(&mut sim);
    assert!(!sim.is_closed(slow.conn), "a packet completed in time");
    for _ in 0..30 {
        sim.advance(Duration::from_millis(100));
        sim.step();
    }
    assert!(sim.is_closed(stalled.conn), "the stalled packet timed out");
    assert!(!sim.is_closed(slow.conn));
    assert_eq!(sim.global().stats().partial_packet_timeouts, 1);
    assert_eq!(sim.global().stats().messages_received, 1);
}
