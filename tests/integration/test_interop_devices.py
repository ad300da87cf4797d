"""The bridges against third-party device implementations in their own Node.js processes
(tests/interop/): node-opcua servers, jsmodbus servers and a Sparkplug B edge node that encodes
with Eclipse Tahu's sparkplug-payload. Several devices in one mapping file, one going down and
coming back; booleans beside numbers, Bad status without a value, nsu= node ids and browse paths,
a short Modbus reply, every register type, Sparkplug births/data/deaths with aliases, commands."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest

from connectors.kafka.commands import wait_ack
from operators.records.commands import new_command
from operators.records.envelope import decode
from tests.interop_nodes import NodeProcess
from tests.kafka_helpers import produce

from .plant_helpers import consume, free_port, private_settings, send_command, wait_for, write_mapping

pytestmark = pytest.mark.integration


def envelopes(settings, twin: str, done, timeout: float = 30.0) -> list:
    key = twin.encode()
    msgs = consume(settings, settings.topics.raw, lambda ms: done([m for m in ms if m.key() == key]), timeout)
    return [decode(m.value(), key=m.key()) for m in msgs if m.key() == key]


def dead_letters(settings, done, timeout: float = 20.0) -> list[tuple[bytes, dict[str, bytes]]]:
    msgs = consume(
        settings, settings.topics.dlq, lambda ms: done([(m.value(), dict(m.headers())) for m in ms]), timeout
    )
    return [(m.value(), dict(m.headers())) for m in msgs]


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def command(settings, twin: str, parameter: str, value) -> str:
    cmd = new_command(twin, parameter, value)
    send_command(settings, cmd)
    acks = wait_ack(settings, cmd.command_id, 30)
    assert len(acks) == 1, acks
    return acks[0].status + (f": {acks[0].error}" if acks[0].error else "")


# ----------------------------------------------------------------------------- OPC-UA (node-opcua)
UA_TOML = """
[opcua]
publishing_interval_ms = 100
sampling_interval_ms = 100
request_timeout_s = 5
watchdog_s = 2

[devices.ua-a]
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:{pa}/UA/interop"
namespace = "urn:twinflow:interop:a"

[devices.ua-b]
protocol = "opcua"
endpoint = "opc.tcp://127.0.0.1:{pb}/UA/interop"
namespace = "urn:twinflow:interop:b"

[[assets]]
twin_id = "press-a-{uid}"
type = "pump"
protocol = "opcua"
device = "ua-a"
[assets.params]
flow = {{ node = "nsu=urn:twinflow:interop:a;s=Pump1.Flow" }}
running = {{ node = "nsu=urn:twinflow:interop:a;s=Pump1.Running" }}
speed = {{ browse_path = ["Line1", "Pump1", "Speed"] }}
mode = {{ browse_path = ["Line1", "Pump1", "Mode"] }}
temp = {{ node = "nsu=urn:twinflow:interop:a;s=Pump1.Temperature" }}
setpoint = {{ node = "nsu=urn:twinflow:interop:a;s=Pump1.Setpoint", writable = true }}
enable = {{ node = "nsu=urn:twinflow:interop:a;s=Pump1.Enable", writable = true }}
ghost = {{ node = "nsu=urn:twinflow:interop:nowhere;s=Pump1.Flow" }}

