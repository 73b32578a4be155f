//! Sans-IO session state of one client: subscriptions, the outgoing in-flight window, the incoming
//! QoS 2 packet ids awaiting PUBREL, the offline queue, packet id allocation and the will.
//!
//! No sockets and no clock here: the shard passes decisions' inputs in and turns the returned
//! decisions into packets. [`SessionState`] is the part that outlives a connection; it is what a
//! takeover moves between shards and what a persistent store would save (see [`SessionStore`]).

use crate::codec::{MqttString, Publish, QoS, SubscriptionOptions};
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, DefaultHasher, RandomState};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// An application message as received from its publisher, with the instant it was received
/// (for the MQTT 5 Message Expiry Interval). Dereferences to the PUBLISH.
#[derive(Clone, Debug)]
pub struct Message {
    pub publish: Publish,
    pub received_at: Instant,
    /// The PUBLISH frame as the publisher sent it, when it may be forwarded byte for byte to a
    /// receiver whose layout is the same (see `protocol::LayoutCache`): without a Topic Alias,
    /// and describing `publish` exactly. `None` for every message changed after it was
    /// received. It shares the publisher's read allocation with `publish`'s topic and payload,
    /// so keeping it pins nothing more than the message does.
    pub frame: Option<ReceivedFrame>,
}

/// A PUBLISH frame as received, with the protocol family it was laid out for.
#[derive(Clone, Debug)]
pub struct ReceivedFrame {
    pub bytes: Bytes,
    /// Whether it is an MQTT 5 frame (with a property list); 3.1 and 3.1.1 share one layout.
    pub v5: bool,
}

impl std::ops::Deref for Message {
    type Target = Publish;

    fn deref(&self) -> &Publish {
        &self.publish
    }
}

impl Message {
    /// Wraps a publish received at `now` in a reference every subscriber and shard shares.
    pub fn new_ref(publish: Publish, now: Instant) -> MessageRef {
        Arc::new(Message {
            publish,
            received_at: now,
            frame: None,
        })
    }

    /// The Message Expiry Interval left at `now` in whole seconds: `None` when the message has
    /// none, `Some(0)` when it has expired ([MQTT-3.3.2-5]).
    pub fn expiry_left_secs(&self, now: Instant) -> Option<u32> {
        let interval = self.publish.properties.message_expiry_interval?;
        let elapsed = now.saturating_duration_since(self.received_at);
        if elapsed >= Duration::from_secs(u64::from(interval)) {
            return Some(0);
        }
        Some(interval - elapsed.as_secs() as u32)
    }
}

/// An application message shared by every subscriber and shard.
pub type MessageRef = Arc<Message>;

/// Whether a connection is attached to a session offered a message: it is sent now, or queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Online,
    Offline,
}

/// Whether the shard's memory budget takes one more queued message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRoom {
    Available,
    Exhausted,
}

/// Where an outgoing QoS 1/2 message stands in its acknowledgement flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingState {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitPubRec,
    /// PUBREL sent, PUBCOMP awaited.
    AwaitPubComp,
}

/// One unacknowledged outgoing message.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub packet_id: u16,
    pub message: MessageRef,
    /// The QoS it is delivered with (min of subscription and message QoS), 1 or 2.
    pub qos: QoS,
    /// Whether it goes out with the retain flag (delivery of a retained message on subscribe).
    pub retain: bool,
    pub state: OutgoingState,
}

/// A message waiting for room in the in-flight window or for the client to reconnect.
#[derive(Clone, Debug)]
pub struct Queued {
    pub message: MessageRef,
    pub qos: QoS,
    pub retain: bool,
}

/// Fixed part of [`queued_bytes`]: the PUBLISH fixed header, topic length and packet id, and
/// the queue entry itself, roughly.
const QUEUED_OVERHEAD_BYTES: usize = 32;

/// What a queued message counts against the shard's memory budget and its session's
/// `max_queued_bytes`: its approximate encoded length (topic, payload, MQTT 5 properties, a
/// fixed overhead; issue 11, docs/memory.md). The message is shared by every queue holding it,
/// so this over-counts memory, never under-counts it.
pub fn queued_bytes(message: &Message) -> usize {
    message.topic.len()
        + message.payload.len()
        + message
            .properties
            .encoded_len(crate::codec::PropertyContext::Publish)
        + QUEUED_OVERHEAD_BYTES
}

