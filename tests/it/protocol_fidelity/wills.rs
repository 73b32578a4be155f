//! Item 5: which will a takeover or a reconnect publishes. The rule (see `hold_will_for_takeover`
//! in src/broker/core/fidelity.rs, and Mosquitto 2.0's `connect__on_authorised`): the old
//! connection's will is published exactly when its session ends: when it ended with the
//! connection (MQTT 5 Session Expiry 0, 3.x Clean Session 1) or the new CONNECT has Clean Start 1
//! ([MQTT-3.1.2-4]); a session resumed by the new connection cancels it ([MQTT-3.1.2-8],
//! [MQTT-3.1.3-9]), whatever its Will Delay Interval.

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

/// Every combination of version, old session lifetime, new Clean Start, and takeover on the same
/// shard or across shards.
#[test]
fn takeover_publishes_the_will_exactly_when_the_old_session_ends() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut watcher = placer.raw_on(0, ProtocolVersion::V5, "will-watcher");
    watcher.subscribe("will/#", QoS::AtMostOnce);
    let mut failures = Vec::new();
    let mut case = 0;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        for session_outlives in [false, true] {
            for clean_start in [false, true] {
                for cross_shard in [false, true] {
                    case += 1;
                    let id = format!("tk{case}");
                    let (_old, connack) =
                        placer.connect_on(0, old_connect(version, &id, session_outlives, 0));
                    assert_eq!(connack.reason_code, ReasonCode::Success);
                    let shard = usize::from(cross_shard);
                    let (_new, connack) =
                        placer.connect_on(shard, new_connect(version, &id, clean_start));
                    assert_eq!(connack.reason_code, ReasonCode::Success);
                    let expected = !session_outlives || clean_start;
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
                            "{version:?} session_outlives={session_outlives} \
                             clean_start={clean_start} cross_shard={cross_shard}: \
                             will published {got}, expected {expected}"
                        ));
                    }
                }
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
