"""`twinflow mapping listen-mqtt` as a user runs it, against the stack's Mosquitto: third-party payload
shapes (Tasmota-like nested JSON, Shelly-like plain numbers per topic, a PLC's list of named metrics,
a Sparkplug B edge node from Eclipse Tahu's encoder) published by separate clients → the listing →
a mapping skeleton → `twinflow bridge mqtt` on the written file puts the values on Kafka under the
derived twin ids. An unreachable broker, a silent topic and a bad filter fail fast, without traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from connectors.bridges.mapping.loading import load_mapping
from operators.records.envelope import decode
from tests.interop_nodes import NodeProcess
from tests.process_helpers import start_twinflow, stop

from .plant_helpers import consume, free_port, private_settings
from .test_mapping_browse import ROOT, twinflow

pytestmark = pytest.mark.integration


class Devices:
    """Third-party-style publishers under ``prefix``, every 0.2 s until stopped (their own paho client)."""

    def __init__(self, port: int, prefix: str) -> None:
        self.prefix = prefix
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-devices-{prefix}")
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Devices:
        self._thread.start()
        return self

    def _run(self) -> None:
        p, i = self.prefix, 0
        while not self._stop.wait(0.2):
            i += 1
            for dev in ("tasmota_A1", "tasmota_B2"):  # Tasmota tele/<device>/SENSOR, zone-less Time
                energy = {"Power": 40 + i % 5, "Voltage": 230.1, "Total": 1.5}
                sensor = {"Time": "2026-01-01T10:00:00", "ENERGY": energy, "TempUnit": "C",
                          "AM2301": {"Temperature": 21.5, "Humidity": 40}}  # fmt: skip
                self.client.publish(f"{p}/tele/{dev}/SENSOR", json.dumps(sensor))
                self.client.publish(f"{p}/tele/{dev}/LWT", "Online", retain=False)
            for dev in ("shelly1pm-AA", "shelly1pm-BB"):  # Shelly Gen1: one plain value per topic
                self.client.publish(f"{p}/shellies/{dev}/relay/0/power", f"{12.5 + i % 3}")
                self.client.publish(f"{p}/shellies/{dev}/relay/0", "on")
                self.client.publish(f"{p}/shellies/{dev}/temperature", "41.2")
            metrics = {  # a PLC's MQTT publisher: a list of named metrics, epoch-ms timestamp, quality
                "ts": int(time.time() * 1000),
                "quality": 192,
                "metrics": [{"name": "temp", "value": 61.5}, {"name": "speed", "value": 1450 + i % 7},
                            {"name": "running", "value": True}],
            }  # fmt: skip
            self.client.publish(f"{p}/plc7/press-4/metrics", json.dumps(metrics))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.client.loop_stop()
        self.client.disconnect()


def _rebirth(port: int, group: str, node: str) -> None:
    """What a Sparkplug host sends to make an edge node publish its births again."""
    from connectors.sparkplug.codec import encode_payload
    from operators.devices.sparkplug_session import BOOLEAN, REBIRTH_METRIC

    body = encode_payload([(REBIRTH_METRIC, BOOLEAN, True)], seq=None, ts_ms=int(time.time() * 1000))
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"spBv1.0/{group}/NCMD/{node}", body, qos=1).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


def test_listen_to_third_party_devices_write_a_mapping_and_bridge_it(tmp_path: Path) -> None:
    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    port, prefix, group, node = settings.mqtt.port, f"it-listen-{uid}", f"itl{uid}", f"edge{uid}"
    out = tmp_path / "heard.toml"
    edge = NodeProcess("sparkplug_edge.js", port, group, node, "pump1")
    devices = Devices(port, prefix).start()
    try:
        edge.wait_for('"ready"', 30)  # its births went out before the listener: a rebirth brings them again
        env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, "-m", "twinflow.cli.main", "mapping", "listen-mqtt", "--topic", f"{prefix}/#"]
        argv += ["--topic", f"spBv1.0/{group}/#", "--seconds", "3", "--json", "--mapping-out", str(out)]
        listener = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        time.sleep(1.5)  # the listener has subscribed
        _rebirth(port, group, node)
        edge.wait_for("rebirth_requested", 10)
        edge.send("data")
        stdout, stderr = listener.communicate(timeout=30)
        assert listener.returncode == 0, stdout + stderr
        assert "Traceback" not in stderr

        # The listing: kinds, paths in the mapping's syntax, examples, timestamp and quality fields.
        doc = json.loads(stdout)
        topics = {t["topic"].removeprefix(prefix + "/"): t for t in doc["topics"] if t["topic"].startswith(prefix)}
        sensor = topics["tele/tasmota_A1/SENSOR"]
        assert sensor["payload"] == "JSON object" and sensor["messages"] >= 5 and sensor["rate_per_s"] > 1
        assert {v["path"] for v in sensor["values"]} == {
            *("ENERGY.Power", "ENERGY.Voltage", "ENERGY.Total", "AM2301.Temperature", "AM2301.Humidity")
        }
        assert sensor["timestamp"]["path"] == "Time" and not sensor["timestamp"]["usable"]  # no zone: not used
        assert [(t["path"], t["values"]) for t in sensor["texts"]] == [("TempUnit", ["C"])]
        power = topics["shellies/shelly1pm-AA/relay/0/power"]
        assert power["payload"] == "plain number" and isinstance(power["example"], float)
        relay = topics["shellies/shelly1pm-AA/relay/0"]
        assert (relay["payload"], relay["text_values"], relay["more_text_values"]) == ("text", ["on"], False)
        plc = topics["plc7/press-4/metrics"]
        assert {v["path"]: v["example"] for v in plc["values"]}.keys() == {
            "metrics[name=temp].value",
            "metrics[name=speed].value",
            "metrics[name=running].value",
        }
        assert plc["timestamp"]["usable"] and plc["quality"] == {"path": "quality", "example": 192}
        sp = {t["topic"]: t for t in doc["topics"] if t["topic"].startswith("spBv1.0/")}
        ddata = sp[f"spBv1.0/{group}/DDATA/{node}/pump1"]
        assert ddata["payload"] == "Sparkplug B" and ddata["sparkplug"]["device"] == "pump1"
        assert {"Motor/Speed", "Motor/Running", "Motor/Temp"} <= {v["path"] for v in ddata["values"]}  # by alias

        # The skeleton: topic templates for the devices that publish alike, the rest per device.
        mapping = load_mapping(out)
        assets = {a.twin_id: a for a in mapping.assets}
        assert set(assets) == {"tele-{device}", "shellies-{device}", "press-4", "pump1", node}, out.read_text()
        tele = assets["tele-{device}"]
        assert tele.topic == f"{prefix}/tele/{{device}}/SENSOR"
        assert tele.params["ENERGY.Power"].path == "ENERGY.Power"
        shelly = assets["shellies-{device}"].params
        assert set(shelly) == {"relay.0.power", "temperature", "relay.0"}
        assert shelly["relay.0"].type == "text"
        assert assets["shellies-{device}"].topic_of("relay.0") == f"{prefix}/shellies/{{device}}/relay/0"
        assert tele.params["LWT"].type == "text" and tele.params["TempUnit"].type == "text"
        assert {shelly["relay.0.power"].topic, assets["shellies-{device}"].topic} & {
            f"{prefix}/shellies/{{device}}/relay/0/power"
        }
        press = assets["press-4"]
        assert press.ts_path == "ts" and press.params["speed"].path == "metrics[name=speed].value"
        pump = assets["pump1"]
        assert (pump.sparkplug.group, pump.sparkplug.node, pump.sparkplug.device) == (group, node, "pump1")
        assert pump.params["Motor.Speed"].metric == "Motor/Speed"
        assert (pump.params["Mode"].metric, pump.params["Mode"].type) == ("Mode", "text")
        assert not any(p.writable for a in mapping.assets for p in a.params.values())
        text = out.read_text()
        assert "No parameter is writable" in text and 'LWT = { topic = "' in text
        assert 'type = "text" }  # text, heard: "Online"' in text
        assert "wrote " in stderr and "5 asset(s) (2 topic template(s))" in stderr

        check = twinflow("mapping", "check", str(out))
        assert check.returncode == 0, check.stdout + check.stderr

        # The bridge on the written file: every derived twin's values reach Kafka.
        benv = {
            **env,
            "TWINFLOW_TOPICS__RAW": settings.topics.raw,
            "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
            "TWINFLOW_TWIN__COMMANDS_TOPIC": settings.twin.commands_topic,
            "TWINFLOW_TWIN__ACKS_TOPIC": settings.twin.acks_topic,
            "TWINFLOW_BRIDGE__COMMAND_GROUP": settings.bridge.command_group,
            "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp_path / "bridge-buffer"),
        }
        twins = {b"tele-tasmota_A1", b"tele-tasmota_B2", b"shellies-shelly1pm-AA", b"shellies-shelly1pm-BB"}
        twins |= {b"press-4", b"pump1"}
        stop_data = threading.Event()

        def edge_data() -> None:  # the bridge asks for a rebirth on data by alias; then reads it
            while not stop_data.wait(0.5):
                edge.send("data")

        feeder = threading.Thread(target=edge_data, daemon=True)
        with open(tmp_path / "bridge.log", "wb") as log:
            bridge = start_twinflow(["bridge", "mqtt", "--mapping", str(out)], benv, log)
            feeder.start()
            try:
                msgs = consume(settings, settings.topics.raw, lambda ms: twins <= {m.key() for m in ms}, 30)
            finally:
                stop_data.set()
                code = stop(bridge)
        assert twins <= {m.key() for m in msgs}, (tmp_path / "bridge.log").read_text()
        assert code == 0, (tmp_path / "bridge.log").read_text()
        readings: dict[bytes, set[str]] = {}
        texts: dict[bytes, dict[str, str]] = {}
        for m in msgs:
            env = decode(m.value(), key=m.key())
            readings.setdefault(m.key(), set()).update(env.readings)
            texts.setdefault(m.key(), {}).update(env.text or {})
        assert {"ENERGY.Power", "AM2301.Temperature"} <= readings[b"tele-tasmota_B2"]
        assert {"relay.0.power", "temperature"} <= readings[b"shellies-shelly1pm-BB"]
        assert {"relay.0": "on"}.items() <= texts[b"shellies-shelly1pm-BB"].items()
        assert {"LWT": "Online", "TempUnit": "C"}.items() <= texts[b"tele-tasmota_A1"].items()
        assert {"temp", "speed", "running"} <= readings[b"press-4"]
        assert {"Motor.Speed", "Motor.Temp"} <= readings[b"pump1"]
    finally:
        devices.stop()
        edge.stop()


def test_unreachable_broker_silent_topic_and_usage_errors(tmp_path: Path) -> None:
    closed = free_port()
    started = time.monotonic()
    run = twinflow("mapping", "listen-mqtt", "--port", str(closed), "--mapping-out", str(tmp_path / "x.toml"))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert f"cannot connect to mqtt://127.0.0.1:{closed}: connection refused" in run.stderr
    assert time.monotonic() - started < 5 and not (tmp_path / "x.toml").exists()

    silent = twinflow("mapping", "listen-mqtt", "--topic", f"it-silent-{uuid.uuid4().hex}/#", "--seconds", "0.5")
    assert silent.returncode == 1 and "no message on it-silent-" in silent.stderr, silent.stderr

    bad = twinflow("mapping", "listen-mqtt", "--topic", "a/#/b")
    assert bad.returncode == 2 and "is not a topic filter" in bad.stderr, bad.stderr
    sys_topics = twinflow("mapping", "listen-mqtt", "--topic", "$SYS/#")
    assert sys_topics.returncode == 2 and "broker topics" in sys_topics.stderr
    existing = tmp_path / "exists.toml"
    existing.write_text("")
    kept = twinflow("mapping", "listen-mqtt", "--mapping-out", str(existing))
    assert kept.returncode == 2 and "pass --force" in kept.stderr


TEXT_PUBLISHER = """
import json, sys, time
import paho.mqtt.client as mqtt