mod limits;
pub use limits::ByteLimits;

/// [`queued_bytes`] as a `u32` (saturating), the unit of the per-session byte counts.
fn message_bytes(message: &Message) -> u32 {
    u32::try_from(queued_bytes(message)).unwrap_or(u32::MAX)
}

impl SessionState {
    /// [`queued_bytes`] summed over the queue (a session arriving or leaving).
    pub fn queued_bytes(&self) -> usize {
        self.queued.iter().map(|q| queued_bytes(&q.message)).sum()
    }
}

/// What the shard must do with a message offered to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send now as QoS 0.
    SendQoS0,
    /// Send now with this packet id (QoS 1 or 2); it is recorded in flight.
    Send { packet_id: u16 },
    /// Kept in the session's queue.
    Queued,
    /// Not kept: QoS 0 for an offline session (normal, not a drop).
    Discarded,
    /// Not kept: the queue is at its limit (counted).
    DroppedQueueFull,
    /// Not kept: the shard's memory budget (`max_buffered_bytes`) is used up (counted).
    DroppedMemoryLimit,
}

/// Where a connected session's outgoing buffer (bytes not yet written to its socket) stands
/// against its watermarks, half and a quarter of `max_outgoing_bytes`. The shard measures it;
/// it is always `Low` without QoS 0 backpressure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingFill {
    /// At or below the low watermark.
    Low,
    /// Between the watermarks.
    Middle,
    /// At or above the high watermark.
    High,
}

/// Result of an incoming QoS 2 PUBLISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncomingQoS2 {
    /// First time this packet id is seen: route the message, answer PUBREC.
    New,
    /// A retransmission before PUBREL: answer PUBREC again, do not route ([MQTT-4.3.3-10]).
    Duplicate,
    /// More than Receive Maximum messages awaiting PUBREL ([MQTT-3.3.4-7]).
    ReceiveMaximumExceeded,
}

/// Whether a connected session's queue or outgoing buffer holds its publishers back.
///
/// A session becomes `Congested` when a QoS 1/2 delivery to it while online leaves its queue
/// (messages behind the in-flight window) at or above the high watermark, half of
/// `max_queued_messages`, or (QoS 0 backpressure) when its outgoing buffer reaches
/// [`OutgoingFill::High`]; its publishers are paused until both the queue drains to the low
/// watermark, a quarter, and the buffer is written down to [`OutgoingFill::Low`]. A session congested for longer than the congestion timeout is
/// `Stalled`: it stops holding publishers back (they must not wait forever on a stuck
/// subscriber) and drops over `max_queued_messages` as before, until it drains to the low
/// watermark. Offline sessions are never congested: they queue to the limit, then drop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Congestion {
    #[default]
    Clear,
    Congested,
    Stalled,
}

/// Limits a session enforces, copied from the config.
#[derive(Clone, Copy, Debug)]
pub struct SessionLimits {
    /// Maximum queued messages.
    /// Validated to at most 10,000,000 (config.rs): a u32, so that with `inflight_bytes`
    /// the session stays 240 bytes.
    pub max_queued_messages: u32,
    /// Queue QoS 0 while offline.
    pub queue_qos0: bool,
    /// Incoming QoS 2 ids awaiting PUBREL.
    pub receive_maximum: u16,
    /// How far past `max_queued_messages` a *congested* session may queue. Publishers on other
    /// shards see a destination's congestion only after the messages they had already sent
    /// through the mesh reached it; those (at most a mesh channel's worth per source shard)
    /// are kept rather than dropped. Local publishers see it at once and add nothing. The shard
    /// sets (shards - 1) x `mesh_channel_capacity` (at most 255 x 1,000,000, so u32 fits and
    /// the struct stays 12 bytes); a stalled or offline session drops at `max_queued_messages`.
    pub congested_overshoot: u32,
}

/// One subscription of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct StoredSubscription {
    pub options: SubscriptionOptions,
    /// MQTT 5 Subscription Identifier, 1..=268,435,455; 0 = none.
    pub identifier: u32,
}

