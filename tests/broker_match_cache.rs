//! The per-shard match cache (`topic::MatchCache`) over real TCP: a topic published again is
//! answered from the cache, and every subscription change (local or on another shard) makes
//! the cached results stale, so deliveries stay exactly what the subscriptions say.

mod common;

use common::*;
use shardmq::codec::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn cached_results_follow_subscription_changes_on_every_shard() {
    let broker = start_broker(2);
    let mut placer = Placer::new(&broker);
    let mut publisher = placer.raw_on(0, V5, "pub");
    let mut local = placer.raw_on(0, V5, "local");
    let mut remote = placer.raw_on(1, V5, "remote");

    // Cached as "nobody" on both the shard's own trie and the routing table.
    for id in 1..=3 {
        publisher.publish("m/c/t", b"x", QoS::AtLeastOnce, false, id);
        assert_eq!(
            publisher.expect_puback().reason_code,
            ReasonCode::NoMatchingSubscribers
        );
    }
    let before = broker.stats();
    assert!(before.match_cache_hits >= 2, "{before:?}");

    // A subscriber on the publisher's shard.
    assert_eq!(
        local.subscribe("m/+/t", QoS::AtMostOnce),
        ReasonCode::Success
    );
    publisher.publish_acked("m/c/t", b"1", QoS::AtLeastOnce, false, 4);
    assert_eq!(&local.expect_publish().payload[..], b"1");

    // A subscriber on the other shard (a route in the routing table).
    assert_eq!(
        remote.subscribe("m/c/#", QoS::AtMostOnce),
        ReasonCode::Success
    );
    for id in 5..=7 {
        publisher.publish_acked("m/c/t", b"2", QoS::AtLeastOnce, false, id);
        assert_eq!(&local.expect_publish().payload[..], b"2");
        assert_eq!(&remote.expect_publish().payload[..], b"2");
    }

    // Both go away: nothing is delivered from stale results.
    local.send(&unsubscribe_packet(2, &["m/+/t"]));
    local.expect_unsuback();
    remote.send(&unsubscribe_packet(2, &["m/c/#"]));
    remote.expect_unsuback();
    wait_until("the route is removed from the publisher's shard", || {
        publisher.publish("m/c/t", b"3", QoS::AtLeastOnce, false, 8);
        publisher.expect_puback().reason_code == ReasonCode::NoMatchingSubscribers
    });
    local.expect_nothing();
    remote.expect_nothing();

    let after = broker.stats();
    assert!(
        after.match_cache_hits > before.match_cache_hits,
        "{after:?}"
    );
    assert!(
        after.match_cache_misses > before.match_cache_misses,
        "{after:?}"
    );
}
