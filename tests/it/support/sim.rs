//! Raw-packet clients on the deterministic simulation (`shardmq::sim`): the simulated
//! counterpart of [`super::broker::Raw`] and `Placer`. A client is put on the shard the test
//! names (no filler connections), every call runs the turns it causes until the broker is
//! idle, and time moves only when the test moves it ([`advance_ms`]).

use bytes::BytesMut;
use shardmq::broker::Config;
use shardmq::codec::{self, Ack, ConnAck, Connect, Packet, ProtocolVersion, QoS, ReasonCode};
use shardmq::codec::{Properties, SubscriptionOptions};
use shardmq::sim::{ConnId, Sim};
use std::time::Duration;

/// A simulation of `shards` shards with the default configuration changed by `config`.
pub fn sim_with(shards: usize, config: impl FnOnce(&mut Config)) -> Sim {
    let mut c = Config {
        shards,
        ..Config::default()
    };
    config(&mut c);
    Sim::new(c, 7).expect("valid config")
}

/// Moves the clock by `ms` and runs the turns that brings.
pub fn advance_ms(sim: &mut Sim, ms: u64) {
    sim.advance(Duration::from_millis(ms));
    assert!(sim.settle(1000), "the simulation settles");
}

/// The (topic, payload) of every PUBLISH among `packets`.
pub fn payloads(packets: &[Packet]) -> Vec<(String, Vec<u8>)> {
    packets
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((p.topic.as_str().to_string(), p.payload.to_vec())),
            _ => None,
        })
        .collect()
}

/// A client speaking raw packets on one simulated connection.
pub struct Peer {
    pub conn: ConnId,
    version: ProtocolVersion,
    input: BytesMut,
    /// Packets that came with the CONNACK (a resumed session's messages).
    pending: Vec<Packet>,
}

impl Peer {
    /// Connects on `shard` and returns the client with the broker's CONNACK.
    pub fn connect(sim: &mut Sim, shard: usize, connect: Connect) -> (Peer, ConnAck) {
        let conn = sim.connect(shard).expect("room for a connection");
        let mut peer = Peer {
            conn,
            version: connect.protocol_version,
            input: BytesMut::new(),
            pending: Vec::new(),
        };
        peer.send(sim, &Packet::Connect(Box::new(connect)));
        let mut packets = peer.packets(sim);
        let Some(Packet::ConnAck(connack)) = packets.first().cloned() else {
            panic!("expected CONNACK, got {packets:?}");
        };
        assert_eq!(connack.reason_code, ReasonCode::Success);
        peer.pending = packets.split_off(1);
        (peer, connack)
    }

    /// Sends `packet` and runs the simulation until it is idle.
    pub fn send(&mut self, sim: &mut Sim, packet: &Packet) {
        self.send_only(sim, packet);
        assert!(sim.settle(1000), "the simulation settles");
    }

    /// Queues `packet` for the broker's next read, running nothing (to put packets of several
    /// clients into one turn).
    pub fn send_only(&mut self, sim: &mut Sim, packet: &Packet) {
        let mut wire = BytesMut::new();
        packet.encode(self.version, &mut wire).expect("encodes");
        sim.send(self.conn, &wire);
    }

    /// Every packet the broker sent since the last call.
    pub fn packets(&mut self, sim: &mut Sim) -> Vec<Packet> {
        self.input.extend_from_slice(&sim.take_output(self.conn));
        let mut packets = std::mem::take(&mut self.pending);
        while let Some(packet) =
            codec::decode(&mut self.input, self.version, u32::MAX).expect("valid packets")
        {
            packets.push(packet);
        }
        packets
    }

    /// Subscribes to `filter` and checks the SUBACK grants `options.qos`; what came after it
    /// (retained messages) stays for the next [`Peer::packets`].
    pub fn subscribe_with(&mut self, sim: &mut Sim, filter: &str, options: SubscriptionOptions) {
        let packet = super::broker::subscribe_packet(1, &[(filter, options)]);
        self.send(sim, &packet);
        let mut packets = self.packets(sim);
        assert!(
            matches!(packets.first(), Some(Packet::SubAck(s)) if s.reason_codes[0] as u8 == options.qos as u8),
            "{packets:?}"
        );
        self.pending = packets.split_off(1);
    }

    pub fn subscribe(&mut self, sim: &mut Sim, filter: &str, qos: QoS) {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.subscribe_with(sim, filter, options);
    }

    /// Takes every PUBLISH sent so far, acknowledges the QoS 1 ones, and again for what the
    /// acknowledgements let out, until nothing more comes; returns their payloads as text. Any
    /// other packet fails the test.
    pub fn drain(&mut self, sim: &mut Sim) -> Vec<String> {
        let mut got = Vec::new();
        loop {
            let mut acks = Vec::new();
            for packet in self.packets(sim) {
                match packet {
                    Packet::Publish(p) => {
                        if p.qos == QoS::AtLeastOnce {
                            acks.push(p.packet_id);
                        }
                        got.push(String::from_utf8_lossy(&p.payload).into_owned());
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            if acks.is_empty() {
                return got;
            }
            for packet_id in acks {
                self.send(
                    sim,
                    &Packet::PubAck(Ack {
                        packet_id,
                        reason_code: ReasonCode::Success,
                        properties: Properties::default(),
                    }),
                );
            }
        }
    }
}
