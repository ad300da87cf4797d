"""The MQTT mapping skeleton from what a listener heard (no broker): devices grouped by their topic
level, topic templates only for devices that publish alike, names fitted to the project's patterns,
and every skeleton loads with the bridges' own loader."""

from __future__ import annotations

import json
import tomllib

from connectors.bridges.mapping.loading import parse_mapping
from connectors.mqtt.listen import Heard
from connectors.mqtt.skeleton import build

CONN = {"host": "127.0.0.1", "port": 1883, "client_id": "twinflow-mapped-test"}


def _mapping(heard: Heard):
    sk = build(heard, CONN, "twinflow mapping listen-mqtt", 3.0)
    return sk, parse_mapping(tomllib.loads(sk.text))


def test_zigbee2mqtt_devices_of_different_shapes_get_an_asset_each() -> None:
    heard = Heard()
    heard.add("zigbee2mqtt/Kitchen sensor", json.dumps({"temperature": 21.5, "humidity": 40, "battery": 97,
                                                        "last seen": 5}).encode(), False, 0)  # fmt: skip
    heard.add("zigbee2mqtt/plug_tv", json.dumps({"power": 80.5, "state": "ON", "child_lock": False}).encode(), False, 0)
    heard.add("zigbee2mqtt/bridge/state", b'{"state": "online"}', True, 0)
    sk, mapping = _mapping(heard)
    assets = {a.twin_id: a for a in mapping.assets}
    assert set(assets) == {"Kitchen-sensor", "plug_tv", "bridge"} and sk.templates == 0
    assert assets["Kitchen-sensor"].topic == "zigbee2mqtt/Kitchen sensor"
    assert set(assets["Kitchen-sensor"].params) == {"temperature", "humidity", "battery"}  # "last seen": no path
    assert set(assets["plug_tv"].params) == {"power", "child_lock", "state"}
    assert assets["plug_tv"].params["state"].type == "text" and assets["bridge"].params["state"].type == "text"
    assert 'state = { path = "state", type = "text" }  # text, heard: "ON"' in sk.text


def test_text_values_distinct_and_bounded_plain_texts_mapped_binary_left_out() -> None:
    heard = Heard()
    for i in range(15):
        heard.add("gw/line2/data", json.dumps({"mode": "AUTO" if i % 2 else "MAN\"UAL", "batch": f"B-{i}"}).encode(),
                  False, i)  # fmt: skip
        heard.add("gw/line2/state", b'"running"' if i % 3 else b"stopped", False, i)
        heard.add("gw/line2/blob", bytes([0xFF, 0xFE, i]), False, i)
    t = heard.topics["gw/line2/data"]
    assert list(t.texts["mode"].texts.seen) == ['MAN"UAL', "AUTO"] and not t.texts["mode"].texts.more
    assert len(t.texts["batch"].texts.seen) == 10 and t.texts["batch"].texts.more
    state = heard.topics["gw/line2/state"]
    assert state.kind == "text" and list(state.plain_texts.seen) == ["stopped", "running"]
    sk, mapping = _mapping(heard)
    (asset,) = mapping.assets
    assert {n: (p.type, p.path) for n, p in asset.params.items()} == {
        "mode": ("text", "mode"),
        "batch": ("text", "batch"),
        "state": ("text", None),
    }
    assert '# text, heard: "MAN\\"UAL", "AUTO"' in sk.text and '"B-9", …' in sk.text
    assert "gw/line2/blob: binary/other" in sk.text


def test_one_device_with_many_plain_topics_is_one_asset_and_names_do_not_collide() -> None:
    heard = Heard()
    for topic, value in (
        ("relay/0/power", b"12"),
        ("relay/1/power", b"3"),
        ("temperature", b"40.5"),
        ("overtemp", b"false"),
    ):
        heard.add(f"shellies/shellyplug-s-1A2B/{topic}", value, False, 0)
    heard.add(
        "plant/pump1/state", b'{"a": {"t": 1}, "b": {"t": 2}, "ts": "2026-01-01T00:00:00Z", "q": "good"}', False, 0
    )
    _, mapping = _mapping(heard)
    assets = {a.twin_id: a for a in mapping.assets}
    plug = assets["shellyplug-s-1A2B"]
    assert set(plug.params) == {"relay.0.power", "relay.1.power", "temperature", "overtemp"}
    assert len({p.topic or plug.topic for p in plug.params.values()}) == 4
    pump = assets["pump1"]
    assert (pump.ts_path, pump.quality_path) == ("ts", "q") and set(pump.params) == {"a.t", "b.t"}


def test_sparkplug_without_births_is_named_in_a_note_not_mapped() -> None:
    from connectors.sparkplug import sparkplug_b_pb2 as pb
    from connectors.sparkplug.codec import encode_payload
    from operators.devices.sparkplug_session import DOUBLE

    heard = Heard()
    heard.add("spBv1.0/g1/NBIRTH/n1", encode_payload([("Temp", DOUBLE, 21.0)], seq=0, ts_ms=1000), False, 0)
    data = pb.Payload()
    data.seq = 1
    metric = data.metrics.add()
    metric.alias, metric.datatype, metric.double_value = 10, DOUBLE, 1.5
    heard.add("spBv1.0/g1/DDATA/n1/d1", data.SerializeToString(), False, 0)  # by alias, its DBIRTH not heard
    sk, mapping = _mapping(heard)
    assert "spBv1.0/g1/DDATA/n1/d1: data by alias [10] and no birth heard" in sk.text
    (asset,) = mapping.assets
    assert asset.twin_id == "n1" and asset.sparkplug.device is None and asset.params["Temp"].metric == "Temp"
