//! Runs arbitrary bytes as a script against a simulated broker, checking invariants: the
//! whole-core fuzz target (`fuzz/fuzz_targets/core.rs`) and its regression tests
//! (`tests/it/sim_regressions.rs`) both call [`run`].
//!
//! The first bytes choose the broker (1 to 3 shards, tight or default limits, QoS 0
//! backpressure, mesh interleaving, read sizes); every following byte group is one operation:
//! open a connection, send it a well-formed packet built from a few bytes (CONNECT, SUBSCRIBE,
//! PUBLISH, acknowledgements, ...) or raw bytes, run shard turns, jump the clock, hang up, slow
//! a reader down, or read what the broker wrote. Well-formed packets get the fuzzer past the
//! handshake; raw bytes reach the decoder and the protocol checks in every state.
//!
//! Invariants checked (a violation is returned; a panic is a finding too):
//! - the broker's output to a connection that only ever sent well-formed packets decodes, in
//!   that connection's protocol version;
//! - a QoS 2 PUBLISH is never sent again (without DUP) under a packet id the client has not
//!   released with PUBREC: exactly-once delivery;
//! - no connection receives a PUBLISH outside the subscriptions its session could hold: its
//!   topic matches a filter that a connection with the same client id (or, for an empty client
//!   id, that connection itself) subscribed to (a delivery to the wrong connection, say a
//!   reused slab key or a closed session's queue, breaks it);
//! - after every connection is closed and the mesh has settled (overflow queues included), no
//!   session handover is in progress and no takeover is still waited on, every shard's buffered bytes equal what its session
//!   queues hold (no accounting drift, nothing held for a closed connection) and stay within
//!   its part of `max_buffered_bytes` plus the queue bound; the same once every session expiry
//!   a script can ask for has passed (expired sessions refund exactly what they held).

use super::{ConnId, MeshDelivery, Sim};
use crate::broker::Config;
use crate::codec::{
    self, Ack, Connect, Disconnect, MqttString, Packet, Properties, ProtocolVersion, Publish, QoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions, Unsubscribe, Will,
};
use crate::topic::{filter_matches, parse_shared};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

/// Most connections a script opens.
const CONNECTIONS_MAX: usize = 12;
/// Most operations a script runs (inputs longer than this are cut).
const OPERATIONS_MAX: usize = 2_000;
/// Turns run to settle at the end.
const SETTLE_TURNS_MAX: usize = 10_000;
/// The longest session expiry (and will delay) a well-formed CONNECT of a script asks for (one
/// byte); raw bytes may ask for longer, and v3.1.1 sessions never expire.
const SESSION_EXPIRY_SCRIPT_MAX_SECS: u64 = 255;

/// An invariant the broker broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a script did, for statistics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub operations: usize,
    pub connections: usize,
    pub packets_received: usize,
}

/// The bytes of a script, read one at a time; zeros once exhausted.
struct Bytes8<'a> {
    data: &'a [u8],
    at: usize,
}

impl Bytes8<'_> {
    fn next(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let start = self.at.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.at = start + n;
        &self.data[start..end]
    }
}

/// The script's view of one connection.
struct Client {
    id: ConnId,
    /// The version of its CONNECT; `None` before one, or after raw bytes (then its output is
    /// not checked: the broker may legitimately answer garbage in any version).
    version: Option<ProtocolVersion>,
    tainted: bool,
    input: BytesMut,
    /// QoS 2 packet ids the broker sent and the client has not PUBREC'd.
    qos2_unreleased: HashSet<u16>,
    /// Packet ids of the last PUBLISH packets received, for acknowledgements.
    recent_ids: Vec<u16>,
    /// Whose subscriptions this connection may receive (set by its first CONNECT).
    owner: Option<Owner>,
}

/// Whose subscriptions a connection receives: its client id's session, or (for an empty
/// client id, which the broker replaces with a fresh one) its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Owner {
    ClientId(&'static str),
    Connection(ConnId),
}

