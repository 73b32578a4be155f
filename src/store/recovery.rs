//! Startup: every shard's log read back (in parallel, one thread per file), merged into the
//! sessions and retained messages to restore, with what was damaged, dropped or expired counted.

use super::log::{self, ScanDamage};
use super::record::{self, Record, SessionRecord};
use crate::broker::session::{
    Message, MessageRef, Outgoing, OutgoingState, Queued, SessionState, StoredSubscription,
};
use crate::codec::{MqttString, Publish, QoS, RetainHandling, SubscriptionOptions};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A session read back from the logs, ready to be installed on a shard.
#[derive(Debug)]
pub struct RecoveredSession {
    pub state: SessionState,
    /// A will still to be published, with its Will Delay Interval in seconds.
    pub will: Option<(Publish, u32)>,
    /// Time until the session expires; `None`: never.
    pub expiry_left: Option<Duration>,
    /// Time until the will is due (zero: publish at once).
    pub will_delay_left: Duration,
}

/// What recovery found, for the log and `BrokerHandle::persistence_stats`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub files_read: u64,
    /// Files the manifest names that were not there.
    pub files_missing: u64,
    /// Files that could not be read at all (counted, their state lost).
    pub files_unreadable: u64,
    pub bytes_read: u64,
    pub sessions: u64,
    pub messages: u64,
    pub retained: u64,
    /// Damaged regions skipped in the middle of files.
    pub damaged_regions: u64,
    /// Files that ended inside a record.
    pub torn_tails: u64,
    pub bytes_dropped: u64,
    /// Records lost: unparsable, or about a session or message whose own record was lost.
    pub records_dropped: u64,
    /// Sessions whose expiry passed while the broker was down (their wills are published).
    pub sessions_expired: u64,
    /// Queued messages whose Message Expiry Interval passed while the broker was down.
    pub messages_expired: u64,
    pub duration_ms: u64,
}

/// Everything to restore, by shard.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<Vec<RecoveredSession>>,
    /// Retained messages with their order number, by the shard that will own their records.
    pub retained: Vec<Vec<(u64, MessageRef)>>,
    /// Wills of sessions that expired while the broker was down.
    pub expired_wills: Vec<Publish>,
    /// One above the highest order number seen (sessions and retained messages).
    pub next_seq: u64,
    pub report: RecoveryReport,
}

struct ReplayMessage {
    qos: QoS,
    retain: bool,
    received_at_ms: u64,
    publish: Bytes,
    packet_id: Option<u16>,
    released: bool,
}

struct ReplaySession {
    record: SessionRecord,
    incoming: BTreeSet<u16>,
    messages: BTreeMap<u64, ReplayMessage>,
}

/// One file replayed.
#[derive(Default)]
struct Replay {
    sessions: HashMap<u32, ReplaySession>,
    /// Client id -> highest seq of a `SessionGone`.
    gone: HashMap<MqttString, u64>,
    /// Topic -> (seq, received at, publish; `None` payload-empty clear).
    retained: HashMap<MqttString, (u64, u64, Option<Publish>)>,
    damage: ScanDamage,
    orphans: u64,
    bytes: u64,
    max_seq: u64,
}

impl Replay {
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Session(s) => {
                self.max_seq = self.max_seq.max(s.seq);
                let incoming = s.incoming_qos2.iter().copied().collect();
                match self.sessions.get_mut(&s.sid) {
                    Some(existing) => {
                        existing.incoming = incoming;
                        existing.record = s;
                    }
                    None => {
                        let replay = ReplaySession {
                            record: s,
                            incoming,
                            messages: BTreeMap::new(),
                        };
                        self.sessions.insert(replay.record.sid, replay);
                    }
                }
            }
            Record::SessionGone { seq, sid } => {
                self.max_seq = self.max_seq.max(seq);
                match self.sessions.remove(&sid) {
                    Some(s) => {
                        let entry = self.gone.entry(s.record.client_id).or_default();
                        *entry = (*entry).max(seq);
                    }
                    None => self.orphans += 1,
                }
            }
            Record::Message {
                sid,
                id,
                qos,
                retain,
                received_at_ms,
                publish,
            } => match self.sessions.get_mut(&sid) {
                Some(s) => {
                    s.messages.insert(
                        id,
                        ReplayMessage {
                            qos,
                            retain,
                            received_at_ms,
                            publish,
                            packet_id: None,
                            released: false,
                        },
                    );
                }
                None => self.orphans += 1,
            },
            Record::Sent { sid, id, packet_id } => match self.message(sid, id) {
                Some(m) => m.packet_id = Some(packet_id),
                None => self.orphans += 1,
            },
            Record::Released { sid, id } => match self.message(sid, id) {
                Some(m) => m.released = true,
                None => self.orphans += 1,
            },
            Record::Done { sid, id } => {
                let removed = self
                    .sessions
                    .get_mut(&sid)
                    .and_then(|s| s.messages.remove(&id));
                if removed.is_none() {
                    self.orphans += 1;
                }
            }
            Record::Incoming {
                sid,
                packet_id,
                add,
            } => match self.sessions.get_mut(&sid) {
                Some(s) if add => {
                    s.incoming.insert(packet_id);
                }
                Some(s) => {
                    s.incoming.remove(&packet_id);
                }
                None => self.orphans += 1,
            },
            Record::Retained {
                seq,
                received_at_ms,
                publish,
            } => {
                self.max_seq = self.max_seq.max(seq);
                let Some(publish) = record::decode_publish(&publish) else {
                    self.orphans += 1;
                    return;
                };
                let topic = publish.topic.clone();
                let value = (!publish.payload.is_empty()).then_some(publish);
                match self.retained.get(&topic) {
                    Some((old, _, _)) if *old > seq => {}
                    _ => {
                        self.retained.insert(topic, (seq, received_at_ms, value));
                    }
                }
            }
        }
    }

    fn message(&mut self, sid: u32, id: u64) -> Option<&mut ReplayMessage> {
        self.sessions.get_mut(&sid)?.messages.get_mut(&id)
    }
}

