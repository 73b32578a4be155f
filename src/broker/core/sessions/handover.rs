//! Session handover across shards: no message for a session is lost, duplicated or reordered
//! while its state travels from the shard that held it (the origin, A) to the shard that takes
//! it over (the installer, B), whichever shard the publisher is on (finding F1 of the
//! simulation; tests in `tests/it/sim_takeover.rs`).
//!
//! The difficulty: every shard P routes by its own replica of the routing table, and learns
//! about B's routes at its own moment. A message P routed before that went to A, where the
//! session no longer is; one routed after goes to B, and may overtake an older one still on its
//! way through A. So each shard has a *switch point*, the moment it applies B's routes, and:
//!
//! 1. **A keeps routing for the session until every shard switched.** A extracts the session
//!    but keeps its routes (its peers keep sending it the session's messages) and forwards to
//!    B, as [`HandoverMsg::Forward`], every message matching the session's filters that a shard
//!    routed before its switch point: its own publishes until it switched, those from P until
//!    P's [`HandoverMsg::Switched`] arrives on the P→A channel (FIFO per pair, so everything P
//!    routed before is ahead of it). The forwards travel A→B behind the session state.
//! 2. **B installs the session, broadcasts its routes, then [`HandoverMsg::Switch`].** Each
//!    shard that reads it has B's routes (FIFO), switches, and answers `Switched` to A and to B.
//!    B is switched at install, A when it reads `Switch`.
//! 3. **B gates the session's direct deliveries by source shard.** A message from P matched
//!    for the session here is skipped while P has not switched (P also sent it to A, which held
//!    the route, and A forwards it), held while P switched but A has not yet confirmed that all
//!    P's forwards were sent ([`HandoverMsg::Drained`], sent by A behind them when P's
//!    `Switched` reaches it), and delivered once drained: the held messages go out first, in
//!    order. The same for B's own publishes.
//! 4. **End.** A, with every shard switched, drops its routes for the session (route removals
//!    as usual) and sends [`HandoverMsg::Done`]; B ends the handover once every source is
//!    switched and drained, then answers takeover requests for the client id that waited.
//!
//! A session passed on by a shard that was itself waiting for it (crossing takeovers: the
//! client id reconnected on B, then on C before A answered) keeps its handover: B relays the
//! state, the forwards, `Drained` and `Done` on to C, and C installs as above. A client id
//! reconnecting on two shards in turn can route the state through the same shard more than
//! once (A, B, A, B, A: finding F3), so these messages carry their hop count
//! ([`HandoverLeg`]) and each relay, and the installer, handles only its own hop. A shard whose
//! session is still arriving defers a takeover request for it until its handover ends, so one
//! session is in at most one handover. Shared subscriptions: a message that reaches A for the
//! session's group, with no member left on A, goes to B as a `Forward` for the group (no order
//! is promised between a group's members).
//!
//! Cost: one `is_empty` check per publish on each side while no handover is in progress. State
//! is bounded by the takeovers in progress; held messages by `max_queued_messages` per
//! handover (beyond it they are dropped and counted in `handover_held_dropped`).

use crate::broker::core::keys::SessionKey;
use crate::broker::core::mesh::{ShardId, ShardMsg};
use crate::broker::core::sessions::session::{queued_bytes, MessageRef, SessionState};
use crate::broker::core::shard::ShardCore;
use crate::broker::core::stats::bump;
use crate::codec::{MqttString, QoS};
use std::collections::VecDeque;

/// One handover: the shard that handed the session over, and its number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoverId {
    pub origin: ShardId,
    pub number: u64,
}

/// A handover as it reaches one shard on the way from its origin to its installer: `hop`
/// shards relayed it before (finding F3). A path may pass the same shard more than once
/// (crossing takeovers between two shards: A, B, A, B, A), so a shard tells its places on the
/// path apart by the hop count that the messages towards the installer carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandoverLeg {
    pub id: HandoverId,
    pub hop: u32,
}

impl HandoverLeg {
    /// The leg after this one (the next shard on the path).
    fn next(self) -> HandoverLeg {
        HandoverLeg {
            id: self.id,
            hop: self.hop.saturating_add(1),
        }
    }
}

