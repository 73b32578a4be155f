//! Shared by the client integration tests: a thread that drives a client connection, and
//! waiting helpers with generous timeouts (Mosquitto, the broker they talk to, is in
//! `support::mosquitto`).

use crossbeam_channel::Receiver;
use shardmq::client::{Client, ClientError, ClientOptions, ConnectOptions, Event};
use shardmq::codec::ProtocolVersion;
use std::time::{Duration, Instant};

/// Generous: the machine may be loaded.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A client whose connection is driven by its own thread; notifications arrive on `events`.
pub struct TestClient {
    pub client: Client,
    pub events: Receiver<Result<Event, ClientError>>,
}

impl TestClient {
    /// Connects and waits for the CONNACK.
    pub fn connect(options: impl Into<ClientOptions>, port: u16) -> TestClient {
        let client = TestClient::spawn(options, port);
        client.wait_for("CONNACK", |event| matches!(event, Event::Connected(_)));
        client
    }

    /// Creates the client and its driving thread without waiting.
    pub fn spawn(options: impl Into<ClientOptions>, port: u16) -> TestClient {
        let (client, mut connection) =
            Client::new(options, "127.0.0.1", port).expect("create client");
        let (tx, events) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for notification in connection.iter() {
                if tx.send(notification).is_err() {
                    break;
                }
            }
        });
        TestClient { client, events }
    }

    /// Waits for the first event matching `pred`, skipping others (errors included, which
    /// are printed). Panics after [`TIMEOUT`].
    pub fn wait_for(&self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Ok(event)) if pred(&event) => return event,
                Ok(Ok(_)) => {}
                Ok(Err(error)) => eprintln!("while waiting for {what}: {error}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Every notification that arrives within `window`.
    pub fn collect_for(&self, window: Duration) -> Vec<Result<Event, ClientError>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        while let Ok(notification) = self
            .events
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(notification);
        }
        out
    }
}

impl Drop for TestClient {
    /// Ends the driving thread (it would otherwise reconnect until the process exits).
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

/// Options for a test client.
pub fn options(id: &str, version: ProtocolVersion) -> ConnectOptions {
    ConnectOptions::new(id)
        .protocol(version)
        .keep_alive_secs(30)
}

/// Subscribe to two topics, unsubscribe one, publish to both in order: only the other arrives.
pub fn unsubscribe_scenario(port: u16, version: ProtocolVersion) {
    use shardmq::codec::{MqttString, QoS};
    let subscriber = TestClient::connect(options(&format!("unsub-{version:?}"), version), port);
    subscriber
        .client
        .subscribe("u/a", QoS::AtLeastOnce)
        .expect("subscribe");
    subscriber
        .client
        .subscribe("u/b", QoS::AtLeastOnce)
        .expect("subscribe");
    for _ in 0..2 {
        subscriber.wait_for("SUBACK", |e| matches!(e, Event::SubAck(_)));
    }
    let packet_id = subscriber
        .client
        .unsubscribe(vec![MqttString::from("u/a")])
        .expect("unsubscribe");
    subscriber.wait_for(
        "UNSUBACK",
        |e| matches!(e, Event::UnsubAck(u) if u.packet_id == packet_id),
    );
    let publisher = TestClient::connect(options(&format!("unsub-pub-{version:?}"), version), port);
    for topic in ["u/a", "u/b"] {
        publisher
            .client
            .publish(topic, QoS::AtLeastOnce, false, topic)
            .expect("publish");
    }
    let event = subscriber.wait_for("message", |e| matches!(e, Event::Publish(_)));
    let Event::Publish(publish) = event else {
        unreachable!()
    };
    assert_eq!(publish.topic.as_str(), "u/b", "u/a was unsubscribed");
}
