//! A simulated MQTT client: the crate's sans-IO [`ClientSession`] on one [`Sim`] connection,
//! recording every packet the broker sent it (before the session's own QoS 2 deduplication,
//! so that a property test sees duplicates the broker sent).

use super::{ConnId, Sim};
use crate::client::{ClientSession, ConnectOptions, Event};
use crate::codec::{self, Packet, Publish};
use bytes::BytesMut;

/// Largest packet a simulated client accepts.
const MAX_PACKET_BYTES: u32 = 1 << 20;

/// One client on a simulated connection.
pub struct SimClient {
    pub conn: ConnId,
    pub session: ClientSession,
    /// Every PUBLISH the broker sent, in order (resends included).
    pub received: Vec<Publish>,
    /// Every event the session reported, in order.
    pub events: Vec<Event>,
    /// Broker bytes not yet decoded (a partial packet).
    input: BytesMut,
    /// The broker's bytes could not be decoded (a broker bug: the simulation fails on it).
    pub decode_error: Option<codec::DecodeError>,
    tx: BytesMut,
}

impl SimClient {
    /// Connects to shard `shard` and sends CONNECT. `None` when the broker is full.
    pub fn connect(sim: &mut Sim, shard: usize, options: ConnectOptions) -> Option<SimClient> {
        let conn = sim.connect(shard)?;
        let mut session = ClientSession::new(options);
        session.start(sim.now());
        let mut client = SimClient {
            conn,
            session,
            received: Vec::new(),
            events: Vec::new(),
            input: BytesMut::new(),
            decode_error: None,
            tx: BytesMut::new(),
        };
        client.flush(sim);
        Some(client)
    }

    /// Sends what the session queued to the broker.
    pub fn flush(&mut self, sim: &mut Sim) {
        self.session.poll_transmit(&mut self.tx);
        if !self.tx.is_empty() {
            sim.send(self.conn, &self.tx);
            self.tx.clear();
        }
    }

    /// Takes what the broker wrote, records its packets, hands them to the session, and sends
    /// the session's answers (acknowledgements).
    pub fn pump(&mut self, sim: &mut Sim) {
        let output = sim.take_output(self.conn);
        self.input.extend_from_slice(&output);
        let now = sim.now();
        while self.decode_error.is_none() {
            match codec::decode(&mut self.input, self.session.version(), MAX_PACKET_BYTES) {
                Ok(Some(packet)) => {
                    if let Packet::Publish(publish) = &packet {
                        self.received.push(publish.clone());
                    }
                    // A protocol error on the client's side ends its session; the property
                    // tests look at the recorded packets and events, not at this result.
                    let _ = self.session.handle_packet(packet, now);
                }
                Ok(None) => break,
                Err(e) => self.decode_error = Some(e),
            }
        }
        while let Some(event) = self.session.poll_event() {
            self.events.push(event);
        }
        let _ = self.session.handle_timeout(now);
        self.flush(sim);
    }

    /// Whether the session got its CONNACK.
    pub fn is_connected(&self) -> bool {
        self.session.is_connected()
    }
}