/// Every filter each owner ever subscribed to (a superset of what its session holds: the
/// script never removes one, so an UNSUBSCRIBE racing a delivery is not a violation).
#[derive(Default)]
struct Subscribed {
    filters: HashMap<Owner, HashSet<&'static str>>,
    /// Client ids that raw bytes may have connected or subscribed with: not checked.
    unknown: HashSet<&'static str>,
}

impl Subscribed {
    fn add(&mut self, owner: Owner, filter: &'static str) {
        let plain = match parse_shared(filter) {
            Ok(Some(shared)) => shared.filter,
            _ => filter,
        };
        self.filters.entry(owner).or_default().insert(plain);
    }

    /// Raw bytes sent on a connection: its own client id, and any of the script's client ids
    /// spelled in them (a raw CONNECT), may now hold subscriptions the script cannot see.
    fn taint(&mut self, owner: Option<Owner>, raw: &[u8]) {
        if let Some(Owner::ClientId(id)) = owner {
            self.unknown.insert(id);
        }
        for id in CLIENT_IDS.iter().filter(|id| !id.is_empty()) {
            let spelled = [0, id.len() as u8];
            if raw
                .windows(2 + id.len())
                .any(|w| w[..2] == spelled && &w[2..] == id.as_bytes())
            {
                self.unknown.insert(id);
            }
        }
    }

    fn may_receive(&self, owner: Option<Owner>, topic: &str) -> bool {
        let Some(owner) = owner else {
            return false;
        };
        if let Owner::ClientId(id) = owner {
            if self.unknown.contains(id) {
                return true;
            }
        }
        self.filters
            .get(&owner)
            .is_some_and(|filters| filters.iter().any(|f| filter_matches(f, topic)))
    }
}

const TOPICS: [&str; 5] = ["t/a", "t/b", "t/a/b", "w", "$x/y"];
const FILTERS: [&str; 7] = ["t/a", "t/+", "t/#", "#", "$share/g/t/+", "t/a/b", "w"];
const CLIENT_IDS: [&str; 4] = ["a", "b", "c", ""];

