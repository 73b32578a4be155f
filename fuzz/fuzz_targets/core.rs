//! The whole broker core: several connections on several shards, arbitrary bytes and
//! well-formed packets, mesh interleavings and clock jumps, with invariants checked
//! (`shardmq::sim::script`). A finding goes into `tests/it/sim_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = shardmq::sim::script::run(data) {
        panic!("invariant broken: {violation}");
    }
});
