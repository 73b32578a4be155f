//! Inputs of the whole-core fuzz target (`fuzz/fuzz_targets/core.rs`) kept as tests: each
//! finding once fixed, plus a few hundred pseudo-random scripts so that `cargo test` runs the
//! invariants of `shardmq::sim::script` without libFuzzer.

use shardmq::sim::script;

fn check(name: &str, data: &[u8]) {
    if let Err(violation) = script::run(data) {
        panic!("{name}: {violation}");
    }
}

/// Pseudo-random scripts: the fuzz target's invariants on inputs no fuzzer had to find.
#[test]
fn random_scripts_keep_the_invariants() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut operations = 0;
    for case in 0..300 {
        let len = 16 + (case * 37) % 900;
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect();
        match script::run(&data) {
            Ok(summary) => operations += summary.operations,
            Err(violation) => panic!("case {case}: {violation}\ninput: {data:?}"),
        }
    }
    assert!(
        operations > 10_000,
        "the scripts ran ({operations} operations)"
    );
}

/// A script that connects, subscribes and publishes at every QoS on one shard, so that the
/// well-formed path is covered whatever the random scripts do.
#[test]
fn a_plain_session_script_passes() {
    // shape 0 (1 shard), seed 0; connect; CONNECT v5 clean; SUBSCRIBE t/# QoS 2; PUBLISH
    // t/a QoS 2; turns; read; PUBREC; turns; read.
    let data = [
        0,
        0, // broker
        0,
        0, // connect on shard 0
        1,
        0,
        0b0000_0011, // CONNECT v5, clean start, client id "a"
        6,
        0, // step
        10,
        0, // read CONNACK
        2,
        0,
        0b0010_0010,
        0, // SUBSCRIBE t/# QoS 2, id 1
        6,
        0,
        10,
        0, // step, read SUBACK
        3,
        0,
        0b0000_0010,
        1, // PUBLISH t/a QoS 2, id 2
        6,
        0,
        6,
        0,
        10,
        0, // steps, read PUBREC + PUBLISH
        4,
        0,
        0b0000_0001,
        0, // PUBREC of a received id
        6,
        0,
        10,
        0,
    ];
    let summary = script::run(&data).expect("invariants hold");
    assert!(summary.packets_received >= 3, "{summary:?}");
    check("plain", &data);
}

/// Fuzz finding F2 (2026-12-05, `core` target on main 7278a93): with every connection closed,
/// a shard counted a queued message's bytes twice (76 bytes buffered, 38 queued).
#[test]
fn f2_queued_bytes_are_counted_once() {
    check(
        "F2",
        include_bytes!("fuzz_findings/f2-queued-bytes-counted-twice.bin"),
    );
}

/// Finding F2, the sequence behind it: a persistent session (`c`, on `t/#`) is taken over from
/// shard 0 by a connection on shard 1 with mesh channels of 2 slots. While shard 0 has not yet
/// read the installer's `Switch`, a publish on shard 1 is held for the session (its forwards
/// from shard 0 may still be on their way). Shard 0 answers `Switch` with more handover
/// messages (`Drained` for each source, `Done`, route removals, `Switched`) than the channel
/// holds; the rest wait in its overflow queue. The simulation used to call that idle, so a
/// settled broker still had the handover in progress and the held message counted in the
/// budget outside every session queue ("76 bytes counted, 38 queued" at 7278a93). Settled
/// now means the overflow moved too: the handover ends, the held message reaches the new
/// connection, and the budget holds exactly what the queues do.
#[test]
fn f2_a_settled_broker_has_no_handover_messages_left_in_a_mesh_overflow() {
    use crate::overload::quiesce;
    use bytes::Bytes;
    use shardmq::broker::Config;
    use shardmq::client::ConnectOptions;
    use shardmq::codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
    use shardmq::sim::{Sim, SimClient};

    let persistent = || {
        ConnectOptions::new("c")
            .protocol(ProtocolVersion::V5)
            .keep_alive_secs(0)
            .clean_start(false)
            .session_expiry_secs(3600)
    };
    let config = Config {
        shards: 2,
        mesh_channel_capacity: 2,
        ..Config::default()
    };
    let mut sim = Sim::new(config, 2).expect("valid config");
    let mut old = SimClient::connect(&mut sim, 0, persistent()).expect("room");
    quiesce(&mut sim, &mut [&mut old]);
    let qos1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    old.session.subscribe(&[(MqttString::from("t/#"), qos1)]);
    old.flush(&mut sim);
    quiesce(&mut sim, &mut [&mut old]);
    sim.hang_up(old.conn);
    let mut publisher =
        SimClient::connect(&mut sim, 1, ConnectOptions::new("p").keep_alive_secs(0)).expect("room");
    quiesce(&mut sim, &mut [&mut publisher]);
    assert!(publisher.is_connected());

    // The takeover, one turn at a time: shard 1 asks, shard 0 hands the session over, shard 1
    // installs it and sends `Switch`, which shard 0 has not read yet.
    let mut new = SimClient::connect(&mut sim, 1, persistent()).expect("room");
    sim.turn(1);
    sim.turn(0);
    sim.turn(1);
    assert_eq!(
        sim.core(1).handovers_in_progress(),
        1,
        "installed on shard 1"
    );
    let now = sim.now();
    let _ = publisher.session.publish(
        MqttString::from("t/held"),
        Bytes::from_static(b"held"),
        QoS::AtLeastOnce,
        false,
        now,
    );
    publisher.flush(&mut sim);
    sim.turn(1);
    let (buffered, _) = sim.core(1).buffered_bytes();
    assert!(
        buffered > 0 && sim.core(1).queued_bytes() == buffered,
        "the publish is held for the arriving session ({buffered} bytes)"
    );

    assert!(sim.settle(1_000), "settles");
    for shard in 0..2 {
        let core = sim.core(shard);
        assert!(!core.has_mesh_overflow(), "shard {shard}: overflow moved");
        assert_eq!(
            core.handovers_in_progress(),
            0,
            "shard {shard}: handover ended"
        );
        let (buffered, _) = core.buffered_bytes();
        assert_eq!(buffered, core.queued_bytes(), "shard {shard}");
    }
    quiesce(&mut sim, &mut [&mut new, &mut publisher]);
    assert!(new.is_connected());
    assert!(
        new.received.iter().any(|p| p.topic.as_str() == "t/held"),
        "the held message reached the session's new connection"
    );
}

