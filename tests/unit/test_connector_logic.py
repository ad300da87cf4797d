"""Pure connector logic: mapping validation, register codec/planning, commands, physics, faults."""

from __future__ import annotations

import doctest
import importlib
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.bridges.mapping.loading import MappingError, load_mapping, parse_mapping
from connectors.sim.faults import Fault, SensorFaults, effects, parse_fault, random_schedule
from connectors.sim.physics import Machine
from connectors.sim.plant import Plant, PlantError
from operators.devices.modbus_registers import (
    EncodeError,
    RegisterField,
    decode,
    decode_response,
    encode,
    plan_reads,
    plausible,
)
from operators.records.commands import decode_command, encode_command, new_command, precheck

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "connectors.bridges.mapping.loading",
    "connectors.bridges.mapping.templates",
    "operators.devices.modbus_registers",
    "operators.records.commands",
    "operators.devices.readings",
    "connectors.kafka.spill",
    "connectors.mqtt.payload",
    "connectors.mqtt.message_values",
    "connectors.opcua.values",
    "connectors.opcua.nodes",
    "connectors.sim.physics",
    "connectors.sim.faults",
    "connectors.sim.plant",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.attempted > 0 and result.failed == 0


def test_example_plant_mapping_is_valid_and_spans_all_protocols() -> None:
    m = load_mapping(ROOT / "config" / "plant.toml")
    assert {a.protocol for a in m.assets} == {"opcua", "mqtt", "modbus"}
    assert {a.type for a in m.assets} == {"pump", "compressor"}
    Plant(m)  # the simulator can serve every parameter


def _asset(**kw) -> dict:
    base = {
        "twin_id": "p1",
        "type": "pump",
        "protocol": "modbus",
        "params": {"x": {"register": "input", "address": 0}},
    }
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("doc", "fragments"),
    [
        ({"assets": [_asset(), _asset()]}, ["asset 'p1' (assets[1])", "twin_id", "duplicate"]),
        (
            {
                "assets": [
                    _asset(
                        params={
                            "a": {"register": "input", "address": 0, "type": "float32"},
                            "b": {"register": "input", "address": 1},
                        }
                    )
                ]
            },
            ["params.b.address", "already used by p1.a"],
        ),
        (
            {"assets": [_asset(params={"a": {"register": "holding", "address": 0, "type": "double"}})]},
            ["params.a.type"],
        ),
        ({"assets": [_asset(twin_id="bad id!")]}, ["assets[0]", "twin_id", "pattern"]),
        ({"assets": [_asset(protocol="profibus")]}, ["assets[0]", "opcua", "modbus"]),
        (
            {
                "assets": [
                    {
                        "twin_id": "m",
                        "type": "pump",
                        "protocol": "mqtt",
                        "params": {"a": {"path": "x"}, "b": {}},
                        "topic": "t",
                    }
                ]
            },
            ["params.b.path", "several parameters"],
        ),
        (
            {"assets": [{"twin_id": "m", "type": "pump", "protocol": "mqtt", "params": {"a": {"path": "x y"}}}]},
            ["params.a.path"],
        ),
        ({"opcua": {"security": "Basic128"}, "assets": [_asset()]}, ["[opcua] security"]),
        ({"assets": []}, ["assets"]),
    ],
)
def test_mapping_errors_name_asset_and_field(doc: dict, fragments: list[str]) -> None:
    with pytest.raises(MappingError) as err:
        parse_mapping(doc, "plant.toml")
    text = str(err.value)
    assert "plant.toml" in text
    for f in fragments:
        assert f in text, text


def test_simulator_refuses_unknown_signal() -> None:
    m = parse_mapping({"assets": [_asset(params={"rpm_typo": {"register": "input", "address": 0}})]}, "f.toml")
    with pytest.raises(PlantError, match=r"assets\[0\].*params.rpm_typo"):
        Plant(m)


@pytest.mark.parametrize("dtype", ["int16", "uint16", "int32", "uint32", "float32"])
@pytest.mark.parametrize("order", ["big", "little"])
def test_register_roundtrip(dtype: str, order: str) -> None:
    f = RegisterField("k", 1, "holding", 10, dtype, order, scale=0.5, offset=-3.0)
    for value in (-3.0, 0.0, 97.5):
        if dtype.startswith("uint") and value < -3.0:
            continue
        assert decode(f, encode(f, value)) == pytest.approx(value, rel=1e-6)


