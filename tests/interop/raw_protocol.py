#!/usr/bin/env python3
"""Protocol-error and framing scenarios over a raw socket (no client library).

These send what a well-behaved library refuses to send: a second CONNECT, a bad protocol name,
reserved flags, PUBLISH before CONNECT, QoS 3, wildcards in a topic name, server-only packets,
oversized and malformed packets. A passing server closes the connection (an MQTT 5 server may
first send a DISCONNECT with a reason code of 0x80 or more; no server sends anything before
CONNACK) and keeps serving everyone else. See SCENARIOS.md for the statement numbers.

Usage: raw_protocol.py --port N [--host 127.0.0.1] [--shards-hint S] [--only REGEX]
"""


import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import time

import mqttraw
from mqttraw import (CONNACK, DISCONNECT, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, SUBACK,
                     UNSUBACK)
from harness import Failure, Suite, check

suite = Suite(__doc__.splitlines()[0])
scenario = suite.scenario


def expect_close(client, what, disconnect_reasons=None, connack_reasons=None, timeout=5.0):
    """The server must close the connection. MQTT 5: a DISCONNECT with a reason >= 0x80 (from
    `disconnect_reasons` if given) may come first. `connack_reasons`: a CONNACK with one of these
    reason codes may come first (for errors in CONNECT itself). Returns a short note."""
    closed, seen = client.wait_closed(timeout)
    check(closed, "%s: connection still open after %.0f s (got %s)" % (what, timeout, seen))
    for pkt in seen:
        if pkt.type == CONNACK and connack_reasons is not None:
            check(pkt.reason in connack_reasons, "%s: CONNACK reason 0x%02x, allowed %s" % (
                what, pkt.reason, ["0x%02x" % r for r in connack_reasons]))
        elif pkt.type == DISCONNECT and client.version == 5 and connack_reasons is None:
            check(pkt.reason >= 0x80, "%s: DISCONNECT reason 0x%02x" % (what, pkt.reason))
            check("session_expiry_interval" not in pkt.props,
                  "%s: the server sent a Session Expiry Interval on DISCONNECT "
                  "[MQTT-3.14.2-2]" % what)
            if disconnect_reasons is not None:
                check(pkt.reason in disconnect_reasons, "%s: DISCONNECT 0x%02x, expected %s" % (
                    what, pkt.reason, ["0x%02x" % r for r in disconnect_reasons]))
        else:
            check(False, "%s: unexpected %r before the close" % (what, pkt))
    return ",".join("%s 0x%02x" % (p.name, p.reason) for p in seen) or "closed"


def connected(ctx, tag, version=4, **kwargs):
    return ctx.raw_connected(ctx.cid(tag), version=version, **kwargs)


def still_serving(ctx):
    """After an error on one connection, the server still serves a new one."""
    probe = connected(ctx, "probe")
    probe.send(mqttraw.pingreq())
    pong = probe.recv(3.0)
    check(pong is not None and pong.type == PINGRESP, "server stopped serving after the error")
    probe.close()


def watch(ctx, topic, version=4):
    """A subscriber on `topic` that should see nothing."""
    sub = connected(ctx, "watch", version)
    sub.send(mqttraw.subscribe(1, [(topic, 1)], version=version))
    check(sub.recv_type(SUBACK) is not None, "watch SUBACK")
    return sub


def nothing_published(sub, what):
    pubs = [p for p in sub.collect(0.5) if p.type == PUBLISH]
    check(not pubs, "%s was delivered: %s" % (what, pubs))


@scenario("second_connect", "[MQTT-3.1.0-2]")
def second_connect(ctx):
    notes = []
    for version in (4, 5):
        client = connected(ctx, "a%d" % version, version)
        client.send(mqttraw.connect(ctx.cid("a%d" % version), version=version))
        notes.append("v%d %s" % (version, expect_close(client, "second CONNECT v%d" % version,
                                                         disconnect_reasons=(0x82,))))
    still_serving(ctx)
    ctx.note("; ".join(notes))


@scenario("bad_protocol_name", "[MQTT-3.1.2-1]")
def bad_protocol_name(ctx):
    for name in ("hj", "MQTX", "mqtt"):
        client = ctx.raw()
        client.send(mqttraw.connect(ctx.cid("a"), protocol_name=name))
        expect_close(client, "protocol name %r" % name, connack_reasons=(0x01, 0x84))
    still_serving(ctx)


