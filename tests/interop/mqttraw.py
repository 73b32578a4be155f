"""A tiny hand-written MQTT packet builder and parser for conformance tests.

It builds the packets a well-behaved client library refuses to send (second CONNECT, reserved
flags, QoS 3, wildcards in topic names, server-only packets, ...) and reads back exactly what the
server wrote, bit by bit (DUP flags, property order, reason codes). Nothing here is clever: every
field is written out by hand so that a reader can check it against the specification.

Protocol levels: 3 = MQTT 3.1 ("MQIsdp"), 4 = MQTT 3.1.1, 5 = MQTT 5.0.
"""

import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

PACKET_NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
    PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK", PINGREQ: "PINGREQ",
    PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# MQTT 5.0 properties (section 2.2.2.2): identifier -> (name, wire type).
PROPERTIES = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
PROPERTY_IDS = {name: (ident, kind) for ident, (name, kind) in PROPERTIES.items()}
REPEATABLE = {"user_property", "subscription_identifier"}


def has(kind, count=1):
    """A `collect_until` condition: at least `count` packets of type `kind` arrived."""
    return lambda packets: sum(p.type == kind for p in packets) >= count


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class Malformed(Exception):
    """The server sent bytes this parser cannot make sense of."""


# ---------------------------------------------------------------------------------------------
# Encoding

def varint(value):
    """Variable Byte Integer (section 1.5.5)."""
    assert 0 <= value <= 268_435_455
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        if value:
            byte |= 0x80
        out.append(byte)
        if not value:
            return bytes(out)


def mqtt_str(text):
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return struct.pack("!H", len(data)) + data


def mqtt_bin(data):
    return struct.pack("!H", len(data)) + bytes(data)


def properties(props):
    """Encodes properties given as a dict {name: value} or a list of (name, value) pairs.

    A list may repeat a name (to build deliberately wrong packets); a dict value for a repeatable
    property may be a list.
    """
    if props is None:
        props = []
    items = list(props.items()) if isinstance(props, dict) else list(props)
    body = bytearray()
    for name, value in items:
        ident, kind = PROPERTY_IDS[name]
        values = value if (name in REPEATABLE and isinstance(value, list)) else [value]
        for one in values:
            body += varint(ident)
            if kind == "byte":
                body += struct.pack("!B", one)
            elif kind == "u16":
                body += struct.pack("!H", one)
            elif kind == "u32":
                body += struct.pack("!I", one)
            elif kind == "varint":
                body += varint(one)
            elif kind == "str":
                body += mqtt_str(one)
            elif kind == "bin":
                body += mqtt_bin(one)
            elif kind == "pair":
                body += mqtt_str(one[0]) + mqtt_str(one[1])
    return varint(len(body)) + bytes(body)


def packet(first_byte, body):
    """A whole packet: fixed header byte, remaining length, body."""
    return bytes([first_byte]) + varint(len(body)) + bytes(body)