[[assets]]
twin_id = "press-b-{uid}"
type = "pump"
protocol = "opcua"
device = "ua-b"
[assets.params]
flow = {{ node = "nsu=urn:twinflow:interop:b;s=Pump2.Flow" }}
running = {{ browse_path = ["Line1", "Pump2", "Running"] }}
"""


@pytest.fixture(scope="module")
def ua(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from connectors.opcua.bridge import OpcuaBridge

    tmp: Path = tmp_path_factory.mktemp("ua")
    uid = uuid.uuid4().hex[:8]
    pa, pb, mport = free_port(), free_port(), free_port()
    servers = {
        "a": NodeProcess("opcua_server.js", pa, "urn:twinflow:interop:a", "Pump1"),
        "b": NodeProcess("opcua_server.js", pb, "urn:twinflow:interop:b", "Pump2"),
    }
    bridge = None
    try:
        for s in servers.values():
            s.wait_for("READY", 60)
        settings = private_settings(tmp, uid)
        mapping = write_mapping(tmp, UA_TOML.format(pa=pa, pb=pb, uid=uid))
        bridge = OpcuaBridge(settings, mapping).start(metrics_port=mport)
        wait_for(lambda: all(d.health.connected for d in bridge.devices.values()), 60, "both OPC-UA servers")
        assert bridge.commands is not None and bridge.commands.assigned.wait(30)
        yield {"uid": uid, "settings": settings, "bridge": bridge, "servers": servers, "pb": pb, "mport": mport}
    finally:
        if bridge is not None:
            bridge.stop(10)
        for s in servers.values():
            s.stop()


def test_opcua_booleans_numbers_texts_and_bad_status_without_value(ua, tmp_path: Path) -> None:
    settings, twin = ua["settings"], f"press-a-{ua['uid']}"

    def complete(ms) -> bool:
        docs = [orjson.loads(m.value()) for m in ms if m.key() == twin.encode()]
        seen = {k for d in docs for k in (*d["readings"], *d.get("text", {}))}
        return {"flow", "running", "speed", "mode", "temp"} <= seen and len(docs) > 10

    raw = consume(settings, settings.topics.raw, complete, 30)
    envs = [decode(m.value(), key=m.key()) for m in raw if m.key() == twin.encode()]
    flows = [e.readings["flow"] for e in envs if "flow" in e.readings]
    assert flows and all(12.5 <= f < 13.6 for f in flows)  # nsu= resolved although the index is 3
    assert {type(e.readings["running"]) for e in envs if "running" in e.readings} == {bool}
    assert any(e.readings.get("speed", 0) >= 1400 for e in envs)  # browse path
    assert {e.text["mode"] for e in envs if e.text and "mode" in e.text} == {"AUTO"}
    temps = [e for e in envs if "temp" in e.readings]
    assert temps and all(
        e.readings["temp"] is None and e.quality == "bad" and e.status == {"temp": "BadSensorFailure"} for e in temps
    )
    # The unknown namespace is logged and counted for that item only.
    health = ua["bridge"].devices["ua-a"].health
    assert "urn:twinflow:interop:nowhere" in health.failing[f"{twin}.ghost"]

    from bytewax.testing import run_main

    from flows.telemetry import build_flow

    # The bridge keeps producing: the telemetry flow stores a copy of what was read so far.
    stored = private_settings(tmp_path, uuid.uuid4().hex[:8])
    produce(stored, [(m.key(), m.value(), m.headers()) for m in raw])
    run_main(build_flow(stored, tail=False, flow_id=f"it-ua-{ua['uid']}"))
    with psycopg.connect(settings.postgres.conninfo()) as db:
        rows = db.execute(
            "SELECT sensor, value_type, quality, status, value IS NULL, text_value FROM telemetry WHERE twin_id = %s",
            (twin,),
        ).fetchall()
    kinds = {(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}
    assert ("running", 1, 0, None, False, None) in kinds
    assert ("flow", 0, 0, None, False, None) in kinds
    assert ("temp", 0, 2, "BadSensorFailure", True, None) in kinds
    assert ("mode", 2, 0, None, True, "AUTO") in kinds


def test_opcua_commands_write_numbers_and_booleans(ua) -> None:
    twin = f"press-a-{ua['uid']}"
    assert command(ua["settings"], twin, "setpoint", 1234.5) == "applied"
    ua["servers"]["a"].wait_for("WRITE Setpoint=1234.5", 10)
    assert command(ua["settings"], twin, "enable", True) == "applied"
    ua["servers"]["a"].wait_for("WRITE Enable=true", 10)


def test_opcua_one_server_down_and_back_while_the_other_goes_on(ua) -> None:
    bridge, servers = ua["bridge"], ua["servers"]
    a, b = bridge.devices["ua-a"].health, bridge.devices["ua-b"].health
    servers["b"].stop()
    wait_for(lambda: not b.connected, 30, "the bridge to see ua-b go down")
    assert 'twinflow_bridge_device_connected{address="opc.tcp' in metrics(ua["mport"])
    assert any(
        line.startswith("twinflow_bridge_device_connected") and 'device="ua-b"' in line and line.endswith(" 0.0")
        for line in metrics(ua["mport"]).splitlines()
    )
    before = a.values
    wait_for(lambda: a.values > before + 10, 20, "ua-a values while ua-b is down")
    servers["b"] = NodeProcess("opcua_server.js", ua["pb"], "urn:twinflow:interop:b", "Pump2")
    servers["b"].wait_for("READY", 60)
    wait_for(lambda: b.connected, 60, "the bridge to reconnect to ua-b")
    again = b.values
    wait_for(lambda: b.values > again + 5, 20, "ua-b values after it came back")
    assert b.reconnects >= 1 and b.errors >= 1


# ----------------------------------------------------------------------------- Modbus (jsmodbus)
MB_TOML = """
[modbus]
poll_interval_ms = 200
timeout_s = 2