@scenario("unsupported_protocol_level", "[MQTT-3.1.2-2]")
def unsupported_level(ctx):
    notes = []
    for level in (2, 6, 255):
        client = ctx.raw()
        client.send(mqttraw.connect(ctx.cid("a"), version=level, protocol_name="MQTT"))
        closed, seen = client.wait_closed(5.0)
        check(closed, "level %d: connection kept open" % level)
        connacks = [p for p in seen if p.type == CONNACK]
        check(len(connacks) == 1 and connacks[0].reason in (0x01, 0x84) and len(seen) == 1,
              "level %d: expected CONNACK 0x01 (or 0x84) then close, got %s" % (level, seen))
        notes.append("%d->0x%02x" % (level, connacks[0].reason))
    ctx.note(" ".join(notes))


@scenario("connect_reserved_flag", "[MQTT-3.1.2-3]")
def connect_reserved_flag(ctx):
    for version in (4, 5):
        client = ctx.raw(version)
        client.send(mqttraw.connect(ctx.cid("a"), version=version, reserved_flag=True))
        expect_close(client, "reserved CONNECT flag v%d" % version,
                     connack_reasons=(0x81, 0x82) if version == 5 else ())


@scenario("connect_fixed_header_flags", "[MQTT-2.2.2-2]")
def connect_header_flags(ctx):
    client = ctx.raw()
    client.send(mqttraw.connect(ctx.cid("a"), first_byte=0x11))
    expect_close(client, "CONNECT with fixed-header flags 0001", connack_reasons=())


@scenario("first_packet_not_connect", "[MQTT-3.1.0-1] [MQTT-3.14.0-1]")
def first_not_connect(ctx):
    topic = ctx.topic("early")
    sub = watch(ctx, topic)
    early = [
        ("PUBLISH", mqttraw.publish(topic, b"early", qos=0)),
        ("PUBLISH QoS 1", mqttraw.publish(topic, b"early", qos=1, packet_id=1)),
        ("SUBSCRIBE", mqttraw.subscribe(1, [(topic, 0)])),
        ("PINGREQ", mqttraw.pingreq()),
        ("DISCONNECT", mqttraw.disconnect()),
    ]
    for name, data in early:
        client = ctx.raw()
        client.send(data)
        closed, seen = client.wait_closed(5.0)
        check(closed, "%s before CONNECT: connection kept open" % name)
        check(seen == [], "%s before CONNECT: server sent %s (nothing may precede CONNACK, "
              "and there is no CONNACK here)" % (name, seen))
    nothing_published(sub, "a PUBLISH sent before CONNECT")


@scenario("data_after_refused_connect_ignored", "[MQTT-3.1.4-5]")
def refused_connect_then_data(ctx):
    topic = ctx.topic("refused")
    sub = watch(ctx, topic)
    client = ctx.raw()
    client.send(mqttraw.connect("", clean=False) + mqttraw.publish(topic, b"after refusal"))
    closed, seen = client.wait_closed(5.0)
    check(closed and [p.type for p in seen] == [CONNACK] and seen[0].reason == 0x02,
          "expected CONNACK 0x02 then close, got %s" % seen)
    nothing_published(sub, "a PUBLISH after a refused CONNECT")


@scenario("publish_qos3", "[MQTT-3.3.1-4]")
def publish_qos3(ctx):
    topic = ctx.topic("q3")
    sub = watch(ctx, topic)
    for version in (4, 5):
        client = connected(ctx, "a%d" % version, version)
        client.send(mqttraw.packet(0x36, mqttraw.mqtt_str(topic) + b"\x00\x01" +
                                   (b"\x00" if version == 5 else b"") + b"qos3"))
        expect_close(client, "QoS 3 PUBLISH v%d" % version, disconnect_reasons=(0x81, 0x82))
    nothing_published(sub, "a QoS 3 PUBLISH")


@scenario("publish_wildcard_topic", "[MQTT-3.3.2-2] [MQTT-4.7.0-1]")
def publish_wildcard(ctx):
    sub = watch(ctx, ctx.topic("#"))
    for version in (4, 5):
        for bad in ("a/+/b", "a/#", "+", "#"):
            client = connected(ctx, "a%d" % version, version)
            client.send(mqttraw.publish(ctx.topic(bad), b"w", qos=1, packet_id=3,
                                        version=version))
            expect_close(client, "PUBLISH to %r v%d" % (bad, version),
                         disconnect_reasons=(0x90, 0x82, 0x81))
    nothing_published(sub, "a PUBLISH to a wildcard topic")


@scenario("publish_qos0_with_dup", "[MQTT-3.3.1-2] [MQTT-3.3.1-3] [MQTT-4.8.0-1]: close, or "
          "deliver with DUP 0")