/// The log file of shard `index` in `dir`.
pub fn log_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("shard-{index}.log"))
}

/// The manifest: the shard count of the run that wrote the logs, so that a missing file is
/// noticed.
pub fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("MANIFEST")
}

/// Indexes of the log files present in `dir`, and the shard count its manifest names.
fn find_logs(dir: &Path) -> (Vec<usize>, usize) {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_prefix("shard-")
                .and_then(|rest| rest.strip_suffix(".log"))
                .and_then(|n| n.parse::<usize>().ok())
            {
                found.push(n);
            }
        }
    }
    found.sort_unstable();
    let manifest = std::fs::read_to_string(manifest_path(dir))
        .ok()
        .and_then(|text| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix("shards=")?.parse().ok())
        })
        .unwrap_or(0);
    (found, manifest)
}

/// Reads every log in `dir` and merges them for `shards` shards. `now_ms` is wall-clock time
/// (ms since the Unix epoch) and `now` the matching instant: expiry keeps counting across the
/// restart.
pub fn recover(dir: &Path, shards: usize, now_ms: u64, now: Instant) -> Recovered {
    let started = Instant::now();
    let (files, manifest_shards) = find_logs(dir);
    let mut report = RecoveryReport::default();
    for index in 0..manifest_shards {
        if !files.contains(&index) {
            ::log::error!(
                "persistence: {} is missing: the sessions and messages it held are lost",
                log_path(dir, index).display()
            );
            report.files_missing += 1;
        }
    }
    let replays: Vec<(usize, Option<Replay>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .iter()
            .map(|&index| {
                let path = log_path(dir, index);
                (index, scope.spawn(move || replay_file(&path)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(index, h)| (index, h.join().ok().flatten()))
            .collect()
    });
    let mut out = Recovered {
        sessions: (0..shards).map(|_| Vec::new()).collect(),
        retained: (0..shards).map(|_| Vec::new()).collect(),
        ..Recovered::default()
    };
    // Client id -> (seq, shard, session) of the newest record; client id -> newest removal.
    let mut newest: HashMap<MqttString, (u64, usize, ReplaySession)> = HashMap::new();
    let mut gone: HashMap<MqttString, u64> = HashMap::new();
    let mut retained: HashMap<MqttString, (u64, usize, u64, Option<Publish>)> = HashMap::new();
    for (index, replay) in replays {
        let Some(replay) = replay else {
            report.files_unreadable += 1;
            continue;
        };
        let shard = index % shards;
        report.files_read += 1;
        report.bytes_read += replay.bytes;
        report.damaged_regions += replay.damage.damaged_regions;
        report.torn_tails += u64::from(replay.damage.torn_tail);
        report.bytes_dropped += replay.damage.bytes_dropped;
        report.records_dropped += replay.damage.records_unparsable + replay.orphans;
        if replay.damage != ScanDamage::default() {
            ::log::warn!(
                "persistence: {} damaged: {:?} ({} records referring to lost ones dropped)",
                log_path(dir, index).display(),
                replay.damage,
                replay.orphans
            );
        }
        out.next_seq = out.next_seq.max(replay.max_seq + 1);
        for (client, seq) in replay.gone {
            let entry = gone.entry(client).or_default();
            *entry = (*entry).max(seq);
        }
        for (_, session) in replay.sessions {
            let seq = session.record.seq;
            match newest.get(&session.record.client_id) {
                Some((old, _, _)) if *old > seq => {}
                _ => {
                    newest.insert(session.record.client_id.clone(), (seq, shard, session));
                }
            }
        }
        for (topic, (seq, at, publish)) in replay.retained {
            match retained.get(&topic) {
                Some((old, ..)) if *old > seq => {}
                _ => {
                    retained.insert(topic, (seq, shard, at, publish));
                }
            }
        }
    }
    for (client, (seq, shard, session)) in newest {
        if gone.get(&client).is_some_and(|&g| g > seq) {
            continue;
        }
        match build_session(session, now_ms, now, &mut report) {
            Ok(session) => {
                report.sessions += 1;
                out.sessions[shard].push(session);
            }
            Err(will) => {
                report.sessions_expired += 1;
                out.expired_wills.extend(will);
            }
        }
    }
    for (_, (seq, shard, at, publish)) in retained {
        let Some(publish) = publish else { continue };
        let message = Arc::new(Message {
            publish,
            received_at: instant_of(at, now_ms, now),
            frame: None,
        });
        if message.expiry_left_secs(now) == Some(0) {
            continue;
        }
        report.retained += 1;
        out.retained[shard].push((seq, message));
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    out.report = report;
    out
}

fn replay_file(path: &Path) -> Option<Replay> {
    let mut replay = Replay::default();
    match log::scan(path, |rec| replay.apply(rec)) {
        Ok(damage) => {
            replay.damage = damage;
            replay.bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            Some(replay)
        }
        Err(e) => {
            ::log::error!("persistence: cannot read {}: {e}", path.display());
            None
        }
    }
}

/// The instant a wall-clock time corresponds to (now for times in the future).
fn instant_of(at_ms: u64, now_ms: u64, now: Instant) -> Instant {
    now.checked_sub(Duration::from_millis(now_ms.saturating_sub(at_ms)))
        .unwrap_or(now)
}

/// Subscription options from their SUBSCRIBE byte.
pub fn options_from_byte(byte: u8) -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::from_u8(byte & 3).unwrap_or(QoS::AtMostOnce),
        no_local: byte & 4 != 0,
        retain_as_published: byte & 8 != 0,
        retain_handling: match (byte >> 4) & 3 {
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

/// The SUBSCRIBE byte of subscription options.
pub fn options_to_byte(options: &SubscriptionOptions) -> u8 {
    options.qos as u8
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

/// The session to install, or (`Err`) its will if it expired while the broker was down.
fn build_session(
    s: ReplaySession,
    now_ms: u64,
    now: Instant,
    report: &mut RecoveryReport,
) -> Result<RecoveredSession, Option<Publish>> {
    let r = s.record;
    let will = r
        .will
        .as_ref()
        .and_then(|(delay, bytes)| Some((record::decode_publish(bytes)?, *delay)));
    // A session that was online at the crash lost its connection now.
    let offline_ms = if r.disconnected_at_ms == 0 {
        0
    } else {
        now_ms.saturating_sub(r.disconnected_at_ms)
    };
    let expiry = r.session_expiry_interval_secs;
    let expiry_left = if expiry == u32::MAX {
        None
    } else {
        let total = u64::from(expiry) * 1000;
        if offline_ms >= total {
            return Err(will.map(|(w, _)| w));
        }
        Some(Duration::from_millis(total - offline_ms))
    };
    let will_delay_left = will.as_ref().map_or(Duration::ZERO, |(_, delay)| {
        Duration::from_millis((u64::from(*delay) * 1000).saturating_sub(offline_ms))
    });
    let mut state = SessionState {
        client_id: r.client_id,
        session_expiry_interval_secs: expiry,
        incoming_qos2: s.incoming,
        ..SessionState::default()
    };
    for (filter, options, identifier) in r.subscriptions {
        let stored = StoredSubscription {
            options: options_from_byte(options),
            identifier,
        };
        state.subscriptions.insert(filter, stored);
    }
    for (_, m) in s.messages {
        let Some(publish) = record::decode_publish(&m.publish) else {
            report.records_dropped += 1;
            continue;
        };
        let message = Arc::new(Message {
            publish,
            received_at: instant_of(m.received_at_ms, now_ms, now),
            frame: None,
        });
        match m.packet_id {
            Some(packet_id) => {
                let state_now = if m.released {
                    OutgoingState::AwaitPubComp
                } else if m.qos == QoS::ExactlyOnce {
                    OutgoingState::AwaitPubRec
                } else {
                    OutgoingState::AwaitPubAck
                };
                state.last_packet_id = packet_id;
                state.inflight.push_back(Outgoing {
                    packet_id,
                    message,
                    qos: m.qos,
                    retain: m.retain,
                    state: state_now,
                });
                report.messages += 1;
            }
            None if message.expiry_left_secs(now) == Some(0) => report.messages_expired += 1,
            None => {
                state.queued.push_back(Queued {
                    message,
                    qos: m.qos,
                    retain: m.retain,
                });
                report.messages += 1;
            }
        }
    }
    Ok(RecoveredSession {
        state,
        will,
        expiry_left,
        will_delay_left,
    })
}
