//! The store of one shard: what the shard calls as its sessions change, turned into log
//! records; the loop turn's group commit; compaction.
//!
//! The store keeps a small mirror of each persistent session (its number in the log, the
//! record ids of its queued messages in order and of its in-flight ones by packet id), so the
//! shard's session code needs no storage fields: the shard reports events ("message queued",
//! "the queue's front went out with packet id 7", "PUBACK 7") and the mirror turns them into
//! records about the right message. Only sessions that outlive their connection (session
//! expiry > 0) have a mirror; every call about another session returns at once.

use super::log::{self, LogWriter};
use super::record::{self, Record, SessionRecord};
use super::recovery::{log_path, manifest_path, options_to_byte, RecoveredSession};
use super::{Durability, StoreShared};
use crate::broker::retained::Retained;
use crate::broker::session::{Message, MessageRef, OutgoingState, SessionState};
use crate::broker::Config;
use crate::codec::{MqttString, Publish, QoS};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The turn's buffer is written out early when it grows past this (no fsync: the turn's
/// commit still decides durability). Bounds the store's memory during a large turn.
const BUFFER_FLUSH_BYTES: usize = 8 << 20;
/// A log is compacted when it is at least this large and more than twice its live records.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

/// A persistent session as the log knows it.
struct Mirror {
    sid: u32,
    /// (record id, record bytes) of each queued QoS 1/2 message, in queue order.
    queue: VecDeque<(u64, u32)>,
    /// Packet id -> (record id, record bytes) of each in-flight message; id 0: not persisted
    /// (sent while the disk limit was reached).
    inflight: HashMap<u16, (u64, u32)>,
    /// The will still to publish (delay, encoded PUBLISH).
    will: Option<(u32, Bytes)>,
    disconnected_at_ms: u64,
    /// Bytes of the latest session record.
    meta_bytes: u32,
}

struct Inner {
    shard: usize,
    mode: Durability,
    interval: Duration,
    shared: Arc<StoreShared>,
    path: PathBuf,
    log: LogWriter,
    /// Records of this loop turn, written by `commit`.
    buf: Vec<u8>,
    scratch: BytesMut,
    last_sync: Instant,
    /// This shard's part of `persistence_max_bytes`.
    limit_bytes: u64,
    /// Bytes of live records (latest session records, queued and in-flight messages, owned
    /// retained messages): what a compaction would keep, roughly.
    live_bytes: u64,
    sessions: HashMap<MqttString, Mirror>,
    next_sid: u32,
    next_message_id: u64,
    /// Retained messages whose latest record is in this log: topic -> (seq, message, bytes).
    /// Kept through compaction while the global store still holds that very message.
    retained: HashMap<MqttString, (u64, MessageRef, u32)>,
    /// Retained clears written here: topic -> seq. An older set may sit in another shard's
    /// log, so a clear is kept while no newer message exists for its topic.
    tombstones: HashMap<MqttString, u64>,
    /// (instant, wall-clock ms) at open: the wall clock of an instant without a system call.
    clock: (Instant, u64),
    /// Mesh messages from each peer last reported durable (`sync` mode).
    reported_durable: Vec<u64>,
    records_this_turn: u64,
}

/// One shard's store; does nothing when persistence is off.
#[derive(Default)]
pub struct ShardStore {
    inner: Option<Box<Inner>>,
}

impl ShardStore {
    /// Persistence off.
    pub fn disabled() -> ShardStore {
        ShardStore { inner: None }
    }