def qos0_dup(ctx):
    topic = ctx.topic("d")
    sub = watch(ctx, topic)
    client = connected(ctx, "a")
    client.send(mqttraw.publish(topic, b"x", qos=0, dup=True))
    closed, seen = client.wait_closed(1.5)
    if closed:
        check(seen == [], "sent %s before closing" % seen)
        nothing_published(sub, "a QoS 0 PUBLISH with DUP 1")
        ctx.note("closed")
        return
    pubs = [p for p in sub.collect_until(mqttraw.has(PUBLISH, 1), 5.0, 0.5) if p.type == PUBLISH]
    check(len(pubs) == 1 and not pubs[0].dup, "accepted, but forwarded as %s (DUP must be set "
          "independently on the outgoing PUBLISH [MQTT-3.3.1-3])" % pubs)
    ctx.note("accepted and forwarded with DUP 0")


@scenario("publish_bad_topic_strings", "[MQTT-4.7.3-1] [MQTT-4.7.3-2] [MQTT-1.5.3-1] "
          "[MQTT-1.5.3-2]")
def bad_topic_strings(ctx):
    cases = [
        ("empty topic (v3.1.1)", 4, b"\x00\x00"),
        ("empty topic, no alias (v5)", 5, b"\x00\x00"),
        ("U+0000 in topic", 4, mqttraw.mqtt_str(ctx.topic("a")) [:-1] + b"\x00"),
        ("UTF-16 surrogate in topic", 4, mqttraw.mqtt_bin(b"a/\xed\xa0\x80")),
        ("invalid UTF-8 in topic", 5, mqttraw.mqtt_bin(b"a/\xc3\x28")),
        ("topic longer than the packet", 4, b"\x00\x40abc"),
    ]
    for what, version, raw_topic in cases:
        client = connected(ctx, "a%d" % version, version)
        client.send(mqttraw.publish(None, b"", qos=0, version=version, raw_topic=raw_topic))
        expect_close(client, what, disconnect_reasons=(0x81, 0x82, 0x90))


@scenario("subscribe_malformed", "[MQTT-3.8.1-1] [MQTT-3.8.3-3] [MQTT-3-8.3-4] "
          "[MQTT-3.8.3-5] [MQTT-2.3.1-1]")
def subscribe_malformed(ctx):
    flt = ctx.topic("s")
    cases = [
        ("SUBSCRIBE flags 0000", 4, mqttraw.subscribe(1, [(flt, 1)], first_byte=0x80)),
        ("SUBSCRIBE without filters", 4, mqttraw.packet(0x82, b"\x00\x01")),
        ("SUBSCRIBE reserved option bits (v3.1.1)", 4, mqttraw.subscribe(1, [(flt, 0x05)])),
        ("SUBSCRIBE QoS 3", 4, mqttraw.subscribe(1, [(flt, 0x03)])),
        ("SUBSCRIBE packet id 0", 4, mqttraw.subscribe(0, [(flt, 1)])),
        ("SUBSCRIBE without filters (v5)", 5, mqttraw.packet(0x82, b"\x00\x01\x00")),
        ("SUBSCRIBE reserved option bits (v5)", 5, mqttraw.subscribe(1, [(flt, 0xC1)],
                                                                      version=5)),
        ("SUBSCRIBE Retain Handling 3 (v5)", 5, mqttraw.subscribe(1, [(flt, 0x31)],
                                                                   version=5)),
        ("SUBSCRIBE Subscription Identifier 0 (v5)", 5, mqttraw.subscribe(
            1, [(flt, 1)], version=5, props={"subscription_identifier": 0})),
    ]
    for what, version, data in cases:
        client = connected(ctx, "a%d" % version, version)
        client.send(data)
        expect_close(client, what, disconnect_reasons=(0x81, 0x82))
    still_serving(ctx)


@scenario("unsubscribe_malformed", "[MQTT-3.10.1-1] [MQTT-3.10.3-2]")
def unsubscribe_malformed(ctx):
    cases = [
        ("UNSUBSCRIBE flags 0000", 4, mqttraw.unsubscribe(1, [ctx.topic("u")], first_byte=0xA0)),
        ("UNSUBSCRIBE without filters", 4, mqttraw.packet(0xA2, b"\x00\x01")),
        ("UNSUBSCRIBE without filters (v5)", 5, mqttraw.packet(0xA2, b"\x00\x01\x00")),
    ]
    for what, version, data in cases:
        client = connected(ctx, "a%d" % version, version)
        client.send(data)
        expect_close(client, what, disconnect_reasons=(0x81, 0x82))


@scenario("pubrel_bad_flags", "[MQTT-3.6.1-1]")
def pubrel_flags(ctx):
    client = connected(ctx, "a")
    client.send(mqttraw.publish(ctx.topic("r"), b"x", qos=2, packet_id=5))
    check(client.recv_type(PUBREC) is not None, "no PUBREC")
    client.send(mqttraw.ack(mqttraw.PUBREL, 5, flags=0x00))
    expect_close(client, "PUBREL with flags 0000")