/// The hasher of every session's subscription map: SipHash with keys chosen once per process
/// (as random as `RandomState`'s, so clients cannot aim at collisions), held in a static
/// rather than in each map, which saves 16 bytes in every session (BENCHMARKS.md "Idle
/// memory").
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessRandomState;

impl BuildHasher for ProcessRandomState {
    type Hasher = DefaultHasher;

    fn build_hasher(&self) -> DefaultHasher {
        static KEYS: OnceLock<RandomState> = OnceLock::new();
        KEYS.get_or_init(RandomState::new).build_hasher()
    }
}

/// Filter -> subscription of one session.
pub type SubscriptionMap = HashMap<MqttString, StoredSubscription, ProcessRandomState>;

/// The part of a session that outlives its connection.
#[derive(Clone, Debug, Default)]
pub struct SessionState {
    pub client_id: MqttString,
    /// Filter -> subscription. At most `max_subscriptions_per_client` entries (enforced by the
    /// shard).
    pub subscriptions: SubscriptionMap,
    /// Unacknowledged outgoing messages in the order they were first sent.
    pub inflight: VecDeque<Outgoing>,
    /// Messages waiting to be sent, in order.
    pub queued: VecDeque<Queued>,
    /// Incoming QoS 2 packet ids received and answered with PUBREC, awaiting PUBREL.
    pub incoming_qos2: BTreeSet<u16>,
    /// The last packet id handed out; ids cycle through 1..=65,535 ([MQTT-2.2.1-3]).
    pub last_packet_id: u16,
    /// Seconds the session is kept after disconnect: 0 = ends with the connection,
    /// `u32::MAX` = never expires.
    pub session_expiry_interval_secs: u32,
    /// Messages dropped because the queue was full, over the session's life.
    pub dropped_messages: u64,
}

/// A session while it lives on a shard: the state plus what the connection negotiated.
#[derive(Debug)]
pub struct Session {
    pub state: SessionState,
    /// The outgoing in-flight window: min(client Receive Maximum, `max_inflight`), at least 1.
    pub inflight_max: u16,
    pub limits: SessionLimits,
    /// Backpressure state (see [`Congestion`]); not part of the state a takeover moves.
    pub congestion: Congestion,
    /// Counts (wrapping) the times the session became congested; guards the congestion timer
    /// (a stale timer would need 65,536 episodes within one `congestion_timeout_ms` to be
    /// mistaken for the current one). 16 bits, so that the small fields fill one word.
    pub congestion_episode: u16,
    /// Issue 11: [`queued_bytes`] summed over `state.queued`, at most `max_queued_bytes` (plus
    /// a congested session's overshoot).
    pub queued_bytes: u32,
    /// Issue 11 (resend paced by bytes): while the in-flight window of a resumed session is
    /// being resent, the index of its next entry to resend; nothing new is sent before the
    /// window has been (new QoS 1/2 messages queue behind it). [`NO_RESEND`] when none is
    /// (a window holds at most 65,535 entries, so an index is at most 65,534).
    resend_next: u16,
    /// Issue 17: whether `state.inflight`'s packet ids ascend (cyclically, from the front's)
    /// in deque order, as `allocate_packet_id` hands them out. While they do, a packet id is
    /// allocated and found in O(1) and O(log window) instead of a scan of the whole window.
    /// Checked once when the session is built (a resumed or recovered state), kept up by
    /// every push; true again whenever the window empties.
    inflight_ascending: bool,
    /// [`queued_bytes`] summed over `state.inflight`: what the written but unacknowledged
    /// messages pin. The window takes no new message while it is at `max_inflight_bytes`
    /// (issue 17's large default window stays bounded in bytes; one message always goes).
    inflight_bytes: u32,
}

/// `Session::resend_next` when no resend is in progress.
const NO_RESEND: u16 = u16::MAX;

/// Packet ids cycle through 1..=65,535: the distance from `from` to `id` going up, 0..=65,534.
fn id_distance(from: u16, id: u16) -> u32 {
    const IDS: u32 = u16::MAX as u32;
    (u32::from(id) + IDS - u32::from(from)) % IDS
}

