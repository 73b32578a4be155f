//! [`LoadSession`] for the project's client engine, `shardmq::client::ClientSession`.

use crate::session::{LoadSession, MqttVersion, SessionEvent};
use bytes::{Bytes, BytesMut};
use shardmq::client::{ClientError, ClientSession, ConnectOptions, Event};
use shardmq::codec::{MqttString, ProtocolVersion, QoS, SubscriptionOptions};
use std::time::Instant;

/// The client engine's sans-IO session, as the load engine drives it.
pub struct ClientLoadSession {
    session: ClientSession,
}

fn qos(level: u8) -> QoS {
    QoS::from_u8(level).unwrap_or(QoS::AtMostOnce)
}

impl LoadSession for ClientLoadSession {
    type Topic = MqttString;

    fn topic(name: &str) -> MqttString {
        MqttString::from(name)
    }

    fn new(
        client_id: &str,
        version: MqttVersion,
        keep_alive_secs: u16,
        inflight: usize,
    ) -> ClientLoadSession {
        let mut options = ConnectOptions::new(client_id);
        options.protocol = match version {
            MqttVersion::V3_1_1 => ProtocolVersion::V3_1_1,
            MqttVersion::V5 => ProtocolVersion::V5,
        };
        options.keep_alive_secs = keep_alive_secs;
        // `LOADTEST_CLEAN_SESSION=0`: every connection keeps a persistent session (3.1.1 Clean
        // Session 0), for the broker persistence runs (docs/persistence.md). An environment
        // variable rather than a flag: it reaches this trait constructor without new plumbing.
        options.clean_start = std::env::var("LOADTEST_CLEAN_SESSION").map_or(true, |v| v != "0");
        options.inflight_window = u16::try_from(inflight.max(1)).unwrap_or(u16::MAX);
        // Subscribers in fan-in runs receive from many publishers at once.
        options.receive_maximum = u16::MAX;
        ClientLoadSession {
            session: ClientSession::new(options),
        }
    }

    fn start(&mut self, now: Instant) {
        self.session.start(now);
    }

    fn handle_input(&mut self, buf: &mut BytesMut, now: Instant) -> Result<(), String> {
        self.session
            .handle_input(buf, now)
            .map_err(|e| e.to_string())
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        loop {
            let event = match self.session.poll_event()? {
                Event::Connected(connack) | Event::Reconnected(connack) => {
                    SessionEvent::Connected {
                        accepted: !connack.reason_code.is_error(),
                    }
                }
                Event::SubAck(suback) => {
                    let refused = suback.reason_codes.iter().find(|c| c.is_error());
                    SessionEvent::Subscribed {
                        refused: match refused {
                            Some(code) => Some(code.as_u8()),
                            None if suback.reason_codes.is_empty() => Some(0x80),
                            None => None,
                        },
                    }
                }
                Event::Publish(publish) => SessionEvent::Message {
                    payload: publish.payload,
                },
                Event::PubAck(_) | Event::PubComp(_) => SessionEvent::Delivered,
                Event::Disconnected(Some(_)) => SessionEvent::Closed,
                Event::Disconnected(None) | Event::UnsubAck(_) | Event::PingResp => continue,
            };
            return Some(event);
        }
    }

    fn poll_transmit(&mut self, out: &mut BytesMut) {
        self.session.poll_transmit(out);
    }

    fn publish(
        &mut self,
        topic: &MqttString,
        payload: Bytes,
        level: u8,
        now: Instant,
    ) -> Result<bool, String> {
        match self
            .session
            .publish(topic.clone(), payload, qos(level), false, now)
        {
            Ok(_) => Ok(true),
            Err(ClientError::WindowFull) | Err(ClientError::TransmitQueueFull) => Ok(false),
            Err(e) => Err(e.to_string()),
        }
    }

    fn subscribe(&mut self, filter: &str, level: u8) -> Result<(), String> {
        let options = SubscriptionOptions {
            qos: qos(level),
            ..SubscriptionOptions::default()
        };
        self.session
            .subscribe(&[(MqttString::from(filter), options)]);
        Ok(())
    }

    fn inflight_len(&self) -> usize {
        self.session.inflight_len()
    }

    fn disconnect(&mut self) {
        self.session.disconnect();
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        self.session.handle_timeout(now).map_err(|e| e.to_string())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.session.poll_timeout()
    }
}