@scenario("publish_packet_id_zero", "[MQTT-2.3.1-1]")
def publish_pid_zero(ctx):
    for qos in (1, 2):
        client = connected(ctx, "a")
        client.send(mqttraw.publish(ctx.topic("z"), b"x", qos=qos, packet_id=0))
        expect_close(client, "QoS %d PUBLISH with packet id 0" % qos)


@scenario("server_only_packets_from_client", "[MQTT-4.8.0-1] section 4.13")
def server_only_packets(ctx):
    cases = [
        ("CONNACK", mqttraw.packet(0x20, b"\x00\x00")),
        ("SUBACK", mqttraw.packet(0x90, b"\x00\x01\x00")),
        ("UNSUBACK", mqttraw.packet(0xB0, b"\x00\x01")),
        ("PINGRESP", mqttraw.packet(0xD0, b"")),
        ("reserved type 0", mqttraw.packet(0x00, b"")),
        ("reserved type 15 (v3.1.1)", mqttraw.packet(0xF0, b"")),
    ]
    failures = []
    for version in (4, 5):
        for what, data in cases:
            if version == 5 and what.startswith("reserved type 15"):
                continue  # AUTH in MQTT 5, covered by auth_without_method
            client = connected(ctx, "a%d" % version, version)
            client.send(data)
            try:
                expect_close(client, "%s from a client (v%d)" % (what, version),
                             disconnect_reasons=(0x81, 0x82), timeout=2.0)
            except Failure as exc:
                failures.append(str(exc))
    check(not failures, "; ".join(failures))
    still_serving(ctx)


@scenario("auth_without_method", "[MQTT-3.15.2-1] section 4.12: AUTH without Authentication "
          "Method is a Protocol Error")
def auth_without_method(ctx):
    client = connected(ctx, "a", 5)
    client.send(mqttraw.packet(0xF0, b"\x18\x00"))  # AUTH, Continue authentication
    expect_close(client, "AUTH without an authentication exchange",
                 disconnect_reasons=(0x81, 0x82))


@scenario("malformed_remaining_length", "section 2.2.3: at most 4 bytes")
def malformed_remaining_length(ctx):
    client = connected(ctx, "a")
    client.send(b"\x30\xff\xff\xff\xff\x01")
    expect_close(client, "a 5-byte Remaining Length")
    client = ctx.raw()
    client.send(b"\x10\xff\xff\xff\xff\x01")
    expect_close(client, "a 5-byte Remaining Length before CONNECT", connack_reasons=())


@scenario("connect_flag_rules", "[MQTT-3.1.2-11] [MQTT-3.1.2-14] [MQTT-3.1.2-15] "
          "[MQTT-3.1.2-22] [MQTT-3.1.3-1]")
def connect_flag_rules(ctx):
    cases = [
        ("Will QoS 3", dict(will={"topic": ctx.topic("w"), "payload": b"x", "qos": 3})),
        ("Will QoS 1 without Will Flag", dict(flags_override=0x02 | 0x08)),
        ("Will Retain without Will Flag", dict(flags_override=0x02 | 0x20)),
        ("Password without User Name (v3.1.1)", dict(flags_override=0x02 | 0x40)),
        ("User Name flag without User Name", dict(flags_override=0x02 | 0x80)),
        ("Will Flag without Will Topic", dict(flags_override=0x02 | 0x04)),
    ]
    for what, kwargs in cases:
        client = ctx.raw()
        client.send(mqttraw.connect(ctx.cid("a"), **kwargs))
        expect_close(client, what, connack_reasons=(0x81, 0x82, 0x84, 0x86))
    still_serving(ctx)


@scenario("connect_v5_property_errors", "section 3.1.2.11: duplicate property, Receive Maximum "
          "0, Maximum Packet Size 0, wrong property")
def connect_property_errors(ctx):
    cases = [
        ("Session Expiry Interval twice", [("session_expiry_interval", 1),
                                           ("session_expiry_interval", 2)]),
        ("Receive Maximum 0", [("receive_maximum", 0)]),
        ("Maximum Packet Size 0", [("maximum_packet_size", 0)]),
        ("Request Problem Information 2", [("request_problem_information", 2)]),
        ("Topic Alias in CONNECT", [("topic_alias", 1)]),
    ]
    for what, props in cases:
        client = ctx.raw(5)
        client.send(mqttraw.connect(ctx.cid("a"), version=5, props=props))
        expect_close(client, what, connack_reasons=(0x81, 0x82))


def publish_v5_error(ctx, props, what):
    topic = ctx.topic("v5e")
    sub = watch(ctx, topic, 5)
    client = connected(ctx, "a", 5)
    client.send(mqttraw.publish(topic, b"bad", qos=1, packet_id=2, version=5, props=props))
    note = expect_close(client, what, disconnect_reasons=(0x81, 0x82, 0x94, 0x90))
    nothing_published(sub, "a PUBLISH with " + what)
    ctx.note(note)


