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

pub(crate) fn config() -> Config {
    Config {
        shards: 1,
        max_outgoing_bytes: OUTGOING_LIMIT_BYTES,
        ..Config::default()
    }
}

pub(crate) fn options(id: &str) -> ConnectOptions {
    ConnectOptions::new(id)
        .protocol(ProtocolVersion::V3_1_1)
        .keep_alive_secs(0)
}

/// Rounds until the simulation is idle (every client pumped each round).
pub(crate) fn quiesce(sim: &mut Sim, clients: &mut [&mut SimClient]) {
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

pub(crate) fn connect(sim: &mut Sim, id: &str) -> SimClient {
    let mut client = SimClient::connect(sim, 0, options(id)).expect("room for a connection");
    quiesce(sim, &mut [&mut client]);
    assert!(client.is_connected(), "CONNACK: {:?}", client.events);
    client
}

/// A QoS 0 subscriber and publisher on the hostile client's shard: `count` messages published
/// must all arrive.
pub(crate) fn victim_round_trip(
    sim: &mut Sim,
    subscriber: &mut SimClient,
    publisher: &mut SimClient,
) {
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

/// Rounds in which the subscriber reads at most `read_per_round` bytes: returns the peak of the
/// shard's buffered bytes seen after each turn.
pub(crate) fn read_slowly(
    sim: &mut Sim,
    subscriber: &mut SimClient,
    want: usize,
    read_per_round: usize,
) -> usize {
    let mut peak = 0;
    for _ in 0..20_000 {
        sim.set_write_capacity(subscriber.conn, read_per_round);
        sim.step();
        peak = peak.max(sim.core(0).buffered_bytes().0 - sim.core(0).queued_bytes());
        subscriber.pump(sim);
        sim.advance(Duration::from_millis(1));
        if subscriber.received.len() >= want || sim.is_closed(subscriber.conn) {
            break;
        }
    }
    peak
}

pub(crate) fn big_message_config() -> Config {
    Config {
        max_outgoing_bytes: 64 * 1024,
        ..config()
    }
}

/// Issue 11 case 2: a QoS 1 subscriber that reads (slowly) gets 200 messages of 100 KB, each
/// larger than its 64 KiB outgoing limit, without being disconnected; its outgoing buffer holds
/// at most the limit plus one message.
#[test]
fn a_reading_subscriber_of_big_qos1_messages_is_paced_not_disconnected() {
    let message_bytes = 100_000;
    let count = 200;
    let mut sim = Sim::new(big_message_config(), 3).expect("valid config");
    let mut subscriber = connect(&mut sim, "sub");
    let sub = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    subscriber
        .session
        .subscribe(&[(MqttString::from("big"), sub)]);
    subscriber.flush(&mut sim);
    let mut publisher = connect(&mut sim, "pub");
    quiesce(&mut sim, &mut [&mut subscriber, &mut publisher]);
    let body = Bytes::from(vec![b'x'; message_bytes]);
    let mut sent = 0;
    let mut peak = 0;
    while sent < count {
        let now = sim.now();
        for _ in 0..10 {
            let _ = publisher.session.publish(
                MqttString::from("big"),
                body.clone(),
                QoS::AtLeastOnce,
                false,
                now,
            );
            sent += 1;
        }
        publisher.flush(&mut sim);
        let want = subscriber.received.len() + 10;
        peak = peak.max(read_slowly(&mut sim, &mut subscriber, want, 16 * 1024));
        publisher.pump(&mut sim);
    }
    peak = peak.max(read_slowly(&mut sim, &mut subscriber, count, 16 * 1024));
    assert!(
        !sim.is_closed(subscriber.conn),
        "a reader is not a slow consumer"
    );
    assert_eq!(subscriber.received.len(), count, "every message arrives");
    assert_eq!(sim.global().stats().slow_consumer_disconnects, 0);
    assert!(
        peak <= 64 * 1024 + message_bytes + 64,
        "outgoing buffers held {peak} bytes"
    );
}

/// Issue 11 case 2: a persistent session with 50 queued 200 KB messages resumes and gets all of
/// them (the queue is refilled as its buffer is written down, not all at once).
#[test]
fn a_resumed_session_gets_its_big_queue_without_being_disconnected() {
    let message_bytes = 200_000;
    let count = 50;
    let mut sim = Sim::new(big_message_config(), 4).expect("valid config");
    let persistent = || options("sub").clean_start(false);
    let mut subscriber = SimClient::connect(&mut sim, 0, persistent()).expect("room");
    quiesce(&mut sim, &mut [&mut subscriber]);
    let sub = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    subscriber
        .session
        .subscribe(&[(MqttString::from("q"), sub)]);
    subscriber.flush(&mut sim);
    quiesce(&mut sim, &mut [&mut subscriber]);
    sim.hang_up(subscriber.conn);
    sim.step();
    let mut publisher = connect(&mut sim, "pub");
    let body = Bytes::from(vec![b'y'; message_bytes]);
    let now = sim.now();
    for _ in 0..count {
        let _ = publisher.session.publish(
            MqttString::from("q"),
            body.clone(),
            QoS::AtLeastOnce,
            false,
            now,
        );
    }
    publisher.flush(&mut sim);
    quiesce(&mut sim, &mut [&mut publisher]);
    let mut subscriber = SimClient::connect(&mut sim, 0, persistent()).expect("room");
    read_slowly(&mut sim, &mut subscriber, count, 32 * 1024);
    assert!(!sim.is_closed(subscriber.conn), "resumed, not disconnected");
    assert_eq!(subscriber.received.len(), count, "the whole queue arrives");
}

/// Issue 11 item 3: a QoS 1 subscriber that stops reading is disconnected once its full buffer
/// has gone unwritten for `slow_consumer_timeout_ms`, not before; the publisher keeps going.
#[test]
fn slow_consumer_disconnect_fires_on_time_not_on_a_burst() {
    let mut config = big_message_config();
    config.slow_consumer_timeout_ms = 5_000;
    let mut sim = Sim::new(config, 5).expect("valid config");
    let mut subscriber = connect(&mut sim, "sub");
    let sub = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    subscriber
        .session
        .subscribe(&[(MqttString::from("s"), sub)]);
    subscriber.flush(&mut sim);
    let mut publisher = connect(&mut sim, "pub");
    quiesce(&mut sim, &mut [&mut subscriber, &mut publisher]);
    sim.set_write_capacity(subscriber.conn, 0);
    let body = Bytes::from(vec![b'z'; 30_000]);
    let mut closed_at = None;
    for second in 0..10 {
        let now = sim.now();
        let _ = publisher.session.publish(
            MqttString::from("s"),
            body.clone(),
            QoS::AtLeastOnce,
            false,
            now,
        );
        publisher.flush(&mut sim);
        sim.step();
        publisher.pump(&mut sim);
        if sim.is_closed(subscriber.conn) {
            closed_at = Some(second);
            break;
        }
        sim.advance(Duration::from_secs(1));
    }
    // Its buffer filled with the third message (second 2); nothing was written from then on.
    let closed_at = closed_at.expect("a subscriber that never reads is disconnected");
    assert!(
        (7..=8).contains(&closed_at),
        "closed {closed_at} s in, 5 s after its buffer filled"
    );
    assert_eq!(sim.global().stats().slow_consumer_disconnects, 1);
    assert!(!sim.is_closed(publisher.conn));
}

/// Connects `count` persistent MQTT 5 sessions subscribed to `filter` at QoS 1, then takes
/// them offline.
fn offline_sessions(sim: &mut Sim, prefix: &str, count: usize, filter: &str) {
    for i in 0..count {
        let options = ConnectOptions::new(format!("{prefix}{i}"))
            .protocol(ProtocolVersion::V5)
            .keep_alive_secs(0)
            .clean_start(false)
            .session_expiry_secs(3600);
        let mut client = SimClient::connect(sim, 0, options).expect("room");
        quiesce(sim, &mut [&mut client]);
        let sub = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        client.session.subscribe(&[(MqttString::from(filter), sub)]);
        client.flush(sim);
        quiesce(sim, &mut [&mut client]);
        sim.hang_up(client.conn);
        sim.step();
    }
}

/// Publishes `count` QoS 1 messages, waiting for the PUBACKs as the window allows.
pub(crate) fn publish_all(
    sim: &mut Sim,
    publisher: &mut SimClient,
    publish: &shardmq::codec::Publish,
    count: usize,
) {
    let mut sent = 0;
    while sent < count {
        let now = sim.now();
        while sent < count
            && publisher
                .session
                .publish_message(publish.clone(), now)
                .is_ok()
        {
            sent += 1;
        }
        publisher.flush(sim);
        sim.step();
        publisher.pump(sim);
    }
    quiesce(sim, &mut [publisher]);
}

/// Issue 11 case 3: offline queues fill at most their share of the memory budget (half of the
/// shard's part); beyond it new entries are dropped and counted, and a QoS 0 pair on another
/// topic keeps getting everything, with no memory pressure.
#[test]
fn offline_queues_never_block_live_qos0() {
    let mut config = config();
    config.max_buffered_bytes = 4 << 20;
    let mut sim = Sim::new(config, 6).expect("valid config");
    offline_sessions(&mut sim, "off", 20, "fill/#");
    let mut subscriber = connect(&mut sim, "sub");
    subscriber
        .session
        .subscribe(&[(MqttString::from("v"), SubscriptionOptions::default())]);
    subscriber.flush(&mut sim);
    let mut publisher = connect(&mut sim, "pub");
    let mut filler = connect(&mut sim, "filler");
    quiesce(
        &mut sim,
        &mut [&mut subscriber, &mut publisher, &mut filler],
    );
    let fill = shardmq::codec::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttString::from("fill/x"),
        packet_id: 0,
        properties: Default::default(),
        payload: Bytes::from(vec![b'f'; 4096]),
    };
    for _ in 0..10 {
        publish_all(&mut sim, &mut filler, &fill, 100);
        victim_round_trip(&mut sim, &mut subscriber, &mut publisher);
        let (buffered, limit) = sim.core(0).buffered_bytes();
        assert!(buffered <= limit / 2 + 8192, "{buffered} of {limit}");
    }
    let stats = sim.global().stats();
    assert!(stats.dropped_queue_share > 0, "{stats:?}");
    assert_eq!(stats.memory_pressure, 0, "queues alone cause no pressure");
    assert_eq!(stats.dropped_memory_limit, 0);
    assert_eq!(subscriber.received.len(), 500, "every live message arrived");
}

/// Issue 11 case 4: MQTT 5 properties count in a queue's bytes, and `max_queued_bytes` bounds
/// each session: 3 offline sessions, messages carrying 7 user properties of 8 KiB each.
#[test]
fn properties_count_against_the_per_session_queue_bytes() {
    let mut config = config();
    config.max_queued_bytes = 1 << 20;
    let mut sim = Sim::new(config, 7).expect("valid config");
    offline_sessions(&mut sim, "prop", 3, "p/#");
    let options = ConnectOptions::new("pub")
        .protocol(ProtocolVersion::V5)
        .keep_alive_secs(0);
    let mut publisher = SimClient::connect(&mut sim, 0, options).expect("room");
    quiesce(&mut sim, &mut [&mut publisher]);
    let mut properties = shardmq::codec::Properties::default();
    for i in 0..7 {
        properties.user_properties.push((
            MqttString::from(format!("k{i}")),
            MqttString::from("u".repeat(8192)),
        ));
    }
    let publish = shardmq::codec::Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: MqttString::from("p/x"),
        packet_id: 0,
        properties,
        payload: Bytes::from_static(b"small"),
    };
    publish_all(&mut sim, &mut publisher, &publish, 200);
    let queued = sim.core(0).session_queued_bytes();
    assert!(
        queued <= 3 * (1 << 20),
        "{queued} bytes queued over 3 sessions of 1 MiB"
    );
    // Each session took what fits (about 17 messages of 57 KiB), the rest was dropped.
    assert!(queued >= 3 * ((1 << 20) - 60 * 1024), "{queued}");
    assert!(sim.global().stats().dropped_queue_full >= 3 * 150);
}