    /// Opens shard `shard`'s store, writing a fresh log that holds exactly `sessions` and
    /// `retained` (what recovery restored to this shard), so that damage found at startup is
    /// gone from disk and the mirrors match the sessions about to be installed.
    pub fn open(
        shard: usize,
        config: &Config,
        shared: Arc<StoreShared>,
        sessions: &[RecoveredSession],
        retained: &[(u64, MessageRef)],
    ) -> std::io::Result<ShardStore> {
        let dir = &config.persistence_dir;
        std::fs::create_dir_all(dir)?;
        let path = log_path(dir, shard);
        let now = Instant::now();
        let now_ms = super::wall_clock_ms();
        let mut inner = Inner {
            shard,
            mode: config.persistence,
            interval: Duration::from_millis(config.persistence_interval_ms),
            shared,
            log: LogWriter::create(&path, &[])?,
            path,
            buf: Vec::new(),
            scratch: BytesMut::new(),
            last_sync: now,
            limit_bytes: config.persistence_max_bytes / config.shards as u64,
            live_bytes: 0,
            sessions: HashMap::new(),
            next_sid: 1,
            next_message_id: 1,
            retained: HashMap::new(),
            tombstones: HashMap::new(),
            clock: (now, now_ms),
            reported_durable: vec![0; config.shards],
            records_this_turn: 0,
        };
        let mut out = Vec::new();
        for s in sessions {
            let will = s.will.as_ref().map(|(publish, delay)| {
                (*delay, record::encode_publish(publish, &mut inner.scratch))
            });
            inner.write_full(&s.state, will, now_ms, &mut out);
        }
        for (seq, message) in retained {
            let len = inner.retained_record(*seq, message, &mut out);
            inner
                .retained
                .insert(message.topic.clone(), (*seq, message.clone(), len));
            inner.live_bytes += u64::from(len);
        }
        inner.log = LogWriter::create(&inner.path, &out)?;
        Ok(ShardStore {
            inner: Some(Box::new(inner)),
        })
    }

    /// Writes the manifest naming the shard count, so a missing log is noticed at startup.
    pub fn write_manifest(config: &Config) -> std::io::Result<()> {
        let path = manifest_path(&config.persistence_dir);
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, format!("shardmq-store 1 shards={}\n", config.shards))?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        log::sync_dir(&path)
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether a PUBACK/PUBREC for a message routed to another shard waits until that shard
    /// has recorded it: in `sync` mode until it is fsynced there, in `periodic` mode until it
    /// is written there (so that `kill -9` loses nothing acknowledged in either mode).
    pub fn holds_acks(&self) -> bool {
        self.inner.is_some()
    }

