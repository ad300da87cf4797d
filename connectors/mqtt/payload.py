"""Map an MQTT message to a telemetry envelope (bytes) and its Kafka key.

Devices may publish the full envelope, or just ``{"ts": …, "readings": {…}}``: the
bridge fills ``v``, ``twin_id`` (from the topic), ``source`` and a ``seq`` when
absent, and reads ``ts`` with the MQTT timestamp policy (:mod:`operators.devices.timestamps`:
ISO 8601 with a zone or epoch s/ms/µs; absent = receive time). What cannot become an
envelope raises :class:`~operators.records.envelope.Rejected`: the bridge dead-letters the
device's original bytes with the reason — nothing is dropped, nothing is guessed.

>>> m = PayloadMapper(twin_level=1)
>>> key, value = m.map("twinflow/pump-7/telemetry", b'{"ts":1767225600000,"readings":{"rpm":1}}')
>>> key, orjson.loads(value)["twin_id"], orjson.loads(value)["ts"]
(b'pump-7', 'pump-7', '2026-01-01T00:00:00+00:00')
>>> try:
...     m.map("twinflow/pump-7/telemetry", b"not json")
... except Rejected as e:
...     print(e)
bad_json: not a JSON object: invalid literal, expected 'null': line 1 column 1 (char 0)
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

import orjson

from operators.devices.readings import SeqCounter, iso_ts
from operators.devices.timestamps import TsFormat, parse_device_ts
from operators.records.envelope import MAX_READINGS, Reason, Rejected


class PayloadMapper:
    def __init__(
        self, twin_level: int = 1, source: str = "mqtt", max_bytes: int = 64 * 1024, ts_format: TsFormat = "auto"
    ) -> None:
        self.twin_level = twin_level
        self.source = source
        self.max_bytes = max_bytes
        self.ts_format = ts_format
        self._seq = SeqCounter()

    def twin_of(self, topic: str) -> str | None:
        parts = topic.split("/")
        return parts[self.twin_level] if len(parts) > self.twin_level else None

    def next_seq(self, twin_id: str) -> int:
        """Per-twin counter seeded with epoch microseconds, so it keeps rising across restarts."""
        return self._seq.next(twin_id)

    def map(self, topic: str, payload: bytes) -> tuple[bytes | None, bytes]:
        """(Kafka key, envelope bytes); raises :class:`Rejected` for what cannot be one."""
        if len(payload) > self.max_bytes:
            raise Rejected(Reason.TOO_LARGE, f"{len(payload)} bytes > limit {self.max_bytes}")
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise Rejected(Reason.BAD_JSON, f"not a JSON object: {exc}") from None
        if not isinstance(obj, dict):
            raise Rejected(Reason.SCHEMA, f"a JSON {type(obj).__name__}, not an object")
        if len(obj) > MAX_READINGS:
            raise Rejected(Reason.SCHEMA, f"{len(obj)} fields: not an envelope")
        twin_id = self.twin_of(topic)
        obj.setdefault("v", 1)
        if twin_id is not None:
            obj.setdefault("twin_id", twin_id)
        obj.setdefault("source", self.source)
        if "seq" not in obj and isinstance(obj.get("twin_id"), str):
            obj["seq"] = self.next_seq(obj["twin_id"])
        ts = obj.get("ts")
        obj["ts"] = iso_ts(datetime.now(UTC) if ts is None else parse_device_ts(ts, self.ts_format))
        # The key is the topic's twin: a payload naming another twin is a key mismatch (dead-lettered).
        return (twin_id.encode() if twin_id else None), orjson.dumps(obj)


# ----------------------------------------------------------------------------- mapped payloads
_SELECTOR = re.compile(r"^([A-Za-z0-9_-]+)\[([A-Za-z0-9_-]+)=([^\]]+)\]$")
_SEGMENTS = re.compile(r"[A-Za-z0-9_-]+(?:\[[A-Za-z0-9_-]+=[^\]]+\])?")

Part = str | tuple[str, str, str]


def split_path(path: str) -> tuple[Part, ...]:
    """``"$.a.b"`` or ``"a.b"`` → ``("a", "b")``; ``metrics[name=temp].value`` selects the element of
    the list ``metrics`` whose ``name`` is ``temp``.

    >>> split_path("$.metrics[name=Motor.Temp].value")
    (('metrics', 'name', 'Motor.Temp'), 'value')
    """
    out: list[Part] = []
    for seg in _SEGMENTS.findall(path.removeprefix("$.")):
        m = _SELECTOR.match(seg)
        out.append((m.group(1), m.group(2), m.group(3)) if m else seg)
    return tuple(out)


_MISSING = object()


def extract(obj: object, parts: tuple[Part, ...]) -> object:
    """The value at ``parts`` in a JSON document (list indexes as digits), or ``MISSING``.

    >>> extract({"a": {"b": [1, 2]}}, ("a", "b", "1")), extract({"a": 1}, ("x",)) is MISSING
    (2, True)
    >>> doc = {"metrics": [{"name": "rpm", "value": 1452}, {"name": "temp", "value": 61.5}]}
    >>> extract(doc, split_path("metrics[name=temp].value")), extract({"metrics": [{"name": "rpm"}]},
    ...     split_path("metrics[name=temp].value")) is MISSING
    (61.5, True)
    """
    for p in parts:
        if p.__class__ is tuple:
            key, field, want = p  # type: ignore[misc]
            items = obj.get(key) if isinstance(obj, dict) else None
            if not isinstance(items, list):
                return _MISSING
            for item in items:
                if isinstance(item, dict) and str(item.get(field)) == want:
                    obj = item
                    break
            else:
                return _MISSING
        elif isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and p.isdigit() and int(p) < len(obj):  # type: ignore[union-attr]
            obj = obj[int(p)]  # type: ignore[arg-type]
        else:
            return _MISSING
    return obj


MISSING = _MISSING


def parse_plain(payload: bytes) -> float | bool | None:
    """A plain-number payload (``b"12.5"``) → float, ``true``/``false`` → bool; None when it is neither.

    >>> parse_plain(b" 12.5\\n"), parse_plain(b"true"), parse_plain(b"nan"), parse_plain(b"{}")
    (12.5, True, None, None)
    """
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if text in ("true", "false"):
        return text == "true"
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def plain_text(payload: bytes) -> str | None:
    """A plain text payload's text: UTF-8, stripped, a JSON string unquoted; None when not UTF-8.

    >>> plain_text(b" ON\\n"), plain_text(b'"running"'), plain_text(b"\\xff")
    ('ON', 'running', None)
    """
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        return doc if isinstance(doc, str) else text
    return text
