"""A synchronous wrapper around paho-mqtt 2.x for the interop scenarios.

paho runs its network loop in a background thread; this wrapper records every callback and offers
bounded waits (`connect`, `subscribe`, `publish`, `wait_messages`, ...), so a scenario reads as a
sequence of steps. `pause()` stops the loop without a DISCONNECT (the client goes silent, as a
hung client would), `kill()` also shuts the socket (the server sees the network fail).
"""

import socket
import threading
import time

try:
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError as exc:  # pragma: no cover - reported loudly by the scripts
    raise SystemExit("FAIL setup: paho-mqtt 2.x is not installed (python3 -m pip install "
                     "'paho-mqtt>=2,<3'): %s" % exc)

from harness import Failure, check, wait_until

if not hasattr(mqtt, "CallbackAPIVersion"):
    raise SystemExit("FAIL setup: paho-mqtt >= 2.0 is required, found %s" %
                     getattr(mqtt, "__version__", "?"))

PROTOCOLS = {3: mqtt.MQTTv31, 4: mqtt.MQTTv311, 5: mqtt.MQTTv5}


def props(packet_type, **values):
    """paho Properties from keyword arguments, e.g. props(PacketTypes.PUBLISH, ContentType="x")."""
    out = Properties(packet_type)
    for key, value in values.items():
        setattr(out, key, value)
    return out


def prop(properties, name, default=None):
    """A property of a received packet, or `default` when absent."""
    if properties is None:
        return default
    return getattr(properties, name, default)


class Message:
    def __init__(self, msg):
        self.topic = msg.topic
        self.payload = bytes(msg.payload)
        self.qos = msg.qos
        self.retain = bool(msg.retain)
        self.dup = bool(msg.dup)
        self.mid = msg.mid
        self.properties = getattr(msg, "properties", None)
        self.time = time.monotonic()

    def __repr__(self):
        return "<msg %s %r q%d r%d d%d>" % (self.topic, self.payload[:30], self.qos,
                                             self.retain, self.dup)