/// Issue 11 case 5 (QoS 1): a new subscriber to 200 retained 100 KB messages reading slowly
/// gets all of them, paced through its queue, and is not disconnected.
#[test]
fn retained_qos1_messages_on_subscribe_are_paced_not_cut() {
    let count = 200;
    let mut sim = Sim::new(big_message_config(), 8).expect("valid config");
    let mut publisher = connect(&mut sim, "pub");
    let body = Bytes::from(vec![b'r'; 100_000]);
    for i in 0..count {
        let topic = MqttString::from(format!("rt/{i}"));
        let publish = shardmq::codec::Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic,
            packet_id: 0,
            properties: Default::default(),
            payload: body.clone(),
        };
        publish_all(&mut sim, &mut publisher, &publish, 1);
    }
    assert_eq!(sim.global().retained_messages(), count);
    let mut subscriber = connect(&mut sim, "sub");
    let sub = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    subscriber
        .session
        .subscribe(&[(MqttString::from("rt/#"), sub)]);
    subscriber.flush(&mut sim);
    let peak = read_slowly(&mut sim, &mut subscriber, count, 32 * 1024);
    assert!(!sim.is_closed(subscriber.conn), "not disconnected");
    assert_eq!(subscriber.received.len(), count, "every retained message");
    assert!(peak <= 64 * 1024 + 100_000 + 64, "{peak}");
}

