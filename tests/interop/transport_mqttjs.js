// MQTT.js over ws:// or wss:// (tests/it/transport_interop.rs): MQTT 5 subscribe, a QoS 1 publish
// of 70,000 bytes and its delivery back. usage: node transport_mqttjs.js URL [CAFILE]
// .ci/test installs MQTT.js into target/npm (git-ignored); NODE_PATH points there.
const mqtt = require('mqtt');
const fs = require('fs');
const [url, ca] = process.argv.slice(2);
const opts = { clientId: 'mqttjs-' + Math.random().toString(16).slice(2), protocolVersion: 5, connectTimeout: 5000, reconnectPeriod: 0 };
if (ca) opts.ca = fs.readFileSync(ca);
const c = mqtt.connect(url, opts);
const payload = Buffer.alloc(70000, 'y');
const timer = setTimeout(() => { console.log('FAIL timeout'); process.exit(1); }, 8000);
c.on('error', (e) => { console.log('FAIL ' + e.message); process.exit(1); });
c.on('connect', () => {
  c.subscribe('js/t', { qos: 1 }, (err) => {
    if (err) { console.log('FAIL subscribe ' + err); process.exit(1); }
    c.publish('js/t', payload, { qos: 1 });
  });
});
c.on('message', (topic, msg) => {
  clearTimeout(timer);
  const ok = msg.equals(payload);
  console.log(ok ? 'OK' : 'FAIL payload');
  c.end(false, () => process.exit(ok ? 0 : 1));
});
