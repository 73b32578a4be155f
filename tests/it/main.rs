//! shardmq's integration tests, gathered into one test binary (`cargo test --test it`).
//!
//! One binary instead of one per file: the crate and the dev-dependencies are linked once, not
//! 28 times, and libtest spreads every test over the cores at once. Each former `tests/*.rs` file
//! is a module here, named as before, so a test's path is `module::test`, e.g.
//! `cargo test --test it broker_session::` runs one module, `cargo test --test it takeover` a
//! name. Helpers shared by modules live in [`support`]. `tests/README.md` says how a feature
//! adds its tests.

mod support;

mod access_control;
mod broker_flow;
mod broker_interop;
mod broker_ops;
mod broker_protocol;
mod broker_publish_path;
mod broker_pubsub;
mod broker_session;
mod client_broker;
mod client_fake_broker;
mod client_mosquitto;
mod client_throttle;
mod client_tools;
mod codec_malformed;
mod codec_no_alloc;
mod codec_properties;
mod codec_proptest;
mod codec_roundtrip;
mod codec_spec;
mod fault_isolation;
mod interop_cli;
mod interop_paho;
mod interop_raw;
mod mqtt5_auth;
mod mqtt5_flow_control;
mod mqtt5_interop;
mod mqtt5_session;
mod mqtt5_shared;
mod mqtt5_topic_alias;
mod operations;
mod overload;
mod packet_limits;
mod persistence;
mod protocol_fidelity;
mod reload;
mod sim_memory;
mod sim_properties;
mod sim_pubsub;
mod sim_regressions;
mod sim_sessions;
mod sim_shared;
mod sim_takeover;
mod sim_timers;
mod transport;
mod transport_interop;
mod trie_no_alloc;
