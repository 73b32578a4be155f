#!/usr/bin/env python3
"""Interoperability with Mosquitto's command-line clients (mosquitto_pub, mosquitto_sub).

Real third-party client binaries, MQTT 3.1.1 and 5.0: QoS levels, v5 properties as printed by
mosquitto_sub's format specifiers, retained messages, persistent sessions, wills, line mode
ordering and binary payloads. Every client process runs under a timeout.

Usage: mosquitto_clients.py --port N [--host 127.0.0.1] [--shards-hint S] [--only REGEX]
"""

import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree

import os
import shutil
import subprocess
import tempfile
import threading
import time

from harness import Suite, check

suite = Suite(__doc__.splitlines()[0])
scenario = suite.scenario
TOOL_TIMEOUT_S = 15


def tool(name):
    path = shutil.which(name)
    if path is None:
        print("FAIL setup: %s is not installed (apt-get install mosquitto-clients)" % name)
        sys.exit(2)
    return path


def base_args(ctx, version):
    return ["-h", ctx.host, "-p", str(ctx.port), "-V", {4: "mqttv311", 5: "mqttv5"}[version]]


def pub(ctx, topic, *args, version=4, stdin=None):
    """Runs mosquitto_pub to completion; returns its exit code and output."""
    cmd = [tool("mosquitto_pub")] + base_args(ctx, version) + ["-t", topic] + list(args)
    done = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=TOOL_TIMEOUT_S)
    check(done.returncode == 0, "mosquitto_pub %s failed (%d): %s" % (
        " ".join(args), done.returncode, done.stdout.decode(errors="replace")))


