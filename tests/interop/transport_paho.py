"""paho-mqtt over TLS or WebSocket (tests/it/transport_interop.rs): MQTT 5 subscribe, a QoS 1
publish of 70,000 bytes (several TLS records and WebSocket frames) and its delivery back.

usage: transport_paho.py tcp|websockets PORT tls|plain CAFILE
"""
import sys, time, paho.mqtt.client as mqtt
transport, port, use_tls, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls", sys.argv[4]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-" + transport, transport=transport, protocol=mqtt.MQTTv5)
if transport == "websockets":
    c.ws_set_options(path="/mqtt")
if use_tls:
    c.tls_set(ca_certs=ca)
got = []
c.on_message = lambda cl, u, m: got.append(m.payload)
c.connect("localhost", port)
c.loop_start()
c.subscribe("paho/t", 1)
time.sleep(0.3)
c.publish("paho/t", b"x" * 70000, qos=1)
deadline = time.time() + 5
while not got and time.time() < deadline:
    time.sleep(0.05)
c.disconnect(); c.loop_stop()
print("OK" if got and got[0] == b"x" * 70000 else "FAIL")
sys.exit(0 if got else 1)