/// Issue 11 (shared subscriptions): in a `$share` group where 2 of 3 members never read, the
/// reading member (on another shard) gets what the others cannot take: nothing is dropped at
/// a full member's buffer.
#[test]
fn shared_subscriptions_skip_members_that_cannot_take_a_message() {
    let mut config = Config {
        shards: 2,
        max_outgoing_bytes: 16 * 1024,
        ..Config::default()
    };
    config.qos0_backpressure = false;
    let mut sim = Sim::new(config, 9).expect("valid config");
    let mut members = Vec::new();
    for (i, shard) in [0, 0, 1].into_iter().enumerate() {
        let mut member = SimClient::connect(&mut sim, shard, options(&format!("m{i}"))).unwrap();
        quiesce(&mut sim, &mut [&mut member]);
        member.session.subscribe(&[(
            MqttString::from("$share/g/s"),
            SubscriptionOptions::default(),
        )]);
        member.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut member]);
        members.push(member);
    }
    let mut reader = members.pop().expect("three members");
    for stuck in &members {
        sim.set_write_capacity(stuck.conn, 0);
    }
    let mut publisher = connect(&mut sim, "pub");
    let count = 300;
    let body = Bytes::from(vec![b's'; 4096]);
    // One message per round: the reader keeps up; the stuck members never read.
    for _ in 0..count {
        let now = sim.now();
        {
            let _ = publisher.session.publish(
                MqttString::from("s"),
                body.clone(),
                QoS::AtMostOnce,
                false,
                now,
            );
        }
        publisher.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut reader, &mut publisher]);
    }
    let stats = sim.global().stats();
    assert_eq!(stats.dropped_outgoing_buffer_full, 0, "{stats:?}");
    // The stuck members took what fit in their buffers (16 KiB: 4 messages each), the reader
    // everything else.
    assert!(
        reader.received.len() >= count - 2 * 5,
        "the reading member got {} of {count}",
        reader.received.len()
    );
}

