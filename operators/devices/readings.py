"""Build telemetry envelopes from device readings (shared by every bridge).

``seq`` is per twin and contiguous within a bridge run; it is seeded with the epoch in
microseconds, so it keeps rising across restarts and sinks can drop duplicates after retries.
Values are passed through unchanged: a non-number makes the envelope invalid and the
telemetry flow sends it to the dead-letter topic with the reason (nothing is dropped here).

>>> seq = SeqCounter(now_us=lambda: 1000)
>>> seq.next("a"), seq.next("a"), seq.next("b")
(1000, 1001, 1000)
>>> from datetime import UTC, datetime
>>> envelope("pump-1", datetime(2026, 1, 1, tzinfo=UTC), 7, "opcua", {"rpm": 1450.0}, "good")
b'{"v":1,"twin_id":"pump-1","ts":"2026-01-01T00:00:00+00:00","seq":7,"source":"opcua","readings":{"rpm":1450.0},"quality":"good"}'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson


class SeqCounter:
    def __init__(self, now_us: Callable[[], int] = lambda: time.time_ns() // 1000) -> None:
        self._now_us = now_us
        self._seq: dict[str, int] = {}

    def next(self, twin_id: str) -> int:
        seq = self._seq.get(twin_id)
        seq = self._now_us() if seq is None else seq + 1
        self._seq[twin_id] = seq
        return seq

    def last(self, twin_id: str) -> int | None:
        return self._seq.get(twin_id)


def iso_ts(ts: datetime) -> str:
    """The envelope's ``ts`` text of a datetime (a naive one is taken as UTC)."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.isoformat()


def envelope(
    twin_id: str,
    ts: datetime | str,
    seq: int,
    source: str,
    readings: dict[str, Any],
    quality: str = "good",
    status: dict[str, str] | None = None,
    text: dict[str, str] | None = None,
) -> bytes:
    """The envelope's JSON bytes; ``ts`` is a datetime or its :func:`iso_ts` text (computed once, reused).

    ``status`` (status code name per reading) and ``text`` (text readings) are written only when given.
    """
    body = {
        "v": 1,
        "twin_id": twin_id,
        "ts": ts if isinstance(ts, str) else iso_ts(ts),
        "seq": seq,
        "source": source,
        "readings": readings,
        "quality": quality,
    }
    if status:
        body["status"] = status
    if text:
        body["text"] = text
    return orjson.dumps(body, default=str)