fn qos(b: u8) -> QoS {
    match b % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

/// Runs `data` as a script; `Err` names the first invariant broken.
pub fn run(data: &[u8]) -> Result<Summary, Violation> {
    let mut input = Bytes8 { data, at: 0 };
    let mut sim = broker(&mut input)?;
    let mut clients: Vec<Client> = Vec::new();
    let mut summary = Summary::default();
    let mut payload_counter = 0u32;
    let mut subscribed = Subscribed::default();
    while !input.done() && summary.operations < OPERATIONS_MAX {
        summary.operations += 1;
        let op = input.next();
        let pick = input.next();
        let target = (!clients.is_empty()).then(|| usize::from(pick) % clients.len());
        match op % 12 {
            0 => {
                if clients.len() < CONNECTIONS_MAX {
                    if let Some(id) = sim.connect(usize::from(pick) % sim.shards()) {
                        clients.push(Client {
                            id,
                            version: None,
                            tainted: false,
                            input: BytesMut::new(),
                            qos2_unreleased: HashSet::new(),
                            recent_ids: Vec::new(),
                            owner: None,
                        });
                    }
                }
            }
            1 => {
                if let Some(i) = target {
                    let connect = connect_packet(&mut input);
                    if clients[i].version.is_none() {
                        clients[i].version = Some(connect.protocol_version);
                        let id = CLIENT_IDS
                            .iter()
                            .find(|id| **id == connect.client_id.as_str())
                            .copied()
                            .unwrap_or_default();
                        clients[i].owner = Some(if id.is_empty() {
                            Owner::Connection(clients[i].id)
                        } else {
                            Owner::ClientId(id)
                        });
                    }
                    send(
                        &mut sim,
                        &mut clients[i],
                        &Packet::Connect(Box::new(connect)),
                    );
                }
            }
            2..=4 | 11 => {
                if let Some(i) = target {
                    let packet =
                        client_packet(op % 12, &mut input, &clients[i], &mut payload_counter);
                    if let Packet::PubRec(ack) = &packet {
                        clients[i].qos2_unreleased.remove(&ack.packet_id);
                    }
                    if let (Packet::Subscribe(subscribe), Some(owner)) = (&packet, clients[i].owner)
                    {
                        for subscription in &subscribe.subscriptions {
                            if let Some(filter) =
                                FILTERS.iter().find(|f| **f == subscription.filter.as_str())
                            {
                                subscribed.add(owner, filter);
                            }
                        }
                    }
                    send(&mut sim, &mut clients[i], &packet);
                }
            }
            5 => {
                let len = usize::from(input.next() % 64);
                let bytes = input.take(len).to_vec();
                if let Some(i) = target {
                    clients[i].tainted = true;
                    subscribed.taint(clients[i].owner, &bytes);
                    sim.send(clients[i].id, &bytes);
                }
            }
            6 => {
                sim.mesh_delivery = if pick & 1 == 0 {
                    MeshDelivery::All
                } else {
                    MeshDelivery::Random
                };
                if pick & 2 == 0 {
                    sim.step();
                } else {
                    sim.turn(usize::from(pick >> 2) % sim.shards());
                }
            }
            7 => {
                let ms = match pick {
                    255 => 3_600_000,
                    254 => 100_000,
                    p => u64::from(p) * u64::from(p),
                };
                sim.advance(Duration::from_millis(ms));
            }
            8 => {
                if let Some(i) = target {
                    sim.hang_up(clients[i].id);
                }
            }
            9 => {
                if let Some(i) = target {
                    let capacity = match input.next() {
                        0 => usize::MAX,
                        b => usize::from(b) * 32,
                    };
                    sim.set_write_capacity(clients[i].id, capacity);
                }
            }
            _ => {
                if let Some(i) = target {
                    summary.packets_received += read(&mut sim, &mut clients[i], &subscribed)?;
                }
            }
        }
    }
    summary.connections = clients.len();
    finish(&mut sim, &mut clients, &subscribed)?;
    Ok(summary)
}

/// The broker the script's first bytes choose.
fn broker(input: &mut Bytes8<'_>) -> Result<Sim, Violation> {
    let shape = input.next();
    let mut config = Config {
        shards: 1 + usize::from(shape % 3),
        qos0_backpressure: shape & 4 != 0,
        // Crossbeam's bounded channels allocate their capacity up front: 4,096 slots per shard
        // pair would make every run allocate megabytes. 64 is still more than a script fills
        // in one turn without overflowing, and the tight limits below use 2.
        mesh_channel_capacity: 64,
        ..Config::default()
    };
    if shape & 8 != 0 {
        // Tight limits, reached within a few operations.
        config.max_inflight = 2;
        config.receive_maximum = 2;
        config.max_queued_messages = 4;
        config.max_outgoing_bytes = 1024;
        config.max_buffered_bytes = 1 << 20;
        config.max_retained_messages = 2;
        config.mesh_channel_capacity = 2;
        config.max_subscriptions_per_client = 3;
        config.topic_alias_maximum = 2;
        config.congestion_timeout_ms = 50;
        config.max_packet_size = 512;
    }
    if shape & 16 != 0 {
        config.max_qos = 1;
    }
    let seed = u64::from(input.next());
    let mut sim = Sim::new(config, seed).map_err(|e| Violation(format!("config: {e}")))?;
    if shape & 32 != 0 {
        sim.mesh_delivery = MeshDelivery::Random;
    }
    if shape & 64 != 0 {
        sim.read_chunk_bytes = 0;
    }
    Ok(sim)
}

fn connect_packet(input: &mut Bytes8<'_>) -> Connect {
    let b = input.next();
    let v5 = b & 1 != 0;
    let mut properties = Properties::default();
    if v5 && b & 16 != 0 {
        properties.session_expiry_interval = Some(u32::from(input.next()));
    }
    let will = (b & 32 != 0).then(|| {
        let mut will_properties = Properties::default();
        if v5 {
            will_properties.will_delay_interval = Some(u32::from(input.next() % 8));
        }
        Will {
            topic: MqttString::from("w"),
            payload: Bytes::from_static(b"will"),
            qos: qos(b >> 6),
            retain: b & 64 != 0,
            properties: will_properties,
        }
    });
    Connect {
        protocol_version: if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        },
        clean_start: b & 2 != 0,
        keep_alive_secs: u16::from((b >> 2) & 3),
        client_id: MqttString::from(CLIENT_IDS[usize::from(b >> 4) % CLIENT_IDS.len()]),
        will,
        username: None,
        password: None,
        properties,
    }
}

