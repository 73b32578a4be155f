//! Packets the broker builds from what clients sent stay within the wire format's limits
//! (issue 10): over real TCP, the example of the issue (`--response-information` with a
//! 65,535-byte client id) gets a valid CONNACK without Response Information, and the shard
//! serving it goes on serving everyone. The other instances of the class are unit tests next
//! to the code (`codec::limits`, `broker::core::protocol`, `broker::core::authn`,
//! `broker::config`).

use crate::support::broker::*;
use shardmq::broker::Config;
use shardmq::codec::{ProtocolVersion, ReasonCode, FIELD_LEN_MAX};

fn asking_response_information(client_id: &str) -> shardmq::codec::Connect {
    let mut connect = connect_packet(ProtocolVersion::V5, client_id, true);
    connect.properties.request_response_information = Some(1);
    connect
}

#[test]
fn response_information_over_65535_bytes_is_left_out_and_the_shard_lives_on() {
    // One shard: the connections after the long id are served by the same shard thread.
    let broker = start_with(Config {
        response_information: Some("responses/".into()),
        ..config(1)
    });
    let addr = addr(&broker);
    let long_id = "x".repeat(FIELD_LEN_MAX);
    let (mut long, connack) = Raw::connect_with(addr, asking_response_information(&long_id));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(connack.properties.response_information, None);
    long.ping();

    let (mut short, connack) = Raw::connect_with(addr, asking_response_information("short"));
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack
            .properties
            .response_information
            .as_ref()
            .map(|info| info.as_str()),
        Some("responses/short")
    );
    short.ping();
    long.ping();
    assert_eq!(broker.stats().packets_unencodable, 0);
    broker.shutdown();
    broker.join();
}