@scenario("publish_v5_subscription_identifier_from_client", "[MQTT-3.3.4-6]")
def publish_v5_subid(ctx):
    publish_v5_error(ctx, {"subscription_identifier": 1}, "a Subscription Identifier")


@scenario("publish_v5_topic_alias_zero", "[MQTT-3.3.2-8]")
def publish_v5_alias_zero(ctx):
    publish_v5_error(ctx, {"topic_alias": 0}, "Topic Alias 0")


@scenario("publish_v5_duplicate_property", "section 3.3.2.3.2: Payload Format Indicator twice")
def publish_v5_duplicate(ctx):
    publish_v5_error(ctx, [("payload_format_indicator", 0), ("payload_format_indicator", 0)],
                     "a duplicated property")


@scenario("publish_v5_wildcard_response_topic", "[MQTT-3.3.2-14]")
def publish_v5_response_wildcard(ctx):
    publish_v5_error(ctx, {"response_topic": "a/#"}, "a wildcard Response Topic")


@scenario("disconnect_session_expiry_from_zero", "section 3.14.2.2.2: a Protocol Error; "
          "[MQTT-3.14.2-2] for the server's DISCONNECT")
def disconnect_expiry_from_zero(ctx):
    client = ctx.raw(5)
    client.handshake(ctx.cid("a"), clean=True, props={"session_expiry_interval": 0})
    client.send(mqttraw.disconnect(0, version=5, props={"session_expiry_interval": 60}))
    expect_close(client, "DISCONNECT setting Session Expiry after CONNECT set 0",
                 disconnect_reasons=(0x82,))
    again = ctx.raw(5)
    connack = again.handshake(ctx.cid("a"), clean=False, props={"session_expiry_interval": 0})
    check(not connack.session_present, "the protocol error kept the session alive")


@scenario("oversize_packet", "section 3.2.2.3.6 / 3.1.2.11.4: DISCONNECT 0x95, rejected "
          "before the body arrives")
def oversize_packet(ctx):
    probe = connected(ctx, "probe", 5)
    maximum = probe.connack.props.get("maximum_packet_size")
    check(maximum is not None, "the server advertises no Maximum Packet Size (this project "
          "requires a bounded packet size)")
    topic = ctx.topic("big")
    sub = watch(ctx, topic)
    for version in (4, 5):
        client = connected(ctx, "a%d" % version, version)
        # Only the fixed header and a few bytes: a framing server rejects on the length alone.
        body_len = maximum  # fixed header (>= 2 bytes) + body > maximum
        client.send(bytes([0x30]) + mqttraw.varint(body_len) + mqttraw.mqtt_str(topic))
        expect_close(client, "a %d-byte PUBLISH (maximum %d) v%d" % (body_len + 5, maximum,
                                                                     version),
                     disconnect_reasons=(0x95,))
    # Right at the limit is accepted.
    client = connected(ctx, "ok", 4)
    header = 1 + len(mqttraw.varint(maximum - 5))
    payload_len = maximum - header - len(mqttraw.mqtt_str(topic))
    if maximum <= 4 * 1024 * 1024:
        client.send(mqttraw.publish(topic, b"x" * payload_len))
        client.send(mqttraw.pingreq())
        pong = client.recv(5.0)
        check(pong is not None and pong.type == PINGRESP,
              "a packet of exactly Maximum Packet Size was refused: %r" % (pong,))
    ctx.note("Maximum Packet Size %d" % maximum)
    del sub


@scenario("keepalive_timeout", "[MQTT-3.1.2-24]")
def keepalive_timeout(ctx):
    silent = connected(ctx, "silent", keepalive=2)
    start = time.monotonic()
    closed, seen = silent.wait_closed(10.0)
    check(closed and seen == [], "silent keepalive-2 client: closed=%s, got %s" % (closed, seen))
    ctx.note("closed after %.1f s" % (time.monotonic() - start))


@scenario("keepalive_kept_by_pings", "[MQTT-3.1.2-23] [MQTT-3.12.4-1]")
def keepalive_pings(ctx):
    client = connected(ctx, "ping", keepalive=2)
    for _ in range(5):
        time.sleep(1.0)
        client.send(mqttraw.pingreq())
        pong = client.recv(3.0)
        check(pong is not None and pong.type == PINGRESP, "no PINGRESP: %r" % (pong,))


