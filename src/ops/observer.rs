//! [`Observer`]: what the operations threads (`$SYS`, metrics, watchdog) hold of a running
//! broker. Cheap to clone, `Send`; it reads counters and flags and injects `$SYS` messages
//! through shard 0's control channel, never touching the per-message path.

use super::health::Liveness;
use crate::broker::mesh::ShardMsg;
use crate::broker::runtime::inbox::ShardSignal;
use crate::broker::session::Message;
use crate::broker::{Global, Stats};
use crate::codec::{MqttString, Publish, QoS};
use bytes::Bytes;
use crossbeam_channel::Sender;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// A handle for operations tools. See the module docs.
#[derive(Clone)]
pub struct Observer {
    shared: Arc<Global>,
    signals: Arc<[Arc<ShardSignal>]>,
    /// The control channel of shard 0, which routes injected messages.
    control: Sender<ShardMsg>,
    liveness: Arc<Liveness>,
    started: Instant,
}

impl Observer {
    pub(crate) fn new(
        shared: Arc<Global>,
        signals: Arc<[Arc<ShardSignal>]>,
        control: Sender<ShardMsg>,
        liveness: Arc<Liveness>,
        started: Instant,
    ) -> Observer {
        Observer {
            shared,
            signals,
            control,
            liveness,
            started,
        }
    }

    /// Counters summed over the shards and the acceptors.
    pub fn stats(&self) -> Stats {
        Stats::collect(&self.shared.counters, &self.shared.acceptor_counters)
    }

    /// Each shard's counters alone, by shard id.
    pub fn shard_stats(&self) -> Vec<Stats> {
        self.shared.counters.iter().map(Stats::of_shard).collect()
    }

    /// The acceptors' counters (connections refused at accept).
    pub fn acceptor_stats(&self) -> Stats {
        Stats::of_shard(&self.shared.acceptor_counters)
    }

    /// Retained messages held.
    pub fn retained_messages(&self) -> usize {
        self.shared.retained.len()
    }

    /// Sessions held, connected or not (Mosquitto's `clients/total`).
    pub fn sessions(&self) -> usize {
        self.shared.sessions_open.load(Ordering::Relaxed)
    }

    /// Seconds since the broker started.
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Whether each shard has congested sessions now.
    pub fn shards_congested(&self) -> Vec<bool> {
        self.shared
            .congested
            .iter()
            .map(|f| f.0.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether every shard and acceptor thread runs and no shutdown has begun.
    pub fn healthy(&self) -> bool {
        !self.shared.shutdown.load(Ordering::SeqCst) && self.liveness.all_running()
    }

    /// Running flags of the broker's threads.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Each shard's loop turns so far (the watchdog compares two readings).
    pub fn loop_turns(&self) -> Vec<u64> {
        self.shared
            .counters
            .iter()
            .map(|c| c.loop_turns.load(Ordering::Relaxed))
            .collect()
    }

    /// Access control (issue 13): re-reads the password, SCRAM and ACL files; a file that
    /// fails keeps its previous version (the errors are logged and returned).
    pub fn reload_auth(&self) -> Vec<String> {
        self.shared.reload_auth()
    }

    /// Wakes every shard once, so that a live idle shard turns its loop (for the watchdog).
    pub fn wake_shards(&self) {
        for signal in self.signals.iter() {
            signal.sleeping.store(false, Ordering::SeqCst);
            if let Err(e) = signal.waker.wake() {
                log::warn!("cannot wake a shard: {e}");
            }
        }
    }

    /// Publishes a QoS 0 message from the broker itself, routed by shard 0 like a received
    /// PUBLISH (retained ones are stored). Returns false when shard 0's control channel is
    /// full (the message is dropped: the next `$SYS` round replaces it).
    pub fn inject(&self, topic: &str, payload: Vec<u8>, retain: bool) -> bool {
        let publish = Publish {
            qos: QoS::AtMostOnce,
            retain,
            topic: MqttString::from(topic),
            payload: Bytes::from(payload),
            ..Publish::default()
        };
        let message = Message::new_ref(publish, Instant::now());
        if self.control.try_send(ShardMsg::Inject(message)).is_err() {
            return false;
        }
        if let Err(e) = self.signals[0].notify() {
            log::warn!("cannot wake shard 0: {e}");
        }
        true
    }
}