/// Whether the packet ids ascend cyclically from the first one (see `inflight_ascending`).
fn ids_ascend(inflight: &VecDeque<Outgoing>) -> bool {
    let Some(first) = inflight.front() else {
        return true;
    };
    let mut last = 0;
    for (i, o) in inflight.iter().enumerate() {
        let d = id_distance(first.packet_id, o.packet_id);
        if o.packet_id == 0 || (i > 0 && d <= last) {
            return false;
        }
        last = d;
    }
    true
}

impl Session {
    /// A new session or one resumed from `state`.
    pub fn new(state: SessionState, inflight_max: u16, limits: SessionLimits) -> Session {
        debug_assert!(inflight_max >= 1);
        let queued_bytes = u32::try_from(state.queued_bytes()).unwrap_or(u32::MAX);
        let inflight_bytes = state
            .inflight
            .iter()
            .map(|o| message_bytes(&o.message))
            .fold(0u32, u32::saturating_add);
        Session {
            queued_bytes,
            inflight_bytes,
            inflight_ascending: ids_ascend(&state.inflight),
            state,
            inflight_max: inflight_max.max(1),
            limits,
            congestion: Congestion::Clear,
            congestion_episode: 0,
            resend_next: NO_RESEND,
        }
    }

    /// The session resumed: its in-flight window is to be resent from the start
    /// ([MQTT-4.4.0-1]), one [`Session::next_resend`] at a time as the outgoing buffer allows.
    pub fn start_resend(&mut self) {
        self.resend_next = if self.state.inflight.is_empty() {
            NO_RESEND
        } else {
            0
        };
    }

    /// Whether part of the in-flight window still waits to be resent.
    #[inline]
    pub fn resend_pending(&self) -> bool {
        self.resend_next != NO_RESEND
    }

    /// The next in-flight entry to resend, if any (the resend then moves past it).
    pub fn next_resend(&mut self) -> Option<Outgoing> {
        if !self.resend_pending() {
            return None;
        }
        let index = usize::from(self.resend_next);
        let Some(outgoing) = self.state.inflight.get(index) else {
            self.resend_next = NO_RESEND;
            return None;
        };
        let outgoing = outgoing.clone();
        let next = index + 1;
        // While resending nothing is added to the window, so its end is the resend's end.
        self.resend_next = match u16::try_from(next) {
            Ok(next) if usize::from(next) < self.state.inflight.len() => next,
            _ => NO_RESEND,
        };
        Some(outgoing)
    }

    /// Takes the message at `index` out of the window, keeping the resend position on the same
    /// next entry; an empty window's ids ascend again (issue 17).
    fn remove_inflight(&mut self, index: usize) -> Option<MessageRef> {
        let removed = self.state.inflight.remove(index);
        if let Some(removed) = &removed {
            self.inflight_bytes = self
                .inflight_bytes
                .saturating_sub(message_bytes(&removed.message));
        }
        if self.state.inflight.is_empty() {
            self.inflight_ascending = true;
        }
        if self.resend_pending() {
            let next = self.resend_next;
            if index < usize::from(next) {
                self.resend_next = next - 1;
            } else if usize::from(next) >= self.state.inflight.len() {
                self.resend_next = NO_RESEND;
            }
        }
        removed.map(|removed| removed.message)
    }

    /// Re-evaluates [`Congestion`] after the queue or the outgoing buffer changed or the
    /// connection came or went. Returns the previous state when it changed.
    pub fn update_congestion(
        &mut self,
        online: bool,
        outgoing: OutgoingFill,
    ) -> Option<Congestion> {
        let queued = self.state.queued.len();
        let high = self.limits.max_queued_messages as usize / 2;
        let low = self.limits.max_queued_messages as usize / 4;
        // A queue too small to have watermarks (limit 0 or 1) never congests.
        let queue_high = high > 0 && queued >= high;
        let drained = queued <= low && outgoing == OutgoingFill::Low;
        let next = match self.congestion {
            Congestion::Clear if online && (queue_high || outgoing == OutgoingFill::High) => {
                Congestion::Congested
            }
            Congestion::Congested | Congestion::Stalled if !online || drained => Congestion::Clear,
            unchanged => unchanged,
        };
        if next == self.congestion {
            return None;
        }
        if next == Congestion::Congested {
            self.congestion_episode = self.congestion_episode.wrapping_add(1);
        }
        Some(std::mem::replace(&mut self.congestion, next))
    }

