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