class PahoClient:
    def __init__(self, ctx, client_id, version=4, clean_session=True, manual_ack=False):
        self.ctx = ctx
        self.version = version
        kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2,
                  "client_id": client_id, "protocol": PROTOCOLS[version]}
        if version != 5:
            kwargs["clean_session"] = clean_session
        self.client = mqtt.Client(**kwargs)
        if manual_ack:
            self.client.manual_ack_set(True)
        self.lock = threading.Lock()
        self.connacks = []
        self.messages = []
        self.subacks = {}
        self.unsubacks = {}
        self.published = {}
        self.disconnects = []
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = self._on_unsubscribe
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect
        self.looping = False

    # -- callbacks (paho's network thread) --
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.connacks.append((reason_code, bool(flags.session_present), properties))

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(Message(msg))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.subacks[mid] = ([rc.value for rc in reason_codes], properties)

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self.lock:
            self.unsubacks[mid] = ([rc.value for rc in reason_codes], properties)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self.lock:
            self.published[mid] = reason_code.value

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.lock:
            self.disconnects.append((reason_code.value, properties))

    # -- steps --
    def connect(self, clean_start=True, keepalive=60, properties=None, will=None,
                expect_success=True, timeout=5.0):
        """Connects and waits for CONNACK. Returns (reason code value, session present, props).

        `will` is a dict: topic, payload, qos, retain, properties.
        """
        if will is not None:
            self.client.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                                 will.get("retain", False), properties=will.get("properties"))
        before = len(self.connacks)
        if self.version == 5:
            self.client.connect(self.ctx.host, self.ctx.port, keepalive=keepalive,
                                clean_start=clean_start, properties=properties)
        else:
            self.client.connect(self.ctx.host, self.ctx.port, keepalive=keepalive)
        self.client.loop_start()
        self.looping = True
        got = wait_until(lambda: len(self.connacks) > before, timeout)
        check(got, "no CONNACK within %.0f s" % timeout)
        reason, present, connack_props = self.connacks[-1]
        if expect_success:
            check(reason.value == 0, "CONNACK reason %s" % reason)
        return reason.value, present, connack_props

    def subscribe(self, subs, properties=None, timeout=5.0):
        """`subs`: list of (filter, qos or SubscribeOptions). Returns the SUBACK reason codes."""
        if self.version == 5:
            subs = [(f, o if isinstance(o, SubscribeOptions) else SubscribeOptions(qos=o))
                    for f, o in subs]
        rc, mid = self.client.subscribe(subs, properties=properties)
        check(rc == mqtt.MQTT_ERR_SUCCESS, "subscribe failed locally: %s" % rc)
        got = wait_until(lambda: mid in self.subacks, timeout)
        check(got, "no SUBACK within %.0f s for %s" % (timeout, subs))
        return self.subacks[mid][0]

    def unsubscribe(self, filters, timeout=5.0):
        rc, mid = self.client.unsubscribe(filters)
        check(rc == mqtt.MQTT_ERR_SUCCESS, "unsubscribe failed locally: %s" % rc)
        got = wait_until(lambda: mid in self.unsubacks, timeout)
        check(got, "no UNSUBACK within %.0f s" % timeout)
        return self.unsubacks[mid][0]

    def publish(self, topic, payload, qos=0, retain=False, properties=None, wait=True,
                timeout=5.0):
        """Publishes; with `wait`, waits for the QoS flow to complete (PUBACK / PUBCOMP)."""
        if retain:
            self.ctx.remember_retained(topic)
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        check(info.rc == mqtt.MQTT_ERR_SUCCESS, "publish failed locally: %s" % info.rc)
        if wait and qos > 0:
            got = wait_until(lambda: info.mid in self.published, timeout)
            check(got, "QoS %d publish to %s not acknowledged within %.0f s" % (
                qos, topic, timeout))
        return info.mid

    def wait_messages(self, count, timeout=5.0):
        """Waits until at least `count` messages arrived; returns a copy of all of them."""
        wait_until(lambda: len(self.messages) >= count, timeout)
        with self.lock:
            return list(self.messages)

    def settle(self, seconds=0.5):
        """Waits a little for stragglers (used after the expected messages arrived)."""
        time.sleep(seconds)
        with self.lock:
            return list(self.messages)

    def clear(self):
        with self.lock:
            self.messages.clear()

    def wait_disconnect(self, timeout=5.0):
        got = wait_until(lambda: self.disconnects, timeout)
        return self.disconnects[0] if got else None

    def disconnect(self, properties=None, reason=None):
        if self.version == 5 and (properties is not None or reason is not None):
            from paho.mqtt.reasoncodes import ReasonCode

            code = ReasonCode(PacketTypes.DISCONNECT, identifier=reason or 0)
            self.client.disconnect(reasoncode=code, properties=properties)
        else:
            self.client.disconnect()
        wait_until(lambda: self.disconnects, 3.0)
        self.stop()

    def pause(self):
        """Stops processing without telling the server: no PINGREQ, no acks, no DISCONNECT."""
        if self.looping:
            self.client.loop_stop()
            self.looping = False

    def kill(self):
        """The network fails: no DISCONNECT is sent, the socket is shut."""
        self.pause()
        sock = self.client.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def stop(self):
        self.pause()

    def close(self):
        """Teardown: leaves quietly whatever the state."""
        try:
            if self.looping:
                self.client.disconnect()
                time.sleep(0.05)
        except Exception:  # noqa: BLE001
            pass
        self.pause()
        try:
            sock = self.client.socket()
            if sock is not None:
                sock.close()
        except Exception:  # noqa: BLE001
            pass


__all__ = ["PahoClient", "props", "prop", "PacketTypes", "Properties", "SubscribeOptions",
           "Failure"]