    /// The congestion timeout of `episode` passed: a session still congested is stalled.
    /// Returns whether it was.
    pub fn stall(&mut self, episode: u16) -> bool {
        if self.congestion != Congestion::Congested || self.congestion_episode != episode {
            return false;
        }
        self.congestion = Congestion::Stalled;
        true
    }

    /// Offers a message to the session with its effective QoS and retain flag. `presence` says
    /// whether a connection is attached; `queue_room` whether the shard's memory budget takes
    /// one more queued message. Ordering is kept: while anything is queued, QoS 1/2 messages
    /// queue behind it.
    pub fn deliver(
        &mut self,
        message: &MessageRef,
        qos: QoS,
        retain: bool,
        presence: Presence,
        queue_room: QueueRoom,
    ) -> Decision {
        self.deliver_paced(
            message,
            qos,
            retain,
            presence,
            queue_room,
            false,
            ByteLimits::NONE,
        )
    }

    /// [`Session::deliver`], where `outgoing_full` (issue 11, flow by bytes) says that the
    /// connection's outgoing buffer is at `max_outgoing_bytes`: a QoS 1/2 message then queues
    /// even with room in the in-flight window, and goes when the buffer is written down.
    /// `limits` bound the queue's and the in-flight window's [`queued_bytes`] (passed in rather
    /// than kept in [`SessionLimits`], which stays 12 bytes).
    #[allow(clippy::too_many_arguments)]
    pub fn deliver_paced(
        &mut self,
        message: &MessageRef,
        qos: QoS,
        retain: bool,
        presence: Presence,
        queue_room: QueueRoom,
        outgoing_full: bool,
        limits: ByteLimits,
    ) -> Decision {
        let online = presence == Presence::Online;
        if qos == QoS::AtMostOnce {
            if online {
                return Decision::SendQoS0;
            }
            if !self.limits.queue_qos0 {
                return Decision::Discarded;
            }
            return self.enqueue(message, qos, retain, queue_room, limits.queued);
        }
        if online && !outgoing_full && self.can_send_now(limits.inflight) {
            let packet_id = self.allocate_packet_id();
            self.push_inflight(Outgoing {
                packet_id,
                message: message.clone(),
                qos,
                retain,
                state: initial_state(qos),
            });
            return Decision::Send { packet_id };
        }
        self.enqueue(message, qos, retain, queue_room, limits.queued)
    }

    fn enqueue(
        &mut self,
        message: &MessageRef,
        qos: QoS,
        retain: bool,
        queue_room: QueueRoom,
        max_queued_bytes: u32,
    ) -> Decision {
        let limit = if self.congestion == Congestion::Congested {
            self.limits
                .max_queued_messages
                .saturating_add(self.limits.congested_overshoot) as usize
        } else {
            self.limits.max_queued_messages as usize
        };
        let bytes = u32::try_from(queued_bytes(message)).unwrap_or(u32::MAX);
        let bytes_over = self.congestion != Congestion::Congested
            && self.queued_bytes.saturating_add(bytes) > max_queued_bytes;
        if self.state.queued.len() >= limit || bytes_over {
            self.state.dropped_messages += 1;
            return Decision::DroppedQueueFull;
        }
        if queue_room == QueueRoom::Exhausted {
            self.state.dropped_messages += 1;
            return Decision::DroppedMemoryLimit;
        }
        self.state.queued.push_back(Queued {
            message: message.clone(),
            qos,
            retain,
        });
        self.queued_bytes = self.queued_bytes.saturating_add(bytes);
        Decision::Queued
    }

    /// Takes the last queued message off again (persistence refused it).
    pub fn unqueue_last(&mut self) {
        if let Some(last) = self.state.queued.pop_back() {
            self.note_dequeued(&last.message);
        }
    }

    fn note_dequeued(&mut self, message: &Message) {
        let bytes = u32::try_from(queued_bytes(message)).unwrap_or(u32::MAX);
        self.queued_bytes = self.queued_bytes.saturating_sub(bytes);
    }

    /// Whether a QoS 1/2 message offered now would be sent at once (nothing queued, room in the
    /// in-flight window, counted in messages and in bytes against `max_inflight_bytes`).
    pub fn can_send_now(&self, max_inflight_bytes: u32) -> bool {
        self.state.queued.is_empty()
            && self.window_has_room(max_inflight_bytes)
            && !self.resend_pending()
    }

