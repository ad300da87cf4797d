"""A mapping file skeleton from what an MQTT broker carried (:class:`connectors.mqtt.listen.Heard`).

Topics are grouped into devices by their **device level**: the last topic level that names a
thing rather than a message (``tele/tasmota_A1/SENSOR`` → ``tasmota_A1``; ``shellies/sh1/relay/0/power``
→ ``sh1``: generic words like ``SENSOR``, ``state``, ``relay`` and numbers are skipped; a plain value's
own level names the value, not the device). Devices under the same levels that publish the same
topics with the same payload shapes become **one asset with a topic template**
(``tele/{device}/SENSOR``, ``twin_id = "{device}"``), which also serves devices added later; the
others an asset each, the twin id fitted to :data:`TWIN_ID_PATTERN`. Parameters: a JSON leaf by its
path, a plain number, boolean or text by its topic levels below the device, each fitted to
:data:`SENSOR_PATTERN`; a text value gets ``type = "text"`` and the distinct texts heard as a
comment. Sparkplug B devices get a ``sparkplug`` asset with the metric names of their births. No
parameter is writable (MQTT does not tell which values a device takes as commands). The result
loads with :func:`connectors.bridges.mapping.loading.parse_mapping`.

>>> device_level(["plant", "pump1", "state"], plain=False), device_level(["sh", "sh1", "relay", "0", "w"], plain=True)
(1, 1)
>>> param_name("metrics[name=temp].value"), param_name("ENERGY.Power"), param_name("Motor/Speed")
('temp', 'ENERGY.Power', 'Motor.Speed')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import tomli_w

from connectors.bridges.mapping.naming import LISTED, conform, listed_lines, toml_inline, toml_pair, unique
from connectors.mqtt.listen import KINDS, Distinct, Heard, Leaf, TopicSeen
from operators.records.envelope import SENSOR_PATTERN, TWIN_ID_PATTERN

DEFAULT_TYPE = "machine"
PLACEHOLDER = "device"
# Topic levels that name a message or a part, not a device (compared in lower case).
GENERIC = {
    *("tele", "stat", "cmnd", "state", "status", "sensor", "sensors", "telemetry", "data", "metrics"),
    *("values", "value", "json", "out", "events", "event", "info", "relay", "emeter", "input", "light"),
    *("roller", "meter", "measurements", "readings", "reading", "attributes", "result", "lwt", "get"),
    *("set", "devices", "device", "shellies", "zigbee2mqtt", "tasmota", "nodered", "node-red", "up"),
}
# Sparkplug metrics about the session, not the machine.
_SESSION_METRICS = re.compile(r"^(bdSeq|Node Control/.*|Device Control/.*|Properties/.*)$")
_TWIN = re.compile(TWIN_ID_PATTERN)


def device_level(levels: list[str], plain: bool) -> int:
    """Index of the topic level naming the device (see the module doc)."""
    end = len(levels) - 1 if plain else len(levels)
    for i in range(end - 1, -1, -1):
        level = levels[i]
        if level and not level.isdigit() and level.lower() not in GENERIC:
            return i
    return max(end - 1, 0)


def param_name(path: str) -> str:
    """A parameter name from a JSON path or Sparkplug metric: a list element by its name."""
    text = re.sub(r"[A-Za-z0-9_-]+\[[A-Za-z0-9_-]+=([^\]]+)\]", r"\1", path).replace("/", ".")
    if text.endswith(".value") and "[" in path:
        text = text.removesuffix(".value")
    return conform(text, SENSOR_PATTERN, "_", "value")


@dataclass
class _Device:
    prefix: tuple[str, ...]
    name: str
    topics: list[tuple[tuple[str, ...], TopicSeen]] = field(default_factory=list)  # (levels below, topic)

    def signature(self) -> frozenset:
        return frozenset((suffix, _shape(t)) for suffix, t in self.topics)


PLAIN = ("number", "boolean", "text")  # payload kinds that are one value


def _shape(t: TopicSeen) -> tuple:
    return ("plain", t.kind == "text") if t.kind in PLAIN else (t.kind, frozenset(t.leaves), frozenset(t.texts))


@dataclass
class Skeleton:
    """The file's text and what it holds."""

    text: str
    assets: int = 0
    params: int = 0
    templates: int = 0
    left_out: list[str] = field(default_factory=list)  # "topic: why"
    notes: list[str] = field(default_factory=list)


