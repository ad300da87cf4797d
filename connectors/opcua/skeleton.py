"""A mapping file skeleton from a browse: one ``[[assets]]`` per object that holds readable variables.

Twin ids come from the object's browse name, parameter names from the variable's browse names below
the object, both made to fit the project's own patterns (:data:`TWIN_ID_PATTERN`,
:data:`SENSOR_PATTERN`, the schema's ``type`` pattern); setpoints (writable numbers and booleans) are
marked ``writable = true``. The result loads with :func:`connectors.bridges.mapping.loading.parse_mapping`.

>>> conform("Pump 1 (Halle Süd)", TWIN_ID_PATTERN, "-", "asset")
'Pump-1-Halle-Sud'
>>> conform("1st stage.Temp °C", SENSOR_PATTERN, "_", "value")
'_1st_stage.Temp_C'
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import tomli_w

from connectors.bridges.mapping.naming import conform, listed_lines, pattern_of, toml_inline, toml_pair, unique
from connectors.bridges.mapping.schema import OpcuaAsset
from connectors.opcua.browse import Browse, Variable
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN

DEFAULT_TYPE = "machine"
# Type definitions that say nothing about the machine: its asset gets DEFAULT_TYPE.
_GENERIC_TYPES = {"", "BaseObjectType", "FolderType"}


TYPE_PATTERN = pattern_of(OpcuaAsset, "type")


def type_of(type_name: str) -> str:
    """An asset ``type`` from an object's type definition: ``PumpType`` → ``pump``.

    >>> type_of("CentrifugalPumpType"), type_of("BaseObjectType")
    ('centrifugal_pump', 'machine')
    """
    if type_name in _GENERIC_TYPES:
        return DEFAULT_TYPE
    base = type_name.removesuffix("Type") or type_name
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", base).lower()
    return conform(snake, TYPE_PATTERN, "_", DEFAULT_TYPE)


@dataclass
class Skeleton:
    """The file's text and what it holds."""

    text: str
    assets: int = 0
    params: int = 0
    setpoints: int = 0
    left_out: list[Variable] = field(default_factory=list)
    mapped: int = 0  # variables the mapping file the browse was made with maps already (left out)


def build(
    found: Browse, connection: dict[str, Any], command: str, mapping: str | None = None, taken: set[str] | None = None
) -> Skeleton:
    """The mapping skeleton of a browse; ``connection``: the ``[opcua]`` fields to write (endpoint, security …).
    With ``mapping`` (the file the browse was made with): only the variables it does not map
    (:attr:`Variable.mapped`), new twin ids not in ``taken`` (its twin ids), and an object's new
    parameters under the twin id of the asset that already maps its other variables."""
    groups: dict[tuple[str, ...], list[Variable]] = {}
    sk = Skeleton("")
    existing: dict[tuple[str, ...], set[str]] = {}  # object → twin ids mapping its variables already
    for v in found.variables:
        if v.mapped is not None:
            existing.setdefault(v.owner, set()).add(v.mapped[0])
            sk.mapped += 1
        elif v.reading and v.readable:
            groups.setdefault(v.owner, []).append(v)
        else:
            sk.left_out.append(v)
    uris = Counter(found.namespaces[v.nodeid.NamespaceIndex] for vs in groups.values() for v in vs)
    section = {**connection}
    if uris:
        section["namespace"] = uris.most_common(1)[0][0]
    blocks = [tomli_w.dumps({"opcua": section})]
    twins: set[str] = set(taken or ())
    extended: set[str] = set()
    for owner, variables in groups.items():
        name = owner[-1] if owner else found.root_name
        known = existing.get(owner, set())
        lines = []
        if len(known) == 1 and not known & extended:
            (twin,) = known
            extended.add(twin)
            lines.append(f"# More of asset {twin!r} in {mapping}: move these parameters into it.")
        else:
            twin = conform(name, TWIN_ID_PATTERN, "-", "asset")
            if twin in twins and len(owner) > 1:
                twin = conform(".".join(owner), TWIN_ID_PATTERN, "-", "asset")
            twin = unique(twin, twins, "-", TWIN_ID_PATTERN)
        obj = found.objects.get(owner)
        lines += [
            "[[assets]]",
            toml_pair("twin_id", twin),
            toml_pair("type", type_of(obj.type_name if obj else "")),
            toml_pair("protocol", "opcua"),
            "[assets.params]",
        ]
        names: set[str] = set()
        for v in variables:
            name = conform(".".join(v.path[len(owner) :]), SENSOR_PATTERN, "_", "value")
            param = unique(name, names, "_", SENSOR_PATTERN)
            entry: dict[str, Any] = {"node": v.node}
            if v.unit:
                entry["unit"] = v.unit
            if v.setpoint:
                entry["writable"] = True
                sk.setpoints += 1
            lines.append(toml_inline(param, entry))
        sk.assets += 1
        sk.params += len(variables)
        blocks.append("\n".join(lines) + "\n")
    sk.text = _header(found, command, sk, mapping) + "\n".join(blocks)
    return sk


def _header(found: Browse, command: str, sk: Skeleton, mapping: str | None) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# Mapping skeleton: `{command}` ({when})."]
    if mapping is not None:
        lines += [
            f"# Only what {mapping} does not map yet ({sk.mapped} variables it maps are left out). Merge it",
            "# into that file: an asset whose twin_id the file has holds more parameters of that asset.",
        ]
    lines += [
        f"# {sk.assets} asset(s), one per object holding variables; {sk.params} parameter(s), {sk.setpoints} writable.",
        "# Review twin_id, type and units. `writable = true` marks what the server lets this session write:",
        "# keep it on setpoints only (the twin may write those). Then check the file against the server:",
        "# twinflow mapping check --connect FILE (docs/connectors.md).",
    ]
    if found.stopped_early:
        lines.append("# The browse stopped at --max-nodes: the server has more than this file holds.")
    if sk.left_out:
        lines.append(f"# Left out: {len(sk.left_out)} variables that are no readings (arrays, structures, dates …):")
        items = [f"{'/'.join(v.path)}  {v.node}  {v.data_type}" for v in sk.left_out]
        lines += listed_lines(items, "twinflow mapping browse-opcua")
    return "\n".join(lines) + "\n\n"