    /// Whether `client_id`'s session is persisted.
    pub fn is_persistent(&self, client_id: &MqttString) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.sessions.contains_key(client_id))
    }

    /// A connection attached to a session (fresh, resumed, or moved here by takeover):
    /// persistent ones are recorded (in full, messages included, when the log does not know
    /// them yet); one that stopped being persistent is removed.
    pub fn session_connected(&mut self, state: &SessionState, will: Option<(&Publish, u32)>) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        if state.session_expiry_interval_secs == 0 {
            inner.remove(&state.client_id, true);
            return;
        }
        let will = will.map(|(p, delay)| (delay, record::encode_publish(p, &mut inner.scratch)));
        if inner.sessions.contains_key(&state.client_id) {
            inner.put_session(state, Some(will), Some(0));
        } else {
            let mut out = std::mem::take(&mut inner.buf);
            inner.write_full(state, will, 0, &mut out);
            inner.buf = out;
        }
    }

    /// Subscriptions changed.
    pub fn session_changed(&mut self, state: &SessionState) {
        if let Some(inner) = self.inner.as_deref_mut() {
            if inner.sessions.contains_key(&state.client_id) {
                inner.put_session(state, None, None);
            }
        }
    }

    /// The connection went away; the session stays with `will` pending (after its delay).
    pub fn session_detached(
        &mut self,
        state: &SessionState,
        will: Option<(&Publish, u32)>,
        now: Instant,
    ) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        let will = will.map(|(p, d)| (d, record::encode_publish(p, &mut inner.scratch)));
        let at = inner.wall_ms(now).max(1);
        if inner.sessions.contains_key(&state.client_id) {
            inner.put_session(state, Some(will), Some(at));
        } else if state.session_expiry_interval_secs > 0 {
            // Handed over by another shard while its new connection died: recorded here now.
            let mut out = std::mem::take(&mut inner.buf);
            inner.write_full(state, will, at, &mut out);
            inner.buf = out;
        }
    }

    /// The pending will was published.
    pub fn will_published(&mut self, state: &SessionState) {
        if let Some(inner) = self.inner.as_deref_mut() {
            if inner.sessions.contains_key(&state.client_id) {
                inner.put_session(state, Some(None), None);
            }
        }
    }

    /// The session ended (expiry, clean start, DISCONNECT with expiry 0).
    pub fn session_ended(&mut self, client_id: &MqttString) {
        if let Some(inner) = self.inner.as_deref_mut() {
            inner.remove(client_id, true);
        }
    }

    /// The session moved to another shard by takeover. No removal is written: until the new
    /// shard's records are durable this log's copy is the one a crash recovers, and after
    /// that the new shard's records win by their order number.
    pub fn session_moved_out(&mut self, client_id: &MqttString) {
        if let Some(inner) = self.inner.as_deref_mut() {
            inner.remove(client_id, false);
        }
    }

    /// A QoS 1/2 message was queued for the session. Returns false when the disk limit is
    /// reached: the caller takes it off the queue again (drop and count).
    pub fn message_queued(
        &mut self,
        client_id: &MqttString,
        message: &Message,
        qos: QoS,
        retain: bool,
    ) -> bool {
        let Some(inner) = self.inner.as_deref_mut() else {
            return true;
        };
        if qos == QoS::AtMostOnce || !inner.sessions.contains_key(client_id) {
            return true;
        }
        if inner.full() {
            StoreShared::bump(&inner.shared.counters.dropped_disk_full, 1);
            return false;
        }
        let entry = inner.message_record(client_id, message, qos, retain);
        if let Some(m) = inner.sessions.get_mut(client_id) {
            m.queue.push_back(entry);
        }
        true
    }

    /// A QoS 1/2 message went out at once with `packet_id`.
    pub fn message_sent(
        &mut self,
        client_id: &MqttString,
        message: &Message,
        qos: QoS,
        retain: bool,
        packet_id: u16,
    ) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        if qos == QoS::AtMostOnce || !inner.sessions.contains_key(client_id) {
            return;
        }
        let entry = if inner.full() {
            StoreShared::bump(&inner.shared.counters.unpersisted_disk_full, 1);
            (0, 0)
        } else {
            let entry = inner.message_record(client_id, message, qos, retain);
            inner.sent_record(client_id, entry.0, packet_id);
            entry
        };
        if let Some(m) = inner.sessions.get_mut(client_id) {
            m.inflight.insert(packet_id, entry);
        }
    }

    /// The queue's first QoS 1/2 message went out with `packet_id`.
    pub fn message_dequeued(&mut self, client_id: &MqttString, packet_id: u16) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        let Some(m) = inner.sessions.get_mut(client_id) else {
            return;
        };
        let Some(entry) = m.queue.pop_front() else {
            debug_assert!(false, "the mirror queue follows the session queue");
            return;
        };
        m.inflight.insert(packet_id, entry);
        if entry.0 != 0 {
            inner.sent_record(client_id, entry.0, packet_id);
        }
    }

    /// PUBREC accepted for `packet_id`: PUBCOMP awaited.
    pub fn message_released(&mut self, client_id: &MqttString, packet_id: u16) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        let Some(m) = inner.sessions.get(client_id) else {
            return;
        };
        if let Some(&(id, _)) = m.inflight.get(&packet_id) {
            if id != 0 {
                let sid = m.sid;
                inner.push(&Record::Released { sid, id });
            }
        }
    }

    /// The in-flight message `packet_id` is finished (acknowledged, refused or discarded).
    pub fn message_done(&mut self, client_id: &MqttString, packet_id: u16) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        let Some(m) = inner.sessions.get_mut(client_id) else {
            return;
        };
        if let Some((id, len)) = m.inflight.remove(&packet_id) {
            if id != 0 {
                let sid = m.sid;
                inner.live_bytes = inner.live_bytes.saturating_sub(u64::from(len));
                inner.push(&Record::Done { sid, id });
            }
        }
    }

    /// An incoming QoS 2 packet id was added (PUBREC) or removed (PUBREL).
    pub fn incoming_qos2(&mut self, client_id: &MqttString, packet_id: u16, add: bool) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        if let Some(m) = inner.sessions.get(client_id) {
            let sid = m.sid;
            inner.push(&Record::Incoming {
                sid,
                packet_id,
                add,
            });
        }
    }

    /// A retained message was stored (or cleared, with an empty payload) by this shard.
    pub fn retained(&mut self, message: &MessageRef) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        let seq = inner.shared.next_seq();
        let mut out = std::mem::take(&mut inner.buf);
        let len = inner.retained_record(seq, message, &mut out);
        inner.buf = out;
        let topic = message.topic.clone();
        if let Some((_, _, old)) = inner.retained.remove(&topic) {
            inner.live_bytes = inner.live_bytes.saturating_sub(u64::from(old));
        }
        if message.payload.is_empty() {
            inner.tombstones.insert(topic, seq);
        } else {
            inner.tombstones.remove(&topic);
            inner.retained.insert(topic, (seq, message.clone(), len));
            inner.live_bytes += u64::from(len);
        }
        inner.after_push();
    }

    /// The loop turn's group commit: one `write` of the turn's records, then `fdatasync`
    /// (`sync`, or `periodic` when the interval has passed). Returns whether the log should
    /// be compacted now (`ShardStore::compact`).
    pub fn commit(&mut self, now: Instant) -> bool {
        let Some(inner) = self.inner.as_deref_mut() else {
            return false;
        };
        inner.write_out();
        let due = match inner.mode {
            Durability::Sync => true,
            Durability::Periodic => {
                now.saturating_duration_since(inner.last_sync) >= inner.interval
            }
            Durability::Off => false,
        };
        if due && inner.log.unsynced() {
            inner.sync(now);
        }
        let len = inner.log.len();
        let garbage = len > inner.live_bytes.saturating_mul(2);
        garbage && (len >= COMPACT_MIN_BYTES || len >= inner.limit_bytes / 2)
    }

    /// Makes everything written durable (graceful shutdown).
    pub fn sync_now(&mut self) {
        if let Some(inner) = self.inner.as_deref_mut() {
            inner.write_out();
            inner.sync(Instant::now());
        }
    }

    /// When `periodic` mode must fsync written records next (the shard's poll timeout).
    pub fn sync_deadline(&self) -> Option<Instant> {
        let inner = self.inner.as_deref()?;
        (inner.mode == Durability::Periodic && inner.log.unsynced())
            .then(|| inner.last_sync + inner.interval)
    }

    /// Reports to the shards that sent this one mesh messages how many of them are now
    /// recorded (after `commit`: fsynced in `sync` mode, written in `periodic` mode), calling
    /// `wake` for each peer that waits.
    pub fn report_durable(&mut self, received: &[u64], mut wake: impl FnMut(usize)) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        for (source, (&count, reported)) in received
            .iter()
            .zip(inner.reported_durable.iter_mut())
            .enumerate()
        {
            if count != *reported && source != inner.shard {
                *reported = count;
                if inner.shared.set_durable(inner.shard, source, count) {
                    wake(source);
                }
            }
        }
    }

    pub fn shared(&self) -> Option<&Arc<StoreShared>> {
        self.inner.as_ref().map(|i| &i.shared)
    }

    /// Rewrites the log to the live records: `states` are this shard's sessions (those the
    /// store does not persist are skipped), `retained` the global retained store.
    pub fn compact<'a>(
        &mut self,
        states: impl Iterator<Item = &'a SessionState>,
        retained: &Retained,
    ) {
        let Some(inner) = self.inner.as_deref_mut() else {
            return;
        };
        inner.write_out();
        let old = std::mem::take(&mut inner.sessions);
        inner.live_bytes = 0;
        inner.next_sid = 1;
        let mut out = Vec::new();
        for state in states {
            if let Some(m) = old.get(&state.client_id) {
                let will = m.will.clone();
                inner.write_full(state, will, m.disconnected_at_ms, &mut out);
            }
        }
        let owned = std::mem::take(&mut inner.retained);
        for (topic, (seq, message, _)) in owned {
            let current = retained.get(topic.as_str());
            if current.is_some_and(|c| Arc::ptr_eq(&c, &message)) {
                let len = inner.retained_record(seq, &message, &mut out);
                inner.live_bytes += u64::from(len);
                inner.retained.insert(topic, (seq, message, len));
            }
        }
        let tombstones = std::mem::take(&mut inner.tombstones);
        for (topic, seq) in tombstones {
            if retained.get(topic.as_str()).is_none() {
                let clear = Message::new_ref(
                    Publish {
                        topic: topic.clone(),
                        retain: true,
                        ..Publish::default()
                    },
                    inner.clock.0,
                );
                inner.retained_record(seq, &clear, &mut out);
                inner.tombstones.insert(topic, seq);
            }
        }
        match LogWriter::create(&inner.path, &out) {
            Ok(new) => {
                inner.log = new;
                inner.last_sync = Instant::now();
                StoreShared::bump(&inner.shared.counters.compactions, 1);
            }
            Err(e) => {
                // The old log is still in place and complete; the new mirrors describe the
                // same state with new numbers, so the whole state is appended to it instead.
                ::log::error!(
                    "persistence: compacting {} failed: {e}",
                    inner.path.display()
                );
                StoreShared::bump(&inner.shared.counters.io_errors, 1);
                inner.buf.extend_from_slice(&out);
                inner.write_out();
            }
        }
    }
}

