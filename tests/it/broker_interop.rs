//! Interoperability with independent clients: rumqttc (MQTT 3.1.1 and 5.0) and Mosquitto's
//! `mosquitto_pub` / `mosquitto_sub` (`.ci/test` installs mosquitto-clients when missing).

use crate::support::broker::*;
use shardmq::codec::{ProtocolVersion, QoS};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn qos4(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(qos: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as Q;
    match qos {
        0 => Q::AtMostOnce,
        1 => Q::AtLeastOnce,
        _ => Q::ExactlyOnce,
    }
}

/// Drives a rumqttc v4 connection until `done` says so; panics after `WAIT`.
fn pump4(connection: &mut rumqttc::Connection, mut done: impl FnMut(&rumqttc::Event) -> bool) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "rumqttc v4: timed out");
        match connection.recv_timeout(left) {
            Ok(Ok(event)) => {
                if done(&event) {
                    return;
                }
            }
            Ok(Err(e)) => panic!("rumqttc v4 connection error: {e:?}"),
            Err(_) => panic!("rumqttc v4: timed out"),
        }
    }
}

fn pump5(
    connection: &mut rumqttc::v5::Connection,
    mut done: impl FnMut(&rumqttc::v5::Event) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "rumqttc v5: timed out");
        match connection.recv_timeout(left) {
            Ok(Ok(event)) => {
                if done(&event) {
                    return;
                }
            }
            Ok(Err(e)) => panic!("rumqttc v5 connection error: {e:?}"),
            Err(_) => panic!("rumqttc v5: timed out"),
        }
    }
}

#[test]
fn rumqttc_v4_pub_sub_qos_0_1_2_across_shards() {
    use rumqttc::{Event, Packet};
    let broker = start_broker(2);
    let a = addr(&broker);
    let options = |id: &str| {
        let mut o = rumqttc::MqttOptions::new(id, a.ip().to_string(), a.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    // Connection 0 -> shard 0, connection 1 -> shard 1.
    let (sub, mut sub_conn) = rumqttc::Client::new(options("r4-sub"), 10);
    pump4(&mut sub_conn, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    });
    sub.subscribe("r4/#", rumqttc::QoS::ExactlyOnce).unwrap();
    pump4(&mut sub_conn, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    });
    let (publisher, mut pub_conn) = rumqttc::Client::new(options("r4-pub"), 10);
    pump4(&mut pub_conn, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    });
    wait_until("two shards used", || {
        broker.stats().connections_per_shard == vec![1, 1]
    });
    for qos in 0..3u8 {
        publisher
            .publish(format!("r4/{qos}"), qos4(qos), false, vec![qos; 10])
            .unwrap();
        pump4(&mut pub_conn, |e| match qos {
            0 => matches!(e, Event::Outgoing(rumqttc::Outgoing::Publish(_))),
            1 => matches!(e, Event::Incoming(Packet::PubAck(_))),
            _ => matches!(e, Event::Incoming(Packet::PubComp(_))),
        });
        let mut got = None;
        pump4(&mut sub_conn, |e| match e {
            Event::Incoming(Packet::Publish(p)) => {
                got = Some(p.clone());
                true
            }
            _ => false,
        });
        let got = got.unwrap();
        assert_eq!(got.topic, format!("r4/{qos}"));
        assert_eq!(got.qos, qos4(qos));
        assert_eq!(&got.payload[..], &[qos; 10][..]);
    }
}