/// Fuzz finding F3 (2026-12-05, `core` target on main 0a91032): with every connection closed
/// and the mesh settled, a session handover was still in progress on shard 0.
#[test]
fn f3_no_handover_is_left_in_progress_once_settled() {
    check(
        "F3",
        include_bytes!("fuzz_findings/f3-handover-in-progress-after-settle.bin"),
    );
}

/// Finding F3, the sequence behind it: client id `c` reconnects on shard 1, 0, 1, 0 in turn,
/// each CONNECT read before the takeover it races with is answered. The session's state goes
/// from shard 0 (origin) along every claim: 0 → 1 → 0 → 1 → 0. Shard 0 then waits for two
/// takeovers of `c` at once (claims 2 and 4 of `c`); the request from shard 1's claim 3 used to
/// attach to whichever the map's random order offered first: the older one made the state's
/// path pass shard 0 twice, and its relay took the handover's messages meant for the
/// installer on the same shard (the handover never ended: "1 session handovers in progress"
/// in about 15 of 40 runs); the newer one made shards 0 and 1 wait for each other's answer
/// forever (the last connection never got a CONNACK). Now the request attaches to the claim
/// it replaced and the handover's messages carry their hop on the path.
#[test]
fn f3_a_client_id_reconnecting_on_two_shards_in_turn_gets_its_session() {
    use crate::overload::quiesce;
    use bytes::Bytes;
    use shardmq::broker::Config;
    use shardmq::client::ConnectOptions;
    use shardmq::codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
    use shardmq::sim::{Sim, SimClient};

    let persistent = || {
        ConnectOptions::new("c")
            .protocol(ProtocolVersion::V5)
            .keep_alive_secs(0)
            .clean_start(false)
            .session_expiry_secs(3600)
    };
    let config = Config {
        shards: 2,
        ..Config::default()
    };
    // Several runs: the outcome used to depend on the process's random hash seed, and each
    // `Sim` has its own maps.
    for run in 0..8 {
        let mut sim = Sim::new(config.clone(), run).expect("valid config");
        let mut first = SimClient::connect(&mut sim, 0, persistent()).expect("room");
        quiesce(&mut sim, &mut [&mut first]);
        let qos1 = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..SubscriptionOptions::default()
        };
        first.session.subscribe(&[(MqttString::from("t/#"), qos1)]);
        first.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut first]);

        // Each turn reads the new CONNECT (a claim, a takeover request to the previous claim's
        // shard) before the mesh messages of the turns before.
        let mut last = None;
        for shard in [1, 0, 1, 0] {
            let client = SimClient::connect(&mut sim, shard, persistent()).expect("room");
            sim.turn(shard);
            last = Some(client);
        }
        let mut last = last.expect("four connections");
        quiesce(&mut sim, &mut [&mut last]);
        for shard in 0..2 {
            assert_eq!(
                sim.core(shard).handovers_in_progress(),
                0,
                "run {run}, shard {shard}: the handover ended"
            );
        }
        assert!(
            last.is_connected(),
            "run {run}: the last connection has its session"
        );

        let mut publisher =
            SimClient::connect(&mut sim, 1, ConnectOptions::new("p").keep_alive_secs(0))
                .expect("room");
        quiesce(&mut sim, &mut [&mut last, &mut publisher]);
        let now = sim.now();
        let _ = publisher.session.publish(
            MqttString::from("t/x"),
            Bytes::from_static(b"x"),
            QoS::AtLeastOnce,
            false,
            now,
        );
        publisher.flush(&mut sim);
        quiesce(&mut sim, &mut [&mut last, &mut publisher]);
        assert!(
            last.received.iter().any(|p| p.topic.as_str() == "t/x"),
            "run {run}: the session kept its subscription across the four takeovers"
        );
    }
}

/// Four more inputs of F3's class that the fuzzer found (`-ignore_crashes`) before the fix.
#[test]
fn f3_class_inputs_settle_without_a_handover_in_progress() {
    check(
        "F3 04cbc2c2",
        include_bytes!("fuzz_findings/f3-class-04cbc2c2.bin"),
    );
    check(
        "F3 07c34d8d",
        include_bytes!("fuzz_findings/f3-class-07c34d8d.bin"),
    );
    check(
        "F3 0ec0e190",
        include_bytes!("fuzz_findings/f3-class-0ec0e190.bin"),
    );
    check(
        "F3 4ccd343b",
        include_bytes!("fuzz_findings/f3-class-4ccd343b.bin"),
    );
}