port, p = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-text-{p}")
c.connect("127.0.0.1", port)
c.loop_start()
i = 0
while True:
    i += 1
    on = i % 2 == 0
    c.publish(f"{p}/stat/tasmota_C3/POWER", "ON" if on else "OFF")  # Tasmota: plain text
    c.publish(f"{p}/tele/tasmota_C3/STATE", json.dumps({"POWER": "ON" if on else "OFF", "Wifi": {"RSSI": 70 + i % 9}}))
    c.publish(f"{p}/shelly-d4/status", json.dumps({"state": "on" if on else "off", "apower": 12.5}))  # Shelly
    # A PLC gateway: a mode, a batch id (more distinct texts than the listing keeps), a plain-text state.
    gw = {"mode": "AUTO" if i % 3 else "MANUAL", "batch": f"B-{i}", "rpm": 1450}
    c.publish(f"{p}/gw9/line2/data", json.dumps(gw))
    c.publish(f"{p}/gw9/line2/state", '"running"' if i % 4 else "stopped")
    time.sleep(0.1)
"""


def test_text_values_heard_written_and_bridged_to_kafka(tmp_path: Path) -> None:
    """Devices that publish text (Tasmota POWER ON/OFF, Shelly state on/off, a gateway's mode and plain-text
    state): listen-mqtt lists each text field with its distinct values, writes it as `type = "text"`, and
    `bridge mqtt` on that file puts the texts in the envelopes' `text` on Kafka."""
    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    prefix, out = f"it-text-{uid}", tmp_path / "texts.toml"
    env = {**os.environ, "COLUMNS": "300", "PYTHONPATH": str(ROOT)}
    publisher = subprocess.Popen([sys.executable, "-c", TEXT_PUBLISHER, str(settings.mqtt.port), prefix], env=env)
    try:
        run = twinflow("mapping", "listen-mqtt", "--topic", f"{prefix}/#", "--seconds", "3", "--json",
                       "--mapping-out", str(out))  # fmt: skip
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout + run.stderr
        topics = {t["topic"].removeprefix(prefix + "/"): t for t in json.loads(run.stdout)["topics"]}
        power = topics["stat/tasmota_C3/POWER"]
        assert power["payload"] == "text" and sorted(power["text_values"]) == ["OFF", "ON"]

        def texts(topic: str) -> dict[str, tuple[list[str], bool]]:
            return {t["path"]: (sorted(t["values"]), t["more_values"]) for t in topics[topic]["texts"]}

        assert texts("tele/tasmota_C3/STATE") == {"POWER": (["OFF", "ON"], False)}
        assert texts("shelly-d4/status") == {"state": (["off", "on"], False)}
        gw = texts("gw9/line2/data")
        assert gw["mode"] == (["AUTO", "MANUAL"], False)
        assert len(gw["batch"][0]) == 10 and gw["batch"][1]  # bounded: the first ten, and "more"
        assert sorted(topics["gw9/line2/state"]["text_values"]) == ["running", "stopped"]

        table = twinflow("mapping", "listen-mqtt", "--topic", f"{prefix}/shelly-d4/#", "--seconds", "1")
        assert "state = text: 'o" in table.stdout and "apower = 12.5" in table.stdout, table.stdout

        mapping = load_mapping(out)
        params = {(a.twin_id, n): p for a in mapping.assets for n, p in a.params.items()}
        text_params = {k for k, p in params.items() if p.type == "text"}
        assert {("line2", "mode"), ("line2", "batch"), ("line2", "state"), ("shelly-d4", "state")} <= text_params
        assert {n for _, n in text_params} >= {"POWER"} and ("line2", "rpm") not in text_params
        written = out.read_text()
        assert 'mode = { path = "mode", type = "text" }  # text, heard: "' in written
        assert '"AUTO"' in written and '"MANUAL"' in written and ", …" in written

        benv = {
            **env,
            "TWINFLOW_TOPICS__RAW": settings.topics.raw,
            "TWINFLOW_TOPICS__DLQ": settings.topics.dlq,
            "TWINFLOW_TWIN__COMMANDS_TOPIC": settings.twin.commands_topic,
            "TWINFLOW_TWIN__ACKS_TOPIC": settings.twin.acks_topic,
            "TWINFLOW_BRIDGE__COMMAND_GROUP": settings.bridge.command_group,
            "TWINFLOW_BRIDGE__BUFFER__SPILL_DIR": str(tmp_path / "bridge-buffer"),
        }
        heard: dict[bytes, dict[str, set[str]]] = {}

        def enough(msgs: list) -> bool:
            for m in msgs[len(seen) :]:
                seen.append(m)
                for name, value in (decode(m.value(), key=m.key()).text or {}).items():
                    heard.setdefault(m.key(), {}).setdefault(name, set()).add(value)
            line2, shelly = heard.get(b"line2", {}), heard.get(b"shelly-d4", {})
            return len(line2.get("state", ())) == 2 and len(shelly.get("state", ())) == 2 and "mode" in line2

        seen: list = []
        with open(tmp_path / "bridge.log", "wb") as log:
            bridge = start_twinflow(["bridge", "mqtt", "--mapping", str(out)], benv, log)
            try:
                consume(settings, settings.topics.raw, enough, 30)
            finally:
                code = stop(bridge)
        assert code == 0, (tmp_path / "bridge.log").read_text()
        assert heard[b"line2"]["state"] == {"running", "stopped"}, heard  # plain text, a JSON string unquoted
        assert heard[b"line2"]["mode"] <= {"AUTO", "MANUAL"} and heard[b"shelly-d4"]["state"] == {"on", "off"}
        power_twins = [k for k, v in heard.items() if "POWER" in v]
        assert len(power_twins) == 2 and all(heard[k]["POWER"] <= {"ON", "OFF"} for k in power_twins), heard
    finally:
        publisher.terminate()
        publisher.wait(10)
