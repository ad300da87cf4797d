// A Sparkplug B edge node with one device, for twinflow's interop tests: its own encoder
// (Eclipse Tahu's sparkplug-payload) over mqtt.js, in its own process.
//
//   node sparkplug_edge.js <mqtt port> <group> <node> <device>
//
// On connect (with an NDEATH will): NBIRTH (bdSeq, Node Control/Rebirth, Uptime), DBIRTH with
// Motor/Speed Int32 alias 10, Motor/Running Boolean alias 11, Motor/Temp Float alias 12, Mode String
// alias 13. Then it reads commands from stdin, one per line:
//   data          DDATA by alias only: Speed -5 then 1450, Running true, Temp 61.5 (own timestamps)
//   null          DDATA: Temp is null (Sparkplug is_null)
//   gap           DDATA whose seq skips one (the host must ask for a rebirth)
//   ddeath        DDEATH of the device
//   ndeath        NDEATH (as the broker would send the will)
//   unknownalias  DDATA with alias 99, never born
// It answers NCMD "Node Control/Rebirth" with a new NBIRTH + DBIRTH and DCMD writes with a DDATA of
// the new value. Every event is printed as a JSON line: {"event": ...}.
"use strict";
const mqtt = require("mqtt");
const sparkplug = require("sparkplug-payload").get("spBv1.0");

const [port, group, node, device] = [Number(process.argv[2]), process.argv[3], process.argv[4], process.argv[5]];
const base = `spBv1.0/${group}`;
let seq = 0;
let bdSeq = 0;
const state = { speed: 1450, running: true, temp: 61.5, mode: "AUTO" };
const say = (event, extra = {}) => console.log(JSON.stringify({ event, ...extra }));

const nextSeq = () => {
  const s = seq;
  seq = (seq + 1) % 256;
  return s;
};
const deathPayload = () => sparkplug.encodePayload({ timestamp: Date.now(), metrics: [{ name: "bdSeq", type: "UInt64", value: bdSeq }] });

const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
  clientId: `twinflow-interop-edge-${node}-${process.pid}`,
  clean: true,
  will: { topic: `${base}/NDEATH/${node}`, payload: deathPayload(), qos: 1, retain: false },
});

function publish(kind, payload, withDevice = true) {
  const topic = `${base}/${kind}/${node}` + (withDevice ? `/${device}` : "");
  client.publish(topic, sparkplug.encodePayload(payload), { qos: 1 });
  say("published", { kind, seq: payload.seq });
}

function births() {
  seq = 0;
  const now = Date.now();
  publish(
    "NBIRTH",
    {
      timestamp: now,
      seq: nextSeq(),
      metrics: [
        { name: "bdSeq", type: "UInt64", value: bdSeq },
        { name: "Node Control/Rebirth", type: "Boolean", value: false },
        { name: "Uptime", alias: 1, type: "Int64", value: 0 },
      ],
    },
    false,
  );
  publish("DBIRTH", {
    timestamp: now,
    seq: nextSeq(),
    metrics: [
      { name: "Motor/Speed", alias: 10, type: "Int32", value: state.speed },
      { name: "Motor/Running", alias: 11, type: "Boolean", value: state.running },
      { name: "Motor/Temp", alias: 12, type: "Float", value: state.temp },
      { name: "Mode", alias: 13, type: "String", value: state.mode },
    ],
  });
}

client.on("connect", () => {
  client.subscribe([`${base}/NCMD/${node}`, `${base}/DCMD/${node}/${device}`], { qos: 1 }, () => {
    births();
    say("ready");
  });
});

client.on("message", (topic, message) => {
  const payload = sparkplug.decodePayload(message);
  for (const m of payload.metrics || []) {
    if (topic.includes("/NCMD/") && m.name === "Node Control/Rebirth" && m.value) {
      say("rebirth_requested");
      bdSeq += 0; // same MQTT session: same bdSeq
      births();
    } else if (topic.includes("/DCMD/")) {
      say("dcmd", { metric: m.name, value: m.value, type: m.type });
      if (m.name === "Motor/Speed") state.speed = Number(m.value);
      if (m.name === "Motor/Running") state.running = Boolean(m.value);
      publish("DDATA", { timestamp: Date.now(), seq: nextSeq(), metrics: [{ alias: m.name === "Motor/Speed" ? 10 : 11, type: m.type, value: m.value }] });
    }
  }
});

const commands = {
  data() {
    const t = Date.now();
    publish("DDATA", { timestamp: t, seq: nextSeq(), metrics: [{ alias: 10, type: "Int32", value: -5, timestamp: t - 100 }] });
    publish("DDATA", {
      timestamp: t,
      seq: nextSeq(),
      metrics: [
        { alias: 10, type: "Int32", value: 1450, timestamp: t },
        { alias: 11, type: "Boolean", value: true, timestamp: t },
        { alias: 12, type: "Float", value: 61.5, timestamp: t },
      ],
    });
  },
  null() {
    publish("DDATA", { timestamp: Date.now(), seq: nextSeq(), metrics: [{ alias: 12, type: "Float", value: null, isNull: true }] });
  },
  gap() {
    nextSeq();
    publish("DDATA", { timestamp: Date.now(), seq: nextSeq(), metrics: [{ alias: 10, type: "Int32", value: 999 }] });
  },
  ddeath() {
    publish("DDEATH", { timestamp: Date.now(), seq: nextSeq(), metrics: [] });
  },
  ndeath() {
    client.publish(`${base}/NDEATH/${node}`, deathPayload(), { qos: 1 });
    say("published", { kind: "NDEATH" });
  },
  unknownalias() {
    publish("DDATA", { timestamp: Date.now(), seq: nextSeq(), metrics: [{ alias: 99, type: "Int32", value: 1 }] });
  },
};

require("readline")
  .createInterface({ input: process.stdin })
  .on("line", (line) => {
    const cmd = commands[line.trim()];
    if (cmd) cmd();
    else say("unknown_command", { line });
  });
const stop = () => client.end(false, () => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