@scenario("keepalive_zero_never_times_out", "[MQTT-3.1.2-24] keep alive 0 disables it")
def keepalive_zero(ctx):
    client = connected(ctx, "zero", keepalive=0)
    closed, seen = client.wait_closed(4.0)
    check(not closed and seen == [], "keepalive-0 client closed or sent %s" % seen)
    client.send(mqttraw.pingreq())
    pong = client.recv(3.0)
    check(pong is not None and pong.type == PINGRESP, "no PINGRESP after 4 s idle")


def pipeline(ctx, tag, topic):
    return (mqttraw.connect(ctx.cid(tag)) + mqttraw.subscribe(1, [(topic, 1)]) +
            mqttraw.publish(topic, b"to myself", qos=1, packet_id=2) + mqttraw.pingreq())


def check_pipeline(client):
    got = []
    for _ in range(20):
        pkt = client.recv(5.0)
        if pkt is None:
            break
        got.append(pkt)
        if pkt.type == PUBLISH:
            client.send(mqttraw.ack(PUBACK, pkt.packet_id))
        if {p.type for p in got} >= {CONNACK, SUBACK, PUBACK, PUBLISH, PINGRESP}:
            break
    types = [p.type for p in got]
    check(types and types[0] == CONNACK, "first packet must be CONNACK [MQTT-3.2.0-1]: %s" % got)
    check(set(types) >= {SUBACK, PUBACK, PUBLISH, PINGRESP}, "pipelined packets lost: %s" % got)
    # The server may send matching PUBLISHes before the SUBACK (section 3.8.4), so no order
    # is required among the answers after CONNACK.
    return " ".join(p.name for p in got)


@scenario("pipelined_packets", "several packets in one TCP segment")
def pipelined(ctx):
    client = ctx.raw()
    client.send(pipeline(ctx, "a", ctx.topic("pipe")))
    ctx.note(check_pipeline(client))


@scenario("fragmented_packets", "packets split byte by byte across TCP segments")
def fragmented(ctx):
    client = ctx.raw()
    client.send_slowly(pipeline(ctx, "a", ctx.topic("frag")), chunk=1, pause_s=0.001)
    check_pipeline(client)


@scenario("qos1_puback", "[MQTT-4.3.2-2] [MQTT-2.3.1-6]")
def qos1_puback(ctx):
    client = connected(ctx, "a")
    for pid in (1, 65535, 300):
        client.send(mqttraw.publish(ctx.topic("q1"), b"x", qos=1, packet_id=pid))
        ack = client.recv_type(PUBACK)
        check(ack is not None and ack.packet_id == pid, "PUBACK %r for packet id %d" % (ack, pid))


@scenario("qos2_duplicate_publish_delivered_once", "[MQTT-4.3.3-2] [MQTT-4.3.3-3]")
def qos2_duplicate(ctx):
    topic = ctx.topic("q2dup")
    sub = watch(ctx, topic)
    client = connected(ctx, "a")
    client.send(mqttraw.publish(topic, b"once", qos=2, packet_id=7))
    check(client.recv_type(PUBREC) is not None, "no PUBREC")
    client.send(mqttraw.publish(topic, b"once", qos=2, packet_id=7, dup=True))
    rec = client.recv_type(PUBREC)
    check(rec is not None and rec.packet_id == 7, "a duplicate PUBLISH must be answered with "
          "PUBREC: %r" % (rec,))
    client.send(mqttraw.ack(mqttraw.PUBREL, 7))
    comp = client.recv_type(PUBCOMP)
    check(comp is not None and comp.packet_id == 7, "PUBCOMP %r" % (comp,))
    # The packet id is free again: a new message with it is a new message.
    client.send(mqttraw.publish(topic, b"again", qos=2, packet_id=7))
    check(client.recv_type(PUBREC) is not None, "no PUBREC for a reused packet id")
    client.send(mqttraw.ack(mqttraw.PUBREL, 7))
    check(client.recv_type(PUBCOMP) is not None, "no PUBCOMP")
    pubs = []
    for pkt in sub.collect_until(mqttraw.has(PUBLISH, 2), 5.0, 0.5):
        if pkt.type == PUBLISH:
            pubs.append(pkt.payload)
            sub.send(mqttraw.ack(PUBACK, pkt.packet_id))
    check(pubs == [b"once", b"again"], "subscriber got %s, want exactly once each" % pubs)


@scenario("unsuback_for_unknown_filter", "[MQTT-3.10.4-4] [MQTT-3.10.4-5]")
def unsuback_unknown(ctx):
    client = connected(ctx, "a")
    client.send(mqttraw.unsubscribe(77, [ctx.topic("nothing"), ctx.topic("nor/this")]))
    ack = client.recv_type(UNSUBACK)
    check(ack is not None and ack.packet_id == 77, "UNSUBACK %r" % (ack,))


