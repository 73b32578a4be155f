//! Item 5: which will a takeover or a reconnect publishes, as the spec decides it (the table and
//! the statements are in src/broker/core/connection/fidelity.rs, "Wills on takeover and reconnect"): MQTT 5
//! publishes the old connection's will unless the new CONNECT has Clean Start 0 and the will has
//! a Will Delay > 0 in a session that outlives the connection ([MQTT-3.1.2-8], [MQTT-3.1.3-9],
//! the non-normative comments of 3.1.3.2.2 and 3.1.4); 3.1.1 always publishes it (it belongs to
//! the Network Connection). Mosquitto 2.0 differs for Will Delay 0 with a kept session.

use crate::support::broker::*;
use shardmq::codec::{Connect, ProtocolVersion, QoS, ReasonCode};

/// The old connection's CONNECT: `version`, a session that outlives the connection or not, a
/// will on `will/{client_id}` with `will_delay_secs` (MQTT 5).
fn old_connect(
    version: ProtocolVersion,
    client_id: &str,
    session_outlives: bool,
    will_delay_secs: u32,
) -> Connect {
    let v5 = version == ProtocolVersion::V5;
    // 3.x: Clean Session 0 keeps the session; MQTT 5: Session Expiry > 0 does.
    let mut connect = connect_packet(version, client_id, v5 || !session_outlives);
    if v5 && session_outlives {
        connect.properties.session_expiry_interval = Some(600);
    }
    let mut connect = with_will(
        connect,
        &format!("will/{client_id}"),
        b"gone",
        QoS::AtMostOnce,
        false,
    );
    if let (true, Some(will)) = (v5, connect.will.as_mut()) {
        will.properties.will_delay_interval = Some(will_delay_secs);
    }
    connect
}

fn new_connect(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    let mut connect = connect_packet(version, client_id, clean_start);
    if version == ProtocolVersion::V5 {
        connect.properties.session_expiry_interval = Some(600);
    }
    connect
}

/// Every combination of version, old session lifetime, Will Delay, new Clean Start, and
/// takeover on the same shard or across shards.
#[test]
fn takeover_publishes_the_will_as_the_spec_says() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut watcher = placer.raw_on(0, ProtocolVersion::V5, "will-watcher");
    watcher.subscribe("will/#", QoS::AtMostOnce);
    let mut cases = Vec::new();
    for session_outlives in [false, true] {
        for will_delay_secs in [0, 30] {
            for clean_start in [false, true] {
                // MQTT 5: kept only when the session is resumed and the will was delayed.
                let kept = session_outlives && will_delay_secs > 0 && !clean_start;
                cases.push((
                    ProtocolVersion::V5,
                    session_outlives,
                    will_delay_secs,
                    clean_start,
                    !kept,
                ));
            }
        }
        for clean_start in [false, true] {
            // 3.1.1: the will belongs to the Network Connection, closed without DISCONNECT.
            cases.push((
                ProtocolVersion::V3_1_1,
                session_outlives,
                0,
                clean_start,
                true,
            ));
        }
    }
    let mut failures = Vec::new();
    let mut n = 0;
    for (version, session_outlives, will_delay_secs, clean_start, expected) in cases {
        for cross_shard in [false, true] {
            n += 1;
            let id = format!("tk{n}");
            let (_old, connack) = placer.connect_on(
                0,
                old_connect(version, &id, session_outlives, will_delay_secs),
            );
            assert_eq!(connack.reason_code, ReasonCode::Success);
            let shard = usize::from(cross_shard);
            let (_new, connack) = placer.connect_on(shard, new_connect(version, &id, clean_start));
            assert_eq!(connack.reason_code, ReasonCode::Success);
            let got = match watcher.recv(if expected { WAIT } else { QUIET }) {
                Ok(shardmq::codec::Packet::Publish(p)) => {
                    assert_eq!(p.topic.as_str(), format!("will/{id}"));
                    true
                }
                Ok(other) => panic!("{other:?}"),
                Err(_) => false,
            };
            if got != expected {
                failures.push(format!(
                    "{version:?} session_outlives={session_outlives} will_delay={will_delay_secs} \
                     clean_start={clean_start} cross_shard={cross_shard}: will published {got}, \
                     expected {expected}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A client that drops its connection and reconnects inside its Will Delay Interval: Clean
/// Start 1 ends the session, so the will goes out at once ("the Will Delay Interval has elapsed
/// or the Session ends", [MQTT-3.1.2-8]; the new connection is not "to this Session",
/// [MQTT-3.1.3-9]); Clean Start 0 resumes the session and cancels it.
#[test]
fn reconnect_inside_the_will_delay() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut watcher = placer.raw_on(0, ProtocolVersion::V5, "delay-watcher");
    watcher.subscribe("will/#", QoS::AtMostOnce);
    for (i, clean_start) in [(0, true), (1, false)] {
        let id = format!("delayed{i}");
        let (old, _) = placer.connect_on(0, old_connect(ProtocolVersion::V5, &id, true, 300));
        let open = broker.stats().connections_open;
        drop(old); // no DISCONNECT: the will is due after 300 s
        wait_until("the old connection is closed", || {
            broker.stats().connections_open == open - 1
        });
        watcher.expect_nothing();
        let (_new, connack) =
            placer.connect_on(i, new_connect(ProtocolVersion::V5, &id, clean_start));
        assert_eq!(connack.session_present, !clean_start);
        if clean_start {
            assert_eq!(
                watcher.expect_publish().topic.as_str(),
                format!("will/{id}")
            );
        } else {
            watcher.expect_nothing();
        }
    }
}
