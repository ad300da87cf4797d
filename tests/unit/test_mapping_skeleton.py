"""A mapping skeleton from what a browse found: awkward browse names still make a file the bridges load."""

from __future__ import annotations

import tomllib

import pytest
from asyncua import ua

from connectors.bridges.mapping.loading import parse_mapping
from connectors.opcua.browse import Browse, ObjectNode, Variable
from connectors.opcua.skeleton import build, conform
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN

NS = ["http://opcfoundation.org/UA/", "urn:decoy", "urn:plc"]


def var(path: tuple[str, ...], owner: tuple[str, ...], ident: str, **kw) -> Variable:
    nodeid = ua.NodeId(ident, 2)
    return Variable(path, owner, nodeid, f"nsu=urn:plc;s={ident}", **{"reading": True, **kw})


def test_odd_names_duplicates_and_non_readings() -> None:
    drive, other = ("Halle 1", "Antrieb Süd"), ("Halle 2", "Antrieb Süd")
    found = Browse("opc.tcp://plc:4840", "i=85", NS)
    found.objects[drive] = ObjectNode(drive, ua.NodeId("a", 2), ua.NodeId("t", 2), "CentrifugalPumpType")
    found.variables = [
        var((*drive, "Drehzahl [1/min]"), drive, "a.n", setpoint=True, writable=True, unit="1/min"),
        var((*drive, "Drehzahl (1/min)"), drive, "a.n2"),
        var((*drive, "Motor", '2nd "winding" temp'), drive, 'a."m".t'),
        var((*drive, "Trend"), drive, "a.trend", reading=False, data_type="Double"),
        var((*other, "Status"), other, "b.s"),
    ]
    sk = build(found, {"endpoint": "opc.tcp://plc:4840"}, "twinflow mapping browse-opcua opc.tcp://plc:4840")
    mapping = parse_mapping(tomllib.loads(sk.text))  # the bridges' own checks
    assets = {a.twin_id: a for a in mapping.assets}
    assert set(assets) == {"Antrieb-Sud", "Halle-2.Antrieb-Sud"}
    first = assets["Antrieb-Sud"]
    assert first.type == "centrifugal_pump" and assets["Halle-2.Antrieb-Sud"].type == "machine"
    assert list(first.params) == ["Drehzahl_1_min", "Drehzahl_1_min_2", "Motor.2nd_winding_temp"]
    assert first.params["Drehzahl_1_min"].writable and first.params["Drehzahl_1_min"].unit == "1/min"
    assert first.params["Motor.2nd_winding_temp"].node == 'nsu=urn:plc;s=a."m".t'
    assert mapping.opcua.namespace == "urn:plc"
    assert (sk.assets, sk.params, sk.setpoints) == (2, 4, 1)
    assert [v.path[-1] for v in sk.left_out] == ["Trend"]
    assert "Trend" in sk.text.split("[opcua]")[0]  # named in the header, as a comment


@pytest.mark.parametrize(
    ("text", "pattern", "fill", "expected"),
    [
        ("Pump 1", TWIN_ID_PATTERN, "-", "Pump-1"),
        ("__init", TWIN_ID_PATTERN, "-", "init"),
        ("日本", TWIN_ID_PATTERN, "-", "asset"),
        ("x" * 300, TWIN_ID_PATTERN, "-", "x" * 128),
        ("42 bar", SENSOR_PATTERN, "_", "_42_bar"),
        ("Temp.°C", SENSOR_PATTERN, "_", "Temp._C"),
    ],
)
def test_conform_fits_the_project_patterns(text: str, pattern: str, fill: str, expected: str) -> None:
    assert conform(text, pattern, fill, "asset") == expected


def test_long_names_that_collide_stay_within_the_patterns() -> None:
    owner = ("x" * 200,)
    found = Browse("opc.tcp://plc:4840", "i=85", NS)
    found.variables = [var((*owner, "v" * 70 + str(i)), owner, f"n{i}") for i in range(12)]
    found.variables.append(var(("x" * 130, "a"), ("x" * 130,), "other"))  # the same name once cut
    mapping = parse_mapping(tomllib.loads(build(found, {"endpoint": "opc.tcp://plc:4840"}, "cmd").text))
    names = list(mapping.assets[0].params)
    assert len(set(names)) == 12 and names[-1] == "v" * 61 + "_12"
    assert [a.twin_id for a in mapping.assets] == ["x" * 128, "x" * 126 + "-2"]
