//! Shared by the client integration tests: a Mosquitto broker started on a free loopback port,
//! a thread that drives a client connection, and waiting helpers with generous timeouts.
#![allow(dead_code)] // Each test file uses a different part of this module.

use crossbeam_channel::Receiver;
use shardmq::client::{Client, ClientError, ClientOptions, ConnectOptions, Event};
use shardmq::codec::ProtocolVersion;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Generous: the machine may be loaded.
pub const TIMEOUT: Duration = Duration::from_secs(20);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn mosquitto_binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    // Otherwise rely on PATH; a missing binary fails the test with a clear message.
    PathBuf::from("mosquitto")
}

/// A Mosquitto process listening on 127.0.0.1:`port`, killed on drop.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
}

impl Mosquitto {
    /// Starts Mosquitto on a free port (retrying if the port was taken meanwhile).
    pub fn start() -> Mosquitto {
        for _ in 0..5 {
            if let Some(mosquitto) = Mosquitto::try_start_on(free_port()) {
                return mosquitto;
            }
        }
        panic!("mosquitto did not start (is it installed? .ci/test installs it)");
    }

    /// Starts Mosquitto on this port; `None` if it does not come up.
    pub fn try_start_on(port: u16) -> Option<Mosquitto> {
        let dir = std::env::temp_dir().join(format!(
            "shardmq-client-test-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .expect("write mosquitto.conf");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto (is it installed? .ci/test installs it)");
        let mut mosquitto = Mosquitto {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = mosquitto.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    return None; // exited: the port was probably taken
                }
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(mosquitto);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the broker and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new broker on the same port (after `stop`).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(mut fresh) = Mosquitto::try_start_on(self.port) {
                self.child = fresh.child.take();
                return;
            }
            assert!(Instant::now() < deadline, "mosquitto did not restart");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
