//! The MQTT session each load-generator connection drives, behind one small trait so that the
//! engine is written once.
//!
//! [`LoadSession`] is the subset of `shardmq::client::ClientSession`'s sans-IO API that the load
//! generator uses: bytes in through `handle_input`, bytes out through `poll_transmit`, events
//! through `poll_event`, time passed in as `now`. Two implementations:
//! - the client engine's session (`--engine client`, the default), see `client_session.rs`;
//! - [`RawSession`] (`--engine raw`): fixed-layout frames from [`crate::wire`], no properties, no
//!   validation. It measures how much of a run's cost is the load generator's own MQTT stack.

use crate::wire;
use bytes::{Buf, BytesMut};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// What a session reports to the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// CONNACK arrived; `accepted` is false when it carried an error code.
    Connected { accepted: bool },
    /// SUBACK arrived; `refused` holds the first failure reason code (0x80 and up) if a filter
    /// was refused, or 0x80 for a SUBACK without reason codes.
    Subscribed { refused: Option<u8> },
    /// An application message arrived (already acknowledged as its QoS requires).
    Message { payload: bytes::Bytes },
    /// One of our QoS 1/2 publishes completed (PUBACK, or PUBCOMP for QoS 2).
    Delivered,
    /// The server closed the session (DISCONNECT received).
    Closed,
}

/// Protocol versions the load generator speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MqttVersion {
    V3_1_1,
    V5,
}

impl MqttVersion {
    /// The protocol level byte.
    pub fn level(self) -> u8 {
        match self {
            MqttVersion::V3_1_1 => 4,
            MqttVersion::V5 => 5,
        }
    }
}

/// The sans-IO session API the engine drives. Topics and payloads are `Bytes` so that a
/// publisher's topic is shared, not copied, into every PUBLISH.
pub trait LoadSession: Sized {
    /// A topic name prepared once per publisher and shared by all its publishes.
    type Topic: Clone;
    /// Prepares a topic name.
    fn topic(name: &str) -> Self::Topic;
    /// A session for `client_id`, not yet started, with room for `inflight` QoS 1/2 publishes.
    fn new(client_id: &str, version: MqttVersion, keep_alive_secs: u16, inflight: usize) -> Self;
    /// Queues CONNECT.
    fn start(&mut self, now: Instant);
    /// Consumes every whole frame in `buf`; an error means the connection must be closed.
    fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), String>;
    /// The next event, if any.
    fn poll_event(&mut self) -> Option<SessionEvent>;
    /// Appends every pending byte to `out`.
    fn poll_transmit(&mut self, out: &mut BytesMut);
    /// Queues a PUBLISH; `Ok(false)` when the in-flight window is full (nothing queued).
    fn publish(
        &mut self,
        topic: &Self::Topic,
        payload: bytes::Bytes,
        qos: u8,
        now: Instant,
    ) -> Result<bool, String>;
    /// Queues a SUBSCRIBE of one filter.
    fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), String>;
    /// QoS 1/2 publishes sent and not yet completed.
    fn inflight_len(&self) -> usize;
    /// Queues DISCONNECT.
    fn disconnect(&mut self);
    /// Lets the session act on its timers (keep-alive); an error closes the connection.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), String>;
    /// When `handle_timeout` next needs calling.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// A session built from fixed-layout frames (see the module doc).
pub struct RawSession {
    client_id: String,
    v5: bool,
    level: u8,
    keep_alive: Duration,
    out: Vec<u8>,
    events: std::collections::VecDeque<SessionEvent>,
    next_packet_id: u16,
    /// Our QoS 1/2 publishes awaiting PUBACK / PUBREC+PUBCOMP.
    inflight: HashSet<u16>,
    /// Incoming QoS 2 packet identifiers between PUBLISH and PUBREL (exactly-once, method B).
    incoming_qos2: HashSet<u16>,
    /// In-flight window (`--inflight`, at most [`RAW_INFLIGHT_MAX`]).
    inflight_max: usize,
    last_sent: Instant,
}

/// Largest in-flight window the raw session allows, whatever `--inflight` says.
pub const RAW_INFLIGHT_MAX: usize = 65_000;