/// Issue 11 case 1 over real TCP (the kernel's buffers in play): a client pipelining 40 MB of
/// PINGREQs without ever reading. The broker stops reading it once its outgoing buffer is
/// full: the budget gauge's peak stays near `max_outgoing_bytes` (before: every PINGRESP
/// buffered, about 20 MB here), the client's writes block, and a QoS 0 pair on the same shard
/// keeps flowing.
#[test]
fn pingreq_flood_over_tcp_is_bounded_and_others_keep_flowing() {
    use crate::support::broker::{addr, start_with, wait_until, Raw};
    use std::io::Write;
    let limit = 64 * 1024;
    let broker = start_with(Config {
        max_outgoing_bytes: limit,
        ..crate::support::broker::config(1)
    });
    let hostile = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "hostile");
    let mut stream = hostile.stream.try_clone().expect("clone");
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let flooder = std::thread::spawn(move || {
        let chunk = [0xC0u8, 0x00].repeat(32 * 1024);
        let mut written = 0usize;
        while written < 40_000_000 {
            match stream.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break, // blocked: the broker stopped reading it
            }
        }
        written
    });
    let written = flooder.join().expect("flooder");
    std::thread::sleep(Duration::from_millis(200));
    let peak = broker.stats().buffered_bytes_peak;
    println!("PINGREQ flood: {written} bytes written, peak {peak} bytes buffered");
    assert!(
        written < 40_000_000,
        "the client was not read to the end (peak {peak})"
    );
    wait_until("the hostile client paused", || {
        broker.stats().reads_paused_outgoing >= 1
    });
    let stats = broker.stats();
    assert!(
        stats.buffered_bytes_peak <= (limit + 4096) as u64,
        "{} bytes buffered",
        stats.buffered_bytes_peak
    );
    let mut subscriber = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "sub");
    subscriber.subscribe("v", QoS::AtMostOnce);
    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    for i in 0..100u16 {
        publisher.publish("v", &i.to_be_bytes(), QoS::AtMostOnce, false, 0);
    }
    for _ in 0..100 {
        subscriber.expect_publish();
    }
    assert!(broker.stats().buffered_bytes_peak <= (limit + 4096) as u64);
    drop(hostile);
}

