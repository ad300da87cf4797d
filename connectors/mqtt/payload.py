"""Map an MQTT message to a telemetry envelope (bytes) and its Kafka key.

Devices may publish the full envelope, or just ``{"ts": …, "readings": {…}}``: the
bridge fills ``v``, ``twin_id`` (from the topic), ``source`` and a ``seq`` when
absent. Anything that is not a JSON object is forwarded unchanged, so the flow's
validator sends it to the dead-letter topic with a reason — nothing is dropped here.

>>> m = PayloadMapper(twin_level=1)
>>> key, value = m.map("twinflow/pump-7/telemetry", b'{"ts":"2026-01-01T00:00:00Z","readings":{"rpm":1}}')
>>> key, orjson.loads(value)["twin_id"], orjson.loads(value)["source"]
(b'pump-7', 'pump-7', 'mqtt')
>>> m.map("twinflow/pump-7/telemetry", b"not json")
(b'pump-7', b'not json')
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import orjson

from operators.envelope import MAX_READINGS
from operators.readings import SeqCounter


class PayloadMapper:
    def __init__(self, twin_level: int = 1, source: str = "mqtt", max_bytes: int = 64 * 1024) -> None:
        self.twin_level = twin_level
        self.source = source
        self.max_bytes = max_bytes
        self._seq = SeqCounter()

    def twin_of(self, topic: str) -> str | None:
        parts = topic.split("/")
        return parts[self.twin_level] if len(parts) > self.twin_level else None

    def next_seq(self, twin_id: str) -> int:
        """Per-twin counter seeded with epoch microseconds, so it keeps rising across restarts."""
        return self._seq.next(twin_id)

    def map(self, topic: str, payload: bytes) -> tuple[bytes | None, bytes]:
        twin_id = self.twin_of(topic)
        key = twin_id.encode() if twin_id else None
        if len(payload) > self.max_bytes:
            return key, payload
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return key, payload
        if not isinstance(obj, dict) or len(obj) > MAX_READINGS:
            return key, payload
        obj.setdefault("v", 1)
        if twin_id is not None:
            obj.setdefault("twin_id", twin_id)
        obj.setdefault("source", self.source)
        if "seq" not in obj and isinstance(obj.get("twin_id"), str):
            obj["seq"] = self.next_seq(obj["twin_id"])
        return key, orjson.dumps(obj)


# ----------------------------------------------------------------------------- mapped payloads
def split_path(path: str) -> tuple[str, ...]:
    """``"$.a.b"`` or ``"a.b"`` → ``("a", "b")``."""
    return tuple(path.removeprefix("$.").split("."))


_MISSING = object()


def extract(obj: object, parts: tuple[str, ...]) -> object:
    """The value at ``parts`` in a JSON document (list indexes as digits), or ``MISSING``.

    >>> extract({"a": {"b": [1, 2]}}, ("a", "b", "1")), extract({"a": 1}, ("x",)) is MISSING
    (2, True)
    """
    for p in parts:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and p.isdigit() and int(p) < len(obj):
            obj = obj[int(p)]
        else:
            return _MISSING
    return obj


MISSING = _MISSING


def parse_plain(payload: bytes) -> float | None:
    """A plain-number payload (``b"12.5"``) → float; None when it is not one.

    >>> parse_plain(b" 12.5\\n"), parse_plain(b"nan"), parse_plain(b"{}")
    (12.5, None, None)
    """
    try:
        value = float(payload.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def parse_ts(value: object) -> datetime | None:
    """An ISO 8601 string or epoch seconds/milliseconds → aware datetime; None otherwise.

    >>> parse_ts("2026-01-01T00:00:00Z").isoformat(), parse_ts(1767225600000).isoformat()
    ('2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        secs = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(secs, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value)
        except ValueError:
            return None
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    return None