/// The handover protocol's mesh messages (see the module doc).
#[derive(Debug)]
pub enum HandoverMsg {
    /// From the installer to every other shard, after the routes of the installed session.
    Switch { id: HandoverId, installer: ShardId },
    /// From every shard that read `Switch`, to the origin and to the installer.
    Switched { id: HandoverId, from: ShardId },
    /// From the origin towards the installer (relayed): a message for the session, or for its
    /// shared subscription `share` (with the publisher's client id hash).
    Forward {
        id: HandoverId,
        /// The messages towards the installer carry the two parts of their [`HandoverLeg`]
        /// apart: the hop fits beside the enum's tag, which keeps the message at 5 words.
        hop: u32,
        message: MessageRef,
        share: Option<Box<(MqttString, u64)>>,
    },
    /// From the origin towards the installer (relayed): every forward of what `source` routed
    /// before it switched was sent before this.
    Drained {
        id: HandoverId,
        hop: u32,
        source: ShardId,
    },
    /// From the origin towards the installer (relayed): the origin is done; relays forget it.
    Done { id: HandoverId, hop: u32 },
    /// To the origin: the state was not installed (the new connection wanted a clean start, or
    /// died and its session ends).
    Abort { id: HandoverId },
}

/// The origin's side of a handover.
struct Outgoing {
    number: u64,
    /// Where forwards go: the shard that asked (it relays them if it passed the session on).
    to: ShardId,
    /// The session's filters: its routes this shard keeps until the handover ends.
    filters: Vec<MqttString>,
    /// Per shard: it switched (what it routes now reaches the installer directly).
    switched: Vec<bool>,
}

/// A message held back on the installer (see the module doc, step 3).
struct Held {
    message: MessageRef,
    qos: QoS,
    retain: bool,
}

/// The installer's view of one source shard.
#[derive(Default)]
struct Source {
    switched: bool,
    drained: bool,
    held: VecDeque<Held>,
}

/// The installer's side of a handover.
struct Incoming {
    id: HandoverId,
    /// Relays the session's state passed before it reached this shard: messages towards the
    /// installer with another hop count are for another place of this shard on the path.
    hop: u32,
    /// `None` once the session ended here.
    session: Option<SessionKey>,
    client_id: MqttString,
    sources: Vec<Source>,
    held: usize,
    /// Takeover requests for this client id that wait for the handover to end.
    deferred: Vec<(ShardId, u64, bool)>,
}

/// What the installer does with a message matched for a session in a handover.
pub(crate) enum Gate {
    Deliver,
    /// Its source had not switched: the origin forwards it.
    Skip,
    /// Its source switched, the origin's forwards from it may still be on their way.
    Hold,
}

/// How a message reached `deliver_local`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Routed by shard `source` (this one for a local publish).
    Direct(ShardId),
    /// Forwarded by a handover's origin for this session only.
    Forwarded(SessionKey),
}

/// This shard's handovers in progress, on either side, and those it relays.
#[derive(Default)]
pub struct Handovers {
    next_number: u64,
    outgoing: Vec<Outgoing>,
    incoming: Vec<Incoming>,
    /// Handovers whose messages this shard passes on: at which hop, and to which shard.
    relays: Vec<(HandoverLeg, ShardId)>,
}

impl Handovers {
    /// Whether this shard handed a session over that may still need forwarding.
    pub(crate) fn has_outgoing(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Whether a session arrived here whose messages may still be gated.
    pub(crate) fn has_incoming(&self) -> bool {
        !self.incoming.is_empty()
    }

    /// Handovers this shard takes part in now, on either side or as a relay (0 once the mesh
    /// has settled: every handover ends by itself).
    pub(crate) fn in_progress(&self) -> usize {
        self.outgoing.len() + self.incoming.len() + self.relays.len()
    }

    /// Bytes of the messages held (counted with the sessions' queues in the memory budget;
    /// `ShardCore::queued_bytes` reads it, for the debug builds' check and the simulation's
    /// invariant in every build).
    pub(crate) fn held_bytes(&self) -> usize {
        let held = self.incoming.iter().flat_map(|i| &i.sources);
        held.flat_map(|s| &s.held)
            .map(|h| queued_bytes(&h.message))
            .sum()
    }

    fn incoming_mut(&mut self, id: HandoverId) -> Option<&mut Incoming> {
        self.incoming.iter_mut().find(|i| i.id == id)
    }

    fn relay(&self, leg: HandoverLeg) -> Option<ShardId> {
        self.relays
            .iter()
            .find(|(r, _)| *r == leg)
            .map(|(_, to)| *to)
    }
}

impl ShardCore {
    /// Origin: the session `state` was extracted for `to`, its routes kept. Returns the id the
    /// reply carries.
    pub(crate) fn handover_start(&mut self, to: ShardId, state: &SessionState) -> HandoverId {
        let handovers = &mut self.handovers;
        let number = handovers.next_number;
        handovers.next_number += 1;
        handovers.outgoing.push(Outgoing {
            number,
            to,
            filters: state.subscriptions.keys().cloned().collect(),
            switched: vec![false; self.mesh.shards()],
        });
        HandoverId {
            origin: self.id,
            number,
        }
    }

