//! Counters. Each shard owns one [`ShardCounters`] (relaxed atomics written only by that shard);
//! [`Stats`] is a snapshot summed over shards.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $name:ident ),* $(,)?) => {
        /// Live counters of one shard (or of the acceptors). Written with relaxed atomics by one
        /// thread, read by `BrokerHandle::stats`. Aligned to 128 bytes so that two shards'
        /// counters never share a cache line.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct ShardCounters {
            $( $(#[doc = $doc])* pub $name: AtomicU64, )*
        }

        /// A snapshot of the counters, summed over shards.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            $( $(#[doc = $doc])* pub $name: u64, )*
            /// Open connections per shard, index = shard id.
            pub connections_per_shard: Vec<u64>,
        }

        impl ShardCounters {
            fn add_to(&self, stats: &mut Stats) {
                $( stats.$name += self.$name.load(Ordering::Relaxed); )*
            }
        }

        impl Stats {
            /// Calls `f` with each counter's name, doc text and value, in declaration order
            /// (for the exposition of metrics in `crate::ops`).
            pub fn for_each(&self, mut f: impl FnMut(&'static str, &'static str, u64)) {
                $( f(stringify!($name), concat!($($doc),*), self.$name); )*
            }
        }
    };
}

counters! {
    /// Connections currently open (accepted sockets owned by a shard).
    connections_open,
    /// Connections accepted since start.
    connections_accepted,
    /// Connections closed at accept because `max_connections` was reached.
    connections_rejected,
    /// CONNECTs accepted (CONNACK 0).
    clients_connected,
    /// CONNECTs refused because `max_sessions` was reached (also in `connects_refused`).
    sessions_refused,
    /// CONNECTs refused with a CONNACK error code.
    connects_refused,
    /// PUBLISH packets received from clients.
    messages_received,
    /// PUBLISH packets sent to clients.
    messages_sent,
    /// Messages not queued because a session's queue was at `max_queued_messages` or
    /// `max_queued_bytes`.
    dropped_queue_full,
    /// QoS 0 messages dropped because a connection's outgoing buffer was over its limit.
    dropped_outgoing_buffer_full,
    /// Messages not sent because their MQTT 5 Message Expiry Interval had passed.
    messages_expired,
    /// Messages not sent because they exceeded the client's Maximum Packet Size.
    dropped_client_packet_size,
    /// Publishes (the connection is closed) and filters (refused) over `max_topic_levels`.
    topic_levels_exceeded,
    /// QoS 1/2 messages to an online client that waited because its in-flight window
    /// (`max_inflight` / its Receive Maximum) was full.
    inflight_window_full,
    /// CONNECTs whose keep-alive was over `max_keep_alive_secs` (MQTT 5: capped with Server Keep
    /// Alive; 3.x: refused).
    keep_alive_capped,
    /// Subscriptions refused because of `max_subscriptions_per_client`.
    subscriptions_refused,
    /// Retained messages not stored because of `max_retained_messages`.
    retained_refused,
    /// Packets over `max_packet_size` received (the connection is closed).
    packets_too_large,
    /// Connections closed for a malformed packet or protocol error (other than too large).
    protocol_errors,
    /// Connections closed because the keep-alive expired.
    keep_alive_timeouts,
    /// Connections closed because no CONNECT arrived within the handshake timeout.
    handshake_timeouts,
    /// Connections closed as slow consumers: outgoing buffer at its limit with nothing written
    /// for `slow_consumer_timeout_ms` (issue 11).
    slow_consumer_disconnects,
    /// Connections closed because the client exceeded our Receive Maximum.
    receive_maximum_exceeded,
    /// Sessions taken over by a new connection with the same client id.
    takeovers,
    /// Will messages published.
    wills_published,
    /// Sessions expired while offline.
    sessions_expired,
    /// Shared subscription messages that reached a shard whose last member had just left.
    shared_no_member,
    /// Messages for a session arriving from another shard that were dropped because its
    /// handover already held `max_queued_messages` of them (core/sessions/handover.rs).
    handover_held_dropped,
    /// Shared subscription messages queued because no member on the chosen shard could take
    /// them at once (all offline or with a full in-flight window).
    shared_all_members_busy,
    /// Shared subscription messages handed to another member because the session they were
    /// in flight or queued for ended.
    shared_redelivered,
    /// CONNECTs refused and re-authentications failed by password or enhanced authentication.
    authentication_failures,
    /// Times a mesh channel was full and a message waited in the overflow slot.
    mesh_channel_full,
    /// Times a publisher's connection stopped being read because a recipient session (or a
    /// destination shard) was congested or its shard under memory pressure (QoS 0 publishers
    /// too with `qos0_backpressure`).
    publishers_paused_congestion,
    /// Times a connected session became congested (its queue reached half of
    /// `max_queued_messages`).
    sessions_congested,
    /// Times a congested session was stalled (congested for `congestion_timeout_ms`).
    sessions_stalled,
    /// QoS 0 deliveries and queue entries dropped because the shard's part of
    /// `max_buffered_bytes` was used up.
    dropped_memory_limit,
    /// Times a shard came under memory pressure (three quarters of its part of
    /// `max_buffered_bytes` buffered: its publishers are paused).
    memory_pressure,
    /// Times a shard's memory pressure lasted `congestion_timeout_ms` and was stalled
    /// (publishers read again).
    memory_pressure_stalled,
    /// Gauge: bytes buffered now in outgoing buffers and session queues (summed over shards).
    buffered_bytes,
    /// Gauge: the highest `buffered_bytes` of each shard since start, summed over shards (at
    /// least the broker-wide peak, at most the sum of the shards' budgets plus slack).
    buffered_bytes_peak,
    /// Publishes matched from a shard's match cache (`topic::MatchCache`: its own subscribers,
    /// and the routing table when there are several shards). Lookups in an empty trie or
    /// table are not counted.
    match_cache_hits,
    /// Publishes matched by walking the trie (cache miss, or a name or result over the cache's
    /// limits).
    match_cache_misses,
    // Access control (issue 13, src/auth): one counter per refusal kind.
    /// CONNECTs refused: the user is not in the password file.
    auth_unknown_user,
    /// CONNECTs refused: a wrong password, or a token that does not verify.
    auth_bad_password,
    /// CONNECTs refused: the JWT expired (or is not valid yet).
    auth_expired_token,
    /// CONNECTs refused: no credentials and anonymous clients not allowed.
    auth_anonymous_refused,
    /// CONNECTs refused with 0x89 Server busy: the shard's password-check budget was spent.
    auth_busy,
    /// CONNECTs refused: the will's topic is not writable for the client (ACL).
    acl_denied_will,
    /// PUBLISH packets dropped: the client may not write the topic (ACL).
    acl_denied_publish,
    /// Subscription filters refused (0x87 / 0x80): nothing under them is readable (ACL).
    acl_denied_subscribe,
    /// Deliveries skipped: the subscriber may not read the topic (ACL).
    acl_denied_delivery,
    /// Connections closed because their JWT expired (`disconnect_on_expiry`).
    token_expired_disconnects,
    /// Packets the broker built from what clients sent but could not encode, because a value
    /// was over a wire-format limit (a string over 65,535 bytes, a packet over 268,435,455):
    /// not sent (a PUBLISH is discarded; otherwise the connection is closed, 0x83).
    packets_unencodable,
    /// Panics contained to one connection (`broker::fault`: a bug while decoding its packet):
    /// logged with the input, that connection closed, every other one unaffected.
    connection_panics,
    /// PUBLISHes (and wills) from clients to a `$SYS` or `$share` topic name, dropped (MQTT 5
    /// QoS 1/2: acknowledged with 0x87 Not authorized), as Mosquitto does (issue 16).
    publishes_to_reserved_topics,
    /// Bytes read from client sockets (operations: `$SYS/broker/bytes/received`, metrics).
    received_bytes,
    /// Bytes written to client sockets (operations: `$SYS/broker/bytes/sent`, metrics).
    sent_bytes,
    /// Gauge: subscriptions held by sessions, shared ones included (operations:
    /// `$SYS/broker/subscriptions/count`).
    subscriptions,
    /// Turns of the shard's event loop (operations: the watchdog checks that it advances).
    loop_turns,
    /// Issue 11 (docs/memory.md): times a connection stopped being read because its outgoing
    /// buffer reached `max_outgoing_bytes` (its own replies cannot be written); it is read
    /// again once written down to half.
    reads_paused_outgoing,
    /// Issue 11: connections closed because a packet they started did not complete within
    /// `partial_packet_timeout_ms` (per 64 KiB of the packet).
    partial_packet_timeouts,
    /// Issue 11: new queue entries dropped because the shard's session queues held their share
    /// (half) of its part of `max_buffered_bytes`; live deliveries are not affected.
    dropped_queue_share,
    /// Issue 11: SUBSCRIBEs whose matching retained messages were cut at
    /// `max_retained_per_subscribe` or `max_retained_bytes_per_subscribe`.
    retained_subscribe_bound_hit,
    /// Gauge: MQTT clients connected now, their CONNECT accepted and their session attached;
    /// sockets still before CONNECT are not counted (operations, issue 15:
    /// `$SYS/broker/clients/connected` as Mosquitto's).
    clients_online,
    /// MQTT packets of every type received from clients (operations, issue 15:
    /// `$SYS/broker/messages/received`, which Mosquitto counts so).
    packets_received,
    /// MQTT packets of every type queued to clients, PUBLISH included (operations, issue 15:
    /// `$SYS/broker/messages/sent`).
    packets_sent,
    /// Issue 11: gauge: the part of `buffered_bytes` held by session queues (each distinct
    /// message once per shard, however many queues hold it, plus a slot per entry).
    queued_bytes,
    /// Issue 11: gauge: distinct messages held by session queues, summed over shards (the size
    /// of each shard's charge map, bounded by the queue entries the shard may hold).
    queued_messages_distinct,
}