impl Inner {
    fn wall_ms(&self, at: Instant) -> u64 {
        let (base, base_ms) = self.clock;
        match at.checked_duration_since(base) {
            Some(d) => base_ms + d.as_millis() as u64,
            None => base_ms.saturating_sub(base.duration_since(at).as_millis() as u64),
        }
    }

    fn full(&self) -> bool {
        self.log.len() + self.buf.len() as u64 >= self.limit_bytes
    }

    /// Appends a record to the turn's buffer; returns its bytes.
    fn push(&mut self, rec: &Record) -> u32 {
        let before = self.buf.len();
        record::encode(rec, &mut self.buf);
        self.after_push();
        (self.buf.len() - before) as u32
    }

    fn after_push(&mut self) {
        self.records_this_turn += 1;
        if self.buf.len() >= BUFFER_FLUSH_BYTES {
            self.write_out();
        }
    }

    fn write_out(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let counters = &self.shared.counters;
        StoreShared::bump(&counters.bytes_written, self.buf.len() as u64);
        StoreShared::bump(&counters.records_written, self.records_this_turn);
        StoreShared::bump(&counters.commits, 1);
        self.records_this_turn = 0;
        if let Err(e) = self.log.append(&self.buf) {
            StoreShared::bump(&counters.io_errors, 1);
            stop_broker(&format!("writing {} failed: {e}", self.path.display()));
        }
        self.buf.clear();
    }