    /// Origin: forwards `message`, routed by `source`, for each session handed over that
    /// `source` has not switched for. Returns whether it was forwarded, and whether a channel
    /// was full.
    pub(crate) fn handover_forward(
        &mut self,
        message: &MessageRef,
        source: ShardId,
    ) -> (bool, bool) {
        let topic = message.topic.as_str();
        let mut targets = Vec::new();
        for out in &self.handovers.outgoing {
            let matches = |f: &MqttString| {
                !crate::broker::core::delivery::shared_subscriptions::is_shared(f.as_str())
                    && crate::topic::filter_matches(f.as_str(), topic)
            };
            if !out.switched[source] && out.filters.iter().any(matches) {
                targets.push((out.number, out.to));
            }
        }
        let mut overflowed = false;
        for &(number, to) in &targets {
            let HandoverLeg { id, hop } = self.first_leg(number);
            let share = None;
            let message = message.clone();
            overflowed |= !self.send_handover(
                to,
                HandoverMsg::Forward {
                    id,
                    hop,
                    message,
                    share,
                },
            );
        }
        (!targets.is_empty(), overflowed)
    }

    /// Origin: a message for the shared subscription `share` reached this shard, which has no
    /// member left; forwarded if a session handed over from here is one. Returns whether it was.
    pub(crate) fn handover_forward_shared(
        &mut self,
        share: &MqttString,
        message: &MessageRef,
        publisher_hash: u64,
    ) -> bool {
        let Some(out) = self
            .handovers
            .outgoing
            .iter()
            .find(|o| o.filters.contains(share))
        else {
            return false;
        };
        let (number, to) = (out.number, out.to);
        let HandoverLeg { id, hop } = self.first_leg(number);
        let share = Some(Box::new((share.clone(), publisher_hash)));
        let message = message.clone();
        self.send_handover(
            to,
            HandoverMsg::Forward {
                id,
                hop,
                message,
                share,
            },
        );
        true
    }

    /// Origin: the first leg of its handover `number` (towards the shard that asked).
    fn first_leg(&self, number: u64) -> HandoverLeg {
        let id = HandoverId {
            origin: self.id,
            number,
        };
        HandoverLeg { id, hop: 0 }
    }

    /// Installer: the session of handover `leg` is installed as `skey` (its routes broadcast).
    pub(crate) fn handover_installed(&mut self, leg: HandoverLeg, skey: SessionKey) {
        let id = leg.id;
        let shards = self.mesh.shards();
        let client_id = match self.sessions.get(skey) {
            Some(s) => s.session.state.client_id.clone(),
            None => return,
        };
        let mut sources: Vec<Source> = (0..shards).map(|_| Source::default()).collect();
        sources[self.id].switched = true;
        self.handovers.incoming.push(Incoming {
            id,
            hop: leg.hop,
            session: Some(skey),
            client_id,
            sources,
            held: 0,
            deferred: Vec::new(),
        });
        for target in 0..shards {
            if target != self.id {
                let installer = self.id;
                self.send_handover(target, HandoverMsg::Switch { id, installer });
            }
        }
        if id.origin == self.id {
            self.origin_switched(id.number, self.id);
        }
    }

    /// The state of handover `id` reached this shard and was not installed.
    pub(crate) fn handover_aborted(&mut self, id: HandoverId) {
        if id.origin == self.id {
            self.origin_finish(id.number);
        } else {
            self.send_handover(id.origin, HandoverMsg::Abort { id });
        }
    }

    /// This shard passed the state of handover `leg` on to `to`: so does what follows it.
    /// Returns the leg the state continues on.
    pub(crate) fn handover_relayed(&mut self, leg: HandoverLeg, to: ShardId) -> HandoverLeg {
        self.handovers.relays.push((leg, to));
        leg.next()
    }

