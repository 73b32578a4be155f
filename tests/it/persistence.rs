//! Disk persistence (issue 14): restarts keep sessions, subscriptions, queued and in-flight
//! messages and retained messages; damaged logs are read around; `kill -9` of the real binary
//! under QoS 1/2 load loses nothing that was acknowledged (`kill9.rs` beside this file).

mod kill9;

use crate::support::broker::*;
use shardmq::broker::{BrokerHandle, Config};
use shardmq::codec::{Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq::store::Durability;
use std::path::{Path, PathBuf};

/// A fresh directory for one test's logs.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn persistent_config(dir: &Path, shards: usize) -> Config {
    Config {
        persistence: Durability::Sync,
        persistence_dir: dir.to_path_buf(),
        ..config(shards)
    }
}

fn resume(broker: &BrokerHandle, client_id: &str) -> Raw {
    let connect = connect_packet(ProtocolVersion::V3_1_1, client_id, false);
    let (raw, connack) = Raw::connect_with(addr(broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert!(
        connack.session_present,
        "{client_id}'s session was restored"
    );
    raw
}

#[test]
fn sessions_queues_in_flight_and_retained_survive_a_restart() {
    let dir = temp_dir("restart");
    let broker = start_with(persistent_config(&dir, 2));
    let connect = connect_packet(ProtocolVersion::V3_1_1, "offline", false);
    let (mut offline, _) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(
        offline.subscribe("t/#", QoS::ExactlyOnce),
        ReasonCode::GrantedQoS2
    );
    offline.disconnect();
    let connect = connect_packet(ProtocolVersion::V3_1_1, "inflight", false);
    let (mut inflight, _) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(
        inflight.subscribe("t/#", QoS::AtLeastOnce),
        ReasonCode::GrantedQoS1
    );

    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    publisher.publish_acked("t/1", b"one", QoS::ExactlyOnce, false, 1);
    publisher.publish_acked("t/2", b"two", QoS::AtLeastOnce, false, 2);
    publisher.publish_acked("r/1", b"kept", QoS::AtLeastOnce, true, 3);
    publisher.publish_acked("r/2", b"cleared", QoS::AtLeastOnce, true, 4);
    publisher.publish_acked("r/2", b"", QoS::AtLeastOnce, true, 5);
    // "inflight" receives both and acknowledges neither: they stay in flight.
    let first = inflight.expect_publish();
    let second = inflight.expect_publish();
    drop(inflight);
    drop(publisher);
    drop(broker);

    let broker = start_with(persistent_config(&dir, 2));
    let stats = broker.persistence_stats().expect("persistence is on");
    assert_eq!(stats.recovery.sessions, 2, "{stats:?}");
    assert_eq!(stats.recovery.messages, 4, "{stats:?}");
    assert_eq!(stats.recovery.retained, 1, "{stats:?}");
    assert_eq!(broker.retained_messages(), 1);

    let mut offline = resume(&broker, "offline");
    let got: Vec<_> = (0..2).map(|_| offline.expect_publish()).collect();
    assert_eq!(got[0].payload.as_ref(), b"one");
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
    assert_eq!(got[1].payload.as_ref(), b"two");
    offline.send(&Packet::PubRec(ack(got[0].packet_id)));
    assert!(matches!(offline.next(), Packet::PubRel(_)));
    offline.send(&Packet::PubComp(ack(got[0].packet_id)));
    offline.send(&Packet::PubAck(ack(got[1].packet_id)));
    offline.expect_nothing();

    // Resent with DUP and the packet ids they had ([MQTT-4.4.0-1]).
    let mut inflight = resume(&broker, "inflight");
    for before in [first, second] {
        let again = inflight.expect_publish();
        assert!(again.dup);
        assert_eq!(again.packet_id, before.packet_id);
        assert_eq!(again.payload, before.payload);
    }

    // Subscriptions were restored: a new publish reaches the resumed session.
    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    publisher.publish_acked("t/3", b"three", QoS::AtLeastOnce, false, 1);
    assert_eq!(offline.receive_and_ack().payload.as_ref(), b"three");
    // The retained message, and not the cleared one.
    let mut fresh = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "fresh");
    fresh.subscribe("r/#", QoS::AtLeastOnce);
    let retained = fresh.receive_and_ack();
    assert_eq!(retained.payload.as_ref(), b"kept");
    assert!(retained.retain);
    fresh.expect_nothing();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_incoming_qos2_id_awaiting_pubrel_is_still_known_after_a_restart() {
    let dir = temp_dir("qos2-incoming");
    let broker = start_with(persistent_config(&dir, 1));
    let connect = connect_packet(ProtocolVersion::V3_1_1, "sub", false);
    let (mut sub, _) = Raw::connect_with(addr(&broker), connect);
    sub.subscribe("q/#", QoS::AtMostOnce);
    let connect = connect_packet(ProtocolVersion::V3_1_1, "pub2", false);
    let (mut publisher, _) = Raw::connect_with(addr(&broker), connect);
    publisher.publish("q/1", b"once", QoS::ExactlyOnce, false, 9);
    assert!(matches!(publisher.next(), Packet::PubRec(a) if a.packet_id == 9));
    assert_eq!(sub.expect_publish().payload.as_ref(), b"once");
    drop(publisher);
    drop(sub);
    drop(broker);

    let broker = start_with(persistent_config(&dir, 1));
    let mut sub = resume(&broker, "sub");
    let mut publisher = resume(&broker, "pub2");
    // The publisher did not see PUBCOMP: it sends the PUBLISH again with DUP.
    let mut again = match publish_packet("q/1", b"once", QoS::ExactlyOnce, false, 9) {
        Packet::Publish(p) => p,
        _ => unreachable!(),
    };
    again.dup = true;
    publisher.send(&Packet::Publish(again));
    assert!(matches!(publisher.next(), Packet::PubRec(a) if a.packet_id == 9));
    publisher.send(&Packet::PubRel(ack(9)));
    assert!(matches!(publisher.next(), Packet::PubComp(a) if a.packet_id == 9));
    sub.expect_nothing();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Leaves `n` offline sessions `c0..cn` with one queued message each, stopped gracefully.
fn sessions_with_one_message(dir: &Path, shards: usize, n: usize) {
    let broker = start_with(persistent_config(dir, shards));
    for i in 0..n {
        let connect = connect_packet(ProtocolVersion::V3_1_1, &format!("c{i}"), false);
        let (mut raw, _) = Raw::connect_with(addr(&broker), connect);
        raw.subscribe(&format!("d/{i}"), QoS::AtLeastOnce);
        raw.disconnect();
    }
    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    for i in 0..n {
        publisher.publish_acked(&format!("d/{i}"), b"m", QoS::AtLeastOnce, false, 1);
    }
    drop(broker);
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn damaged_and_missing_logs_cost_only_what_they_held() {
    // Flipped bytes in the middle of a log: one record lost, the rest served.
    let dir = temp_dir("corrupt");
    sessions_with_one_message(&dir, 1, 10);
    let path = &log_files(&dir)[0];
    let mut data = std::fs::read(path).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    data[middle + 1] ^= 0x0f;
    std::fs::write(path, &data).unwrap();
    let broker = start_with(persistent_config(&dir, 1));
    let recovery = broker.persistence_stats().unwrap().recovery;
    assert_eq!(recovery.damaged_regions, 1, "{recovery:?}");
    assert!(recovery.bytes_dropped > 0);
    // One record lost: a session (and then its message too) or a message.
    assert!(
        recovery.sessions >= 9 && recovery.messages >= 9,
        "{recovery:?}"
    );
    assert!(recovery.sessions + recovery.messages >= 18, "{recovery:?}");
    let mut served = 0;
    for i in 0..10 {
        let connect = connect_packet(ProtocolVersion::V3_1_1, &format!("c{i}"), false);
        let (mut raw, connack) = Raw::connect_with(addr(&broker), connect);
        if connack.session_present {
            if let Ok(Packet::Publish(p)) = raw.recv(QUIET) {
                assert_eq!(p.topic.as_str(), format!("d/{i}"));
                served += 1;
            }
        }
    }
    assert_eq!(served as u64, recovery.messages);
    drop(broker);

    // A torn tail: the last record is cut.
    let dir2 = temp_dir("torn");
    sessions_with_one_message(&dir2, 1, 3);
    let path = &log_files(&dir2)[0];
    let data = std::fs::read(path).unwrap();
    std::fs::write(path, &data[..data.len() - 5]).unwrap();
    let broker = start_with(persistent_config(&dir2, 1));
    let recovery = broker.persistence_stats().unwrap().recovery;
    assert_eq!(recovery.torn_tails, 1, "{recovery:?}");
    assert!(recovery.sessions + recovery.messages >= 5, "{recovery:?}");
    drop(broker);

    // A missing file: the other shard's sessions are still served.
    let dir3 = temp_dir("missing");
    sessions_with_one_message(&dir3, 2, 4);
    let files = log_files(&dir3);
    assert_eq!(files.len(), 2);
    std::fs::remove_file(&files[1]).unwrap();
    let broker = start_with(persistent_config(&dir3, 2));
    let recovery = broker.persistence_stats().unwrap().recovery;
    assert_eq!(recovery.files_missing, 1, "{recovery:?}");
    assert!(
        recovery.sessions >= 1 && recovery.messages >= 1,
        "{recovery:?}"
    );
    drop(broker);
    for d in [dir, dir2, dir3] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn compaction_keeps_the_live_state_and_the_disk_limit_drops_and_counts() {
    let dir = temp_dir("compaction");
    let config = Config {
        persistence_max_bytes: 1 << 20,
        max_queued_messages: 100_000,
        ..persistent_config(&dir, 1)
    };
    let broker = start_with(config.clone());
    let connect = connect_packet(ProtocolVersion::V3_1_1, "keeper", false);
    let (mut keeper, _) = Raw::connect_with(addr(&broker), connect);
    keeper.subscribe("keep/#", QoS::AtLeastOnce);
    keeper.disconnect();
    let connect = connect_packet(ProtocolVersion::V3_1_1, "online", false);
    let (mut online, _) = Raw::connect_with(addr(&broker), connect);
    online.subscribe("churn/#", QoS::AtLeastOnce);
    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    for i in 0..10u16 {
        publisher.publish_acked(
            "keep/a",
            format!("k{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            1,
        );
    }
    // Acknowledged traffic through a persistent session: its records become garbage.
    let big = vec![b'x'; 2000];
    for _ in 0..600 {
        publisher.publish_acked("churn/a", &big, QoS::AtLeastOnce, false, 2);
        online.receive_and_ack();
    }
    let stats = broker.persistence_stats().unwrap();
    assert!(stats.compactions >= 1, "{stats:?}");
    // An offline session's backlog fills the disk limit: the excess is dropped and counted.
    let mut stored = 10;
    for _ in 0..1000 {
        publisher.publish_acked("keep/b", &big, QoS::AtLeastOnce, false, 3);
        if broker.persistence_stats().unwrap().dropped_disk_full > 0 {
            break;
        }
        stored += 1;
    }
    let stats = broker.persistence_stats().unwrap();
    assert!(stats.dropped_disk_full > 0, "{stats:?}");
    drop(online);
    drop(publisher);
    drop(broker);

    let broker = start_with(config);
    let recovery = broker.persistence_stats().unwrap().recovery;
    assert_eq!(recovery.messages, stored, "{recovery:?}");
    let mut keeper = resume(&broker, "keeper");
    for i in 0..10 {
        let p = keeper.receive_and_ack();
        assert_eq!(p.payload.as_ref(), format!("k{i}").as_bytes());
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn session_expiry_counts_across_a_restart_and_the_will_goes_out_when_it_ends() {
    let dir = temp_dir("expiry");
    let broker = start_with(persistent_config(&dir, 2));
    let connect = connect_packet(ProtocolVersion::V3_1_1, "watcher", false);
    let (mut watcher, _) = Raw::connect_with(addr(&broker), connect);
    watcher.subscribe("will/#", QoS::AtLeastOnce);
    watcher.disconnect();
    // Session Expiry 1 s, Will Delay 30 s: the will goes out when the session ends.
    let mut connect = with_will(
        connect_packet(ProtocolVersion::V5, "dying", false),
        "will/dying",
        b"gone",
        QoS::AtLeastOnce,
        false,
    );
    connect.properties.session_expiry_interval = Some(1);
    if let Some(will) = connect.will.as_mut() {
        will.properties.will_delay_interval = Some(30);
    }
    let (mut dying, connack) = Raw::connect_with(addr(&broker), connect);
    assert_eq!(connack.reason_code, ReasonCode::Success);
    dying.ping();
    drop(dying); // no DISCONNECT: the will is armed
    std::thread::sleep(std::time::Duration::from_millis(100));
    drop(broker);
    // The session expires while the broker is down.
    std::thread::sleep(std::time::Duration::from_millis(1200));

    let broker = start_with(persistent_config(&dir, 2));
    let recovery = broker.persistence_stats().unwrap().recovery;
    assert_eq!(recovery.sessions_expired, 1, "{recovery:?}");
    assert_eq!(recovery.sessions, 1, "{recovery:?}");
    let mut watcher = resume(&broker, "watcher");
    let will = watcher.receive_and_ack();
    assert_eq!(will.topic.as_str(), "will/dying");
    assert_eq!(will.payload.as_ref(), b"gone");
    let connect = connect_packet(ProtocolVersion::V5, "dying", false);
    let (_, connack) = Raw::connect_with(addr(&broker), connect);
    assert!(!connack.session_present, "the session expired");
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_taken_over_by_another_shard_is_restored_from_its_new_shard() {
    let dir = temp_dir("takeover");
    let broker = start_with(persistent_config(&dir, 2));
    let mut placer = Placer::new(&broker);
    let connect = connect_packet(ProtocolVersion::V3_1_1, "mover", false);
    let (mut mover, _) = placer.connect_on(0, connect.clone());
    mover.subscribe("m/#", QoS::AtLeastOnce);
    mover.disconnect();
    let mut publisher = Raw::connect(addr(&broker), ProtocolVersion::V3_1_1, "pub");
    for i in 1..=3u16 {
        publisher.publish_acked(&format!("m/{i}"), b"x", QoS::AtLeastOnce, false, i);
    }
    // Taken over on shard 1: two acknowledged, the third left in flight, a fourth queued.
    let (mut mover, connack) = placer.connect_on(1, connect);
    assert!(connack.session_present);
    mover.receive_and_ack();
    mover.receive_and_ack();
    let third = mover.expect_publish();
    assert_eq!(third.topic.as_str(), "m/3");
    drop(mover);
    publisher.publish_acked("m/4", b"x", QoS::AtLeastOnce, false, 4);
    drop(publisher);
    drop(placer);
    drop(broker);

    let broker = start_with(persistent_config(&dir, 2));
    let mut mover = resume(&broker, "mover");
    let again = mover.expect_publish();
    assert_eq!(again.topic.as_str(), "m/3");
    assert!(again.dup);
    assert_eq!(again.packet_id, third.packet_id);
    mover.send(&Packet::PubAck(ack(again.packet_id)));
    assert_eq!(mover.receive_and_ack().topic.as_str(), "m/4");
    mover.expect_nothing();
    drop(broker);
    let _ = std::fs::remove_dir_all(&dir);
}