def connect(client_id="", version=4, clean=True, keepalive=60, will=None, username=None,
            password=None, props=None, protocol_name=None, reserved_flag=False,
            flags_override=None, first_byte=0x10):
    """CONNECT. `will` is a dict: topic, payload, qos, retain, props (v5)."""
    if protocol_name is None:
        protocol_name = "MQIsdp" if version == 3 else "MQTT"
    flags = 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if reserved_flag:
        flags |= 0x01
    if flags_override is not None:
        flags = flags_override
    body = mqtt_str(protocol_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += properties(props)
    body += mqtt_str(client_id)
    if will is not None:
        if version == 5:
            body += properties(will.get("props"))
        body += mqtt_str(will["topic"]) + mqtt_bin(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_bin(password)
    return packet(first_byte, body)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, packet_id=None, version=4,
            props=None, raw_topic=None):
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = raw_topic if raw_topic is not None else mqtt_str(topic)
    if qos > 0:
        body += struct.pack("!H", packet_id if packet_id is not None else 1)
    if version == 5:
        body += properties(props)
    return packet(first, body + bytes(payload))


def ack(kind, packet_id, reason=None, version=4, props=None, flags=None):
    """PUBACK, PUBREC, PUBREL, PUBCOMP (and UNSUBACK-shaped acks for tests of wrong packets)."""
    if flags is None:
        flags = 0x02 if kind == PUBREL else 0x00
    body = struct.pack("!H", packet_id)
    if version == 5 and (reason is not None or props is not None):
        body += bytes([reason or 0])
        if props is not None:
            body += properties(props)
    return packet((kind << 4) | flags, body)


def subscribe(packet_id, filters, version=4, props=None, first_byte=0x82):
    """SUBSCRIBE; `filters` is a list of (filter, options byte). Options byte: QoS in bits 0-1;
    v5 adds No Local (bit 2), Retain As Published (bit 3), Retain Handling (bits 4-5)."""
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += properties(props)
    for topic_filter, options in filters:
        body += mqtt_str(topic_filter) + bytes([options])
    return packet(first_byte, body)


def sub_options(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    return qos | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) | (
        retain_handling << 4)


def unsubscribe(packet_id, filters, version=4, props=None, first_byte=0xA2):
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += properties(props)
    for topic_filter in filters:
        body += mqtt_str(topic_filter)
    return packet(first_byte, body)


def pingreq():
    return b"\xc0\x00"


def disconnect(reason=None, version=4, props=None):
    if version == 5 and (reason is not None or props is not None):
        body = bytes([reason or 0])
        if props is not None:
            body += properties(props)
        return packet(0xE0, body)
    return b"\xe0\x00"


# ---------------------------------------------------------------------------------------------
# Decoding

class Reader:
    """Consumes one packet body front to back."""

    def __init__(self, data):
        self.data = bytes(data)
        self.pos = 0

    def remaining(self):
        return len(self.data) - self.pos

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Malformed("truncated packet")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise Malformed("variable byte integer longer than 4 bytes")

    def string(self):
        return self.take(self.u16()).decode("utf-8")

    def binary(self):
        return self.take(self.u16())

    def properties(self):
        """Reads a property block into a dict; repeatable properties become lists, in order."""
        length = self.varint()
        end = self.pos + length
        props = {}
        while self.pos < end:
            ident = self.varint()
            if ident not in PROPERTIES:
                raise Malformed("unknown property 0x%02x" % ident)
            name, kind = PROPERTIES[ident]
            if kind == "byte":
                value = self.byte()
            elif kind == "u16":
                value = self.u16()
            elif kind == "u32":
                value = self.u32()
            elif kind == "varint":
                value = self.varint()
            elif kind == "str":
                value = self.string()
            elif kind == "bin":
                value = self.binary()
            else:
                value = (self.string(), self.string())
            if name in REPEATABLE:
                props.setdefault(name, []).append(value)
            elif name in props:
                raise Malformed("property %s sent twice" % name)
            else:
                props[name] = value
        if self.pos != end:
            raise Malformed("property length mismatch")
        return props


class Packet:
    """One packet read from the server, with its fields decoded for the given protocol level."""

    def __init__(self, first_byte, body, version):
        self.type = first_byte >> 4
        self.flags = first_byte & 0x0F
        self.body = body
        self.version = version
        self.props = {}
        self.reason = None
        self.packet_id = None
        self._decode()

    @property
    def name(self):
        return PACKET_NAMES.get(self.type, "type%d" % self.type)

    def _decode(self):
        r = Reader(self.body)
        v5 = self.version == 5
        if self.type == CONNACK:
            self.session_present = bool(r.byte() & 0x01)
            self.reason = r.byte()
            if v5 and r.remaining():
                self.props = r.properties()
        elif self.type == PUBLISH:
            self.qos = (self.flags >> 1) & 0x03
            self.dup = bool(self.flags & 0x08)
            self.retain = bool(self.flags & 0x01)
            self.topic = r.string()
            if self.qos:
                self.packet_id = r.u16()
            if v5:
                self.props = r.properties()
            self.payload = r.take(r.remaining())
        elif self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.packet_id = r.u16()
            self.reason = 0
            if v5 and r.remaining():
                self.reason = r.byte()
                if r.remaining():
                    self.props = r.properties()
        elif self.type in (SUBACK, UNSUBACK):
            self.packet_id = r.u16()
            if v5:
                self.props = r.properties()
            self.reasons = list(r.take(r.remaining()))
        elif self.type == DISCONNECT:
            self.reason = 0
            if r.remaining():
                self.reason = r.byte()
                if r.remaining():
                    self.props = r.properties()
        elif self.type == AUTH:
            self.reason = r.byte() if r.remaining() else 0
            if r.remaining():
                self.props = r.properties()

    def __repr__(self):
        extra = ""
        if self.type == PUBLISH:
            extra = " topic=%r qos=%d dup=%d retain=%d pid=%s payload=%r" % (
                self.topic, self.qos, self.dup, self.retain, self.packet_id, self.payload[:40])
        elif self.reason is not None:
            extra = " reason=0x%02x" % self.reason
        elif self.type in (SUBACK, UNSUBACK):
            extra = " reasons=%s" % ["0x%02x" % c for c in self.reasons]
        if self.props:
            extra += " props=%s" % self.props
        return "<%s%s>" % (self.name, extra)


class RawClient:
    """A blocking socket that speaks MQTT one packet at a time. Every wait is bounded."""

    def __init__(self, host, port, version=4, timeout=5.0):
        self.version = version
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def send_slowly(self, data, chunk=1, pause_s=0.002):
        """Sends `data` a few bytes at a time, to exercise the server's frame assembly."""
        for i in range(0, len(data), chunk):
            self.sock.sendall(data[i:i + chunk])
            time.sleep(pause_s)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
            self.closed = True
            raise Closed("connection reset")
        if not data:
            self.closed = True
            raise Closed("connection closed")
        self.buf += data
        return True

    def _frame(self):
        """Splits one whole packet off the buffer, or returns None."""
        if len(self.buf) < 2:
            return None
        length, shift, i = 0, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            byte = self.buf[i]
            length |= (byte & 0x7F) << shift
            i += 1
            if not byte & 0x80:
                break
            shift += 7
            if i > 4:
                raise Malformed("remaining length longer than 4 bytes")
        if len(self.buf) < i + length:
            return None
        first, body = self.buf[0], bytes(self.buf[i:i + length])
        del self.buf[:i + length]
        return Packet(first, body, self.version)

    def recv(self, timeout=5.0):
        """The next packet, None on timeout; raises Closed when the server closed."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self._frame()
            if pkt is not None:
                return pkt
            if self.closed:
                raise Closed("connection closed")
            if not self._fill(deadline):
                return None

    def recv_type(self, kind, timeout=5.0, skip=()):
        """The next packet of `kind`, skipping packet types in `skip`; None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            pkt = self.recv(max(0.0, deadline - time.monotonic()))
            if pkt is None:
                return None
            if pkt.type == kind:
                return pkt
            if pkt.type not in skip:
                raise Malformed("expected %s, got %r" % (PACKET_NAMES[kind], pkt))

    def collect(self, timeout=1.0):
        """Every packet that arrives within `timeout` (stops early if the server closes)."""
        deadline = time.monotonic() + timeout
        out = []
        while True:
            try:
                pkt = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                return out
            if pkt is None:
                return out
            out.append(pkt)

    def collect_until(self, done, timeout=5.0, linger=0.5):
        """Collects packets until `done(packets)` is true or `timeout` passes, then for `linger`
        seconds more (to catch what must not come). Stops early if the server closes."""
        deadline = time.monotonic() + timeout
        out = []
        while not done(out):
            try:
                pkt = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                return out
            if pkt is None:
                return out
            out.append(pkt)
        return out + self.collect(linger)

    def wait_closed(self, timeout=5.0):
        """Reads until the server closes or `timeout` passes.

        Returns (closed, packets seen before the close).
        """
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            try:
                pkt = self.recv(max(0.0, deadline - time.monotonic()))
            except Closed:
                return True, seen
            except Malformed:
                return False, seen
            if pkt is None:
                return self.closed, seen
            seen.append(pkt)

    def handshake(self, client_id, timeout=5.0, **kwargs):
        """Sends CONNECT and returns the CONNACK (raises if none comes)."""
        self.send(connect(client_id, version=self.version, **kwargs))
        pkt = self.recv(timeout)
        if pkt is None or pkt.type != CONNACK:
            raise Malformed("expected CONNACK, got %r" % (pkt,))
        return pkt

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def abort(self):
        """Closes with a TCP reset, so the server sees a network failure, not a DISCONNECT."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()