[devices.mb-a]
protocol = "modbus"
port = {pa}

[devices.mb-b]
protocol = "modbus"
port = {pb}

[[assets]]
twin_id = "mb-a0-{uid}"
type = "pump"
protocol = "modbus"
device = "mb-a"
unit_id = 0
[assets.params]
temp = {{ register = "holding", address = 0, type = "float32", min = -50, max = 200 }}
offset = {{ register = "holding", address = 2, type = "int16" }}
energy = {{ register = "holding", address = 3, type = "uint32", word_order = "little" }}
alarm = {{ register = "holding", address = 5, type = "uint16", bit = 1 }}
state = {{ register = "holding", address = 5, type = "uint16", bit = 5, bits = 3 }}
total = {{ register = "holding", address = 6, type = "int64" }}
ratio = {{ register = "holding", address = 10, type = "float64" }}
name = {{ register = "holding", address = 14, type = "string", length = 3 }}
temp_swapped = {{ register = "holding", address = 17, type = "float32", byte_order = "little" }}
setpoint = {{ register = "holding", address = 19, type = "uint16", writable = true, write_function = 6 }}
pump_on = {{ register = "coil", address = 0, writable = true }}
valve_open = {{ register = "coil", address = 1, writable = true }}
door = {{ register = "discrete", address = 1 }}

[[assets]]
twin_id = "mb-a255-{uid}"
type = "pump"
protocol = "modbus"
device = "mb-a"
unit_id = 255
[assets.params]
level = {{ register = "input", address = 0, type = "uint16" }}
wrong_order = {{ register = "input", address = 2, type = "float32", word_order = "little", min = -100, max = 100 }}
past_the_map = {{ register = "input", address = 4, type = "uint16" }}

[[assets]]
twin_id = "mb-b-{uid}"
type = "pump"
protocol = "modbus"
device = "mb-b"
[assets.params]
level = {{ register = "input", address = 1, type = "uint16" }}
"""


@pytest.fixture(scope="module")
def mb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from connectors.modbus.bridge import ModbusBridge

    tmp: Path = tmp_path_factory.mktemp("mb")
    uid = uuid.uuid4().hex[:8]
    pa, pb = free_port(), free_port()
    servers = {"a": NodeProcess("modbus_server.js", pa), "b": NodeProcess("modbus_server.js", pb)}
    bridge = None
    try:
        for s in servers.values():
            s.wait_for("READY", 30)
        settings = private_settings(tmp, uid)
        mapping = write_mapping(tmp, MB_TOML.format(pa=pa, pb=pb, uid=uid))
        bridge = ModbusBridge(settings, mapping).start()
        wait_for(lambda: all(d.health.connected for d in bridge.devices.values()), 30, "both Modbus servers")
        assert bridge.commands is not None and bridge.commands.assigned.wait(30)
        yield {"uid": uid, "settings": settings, "bridge": bridge, "servers": servers, "pb": pb}
    finally:
        if bridge is not None:
            bridge.stop(10)
        for s in servers.values():
            s.stop()


def test_modbus_every_type_word_and_byte_order_and_unit_ids_0_and_255(mb) -> None:
    settings, uid = mb["settings"], mb["uid"]
    (env, *_) = envelopes(settings, f"mb-a0-{uid}", lambda ms: len(ms) >= 1)
    assert env.readings == {
        "temp": 21.5,
        "offset": -40.0,
        "energy": 70000.0,
        "alarm": True,
        "state": 5.0,
        "total": -5_000_000_000.0,
        "ratio": 0.1,
        "temp_swapped": 21.5,
        "setpoint": 100.0,
        "pump_on": True,
        "valve_open": False,
        "door": True,
    }
    assert env.text == {"name": "PUMP-7"} and env.status is None
    (env255, *_) = envelopes(settings, f"mb-a255-{uid}", lambda ms: len(ms) >= 1)
    # A plausibility range flags the nonsense a wrong word order decodes to; the item past the map
    # is missing from jsmodbus' short reply, and the register before it is still read.
    assert env255.readings["level"] == 1234.0
    assert env255.status == {"wrong_order": "BadOutOfRange"} and env255.quality_of("wrong_order") == "bad"
    assert "past_the_map" not in env255.readings
    health = mb["bridge"].devices["mb-a"].health
    assert health.failing[f"mb-a255-{uid}.past_the_map"] == "short response"
    assert mb["bridge"].dead_parts() == []


def test_modbus_writes_with_function_6_and_coils(mb) -> None:
    twin = f"mb-a0-{mb['uid']}"
    assert command(mb["settings"], twin, "setpoint", 1200) == "applied"
    mb["servers"]["a"].wait_for("WRITE holding 19 1200 fc6", 10)
    assert command(mb["settings"], twin, "valve_open", True) == "applied"
    mb["servers"]["a"].wait_for("WRITE coil 1 1", 10)
    assert "read-only" in command(mb["settings"], twin, "door", True)


def test_modbus_one_device_down_and_back(mb) -> None:
    bridge, servers = mb["bridge"], mb["servers"]
    a, b = bridge.devices["mb-a"].health, bridge.devices["mb-b"].health
    servers["b"].stop()
    wait_for(lambda: not b.connected, 30, "the bridge to see mb-b go down")
    before = a.values
    wait_for(lambda: a.values > before + 10, 20, "mb-a values while mb-b is down")
    servers["b"] = NodeProcess("modbus_server.js", mb["pb"])
    servers["b"].wait_for("READY", 30)
    wait_for(lambda: b.connected, 30, "the bridge to reconnect to mb-b")
    again = b.values
    wait_for(lambda: b.values > again, 20, "mb-b values after it came back")


# ----------------------------------------------------------------------------- Sparkplug B (Tahu's encoder)
SP_TOML = """
[mqtt]
port = {port}
client_id = "it-sparkplug-{uid}"