@scenario("many_connections", "64 clients at once, all served (bounded by the accept path)")
def many_connections(ctx):
    clients = []
    for i in range(64):
        client = ctx.raw()
        client.send(mqttraw.connect(ctx.cid("m%02d" % i)))
        clients.append(client)
    for i, client in enumerate(clients):
        pkt = client.recv(10.0)
        check(pkt is not None and pkt.type == CONNACK and pkt.reason == 0,
              "client %d: %r" % (i, pkt))
    for client in clients:
        client.send(mqttraw.disconnect())




def qos2_resume(ctx, version, offset, resend_publish):
    """QoS 2 from the client, interrupted after PUBLISH: the packet id state lives in the
    session, on whichever shard the client comes back to."""
    tag = "p%d%d%d" % (version, offset, int(resend_publish))
    topic = ctx.topic("q2r%s" % tag)
    sub = watch(ctx, topic, version)
    props = {"session_expiry_interval": 60} if version == 5 else None
    pub = ctx.raw(version)
    # v5: Clean Start 1 with a Session Expiry; 3.1.1: CleanSession 0 (a fresh id either way).
    pub.handshake(ctx.cid(tag), clean=(version == 5), props=props)
    pub.send(mqttraw.publish(topic, b"exactly once", qos=2, packet_id=9, version=version))
    check(pub.recv_type(PUBREC) is not None, "no PUBREC")
    pub.abort()
    ctx.fillers(offset)
    back = ctx.raw(version)
    connack = back.handshake(ctx.cid(tag), clean=False, props=props)
    check(connack.session_present, "session lost")
    if resend_publish:
        # The client may not have seen the PUBREC: it resends the PUBLISH with DUP 1.
        back.send(mqttraw.publish(topic, b"exactly once", qos=2, packet_id=9, dup=True,
                                  version=version))
        rec = back.recv_type(PUBREC)
        check(rec is not None and rec.packet_id == 9, "PUBREC %r" % (rec,))
    back.send(mqttraw.ack(mqttraw.PUBREL, 9, version=version))
    comp = back.recv_type(PUBCOMP)
    check(comp is not None and comp.packet_id == 9 and comp.reason == 0,
          "PUBCOMP %r (the PUBREC state must survive the reconnect)" % (comp,))
    pubs = []
    for pkt in sub.collect_until(mqttraw.has(PUBLISH, 1), 5.0, 0.5):
        if pkt.type == PUBLISH:
            pubs.append(pkt.payload)
            sub.send(mqttraw.ack(PUBACK, pkt.packet_id, version=version))
    check(pubs == [b"exactly once"], "v%d offset %d resend=%s: subscriber got %s" % (
        version, offset, resend_publish, pubs))
    back.send(mqttraw.disconnect(0, version=version,
                                 props={"session_expiry_interval": 0} if version == 5 else None))
    back.wait_closed(2.0)
    if version == 4:
        gone = ctx.raw(4)
        gone.handshake(ctx.cid(tag), clean=True)
        gone.send(mqttraw.disconnect())


@scenario("qos2_inbound_resumed_after_reconnect", "[MQTT-4.4.0-1] [MQTT-4.3.3-2] "
          "[MQTT-4.3.3-3] on every shard")
def qos2_inbound_resumed(ctx):
    for version in (4, 5):
        for offset in range(max(2, ctx.shards)):
            for resend in (False, True):
                qos2_resume(ctx, version, offset, resend)


@scenario("auth_method_unsupported", "[MQTT-4.12.0-1] [MQTT-3.2.2-7]")
def auth_method_unsupported(ctx):
    client = ctx.raw(5)
    client.send(mqttraw.connect(ctx.cid("a"), version=5, props={
        "authentication_method": "X-INTEROP-UNKNOWN"}))
    closed, seen = client.wait_closed(5.0)
    check(closed, "connection kept open for an unknown authentication method: %s" % seen)
    check(len(seen) <= 1 and all(p.type == CONNACK and p.reason >= 0x80 for p in seen),
          "expected CONNACK 0x8C (or another refusal) then close, got %s" % seen)
    ctx.note(", ".join("CONNACK 0x%02x" % p.reason for p in seen) or "closed")


@scenario("client_identifier_rules", "[MQTT-3.1.3-5] [MQTT-3.1.3-8] [MQTT-3.1.3-9]")
def client_identifier_rules(ctx):
    allowed = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for version in (4, 5):
        cid = (suite.run_id + allowed)[:23]
        client = ctx.raw(version)
        connack = client.handshake(cid)
        check(connack.reason == 0, "a 23-character id was refused (v%d)" % version)
        client.send(mqttraw.disconnect())
    notes = []
    for version in (4, 5):
        client = ctx.raw(version)
        client.send(mqttraw.connect("L" + suite.run_id + "x" * 100, version=version))
        pkt = client.recv(5.0)
        check(pkt is not None and pkt.type == CONNACK, "no CONNACK for a long id: %r" % (pkt,))
        if pkt.reason == 0:
            notes.append("v%d long id accepted" % version)
        else:
            check(pkt.reason in ((0x02,) if version == 4 else (0x85,)),
                  "long id refused with 0x%02x" % pkt.reason)
            closed, _ = client.wait_closed(5.0)
            check(closed, "refusing CONNACK not followed by a close")
            notes.append("v%d long id refused" % version)
    ctx.note(", ".join(notes))