impl RawSession {
    fn next_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1).max(1);
            if !self.inflight.contains(&self.next_packet_id) {
                return self.next_packet_id;
            }
        }
    }

    fn handle_frame(&mut self, frame: &wire::Frame, bytes: &[u8]) -> Result<(), String> {
        let body = &bytes[frame.header_len..frame.len()];
        let id = || wire::packet_id(body).map_err(|e| e.to_string());
        match frame.packet_type() {
            2 => {
                let code = body.get(1).copied().unwrap_or(0xff);
                self.events.push_back(SessionEvent::Connected {
                    accepted: code == 0,
                });
            }
            9 => {
                let skip = if self.v5 {
                    3 + usize::from(body.get(2).copied().unwrap_or(0))
                } else {
                    2
                };
                let codes = body.get(skip..).unwrap_or(&[]);
                let refused = match codes.iter().find(|&&c| c >= 0x80) {
                    Some(&code) => Some(code),
                    None if codes.is_empty() => Some(0x80),
                    None => None,
                };
                self.events.push_back(SessionEvent::Subscribed { refused });
            }
            wire::PUBLISH => {
                let (_, packet_id) =
                    wire::publish_topic_and_id(frame, bytes).map_err(|e| e.to_string())?;
                let payload =
                    wire::publish_payload(frame, bytes, self.v5).map_err(|e| e.to_string())?;
                let qos = (frame.first_byte >> 1) & 0x03;
                let deliver = match qos {
                    0 => true,
                    1 => {
                        wire::put_ack(&mut self.out, wire::PUBACK, packet_id);
                        true
                    }
                    _ => {
                        wire::put_ack(&mut self.out, wire::PUBREC, packet_id);
                        self.incoming_qos2.insert(packet_id)
                    }
                };
                if deliver {
                    let payload = bytes::Bytes::copy_from_slice(payload);
                    self.events.push_back(SessionEvent::Message { payload });
                }
            }
            wire::PUBACK | wire::PUBCOMP => {
                if self.inflight.remove(&id()?) {
                    self.events.push_back(SessionEvent::Delivered);
                }
            }
            wire::PUBREC => wire::put_ack(&mut self.out, wire::PUBREL, id()?),
            wire::PUBREL => {
                let packet_id = id()?;
                self.incoming_qos2.remove(&packet_id);
                wire::put_ack(&mut self.out, wire::PUBCOMP, packet_id);
            }
            13 | 11 => {}
            wire::DISCONNECT => self.events.push_back(SessionEvent::Closed),
            other => return Err(format!("unexpected packet type {other} from the server")),
        }
        Ok(())
    }
}

impl LoadSession for RawSession {
    type Topic = bytes::Bytes;

    fn topic(name: &str) -> bytes::Bytes {
        bytes::Bytes::copy_from_slice(name.as_bytes())
    }

    fn new(
        client_id: &str,
        version: MqttVersion,
        keep_alive_secs: u16,
        inflight: usize,
    ) -> RawSession {
        RawSession {
            client_id: client_id.to_owned(),
            v5: version == MqttVersion::V5,
            level: version.level(),
            keep_alive: Duration::from_secs(u64::from(keep_alive_secs)),
            out: Vec::new(),
            events: Default::default(),
            next_packet_id: 0,
            inflight: HashSet::new(),
            incoming_qos2: HashSet::new(),
            inflight_max: inflight.clamp(1, RAW_INFLIGHT_MAX),
            last_sent: crate::payload::epoch(),
        }
    }

    fn start(&mut self, now: Instant) {
        let keep_alive = u16::try_from(self.keep_alive.as_secs()).unwrap_or(u16::MAX);
        wire::put_connect(
            &mut self.out,
            self.client_id.as_bytes(),
            self.level,
            keep_alive,
        );
        self.last_sent = now;
    }

    fn handle_input(&mut self, buf: &mut BytesMut, _now: Instant) -> Result<(), String> {
        while let Some(frame) = wire::frame(buf).map_err(|e| e.to_string())? {
            let len = frame.len();
            self.handle_frame(&frame, &buf[..len])?;
            buf.advance(len);
        }
        Ok(())
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn poll_transmit(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(&self.out);
        self.out.clear();
    }

    fn publish(
        &mut self,
        topic: &bytes::Bytes,
        payload: bytes::Bytes,
        qos: u8,
        now: Instant,
    ) -> Result<bool, String> {
        let packet_id = if qos > 0 {
            if self.inflight.len() >= self.inflight_max {
                return Ok(false);
            }
            let id = self.next_id();
            self.inflight.insert(id);
            id
        } else {
            0
        };
        wire::put_publish(&mut self.out, topic, packet_id, qos, &payload, self.v5);
        self.last_sent = now;
        Ok(true)
    }

    fn subscribe(&mut self, filter: &str, qos: u8) -> Result<(), String> {
        let id = self.next_id();
        wire::put_subscribe(&mut self.out, id, filter.as_bytes(), qos, self.v5);
        Ok(())
    }

    fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    fn disconnect(&mut self) {
        wire::put_disconnect(&mut self.out);
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        if !self.keep_alive.is_zero() && now >= self.last_sent + self.keep_alive / 2 {
            wire::put_pingreq(&mut self.out);
            self.last_sent = now;
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        (!self.keep_alive.is_zero()).then(|| self.last_sent + self.keep_alive / 2)
    }
}