[[assets]]
twin_id = "{{node}}-{{device}}"
type = "pump"
protocol = "mqtt"
sparkplug = {{ group = "it{uid}", node = "+", device = "+" }}
[assets.params]
speed = {{ metric = "Motor/Speed", writable = true }}
running = {{ metric = "Motor/Running", writable = true }}
temp = {{ metric = "Motor/Temp" }}
mode = {{ metric = "Mode", type = "text" }}
"""


def test_sparkplug_birth_data_by_alias_rebirth_death_and_commands(tmp_path: Path) -> None:
    from connectors.mqtt.mapped import MappedMqttBridge

    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    mapping = write_mapping(tmp_path, SP_TOML.format(port=settings.mqtt.port, uid=uid))
    twin = f"edge{uid}-pump1"
    bridge = MappedMqttBridge(settings, mapping).start()
    edge = None
    try:
        assert bridge.connected.wait(20) and bridge.commands.assigned.wait(30)
        edge = NodeProcess("sparkplug_edge.js", settings.mqtt.port, f"it{uid}", f"edge{uid}", "pump1")
        edge.wait_for('"ready"', 30)
        edge.send("data")
        edge.send("null")
        envs = envelopes(settings, twin, lambda ms: len(ms) >= 5)
        assert envs[0].readings == {"online": True}
        born = envs[1]
        assert born.readings == {"speed": 1450.0, "running": True, "temp": 61.5} and born.text == {"mode": "AUTO"}
        by_alias = [e.readings for e in envs[2:4]]
        assert by_alias == [{"speed": -5.0}, {"speed": 1450.0, "running": True, "temp": 61.5}]
        assert envs[2].ts < envs[3].ts  # the metrics' own timestamps
        assert (
            envs[4].readings == {"temp": None} and envs[4].quality == "bad" and envs[4].status == {"temp": "BadNoData"}
        )

        edge.send("gap")  # lost messages: the host asks the node for a new birth certificate
        edge.wait_for("rebirth_requested", 15)
        assert bridge.sparkplug.sessions.seq_gaps == 1
        edge.send("unknownalias")
        wait_for(lambda: bridge.sparkplug.sessions.rebirths >= 2, 15, "a rebirth request for an unknown alias")

        assert command(settings, twin, "speed", 1500) == "applied"
        dcmd = orjson.loads(edge.wait_for('"dcmd"', 10))
        assert (dcmd["metric"], dcmd["value"], dcmd["type"]) == ("Motor/Speed", 1500, "Int32")

        edge.send("ddeath")
        offline = envelopes(settings, twin, lambda ms: any(b'"online":false' in m.value() for m in ms))
        assert {"online": False} in [e.readings for e in offline]
    finally:
        if edge is not None:
            edge.stop()
        bridge.stop(10)


# ----------------------------------------------------------------------------- MQTT timestamps and device acks
MQ_TOML = """
[mqtt]
port = {port}
client_id = "it-mq-{uid}"
ack_timeout_s = 5

