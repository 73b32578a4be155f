#!/usr/bin/env python3
"""The five overload cases of issue 11, run against one broker binary (BENCHMARKS.md, "Issue 11").

Each case starts a fresh broker on 127.0.0.1 (a free port, 2 shards, defaults unless the case
says otherwise), drives it with raw MQTT clients over TCP for a bounded time, and prints one
line: the broker's RSS (VmRSS now and VmHWM, its peak, from /proc) and what the victim or the
subscriber got. Loopback only; every load is bounded in count and time.

    tools/overload-cases.py --broker target/release/shardmq [--cases 1,2a,2b,2c,3,4,5a,5b]

Case 1 floods for --flood-secs (15 s; the issue watched 40 s).
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import threading
import time


# ---------------------------------------------------------------- MQTT on a raw socket


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


class Client:
    """A blocking MQTT 3.1.1 / 5 client with just what the cases need."""

    def __init__(self, port, client_id, clean=True, v5=False, expiry=0, timeout=10.0):
        self.v5 = v5
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        flags = 0x02 if clean else 0
        body = mqtt_str("MQTT") + bytes([5 if v5 else 4, flags]) + struct.pack("!H", 0)
        if v5:
            props = b""
            if expiry:
                props += b"\x11" + struct.pack("!I", expiry)
            # Maximum Packet Size: what the broker may send us (the cases' big messages).
            props += b"\x27" + struct.pack("!I", 16 << 20)
            body += varint(len(props)) + props
        body += mqtt_str(client_id)
        self.sock.sendall(packet(0x10, body))
        kind, _, _ = self.read_packet()
        if kind != 2:
            raise RuntimeError(f"expected CONNACK, got {kind}")

    def recv_some(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError:
            self.closed = True
            return False
        if not data:
            self.closed = True
            return False
        self.buf += data
        return True

    def try_packet(self):
        """One whole packet from the buffer: (type, flags, body), or None."""
        if len(self.buf) < 2:
            return None
        length, mult, i = 0, 1, 1
        while True:
            if i >= len(self.buf):
                return None
            byte = self.buf[i]
            length += (byte & 0x7F) * mult
            mult *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(self.buf) < i + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i : i + length])
        del self.buf[: i + length]
        return first >> 4, first & 0x0F, body

    def read_packet(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            p = self.try_packet()
            if p:
                return p
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None, None, None
            self.recv_some(left)

    def publish_bytes(self, topic, payload, qos=0, retain=False, pid=0, props=b""):
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        body = mqtt_str(topic)
        if qos:
            body += struct.pack("!H", pid)
        if self.v5:
            body += varint(len(props)) + props
        return packet(first, body + payload)

    def subscribe(self, topic_filter, qos):
        body = struct.pack("!H", 1)
        if self.v5:
            body += b"\x00"
        body += mqtt_str(topic_filter) + bytes([qos])
        self.sock.sendall(packet(0x82, body))
        while True:
            kind, _, _ = self.read_packet()
            if kind == 9:
                return
            if kind is None:
                raise RuntimeError("no SUBACK")

    def puback(self, pid):
        self.sock.sendall(packet(0x40, struct.pack("!H", pid)))

    def parse_publish(self, flags, body):
        """(topic, packet id, payload) of a PUBLISH body."""
        (tlen,) = struct.unpack("!H", body[:2])
        topic = body[2 : 2 + tlen]
        i = 2 + tlen
        pid = 0
        if (flags >> 1) & 3:
            (pid,) = struct.unpack("!H", body[i : i + 2])
            i += 2
        if self.v5:
            plen, mult = 0, 1
            while True:
                byte = body[i]
                i += 1
                plen += (byte & 0x7F) * mult
                mult *= 128
                if not byte & 0x80:
                    break
            i += plen
        return topic, pid, body[i:]

    def publish_qos1_all(self, messages, window=10, timeout=120.0, rate=None):
        """Publishes (topic, payload, retain, props) at QoS 1 keeping `window` unacknowledged,
        at most `rate` messages per second when given."""
        start = time.monotonic()
        deadline = start + timeout
        pid, unacked, sent = 0, set(), 0
        while sent < len(messages) or unacked:
            allowed = len(messages)
            if rate:
                allowed = min(allowed, int((time.monotonic() - start) * rate) + 1)
            while sent < allowed and len(unacked) < window:
                topic, payload, retain, props = messages[sent]
                pid = pid % 65535 + 1
                self.sock.sendall(self.publish_bytes(topic, payload, 1, retain, pid, props))
                unacked.add(pid)
                sent += 1
            wait = 0.02 if rate and sent < len(messages) else deadline - time.monotonic()
            kind, _, body = self.read_packet(max(0.02, wait))
            if kind is None and rate and sent < len(messages) and time.monotonic() < deadline:
                continue
            if kind is None:
                raise RuntimeError(f"publisher: {len(unacked)} PUBACKs missing")
            if kind == 4:
                unacked.discard(struct.unpack("!H", body[:2])[0])

    def ping_round_trip(self, timeout=30.0):
        """PINGREQ -> PINGRESP: everything sent before was processed."""
        self.sock.sendall(b"\xc0\x00")
        while True:
            kind, _, _ = self.read_packet(timeout)
            if kind in (13, None):
                return kind == 13

    def close(self):
        try:
            self.sock.sendall(b"\xe0\x00")
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- broker and measurement


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    prefix = []

    def __init__(self, binary, extra):
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--shards", "2", "--log-level", "error"]
        self.proc = subprocess.Popen(Broker.prefix + args + extra, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("broker did not start")

    def rss_mb(self):
        """(VmRSS, VmHWM) in MB."""
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM")):
                    key, value = line.split(":")
                    values[key] = int(value.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self):
        self.proc.send_signal(2)  # SIGINT: a clean exit (callgrind writes its profile)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Qos0Pair:
    """A subscriber on `topic` and a publisher sending `rate` QoS 0 messages per second to it."""

    def __init__(self, port, topic, rate):
        self.topic, self.rate = topic, rate
        self.sub = Client(port, f"victim-sub-{topic}")
        self.sub.subscribe(topic, 0)
        self.pub = Client(port, f"victim-pub-{topic}")
        self.sent = self.received = 0
        self.running = True
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self):
        while self.running and not self.sub.closed:
            p = self.sub.try_packet()
            if p is None:
                self.sub.recv_some(0.2)
                continue
            if p[0] == 3:
                self.received += 1

    def run_for(self, seconds):
        """Publishes for `seconds`; returns (sent, received) of this window."""
        sent0, received0 = self.sent, self.received
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            target = int((time.monotonic() - start) * self.rate)
            while self.sent - sent0 < target:
                try:
                    self.pub.sock.sendall(self.pub.publish_bytes(self.topic, b"v" * 64))
                except OSError:
                    break
                self.sent += 1
            time.sleep(0.005)
        time.sleep(1.0)
        return self.sent - sent0, self.received - received0

    def stop(self):
        self.running = False
        self.reader.join(2)


def received_until(client, want, ack, timeout, idle=5.0, dedup=True):
    """Reads PUBLISHes until `want` distinct ones, the connection closes, `idle` seconds pass
    with nothing, or `timeout`; acknowledges QoS 1 ones when `ack`. Returns the set seen."""
    seen = set()
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while len(seen) < want and time.monotonic() < deadline and not client.closed:
        p = client.try_packet()
        if p is None:
            client.recv_some(0.2)
            if time.monotonic() - last > idle:
                break
            continue
        last = time.monotonic()
        kind, flags, body = p
        if kind != 3:
            continue
        topic, pid, payload = client.parse_publish(flags, body)
        seen.add((topic, payload[:8]) if dedup else len(seen))
        if ack and pid:
            try:
                client.puback(pid)
            except OSError:
                client.closed = True
    return seen


def indexed(i, size):
    return struct.pack("!Q", i) + b"x" * (size - 8)


# ---------------------------------------------------------------- the cases


def case1(binary, args):
    """PINGREQs pipelined by a client that never reads, --max-buffered-bytes 64 MiB; 4 QoS 0
    pairs (spread over both shards) publish 100 msg/s each meanwhile."""
    broker = Broker(binary, ["--max-buffered-bytes", str(64 << 20)])
    try:
        pairs = [Qos0Pair(broker.port, f"v/{i}", 100) for i in range(4)]
        hostile = Client(broker.port, "hostile")
        hostile.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        offered = [0]
        stop = time.monotonic() + args.flood_secs

        def flood():
            chunk = b"\xc0\x00" * 32768
            hostile.sock.settimeout(0.5)
            while time.monotonic() < stop:
                try:
                    offered[0] += hostile.sock.send(chunk)
                except socket.timeout:
                    continue
                except OSError:
                    return

        flooder = threading.Thread(target=flood, daemon=True)
        flooder.start()
        results = [None] * len(pairs)
        threads = []
        for i, pair in enumerate(pairs):
            def run(i=i, pair=pair):
                results[i] = pair.run_for(args.flood_secs)
            threads.append(threading.Thread(target=run))
            threads[-1].start()
        for t in threads:
            t.join()
        flooder.join()
        rss, hwm = broker.rss_mb()
        sent = sum(r[0] for r in results)
        got = sum(r[1] for r in results)
        worst = min(r[1] / max(1, r[0]) for r in results)
        for pair in pairs:
            pair.stop()
        return (
            f"{offered[0] / 1e6:.0f} MB of PINGREQ accepted in {args.flood_secs} s; "
            f"victims {got}/{sent} (worst pair {worst:.0%})",
            rss,
            hwm,
        )
    finally:
        broker.stop()


def case2a(binary, args):
    """A persistent QoS 1 session with 50 queued 500 KB messages resumes (reconnecting while
    it is closed, at most 50 times)."""
    broker = Broker(binary, [])
    try:
        sub = Client(broker.port, "resumer", clean=False)
        sub.subscribe("big/q", 1)
        sub.close()
        time.sleep(0.2)
        pub = Client(broker.port, "pub2a")
        pub.publish_qos1_all([("big/q", indexed(i, 500_000), False, b"") for i in range(50)])
        seen, connects = set(), 0
        deadline = time.monotonic() + 60
        while len(seen) < 50 and connects < 50 and time.monotonic() < deadline:
            connects += 1
            sub = Client(broker.port, "resumer", clean=False)
            seen |= received_until(sub, 50 - len(seen) + 32, True, deadline - time.monotonic())
            closed = sub.closed
            sub.close()
            if not closed:
                break
        rss, hwm = broker.rss_mb()
        return f"{len(seen)}/50 received, {connects} connection(s)", rss, hwm
    finally:
        broker.stop()


def case2b(binary, args):
    """A new QoS 1 subscriber to 200 retained 100 KB messages (acknowledging each)."""
    broker = Broker(binary, [])
    try:
        pub = Client(broker.port, "pub2b")
        pub.publish_qos1_all([(f"rt/{i}", indexed(i, 100_000), True, b"") for i in range(200)])
        sub = Client(broker.port, "sub2b")
        sub.subscribe("rt/#", 1)
        seen = received_until(sub, 200, True, 60)
        rss, hwm = broker.rss_mb()
        state = "closed by the broker" if sub.closed else "connected"
        return f"{len(seen)}/200 received, {state}", rss, hwm
    finally:
        broker.stop()


def case2c(binary, args):
    """A QoS 1 subscriber that acknowledges in batches of 32 (0.2 s after the batch's last
    message); 200 messages of 100 KB published at once."""
    broker = Broker(binary, [])
    try:
        sub = Client(broker.port, "sub2c")
        sub.subscribe("b/x", 1)
        pub = Client(broker.port, "pub2c")
        publisher = threading.Thread(
            target=lambda: pub.publish_qos1_all(
                [("b/x", indexed(i, 100_000), False, b"") for i in range(200)],
                timeout=60,
                rate=None,
            ),
            daemon=True,
        )
        publisher.start()
        seen, pending = set(), []
        deadline = time.monotonic() + 60
        last = time.monotonic()
        while len(seen) < 200 and time.monotonic() < deadline and not sub.closed:
            p = sub.try_packet()
            if p is None:
                sub.recv_some(0.2)
                if time.monotonic() - last > 5:
                    break
                continue
            last = time.monotonic()
            if p[0] != 3:
                continue
            _, pid, payload = sub.parse_publish(p[1], p[2])
            seen.add(payload[:8])
            pending.append(pid)
            if len(pending) == 32 or len(seen) == 200:
                time.sleep(0.2)  # the batch is processed, then acknowledged
                try:
                    # One write: the broker reads the batch at once.
                    sub.sock.sendall(b"".join(packet(0x40, struct.pack("!H", p)) for p in pending))
                except OSError:
                    sub.closed = True
                pending.clear()
        rss, hwm = broker.rss_mb()
        state = "closed by the broker" if sub.closed else "connected"
        return f"{len(seen)}/200 received, {state}", rss, hwm
    finally:
        broker.stop()


def case3(binary, args):
    """100 offline persistent sessions on fill/#, 1,000 QoS 1 messages of 4 KB; then a new
    QoS 0 pair on `v` at 268 msg/s for two 5 s windows."""
    broker = Broker(binary, [])
    try:
        for i in range(100):
            c = Client(broker.port, f"off{i}", clean=False)
            c.subscribe("fill/#", 1)
            c.close()
        time.sleep(0.3)
        pub = Client(broker.port, "filler")
        start = time.monotonic()
        pub.publish_qos1_all([("fill/x", b"f" * 4096, False, b"") for _ in range(1000)])
        fill_secs = time.monotonic() - start
        pair = Qos0Pair(broker.port, "v", 268)
        windows = [pair.run_for(5) for _ in range(2)]
        pair.stop()
        rss, hwm = broker.rss_mb()
        text = ", ".join(f"{got}/{sent}" for sent, got in windows)
        return f"fill took {fill_secs:.1f} s; victim per 5 s window {text}", rss, hwm
    finally:
        broker.stop()


def case4(binary, args):
    """3 offline MQTT 5 sessions, N QoS 1 messages with 7 user properties of 65,000 bytes,
    --max-buffered-bytes 64 MiB."""
    broker = Broker(binary, ["--max-buffered-bytes", str(64 << 20)])
    try:
        for i in range(3):
            c = Client(broker.port, f"prop{i}", clean=False, v5=True, expiry=3600)
            c.subscribe("p/#", 1)
            c.close()
        time.sleep(0.3)
        props = b"".join(
            b"\x26" + mqtt_str(f"k{i}") + mqtt_str(b"u" * 65000) for i in range(7)
        )
        pub = Client(broker.port, "pub4", v5=True)
        n = args.case4_messages
        start = time.monotonic()
        pub.publish_qos1_all([("p/x", b"small", False, props) for _ in range(n)], timeout=120)
        secs = time.monotonic() - start
        rss, hwm = broker.rss_mb()
        return f"{n} messages of {len(props) / 1e3:.0f} KB properties published in {secs:.1f} s", rss, hwm
    finally:
        broker.stop()


def case5(binary, count, size):
    broker = Broker(binary, [])
    try:
        pub = Client(broker.port, "pub5")
        for i in range(count):
            pub.sock.sendall(pub.publish_bytes(f"rt/{i}", indexed(i, size), 0, True))
        if not pub.ping_round_trip():
            raise RuntimeError("publisher: no PINGRESP")
        sub = Client(broker.port, "sub5")
        sub.subscribe("rt/#", 0)
        seen = received_until(sub, count, False, 60)
        rss, hwm = broker.rss_mb()
        state = "closed by the broker" if sub.closed else "connected"
        return f"{len(seen)}/{count} received, {state}", rss, hwm
    finally:
        broker.stop()


def queue_churn(binary, args):
    """Not an issue case: 20 offline sessions take 1,000 QoS 1 messages of 4 KB each, then
    every session resumes and drains its queue (20,000 queue entries in and out, below the
    queues' share of the default budget even when counted once per queue; for instructions
    per queue entry under callgrind, --broker-prefix "valgrind --tool=callgrind")."""
    sessions = 20
    broker = Broker(binary, [])
    try:
        for i in range(sessions):
            c = Client(broker.port, f"churn{i}", clean=False, timeout=60)
            c.subscribe("fill/#", 1)
            c.close()
        time.sleep(0.3)
        pub = Client(broker.port, "filler", timeout=60)
        pub.publish_qos1_all([("fill/x", b"f" * 4096, False, b"") for _ in range(1000)], timeout=600)
        drained = 0
        for i in range(sessions):
            c = Client(broker.port, f"churn{i}", clean=False, timeout=60)
            drained += len(received_until(c, 1000, True, 600, idle=10, dedup=False))
            c.close()
        rss, hwm = broker.rss_mb()
        return f"{drained}/{sessions * 1000} drained", rss, hwm
    finally:
        broker.stop()


CASES = {
    "1": ("PINGREQ flood, never reading (64 MiB budget)", case1),
    "2a": ("resume with 50 x 500 KB queued, QoS 1", case2a),
    "2b": ("200 x 100 KB retained, QoS 1 subscriber", case2b),
    "2c": ("200 x 100 KB QoS 1, acks in batches of 32", case2c),
    "3": ("100 offline sessions x 1,000 x 4 KB, QoS 0 pair", case3),
    "4": ("3 offline sessions, 7 x 65,000 B user properties (64 MiB budget)", case4),
    "5a": ("200 x 100 KB retained, QoS 0 subscriber", lambda b, a: case5(b, 200, 100_000)),
    "5b": ("20,000 x 1 KB retained, QoS 0 subscriber", lambda b, a: case5(b, 20_000, 1_000)),
    "q": ("queue churn: 20 sessions x 1,000 x 4 KB in and out", queue_churn),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, help="the shardmq binary")
    parser.add_argument("--cases", default=",".join(c for c in CASES if c != "q"))
    parser.add_argument("--flood-secs", type=int, default=15)
    parser.add_argument("--case4-messages", type=int, default=1000)
    parser.add_argument("--broker-prefix", default="", help="command to run the broker under")
    args = parser.parse_args()
    Broker.prefix = args.broker_prefix.split()
    print(f"| case | {os.path.basename(args.broker)} result | RSS MB | peak RSS MB |")
    print("|---|---|---|---|")
    for name in args.cases.split(","):
        title, run = CASES[name]
        started = time.monotonic()
        try:
            result, rss, hwm = run(args.broker, args)
        except Exception as error:  # a case that fails is reported, the others still run
            result, rss, hwm = f"error: {error}", float("nan"), float("nan")
        took = time.monotonic() - started
        print(f"| {name}: {title} | {result} ({took:.0f} s) | {rss:.0f} | {hwm:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