    /// Room for one more message: under `inflight_max` messages and under
    /// `max_inflight_bytes`, except that an empty window always takes one (a message larger
    /// than the limit still goes).
    fn window_has_room(&self, max_inflight_bytes: u32) -> bool {
        let len = self.state.inflight.len();
        len < usize::from(self.inflight_max)
            && (len == 0 || self.inflight_bytes < max_inflight_bytes)
    }

    /// Written but unacknowledged bytes (see `inflight_bytes`).
    pub fn inflight_bytes(&self) -> u32 {
        self.inflight_bytes
    }

    fn push_inflight(&mut self, outgoing: Outgoing) {
        self.inflight_bytes = self
            .inflight_bytes
            .saturating_add(message_bytes(&outgoing.message));
        self.state.inflight.push_back(outgoing);
    }

    /// Takes the next queued message that may be sent now, moving QoS 1/2 into the in-flight
    /// window. Returns the packet id (0 for QoS 0) and the message.
    pub fn poll_queued(&mut self, max_inflight_bytes: u32) -> Option<(u16, Queued)> {
        if self.resend_pending() {
            return None;
        }
        let front = self.state.queued.front()?;
        if front.qos == QoS::AtMostOnce {
            let queued = self.state.queued.pop_front()?;
            self.note_dequeued(&queued.message);
            return Some((0, queued));
        }
        if !self.window_has_room(max_inflight_bytes) {
            return None;
        }
        let queued = self.state.queued.pop_front()?;
        self.note_dequeued(&queued.message);
        let packet_id = self.allocate_packet_id();
        self.push_inflight(Outgoing {
            packet_id,
            message: queued.message.clone(),
            qos: queued.qos,
            retain: queued.retain,
            state: initial_state(queued.qos),
        });
        Some((packet_id, queued))
    }

    /// Picks a packet id not in flight, for a message pushed at the back of the window next.
    /// The window is at most 65,535, so one is always free.
    ///
    /// Issue 17: O(1) while the ids in flight ascend (`inflight_ascending`): the next id after
    /// the last one handed out is free when it lies beyond the newest id in flight, counted
    /// from the oldest; only a window spanning (nearly) all 65,535 ids, or a state whose ids do
    /// not ascend, falls back to the scan.
    fn allocate_packet_id(&mut self) -> u16 {
        debug_assert!(!self.inflight_ascending || ids_ascend(&self.state.inflight));
        let next = self.state.last_packet_id.wrapping_add(1).max(1);
        let beyond_window = match (self.state.inflight.front(), self.state.inflight.back()) {
            (Some(front), Some(back)) => {
                id_distance(front.packet_id, next) > id_distance(front.packet_id, back.packet_id)
            }
            _ => true,
        };
        if self.inflight_ascending && beyond_window {
            self.state.last_packet_id = next;
            return next;
        }
        let id = loop {
            self.state.last_packet_id = self.state.last_packet_id.wrapping_add(1).max(1);
            let id = self.state.last_packet_id;
            if !self.state.inflight.iter().any(|o| o.packet_id == id) {
                break id;
            }
        };
        // The id found may lie inside the window (a gap left by an acknowledgement).
        self.inflight_ascending = match (self.state.inflight.front(), self.state.inflight.back()) {
            (Some(front), Some(back)) => {
                self.inflight_ascending
                    && id_distance(front.packet_id, id)
                        > id_distance(front.packet_id, back.packet_id)
            }
            _ => true,
        };
        id
    }

    /// Where `packet_id` is in the window, in the acknowledgement state `state`. Issue 17:
    /// acknowledgements usually come in order, so the front is tried first, then a binary
    /// search while the ids ascend; a scan when they do not.
    fn position(&self, packet_id: u16, state: OutgoingState) -> Option<usize> {
        let inflight = &self.state.inflight;
        if !self.inflight_ascending {
            return inflight
                .iter()
                .position(|o| o.packet_id == packet_id && o.state == state);
        }
        // Ascending ids are distinct: the one entry with this id, if any.
        let from = inflight.front()?.packet_id;
        let i = if from == packet_id {
            0
        } else {
            let target = id_distance(from, packet_id);
            inflight
                .binary_search_by_key(&target, |o| id_distance(from, o.packet_id))
                .ok()?
        };
        (inflight[i].state == state).then_some(i)
    }