@scenario("connect_with_credentials", "[MQTT-3.1.2-19] [MQTT-3.1.2-21] section 3.1.2.9 (v5: "
          "password without user name allowed)")
def connect_with_credentials(ctx):
    for version in (4, 5):
        client = ctx.raw(version)
        connack = client.handshake(ctx.cid("u%d" % version), username="user",
                                   password=b"secret")
        check(connack.reason == 0, "user name and password refused by an anonymous broker "
              "(v%d): 0x%02x" % (version, connack.reason))
    client = ctx.raw(5)
    client.send(mqttraw.connect(ctx.cid("p5"), version=5, password=b"secret"))
    pkt = client.recv(5.0)
    check(pkt is not None and pkt.type == CONNACK,
          "v5 password without user name treated as malformed: %r" % (pkt,))
    ctx.note("v5 password only: CONNACK 0x%02x" % pkt.reason)


@scenario("subscribe_many_filters", "[MQTT-3.8.4-4] [MQTT-3.8.4-5] [MQTT-3.9.3-1]")
def subscribe_many(ctx):
    for version in (4, 5):
        client = connected(ctx, "a%d" % version, version)
        filters = [(ctx.topic("many/%d" % i), i % 3) for i in range(50)]
        client.send(mqttraw.subscribe(5, filters, version=version))
        suback = client.recv_type(SUBACK)
        check(suback is not None and suback.reasons == [q for _, q in filters],
              "v%d: SUBACK for 50 filters %r" % (version, suback))


@scenario("reserved_fixed_header_flags", "[MQTT-2.2.2-2] (5.0: [MQTT-2.1.3-1]) PUBACK, PINGREQ and DISCONNECT with "
          "flags other than 0000")
def reserved_header_flags(ctx):
    cases = [
        ("PUBACK flags 0001", 4, None),
        ("PINGREQ flags 0001", 4, b"\xc1\x00"),
        ("DISCONNECT flags 0001", 4, b"\xe1\x00"),
        ("PUBACK flags 0001 (v5)", 5, None),
        ("DISCONNECT flags 0001 (v5)", 5, b"\xe1\x00"),
    ]
    failures = []
    for what, version, data in cases:
        client = connected(ctx, "a%d" % version, version)
        if data is None:  # a PUBACK that matches an in-flight message, but with bad flags
            topic = ctx.topic("pa")
            client.send(mqttraw.subscribe(1, [(topic, 1)], version=version))
            check(client.recv_type(SUBACK) is not None, "SUBACK")
            client.send(mqttraw.publish(topic, b"x", qos=1, packet_id=2, version=version))
            pkts = client.collect_until(mqttraw.has(PUBLISH, 1), 5.0, 0.2)
            pub = [p for p in pkts if p.type == PUBLISH]
            check(pub, "no delivery to acknowledge: %s" % pkts)
            data = mqttraw.ack(PUBACK, pub[0].packet_id, flags=0x01)
        client.send(data)
        try:
            expect_close(client, what, disconnect_reasons=(0x81, 0x82), timeout=2.0)
        except Failure as exc:
            failures.append(str(exc))
    check(not failures, "; ".join(failures))


@scenario("will_on_protocol_error", "[MQTT-3.1.2-8] section 3.1.2.5: a connection closed for a "
          "protocol error publishes the will (a malformed DISCONNECT is no DISCONNECT)")
def will_on_protocol_error(ctx):
    for version in (4, 5):
        topic = ctx.topic("wpe%d" % version)
        sub = watch(ctx, topic, version)
        client = ctx.raw(version)
        client.handshake(ctx.cid("w%d" % version), will={"topic": topic, "payload": b"w"})
        client.send(b"\xe1\x00")  # DISCONNECT with a reserved flag set
        expect_close(client, "malformed DISCONNECT v%d" % version)
        pubs = [p for p in sub.collect_until(mqttraw.has(PUBLISH, 1), 5.0, 0.0)
                if p.type == PUBLISH]
        check(len(pubs) == 1 and pubs[0].payload == b"w",
              "v%d: will not published after a protocol error: %s" % (version, pubs))


if __name__ == "__main__":
    suite.main()
