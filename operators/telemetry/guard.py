"""Per-message admission checks after decoding: unknown twins and duplicate sequence numbers.

* **unknown twin**: with a :class:`~operators.telemetry.registry.TwinRegistry`, telemetry of a twin that
  is not in it is rejected (``unknown_twin``).
* **duplicate seq**: the guard remembers the content digest of the most recent
  ``(twin_id, seq)`` pairs (a bounded LRU shared by the process). The same pair again with
  the *same* content is a harmless redelivery and is absorbed (no rows, no dead letter);
  with *different* content it is a conflict and is rejected (``duplicate_seq``) rather than
  silently losing one version in the sink.

The memory is per process and bounded (two generations of plain ``int → int`` dicts, which the
garbage collector does not traverse), so a conflict older than ``max_entries`` messages, or one
across a restart, is not seen here; the sink's identity (twin_id, sensor, ts) still keeps the
table free of duplicates. Pairs and contents are kept as 64-bit hashes (keyed per process, so
collisions cannot be crafted); a false match is about as likely as max_entries / 2⁶⁴.

>>> from datetime import UTC, datetime
>>> from operators.records.envelope import Envelope
>>> g = IngestGuard(max_entries=10)
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> e = Envelope(v=1, twin_id="p", ts=t0, seq=1, source="t", readings={"a": 1.0})
>>> g.admit(e), g.admit(e)
(True, False)
>>> g.admit(Envelope(v=1, twin_id="p", ts=e.ts, seq=1, source="t", readings={"a": 2.0}))
Traceback (most recent call last):
...
operators.records.envelope.Rejected: duplicate_seq: seq 1 of twin 'p' was already received with different content
"""

from __future__ import annotations

from operators.records.envelope import Envelope, Reason, Rejected
from operators.telemetry.registry import TwinRegistry


class IngestGuard:
    def __init__(self, registry: TwinRegistry | None = None, max_entries: int = 200_000) -> None:
        self.registry = registry
        self.max_entries = max_entries
        self._half = max(1, max_entries // 2)
        self._current: dict[int, int] = {}
        self._previous: dict[int, int] = {}
        self.absorbed = 0

    def remembered(self) -> int:
        """How many (twin_id, seq) pairs are remembered now (at most ``max_entries``)."""
        return len(self._current) + len(self._previous)

    def admit(self, env: Envelope) -> bool:
        """True: keep; False: an identical redelivery (absorb it); raises Rejected otherwise."""
        if self.registry is not None and not self.registry.known(env.twin_id):
            raise Rejected(Reason.UNKNOWN_TWIN, f"twin {env.twin_id!r} is not in the twin registry")
        if self.max_entries == 0:
            return True
        key = hash((env.twin_id, env.seq))
        status = env.status and frozenset(env.status.items())
        digest = hash((env.ts, env.quality, env.source, frozenset(env.readings.items()), status))
        seen = self._current.get(key)
        if seen is None:
            seen = self._previous.get(key)
        if seen is None:
            self._current[key] = digest
            if len(self._current) >= self._half:
                self._previous, self._current = self._current, {}
            return True
        if seen == digest:
            self.absorbed += 1
            return False
        raise Rejected(
            Reason.DUPLICATE_SEQ,
            f"seq {env.seq} of twin {env.twin_id!r} was already received with different content",
        )
