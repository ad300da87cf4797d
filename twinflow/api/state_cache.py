"""The newest state document of each twin in memory, kept current by the live state events.

``GET /api/v1/twins/{id}`` is the hottest read. The server already follows ``twin.state`` for
server-sent events, so each state record also refreshes this cache (a newer version always wins,
whichever arrives first: the record or a database read); a twin not in the cache is read from the
database once. At start-up the newest states of up to ``max_entries`` twins are loaded. When the
event hub is down the cache is bypassed (it could fall behind).

>>> c = StateCache(2)
>>> c.put("p1", 3, 3, b'{"version":3}'); c.put("p1", 2, 2, b'{"version":2}'); c.get("p1")
(3, 3, b'{"version":3}')
>>> c.on_state("p2", b'{"twin_id":"p2","version":7}'); c.get("p2")[:2]
(7, 7)
"""

from __future__ import annotations

from typing import Any

import orjson

Entry = tuple[int, int, bytes]  # (version, desired version, JSON body)


def desired_version(state: dict[str, Any]) -> int:
    """The version of the desired document (the ETag): moves only when desired values or the mode change."""
    v = state.get("desired_version")
    return int(v) if v is not None else int(state["version"])


def _default(obj: Any) -> Any:
    from decimal import Decimal

    if isinstance(obj, Decimal):
        return float(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON")


def encode_state(state: dict[str, Any]) -> Entry:
    doc = {**state, "desired_version": desired_version(state)}
    return int(doc["version"]), doc["desired_version"], orjson.dumps(doc, default=_default)


class StateCache:
    def __init__(self, max_entries: int = 200_000) -> None:
        self.max_entries = max_entries
        self._d: dict[str, Entry] = {}

    def get(self, twin_id: str) -> Entry | None:
        return self._d.get(twin_id)

    def put(self, twin_id: str, version: int, desired: int, body: bytes) -> None:
        old = self._d.get(twin_id)
        if old is not None and old[0] >= version:
            return
        if old is None and len(self._d) >= self.max_entries:
            self._d.pop(next(iter(self._d)))  # the oldest insertion goes
        self._d[twin_id] = (version, desired, body)

    def put_row(self, row: dict[str, Any]) -> Entry:
        entry = encode_state(row)
        self.put(row["twin_id"], *entry)
        return self._d.get(row["twin_id"], entry)

    def on_state(self, twin_id: str, value: bytes) -> None:
        """A ``twin.state`` record (the document with its ``change``)."""
        try:
            doc = orjson.loads(value)
            self.put(twin_id, *encode_state(doc))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return

    def __len__(self) -> int:
        return len(self._d)
