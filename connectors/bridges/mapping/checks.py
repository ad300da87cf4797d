"""The checks of a mapping file that its schema alone cannot make: per protocol and across assets.

Each problem is one line naming the asset (or device) and the field, with the fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from connectors.bridges.mapping.schema import PROTOCOLS, Mapping, ModbusAsset, MqttAsset, OpcuaAsset
from connectors.bridges.mapping.templates import TOPIC_PLACEHOLDER
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN

DEVICE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


def _check_opcua(i: int, a: OpcuaAsset) -> Iterator[str]:
    from asyncua import ua

    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        if (p.node is None) == (p.browse_path is None):
            yield f"{who}, field params.{name}: give exactly one of `node` and `browse_path`"
            continue
        if p.browse_path is not None:
            for seg in p.browse_path:
                if not _browse_segment_ok(seg):
                    yield (
                        f"{who}, field params.{name}.browse_path: {seg!r} is not a browse name (write "
                        '"Name", "0:Name" for namespace index 0, or "nsu=URI;Name")'
                    )
            continue
        try:
            ua.NodeId.from_string(p.node)
        except Exception:
            yield (
                f"{who}, field params.{name}.node: {p.node!r} is not an OPC-UA NodeId (write it like "
                '"nsu=urn:acme:line1;s=Pump1.Flow" (portable), "ns=2;s=pump-001.speed_rpm" or "ns=2;i=1001")'
            )


def _browse_segment_ok(seg: str) -> bool:
    if seg.startswith("nsu="):
        uri, sep, name = seg[4:].partition(";")
        return bool(uri and sep and name)
    prefix, sep, name = seg.partition(":")
    if sep and prefix.isdigit():
        return bool(name)
    return bool(seg)


def _check_mqtt(i: int, a: MqttAsset) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    names_in_twin = set(TOPIC_PLACEHOLDER.findall(a.twin_id))
    if a.sparkplug is not None:
        yield from _check_sparkplug(who, a, names_in_twin)
        return
    topics = {p.topic or a.topic for p in a.params.values()}
    for name, p in a.params.items():
        topic = p.topic or a.topic
        if p.metric is not None:
            yield f"{who}, field params.{name}.metric: only for Sparkplug assets (set `sparkplug`), else use `path`"
        if topic is None:
            yield f"{who}, field params.{name}.topic: no topic (set it, or the asset's `topic`)"
        elif any(c in topic for c in "+#"):
            yield (
                f"{who}, field params.{name}.topic: wildcards (+, #) are not allowed in a parameter topic; "
                "write a {name} placeholder for a varying topic level"
            )
        elif any(not _placeholder_level_ok(level) for level in topic.split("/")):
            yield f"{who}, field params.{name}.topic: a {{placeholder}} must fill a whole topic level"
    if names_in_twin:
        for topic in topics:
            missing = names_in_twin - set(TOPIC_PLACEHOLDER.findall(topic or ""))
            if topic and missing:
                yield (
                    f"{who}, field twin_id: uses {{{sorted(missing)[0]}}} but topic {topic!r} has no such placeholder"
                )
    elif any(TOPIC_PLACEHOLDER.search(t or "") for t in topics):
        yield f'{who}, field twin_id: the topic has {{placeholders}}: build the twin_id from them (e.g. "{{machine}}")'
    if not names_in_twin and not re.match(TWIN_ID_PATTERN, a.twin_id):
        yield f"{who}, field twin_id: must match {TWIN_ID_PATTERN}"
    if any(p.writable for p in a.params.values()) and not a.command_topic:
        yield f"{who}, field command_topic: required because a parameter is writable (commands go there)"
    for name in ("command_topic", "ack_topic"):
        topic = getattr(a, name)
        if topic and set(TOPIC_PLACEHOLDER.findall(topic)) - names_in_twin:
            yield f"{who}, field {name}: may only use the placeholders of twin_id"
        if topic and any(c in topic for c in "+#"):
            yield f"{who}, field {name}: no wildcards (+, #); write {{placeholders}} of twin_id"
    if a.ack_topic and not a.command_topic:
        yield f"{who}, field ack_topic: only with a command_topic (acks answer commands)"
    by_topic: dict[str, list[str]] = {}
    for name, p in a.params.items():
        by_topic.setdefault(p.topic or a.topic or "", []).append(name)
    for topic, names in by_topic.items():
        plain = [n for n in names if a.params[n].path is None]
        if plain and len(names) > 1:
            yield (
                f"{who}, field params.{plain[0]}.path: topic {topic!r} carries several parameters, so each "
                "needs a JSON `path` (a plain-number payload holds one value)"
            )


def _placeholder_level_ok(level: str) -> bool:
    return TOPIC_PLACEHOLDER.search(level) is None or TOPIC_PLACEHOLDER.fullmatch(level) is not None


def _check_sparkplug(who: str, a: MqttAsset, names_in_twin: set[str]) -> Iterator[str]:
    sp = a.sparkplug
    assert sp is not None
    wild = {k for k, v in (("group", sp.group), ("node", sp.node), ("device", sp.device)) if v == "+"}
    if names_in_twin - {"group", "node", "device"}:
        yield f"{who}, field twin_id: a Sparkplug twin_id may use {{group}}, {{node}} and {{device}} only"
    if wild - names_in_twin:
        yield f'{who}, field twin_id: sparkplug.{sorted(wild)[0]} is "+", so twin_id must contain {{{sorted(wild)[0]}}}'
    if not names_in_twin and not re.match(TWIN_ID_PATTERN, a.twin_id):
        yield f"{who}, field twin_id: must match {TWIN_ID_PATTERN}"
    if a.topic or a.command_topic or a.ack_topic:
        yield f"{who}, field topic: a Sparkplug asset's topics follow from `sparkplug` (remove topic/command_topic)"
    for name, p in a.params.items():
        if p.metric is None:
            yield f"{who}, field params.{name}.metric: required for a Sparkplug asset (the metric's name)"
        if p.topic or p.path:
            yield f"{who}, field params.{name}: a Sparkplug parameter takes `metric`, not topic/path"


_INT_TYPES = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}


def _check_modbus(i: int, a: ModbusAsset, seen: dict[tuple[str, int, str, int], str], device: str) -> Iterator[str]:
    who = f"asset {a.twin_id!r} (assets[{i}])"
    for name, p in a.params.items():
        field = f"{who}, field params.{name}"
        t = p.data_type
        bitwise = p.kind in ("coil", "discrete")
        if p.writable and p.kind in ("input", "discrete"):
            yield (
                f"{field}.writable: {'input registers' if p.kind == 'input' else 'discrete inputs'} are read-only; "
                'use register = "holding" (or "coil") or writable = false'
            )
        if bitwise and t != "bool":
            yield f"{field}.type: a {p.kind} holds one bit: leave type out (bool)"
        if not bitwise and t == "bool":
            yield f'{field}.type: "bool" is for coils and discrete inputs; for a bit of a register set `bit`'
        if t == "string" and p.length is None:
            yield f"{field}.length: a string needs its length in registers (two characters each)"
        if p.length is not None and t != "string":
            yield f"{field}.length: only strings have a length"
        if p.bit is not None:
            width = _INT_TYPES.get(t)
            if width is None:
                yield f"{field}.bit: bit fields need an integer type (uint16, uint32, …), not {t}"
            elif p.bit + p.bits > width:
                yield f"{field}.bits: bits {p.bit}..{p.bit + p.bits - 1} do not fit a {t}"
            if p.writable:
                yield f"{field}.writable: writing a bit field would overwrite the register's other bits"
        elif p.bits != 1:
            yield f"{field}.bits: set `bit` (the lowest bit of the field) too"
        if p.write_function == 6 and p.width != 1 and p.writable:
            yield f"{field}.write_function: function 6 writes one register; {t} needs {p.width} (use 16)"
        if p.address + p.width > 65536:
            yield f"{field}.address: {t} at {p.address} runs past address 65535"
        if p.scale == 0:
            yield f"{field}.scale: must not be 0"
        if p.min is not None and p.max is not None and p.min > p.max:
            yield f"{field}.min: greater than max"
        space = "bits" if bitwise else "registers"
        for reg in range(p.address, p.address + p.width):
            key = (device, a.unit_id, p.kind, reg)
            if key in seen and p.bit is None:
                yield (
                    f"{field}.address: {p.kind} {space[:-1]} {reg} of unit {a.unit_id} is already used by {seen[key]}"
                )
                break
            if p.bit is None:
                seen[key] = f"{a.twin_id}.{name}"


def cross_checks(m: Mapping) -> list[str]:
    problems: list[str] = []
    first: dict[str, int] = {}
    modbus_regs: dict[tuple[str, int, str, int], str] = {}
    for name in m.devices:
        if name in PROTOCOLS or not re.match(DEVICE_NAME_PATTERN, name):
            problems.append(
                f"device {name!r} ([devices.{name}]): a device name matches {DEVICE_NAME_PATTERN} and is not "
                "a protocol name (opcua, mqtt, modbus: those are the sections' own devices)"
            )
    for i, a in enumerate(m.assets):
        who = f"asset {a.twin_id!r} (assets[{i}])"
        if a.device is not None:
            dev = m.devices.get(a.device)
            if dev is None:
                known = ", ".join(sorted(m.devices)) or "none"
                problems.append(f"{who}, field device: no [devices.{a.device}] in the file (devices: {known})")
                continue
            if dev.protocol != a.protocol:
                problems.append(f"{who}, field device: {a.device!r} is a {dev.protocol} device, the asset {a.protocol}")
                continue
        if not isinstance(a, MqttAsset) and not re.match(TWIN_ID_PATTERN, a.twin_id):
            problems.append(f"{who}, field twin_id: must match {TWIN_ID_PATTERN}")
        if a.twin_id in first:
            problems.append(f"{who}, field twin_id: duplicate of assets[{first[a.twin_id]}]; twin ids are unique")
        first.setdefault(a.twin_id, i)
        for name in a.params:
            if not re.match(SENSOR_PATTERN, name):
                problems.append(
                    f"{who}, field params.{name}: parameter names must match {SENSOR_PATTERN} "
                    "(letters, digits, _ . -; start with a letter or _)"
                )
        if isinstance(a, OpcuaAsset):
            problems += _check_opcua(i, a)
        elif isinstance(a, MqttAsset):
            problems += _check_mqtt(i, a)
        else:
            problems += _check_modbus(i, a, modbus_regs, a.device or "modbus")
    return problems
