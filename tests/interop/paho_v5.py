#!/usr/bin/env python3
"""MQTT 5.0 interoperability scenarios, driven by paho-mqtt 2.x and a raw v5 client.

The behaviours are those of the Eclipse Paho MQTT 5 interoperability suite (client_test5.py) and
of the normative statements of MQTT 5.0, written independently; see SCENARIOS.md. paho drives
the application-level flows; the raw client (mqttraw.py) is used where a scenario must control
acknowledgements exactly or read flags and properties bit by bit.

Scenarios named in PENDING (pending.py) exercise features the broker under test does not have
yet: this script leaves them to paho_v5_pending.py, unless run with --all.

Usage: paho_v5.py --port N [--host 127.0.0.1] [--shards-hint S] [--only REGEX] [--all]
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import time

import mqttraw
from harness import Suite, check, wait_until
from pending import PENDING

suite = Suite(__doc__.splitlines()[0])
scenario = suite.scenario
V5 = 5


def paho_api():
    import pahoclient

    return pahoclient


def qos_set(messages):
    return sorted(m.qos for m in messages)


def connect_props(**values):
    p = paho_api()
    return p.props(p.PacketTypes.CONNECT, **values)


def publish_props(**values):
    p = paho_api()
    return p.props(p.PacketTypes.PUBLISH, **values)


def opts(qos, **kw):
    return paho_api().SubscribeOptions(qos=qos, **kw)


def subscriber(ctx, tag, filters, properties=None, clean_start=True, conn_props=None):
    client = ctx.paho(ctx.cid(tag), V5)
    client.connect(clean_start=clean_start, properties=conn_props)
    granted = client.subscribe(filters, properties=properties)
    want = [o if isinstance(o, int) else o.QoS for _, o in filters]
    check(granted == want, "SUBACK %s, expected %s" % (granted, want))
    return client


def raw_v5(ctx, tag, props=None, **kwargs):
    return ctx.raw_connected(ctx.cid(tag), version=V5, props=props, **kwargs)


def raw_subscribe(client, packet_id, filters, props=None):
    client.send(mqttraw.subscribe(packet_id, filters, version=V5, props=props))
    suback = client.recv_type(mqttraw.SUBACK, 5.0)
    check(suback is not None and suback.packet_id == packet_id, "SUBACK %r" % (suback,))
    return suback


def end_session(ctx, tag):
    """Removes any session left by client `tag` (Clean Start 1, Session Expiry 0)."""
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid(tag), clean=True)
    raw.send(mqttraw.disconnect(version=V5))
    raw.wait_closed(1.0)


USER_PROPS = [("a", "2"), ("c", "3"), ("a", "1")]


@scenario("basic", "[MQTT-3.1.4-5] [MQTT-3.2.2-2] [MQTT-3.8.4-1] [MQTT-3.3.4-1]")
def basic(ctx):
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    a.disconnect()
    a = ctx.paho(ctx.cid("a"), V5)
    reason, present, _ = a.connect(clean_start=True)
    check(reason == 0 and not present, "CONNACK reason %d present %s" % (reason, present))
    topic = ctx.topic("TopicA")
    a.subscribe([(topic, 2)])
    for qos in (0, 1, 2):
        a.publish(topic, b"qos %d" % qos, qos)
    got = a.wait_messages(3)
    check(qos_set(got) == [0, 1, 2], "deliveries %s" % got)
    a.disconnect()


@scenario("connack_properties", "[MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-3.2.2-9] section 3.2.2.3")
def connack_properties(ctx):
    raw = ctx.raw(V5)
    connack = raw.handshake(ctx.cid("a"), clean=True, keepalive=120)
    check(connack.reason == 0 and not connack.session_present, "CONNACK %r" % connack)
    check(connack.body[0] & 0xFE == 0, "CONNACK reserved flag bits set [MQTT-3.2.2-1]")
    p = connack.props
    for name in ("maximum_qos", "retain_available", "wildcard_subscription_available",
                 "subscription_identifier_available", "shared_subscription_available",
                 "request_problem_information", "payload_format_indicator"):
        check(p.get(name, 0) in (0, 1), "%s = %s is not 0 or 1" % (name, p.get(name)))
    check(p.get("receive_maximum", 1) > 0, "Receive Maximum 0 is a protocol error")
    check(p.get("maximum_packet_size", 1) > 0, "Maximum Packet Size 0 is a protocol error")
    check("assigned_client_identifier" not in p,
          "Assigned Client Identifier sent to a client that chose its id")
    for name in ("topic_alias", "subscription_identifier", "will_delay_interval",
                 "message_expiry_interval", "request_response_information"):
        check(name not in p, "property %s is not allowed in CONNACK" % name)
    features = []
    for name, label in (("receive_maximum", "receive max"), ("maximum_qos", "max QoS"),
                        ("maximum_packet_size", "max packet"), ("topic_alias_maximum",
                        "topic alias max"), ("server_keep_alive", "server keep alive"),
                        ("retain_available", "retain"), ("shared_subscription_available",
                        "shared"), ("subscription_identifier_available", "sub ids"),
                        ("wildcard_subscription_available", "wildcards")):
        if name in p:
            features.append("%s=%s" % (label, p[name]))
    ctx.note("CONNACK: " + (", ".join(features) or "no properties"))


@scenario("retained_message_with_user_properties", "[MQTT-3.3.1-5] [MQTT-3.3.1-6] "
          "[MQTT-3.3.2-17] [MQTT-3.3.2-18]")
def retained_user_props(ctx):
    topics = [ctx.topic(t) for t in ("TopicA/B", "Topic/C", "TopicA/C")]
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    for qos, topic in enumerate(topics):
        a.publish(topic, b"qos %d" % qos, qos, retain=True,
                  properties=publish_props(UserProperty=USER_PROPS))
    s = subscriber(ctx, "s", [(ctx.topic("+/+"), 2)])
    s.wait_messages(3)
    got = s.settle(0.3)
    check(len(got) == 3 and all(m.retain for m in got), "retained deliveries %s" % got)
    check(qos_set(got) == [0, 1, 2], "retained QoS %s" % qos_set(got))
    for m in got:
        up = paho_api().prop(m.properties, "UserProperty")
        check(up == USER_PROPS, "user properties %s, sent %s (order kept) [MQTT-3.3.2-18]" % (
            up, USER_PROPS))
    for topic in topics:
        a.publish(topic, b"", 1, retain=True)
    s2 = subscriber(ctx, "s2", [(ctx.topic("+/+"), 2)])
    check(s2.settle(1.0) == [], "retained messages not cleared [MQTT-3.3.1-6]")


@scenario("will_message_with_user_properties", "[MQTT-3.1.2-8] [MQTT-3.1.3-10] "
          "[MQTT-3.1.2-22]")
def will_user_props(ctx):
    topic = ctx.topic("will")
    s = subscriber(ctx, "s", [(topic, 2)])
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid("w"), keepalive=2, will={
        "topic": topic, "payload": b"will message", "qos": 1,
        "props": [("will_delay_interval", 0), ("user_property", ("a", "2")),
                  ("user_property", ("c", "3")), ("content_type", "text/plain")]})
    # The client goes silent: the keepalive (1.5 x 2 s) must end the connection and fire the will.
    got = s.wait_messages(1, 10.0)
    check(len(got) == 1 and got[0].payload == b"will message", "will not delivered: %s" % got)
    up = paho_api().prop(got[0].properties, "UserProperty")
    check(up == [("a", "2"), ("c", "3")], "will user properties %s [MQTT-3.1.3-10]" % up)
    check(paho_api().prop(got[0].properties, "ContentType") == "text/plain",
          "will content type lost")
    closed, _ = raw.wait_closed(2.0)
    check(closed, "silent client still connected after its will was published")


@scenario("zero_length_clientid", "[MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]")
def zero_length_clientid(ctx):
    ids = []
    for clean in (False, True):
        raw = ctx.raw(V5)
        connack = raw.handshake("", clean=clean)
        check(connack.reason == 0, "zero-length client id refused (clean start %s): 0x%02x" % (
            clean, connack.reason))
        assigned = connack.props.get("assigned_client_identifier")
        check(assigned, "no Assigned Client Identifier in CONNACK [MQTT-3.1.3-7]")
        ids.append(assigned)
        raw.send(mqttraw.disconnect(version=V5))
    check(ids[0] != ids[1], "two clients were assigned the same id %s" % ids)
    a = ctx.paho("", V5)
    a.connect()
    topic = ctx.topic("zero")
    a.subscribe([(topic, 1)])
    a.publish(topic, b"x", 1)
    check(len(a.wait_messages(1)) == 1, "assigned-id client cannot publish to itself")


@scenario("offline_message_queueing", "[MQTT-3.1.2-5] [MQTT-3.1.2-23] [MQTT-3.2.2-3]")
def offline_queueing(ctx):
    topics = [ctx.topic(t) for t in ("TopicA/B", "Topic/C", "TopicA/C")]
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect(clean_start=True, properties=connect_props(SessionExpiryInterval=99999))
    a.subscribe([(ctx.topic("+/+"), 2)])
    a.disconnect()
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect()
    for qos, topic in enumerate(topics):
        b.publish(topic, b"qos %d" % qos, qos)
    b.disconnect()
    a = ctx.paho(ctx.cid("a"), V5)
    _, present, _ = a.connect(clean_start=False,
                              properties=connect_props(SessionExpiryInterval=99999))
    check(present, "Session Present must be 1 [MQTT-3.2.2-3]")
    a.wait_messages(3, 3.0)
    got = a.settle(0.3)
    check(qos_set(got) in ([1, 2], [0, 1, 2]), "queued deliveries %s" % got)
    ctx.note("QoS 0 %squeued" % ("" if len(got) == 3 else "not "))
    a.disconnect()
    end_session(ctx, "a")


@scenario("overlapping_subscriptions", "[MQTT-3.3.4-2]")
def overlapping(ctx):
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    a.subscribe([(ctx.topic("TopicA/#"), 2), (ctx.topic("TopicA/+"), 1)])
    a.publish(ctx.topic("TopicA/C"), b"overlapping", 2)
    a.wait_messages(2, 3.0)
    got = a.settle(0.5)
    check(qos_set(got) in ([2], [1, 2]), "overlapping deliveries QoS %s" % qos_set(got))
    ctx.note("one message per %s" % ("client" if len(got) == 1 else "subscription"))


@scenario("keepalive", "[MQTT-3.1.2-22] [MQTT-3.2.2-22]")
def keepalive(ctx):
    topic = ctx.topic("ka")
    s = subscriber(ctx, "s", [(topic, 2)])
    raw = ctx.raw(V5)
    connack = raw.handshake(ctx.cid("k"), keepalive=2,
                            will={"topic": topic, "payload": b"keepalive expiry"})
    server_ka = connack.props.get("server_keep_alive")
    if server_ka is not None:
        ctx.note("Server Keep Alive %d" % server_ka)
    limit = 1.5 * (server_ka if server_ka is not None else 2) + 10.0
    closed, seen = raw.wait_closed(limit)
    check(closed, "silent keepalive connection not closed within %.0f s" % limit)
    bad = [pk for pk in seen if not (pk.type == mqttraw.DISCONNECT and pk.reason == 0x8D)]
    check(not bad, "before closing, the server sent %s (only DISCONNECT 0x8D allowed)" % bad)
    got = s.wait_messages(1, 3.0)
    check(len(got) == 1, "keepalive expiry did not publish the will")


@scenario("redelivery_on_reconnect", "[MQTT-4.4.0-1] [MQTT-3.3.1-1]")
def redelivery(ctx):
    topic = ctx.topic("TopicA/redeliver")
    raw = raw_v5(ctx, "s", props={"session_expiry_interval": 60}, clean=True)
    raw_subscribe(raw, 1, [(ctx.topic("TopicA/#"), 2)])
    p = ctx.paho(ctx.cid("p"), V5)
    p.connect()
    p.publish(topic, b"q1", 1)
    p.publish(topic, b"q2", 2)
    first = [raw.recv_type(mqttraw.PUBLISH, 5.0) for _ in range(2)]
    check(all(first) and not any(pk.dup for pk in first), "first deliveries %s" % first)
    raw.abort()
    again = ctx.raw(V5)
    connack = again.handshake(ctx.cid("s"), clean=False,
                              props={"session_expiry_interval": 60})
    check(connack.session_present, "Session Present 0 after reconnect")
    redelivered = [again.recv_type(mqttraw.PUBLISH, 5.0) for _ in range(2)]
    check(all(redelivered), "not redelivered: %s" % redelivered)
    for old, new in zip(sorted(first, key=lambda pk: pk.payload),
                        sorted(redelivered, key=lambda pk: pk.payload)):
        check(new.dup and new.packet_id == old.packet_id and new.payload == old.payload,
              "redelivery %r of %r: DUP 1 and the same packet id expected" % (new, old))
        again.send(mqttraw.ack(mqttraw.PUBACK if new.qos == 1 else mqttraw.PUBREC,
                               new.packet_id, version=V5))
    rel = again.recv_type(mqttraw.PUBREL, 5.0)
    check(rel is not None, "no PUBREL")
    again.send(mqttraw.ack(mqttraw.PUBCOMP, rel.packet_id, version=V5))
    end_session(ctx, "s")


@scenario("subscribe_failure", "[MQTT-3.9.3-2] [MQTT-4.13.1-1] invalid filter: SUBACK 0x8F "
          "(or 0x80..) or DISCONNECT")
def subscribe_failure(ctx):
    raw = raw_v5(ctx, "a")
    raw.send(mqttraw.subscribe(9, [(ctx.topic("a/#/b"), 1)], version=V5))
    try:
        pkt = raw.recv(5.0)
    except mqttraw.Closed:
        ctx.note("closed without DISCONNECT")
        return
    check(pkt is not None, "no answer to an invalid topic filter")
    if pkt.type == mqttraw.DISCONNECT:
        check(pkt.reason >= 0x80, "DISCONNECT reason 0x%02x" % pkt.reason)
        ctx.note("DISCONNECT 0x%02x" % pkt.reason)
        return
    check(pkt.type == mqttraw.SUBACK and pkt.packet_id == 9 and len(pkt.reasons) == 1 and
          pkt.reasons[0] >= 0x80, "expected a failing SUBACK, got %r" % pkt)
    ctx.note("SUBACK 0x%02x" % pkt.reasons[0])


@scenario("dollar_topics", "[MQTT-4.7.2-1]")
def dollar_topics(ctx):
    wild = subscriber(ctx, "w", [("#", 0), ("+/%s/#" % suite.run_id, 0)])
    time.sleep(0.5)
    wild.clear()
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    pub.publish("$interop/%s/x" % suite.run_id, b"dollar", 1)
    seen = [m for m in wild.settle(1.0) if m.topic.startswith("$")]
    check(seen == [], "wildcard-first filters matched $ topics: %s" % seen)


@scenario("unsubscribe", "[MQTT-3.10.4-1] [MQTT-3.10.4-5] [MQTT-3.11.3-1]")
def unsubscribe(ctx):
    topics = [ctx.topic(t) for t in ("TopicA", "TopicA/B", "Topic/C")]
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect()
    for topic in topics:
        b.subscribe([(topic, 2)])
    codes = b.unsubscribe([topics[0], ctx.topic("never")])
    check(len(codes) == 2 and codes[0] == 0x00 and codes[1] in (0x00, 0x11),
          "UNSUBACK reason codes %s (want 0x00 and 0x00/0x11)" % codes)
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    for topic in topics:
        a.publish(topic, b"x", 1)
    b.wait_messages(2)
    got = b.settle(0.5)
    check(sorted(m.topic for m in got) == sorted(topics[1:]), "after unsubscribe %s" % got)


def raw_session(ctx, tag, expiry, clean):
    raw = ctx.raw(V5)
    props = {} if expiry is None else {"session_expiry_interval": expiry}
    connack = raw.handshake(ctx.cid(tag), clean=clean, props=props)
    check(connack.reason == 0, "CONNACK 0x%02x" % connack.reason)
    return raw, connack.session_present


def raw_bye(raw, props=None):
    raw.send(mqttraw.disconnect(0, version=V5, props=props))
    raw.wait_closed(2.0)


@scenario("session_expiry", "[MQTT-3.1.2-23] [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-3]")
def session_expiry(ctx):
    topic = ctx.topic("se")
    # Expiry 0 (or absent): the session ends with the connection.
    for expiry in (0, None):
        raw, _ = raw_session(ctx, "a", expiry, True)
        raw_subscribe(raw, 1, [(topic, 2)])
        raw_bye(raw)
        raw, present = raw_session(ctx, "a", expiry, False)
        check(not present, "session with expiry %s survived its connection" % expiry)
        raw_bye(raw)
    # Expiry 4 s: present after 0.5 s, gone after 6 s.
    raw, _ = raw_session(ctx, "a", 4, True)
    raw_subscribe(raw, 1, [(topic, 2)])
    raw_bye(raw)
    time.sleep(0.5)
    raw, present = raw_session(ctx, "a", 4, False)
    check(present, "session with expiry 4 s gone after 0.5 s")
    raw_bye(raw)
    time.sleep(6.0)
    raw, present = raw_session(ctx, "a", 4, False)
    check(not present, "session with expiry 4 s still present after 6 s")
    raw_bye(raw, props={"session_expiry_interval": 0})


@scenario("session_expiry_set_on_disconnect", "section 3.14.2.2.2")
def session_expiry_disconnect(ctx):
    topic = ctx.topic("sed")
    raw, _ = raw_session(ctx, "a", 1, True)
    raw_subscribe(raw, 1, [(topic, 2)])
    raw_bye(raw, props={"session_expiry_interval": 30})
    time.sleep(2.0)
    raw, present = raw_session(ctx, "a", 1, False)
    check(present, "DISCONNECT Session Expiry 30 did not extend the session")
    raw_bye(raw, props={"session_expiry_interval": 0})
    raw, present = raw_session(ctx, "a", 1, False)
    check(not present, "DISCONNECT Session Expiry 0 did not end the session")
    raw_bye(raw, props={"session_expiry_interval": 0})


@scenario("user_properties", "[MQTT-3.3.2-17] [MQTT-3.3.2-18]")
def user_properties(ctx):
    topic = ctx.topic("up")
    a = subscriber(ctx, "a", [(topic, 2)])
    for qos in (0, 1, 2):
        a.publish(topic, b"", qos, properties=publish_props(UserProperty=USER_PROPS))
    got = a.wait_messages(3)
    check(qos_set(got) == [0, 1, 2], "deliveries %s" % got)
    for m in got:
        up = paho_api().prop(m.properties, "UserProperty")
        check(up == USER_PROPS, "user properties %s, sent %s" % (up, USER_PROPS))


@scenario("payload_format_and_content_type", "[MQTT-3.3.2-4] [MQTT-3.3.2-20]")
def payload_format(ctx):
    topic = ctx.topic("pf")
    a = subscriber(ctx, "a", [(topic, 2)])
    for qos in (0, 1, 2):
        a.publish(topic, "héllo".encode(), qos,
                  properties=publish_props(PayloadFormatIndicator=1, ContentType="My name"))
    got = a.wait_messages(3)
    check(len(got) == 3, "deliveries %s" % got)
    for m in got:
        check(paho_api().prop(m.properties, "PayloadFormatIndicator") == 1,
              "Payload Format Indicator not forwarded")
        check(paho_api().prop(m.properties, "ContentType") == "My name",
              "Content Type not forwarded")


@scenario("message_expiry", "[MQTT-3.3.2-5] [MQTT-3.3.2-6]")
def message_expiry(ctx):
    topic = ctx.topic("me")
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect(clean_start=True, properties=connect_props(SessionExpiryInterval=60))
    b.subscribe([(topic, 2)])
    b.disconnect()
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    for qos in (1, 2):
        a.publish(topic, b"expire %d" % qos, qos, properties=publish_props(
            MessageExpiryInterval=1))
        a.publish(topic, b"keep %d" % qos, qos, properties=publish_props(
            MessageExpiryInterval=20))
    time.sleep(2.5)
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect(clean_start=False, properties=connect_props(SessionExpiryInterval=60))
    b.wait_messages(2, 3.0)
    got = b.settle(0.5)
    check(sorted(m.payload for m in got) == [b"keep 1", b"keep 2"],
          "expired messages delivered or kept ones lost: %s" % got)
    for m in got:
        left = paho_api().prop(m.properties, "MessageExpiryInterval")
        check(left is not None and left < 20,
              "Message Expiry Interval must be reduced by the time waited: %s" % left)
    b.disconnect()
    end_session(ctx, "b")


@scenario("retained_message_expiry", "[MQTT-3.3.2-5] [MQTT-3.3.2-6] for retained messages")
def retained_expiry(ctx):
    short, long_ = ctx.topic("short"), ctx.topic("long")
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    a.publish(short, b"short", 1, retain=True, properties=publish_props(MessageExpiryInterval=1))
    a.publish(long_, b"long", 1, retain=True, properties=publish_props(MessageExpiryInterval=30))
    time.sleep(2.5)
    s = subscriber(ctx, "s", [(ctx.topic("+"), 1)])
    s.wait_messages(1)
    got = s.settle(0.5)
    check([m.payload for m in got] == [b"long"], "retained after 2.5 s: %s" % got)
    left = paho_api().prop(got[0].properties, "MessageExpiryInterval")
    check(left is not None and left < 30, "retained Message Expiry Interval %s" % left)


@scenario("no_local", "[MQTT-3.8.3-3]")
def no_local(ctx):
    topic = ctx.topic("nl")
    a = subscriber(ctx, "a", [(topic, opts(2, noLocal=True))])
    b = subscriber(ctx, "b", [(topic, opts(2, noLocal=True))])
    a.publish(topic, b"noLocal test", 1)
    got = b.wait_messages(1)
    check(len(got) == 1, "the other client did not get the message")
    check(a.settle(0.5) == [], "No Local subscription received its own message")


@scenario("retain_as_published", "[MQTT-3.3.1-12] [MQTT-3.3.1-13]")
def retain_as_published(ctx):
    topic = ctx.topic("rap")
    a = subscriber(ctx, "a", [(topic, opts(2, retainAsPublished=True))])
    b = subscriber(ctx, "b", [(topic, opts(2, retainAsPublished=False))])
    a.publish(topic, b"not retained", 1)
    a.publish(topic, b"retained", 1, retain=True)
    got_a = a.wait_messages(2)
    got_b = b.wait_messages(2)
    check([(m.payload, m.retain) for m in got_a] == [(b"not retained", False),
                                                     (b"retained", True)],
          "Retain As Published 1: %s [MQTT-3.3.1-13]" % got_a)
    check([m.retain for m in got_b] == [False, False],
          "Retain As Published 0 must clear RETAIN: %s [MQTT-3.3.1-12]" % got_b)


@scenario("retain_handling", "[MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.8.4-4]")
def retain_handling(ctx):
    topics = [ctx.topic(t) for t in ("TopicA/B", "Topic/C", "TopicA/C")]
    flt = ctx.topic("+/+")
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    for qos, topic in enumerate(topics):
        a.publish(topic, b"qos %d" % qos, qos, retain=True)
    time.sleep(0.3)
    # 1: send retained messages only if the subscription is new.
    a.subscribe([(flt, opts(2, retainHandling=1))])
    a.wait_messages(3)
    got = a.settle(0.3)
    check(qos_set(got) == [0, 1, 2], "Retain Handling 1, new subscription: %s" % got)
    a.clear()
    a.subscribe([(flt, opts(2, retainHandling=1))])
    check(a.settle(1.0) == [], "Retain Handling 1, existing subscription: retained re-sent")
    # 2: never send retained messages.
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect()
    b.subscribe([(flt, opts(2, retainHandling=2))])
    check(b.settle(1.0) == [], "Retain Handling 2 sent retained messages")
    # 0: send them on every subscribe, including a replacement.
    c = ctx.paho(ctx.cid("c"), V5)
    c.connect()
    for round_ in range(2):
        c.clear()
        c.subscribe([(flt, opts(2, retainHandling=0))])
        c.wait_messages(3)
        got = c.settle(0.3)
        check(qos_set(got) == [0, 1, 2], "Retain Handling 0, subscribe #%d: %s" % (
            round_ + 1, got))


@scenario("subscription_identifiers", "[MQTT-3.3.4-3] [MQTT-3.3.4-4] [MQTT-3.3.4-5]")
def subscription_identifiers(ctx, required=False):
    p = paho_api()
    topic = ctx.topic("TopicA")
    probe = raw_v5(ctx, "probe")
    available = probe.connack.props.get("subscription_identifier_available", 1)
    check(available or not required, "CONNACK Subscription Identifier Available 0: the "
          "feature is missing (client_test5.py test_subscribe_identifiers needs it)")
    if not available:
        probe.send(mqttraw.subscribe(1, [(topic, 1)], version=V5,
                                     props={"subscription_identifier": 5}))
        closed, seen = probe.wait_closed(5.0)
        # A Protocol Error: DISCONNECT 0xA1 (Subscription Identifiers not supported) or 0x82,
        # or a plain close.
        check(closed and all(pk.type == mqttraw.DISCONNECT and pk.reason in (0xA1, 0x82)
                             for pk in seen),
              "Subscription Identifiers not available, but SUBSCRIBE with one got %s (closed: "
              "%s)" % (seen, closed))
        ctx.note("server does not support subscription identifiers")
        return
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    a.subscribe([(topic, 2)], properties=p.props(p.PacketTypes.SUBSCRIBE,
                                                 SubscriptionIdentifier=456789))
    b = ctx.paho(ctx.cid("b"), V5)
    b.connect()
    b.subscribe([(topic, 2)], properties=p.props(p.PacketTypes.SUBSCRIBE,
                                                 SubscriptionIdentifier=2))
    b.subscribe([(topic + "/#", 2)], properties=p.props(p.PacketTypes.SUBSCRIBE,
                                                        SubscriptionIdentifier=3))
    c = ctx.paho(ctx.cid("c"), V5)
    c.connect()
    c.subscribe([(topic, 1)])
    b.publish(topic, b"sub identifier test", 1)
    got = a.wait_messages(1)
    check(len(got) == 1 and p.prop(got[0].properties, "SubscriptionIdentifier") == [456789],
          "client a: identifiers %s" % [p.prop(m.properties, "SubscriptionIdentifier")
                                        for m in got])
    b.wait_messages(2, 2.0)
    got = b.settle(0.5)
    ids = [sorted(p.prop(m.properties, "SubscriptionIdentifier") or []) for m in got]
    if len(got) == 1:
        check(ids == [[2, 3]], "one copy must carry both identifiers: %s [MQTT-3.3.4-4]" % ids)
    else:
        check(sorted(ids) == [[2], [3]], "one copy per subscription, each with its identifier:"
              " %s [MQTT-3.3.4-5]" % ids)
    got = c.wait_messages(1)
    check(len(got) == 1 and p.prop(got[0].properties, "SubscriptionIdentifier") is None,
          "a subscription without identifier received one")


@scenario("request_response", "[MQTT-3.3.2-15] [MQTT-3.3.2-16]")
def request_response(ctx):
    p = paho_api()
    req_topic, resp_topic = ctx.topic("request"), ctx.topic("response")
    requester = subscriber(ctx, "a", [(resp_topic, 1)])
    responder = subscriber(ctx, "b", [(req_topic, 1)])
    requester.publish(req_topic, b"request", 1, properties=publish_props(
        ResponseTopic=resp_topic, CorrelationData=b"334\x00\xff"))
    got = responder.wait_messages(1)
    check(len(got) == 1, "request not delivered")
    rt = p.prop(got[0].properties, "ResponseTopic")
    cd = p.prop(got[0].properties, "CorrelationData")
    check(rt == resp_topic and cd == b"334\x00\xff", "Response Topic %r, Correlation Data %r" %
          (rt, cd))
    responder.publish(rt, b"response", 1, properties=publish_props(CorrelationData=cd))
    got = requester.wait_messages(1)
    check(len(got) == 1 and p.prop(got[0].properties, "CorrelationData") == cd,
          "response %s" % got)


@scenario("request_response_information", "[MQTT-3.1.2-28]")
def response_information(ctx):
    raw = raw_v5(ctx, "a", props={"request_response_information": 0})
    check("response_information" not in raw.connack.props,
          "Response Information sent although Request Response Information was 0")
    raw2 = raw_v5(ctx, "b", props={"request_response_information": 1})
    info = raw2.connack.props.get("response_information")
    ctx.note("Response Information %r" % info if info else "no Response Information offered")


@scenario("request_problem_information", "[MQTT-3.1.2-29]")
def problem_information(ctx):
    raw = raw_v5(ctx, "a", props={"request_problem_information": 0})
    raw.send(mqttraw.subscribe(3, [(ctx.topic("ok"), 1)], version=V5))
    suback = raw.recv_type(mqttraw.SUBACK)
    check(suback is not None, "no SUBACK")
    check("reason_string" not in suback.props and "user_property" not in suback.props,
          "SUBACK carries a Reason String / User Property with Request Problem Information 0")
    raw.send(mqttraw.unsubscribe(4, [ctx.topic("none")], version=V5))
    unsuback = raw.recv_type(mqttraw.UNSUBACK)
    check(unsuback is not None and "reason_string" not in unsuback.props,
          "UNSUBACK carries a Reason String with Request Problem Information 0")
    raw.send(mqttraw.publish(ctx.topic("none"), b"x", qos=1, packet_id=5, version=V5))
    puback = raw.recv_type(mqttraw.PUBACK)
    check(puback is not None and "reason_string" not in puback.props,
          "PUBACK carries a Reason String with Request Problem Information 0")


@scenario("client_topic_alias", "[MQTT-3.3.2-7] [MQTT-3.3.2-8] [MQTT-3.3.2-9] [MQTT-3.3.2-12] "
          "[MQTT-3.2.2-17]")
def client_topic_alias(ctx, required=False):
    topic = ctx.topic("alias")
    s = subscriber(ctx, "s", [(topic, 1)])
    # Topic Alias 0 is never valid.
    raw = raw_v5(ctx, "a")
    raw.send(mqttraw.publish(topic, b"alias 0", qos=1, packet_id=1, version=V5,
                             props={"topic_alias": 0}))
    closed, seen = raw.wait_closed(5.0)
    check(closed, "PUBLISH with Topic Alias 0 accepted")
    # 0x94 (Topic Alias invalid), 0x82 (Protocol Error) and 0x81 (Malformed: a property value
    # out of range) all name this error; a close without DISCONNECT is allowed too.
    check(all(pk.type == mqttraw.DISCONNECT and pk.reason in (0x81, 0x82, 0x94) for pk in seen),
          "expected DISCONNECT 0x94/0x82/0x81, got %s" % seen)
    ctx.note("alias 0: %s" % (["0x%02x" % pk.reason for pk in seen] or "closed"))
    check(s.settle(0.3) == [], "the message with Topic Alias 0 was delivered")
    raw = raw_v5(ctx, "a", props={"topic_alias_maximum": 0})
    maximum = raw.connack.props.get("topic_alias_maximum", 0)
    check(maximum or not required, "CONNACK Topic Alias Maximum 0: the server accepts no "
          "topic aliases")
    if maximum == 0:
        raw.send(mqttraw.publish(topic, b"alias 1", qos=1, packet_id=1, version=V5,
                                 props={"topic_alias": 1}))
        closed, seen = raw.wait_closed(5.0)
        check(closed and all(pk.type == mqttraw.DISCONNECT and pk.reason == 0x94
                             for pk in seen),
              "alias above the server's Topic Alias Maximum (0): %s" % seen)
        ctx.note("server accepts no topic aliases")
        return
    raw.send(mqttraw.publish(topic, b"alias set", qos=1, packet_id=1, version=V5,
                             props={"topic_alias": 1}))
    raw.send(mqttraw.publish("", b"alias used", qos=1, packet_id=2, version=V5,
                             props={"topic_alias": 1}))
    acks = [raw.recv_type(mqttraw.PUBACK) for _ in range(2)]
    check(all(a is not None and a.reason < 0x80 for a in acks), "PUBACKs %s" % acks)
    got = s.wait_messages(2)
    check([(m.topic, m.payload) for m in got] == [(topic, b"alias set"), (topic, b"alias used")],
          "aliased publishes delivered as %s" % got)
    raw.send(mqttraw.publish(topic, b"over max", qos=1, packet_id=3, version=V5,
                             props={"topic_alias": maximum + 1}))
    closed, seen = raw.wait_closed(5.0)
    check(closed and all(pk.type == mqttraw.DISCONNECT and pk.reason == 0x94 for pk in seen),
          "alias %d above Topic Alias Maximum %d: %s [MQTT-3.3.2-9]" % (maximum + 1, maximum,
                                                                         seen))
    # Aliases do not survive the connection [MQTT-3.3.2-7].
    raw = raw_v5(ctx, "a")
    raw.send(mqttraw.publish("", b"stale alias", qos=1, packet_id=4, version=V5,
                             props={"topic_alias": 1}))
    closed, seen = raw.wait_closed(5.0)
    check(closed and all(pk.type == mqttraw.DISCONNECT and pk.reason >= 0x80 for pk in seen),
          "an alias from the previous connection was accepted: %s" % seen)
    got = s.settle(0.3)
    check(len(got) == 2, "stale-alias or over-maximum publish delivered: %s" % got)
    ctx.note("Topic Alias Maximum %d" % maximum)


@scenario("server_topic_alias", "[MQTT-3.1.2-26] [MQTT-3.1.2-27] [MQTT-3.3.2-11]")
def server_topic_alias(ctx):
    topics = [ctx.topic("t%d" % i) for i in range(3)]
    none = raw_v5(ctx, "none")
    raw_subscribe(none, 1, [(ctx.topic("+"), 1)])
    two = raw_v5(ctx, "two", props={"topic_alias_maximum": 2})
    raw_subscribe(two, 1, [(ctx.topic("+"), 1)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    sent = [topics[i % 3] for i in range(9)]
    for i, topic in enumerate(sent):
        pub.publish(topic, b"%d" % i, 1)
    for client, maximum in ((none, 0), (two, 2)):
        aliases = {}
        resolved = []
        used = 0
        for _ in sent:
            pk = client.recv_type(mqttraw.PUBLISH, 5.0)
            check(pk is not None, "missing deliveries (max %d): %s" % (maximum, resolved))
            client.send(mqttraw.ack(mqttraw.PUBACK, pk.packet_id, version=V5))
            alias = pk.props.get("topic_alias")
            if alias is None:
                check(pk.topic != "", "empty topic without alias")
                resolved.append(pk.topic)
                continue
            used += 1
            check(1 <= alias <= maximum, "alias %d above the client's maximum %d" % (
                alias, maximum))
            if pk.topic:
                aliases[alias] = pk.topic
            check(alias in aliases, "alias %d used before it was set" % alias)
            resolved.append(aliases[alias])
        check(resolved == sent, "topics after alias resolution %s, sent %s" % (resolved, sent))
        if maximum:
            ctx.note("server %s topic aliases" % ("uses" if used else "does not use"))


@scenario("maximum_packet_size_of_client", "[MQTT-3.1.2-24] [MQTT-3.1.2-25]")
def client_maximum_packet_size(ctx):
    topic = ctx.topic("mps")
    raw = raw_v5(ctx, "s", props={"maximum_packet_size": 64})
    raw_subscribe(raw, 1, [(topic, 1)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    pub.publish(topic, b"." * 16, 1)
    pub.publish(topic, b"." * 64, 1)  # the whole packet would exceed 64 bytes: discarded
    pub.publish(topic, b"." * 8, 1)
    got = []
    for pk in raw.collect_until(mqttraw.has(mqttraw.PUBLISH, 2), 5.0, 0.5):
        check(len(pk.body) + 2 <= 64, "server sent a %d-byte body to a 64-byte client" %
              len(pk.body))
        if pk.type == mqttraw.PUBLISH:
            got.append(len(pk.payload))
            raw.send(mqttraw.ack(mqttraw.PUBACK, pk.packet_id, version=V5))
    check(got == [16, 8], "payload sizes delivered %s, want [16, 8]" % got)


@scenario("flow_control_server_to_client", "[MQTT-3.3.4-9] [MQTT-3.3.4-10]")
def flow_control_outbound(ctx):
    topic = ctx.topic("fc")
    raw = raw_v5(ctx, "s", props={"receive_maximum": 2})
    raw_subscribe(raw, 1, [(topic, 2)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    for i in range(4):
        pub.publish(topic, b"m%d" % i, 1 if i % 2 == 0 else 2)
    first = raw.collect_until(mqttraw.has(mqttraw.PUBLISH, 2), 5.0, 1.0)
    pubs = [pk for pk in first if pk.type == mqttraw.PUBLISH]
    check(len(pubs) == 2, "with Receive Maximum 2 and nothing acknowledged the server sent "
          "%d PUBLISHes: %s" % (len(pubs), pubs))
    raw.send(mqttraw.pingreq())
    ping = raw.recv(3.0)
    check(ping is not None and ping.type == mqttraw.PINGRESP,
          "PINGRESP delayed by a full window [MQTT-3.3.4-10]: %r" % (ping,))
    delivered = [pk.payload for pk in pubs]

    def release(pk):
        if pk.qos == 1:
            raw.send(mqttraw.ack(mqttraw.PUBACK, pk.packet_id, version=V5))
        else:
            raw.send(mqttraw.ack(mqttraw.PUBREC, pk.packet_id, version=V5))
            rel = raw.recv_type(mqttraw.PUBREL, 3.0, skip=(mqttraw.PUBLISH,))
            check(rel is not None, "no PUBREL")
            raw.send(mqttraw.ack(mqttraw.PUBCOMP, pk.packet_id, version=V5))

    release(pubs[0])
    nxt = raw.recv_type(mqttraw.PUBLISH, 3.0)
    check(nxt is not None, "no PUBLISH after one acknowledgement")
    extra = raw.collect(0.7)
    check(not [pk for pk in extra if pk.type == mqttraw.PUBLISH],
          "window exceeded after one acknowledgement: %s" % extra)
    delivered.append(nxt.payload)
    release(pubs[1])
    release(nxt)
    last = raw.recv_type(mqttraw.PUBLISH, 3.0)
    check(last is not None, "fourth message not delivered")
    delivered.append(last.payload)
    release(last)
    check(delivered == [b"m0", b"m1", b"m2", b"m3"], "order %s" % delivered)


@scenario("flow_control_client_to_server", "[MQTT-3.3.4-7] section 4.9: DISCONNECT 0x93")
def flow_control_inbound(ctx):
    raw = raw_v5(ctx, "a")
    maximum = raw.connack.props.get("receive_maximum", 65535)
    topic = ctx.topic("in")
    burst = bytearray()
    for i in range(1, maximum + 2):
        burst += mqttraw.publish(topic, b"", qos=2, packet_id=i, version=V5)
    raw.send(bytes(burst))  # PUBRECs are never answered with PUBREL
    closed, seen = raw.wait_closed(10.0)
    check(closed, "server accepted %d unreleased QoS 2 publishes with Receive Maximum %d" % (
        maximum + 1, maximum))
    recs = [pk for pk in seen if pk.type == mqttraw.PUBREC]
    disc = [pk for pk in seen if pk.type == mqttraw.DISCONNECT]
    check(disc and disc[-1].reason == 0x93,
          "expected DISCONNECT 0x93 (Receive Maximum exceeded), got %s" % (disc or "a close"))
    check(len(recs) <= maximum, "%d PUBRECs for Receive Maximum %d" % (len(recs), maximum))
    ctx.note("Receive Maximum %d" % maximum)


def will_timing(ctx, tag, delay, expiry, topic, subscriber_client):
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid(tag), props={"session_expiry_interval": expiry}, will={
        "topic": topic, "payload": b"will of " + tag.encode(),
        "props": {"will_delay_interval": delay}})
    subscriber_client.clear()
    raw.abort()
    start = time.monotonic()
    got = subscriber_client.wait_messages(1, min(delay, expiry) + 5.0)
    check(len(got) == 1 and got[0].payload == b"will of " + tag.encode(),
          "will (delay %d, expiry %d) not published: %s" % (delay, expiry, got))
    return got[0].time - start


@scenario("will_delay", "[MQTT-3.1.2-8] [MQTT-3.1.3-9] section 3.1.3.2.2")
def will_delay(ctx):
    topic = ctx.topic("wd")
    s = subscriber(ctx, "s", [(topic, 2)])
    elapsed = will_timing(ctx, "w1", 3, 10, topic, s)
    # The server cannot start the delay before it sees the connection fail, so a will that
    # arrives sooner than 3 s after the abort was sent early (0.05 s for clock granularity).
    check(elapsed >= 2.95, "will with delay 3 s published after %.2f s" % elapsed)
    # The session ends first (expiry 1 s < delay 8 s): the will goes then.
    elapsed2 = will_timing(ctx, "w2", 8, 1, topic, s)
    check(0.95 <= elapsed2 < 6.0, "will published after %.2f s; the session ended at 1 s" %
          elapsed2)
    ctx.note("delays %.1f s, %.1f s" % (elapsed, elapsed2))
    end_session(ctx, "w1")


@scenario("will_delay_cancelled_by_reconnect", "[MQTT-3.1.3-9]")
def will_delay_cancelled(ctx):
    topic = ctx.topic("wdc")
    s = subscriber(ctx, "s", [(topic, 2)])
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid("w"), props={"session_expiry_interval": 30}, will={
        "topic": topic, "payload": b"must not appear", "props": {"will_delay_interval": 3}})
    raw.abort()
    time.sleep(0.3)
    back = ctx.raw(V5)
    connack = back.handshake(ctx.cid("w"), clean=False, props={"session_expiry_interval": 30})
    check(connack.session_present, "session lost on reconnect")
    got = s.settle(4.5)
    check(got == [], "will published although the client reconnected within the delay: %s" %
          got)
    back.send(mqttraw.disconnect(0, version=V5, props={"session_expiry_interval": 0}))
    back.wait_closed(2.0)


@scenario("disconnect_with_will_message", "[MQTT-3.14.4-3] reason code 0x04")
def disconnect_with_will(ctx):
    topic = ctx.topic("dw")
    s = subscriber(ctx, "s", [(topic, 2)])
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid("w"), will={"topic": topic, "payload": b"asked for"})
    raw.send(mqttraw.disconnect(0x04, version=V5))
    got = s.wait_messages(1, 5.0)
    check(len(got) == 1 and got[0].payload == b"asked for",
          "DISCONNECT 0x04 did not publish the will: %s" % got)
    raw2 = ctx.raw(V5)
    raw2.handshake(ctx.cid("w2"), will={"topic": topic, "payload": b"not this"})
    raw2.send(mqttraw.disconnect(0x00, version=V5))
    check(len(s.settle(1.0)) == 1, "DISCONNECT 0x00 published the will [MQTT-3.1.2-10]")


@scenario("session_takeover", "[MQTT-3.1.4-3]")
def session_takeover(ctx):
    first = raw_v5(ctx, "dup")
    second = raw_v5(ctx, "dup")
    closed, seen = first.wait_closed(5.0)
    check(closed, "first connection not closed on takeover")
    check(any(pk.type == mqttraw.DISCONNECT and pk.reason == 0x8E for pk in seen),
          "expected DISCONNECT 0x8E (Session taken over), got %s" % seen)
    check(not any("session_expiry_interval" in pk.props for pk in seen),
          "Session Expiry Interval on the server's DISCONNECT [MQTT-3.14.2-2]")
    second.send(mqttraw.pingreq())
    pong = second.recv(3.0)
    check(pong is not None and pong.type == mqttraw.PINGRESP, "new connection dead")


@scenario("puback_no_matching_subscribers", "[MQTT-3.4.2-1] 0x00 or 0x10")
def puback_no_subscribers(ctx):
    raw = raw_v5(ctx, "a")
    raw.send(mqttraw.publish(ctx.topic("nobody"), b"x", qos=1, packet_id=11, version=V5))
    ack = raw.recv_type(mqttraw.PUBACK)
    check(ack is not None and ack.packet_id == 11 and ack.reason in (0x00, 0x10),
          "PUBACK %r" % (ack,))
    raw.send(mqttraw.publish(ctx.topic("nobody"), b"x", qos=2, packet_id=12, version=V5))
    rec = raw.recv_type(mqttraw.PUBREC)
    check(rec is not None and rec.packet_id == 12 and rec.reason in (0x00, 0x10),
          "PUBREC %r" % (rec,))
    ctx.note("reason 0x%02x" % ack.reason)


@scenario("pubrel_unknown_packet_id", "[MQTT-3.7.2-1] PUBCOMP 0x92 or 0x00")
def pubrel_unknown(ctx):
    raw = raw_v5(ctx, "a")
    raw.send(mqttraw.ack(mqttraw.PUBREL, 999, version=V5))
    comp = raw.recv_type(mqttraw.PUBCOMP)
    check(comp is not None and comp.packet_id == 999 and comp.reason in (0x00, 0x92),
          "PUBCOMP %r" % (comp,))


@scenario("shared_subscriptions", "[MQTT-4.8.2-1] [MQTT-4.8.2-2] [MQTT-4.8.2-3] section 4.8.2")
def shared_subscriptions(ctx, required=False):
    probe = raw_v5(ctx, "probe")
    share = "$share/g%s/%s" % (suite.run_id, ctx.topic("x"))
    plain = ctx.topic("x")
    available = probe.connack.props.get("shared_subscription_available", 1)
    check(available or not required, "CONNACK Shared Subscription Available 0: the feature is "
          "missing (client_test5.py test_shared_subscriptions needs it)")
    if not available:
        probe.send(mqttraw.subscribe(1, [(share, 1)], version=V5))
        pkt = probe.recv(5.0)
        check(pkt is not None and ((pkt.type == mqttraw.SUBACK and pkt.reasons == [0x9E]) or
                                   (pkt.type == mqttraw.DISCONNECT and pkt.reason == 0x9E)),
              "shared subscriptions unavailable, expected 0x9E, got %r" % (pkt,))
        ctx.note("server does not support shared subscriptions")
        return
    a = subscriber(ctx, "a", [(share, 2), (plain, 2)])
    b = subscriber(ctx, "b", [(share, 2), (plain, 2)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    count = 20
    for i in range(count):
        pub.publish(plain, b"%02d" % i, 1)
    # Every message: one copy to each plain subscription, one copy to the group.
    wait_until(lambda: len(a.messages) + len(b.messages) >= 3 * count, 8.0)
    got_a, got_b = a.settle(0.5), b.settle(0.0)
    total = sorted(m.payload for m in got_a + got_b)
    want = sorted([b"%02d" % i for i in range(count)] * 3)
    check(total == want, "shared + plain deliveries: %d copies, want %d (each message twice "
          "plain, once shared)" % (len(total), len(want)))
    shared_a = len(got_a) - count
    ctx.note("group split %d/%d" % (shared_a, count - shared_a))


@scenario("shared_subscription_no_local_is_error", "[MQTT-3.8.3-4]")
def shared_no_local(ctx):
    raw = raw_v5(ctx, "a")
    if raw.connack.props.get("shared_subscription_available", 1) == 0:
        ctx.note("shared subscriptions unavailable")
        raw.send(mqttraw.subscribe(1, [("$share/g/" + ctx.topic("x"), 0x04)], version=V5))
        pkt = None
        try:
            pkt = raw.recv(5.0)
        except mqttraw.Closed:
            return
        check(pkt is not None and (pkt.type == mqttraw.DISCONNECT or
                                   (pkt.type == mqttraw.SUBACK and pkt.reasons[0] >= 0x80)),
              "got %r" % (pkt,))
        return
    raw.send(mqttraw.subscribe(1, [("$share/g/" + ctx.topic("x"), mqttraw.sub_options(
        1, no_local=True))], version=V5))
    closed, seen = raw.wait_closed(5.0)
    check(closed, "No Local on a shared subscription accepted: %s" % seen)
    check(all(pk.type == mqttraw.DISCONNECT and pk.reason == 0x82 for pk in seen),
          "expected DISCONNECT 0x82 (Protocol Error), got %s" % seen)


@scenario("maximum_qos_and_retain_available", "[MQTT-3.2.2-9] [MQTT-3.2.2-10] "
          "[MQTT-3.2.2-11] section 3.2.2.3.4-5")
def capabilities(ctx):
    raw = raw_v5(ctx, "a")
    props = raw.connack.props
    max_qos = props.get("maximum_qos", 2)
    topic = ctx.topic("cap")
    suback = raw_subscribe(raw, 1, [(topic, 2)])
    check(suback.reasons[0] <= max_qos,
          "granted QoS %d above Maximum QoS %d" % (suback.reasons[0], max_qos))
    if props.get("retain_available", 1) == 0:
        raw.send(mqttraw.publish(topic, b"r", qos=0, retain=True, version=V5))
        closed, seen = raw.wait_closed(5.0)
        check(closed and any(pk.type == mqttraw.DISCONNECT and pk.reason == 0x9A
                             for pk in seen), "retain unavailable: %s" % seen)
        ctx.note("retain unavailable")
    else:
        ctx.remember_retained(topic)
        raw.send(mqttraw.publish(topic, b"r", qos=1, retain=True, packet_id=2, version=V5))
        pkts = raw.collect_until(mqttraw.has(mqttraw.PUBACK, 1), 5.0, 0.0)
        check(any(pk.type == mqttraw.PUBACK and pk.reason < 0x80 for pk in pkts),
              "retained publish refused although retain is available: %s" % pkts)
    ctx.note("Maximum QoS %d" % max_qos)


@scenario("subscription_identifier_updates", "[MQTT-3.3.4-3] [MQTT-3.8.4-3]: retained messages "
          "carry the identifier; a replacing SUBSCRIBE changes it; none after it is removed")
def subscription_identifier_updates(ctx):
    p = paho_api()
    topic = ctx.topic("sid")
    probe = raw_v5(ctx, "probe")
    if probe.connack.props.get("subscription_identifier_available", 1) == 0:
        ctx.note("server does not support subscription identifiers (refusal checked by "
                 "subscription_identifiers)")
        return
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    pub.publish(topic, b"retained", 1, retain=True)
    a = ctx.paho(ctx.cid("a"), V5)
    a.connect()
    a.subscribe([(topic, 1)], properties=p.props(p.PacketTypes.SUBSCRIBE,
                                                 SubscriptionIdentifier=7))
    got = a.wait_messages(1)
    check(len(got) == 1 and got[0].retain and
          p.prop(got[0].properties, "SubscriptionIdentifier") == [7],
          "retained delivery identifiers %s" % [p.prop(m.properties, "SubscriptionIdentifier")
                                               for m in got])
    a.clear()
    a.subscribe([(topic, opts(1, retainHandling=2))], properties=p.props(
        p.PacketTypes.SUBSCRIBE, SubscriptionIdentifier=99))
    pub.publish(topic, b"live", 1)
    got = a.wait_messages(1)
    check(len(got) == 1 and p.prop(got[0].properties, "SubscriptionIdentifier") == [99],
          "after the replacing SUBSCRIBE: %s" % [p.prop(m.properties, "SubscriptionIdentifier")
                                                 for m in got])
    a.clear()
    a.subscribe([(topic, opts(1, retainHandling=2))])
    pub.publish(topic, b"no id", 1)
    got = a.wait_messages(1)
    check(len(got) == 1 and p.prop(got[0].properties, "SubscriptionIdentifier") is None,
          "a SUBSCRIBE without identifier must drop the old one: %s" % [
              p.prop(m.properties, "SubscriptionIdentifier") for m in got])


@scenario("message_expiry_behind_flow_control", "[MQTT-3.3.2-5]: a message that expires while "
          "queued behind a full Receive Maximum window is not sent")
def message_expiry_flow_control(ctx):
    topic = ctx.topic("mef")
    raw = raw_v5(ctx, "s", props={"receive_maximum": 1})
    raw_subscribe(raw, 1, [(topic, 1)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    pub.publish(topic, b"first", 1)
    first = raw.recv_type(mqttraw.PUBLISH, 5.0)
    check(first is not None and first.payload == b"first", "first delivery %r" % (first,))
    pub.publish(topic, b"expires", 1, properties=publish_props(MessageExpiryInterval=1))
    pub.publish(topic, b"lasts", 1, properties=publish_props(MessageExpiryInterval=60))
    time.sleep(2.5)
    raw.send(mqttraw.ack(mqttraw.PUBACK, first.packet_id, version=V5))
    got = []
    for pk in raw.collect_until(mqttraw.has(mqttraw.PUBLISH, 1), 5.0, 1.0):
        if pk.type == mqttraw.PUBLISH:
            got.append(pk)
            raw.send(mqttraw.ack(mqttraw.PUBACK, pk.packet_id, version=V5))
    check([pk.payload for pk in got] == [b"lasts"], "after the window opened: %s" % got)
    left = got[0].props.get("message_expiry_interval")
    check(left is not None and left < 60, "Message Expiry Interval %s not reduced" % left)


def require_shared(ctx):
    """True when the server supports shared subscriptions; otherwise notes it (the refusal
    itself is checked by shared_subscriptions)."""
    probe = raw_v5(ctx, "probe")
    if probe.connack.props.get("shared_subscription_available", 1) == 0:
        ctx.note("server does not support shared subscriptions")
        return False
    return True


@scenario("shared_subscription_members_leave", "section 4.8.2: when a member unsubscribes or "
          "disconnects, the remaining members get every message")
def shared_members_leave(ctx):
    if not require_shared(ctx):
        return
    topic = ctx.topic("sml")
    share = "$share/m%s/%s" % (suite.run_id, topic)
    members = [subscriber(ctx, "m%d" % i, [(share, 1)]) for i in range(3)]
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    codes = members[0].unsubscribe([share])
    check(codes == [0x00], "UNSUBACK %s for a shared subscription" % codes)
    members[1].disconnect()
    # The DISCONNECT and the publishes travel on different connections: let the broker handle
    # the member's leaving first (under load Mosquitto otherwise routes one to it as it leaves).
    time.sleep(0.5)
    for i in range(10):
        pub.publish(topic, b"%d" % i, 1)
    got = members[2].wait_messages(10, 8.0)
    check(sorted(m.payload for m in got) == sorted(b"%d" % i for i in range(10)),
          "the last member got %d of 10" % len(got))
    check(members[0].settle(0.3) == [], "an unsubscribed member still gets shared messages")


@scenario("shared_subscription_many_members_across_shards", "section 4.8.2: 4 members (on "
          "every shard), each of 40 messages delivered exactly once to the group")
def shared_many_members(ctx):
    if not require_shared(ctx):
        return
    topic = ctx.topic("smm")
    share = "$share/n%s/%s" % (suite.run_id, ctx.topic("+"))
    members = [subscriber(ctx, "m%d" % i, [(share, 1)]) for i in range(max(4, ctx.shards))]
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    for i in range(40):
        pub.publish(topic, b"%02d" % i, 1, wait=False)
    wait_until(lambda: sum(len(m.messages) for m in members) >= 40, 10.0)
    got = [msg.payload for m in members for msg in m.settle(0.0)]
    time.sleep(0.5)
    got = [msg.payload for m in members for msg in m.settle(0.0)]
    check(sorted(got) == [b"%02d" % i for i in range(40)],
          "group deliveries: %d copies of 40 messages (duplicates or losses)" % len(got))
    ctx.note("split " + "/".join(str(len(m.messages)) for m in members))


@scenario("shared_subscription_invalid_names", "[MQTT-4.8.2-1] [MQTT-4.8.2-2]: SUBACK 0x8F "
          "or a DISCONNECT")
def shared_invalid_names(ctx):
    if not require_shared(ctx):
        return
    notes = []
    for bad in ("$share/g", "$share//x", "$share/g+/x", "$share/g#/x", "$share/g/"):
        raw = raw_v5(ctx, "a")
        raw.send(mqttraw.subscribe(4, [(bad, 1)], version=V5))
        try:
            pkt = raw.recv(5.0)
        except mqttraw.Closed:
            notes.append("closed")
            continue
        check(pkt is not None, "%r: no answer" % bad)
        if pkt.type == mqttraw.SUBACK:
            check(pkt.reasons[0] >= 0x80, "%r accepted: SUBACK 0x%02x" % (bad, pkt.reasons[0]))
            notes.append("SUBACK 0x%02x" % pkt.reasons[0])
        else:
            check(pkt.type == mqttraw.DISCONNECT and pkt.reason >= 0x80,
                  "%r: got %r" % (bad, pkt))
            notes.append("DISCONNECT 0x%02x" % pkt.reason)
    ctx.note(", ".join(notes))


# --- Features beyond the minimum, and what the Paho suite asserts beyond the specification ----
# client_test5.py runs every test method; these are the ones a broker fails when it lacks an
# optional feature or does not behave like the Paho test broker.

@scenario("subscription_identifiers_supported", "[MQTT-3.3.4-3] client_test5.py "
          "test_subscribe_identifiers")
def subscription_identifiers_supported(ctx):
    subscription_identifiers(ctx, required=True)


@scenario("shared_subscriptions_supported", "section 4.8.2, client_test5.py "
          "test_shared_subscriptions")
def shared_subscriptions_supported(ctx):
    shared_subscriptions(ctx, required=True)


@scenario("topic_alias_from_client_supported", "[MQTT-3.3.2-12] Topic Alias Maximum > 0")
def topic_alias_supported(ctx):
    client_topic_alias(ctx, required=True)


@scenario("paho_suite_server_topic_alias", "client_test5.py test_server_topic_alias: the server "
          "uses a topic alias when the client allows one (the spec allows, does not require)")
def paho_server_topic_alias(ctx):
    topic = ctx.topic("TopicA")
    raw = raw_v5(ctx, "a", props={"topic_alias_maximum": 1})
    raw_subscribe(raw, 1, [(topic, 2)])
    pub = ctx.paho(ctx.cid("p"), V5)
    pub.connect()
    for qos in range(3):
        pub.publish(topic, b"topic alias 1", qos)
    got = []
    for _ in range(3):
        pk = raw.recv_type(mqttraw.PUBLISH, 5.0, skip=(mqttraw.PUBREL,))
        check(pk is not None, "missing deliveries: %s" % got)
        got.append(pk)
        if pk.qos == 1:
            raw.send(mqttraw.ack(mqttraw.PUBACK, pk.packet_id, version=V5))
        elif pk.qos == 2:
            raw.send(mqttraw.ack(mqttraw.PUBREC, pk.packet_id, version=V5))
    aliases = [pk.props.get("topic_alias") for pk in got]
    check(aliases[0] is not None and got[0].topic == topic,
          "first message sets no topic alias: %s" % got)
    check(aliases[1:] == [aliases[0]] * 2 and got[1].topic == "" and got[2].topic == "",
          "later messages do not use the alias: %s" % got)


@scenario("paho_suite_server_keep_alive", "client_test5.py test_server_keep_alive: keepalive 120 "
          "gets Server Keep Alive 60 (the Paho test broker's setting; the spec allows any)")
def paho_server_keep_alive(ctx):
    raw = ctx.raw(V5)
    connack = raw.handshake(ctx.cid("a"), keepalive=120)
    value = connack.props.get("server_keep_alive")
    check(value == 60, "Server Keep Alive %s for a client asking 120 s, the Paho suite wants 60"
          % value)


@scenario("paho_suite_nosubscribe_topic", "client_test5.py test_subscribe_failure: SUBSCRIBE to "
          "'test/nosubscribe' answered with SUBACK 0x80 (a broker-side policy, not the spec)")
def paho_nosubscribe(ctx):
    raw = raw_v5(ctx, "a")
    suback = raw_subscribe(raw, 1, [("test/nosubscribe", 2)])
    check(suback.reasons == [0x80], "SUBACK %s for test/nosubscribe, the Paho suite wants 0x80"
          % ["0x%02x" % r for r in suback.reasons])


@scenario("will_properties_forwarded", "[MQTT-3.1.3-10] section 3.1.3.2: will properties "
          "become the will's PUBLISH properties")
def will_properties(ctx):
    p = paho_api()
    topic = ctx.topic("wp")
    s = subscriber(ctx, "s", [(topic, 1)])
    raw = ctx.raw(V5)
    raw.handshake(ctx.cid("w"), will={"topic": topic, "payload": b"{}", "qos": 1, "props": [
        ("payload_format_indicator", 1), ("content_type", "application/json"),
        ("response_topic", ctx.topic("reply")), ("correlation_data", b"\x01\x02"),
        ("message_expiry_interval", 60), ("user_property", ("k", "v"))]})
    raw.abort()
    got = s.wait_messages(1)
    check(len(got) == 1, "will not delivered")
    props = got[0].properties
    seen = {name: p.prop(props, name) for name in (
        "PayloadFormatIndicator", "ContentType", "ResponseTopic", "CorrelationData",
        "UserProperty")}
    want = {"PayloadFormatIndicator": 1, "ContentType": "application/json",
            "ResponseTopic": ctx.topic("reply"), "CorrelationData": b"\x01\x02",
            "UserProperty": [("k", "v")]}
    check(seen == want, "will properties %s, want %s" % (seen, want))
    left = p.prop(props, "MessageExpiryInterval")
    check(left is not None and left <= 60, "Message Expiry Interval %s" % left)


if __name__ == "__main__":
    everything = "--all" in sys.argv
    if everything:
        sys.argv.remove("--all")
    names = None if everything else [n for n, _, _ in suite.scenarios if n not in PENDING]
    suite.main(names)