def test_a_value_between_two_steps_of_an_integer_register_is_refused_not_rounded() -> None:
    plain = RegisterField("k", 1, "holding", 0, "uint16")
    with pytest.raises(EncodeError, match=r"3.5 is not a whole number \(uint16"):
        encode(plain, 3.5)
    with pytest.raises(EncodeError, match="outside what uint16"):
        encode(plain, -5)
    assert encode(plain, 3.5, saturate=True) == [4]  # the simulator serves plant values rounded
    tenths = RegisterField("k", 1, "holding", 0, "int16", scale=0.1, offset=-40.0)
    assert decode(tenths, encode(tenths, 3.3)) == pytest.approx(3.3)  # 43.3 / 0.1 is 432.99999…
    with pytest.raises(EncodeError, match=r"3.35 is not offset -40.0 \+ a multiple of 0.1"):
        encode(tenths, 3.35)
    real = RegisterField("k", 1, "holding", 0, "float32")
    assert decode(real, encode(real, 3.5)) == 3.5


def test_word_order_and_range() -> None:
    big = RegisterField("k", 1, "input", 0, "uint32", "big")
    little = RegisterField("k", 1, "input", 0, "uint32", "little")
    assert encode(big, 0x00010002) == [1, 2]
    assert encode(little, 0x00010002) == [2, 1]
    with pytest.raises(EncodeError, match="uint16"):
        encode(RegisterField("k", 1, "holding", 0, "uint16"), 70000)
    assert encode(RegisterField("k", 1, "holding", 0, "uint16"), 70000, saturate=True) == [65535]


def test_plan_batches_adjacent_registers_only() -> None:
    fields = [
        RegisterField("a", 1, "input", 0, "uint16"),
        RegisterField("b", 1, "input", 1, "float32"),
        RegisterField("c", 1, "input", 10, "int16"),
        RegisterField("d", 1, "holding", 3, "uint16"),
        RegisterField("e", 2, "input", 0, "uint16"),
    ]
    plan = plan_reads(fields)
    assert [(r.unit_id, r.kind, r.address, r.count) for r in plan] == [
        (1, "holding", 3, 1),
        (1, "input", 0, 3),
        (1, "input", 10, 1),
        (2, "input", 0, 1),
    ]
    many = [RegisterField(i, 1, "input", i, "uint16") for i in range(300)]
    assert [r.count for r in plan_reads(many)] == [125, 125, 50]


def test_command_roundtrip_and_checks() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cmd = new_command("p1", "speed_sp_rpm", 900, now=now)
    assert decode_command(encode_command(cmd)) == cmd
    assert precheck(cmd, {"speed_sp_rpm": True}, now) is None
    assert precheck(cmd, {"speed_sp_rpm": True}, now + timedelta(minutes=5)).status == "expired"
    rejected = precheck(cmd, {"speed_sp_rpm": False}, now)
    assert rejected.status == "rejected" and "read-only" in rejected.error


def test_affinity_laws_and_thermal_lag() -> None:
    rng = random.Random(3)
    m = Machine("pump")
    m.speed = m.speed_sp = 1450.0
    temps = [m.step(1.0, rng)["temp_c"] for _ in range(30)]
    assert temps == sorted(temps) and temps[-1] - temps[0] > 5  # warms up gradually
    m.set("speed_sp_rpm", 725)
    speeds = [m.step(0.1, rng)["speed_rpm"] for _ in range(100)]
    assert speeds[0] > 1000 and abs(speeds[-1] - 725) < 5  # first-order lag to the new setpoint
    m.set("speed_sp_rpm", 99999)
    assert m.speed_sp == 3600.0