    /// PUBACK received. False if no QoS 1 message with that id was in flight.
    pub fn handle_puback(&mut self, packet_id: u16) -> bool {
        self.take_puback(packet_id).is_some()
    }

    /// PUBACK received: the message it finished, for its allocation to be reused
    /// (`Delivery::recycle_message`); `None` if no QoS 1 message with that id was in flight.
    pub fn take_puback(&mut self, packet_id: u16) -> Option<MessageRef> {
        let index = self.position(packet_id, OutgoingState::AwaitPubAck)?;
        self.remove_inflight(index)
    }

    /// PUBREC received. With `accepted` (reason < 0x80) the message moves to awaiting PUBCOMP
    /// and the caller sends PUBREL; an error reason (0x80 or above) ends the flow (spec 4.3.3).
    /// Returns false if no QoS 2 message with that id awaited PUBREC (the caller answers
    /// PUBREL with 0x92 for MQTT 5). A PUBREC for a message already released is answered with
    /// PUBREL again (returns true).
    pub fn handle_pubrec(&mut self, packet_id: u16, accepted: bool) -> bool {
        if let Some(i) = self.position(packet_id, OutgoingState::AwaitPubRec) {
            if accepted {
                self.state.inflight[i].state = OutgoingState::AwaitPubComp;
            } else {
                self.remove_inflight(i);
            }
            return true;
        }
        self.position(packet_id, OutgoingState::AwaitPubComp)
            .is_some()
    }

    /// PUBCOMP received. False if no message with that id awaited it.
    pub fn handle_pubcomp(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, OutgoingState::AwaitPubComp) {
            Some(i) => {
                self.remove_inflight(i);
                true
            }
            None => false,
        }
    }

    /// Drops an in-flight message as if it had been acknowledged (it could not be sent:
    /// larger than the client's Maximum Packet Size, [MQTT-3.1.2-25]).
    pub fn forget(&mut self, packet_id: u16) {
        if let Some(i) = self
            .state
            .inflight
            .iter()
            .position(|o| o.packet_id == packet_id)
        {
            self.remove_inflight(i);
        }
    }

    /// An incoming QoS 2 PUBLISH with `packet_id`.
    pub fn handle_incoming_qos2(&mut self, packet_id: u16) -> IncomingQoS2 {
        if self.state.incoming_qos2.contains(&packet_id) {
            return IncomingQoS2::Duplicate;
        }
        if self.state.incoming_qos2.len() >= usize::from(self.limits.receive_maximum) {
            return IncomingQoS2::ReceiveMaximumExceeded;
        }
        self.state.incoming_qos2.insert(packet_id);
        IncomingQoS2::New
    }

    /// PUBREL received: forgets the id. False if it was unknown (MQTT 5 PUBCOMP 0x92).
    pub fn handle_pubrel(&mut self, packet_id: u16) -> bool {
        self.state.incoming_qos2.remove(&packet_id)
    }

    /// Whether the session ends when its connection does.
    pub fn ends_with_connection(&self) -> bool {
        self.state.session_expiry_interval_secs == 0
    }
}

fn initial_state(qos: QoS) -> OutgoingState {
    if qos == QoS::ExactlyOnce {
        OutgoingState::AwaitPubRec
    } else {
        OutgoingState::AwaitPubAck
    }
}

/// Where kept sessions would be persisted. Sessions live in shard memory for now; a disk store
/// implements this trait and the shard calls it at the points named below. Keeping the whole
/// persistent state in [`SessionState`] is what makes that possible.
pub trait SessionStore: Send {
    /// A session that is kept changed (subscribe, unsubscribe, disconnect).
    fn save(&mut self, state: &SessionState);
    /// A session ended (clean start, expiry).
    fn remove(&mut self, client_id: &MqttString);
}

/// The in-memory "store": sessions already live in shard memory, so there is nothing to do.
#[derive(Debug, Default)]
pub struct MemoryStore;

impl SessionStore for MemoryStore {
    fn save(&mut self, _state: &SessionState) {}
    fn remove(&mut self, _client_id: &MqttString) {}
}

#[cfg(test)]
mod tests;