[[assets]]
twin_id = "{{machine}}-{uid}"
type = "pump"
protocol = "mqtt"
topic = "it/{uid}/{{machine}}/state"
command_topic = "it/{uid}/{{machine}}/cmd"
ack_topic = "it/{uid}/{{machine}}/ack"
[assets.params]
temperature = {{ path = "temperature" }}
running = {{ path = "running" }}
speed_sp = {{ path = "sp", writable = true }}
"""

TS_FORMS = {
    "iso-z": ("2026-11-25T08:00:00.250Z", "2026-11-25T08:00:00.250000+00:00"),
    "iso-offset": ("2026-11-25T09:00:00+01:00", "2026-11-25T08:00:00+00:00"),
    "epoch-s": (1795593600, "2026-11-25T08:00:00+00:00"),
    "epoch-s-text": ("1795593600", "2026-11-25T08:00:00+00:00"),
    "epoch-ms": (1795593600250, "2026-11-25T08:00:00.250000+00:00"),
    "epoch-us": (1795593600250123, "2026-11-25T08:00:00.250123+00:00"),
    "epoch-s-float": (1795593600.5, "2026-11-25T08:00:00.500000+00:00"),
}


def test_mqtt_every_timestamp_form_booleans_and_device_acks(tmp_path: Path) -> None:
    import paho.mqtt.client as mqtt

    from connectors.mqtt.mapped import MappedMqttBridge

    uid = uuid.uuid4().hex[:8]
    settings = private_settings(tmp_path, uid)
    mapping = write_mapping(tmp_path, MQ_TOML.format(port=settings.mqtt.port, uid=uid))
    bridge = MappedMqttBridge(settings, mapping).start()
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"it-device-{uid}")

    def answer(client, userdata, msg) -> None:  # a device that applies setpoints below 2000
        cmd = orjson.loads(msg.payload)
        ok = cmd["value"] < 2000
        ack = {"command_id": cmd["command_id"], "status": "applied" if ok else "rejected"}
        if not ok:
            ack["error"] = "above the pump's maximum speed"
        client.publish(msg.topic.replace("/cmd", "/ack"), orjson.dumps(ack), qos=1)

    device.on_message = answer
    try:
        assert bridge.connected.wait(20) and bridge.commands.assigned.wait(30)
        device.connect("127.0.0.1", settings.mqtt.port)
        device.loop_start()
        device.subscribe(f"it/{uid}/+/cmd", qos=1)
        for machine, (ts, _) in TS_FORMS.items():
            body = {"temperature": 30.8, "running": True, "ts": ts}
            device.publish(f"it/{uid}/{machine}/state", orjson.dumps(body), qos=1).wait_for_publish(5)
        bad = b'{"temperature": 30.8, "running": true, "ts": "25.11.2026 08:00"}'
        device.publish(f"it/{uid}/badclock/state", bad, qos=1).wait_for_publish(5)
        for machine, (_, expected) in TS_FORMS.items():
            (env,) = envelopes(settings, f"{machine}-{uid}", lambda ms: len(ms) >= 1)
            assert env.ts.astimezone().isoformat() == datetime_of(expected).astimezone().isoformat(), machine
            assert env.readings == {"temperature": 30.8, "running": True}
        dead = dead_letters(settings, lambda ds: any(h.get("dlq.reason") == b"ts_invalid" for _, h in ds))
        ((value, headers),) = [(v, h) for v, h in dead if h.get("dlq.reason") == b"ts_invalid"]
        assert value == bad and headers["mqtt.topic"] == f"it/{uid}/badclock/state".encode()
        assert envelopes(settings, f"badclock-{uid}", lambda ms: False, timeout=2) == []  # never re-stamped

        assert command(settings, f"epoch-s-{uid}", "speed_sp", 1500) == "applied"
        assert (
            command(settings, f"epoch-s-{uid}", "speed_sp", 2500)
            == "rejected: device rejected it: above the pump's maximum speed"
        )
        device.unsubscribe(f"it/{uid}/+/cmd")
        time.sleep(0.5)
        status = command(settings, f"epoch-s-{uid}", "speed_sp", 1000)
        assert status.startswith("failed: ConnectionError: no device ack for command"), status
    finally:
        device.loop_stop()
        device.disconnect()
        bridge.stop(10)


def datetime_of(text: str):
    from datetime import datetime

    return datetime.fromisoformat(text)
