"""Event-time tumbling windows per twin and sensor that never drop late data silently.

One :class:`TwinWindows` per twin (it runs inside the flow's per-twin state). The watermark is
the newest reading time seen for the twin minus the allowed lateness:

* a window row (count, mean, min, max, last, sample stddev) is emitted as version 1 when the
  twin's newest reading time reaches the window end;
* a reading at or after the watermark whose window was already emitted updates it and emits
  the next version of that row at once (a correction: sinks upsert by version);
* a window is forgotten once its end is at or before the watermark; a reading older than the
  watermark becomes a :class:`LateReading` (for ``telemetry.late``) with the reason.

``flush()`` emits every window with unpublished changes (end of input).
Aggregates do not depend on arrival order (up to float rounding of mean and stddev).
:meth:`TwinWindows.add_run` (the flows' path) keeps in-order readings that change nothing but
aggregates as a run, aggregated column-wise when something needs the aggregates; a run holds at most
the readings of its windows until the first of them closes (one second's with the default sizes).

>>> from datetime import datetime, timedelta, UTC
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> w = TwinWindows("p1", WindowSpec((timedelta(seconds=1),), timedelta(seconds=2)))
>>> w.add(t0, 1, {"rpm": 1.0}, "mqtt")
([], [])
>>> rows, _ = w.add(t0 + timedelta(seconds=1.5), 2, {"rpm": 3.0}, "mqtt")
>>> [(r.window, r.count, r.mean, r.version) for r in rows]
[('1s', 1, 1.0, 1)]
>>> rows, _ = w.add(t0 + timedelta(seconds=0.5), 3, {"rpm": 2.0}, "mqtt")   # late, within lateness
>>> [(r.count, r.mean, r.last, r.version) for r in rows]
[(2, 1.5, 2.0, 2)]
>>> _, late = w.add(t0 + timedelta(seconds=5), 4, {"rpm": 4.0}, "mqtt")
>>> _, late = w.add(t0, 5, {"rpm": 9.0}, "mqtt")                           # beyond lateness
>>> late[0].reason
'beyond_allowed_lateness'
"""

from __future__ import annotations

import math
from collections.abc import KeysView, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta

from operators.pickled import pickled_by_fields, tuple_getter
from operators.records.twin import LateReading, Reported

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_label(size: timedelta) -> str:
    """``1s``, ``1m``, ``15m``, ``1h``, ``250ms``."""
    us = size // timedelta(microseconds=1)
    for unit, n in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1000)):
        if us % n == 0:
            return f"{us // n}{unit}"
    return f"{us}us"


@dataclass(frozen=True, slots=True)
class WindowSpec:
    sizes: tuple[timedelta, ...] = (timedelta(seconds=1), timedelta(minutes=1))
    allowed_lateness: timedelta = timedelta(seconds=5)

    def __post_init__(self) -> None:
        if not self.sizes or any(s <= timedelta(0) for s in self.sizes):
            raise ValueError("window sizes must be positive")
        if self.allowed_lateness < timedelta(0):
            raise ValueError("allowed lateness must be ≥ 0")


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One version of one window's aggregates; identity (twin_id, sensor, window, start)."""

    twin_id: str
    sensor: str
    window: str
    start: datetime
    end: datetime
    count: int
    mean: float
    min: float
    max: float
    last: float
    stddev: float | None
    version: int


@pickled_by_fields  # ~30 per twin in every snapshot
@dataclass(slots=True)
class _Agg:
    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    last: float = math.nan
    last_key: tuple[datetime, int] | None = None
    version: int = 0  # versions published so far
    dirty: bool = False  # changed since the last published version
    # Updated by TwinWindows.add (inlined there: it runs for every sensor and window size of every
    # reading): Welford's running mean and M2, min, max, and `last` = the value of the latest
    # (ts, seq), whatever the arrival order.


@pickled_by_fields
@dataclass(slots=True)
class _Window:
    """One window (size, start) of one twin: an aggregate per sensor."""

    end: datetime
    sensors: dict[str, _Agg] = field(default_factory=dict)


