//! Decodes arbitrary bytes as a session of protocol level 5; re-encodes what decodes.
#![no_main]

#[path = "decode_common.rs"]
mod decode_common;

use libfuzzer_sys::fuzz_target;
use shardmq::codec::ProtocolVersion;

fuzz_target!(|data: &[u8]| {
    decode_common::decode_everything(data, ProtocolVersion::V5);
});
