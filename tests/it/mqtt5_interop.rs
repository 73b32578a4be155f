//! MQTT 5 features checked with independent clients over real TCP: rumqttc's v5 client
//! (shared subscriptions across shards, topic aliases both ways) and Mosquitto's
//! `mosquitto_sub -V mqttv5` (a shared subscription member).

use crate::support::broker::*;
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS as RQoS;
use rumqttc::v5::{Client, Connection, Event, MqttOptions};
use shardmq::codec::{ProtocolVersion, QoS};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn options(address: SocketAddr, id: &str) -> MqttOptions {
    let mut o = MqttOptions::new(id, address.ip().to_string(), address.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

/// Drives a rumqttc v5 connection until `done` says so; panics after `WAIT`.
fn pump(connection: &mut Connection, mut done: impl FnMut(&Event) -> bool) {
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

/// Collects publishes on a rumqttc connection until none arrives for `QUIET`.
fn collect(connection: &mut Connection) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        match connection.recv_timeout(QUIET) {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => got.push((
                String::from_utf8_lossy(&p.topic).into_owned(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("rumqttc v5 connection error: {e:?}"),
            Err(_) => return got,
        }
    }
}

fn connected(
    address: SocketAddr,
    id: &str,
    set: impl FnOnce(&mut MqttOptions),
) -> (Client, Connection) {
    let mut o = options(address, id);
    set(&mut o);
    let (client, mut connection) = Client::new(o, 32);
    pump(&mut connection, |e| {
        matches!(e, Event::Incoming(Packet::ConnAck(_)))
    });
    (client, connection)
}

/// Spec 4.8.2 with rumqttc v5 members on two shards: each message to exactly one member.
#[test]
fn rumqttc_v5_shared_subscription_members_on_two_shards() {
    let broker = start_broker(2);
    let address = addr(&broker);
    let (a, mut a_conn) = connected(address, "r-share-a", |_| {});
    let (b, mut b_conn) = connected(address, "r-share-b", |_| {});
    wait_until("members on both shards", || {
        broker.stats().connections_per_shard == vec![1, 1]
    });
    for (client, conn) in [(&a, &mut a_conn), (&b, &mut b_conn)] {
        client
            .subscribe("$share/workers/jobs/#", RQoS::AtLeastOnce)
            .unwrap();
        pump(conn, |e| matches!(e, Event::Incoming(Packet::SubAck(_))));
    }
    let mut publisher = Raw::connect(address, ProtocolVersion::V5, "r-share-pub");
    let sent: BTreeSet<String> = (0..10).map(|i| format!("job{i}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        publisher.publish_acked(
            "jobs/x",
            payload.as_bytes(),
            QoS::AtLeastOnce,
            false,
            1 + i as u16,
        );
    }
    let got_a = collect(&mut a_conn);
    let got_b = collect(&mut b_conn);
    let all: Vec<String> = got_a.iter().chain(&got_b).map(|(_, p)| p.clone()).collect();
    assert_eq!(all.len(), sent.len(), "a: {got_a:?}, b: {got_b:?}");
    assert_eq!(all.into_iter().collect::<BTreeSet<_>>(), sent);
    assert_eq!(got_a.len(), 5, "round robin: a {got_a:?}, b {got_b:?}");
}

/// [MQTT-3.3.2-11], [MQTT-3.3.2-10]: a rumqttc v5 subscriber allowing 2 aliases gets our
/// aliased publishes and resolves every topic; a rumqttc v5 publisher's alias is accepted.
#[test]
fn rumqttc_v5_topic_aliases_both_ways() {
    let broker = start_broker(2);
    let address = addr(&broker);
    let (sub, mut sub_conn) = connected(address, "r-alias-sub", |o| {
        o.set_topic_alias_max(Some(2));
    });
    sub.subscribe("ra/#", RQoS::AtLeastOnce).unwrap();
    pump(&mut sub_conn, |e| {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    });
    let (publisher, mut pub_conn) = connected(address, "r-alias-pub", |_| {});
    let topics = ["ra/a", "ra/b", "ra/a", "ra/c", "ra/a", "ra/b"];
    for (i, topic) in topics.iter().enumerate() {
        let properties = PublishProperties {
            // rumqttc sends the topic with alias 1 every time; the broker maps it each time.
            topic_alias: (i == 0).then_some(1),
            ..Default::default()
        };
        publisher
            .publish_with_properties(*topic, RQoS::AtLeastOnce, false, format!("{i}"), properties)
            .unwrap();
        pump(&mut pub_conn, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        });
    }
    // rumqttc accepted every aliased PUBLISH (an unknown alias would be a protocol error
    // there); its Incoming events show the packets as sent, so the aliases are resolved here
    // the way rumqttc's state does.
    let mut aliases = std::collections::HashMap::new();
    let mut got = Vec::new();
    let mut sent_topic = 0;
    while let Ok(Ok(event)) = sub_conn.recv_timeout(QUIET) {
        if let Event::Incoming(Packet::Publish(p)) = event {
            let alias = p.properties.as_ref().and_then(|props| props.topic_alias);
            let alias = alias.expect("the broker aliases every message to this client");
            assert!((1..=2).contains(&alias), "alias {alias} over the maximum 2");
            let topic = if p.topic.is_empty() {
                aliases.get(&alias).cloned().expect("a known alias")
            } else {
                sent_topic += 1;
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                aliases.insert(alias, topic.clone());
                topic
            };
            got.push((topic, String::from_utf8_lossy(&p.payload).into_owned()));
        }
    }
    let want: Vec<(String, String)> = topics
        .iter()
        .enumerate()
        .map(|(i, t)| (t.to_string(), i.to_string()))
        .collect();
    assert_eq!(got, want, "every alias resolves to the right topic");
    assert!(sent_topic < topics.len(), "hot topics reuse their alias");
}

/// A `mosquitto_sub -V mqttv5` member of `$share/g/...` on one shard shares messages with a
/// raw member on the other.
#[test]
fn mosquitto_sub_v5_is_a_shared_subscription_member() {
    let path = "/usr/bin/mosquitto_sub";
    let program = if std::path::Path::new(path).exists() {
        path
    } else {
        "mosquitto_sub"
    };
    let broker = start_broker(2);
    let address = addr(&broker);
    let port = address.port().to_string();
    let mut child = Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5", "-q", "1"])
        .args(["-t", "$share/g/ms/#", "-C", "2", "-W", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto clients are installed (.ci/test installs mosquitto-clients)");
    // The mosquitto member is connection 0 (shard 0) once it is connected.
    wait_until("mosquitto_sub connected", || {
        broker.stats().clients_connected == 1
    });
    let mut placer = Placer::new(&broker);
    placer.next = 1;
    let mut raw_member = placer.raw_on(1, ProtocolVersion::V5, "raw-member");
    raw_member.subscribe("$share/g/ms/#", QoS::AtLeastOnce);
    let mut publisher = placer.raw_on(0, ProtocolVersion::V5, "ms-pub");
    // Until mosquitto_sub's SUBACK arrived its messages would go to the raw member only; keep
    // publishing pairs until mosquitto_sub got two.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 0u16;
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "mosquitto_sub got fewer than 2 messages"
        );
        id += 1;
        publisher.publish_acked(
            "ms/t",
            format!("m{id}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            id,
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let mosquitto_got: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(mosquitto_got.len(), 2);
    let mut raw_got = Vec::new();
    while let Ok(shardmq::codec::Packet::Publish(p)) = raw_member.recv(QUIET) {
        raw_member.send(&shardmq::codec::Packet::PubAck(ack(p.packet_id)));
        raw_got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    // Every message went to exactly one member. All but at most one are accounted for: one may
    // have reached mosquitto_sub after its second and been acknowledged by libmosquitto
    // without being printed (-C 2 exits).
    let all: BTreeSet<String> = mosquitto_got.iter().chain(&raw_got).cloned().collect();
    assert_eq!(
        all.len(),
        mosquitto_got.len() + raw_got.len(),
        "no duplicates"
    );
    assert!(
        raw_got.len() + 2 >= id as usize - 1,
        "raw {raw_got:?}, mosquitto {mosquitto_got:?}"
    );
}
