//! Conformance of MQTT 3.1.1 and 5.0 behaviour, checked from outside by paho-mqtt clients
//! (tests/interop/paho_v311.py, paho_v5.py): the behaviours of the Eclipse Paho interoperability
//! suite and the normative statements listed in tests/interop/SCENARIOS.md.
//!
//! The `mosquitto_*` tests run the same scripts against Mosquitto, which proves the scripts
//! themselves (known Mosquitto deviations are listed in support::interop).

use crate::support::interop::{require_python, run_against_mosquitto, run_against_shardmq};

#[test]
fn mosquitto_passes_paho_v311_suite() {
    require_python(true);
    run_against_mosquitto("paho_v311.py", &[]);
}

#[test]
fn mosquitto_passes_paho_v5_suite() {
    require_python(true);
    // --all: Mosquitto implements the features still pending for shardmq, so all are asserted.
    run_against_mosquitto("paho_v5.py", &["--all"]);
}

#[test]
fn shardmq_passes_paho_v311_suite() {
    require_python(true);
    run_against_shardmq("paho_v311.py", &[]).assert_passed();
}

#[test]
fn shardmq_passes_paho_v5_suite() {
    require_python(true);
    run_against_shardmq("paho_v5.py", &[]).assert_passed();
}

/// Features shardmq does not have yet (tests/interop/pending.py, listed in FINDINGS.md): their
/// scenarios run and are reported here, not asserted, until the feature lands and the name
/// moves to paho_v5.py. The script itself must run to its summary.
#[test]
fn shardmq_pending_v5_features_are_reported() {
    require_python(true);
    let run = run_against_shardmq("paho_v5_pending.py", &[]);
    println!("{}", run.output);
    assert!(
        run.completed(),
        "paho_v5_pending.py did not complete:\n{}",
        run.output
    );
    for failure in run.failures() {
        eprintln!("pending (not asserted): {failure}");
    }
    for line in run.output.lines().filter(|line| line.starts_with("PASS ")) {
        eprintln!("pending scenario now passes, move it out of pending.py to assert it: {line}");
    }
}