    fn sync(&mut self, now: Instant) {
        match self.log.sync() {
            Ok(true) => StoreShared::bump(&self.shared.counters.fsyncs, 1),
            Ok(false) => {}
            Err(e) => {
                StoreShared::bump(&self.shared.counters.io_errors, 1);
                stop_broker(&format!("fsync of {} failed: {e}", self.path.display()));
            }
        }
        self.last_sync = now;
    }

    /// A session record from `state` and the mirror's will and disconnect time, each replaced
    /// when given.
    fn put_session(
        &mut self,
        state: &SessionState,
        will: Option<Option<(u32, Bytes)>>,
        disconnected_at_ms: Option<u64>,
    ) {
        let Some(m) = self.sessions.get_mut(&state.client_id) else {
            return;
        };
        if let Some(will) = will {
            m.will = will;
        }
        if let Some(at) = disconnected_at_ms {
            m.disconnected_at_ms = at;
        }
        let rec = session_record(
            self.shared.next_seq(),
            m.sid,
            state,
            m.will.clone(),
            m.disconnected_at_ms,
        );
        let old = m.meta_bytes;
        let len = self.push(&Record::Session(rec));
        if let Some(m) = self.sessions.get_mut(&state.client_id) {
            m.meta_bytes = len;
        }
        self.live_bytes = self.live_bytes.saturating_sub(u64::from(old)) + u64::from(len);
    }

    /// Writes a session new to this log with all its messages into `out`, and its mirror.
    fn write_full(
        &mut self,
        state: &SessionState,
        will: Option<(u32, Bytes)>,
        disconnected_at_ms: u64,
        out: &mut Vec<u8>,
    ) {
        let sid = self.next_sid;
        self.next_sid = self.next_sid.wrapping_add(1).max(1);
        let rec = session_record(
            self.shared.next_seq(),
            sid,
            state,
            will.clone(),
            disconnected_at_ms,
        );
        let before = out.len();
        record::encode(&Record::Session(rec), out);
        let meta_bytes = (out.len() - before) as u32;
        let mut mirror = Mirror {
            sid,
            queue: VecDeque::new(),
            inflight: HashMap::new(),
            will,
            disconnected_at_ms,
            meta_bytes,
        };
        let mut live = u64::from(meta_bytes);
        for o in &state.inflight {
            let (id, len) = self.encode_message(sid, &o.message, o.qos, o.retain, out);
            record::encode(
                &Record::Sent {
                    sid,
                    id,
                    packet_id: o.packet_id,
                },
                out,
            );
            if o.state == OutgoingState::AwaitPubComp {
                record::encode(&Record::Released { sid, id }, out);
            }
            mirror.inflight.insert(o.packet_id, (id, len));
            live += u64::from(len);
        }
        for q in state.queued.iter().filter(|q| q.qos != QoS::AtMostOnce) {
            let (id, len) = self.encode_message(sid, &q.message, q.qos, q.retain, out);
            mirror.queue.push_back((id, len));
            live += u64::from(len);
        }
        self.live_bytes += live;
        self.sessions.insert(state.client_id.clone(), mirror);
    }