class Sub:
    """A mosquitto_sub process; `start` returns once the broker acknowledged the subscription
    (seen in its -d debug output), so publishes sent afterwards must reach it."""

    MARK = "MSG|"

    def __init__(self, ctx, topic, *args, version=4, fmt="%p", wait_suback=True):
        cmd = [tool("mosquitto_sub")] + base_args(ctx, version) + [
            "-t", topic, "-d", "-F", self.MARK + fmt] + list(args)
        # mosquitto_sub block-buffers a piped stdout; stdbuf makes it line-buffered so the
        # SUBACK line is seen when it happens.
        cmd = [tool("stdbuf"), "-oL"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ctx._clients.append(self)
        self.lines = []
        self.suback = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait_suback:
            check(self.suback.wait(10.0), "mosquitto_sub got no SUBACK: %s" % self.lines)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if "received SUBACK" in line:
                self.suback.set()

    def messages(self):
        return [line[len(self.MARK):] for line in self.lines if line.startswith(self.MARK)]

    def wait_exit(self, timeout=TOOL_TIMEOUT_S):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise
        self.reader.join(2.0)
        return code

    def wait_messages(self, count, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.messages()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.messages()

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@scenario("cli_pub_sub_all_qos", "mosquitto_pub -> mosquitto_sub, QoS 0/1/2, MQTT 3.1.1 and 5")
def all_qos(ctx):
    for version in (4, 5):
        topic = ctx.topic("q%d" % version)
        sub = Sub(ctx, topic, "-q", "2", "-C", "3", "-W", "10", version=version, fmt="%q %p")
        for qos in (0, 1, 2):
            pub(ctx, topic, "-q", str(qos), "-m", "qos %d" % qos, version=version)
        check(sub.wait_exit() == 0, "mosquitto_sub did not get 3 messages: %s" % sub.lines)
        check(sorted(sub.messages()) == ["0 qos 0", "1 qos 1", "2 qos 2"],
              "v%d messages %s" % (version, sub.messages()))


@scenario("cli_v5_properties", "[MQTT-3.3.2-4] [MQTT-3.3.2-6] [MQTT-3.3.2-15] [MQTT-3.3.2-16] "
          "[MQTT-3.3.2-17] [MQTT-3.3.2-20] through mosquitto_pub -D / mosquitto_sub -F")
def v5_properties(ctx):
    topic = ctx.topic("props")
    sub = Sub(ctx, topic, "-q", "1", "-C", "1", "-W", "10", version=5,
              fmt="%P|%C|%R|%F|%E|%p")
    pub(ctx, topic, "-q", "1", "-m", "with properties",
        "-D", "PUBLISH", "user-property", "colour", "blue",
        "-D", "PUBLISH", "content-type", "text/x-interop",
        "-D", "PUBLISH", "response-topic", ctx.topic("reply"),
        "-D", "PUBLISH", "payload-format-indicator", "1",
        "-D", "PUBLISH", "message-expiry-interval", "300", version=5)
    check(sub.wait_exit() == 0, "no message: %s" % sub.lines)
    fields = sub.messages()[0].split("|")
    check(fields[0] == "colour:blue" and fields[1] == "text/x-interop" and
          fields[2] == ctx.topic("reply") and fields[3] in ("1", "01", "0x01") and
          fields[5] == "with properties", "properties as printed by mosquitto_sub: %s" % fields)
    check(fields[4].isdigit() and 0 < int(fields[4]) <= 300,
          "Message Expiry Interval %r" % fields[4])


@scenario("cli_retained", "[MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-10] with mosquitto_pub -r")
def retained(ctx):
    for version in (4, 5):
        topic = ctx.topic("r%d" % version)
        ctx.remember_retained(topic)
        pub(ctx, topic, "-r", "-q", "1", "-m", "kept", version=version)
        sub = Sub(ctx, topic, "--retained-only", "-C", "1", "-W", "5", version=version,
                  fmt="%r %p")
        sub.wait_exit()
        check(sub.messages() == ["1 kept"], "v%d retained: %s" % (version, sub.messages()))
        pub(ctx, topic, "-r", "-q", "1", "-n", version=version)
        sub = Sub(ctx, topic, "-W", "2", version=version, fmt="%r %p")
        sub.wait_exit()
        check(sub.messages() == [], "v%d retained after clearing: %s" % (
            version, sub.messages()))


@scenario("cli_persistent_session", "[MQTT-3.1.2-5] [MQTT-3.1.2-23] with mosquitto_sub -c")
def persistent(ctx):
    for version in (4, 5):
        cid = ctx.cid("c%d" % version)
        topic = ctx.topic("s%d" % version)
        expiry = ["-x", "60"] if version == 5 else []
        first = Sub(ctx, topic, "-c", "-i", cid, "-q", "1", "-E", *expiry, version=version)
        check(first.wait_exit() == 0, "mosquitto_sub -E failed: %s" % first.lines)
        pub(ctx, topic, "-q", "1", "-m", "while away", version=version)
        back = Sub(ctx, topic, "-c", "-i", cid, "-q", "1", "-C", "1", "-W", "10", *expiry,
                   version=version, wait_suback=False)
        check(back.wait_exit() == 0, "queued message not delivered: %s" % back.lines)
        check(back.messages() == ["while away"], "v%d: %s" % (version, back.messages()))
        # End the session.
        gone = Sub(ctx, topic, "-i", cid, "-E", version=version)
        gone.wait_exit()


@scenario("cli_will_on_kill", "[MQTT-3.1.2-8] will of a killed mosquitto_sub")
def will_on_kill(ctx):
    for version in (4, 5):
        will_topic = ctx.topic("will%d" % version)
        watcher = Sub(ctx, will_topic, "-C", "1", "-W", "10", version=version)
        victim = Sub(ctx, ctx.topic("idle"), "--will-topic", will_topic, "--will-payload",
                     "gone", "--will-qos", "1", version=version)
        victim.kill()
        check(watcher.wait_exit() == 0, "no will after SIGKILL: %s" % watcher.lines)
        check(watcher.messages() == ["gone"], "v%d will %s" % (version, watcher.messages()))


@scenario("cli_line_mode_order", "[MQTT-4.6.0-5] 50 lines from mosquitto_pub -l, in order")
def line_mode(ctx):
    topic = ctx.topic("lines")
    sub = Sub(ctx, topic, "-q", "1", "-C", "50", "-W", "10")
    lines = b"".join(b"line %02d\n" % i for i in range(50))
    pub(ctx, topic, "-q", "1", "-l", stdin=lines)
    check(sub.wait_exit() == 0, "not all lines arrived: %d" % len(sub.messages()))
    check(sub.messages() == ["line %02d" % i for i in range(50)], "order %s" % sub.messages())


@scenario("cli_binary_file_payload", "a 60 kB binary file via mosquitto_pub -f, hex from "
          "mosquitto_sub -F %x")
def binary_file(ctx):
    topic = ctx.topic("file")
    data = bytes((i * 131 + 7) % 256 for i in range(60_000))
    with tempfile.NamedTemporaryFile(delete=False) as handle:
        handle.write(data)
        path = handle.name
    try:
        sub = Sub(ctx, topic, "-q", "1", "-C", "1", "-W", "10", version=5, fmt="%x")
        pub(ctx, topic, "-q", "1", "-f", path, version=5)
        check(sub.wait_exit() == 0, "file payload not received")
        got = sub.messages()[0]
        check(got == data.hex(), "payload altered: %d hex chars, want %d" % (
            len(got), 2 * len(data)))
    finally:
        os.unlink(path)


if __name__ == "__main__":
    suite.main()