/// SUBSCRIBE (2), PUBLISH (3), an acknowledgement (4) or DISCONNECT/PINGREQ/UNSUBSCRIBE (11).
fn client_packet(op: u8, input: &mut Bytes8<'_>, client: &Client, counter: &mut u32) -> Packet {
    let b = input.next();
    let packet_id = u16::from(input.next() % 4) + 1;
    match op {
        2 => {
            let options = SubscriptionOptions {
                qos: qos(b),
                no_local: b & 4 != 0 && b & 8 == 0,
                ..SubscriptionOptions::default()
            };
            Packet::Subscribe(Subscribe {
                packet_id,
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: MqttString::from(FILTERS[usize::from(b >> 4) % FILTERS.len()]),
                    options,
                }],
            })
        }
        3 => {
            *counter += 1;
            let qos = qos(b);
            Packet::Publish(Publish {
                dup: false,
                qos,
                retain: b & 4 != 0,
                topic: MqttString::from(TOPICS[usize::from(b >> 4) % TOPICS.len()]),
                packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
                properties: Properties::default(),
                payload: Bytes::from(counter.to_be_bytes().to_vec()),
            })
        }
        4 => {
            let id = client
                .recent_ids
                .get(usize::from(b >> 2) % client.recent_ids.len().max(1))
                .copied()
                .unwrap_or(packet_id);
            let ack = Ack {
                packet_id: id,
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            };
            match b % 4 {
                0 => Packet::PubAck(ack),
                1 => Packet::PubRec(ack),
                2 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        }
        _ => match b % 3 {
            0 => Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::Success,
                properties: Properties::default(),
            }),
            1 => Packet::PingReq,
            _ => Packet::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters: vec![MqttString::from(
                    FILTERS[usize::from(b >> 4) % FILTERS.len()],
                )],
            }),
        },
    }
}

/// Encodes `packet` in the client's version (3.1.1 before its CONNECT) and sends it.
fn send(sim: &mut Sim, client: &mut Client, packet: &Packet) {
    let version = client.version.unwrap_or(ProtocolVersion::V3_1_1);
    let mut buf = BytesMut::new();
    // The script's packets are far below every wire-format limit; one that were not would
    // simply not be sent.
    if packet.encode(version, &mut buf).is_ok() {
        sim.send(client.id, &buf);
    }
}

/// Takes and checks what the broker wrote to `client`; returns the packets decoded.
fn read(sim: &mut Sim, client: &mut Client, subscribed: &Subscribed) -> Result<usize, Violation> {
    let output = sim.take_output(client.id);
    let Some(version) = client.version.filter(|_| !client.tainted) else {
        return Ok(0);
    };
    client.input.extend_from_slice(&output);
    let mut packets = 0;
    loop {
        match codec::decode(&mut client.input, version, u32::MAX) {
            Ok(Some(packet)) => {
                packets += 1;
                check_packet(client, &packet, subscribed)?;
            }
            Ok(None) => return Ok(packets),
            Err(e) => {
                return Err(Violation(format!(
                    "connection {:?}: the broker's output does not decode as {version:?}: {e}",
                    client.id
                )))
            }
        }
    }
}

