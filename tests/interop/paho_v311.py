#!/usr/bin/env python3
"""MQTT 3.1.1 (and 3.1) interoperability scenarios, driven by paho-mqtt 2.x.

The behaviours are those of the Eclipse Paho interoperability suite (client_test.py) and of the
normative statements of MQTT 3.1.1, written independently; see SCENARIOS.md for the list with
statement numbers. Where the specification allows several behaviours, every allowed behaviour
passes (and the one seen is noted on the PASS line).

Usage: paho_v311.py --port N [--host 127.0.0.1] [--shards-hint S] [--only REGEX]
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import time

import mqttraw
from harness import Suite, check

suite = Suite(__doc__.splitlines()[0])
scenario = suite.scenario


def qos_set(messages):
    return sorted(m.qos for m in messages)


def subscriber(ctx, tag, filters, version=4, clean_session=True):
    client = ctx.paho(ctx.cid(tag), version, clean_session=clean_session)
    client.connect()
    granted = client.subscribe(filters)
    check(granted == [q for _, q in filters], "SUBACK %s for %s" % (granted, filters))
    return client


@scenario("basic", "[MQTT-3.1.4-4] [MQTT-3.8.4-1] [MQTT-3.3.4-1]")
def basic(ctx, version=4):
    a = ctx.paho(ctx.cid("a"), version)
    a.connect()
    a.disconnect()
    a = ctx.paho(ctx.cid("a"), version)
    a.connect()
    topic = ctx.topic("TopicA")
    check(a.subscribe([(topic, 2)]) == [2], "SUBACK did not grant QoS 2")
    for qos in (0, 1, 2):
        a.publish(topic, b"qos %d" % qos, qos)
    got = a.wait_messages(3)
    check(len(got) == 3, "expected 3 messages, got %s" % got)
    check(qos_set(got) == [0, 1, 2], "QoS of deliveries %s" % qos_set(got))
    check(sorted(m.payload for m in got) == [b"qos 0", b"qos 1", b"qos 2"], "payloads %s" % got)
    check(not any(m.retain for m in got), "live deliveries must have RETAIN 0 [MQTT-3.3.1-9]")
    a.disconnect()


@scenario("basic_mqtt31", "MQTT 3.1 (protocol name MQIsdp, level 3) [MQTT-3.1.2-2]")
def basic_mqtt31(ctx):
    basic(ctx, version=3)


@scenario("retained_messages", "[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.3.1-10] "
          "[MQTT-3.3.1-11]")
def retained_messages(ctx):
    topics = [ctx.topic(t) for t in ("TopicA/B", "Topic/C", "TopicA/C")]
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    for qos, topic in enumerate(topics):
        a.publish(topic, b"qos %d" % qos, qos, retain=True)
    s = subscriber(ctx, "s", [(ctx.topic("+/+"), 2)])
    got = s.wait_messages(3)
    got = s.settle(0.3)
    check(len(got) == 3, "expected 3 retained messages, got %s" % got)
    check(all(m.retain for m in got), "retained deliveries must have RETAIN 1 [MQTT-3.3.1-8]")
    check(qos_set(got) == [0, 1, 2], "retained QoS %s" % qos_set(got))
    # A zero-byte retained publish removes the retained message, at every QoS.
    for qos, topic in enumerate(topics):
        a.publish(topic, b"", qos, retain=True)
    time.sleep(0.3)
    s2 = subscriber(ctx, "s2", [(ctx.topic("+/+"), 2)])
    got = s2.settle(1.0)
    check(got == [], "retained messages were not cleared: %s" % got)
    # The live subscriber saw the three empty publishes, with RETAIN 0 (established subscription).
    live = [m for m in s.settle(0.2)[3:]]
    check(len(live) == 3 and not any(m.retain for m in live),
          "live copies of the clearing publishes %s" % live)


@scenario("retained_replace", "[MQTT-3.3.1-5] [MQTT-3.3.1-8] [MQTT-3.3.1-9]")
def retained_replace(ctx):
    topic = ctx.topic("r")
    live = subscriber(ctx, "live", [(topic, 1)])
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.publish(topic, b"one", 1, retain=True)
    a.publish(topic, b"two", 1, retain=True)
    got = live.wait_messages(2)
    check([m.payload for m in got] == [b"one", b"two"], "live subscriber got %s" % got)
    check(not any(m.retain for m in got), "live copies must have RETAIN 0 [MQTT-3.3.1-9]")
    late = subscriber(ctx, "late", [(topic, 1)])
    got = late.wait_messages(1)
    got = late.settle(0.5)
    check([(m.payload, m.retain) for m in got] == [(b"two", True)],
          "new subscriber must get only the latest retained message: %s" % got)


@scenario("retained_not_replaced_by_plain_publish", "[MQTT-3.3.1-12]")
def retained_not_replaced(ctx):
    topic = ctx.topic("keep")
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.publish(topic, b"keep", 1, retain=True)
    a.publish(topic, b"live", 1, retain=False)
    late = subscriber(ctx, "late", [(topic, 1)])
    got = late.wait_messages(1)
    got = late.settle(0.5)
    check([m.payload for m in got] == [b"keep"], "expected the retained 'keep', got %s" % got)


@scenario("retained_qos_is_minimum", "[MQTT-3.8.4-6]")
def retained_qos(ctx):
    topic = ctx.topic("q")
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.publish(topic, b"q2", 2, retain=True)
    late = subscriber(ctx, "late", [(topic, 1)])
    got = late.wait_messages(1)
    check(len(got) == 1 and got[0].qos == 1, "retained QoS 2 to a QoS 1 subscription: %s" % got)


@scenario("offline_message_queueing", "[MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2]")
def offline_queueing(ctx):
    topics = [ctx.topic(t) for t in ("TopicA/B", "Topic/C", "TopicA/C")]
    a = ctx.paho(ctx.cid("a"), clean_session=False)
    a.connect()
    check(a.subscribe([(ctx.topic("+/+"), 2)]) == [2], "SUBACK")
    a.disconnect()
    b = ctx.paho(ctx.cid("b"))
    b.connect()
    for qos, topic in enumerate(topics):
        b.publish(topic, b"qos %d" % qos, qos)
    b.disconnect()
    a = ctx.paho(ctx.cid("a"), clean_session=False)
    _, present, _ = a.connect()
    check(present, "CONNACK Session Present must be 1 for a stored session [MQTT-3.2.2-2]")
    got = a.wait_messages(3, 3.0)
    got = a.settle(0.3)
    qoss = qos_set(got)
    check(qoss in ([1, 2], [0, 1, 2]), "queued deliveries QoS %s (QoS 1 and 2 must be kept)" %
          qoss)
    ctx.note("QoS 0 %squeued for offline clients" % ("" if len(got) == 3 else "not "))
    a.disconnect()
    # Leave no session behind.
    c = ctx.paho(ctx.cid("a"), clean_session=True)
    c.connect()
    c.disconnect()


@scenario("clean_session_discards_state", "[MQTT-3.1.2-6] [MQTT-3.2.2-1]")
def clean_session(ctx):
    topic = ctx.topic("c")
    a = ctx.paho(ctx.cid("a"), clean_session=False)
    _, present, _ = a.connect()
    check(not present, "first connection: Session Present must be 0 [MQTT-3.2.2-3]")
    a.subscribe([(topic, 1)])
    a.disconnect()
    a = ctx.paho(ctx.cid("a"), clean_session=True)
    _, present, _ = a.connect()
    check(not present, "CleanSession 1: Session Present must be 0 [MQTT-3.2.2-1]")
    a.disconnect()
    b = ctx.paho(ctx.cid("b"))
    b.connect()
    b.publish(topic, b"after clean", 1)
    a = ctx.paho(ctx.cid("a"), clean_session=False)
    _, present, _ = a.connect()
    check(not present, "session was discarded, Session Present must be 0")
    got = a.settle(1.0)
    check(got == [], "a discarded subscription delivered %s [MQTT-3.1.2-6]" % got)
    a.disconnect()
    c = ctx.paho(ctx.cid("a"), clean_session=True)
    c.connect()
    c.disconnect()


def will_connect(ctx, tag, topic, keepalive=60, retain=False, qos=1):
    raw = ctx.raw()
    raw.handshake(ctx.cid(tag), keepalive=keepalive,
                  will={"topic": topic, "payload": b"will of " + tag.encode(), "qos": qos,
                        "retain": retain})
    return raw


@scenario("will_on_network_failure", "[MQTT-3.1.2-8]")
def will_network_failure(ctx):
    topic = ctx.topic("will")
    s = subscriber(ctx, "s", [(topic, 2)])
    w = will_connect(ctx, "w", topic)
    w.abort()
    got = s.wait_messages(1, 5.0)
    check(len(got) == 1 and got[0].payload == b"will of w", "will not delivered: %s" % got)
    check(got[0].qos == 1 and not got[0].retain, "will QoS/retain %s [MQTT-3.1.2-16]" % got)


@scenario("will_on_keepalive_timeout", "[MQTT-3.1.2-24] [MQTT-3.1.2-8]")
def will_keepalive(ctx):
    topic = ctx.topic("keepalive")
    s = subscriber(ctx, "s", [(topic, 2)])
    w = will_connect(ctx, "w", topic, keepalive=2)
    start = time.monotonic()
    closed, _ = w.wait_closed(10.0)
    check(closed, "server did not close a silent keepalive-2 connection within 10 s")
    got = s.wait_messages(1, 5.0)
    check(len(got) == 1 and got[0].payload == b"will of w", "will not delivered: %s" % got)
    ctx.note("closed after %.1f s" % (time.monotonic() - start))


@scenario("no_will_after_disconnect", "[MQTT-3.1.2-10]")
def no_will_after_disconnect(ctx):
    topic = ctx.topic("nowill")
    s = subscriber(ctx, "s", [(topic, 2)])
    w = will_connect(ctx, "w", topic)
    w.send(mqttraw.disconnect())
    w.wait_closed(2.0)
    w.close()
    got = s.settle(1.5)
    check(got == [], "will published after a DISCONNECT: %s" % got)


@scenario("will_retained", "[MQTT-3.1.2-17]")
def will_retained(ctx):
    topic = ctx.topic("willr")
    ctx.remember_retained(topic)
    w = will_connect(ctx, "w", topic, retain=True)
    w.abort()
    time.sleep(0.5)
    late = ctx.paho(ctx.cid("late"))
    late.connect()
    late.subscribe([(topic, 1)])
    got = late.wait_messages(1, 3.0)
    check(len(got) == 1 and got[0].retain and got[0].payload == b"will of w",
          "retained will not stored: %s" % got)


@scenario("zero_length_clientid", "[MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.1.3-8]")
def zero_length_clientid(ctx):
    raw = ctx.raw()
    raw.send(mqttraw.connect("", clean=False))
    closed, seen = raw.wait_closed(5.0)
    check(closed, "server kept the connection after refusing a zero-length id with "
          "CleanSession 0")
    connacks = [p for p in seen if p.type == mqttraw.CONNACK]
    check(len(connacks) == 1 and connacks[0].reason == 0x02,
          "expected CONNACK 0x02 (identifier rejected), got %s [MQTT-3.1.3-8]" % seen)
    a = ctx.paho("")
    a.connect()
    topic = ctx.topic("zero")
    check(a.subscribe([(topic, 1)]) == [1], "SUBACK")
    a.publish(topic, b"x", 1)
    check(len(a.wait_messages(1)) == 1, "zero-length client id cannot publish to itself")
    a.disconnect()


@scenario("overlapping_subscriptions", "[MQTT-3.3.5-1]")
def overlapping(ctx):
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    granted = a.subscribe([(ctx.topic("TopicA/#"), 2), (ctx.topic("TopicA/+"), 1)])
    check(granted == [2, 1], "SUBACK %s" % granted)
    a.publish(ctx.topic("TopicA/C"), b"overlapping topic filters", 2)
    a.wait_messages(2, 3.0)
    got = a.settle(0.5)
    qoss = qos_set(got)
    check(qoss in ([2], [1, 2]), "overlapping deliveries QoS %s: one message at QoS 2 or one "
          "per subscription (QoS 1 and 2)" % qoss)
    ctx.note("one message per %s" % ("client" if len(got) == 1 else "subscription"))


@scenario("keepalive_with_pings", "[MQTT-3.1.2-23] [MQTT-3.12.4-1]")
def keepalive_pings(ctx):
    topic = ctx.topic("ka")
    a = ctx.paho(ctx.cid("a"))
    a.connect(keepalive=2)
    a.subscribe([(topic, 1)])
    time.sleep(5.0)
    check(not a.disconnects, "a client that pings every 2 s was disconnected: %s" % a.disconnects)
    a.publish(topic, b"still here", 1)
    check(len(a.wait_messages(1)) == 1, "no delivery after 5 s of keepalive")
    a.disconnect()


def raw_subscriber(ctx, tag, topic, qos, clean=False):
    raw = ctx.raw()
    raw.handshake(ctx.cid(tag), clean=clean)
    raw.send(mqttraw.subscribe(1, [(topic, qos)]))
    suback = raw.recv_type(mqttraw.SUBACK)
    check(suback is not None and suback.reasons == [qos], "SUBACK %r" % (suback,))
    return raw


def cleanup_session(ctx, tag):
    raw = ctx.raw()
    raw.handshake(ctx.cid(tag), clean=True)
    raw.send(mqttraw.disconnect())
    raw.wait_closed(1.0)


@scenario("redelivery_on_reconnect", "[MQTT-4.4.0-1] [MQTT-3.3.1-1] [MQTT-2.3.1-3]")
def redelivery(ctx):
    topic = ctx.topic("TopicA/redeliver")
    raw = raw_subscriber(ctx, "s", ctx.topic("TopicA/#"), 2)
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    p.publish(topic, b"q1", 1)
    p.publish(topic, b"q2", 2)
    first = [raw.recv_type(mqttraw.PUBLISH, 5.0) for _ in range(2)]
    check(all(first), "subscriber did not receive both publishes: %s" % first)
    check(not any(pk.dup for pk in first), "first delivery must have DUP 0: %s" % first)
    raw.abort()  # neither PUBACK nor PUBREC was sent
    again = ctx.raw()
    connack = again.handshake(ctx.cid("s"), clean=False)
    check(connack.session_present, "Session Present 0 on reconnect")
    redelivered = [again.recv_type(mqttraw.PUBLISH, 5.0) for _ in range(2)]
    check(all(redelivered), "unacknowledged publishes not redelivered: %s" % redelivered)
    by_payload = {pk.payload: pk for pk in redelivered}
    check(set(by_payload) == {b"q1", b"q2"}, "redelivered %s" % redelivered)
    for pk in first:
        re_pk = by_payload[pk.payload]
        check(re_pk.dup, "redelivered PUBLISH must have DUP 1 [MQTT-3.3.1-1]: %r" % re_pk)
        check(re_pk.packet_id == pk.packet_id and re_pk.qos == pk.qos,
              "redelivery must reuse the packet id [MQTT-4.4.0-1]: %r vs %r" % (re_pk, pk))
    q1 = by_payload[b"q1"]
    q2 = by_payload[b"q2"]
    again.send(mqttraw.ack(mqttraw.PUBACK, q1.packet_id))
    again.send(mqttraw.ack(mqttraw.PUBREC, q2.packet_id))
    rel = again.recv_type(mqttraw.PUBREL, 5.0)
    check(rel is not None and rel.packet_id == q2.packet_id, "PUBREL %r" % (rel,))
    check(rel.flags == 0x02, "PUBREL fixed header flags must be 0010 [MQTT-3.6.1-1]")
    again.send(mqttraw.ack(mqttraw.PUBCOMP, q2.packet_id))
    extra = again.collect(0.5)
    check(not [pk for pk in extra if pk.type == mqttraw.PUBLISH], "extra publishes %s" % extra)
    again.close()
    cleanup_session(ctx, "s")


@scenario("redelivery_of_pubrel", "[MQTT-4.4.0-1] PUBREL resent on reconnect")
def redelivery_pubrel(ctx):
    topic = ctx.topic("rel")
    raw = raw_subscriber(ctx, "s", topic, 2)
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    p.publish(topic, b"q2", 2)
    pub = raw.recv_type(mqttraw.PUBLISH, 5.0)
    check(pub is not None and pub.qos == 2, "QoS 2 delivery %r" % (pub,))
    raw.send(mqttraw.ack(mqttraw.PUBREC, pub.packet_id))
    rel = raw.recv_type(mqttraw.PUBREL, 5.0)
    check(rel is not None, "no PUBREL after PUBREC")
    raw.abort()  # PUBCOMP never sent
    again = ctx.raw()
    again.handshake(ctx.cid("s"), clean=False)
    pkts = again.collect_until(mqttraw.has(mqttraw.PUBREL, 1), 5.0, 0.5)
    rels = [pk for pk in pkts if pk.type == mqttraw.PUBREL]
    pubs = [pk for pk in pkts if pk.type == mqttraw.PUBLISH]
    check(len(rels) == 1 and rels[0].packet_id == pub.packet_id,
          "PUBREL not resent on reconnect: %s" % pkts)
    check(not pubs, "the PUBLISH was resent after PUBREC was received: %s" % pubs)
    again.send(mqttraw.ack(mqttraw.PUBCOMP, pub.packet_id))
    again.close()
    cleanup_session(ctx, "s")


@scenario("subscribe_failure", "[MQTT-4.7.1-2] [MQTT-3.9.3-2] invalid filter: SUBACK 0x80 or "
          "close")
def subscribe_failure(ctx):
    raw = ctx.raw()
    raw.handshake(ctx.cid("a"))
    raw.send(mqttraw.subscribe(7, [(ctx.topic("a/#/b"), 1)]))
    try:
        pkt = raw.recv(5.0)
    except mqttraw.Closed:
        ctx.note("connection closed")
        return
    check(pkt is not None, "no SUBACK and no close for an invalid filter")
    check(pkt.type == mqttraw.SUBACK and pkt.packet_id == 7 and pkt.reasons == [0x80],
          "expected SUBACK 0x80, got %r" % pkt)
    ctx.note("SUBACK 0x80")


@scenario("dollar_topics", "[MQTT-4.7.2-1]")
def dollar_topics(ctx):
    wild = subscriber(ctx, "w", [("#", 0), ("+/%s/#" % suite.run_id, 0)])
    time.sleep(0.5)
    wild.clear()
    dollar_topic = "$interop/%s/x" % suite.run_id
    exact = ctx.paho(ctx.cid("e"))
    exact.connect()
    exact.subscribe([(dollar_topic, 1)])
    pub = ctx.paho(ctx.cid("p"))
    pub.connect()
    pub.publish(dollar_topic, b"dollar", 1)
    got = exact.wait_messages(1, 2.0)
    seen = [m for m in wild.settle(0.5) if m.topic.startswith("$")]
    check(seen == [], "filters starting with a wildcard matched a $ topic: %s" % seen)
    if got:
        ctx.note("$ topic delivered to an exact subscription")
    else:
        ctx.note("server does not deliver client publishes to $ topics")


@scenario("unsubscribe", "[MQTT-3.10.4-1] [MQTT-3.10.4-4] [MQTT-3.10.4-5] [MQTT-3.10.4-6]")
def unsubscribe(ctx):
    topics = [ctx.topic(t) for t in ("TopicA", "TopicA/B", "Topic/C")]
    b = ctx.paho(ctx.cid("b"))
    b.connect()
    for topic in topics:
        b.subscribe([(topic, 2)])
    b.unsubscribe([topics[0]])
    b.unsubscribe([ctx.topic("never/subscribed"), ctx.topic("nor/this")])
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    for topic in topics:
        a.publish(topic, b"to " + topic.encode(), 1)
    b.wait_messages(2)
    got = b.settle(0.5)
    check(sorted(m.topic for m in got) == sorted(topics[1:]), "after unsubscribe got %s" % got)
    raw = ctx.raw()
    raw.handshake(ctx.cid("r"))
    raw.send(mqttraw.unsubscribe(4242, [ctx.topic("none")]))
    unsuback = raw.recv_type(mqttraw.UNSUBACK)
    check(unsuback is not None and unsuback.packet_id == 4242,
          "UNSUBACK must carry the packet id [MQTT-3.10.4-4]: %r" % (unsuback,))


@scenario("qos_downgrade", "[MQTT-3.8.4-6]")
def qos_downgrade(ctx):
    pub = ctx.paho(ctx.cid("p"))
    pub.connect()
    for sub_qos in (0, 1, 2):
        topic = ctx.topic("q%d" % sub_qos)
        s = subscriber(ctx, "s%d" % sub_qos, [(topic, sub_qos)])
        for pub_qos in (0, 1, 2):
            pub.publish(topic, b"%d" % pub_qos, pub_qos)
        got = s.wait_messages(3)
        got = s.settle(0.2)
        want = sorted(min(sub_qos, q) for q in (0, 1, 2))
        check(qos_set(got) == want, "subscription QoS %d got QoS %s, want %s" % (
            sub_qos, qos_set(got), want))


@scenario("suback_order", "[MQTT-3.8.4-4] [MQTT-3.8.4-5] [MQTT-3.9.3-1]")
def suback_order(ctx):
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    granted = a.subscribe([(ctx.topic("x"), 2), (ctx.topic("y"), 0), (ctx.topic("z"), 1)])
    check(granted == [2, 0, 1], "SUBACK codes %s not in request order" % granted)


@scenario("resubscribe_replaces", "[MQTT-3.8.4-3]")
def resubscribe(ctx):
    topic = ctx.topic("re")
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.subscribe([(topic, 2)])
    a.subscribe([(topic, 0)])
    a.publish(topic, b"once", 2)
    a.wait_messages(1)
    got = a.settle(0.5)
    check(len(got) == 1 and got[0].qos == 0, "a replaced subscription delivered %s" % got)


@scenario("message_ordering", "[MQTT-4.6.0-5] [MQTT-4.6.0-6]")
def ordering(ctx):
    topic = ctx.topic("order")
    for qos in (0, 1, 2):
        s = subscriber(ctx, "s%d" % qos, [(topic + str(qos), 2)])
        p = ctx.paho(ctx.cid("p%d" % qos))
        p.connect()
        count = 40
        for i in range(count):
            p.publish(topic + str(qos), b"%03d" % i, qos, wait=False)
        got = s.wait_messages(count, 10.0)
        payloads = [m.payload for m in got]
        check(payloads == [b"%03d" % i for i in range(count)],
              "QoS %d order broken or messages lost: %d received" % (qos, len(payloads)))


@scenario("session_takeover", "[MQTT-3.1.4-2]")
def takeover(ctx):
    first = ctx.raw()
    first.handshake(ctx.cid("dup"))
    topic = ctx.topic("take")
    second = ctx.paho(ctx.cid("dup"))
    second.connect()
    closed, _ = first.wait_closed(5.0)
    check(closed, "the first connection with the same client id was not closed")
    second.subscribe([(topic, 1)])
    second.publish(topic, b"new owner", 1)
    check(len(second.wait_messages(1)) == 1, "the new connection does not work")


@scenario("fan_out_across_shards", "every subscriber gets one copy, wherever it is connected")
def fan_out(ctx):
    topic = ctx.topic("fan")
    count = max(2, 2 * ctx.shards)
    subs = [subscriber(ctx, "s%d" % i, [(topic, 1)]) for i in range(count)]
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    for i in range(5):
        p.publish(topic, b"m%d" % i, 1)
    for i, s in enumerate(subs):
        got = s.wait_messages(5, 5.0)
        got = s.settle(0.1) if i == 0 else got
        check([m.payload for m in got] == [b"m%d" % j for j in range(5)],
              "subscriber %d got %s" % (i, got))


@scenario("retained_across_shards", "[MQTT-3.3.1-6] on every shard")
def retained_shards(ctx):
    topic = ctx.topic("rs")
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    p.publish(topic, b"kept", 1, retain=True)
    for i in range(max(2, ctx.shards)):
        s = ctx.paho(ctx.cid("s%d" % i))
        s.connect()
        s.subscribe([(ctx.topic("#"), 1)])
        got = s.wait_messages(1, 5.0)
        check(len(got) == 1 and got[0].payload == b"kept" and got[0].retain,
              "subscriber %d got %s" % (i, got))


@scenario("session_resumed_on_any_shard", "[MQTT-3.1.2-4] [MQTT-3.1.2-5] across shards")
def session_any_shard(ctx):
    topic = ctx.topic("resume")
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    for offset in range(max(2, ctx.shards)):
        tag = "s%d" % offset
        a = ctx.raw()
        a.handshake(ctx.cid(tag), clean=False)
        a.send(mqttraw.subscribe(1, [(topic, 1)]))
        check(a.recv_type(mqttraw.SUBACK) is not None, "SUBACK")
        a.send(mqttraw.disconnect())
        a.wait_closed(2.0)
        p.publish(topic, b"for " + tag.encode(), 1)
        ctx.fillers(offset)
        b = ctx.raw()
        connack = b.handshake(ctx.cid(tag), clean=False)
        check(connack.session_present, "offset %d: Session Present 0" % offset)
        pub = b.recv_type(mqttraw.PUBLISH, 5.0)
        check(pub is not None and pub.payload == b"for " + tag.encode(),
              "offset %d: queued message not delivered: %r" % (offset, pub))
        b.send(mqttraw.ack(mqttraw.PUBACK, pub.packet_id))
        b.close()
        cleanup_session(ctx, tag)
        # Messages published after the reconnect attempt land in the discarded session only.


@scenario("large_payload", "a 60 000-byte payload crosses intact")
def large_payload(ctx):
    topic = ctx.topic("big")
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.subscribe([(topic, 1)])
    payload = bytes((i * 7) % 251 for i in range(60_000))
    a.publish(topic, payload, 1)
    got = a.wait_messages(1)
    check(len(got) == 1 and got[0].payload == payload, "large payload altered or lost")


@scenario("wildcard_matching", "[MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-4]")
def wildcards(ctx):
    cases = [
        ("sport/#", "sport", True),
        ("sport/#", "sport/tennis/player1", True),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("sport/+/player1", "sport/tennis/player1", True),
        ("sport/+/player1", "sport/tennis/player2", False),
        ("+/+", "sport/x", True),
        ("+", "sport", True),
        ("Sport", "sport", False),
        ("a//b", "a//b", True),
        ("a/+/b", "a//b", True),
    ]
    pub = ctx.paho(ctx.cid("p"))
    pub.connect()
    for i, (flt, topic, should) in enumerate(cases):
        s = ctx.paho(ctx.cid("s%d" % i))
        s.connect()
        s.subscribe([(ctx.topic(flt), 0)])
        pub.publish(ctx.topic(topic), b"x", 1)
        got = s.wait_messages(1, 1.0 if should else 0.5)
        check(bool(got) == should, "filter %r topic %r: %s" % (
            flt, topic, "not matched" if should else "matched"))
        s.disconnect()


@scenario("empty_payload", "a zero-length non-retained payload is delivered")
def empty_payload(ctx):
    topic = ctx.topic("empty")
    a = ctx.paho(ctx.cid("a"))
    a.connect()
    a.subscribe([(topic, 1)])
    a.publish(topic, b"", 1)
    got = a.wait_messages(1)
    check(len(got) == 1 and got[0].payload == b"", "empty payload: %s" % got)


@scenario("wildcards_with_leading_slash", "[MQTT-4.7.1-2] [MQTT-4.7.1-3] client_test.py topics "
          "'/TopicA', '/#', '/+', '+/+'")
def leading_slash(ctx):
    topic = "/i%s" % suite.run_id
    subs = {}
    for flt in ("/+", "/#", "+/+", "#"):
        s = ctx.paho(ctx.cid("s" + flt.replace("/", "S").replace("+", "P").replace("#", "H")))
        s.connect()
        s.subscribe([(flt, 1)])
        subs[flt] = s
    miss = ctx.paho(ctx.cid("miss"))
    miss.connect()
    miss.subscribe([("+", 1)])
    pub = ctx.paho(ctx.cid("p"))
    pub.connect()
    pub.publish(topic, b"slash", 1)
    for flt, s in subs.items():
        got = [m for m in s.wait_messages(1) if m.topic == topic]
        check(len(got) == 1, "filter %r did not match %r" % (flt, topic))
    check(not [m for m in miss.settle(0.3) if m.topic == topic], "'+' matched %r" % topic)


@scenario("connect_with_credentials", "[MQTT-3.1.2-19] [MQTT-3.1.2-21]")
def credentials(ctx):
    a = ctx.paho(ctx.cid("a"))
    a.client.username_pw_set("user", "secret")
    a.connect()
    topic = ctx.topic("cred")
    a.subscribe([(topic, 1)])
    a.publish(topic, b"x", 1)
    check(len(a.wait_messages(1)) == 1, "no delivery")


@scenario("fan_in_fan_out", "[MQTT-4.6.0-5] [MQTT-4.6.0-6]: 4 publishers x 4 subscribers, every "
          "message once to every subscriber, each publisher's order kept")
def fan_in_fan_out(ctx):
    topic = ctx.topic("fan/in")
    count, publishers = 50, 4
    subs = [subscriber(ctx, "s%d" % i, [(ctx.topic("fan/#"), 1)]) for i in range(4)]
    pubs = []
    for i in range(publishers):
        p = ctx.paho(ctx.cid("p%d" % i))
        p.connect()
        pubs.append(p)
    for n in range(count):
        for i, p in enumerate(pubs):
            p.publish(topic, b"%d:%03d" % (i, n), 1, wait=False)
    for j, s in enumerate(subs):
        got = s.wait_messages(count * publishers, 15.0)
        check(len(got) == count * publishers, "subscriber %d got %d of %d" % (
            j, len(got), count * publishers))
        for i in range(publishers):
            mine = [m.payload for m in got if m.payload.startswith(b"%d:" % i)]
            check(mine == [b"%d:%03d" % (i, n) for n in range(count)],
                  "subscriber %d: publisher %d's messages out of order or duplicated" % (j, i))


@scenario("retained_many_topics", "[MQTT-3.3.1-6]: 100 retained topics, one wildcard subscribe")
def retained_many(ctx):
    p = ctx.paho(ctx.cid("p"))
    p.connect()
    topics = [ctx.topic("many/%02d/x" % i) for i in range(100)]
    for i, topic in enumerate(topics):
        p.publish(topic, b"%d" % i, 1, retain=True, wait=(i == len(topics) - 1))
    time.sleep(0.2)
    s = subscriber(ctx, "s", [(ctx.topic("many/+/x"), 1)])
    got = s.wait_messages(100, 10.0)
    got = s.settle(0.3)
    check(sorted(m.topic for m in got) == sorted(topics) and all(m.retain for m in got),
          "got %d retained messages of 100" % len(got))


if __name__ == "__main__":
    suite.main()
