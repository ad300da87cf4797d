"""Sparkplug B host-side session logic (plain Python: decoded payloads in, actions out).

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]``. Per edge node the host keeps:

* **aliases**: NBIRTH (node metrics) and DBIRTH (a device's metrics) name every metric, with its
  datatype and optionally an alias; NDATA/DDATA may then carry the alias only. A DATA metric whose
  alias or name no birth defined cannot be read: the host asks for a rebirth.
* **sequence numbers**: every message of an edge node except NDEATH carries ``seq`` 0..255,
  NBIRTH starting at 0 and each following message one more (mod 256). A gap means lost messages:
  the host counts it and asks for a rebirth (``NCMD`` with ``Node Control/Rebirth = true``),
  ignoring the node's data until its next NBIRTH.
* **online state**: NBIRTH/DBIRTH bring the node/device online, NDEATH (matched by ``bdSeq``) takes
  the node and all its devices offline, DDEATH one device.

>>> s = EdgeSessions()
>>> birth = [Metric("bdSeq", None, None, 8, 0, False), Metric("Temp", 1, None, 10, 20.5, False)]
>>> [type(a).__name__ for a in s.handle("g", "NBIRTH", "n1", None, 0, birth, 1000)]
['Online', 'Values']
>>> by_alias = [Metric(None, 1, None, None, 21.0, False)]
>>> [(a.values, a.ts_ms) for a in s.handle("g", "NDATA", "n1", None, 1, by_alias, 2000)]
[({'Temp': 21.0}, 2000)]
>>> [type(a).__name__ for a in s.handle("g", "NDATA", "n1", None, 5, by_alias, 3000)]
['Rebirth']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

# Sparkplug B datatypes (specification 3.0, 6.4.16).
INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64 = 1, 2, 3, 4, 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT, UUID = 9, 10, 11, 12, 13, 14, 15
NUMERIC = {INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FLOAT, DOUBLE, DATETIME}
TEXTUAL = {STRING, TEXT, UUID}
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
REBIRTH_METRIC = "Node Control/Rebirth"


class Metric(NamedTuple):
    """One decoded metric: value is the raw oneof value (None when absent or ``is_null``)."""

    name: str | None
    alias: int | None
    timestamp: int | None  # epoch ms
    datatype: int | None
    value: Any
    is_null: bool
    quality: int | None = None  # the "Quality" property (OPC-style: 192 good, 0 bad, 64 uncertain)


def typed_value(datatype: int | None, raw: Any) -> Any:
    """A metric's raw protobuf value as a reading: signed integers restored, booleans kept, texts kept.

    >>> typed_value(INT16, 2**32 - 5), typed_value(INT8, 251), typed_value(BOOLEAN, True), typed_value(DOUBLE, 1.5)
    (-5.0, -5.0, True, 1.5)
    """
    if raw is None:
        return None
    if datatype in _SIGNED_BITS and isinstance(raw, int) and not isinstance(raw, bool):
        bits = _SIGNED_BITS[datatype]
        if bits < 64 and raw >= 2**31:
            raw -= 2**32
        elif raw >= 2 ** (bits - 1):
            raw -= 2**bits
        return float(raw)
    if datatype == BOOLEAN or isinstance(raw, bool):
        return bool(raw)
    if isinstance(raw, int | float):
        return float(raw)
    return raw


@dataclass
class _Birth:
    """What a birth certificate defined: name → datatype, alias → name."""

    datatypes: dict[str, int | None] = field(default_factory=dict)
    aliases: dict[int, str] = field(default_factory=dict)


@dataclass
class _Node:
    bdseq: int | None = None
    seq: int | None = None  # last seq seen
    online: bool = False
    awaiting_rebirth: bool = False
    birth: _Birth = field(default_factory=_Birth)
    devices: dict[str, _Birth] = field(default_factory=dict)
    online_devices: set[str] = field(default_factory=set)


# ----------------------------------------------------------------------------- actions
class Values(NamedTuple):
    """Readings of one node (device None) or device: metric name → typed value (None: no value)."""

    group: str
    node: str
    device: str | None
    values: dict[str, Any]
    ts_ms: int | None  # the payload's timestamp; per-metric timestamps in `metric_ts`
    metric_ts: dict[str, int]
    bad: dict[str, str]  # metric name → status name (a null value or a bad Quality property)


class Online(NamedTuple):
    group: str
    node: str
    device: str | None
    online: bool
    ts_ms: int | None


class Rebirth(NamedTuple):
    """Ask the edge node for a new NBIRTH (publish NCMD Node Control/Rebirth = true)."""

    group: str
    node: str
    reason: str


class Unreadable(NamedTuple):
    """A metric the host cannot use (unknown alias, unsupported datatype): dead-letter it."""

    group: str
    node: str
    device: str | None
    metric: str
    reason: str


Action = Values | Online | Rebirth | Unreadable


class EdgeSessions:
    """The state of every edge node seen; :meth:`handle` one decoded message at a time."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[str, str], _Node] = {}
        self.seq_gaps = 0
        self.rebirths = 0

    def device_metrics(self, group: str, node: str, device: str | None) -> dict[str, int | None]:
        """name → datatype from the current birth (for commands)."""
        n = self.nodes.get((group, node))
        if n is None:
            return {}
        birth = n.birth if device is None else n.devices.get(device)
        return dict(birth.datatypes) if birth else {}

    def handle(
        self,
        group: str,
        kind: str,
        node_id: str,
        device: str | None,
        seq: int | None,
        metrics: list[Metric],
        ts_ms: int | None,
    ) -> list[Action]:
        node = self.nodes.setdefault((group, node_id), _Node())
        out: list[Action] = []
        if kind == "NDEATH":
            bd = next((m.value for m in metrics if m.name == "bdSeq"), None)
            if node.bdseq is not None and bd is not None and int(bd) != node.bdseq:
                return out  # the death of an older session (the node reconnected since)
            out += [Online(group, node_id, d, False, ts_ms) for d in sorted(node.online_devices)]
            if node.online:
                out.append(Online(group, node_id, None, False, ts_ms))
            node.online, node.online_devices, node.seq = False, set(), None
            return out
        if kind == "NBIRTH":
            node.birth = _birth(metrics)
            node.devices.clear()
            node.online_devices.clear()
            bd = next((m.value for m in metrics if m.name == "bdSeq"), None)
            node.bdseq = None if bd is None else int(bd)
            node.seq, node.online, node.awaiting_rebirth = seq, True, False
            out.append(Online(group, node_id, None, True, ts_ms))
            out += self._values(node, node.birth, group, node_id, None, metrics, ts_ms)
            return out
        if kind == "DDEATH" and device is not None:  # a death counts even while a rebirth is awaited
            node.seq = seq if seq is not None else node.seq
            if device in node.online_devices:
                node.online_devices.discard(device)
                out.append(Online(group, node_id, device, False, ts_ms))
            return out
        if node.awaiting_rebirth:  # ask again (the bridge sends at most one request per node every 5 s)
            return [Rebirth(group, node_id, "still waiting for a new birth certificate")]
        if not node.online:
            node.awaiting_rebirth = True
            self.rebirths += 1
            return [Rebirth(group, node_id, f"{kind} from an edge node without a birth certificate")]
        expected = None if node.seq is None else (node.seq + 1) % 256
        if seq is not None and expected is not None and seq != expected:
            self.seq_gaps += 1
            self.rebirths += 1
            node.awaiting_rebirth = True
            return [Rebirth(group, node_id, f"sequence gap: expected seq {expected}, got {seq}")]
        node.seq = seq if seq is not None else node.seq
        if kind == "DBIRTH" and device is not None:
            node.devices[device] = _birth(metrics)
            node.online_devices.add(device)
            out.append(Online(group, node_id, device, True, ts_ms))
            out += self._values(node, node.devices[device], group, node_id, device, metrics, ts_ms)
        elif kind == "NDATA":
            out += self._values(node, node.birth, group, node_id, None, metrics, ts_ms)
        elif kind == "DDATA" and device is not None:
            birth = node.devices.get(device)
            if birth is None:
                node.awaiting_rebirth = True
                self.rebirths += 1
                return [Rebirth(group, node_id, f"DDATA of device {device!r} without its DBIRTH")]
            out += self._values(node, birth, group, node_id, device, metrics, ts_ms)
        return out

    def _values(
        self,
        node: _Node,
        birth: _Birth,
        group: str,
        node_id: str,
        device: str | None,
        metrics: list[Metric],
        ts_ms: int | None,
    ) -> list[Action]:
        values: dict[str, Any] = {}
        metric_ts: dict[str, int] = {}
        bad: dict[str, str] = {}
        out: list[Action] = []
        for m in metrics:
            name = m.name if m.name is not None else birth.aliases.get(m.alias) if m.alias is not None else None
            if name is None:
                node.awaiting_rebirth = True
                self.rebirths += 1
                return [Rebirth(group, node_id, f"metric alias {m.alias} is in no birth certificate")]
            if name == "bdSeq" or name.startswith("Node Control/"):
                continue
            datatype = m.datatype if m.datatype is not None else birth.datatypes.get(name)
            if datatype is not None and datatype not in NUMERIC | TEXTUAL | {BOOLEAN}:
                out.append(Unreadable(group, node_id, device, name, f"datatype {datatype} is not a reading"))
                continue
            value = None if m.is_null else typed_value(datatype, m.value)
            if m.is_null:
                bad[name] = "BadNoData"
            if m.quality is not None and m.quality < 192:
                bad[name] = "BadNoCommunication" if m.quality < 64 else "UncertainLastUsableValue"
            values[name] = value  # historical metrics too: their own timestamps put them in place
            if m.timestamp is not None:
                metric_ts[name] = m.timestamp
        if values:
            out.append(Values(group, node_id, device, values, ts_ms, metric_ts, bad))
        return out


def _birth(metrics: list[Metric]) -> _Birth:
    b = _Birth()
    for m in metrics:
        if m.name is None:
            continue
        b.datatypes[m.name] = m.datatype
        if m.alias is not None:
            b.aliases[m.alias] = m.name
    return b
