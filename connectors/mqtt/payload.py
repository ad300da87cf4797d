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

import time

import orjson

from operators.envelope import MAX_READINGS


class PayloadMapper:
    def __init__(self, twin_level: int = 1, source: str = "mqtt", max_bytes: int = 64 * 1024) -> None:
        self.twin_level = twin_level
        self.source = source
        self.max_bytes = max_bytes
        self._seq: dict[str, int] = {}

    def twin_of(self, topic: str) -> str | None:
        parts = topic.split("/")
        return parts[self.twin_level] if len(parts) > self.twin_level else None

    def next_seq(self, twin_id: str) -> int:
        """Per-twin counter seeded with epoch microseconds, so it keeps rising across restarts."""
        seq = max(self._seq.get(twin_id, 0) + 1, time.time_ns() // 1000)
        self._seq[twin_id] = seq
        return seq

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