class _Run:
    """In-order readings that only add to the aggregates of ``windows`` (the windows of the reading
    that started the run), not aggregated yet: ``values`` waits for :meth:`TwinWindows._fold`.
    A reading joins while its (ts, seq) rises above ``prev``, its ts is before ``limit`` (the first
    window end or expiry) and it has the sensors ``keys``. Never pickled."""

    __slots__ = ("keys", "limit", "prev", "values", "windows")

    def __init__(self, windows: list[_Window], limit: datetime, keys: KeysView[str], prev: tuple[datetime, int]):
        self.windows, self.limit, self.keys, self.prev = windows, limit, keys, prev
        self.values: list[dict[str, float]] = []


@dataclass(slots=True)
class TwinWindows:
    twin_id: str
    spec: WindowSpec
    max_ts: datetime | None = None
    # (size index, window start) → window
    open: dict[tuple[int, datetime], _Window] = field(default_factory=dict)
    _next_due: datetime | None = None  # earliest time at which a window closes or expires
    _run: _Run | None = field(default=None, repr=False, compare=False)  # readings not aggregated yet

    def __getstate__(self) -> tuple[None, dict[str, object]]:
        """Pickled as before (pickle's default form of the other fields): the run is aggregated first."""
        self._fold()
        return None, dict(zip(_STORED, _stored(self), strict=True))

    def __setstate__(self, state: tuple[None, dict[str, object]] | dict[str, object]) -> None:
        for name, value in (state[1] if isinstance(state, tuple) else state).items():
            setattr(self, name, value)
        self._run = None

    @property
    def watermark(self) -> datetime | None:
        return None if self.max_ts is None else self.max_ts - self.spec.allowed_lateness

    def add(
        self, ts: datetime, seq: int, values: dict[str, float], source: str
    ) -> tuple[list[WindowRow], list[LateReading]]:
        """Add one envelope's readings; return (window rows to upsert, late readings)."""
        if self._run is not None:
            self._fold()
            self._run = None
        rows, late, _ = self._add(ts, seq, values, source)
        return rows, late

    def _add(
        self, ts: datetime, seq: int, values: dict[str, float], source: str
    ) -> tuple[list[WindowRow], list[LateReading], list[_Window] | None]:
        """:meth:`add` (no run pending); also returns the reading's windows when a run may follow it
        (it is the newest, and every aggregate it touched is unpublished and has it as `last`)."""
        rows: list[WindowRow] = []
        wm = self.watermark
        if wm is not None and ts < wm:
            late = [
                LateReading(
                    self.twin_id,
                    sensor,
                    ts,
                    value,
                    seq,
                    source,
                    "beyond_allowed_lateness",
                    wm,
                    self.spec.allowed_lateness.total_seconds(),
                )
                for sensor, value in values.items()
            ]
            return rows, late, None
        since_epoch = ts - EPOCH
        key = (ts, seq)
        windows: list[_Window] | None = []
        for i, size in enumerate(self.spec.sizes):
            start = EPOCH + (since_epoch // size) * size  # in UTC, whatever the offset of ts
            window = self.open.get((i, start))
            if window is None:
                window = self.open[(i, start)] = _Window(start + size)
                if self._next_due is None or window.end < self._next_due:
                    self._next_due = window.end
            aggs = window.sensors
            for sensor, value in values.items():
                agg = aggs.get(sensor)
                if agg is None:
                    agg = aggs[sensor] = _Agg()
                n = agg.count = agg.count + 1
                d = value - agg.mean
                mean = agg.mean = agg.mean + d / n
                agg.m2 += d * (value - mean)
                if value < agg.min:
                    agg.min = value
                if value > agg.max:
                    agg.max = value
                if agg.last_key is None or key >= agg.last_key:
                    agg.last_key = key
                    agg.last = value
                else:
                    windows = None  # a newer (ts, seq) is in already: `last` would not be a run's
                agg.dirty = True
                if agg.version:  # already published: emit the correction now
                    rows.append(self._publish(i, start, window.end, sensor, agg))
                    windows = None  # every later reading emits its correction too
            if windows is not None:
                windows.append(window)
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
            if self._next_due is not None and ts >= self._next_due:
                rows.extend(self._advance())
        return rows, [], windows if self.max_ts == ts else None

    def add_run(
        self, readings: Sequence[Reported], first: int, stop: int
    ) -> tuple[list[WindowRow], list[LateReading], int]:
        """:meth:`add` of ``readings[first]`` and of the following readings up to ``stop`` that change
        nothing but aggregates; returns the outputs and the index of the first reading not taken
        (``readings[first:stop]`` must all be readings for the windows).

        Such readings are aggregated later, column-wise and in one pass per sensor, with the same
        float operations in the same order as :meth:`add` (identical rows), when a reading or a
        flush needs the aggregates, or the state is pickled: a run lasts across calls (a tailing
        flow offers about one reading per twin and polled batch). A reading joins the run when its
        (ts, seq) rises, it has the run's sensors and stays inside the windows of the reading that
        started it (which publishes nothing and meets no published window): exactly the readings for
        which :meth:`add` would return nothing."""
        run = self._run
        if run is not None:
            end = self._extend(run, readings, first, stop)
            if end > first:
                return [], [], end
            self._fold()
        r0 = readings[first]
        rows, late, windows = self._add(r0.ts, r0.seq, r0.values, r0.source)
        if windows is None:
            self._run = None
            return rows, late, first + 1
        limit = self._next_due
        for window in windows:
            if limit is None or window.end < limit:
                limit = window.end
        assert limit is not None  # a reading always has windows
        self._run = _Run(windows, limit, r0.values.keys(), (r0.ts, r0.seq))
        return rows, late, self._extend(self._run, readings, first + 1, stop)

    def _extend(self, run: _Run, readings: Sequence[Reported], first: int, stop: int) -> int:
        """Add the readings from ``first`` that join ``run`` to it; returns the index of the first that does not."""
        prev, limit, keys, pending = run.prev, run.limit, run.keys, run.values
        end = first
        while end < stop:
            r = readings[end]
            key = (r.ts, r.seq)
            if not (key > prev and r.ts < limit and r.values.keys() == keys):  # type: ignore[operator]
                break
            pending.append(r.values)
            prev = key
            end += 1
        if end > first:
            run.prev, self.max_ts = prev, prev[0]
        return end

    def _fold(self) -> None:
        """Aggregate the run's pending readings (Welford per sensor and window, in arrival order)."""
        run = self._run
        if run is None or not run.values:
            return
        pending, run.values = run.values, []
        for sensor in run.keys:
            column = [values[sensor] for values in pending]
            for window in run.windows:
                agg = window.sensors[sensor]
                count, mean, m2, low, high = agg.count, agg.mean, agg.m2, agg.min, agg.max
                for value in column:
                    count += 1
                    d = value - mean
                    mean = mean + d / count
                    m2 += d * (value - mean)
                    if value < low:
                        low = value
                    if value > high:
                        high = value
                agg.count, agg.mean, agg.m2, agg.min, agg.max = count, mean, m2, low, high
                agg.last, agg.last_key = column[-1], run.prev
                agg.dirty = True

    def _advance(self) -> list[WindowRow]:
        assert self.max_ts is not None
        rows = []
        wm = self.max_ts - self.spec.allowed_lateness
        due: datetime | None = None
        for (i, start), window in list(self.open.items()):
            end = window.end
            if end <= self.max_ts:
                for sensor, agg in window.sensors.items():
                    if agg.dirty:
                        rows.append(self._publish(i, start, end, sensor, agg))
                if end <= wm:
                    del self.open[(i, start)]
                    continue
                nxt = end + self.spec.allowed_lateness
            else:
                nxt = end
            if due is None or nxt < due:
                due = nxt
        self._next_due = due
        return rows

    def flush(self) -> list[WindowRow]:
        """Publish every window with unpublished changes (end of input); windows stay open."""
        self._fold()
        self._run = None  # its windows are published now: a later reading emits a correction
        return [
            self._publish(i, start, window.end, sensor, agg)
            for (i, start), window in self.open.items()
            for sensor, agg in window.sensors.items()
            if agg.dirty
        ]

    def _publish(self, i: int, start: datetime, end: datetime, sensor: str, agg: _Agg) -> WindowRow:
        agg.version += 1
        agg.dirty = False
        return WindowRow(
            self.twin_id,
            sensor,
            window_label(self.spec.sizes[i]),
            start,
            end,
            agg.count,
            agg.mean,
            agg.min,
            agg.max,
            agg.last,
            math.sqrt(agg.m2 / (agg.count - 1)) if agg.count > 1 else None,
            agg.version,
        )


_STORED = tuple(f.name for f in fields(TwinWindows) if f.name != "_run")  # what a snapshot holds
_stored = tuple_getter(_STORED)