#[test]
fn rumqttc_v5_pub_sub_qos_0_1_2_across_shards() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::Event;
    let broker = start_broker(2);
    let a = addr(&broker);
    let options = |id: &str| {
        let mut o = rumqttc::v5::MqttOptions::new(id, a.ip().to_string(), a.port());
        o.set_keep_alive(Duration::from_secs(30));
        o
    };
    let (sub, mut sub_conn) = rumqttc::v5::Client::new(options("r5-sub"), 10);
    pump5(&mut sub_conn, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    });
    sub.subscribe("r5/#", qos5(2)).unwrap();
    pump5(&mut sub_conn, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    });
    let (publisher, mut pub_conn) = rumqttc::v5::Client::new(options("r5-pub"), 10);
    pump5(&mut pub_conn, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    });
    wait_until("two shards used", || {
        broker.stats().connections_per_shard == vec![1, 1]
    });
    for qos in 0..3u8 {
        publisher
            .publish(format!("r5/{qos}"), qos5(qos), false, vec![qos; 10])
            .unwrap();
        pump5(&mut pub_conn, |e| match qos {
            0 => matches!(e, Event::Outgoing(rumqttc::Outgoing::Publish(_))),
            1 => matches!(e, Event::Incoming(Packet::PubAck(_))),
            _ => matches!(e, Event::Incoming(Packet::PubComp(_))),
        });
        let mut got = None;
        pump5(&mut sub_conn, |e| match e {
            Event::Incoming(Packet::Publish(p)) => {
                got = Some(p.clone());
                true
            }
            _ => false,
        });
        let got = got.unwrap();
        assert_eq!(&got.topic[..], format!("r5/{qos}").as_bytes());
        assert_eq!(got.qos, qos5(qos));
        assert_eq!(&got.payload[..], &[qos; 10][..]);
    }
}

fn mosquitto(tool: &str) -> Command {
    let path = format!("/usr/bin/{tool}");
    let program = if std::path::Path::new(&path).exists() {
        path
    } else {
        tool.to_string()
    };
    Command::new(program)
}

/// Runs a mosquitto tool to completion within `timeout`; panics if it is missing or hangs.
fn run_tool(mut command: Command, timeout: Duration) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mosquitto clients are installed (.ci/test installs mosquitto-clients)");
    let deadline = Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn mosquitto_pub_to_our_subscriber_v311_and_v5_all_qos() {
    let broker = start_broker(2);
    let a = addr(&broker);
    let mut sub = Raw::connect(a, ProtocolVersion::V5, "mq-watch");
    sub.subscribe("mq/#", QoS::ExactlyOnce);
    for version in ["mqttv311", "mqttv5"] {
        for qos in 0..3u8 {
            let message = format!("{version}-{qos}");
            let mut command = mosquitto("mosquitto_pub");
            command.args([
                "-h",
                "127.0.0.1",
                "-p",
                &a.port().to_string(),
                "-V",
                version,
            ]);
            command.args([
                "-t",
                &format!("mq/{version}"),
                "-m",
                &message,
                "-q",
                &qos.to_string(),
            ]);
            let output = run_tool(command, WAIT);
            assert!(output.status.success(), "mosquitto_pub: {output:?}");
            let got = sub.receive_and_ack();
            assert_eq!(got.topic.to_string(), format!("mq/{version}"));
            assert_eq!(got.payload, message.as_bytes());
            assert_eq!(got.qos as u8, qos);
        }
    }
}

#[test]
fn mosquitto_sub_receives_live_and_retained_v311_and_v5() {
    let broker = start_broker(2);
    let a = addr(&broker);
    let port = a.port().to_string();
    let mut publisher = Raw::connect(a, ProtocolVersion::V3_1_1, "mq-pub");
    for version in ["mqttv311", "mqttv5"] {
        let retained_topic = format!("keep/{version}");
        publisher.publish_acked(&retained_topic, b"kept", QoS::AtLeastOnce, true, 1);
        // Retained on subscribe.
        let mut command = mosquitto("mosquitto_sub");
        command.args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "1"]);
        command.args(["-t", &retained_topic, "-C", "1", "-W", "5", "-v"]);
        let output = run_tool(command, Duration::from_secs(8));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(stdout.trim(), format!("{retained_topic} kept"));

        // Live: publish until the subscriber (which subscribes at some point) got one.
        let topic = format!("live/{version}");
        let mut command = mosquitto("mosquitto_sub");
        command.args(["-h", "127.0.0.1", "-p", &port, "-V", version, "-q", "2"]);
        command.args(["-t", &topic, "-C", "1", "-W", "8"]);
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("mosquitto_sub");
        let deadline = Instant::now() + Duration::from_secs(8);
        let mut id = 10;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "mosquitto_sub got nothing");
            id += 1;
            publisher.publish_acked(&topic, b"hello", QoS::ExactlyOnce, false, id);
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "hello");
    }
}