def test_faults_change_the_physics() -> None:
    twin = "p"
    assert effects([Fault(twin, "valve_closure", 0, 10)], 5).valve_factor < 0.2
    assert effects([Fault(twin, "cavitation", 0, 10)], 5).suction_drop_bar > 0.5
    assert effects([Fault(twin, "overheating", 0, 10)], 6).extra_heat_c > 30
    assert effects([Fault(twin, "run_to_failure", 0, 10)], 9.95).tripped
    stuck = SensorFaults([Fault(twin, "sensor_stuck", 1, 5, sensor="temp_c")])
    r1, r2 = {"temp_c": 50.0}, {"temp_c": 60.0}
    stuck.apply(r1, 2)
    stuck.apply(r2, 3)
    assert r2["temp_c"] == 50.0
    failed = SensorFaults([Fault(twin, "sensor_failure", 0, None, sensor="flow_m3h")])
    assert failed.apply({"flow_m3h": 1.0}, 1) == {"flow_m3h": "bad"}
    with pytest.raises(ValueError, match="unknown fault"):
        parse_fault("p:melting:1")
    sched = random_schedule(["a", "b"], 600, random.Random(1), 5)
    assert len(sched) == 5 and all(60 <= f.onset_s < f.end_s <= 600 for f in sched)


@pytest.mark.parametrize("dtype", ["int32", "uint32", "int64", "uint64", "float32", "float64"])
@pytest.mark.parametrize("words", ["big", "little"])
@pytest.mark.parametrize("bytes_", ["big", "little"])
def test_multi_register_values_roundtrip_in_every_word_and_byte_order(dtype: str, words: str, bytes_: str) -> None:
    f = RegisterField("k", 1, "holding", 0, dtype, words, byte_order=bytes_)
    for value in (0.0, 1.0, 123456.0, 2.0**40 if dtype.endswith("64") else 65537.0):
        assert decode(f, encode(f, value)) == value


def test_byte_and_word_order_layout() -> None:
    f = RegisterField("k", 1, "input", 0, "uint32", "little", byte_order="little")
    assert encode(f, 0x11223344) == [0x4433, 0x2211]
    assert decode(RegisterField("k", 1, "input", 0, "float64"), [0x3FF0, 0, 0, 0]) == 1.0


def test_strings_bits_and_coils() -> None:
    s = RegisterField("k", 1, "holding", 0, "string", length=4)
    assert decode(s, encode(s, "PUMP-7")) == "PUMP-7"
    assert decode(RegisterField("k", 1, "holding", 0, "string", byte_order="little", length=1), [0x4241]) == "AB"
    with pytest.raises(EncodeError):
        encode(s, "far too long text")
    field = RegisterField("k", 1, "input", 0, "uint16", bit=4, bits=3)
    assert decode(field, [0b1011_0000]) == 0b011
    coil = RegisterField("k", 1, "coil", 7, "bool")
    assert decode(coil, [True]) is True and encode(coil, False) == [0]


def test_a_short_reply_decodes_what_it_covers_and_names_the_rest() -> None:
    fields = [RegisterField("a", 1, "input", 0), RegisterField("b", 1, "input", 1, "float32")]
    (req,) = plan_reads(fields)
    values, missing = decode_response(req, [7, 0x4148])
    assert values == [(fields[0], 7.0)] and missing == [fields[1]]


def test_plausibility_flags_nonsense_decodes() -> None:
    f = RegisterField("k", 1, "input", 0, "float32", min=-50, max=200)
    assert plausible(f, 20.0) and not plausible(f, 7e35) and not plausible(f, math.nan)


def test_the_documented_line_mapping_is_valid() -> None:
    """docs/connectors.md's mapping of a realistic line (several PLCs, a gateway, MQTT, Sparkplug)."""
    import re
    import tomllib

    from twinflow.settings import PROJECT_ROOT

    doc = (PROJECT_ROOT / "docs" / "connectors.md").read_text()
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", doc, re.S) if b.startswith("# line1.toml")]
    m = parse_mapping(tomllib.loads(block), "line1.toml")
    assert set(m.devices) == {"filler-plc", "capper-plc", "palletizer-plc", "drive-gw"}
    assert {name: len(assets) for name, (_, assets) in m.devices_of("modbus").items()} == {"drive-gw": 3}
    assert len(m.devices_of("opcua")) == 3 and m.asset("line1-vib-7") is not None