    /// Installer: what to do with a message from `source` matched for session `skey`.
    pub(crate) fn handover_gate(&self, skey: SessionKey, source: ShardId) -> Gate {
        let Some(incoming) = self
            .handovers
            .incoming
            .iter()
            .find(|i| i.session == Some(skey))
        else {
            return Gate::Deliver;
        };
        match &incoming.sources[source] {
            s if !s.switched => Gate::Skip,
            s if !s.drained => Gate::Hold,
            _ => Gate::Deliver,
        }
    }

    /// Installer: holds a message from `source` for session `skey` (see `handover_gate`).
    pub(crate) fn handover_hold(
        &mut self,
        skey: SessionKey,
        source: ShardId,
        message: &MessageRef,
        qos: QoS,
        retain: bool,
    ) {
        let max = self.config.max_queued_messages;
        let Some(incoming) = self
            .handovers
            .incoming
            .iter_mut()
            .find(|i| i.session == Some(skey))
        else {
            return;
        };
        if incoming.held >= max {
            bump(&self.global.counters[self.id].handover_held_dropped);
            return;
        }
        incoming.held += 1;
        incoming.sources[source].held.push_back(Held {
            message: message.clone(),
            qos,
            retain,
        });
        self.queue_grew(queued_bytes(message));
    }

    /// Installer: session `skey` ended; what was held for it goes.
    pub(crate) fn handover_session_ended(&mut self, skey: SessionKey) {
        let Some(incoming) = self
            .handovers
            .incoming
            .iter_mut()
            .find(|i| i.session == Some(skey))
        else {
            return;
        };
        incoming.session = None;
        incoming.held = 0;
        let mut released = 0;
        for source in &mut incoming.sources {
            released += source
                .held
                .drain(..)
                .map(|h| queued_bytes(&h.message))
                .sum::<usize>();
        }
        self.queue_released(released);
    }

    /// Installer: a takeover request for `client_id` waits while its session is arriving here.
    /// Returns whether it was deferred.
    pub(crate) fn handover_defer_takeover(
        &mut self,
        client_id: &MqttString,
        request: (ShardId, u64, bool),
    ) -> bool {
        match self
            .handovers
            .incoming
            .iter_mut()
            .find(|i| i.session.is_some() && &i.client_id == client_id)
        {
            Some(incoming) => {
                incoming.deferred.push(request);
                true
            }
            None => false,
        }
    }

    /// One handover message from another shard.
    pub(crate) fn handle_handover(&mut self, msg: HandoverMsg) {
        match msg {
            HandoverMsg::Switch { id, installer } => {
                if id.origin == self.id {
                    self.origin_switched(id.number, self.id);
                    self.origin_switched(id.number, installer);
                } else {
                    let from = self.id;
                    self.send_handover(id.origin, HandoverMsg::Switched { id, from });
                }
                let from = self.id;
                self.send_handover(installer, HandoverMsg::Switched { id, from });
            }
            HandoverMsg::Switched { id, from } => {
                if id.origin == self.id {
                    self.origin_switched(id.number, from);
                }
                if let Some(incoming) = self.handovers.incoming_mut(id) {
                    incoming.sources[from].switched = true;
                    self.installer_progress(id, from);
                }
            }
            msg @ (HandoverMsg::Forward { .. }
            | HandoverMsg::Drained { .. }
            | HandoverMsg::Done { .. }) => self.handle_towards_installer(msg),
            HandoverMsg::Abort { id } => self.origin_finish(id.number),
        }
    }

    /// `Forward`, `Drained` and `Done`: relayed, or handled by the installer.
    fn handle_towards_installer(&mut self, msg: HandoverMsg) {
        let leg = match &msg {
            HandoverMsg::Forward { id, hop, .. }
            | HandoverMsg::Drained { id, hop, .. }
            | HandoverMsg::Done { id, hop } => HandoverLeg { id: *id, hop: *hop },
            _ => return,
        };
        if let Some(to) = self.handovers.relay(leg) {
            let HandoverLeg { id, hop } = leg.next();
            let msg = match msg {
                HandoverMsg::Forward { message, share, .. } => HandoverMsg::Forward {
                    id,
                    hop,
                    message,
                    share,
                },
                HandoverMsg::Drained { source, .. } => HandoverMsg::Drained { id, hop, source },
                _ => {
                    self.handovers.relays.retain(|(r, _)| *r != leg);
                    HandoverMsg::Done { id, hop }
                }
            };
            self.send_handover(to, msg);
            return;
        }
        let id = leg.id;
        // Finding F3: this shard is the installer only at the end of the path.
        if !self
            .handovers
            .incoming
            .iter()
            .any(|i| i.id == id && i.hop == leg.hop)
        {
            return;
        }
        match msg {
            HandoverMsg::Forward { message, share, .. } => {
                let Some(skey) = self.handovers.incoming_mut(id).and_then(|i| i.session) else {
                    return;
                };
                match share {
                    Some(share) => {
                        let (share, hash) = *share;
                        // Like a message passed on once: it queues here if no member can take it.
                        self.deliver_shared_named(&share, &message, hash, 1);
                    }
                    None => {
                        self.deliver_local(&message, None, Route::Forwarded(skey));
                    }
                }
            }
            HandoverMsg::Drained { source, .. } => {
                if let Some(incoming) = self.handovers.incoming_mut(id) {
                    incoming.sources[source].drained = true;
                    self.installer_progress(id, source);
                }
            }
            // The installer ends its side on its own (every source switched and drained).
            _ => {}
        }
    }