impl Stats {
    /// The counters of one shard alone (operations: per-shard metrics and `$SYS` subtree).
    pub fn of_shard(shard: &ShardCounters) -> Stats {
        let mut stats = Stats::default();
        shard.add_to(&mut stats);
        stats
            .connections_per_shard
            .push(shard.connections_open.load(Ordering::Relaxed));
        stats
    }

    /// Sums the counters of every shard and the acceptors' counters.
    pub fn collect<'a>(
        shards: impl IntoIterator<Item = &'a ShardCounters>,
        acceptors: &ShardCounters,
    ) -> Stats {
        let mut stats = Stats::default();
        acceptors.add_to(&mut stats);
        for shard in shards {
            shard.add_to(&mut stats);
            stats
                .connections_per_shard
                .push(shard.connections_open.load(Ordering::Relaxed));
        }
        stats
    }
}

/// One shard's "has congested sessions" flag, on its own cache line: publishers on every shard
/// read it (one relaxed load per destination shard) after routing a PUBLISH. The second field
/// counts the times the flag was set (its episodes): a publisher paused on the flag waits for the
/// episode it met to end, not for the flag to be seen clear, so it cannot starve when a shard's
/// episodes follow each other faster than the publisher's shard wakes up.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CongestionFlag(pub AtomicBool, pub AtomicU64);

/// Adds one to a counter.
#[inline]
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Adds `n` to a counter.
#[inline]
pub fn bump_by(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Subtracts `n` from a gauge.
#[inline]
pub fn drop_by(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Ordering::Relaxed);
}

/// Subtracts one from a gauge.
#[inline]
pub fn drop_one(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}