def build(heard: Heard, connection: dict[str, Any], command: str, seconds: float) -> Skeleton:
    """The mapping skeleton of what was heard; ``connection``: the ``[mqtt]`` fields to write."""
    sk = Skeleton("")
    devices: dict[tuple[str, ...], _Device] = {}
    sparkplug: dict[tuple[str, str, str | None], dict[str, Any]] = {}
    for t in sorted(heard.topics.values(), key=lambda t: t.topic):
        if t.sparkplug is not None:
            _, group, node, device = t.sparkplug
            metrics = sparkplug.setdefault((group, node, device), {})
            for path, leaf in (*t.leaves.items(), *t.texts.items()):
                if not _SESSION_METRICS.match(path):
                    metrics.setdefault(path, leaf)
            if t.aliases_unknown:
                sk.notes.append(
                    f"{t.topic}: data by alias {sorted(t.aliases_unknown)[:5]} and no birth heard: restart the edge "
                    "node while listening (its births name the metrics)"
                )
            continue
        plain = t.kind in PLAIN
        if not plain and not (t.kind in ("json", "json-array") and (t.leaves or t.texts)):
            why = {"json": "no value in it", "json-array": "no value in it"}.get(t.kind)
            sk.left_out.append(f"{t.topic}: {why or KINDS[t.kind]}")
            continue
        levels = t.topic.split("/")
        d = device_level(levels, plain)
        key = tuple(levels[: d + 1])
        dev = devices.setdefault(key, _Device(key[:-1], key[-1]))
        dev.topics.append((tuple(levels[d + 1 :]), t))

    families: dict[tuple[str, ...], list[_Device]] = {}
    for dev in devices.values():
        families.setdefault(dev.prefix, []).append(dev)
    templated = {
        prefix: devs
        for prefix, devs in families.items()
        if len(devs) >= 2
        and len({d.signature() for d in devs}) == 1
        and all(_TWIN.match(d.name) and "{" not in d.name for d in devs)
    }
    blocks = [tomli_w.dumps({"mqtt": connection})]
    twins: set[str] = set()
    for prefix, devs in templated.items():
        family = conform(prefix[-1] if prefix else "mqtt", TWIN_ID_PATTERN, "-", "mqtt")
        head = f"{family}-" if len(templated) > 1 else ""
        twin = unique(f"{head}{{{PLACEHOLDER}}}", twins, "-", r"^[A-Za-z0-9{][A-Za-z0-9._:{}-]{0,127}$")
        topics = [("/".join((*prefix, f"{{{PLACEHOLDER}}}", *suffix)), t) for suffix, t in devs[0].topics]
        names = ", ".join(d.name for d in devs[:8]) + (" …" if len(devs) > 8 else "")
        blocks.append(_asset(sk, twin, topics, f"{len(devs)} devices publish alike: {names}"))
        sk.templates += 1
    for prefix, devs in families.items():
        if prefix in templated:
            continue
        for dev in devs:
            twin = unique(conform(dev.name, TWIN_ID_PATTERN, "-", "device"), twins, "-", TWIN_ID_PATTERN)
            blocks.append(_asset(sk, twin, [(t.topic, t) for _, t in dev.topics], None))
    for (group, node, device), metrics in sparkplug.items():
        if not metrics:
            continue
        twin = unique(conform(device or node, TWIN_ID_PATTERN, "-", "edge"), twins, "-", TWIN_ID_PATTERN)
        address = {"group": group, "node": node} | ({"device": device} if device else {})
        lines = [*_head(twin), toml_inline("sparkplug", address), "[assets.params]"]
        names: set[str] = set()
        for metric, leaf in metrics.items():
            name = unique(param_name(metric), names, "_", SENSOR_PATTERN)
            lines.append(toml_inline(name, {"metric": metric, **_text_type(leaf)}) + _comment(leaf))
        sk.assets += 1
        sk.params += len(metrics)
        blocks.append("\n".join(lines) + "\n")
    sk.text = _header(heard, command, seconds, connection, sk) + "\n".join(blocks)
    return sk


def _head(twin: str) -> list[str]:
    return ["[[assets]]", toml_pair("twin_id", twin), toml_pair("type", DEFAULT_TYPE), toml_pair("protocol", "mqtt")]


def _example(value: Any) -> str:
    shown = f"{value:.6g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else value
    return f"  # e.g. {shown}"