    fn encode_message(
        &mut self,
        sid: u32,
        message: &Message,
        qos: QoS,
        retain: bool,
        out: &mut Vec<u8>,
    ) -> (u64, u32) {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let rec = Record::Message {
            sid,
            id,
            qos,
            retain,
            received_at_ms: self.wall_ms(message.received_at),
            publish: record::encode_publish(&message.publish, &mut self.scratch),
        };
        let before = out.len();
        record::encode(&rec, out);
        (id, (out.len() - before) as u32)
    }

    /// A message record for the session into the turn's buffer.
    fn message_record(
        &mut self,
        client_id: &MqttString,
        message: &Message,
        qos: QoS,
        retain: bool,
    ) -> (u64, u32) {
        let sid = self.sessions.get(client_id).map_or(0, |m| m.sid);
        let mut out = std::mem::take(&mut self.buf);
        let entry = self.encode_message(sid, message, qos, retain, &mut out);
        self.buf = out;
        self.live_bytes += u64::from(entry.1);
        self.after_push();
        entry
    }

    fn sent_record(&mut self, client_id: &MqttString, id: u64, packet_id: u16) {
        let sid = self.sessions.get(client_id).map_or(0, |m| m.sid);
        self.push(&Record::Sent { sid, id, packet_id });
    }

    fn retained_record(&mut self, seq: u64, message: &Message, out: &mut Vec<u8>) -> u32 {
        let rec = Record::Retained {
            seq,
            received_at_ms: self.wall_ms(message.received_at),
            publish: record::encode_publish(&message.publish, &mut self.scratch),
        };
        let before = out.len();
        record::encode(&rec, out);
        (out.len() - before) as u32
    }

    /// Forgets a session's mirror, writing a removal unless it moved to another shard.
    fn remove(&mut self, client_id: &MqttString, write: bool) {
        let Some(m) = self.sessions.remove(client_id) else {
            return;
        };
        let live: u64 = m
            .queue
            .iter()
            .chain(m.inflight.values())
            .map(|&(_, len)| u64::from(len))
            .sum::<u64>()
            + u64::from(m.meta_bytes);
        self.live_bytes = self.live_bytes.saturating_sub(live);
        if write {
            let seq = self.shared.next_seq();
            self.push(&Record::SessionGone { seq, sid: m.sid });
        }
    }
}

fn session_record(
    seq: u64,
    sid: u32,
    state: &SessionState,
    will: Option<(u32, Bytes)>,
    disconnected_at_ms: u64,
) -> SessionRecord {
    SessionRecord {
        seq,
        sid,
        client_id: state.client_id.clone(),
        session_expiry_interval_secs: state.session_expiry_interval_secs,
        disconnected_at_ms,
        subscriptions: state
            .subscriptions
            .iter()
            .map(|(f, s)| (f.clone(), options_to_byte(&s.options), s.identifier))
            .collect(),
        incoming_qos2: state.incoming_qos2.iter().copied().collect(),
        will,
    }
}

/// A log write or fsync failed. The broker may already have promised what this turn holds (its
/// acks go out after this commit), and after a failed fsync the kernel may have dropped the dirty
/// pages, so retrying cannot tell what reached the disk (PostgreSQL's "fsyncgate"). The only safe
/// answer is to stop: the panic is not contained (`broker::fault` policy 2), the broker stops and
/// the binary exits with status 70, and the restart recovers from what the log really holds.
#[cold]
fn stop_broker(what: &str) -> ! {
    ::log::error!(
        "persistence: {what}; stopping the broker so that nothing unwritten is acknowledged"
    );
    panic!("persistence: {what}");
}