fn check_packet(
    client: &mut Client,
    packet: &Packet,
    subscribed: &Subscribed,
) -> Result<(), Violation> {
    let Packet::Publish(publish) = packet else {
        return Ok(());
    };
    // The script never allows outgoing topic aliases, so every PUBLISH names its topic.
    if !subscribed.may_receive(client.owner, publish.topic.as_str()) {
        return Err(Violation(format!(
            "connection {:?} ({:?}): PUBLISH on {:?} outside every filter its session holds",
            client.id,
            client.owner,
            publish.topic.as_str()
        )));
    }
    if publish.qos == QoS::AtMostOnce {
        return Ok(());
    }
    client.recent_ids.push(publish.packet_id);
    if client.recent_ids.len() > 8 {
        client.recent_ids.remove(0);
    }
    if publish.qos == QoS::ExactlyOnce
        && !client.qos2_unreleased.insert(publish.packet_id)
        && !publish.dup
    {
        return Err(Violation(format!(
            "connection {:?}: QoS 2 packet id {} sent again without DUP before PUBREC",
            client.id, publish.packet_id
        )));
    }
    Ok(())
}

/// Closes every connection, lets the mesh settle, and checks the memory accounting; then lets
/// every session expiry the script can ask for pass and checks it again.
fn finish(sim: &mut Sim, clients: &mut [Client], subscribed: &Subscribed) -> Result<(), Violation> {
    for client in clients.iter_mut() {
        read(sim, client, subscribed)?;
        sim.hang_up(client.id);
    }
    sim.mesh_delivery = MeshDelivery::All;
    if !sim.settle(SETTLE_TURNS_MAX) {
        return Err(Violation("the broker did not settle".into()));
    }
    check_settled(sim, "every connection closed")?;
    // Expired sessions refund their queues (and publish their delayed wills into the queues
    // of sessions that stay): what is left must still be exactly what the queues hold.
    sim.advance(Duration::from_secs(SESSION_EXPIRY_SCRIPT_MAX_SECS + 1));
    if !sim.settle(SETTLE_TURNS_MAX) {
        return Err(Violation(
            "the broker did not settle after the expiries".into(),
        ));
    }
    check_settled(sim, "every session expired")
}

/// The invariants of a settled broker with every connection closed (`when` says which point).
fn check_settled(sim: &Sim, when: &str) -> Result<(), Violation> {
    // Fault-isolation hook (`broker::fault`): a panic the broker contained to one connection,
    // or a packet it built and could not encode, is a bug the fuzzer must report, not hide.
    let stats = sim.global().stats();
    if stats.connection_panics != 0 || stats.packets_unencodable != 0 {
        return Err(Violation(format!(
            "{} contained panics, {} unencodable packets",
            stats.connection_panics, stats.packets_unencodable
        )));
    }
    for shard in 0..sim.shards() {
        let core = sim.core(shard);
        // Finding F2: a handover still in progress holds messages that `queued_bytes` counts
        // with the queues; once settled none is left, so nothing can be held forever unseen.
        let handovers = core.handovers_in_progress();
        if handovers != 0 {
            return Err(Violation(format!(
                "shard {shard}: {handovers} session handovers in progress with the mesh \
                 settled ({when})"
            )));
        }
        // Finding F3: two claims on one client id waiting on each other for ever would leave
        // a takeover pending (and a connection without its CONNACK).
        let takeovers = core.takeovers_pending();
        if takeovers != 0 {
            return Err(Violation(format!(
                "shard {shard}: {takeovers} takeovers still pending with the mesh settled \
                 ({when})"
            )));
        }
        let (buffered, limit) = core.buffered_bytes();
        let queued = core.queued_bytes();
        if buffered != queued {
            return Err(Violation(format!(
                "shard {shard}: {buffered} bytes counted with {when}, {queued} queued"
            )));
        }
        let (connections, _) = core.population();
        if connections != 0 {
            return Err(Violation(format!(
                "shard {shard}: {connections} connections left after every hang-up"
            )));
        }
        let queue_bound = sim.global().config().max_queued_messages * 1024;
        if buffered > limit + queue_bound {
            return Err(Violation(format!(
                "shard {shard}: {buffered} bytes buffered, limit {limit}"
            )));
        }
    }
    Ok(())
}