def _text_type(leaf: Leaf) -> dict[str, str]:
    """``type = "text"`` for a text value (the bridge dead-letters a string otherwise)."""
    return {"type": "text"} if leaf.texts.seen else {}


def _comment(leaf: Leaf) -> str:
    """The example of a number or boolean, the distinct values heard of a text."""
    return _heard(leaf.texts) if leaf.texts.seen else _example(leaf.example)


def _heard(texts: Distinct) -> str:
    """``# text, heard: "ON", "OFF"`` (and `…` when there were more than the listener keeps)."""
    shown = ", ".join(tomli_w.dumps({"x": v}).strip()[4:] for v in texts.seen)
    return f"  # text, heard: {shown}{', …' if texts.more else ''}"


def _asset(sk: Skeleton, twin: str, topics: list[tuple[str, TopicSeen]], comment: str | None) -> str:
    """One ``[[assets]]`` of the topics of a device (concrete topics or templates)."""
    per_topic = {topic: (len(t.leaves) + len(t.texts) or 1) for topic, t in topics}
    main = max(per_topic, key=lambda k: per_topic[k])
    lines = [f"# {comment}"] if comment else []
    lines += [*_head(twin), toml_pair("topic", main)]
    ts = next((t.ts_field for _, t in topics if t.ts_field is not None and t.ts_field.usable), None)
    if ts is not None:
        lines.append(toml_pair("ts_path", ts.path))
    for topic, t in topics:
        if t.ts_field is not None and not t.ts_field.usable and t.ts_field.path == "ts" and ts is None:
            sk.notes.append(f"{topic}: its `ts` ({t.ts_field.example}) {t.ts_field.why}: set ts_path to a readable one")
    quality = next((t.quality_field for _, t in topics if t.quality_field is not None), None)
    if quality is not None and quality.path != "quality":
        lines.append(toml_pair("quality_path", quality.path))
    lines.append("[assets.params]")
    names: set[str] = set()
    count = 0
    for topic, t in topics:
        where = {} if topic == main else {"topic": topic}
        if t.kind in PLAIN:
            name = unique(_plain_name(topic), names, "_", SENSOR_PATTERN)
            text = t.kind == "text"
            entry = {**where, "type": "text"} if text else where
            line = toml_inline(name, entry) if entry else f"{toml_pair(name, 0).rsplit(' = ', 1)[0]} = {{}}"
            lines.append(line + (_heard(t.plain_texts) if text else _example(t.example)))
            count += 1
            continue
        for path, leaf in (*t.leaves.items(), *t.texts.items()):
            name = unique(param_name(path), names, "_", SENSOR_PATTERN)
            lines.append(toml_inline(name, {**where, "path": path, **_text_type(leaf)}) + _comment(leaf))
            count += 1
    sk.assets += 1
    sk.params += count
    return "\n".join(lines) + "\n"


def _plain_name(topic: str) -> str:
    """A plain value's name: its topic levels below the device level (the placeholder's, in a template)."""
    levels, marker = topic.split("/"), f"{{{PLACEHOLDER}}}"
    d = levels.index(marker) if marker in levels else device_level(levels, plain=True)
    return conform(".".join(levels[d + 1 :]) or levels[-1], SENSOR_PATTERN, "_", "value")


def _header(heard: Heard, command: str, seconds: float, connection: dict[str, Any], sk: Skeleton) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Mapping skeleton: `{command}` ({when}).",
        f"# Heard {heard.messages} message(s) on {len(heard.topics)} topic(s) in {seconds:.0f} s at "
        f"{connection['host']}:{connection['port']}; {sk.assets} asset(s) ({sk.templates} topic template(s)), "
        f"{sk.params} parameter(s).",
        "# No parameter is writable: MQTT does not tell which values a device takes as commands. For a",
        "# setpoint add `writable = true` to it and the asset's `command_topic` (docs/connectors.md).",
        "# Review twin_id, type and units; what a device did not publish while listening is missing.",
        "# client_id is this file's own: keep it (a persistent session), one per running bridge.",
    ]
    lines += [f"# Note: {n}" for n in sk.notes[:LISTED]]
    if sk.left_out:
        lines.append(f"# Left out: {len(sk.left_out)} topic(s) without a value to map:")
        lines += listed_lines(sk.left_out, "twinflow mapping listen-mqtt")
    return "\n".join(lines) + "\n\n"