/// Issue 11 item 6: one SUBSCRIBE sends at most `max_retained_per_subscribe` retained
/// messages, counted when the bound cuts.
#[test]
fn retained_on_subscribe_stops_at_the_per_subscribe_bound() {
    let mut config = config();
    config.max_retained_per_subscribe = 10;
    let mut sim = Sim::new(config, 10).expect("valid config");
    let mut publisher = connect(&mut sim, "pub");
    let now = sim.now();
    for i in 0..50 {
        let _ = publisher.session.publish(
            MqttString::from(format!("b/{i}")),
            Bytes::from_static(b"r"),
            QoS::AtMostOnce,
            true,
            now,
        );
    }
    publisher.flush(&mut sim);
    quiesce(&mut sim, &mut [&mut publisher]);
    let mut subscriber = connect(&mut sim, "sub");
    subscriber
        .session
        .subscribe(&[(MqttString::from("b/#"), SubscriptionOptions::default())]);
    subscriber.flush(&mut sim);
    quiesce(&mut sim, &mut [&mut subscriber]);
    assert_eq!(subscriber.received.len(), 10);
    assert_eq!(sim.global().stats().retained_subscribe_bound_hit, 1);
}

/// Issue 11 case 5 (QoS 0): a new subscriber to 200 retained 100 KB messages, reading slowly,
/// gets all of them, paced as its buffer drains (before: the ones over its outgoing limit were
/// dropped), and a live message published meanwhile comes after them.
#[test]
fn retained_qos0_messages_on_subscribe_are_paced_not_cut() {
    let count = 200;
    let mut sim = Sim::new(big_message_config(), 11).expect("valid config");
    let mut publisher = connect(&mut sim, "pub");
    let body = Bytes::from(vec![b'r'; 100_000]);
    let now = sim.now();
    for i in 0..count {
        let topic = MqttString::from(format!("rt/{i}"));
        let _ = publisher
            .session
            .publish(topic, body.clone(), QoS::AtMostOnce, true, now);
        publisher.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut publisher]);
    }
    assert_eq!(sim.global().retained_messages(), count);
    let mut subscriber = connect(&mut sim, "sub");
    subscriber
        .session
        .subscribe(&[(MqttString::from("rt/#"), SubscriptionOptions::default())]);
    subscriber.flush(&mut sim);
    sim.set_write_capacity(subscriber.conn, 0);
    sim.step();
    // A live message on a retained topic while the backlog waits.
    let now = sim.now();
    let _ = publisher.session.publish(
        MqttString::from("rt/0"),
        Bytes::from_static(b"live"),
        QoS::AtMostOnce,
        false,
        now,
    );
    publisher.flush(&mut sim);
    sim.step();
    let peak = read_slowly(&mut sim, &mut subscriber, count + 1, 32 * 1024);
    assert!(!sim.is_closed(subscriber.conn), "not disconnected");
    assert_eq!(
        subscriber.received.len(),
        count + 1,
        "every retained message, then the live one"
    );
    assert_eq!(subscriber.received[count].payload.as_ref(), b"live");
    assert!(peak <= 64 * 1024 + 100_000 + 64, "{peak}");
    assert_eq!(sim.global().stats().dropped_outgoing_buffer_full, 0);
}