    /// Installer: delivers what `source` had held once it is switched and drained, and ends
    /// the handover when every source is.
    fn installer_progress(&mut self, id: HandoverId, source: ShardId) {
        let Some(incoming) = self.handovers.incoming_mut(id) else {
            return;
        };
        let s = &mut incoming.sources[source];
        let held = if s.switched && s.drained {
            std::mem::take(&mut s.held)
        } else {
            VecDeque::new()
        };
        incoming.held -= held.len();
        let session = incoming.session;
        let complete = incoming.sources.iter().all(|s| s.switched && s.drained);
        for h in held {
            self.queue_released(queued_bytes(&h.message));
            if let Some(skey) = session {
                let fresh = crate::broker::core::delivery::fanout::Encoding::Fresh { dup: false };
                self.deliver_to_session(skey, &h.message, h.qos, h.retain, fresh);
            }
        }
        if complete {
            let Some(at) = self.handovers.incoming.iter().position(|i| i.id == id) else {
                return;
            };
            let incoming = self.handovers.incoming.swap_remove(at);
            for (from, request, keep_state) in incoming.deferred {
                let client_id = incoming.client_id.clone();
                self.handle_takeover_request(from, request, client_id, keep_state);
            }
        }
    }

    /// Origin: `shard` switched for handover `number`: its forwards are all sent.
    fn origin_switched(&mut self, number: u64, shard: ShardId) {
        let Some(out) = self
            .handovers
            .outgoing
            .iter_mut()
            .find(|o| o.number == number)
        else {
            return;
        };
        if std::mem::replace(&mut out.switched[shard], true) {
            return;
        }
        let to = out.to;
        let complete = out.switched.iter().all(|&s| s);
        let HandoverLeg { id, hop } = self.first_leg(number);
        self.send_handover(
            to,
            HandoverMsg::Drained {
                id,
                hop,
                source: shard,
            },
        );
        if complete {
            self.origin_finish(number);
        }
    }

    /// Origin: the handover ended; its routes go (unless other sessions here use them).
    fn origin_finish(&mut self, number: u64) {
        let Some(at) = self
            .handovers
            .outgoing
            .iter()
            .position(|o| o.number == number)
        else {
            return;
        };
        let out = self.handovers.outgoing.swap_remove(at);
        let HandoverLeg { id, hop } = self.first_leg(number);
        self.send_handover(out.to, HandoverMsg::Done { id, hop });
        let mut gone = Vec::new();
        for filter in out.filters {
            if self.delivery.router_mut().local_removed(&filter) {
                gone.push(filter);
            }
        }
        self.broadcast_route_remove(gone);
    }

    fn send_handover(&mut self, to: ShardId, msg: HandoverMsg) -> bool {
        let sent = self.mesh.send(to, ShardMsg::Handover(msg));
        if !sent {
            bump(&self.global.counters[self.id].mesh_channel_full);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handover's messages do not make the mesh's messages bigger: `Forward` boxes its
    /// rare shared-subscription part, so it stays under the shared-subscription publish
    /// (`ShardMsg::MessageRef`: message, group name, hash, hops), which sets the size: 56 bytes
    /// on 64-bit targets, as before the handover.
    #[test]
    fn mesh_messages_stay_small() {
        let word = std::mem::size_of::<usize>();
        assert!(std::mem::size_of::<HandoverMsg>() <= 5 * word);
        assert!(std::mem::size_of::<ShardMsg>() <= 7 * word);
    }
}
