"""Event-time order in front of the alert lifecycle, and the alerts flow's per-twin step.

:class:`~operators.alerts.lifecycle.TwinAlerts` applies records in the order it is given them. The
inputs come from several Kafka topics whose relative order differs between a live run and a replay,
so the flow goes through :class:`OrderedTwinAlerts`: a per-twin buffer that applies records in
event-time order (``ts``, then status < model outputs < actions, then arrival) once the twin's newest
data ``ts`` is ``reorder_window_s`` past them, and everything at end of input (``flush``). Any two
arrival orders that differ only within the window give the same alert versions. Each record's wall
time (its Kafka timestamp, in ms) is held beside it and given to the lifecycle with it (the wall
clock that shelf expiries are judged on, :class:`~operators.alerts.lifecycle.TwinAlerts`).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from operators.alerts.held_state import held_state
from operators.alerts.lifecycle import TwinAlerts
from operators.alerts.rules import AlertRules
from operators.records import alerts as records
from operators.records.alerts import Alert, AlertAction, InputRecord, ParentAlarm, TwinStatus

# Order of records with the same ts: a status change applies to the data at its time (model outputs,
# desync escalations), an action comes after the data it reacts to.
_RANK: dict[type, int] = {
    TwinStatus: 0,
    ParentAlarm: 0,
    records.AnomalyScore: 1,
    records.FailurePrediction: 2,
    records.ForecastPoint: 3,
    records.DesyncEscalation: 4,
    AlertAction: 5,
}


@dataclass(slots=True)
class OrderedTwinAlerts:
    """:class:`TwinAlerts` behind an event-time reorder buffer (one per twin; picklable).

    ``push`` holds a record until the twin's newest data ``ts`` (model outputs and desync
    escalations; status changes and actions come from other clocks) is ``reorder_window_s`` past it and
    then applies held records in (ts, kind rank, arrival) order; ``flush`` applies all held
    records (end of input, or a twin that went quiet). A record older than the last applied one
    arrived too late for the window: it is applied at once (nothing is dropped) and counted
    in ``late_applied``. Pickled, the held records take the cheap form of
    :mod:`operators.alerts.held_state` (any version loads it).
    """

    alerts: TwinAlerts
    held: list = field(default_factory=list)  # heap of (ts, rank, arrival, record)
    arrivals: int = 0
    newest: datetime | None = None
    applied_until: datetime | None = None
    late_applied: int = 0
    walls: dict[int, int] = field(default_factory=dict)  # arrival → the held record's wall time (Unix ms)
    packed: dict[int, bytes] = field(default_factory=dict, repr=False, compare=False)  # not in snapshots

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Pickle's default form for slots, ``(None, {slot: value})``, with the held records in
        :func:`held_state`'s form (the records it encoded are kept in ``packed`` for the next)."""
        state = {name: getattr(self, name) for name in _SNAPSHOT_FIELDS}
        state["held"] = held_state(self.held, self.packed)
        return None, state

    def __setstate__(self, state: tuple[dict[str, Any] | None, dict[str, Any]] | dict[str, Any]) -> None:
        """Pickle's forms of a state: ``(None, {slot: value})`` (this class's) or a plain dict."""
        self.walls = {}  # absent from snapshots of versions before wall times
        for part in state if isinstance(state, tuple) else (state,):
            for name, value in (part or {}).items():
                setattr(self, name, value)
        self.packed = {}

    @classmethod
    def new(cls, twin_id: str, rules: AlertRules) -> OrderedTwinAlerts:
        return cls(TwinAlerts(twin_id, rules))

    def push(self, rec: InputRecord, *, live: bool = False, wall_ms: int | None = None) -> list[Alert]:
        """Take one record (``wall_ms``: when it was made, Unix ms: its Kafka timestamp); returns the
        alert versions of the records it releases.

        ``live`` (a tailing flow): a status change or an action whose ``ts`` is more than
        ``reorder_window_s`` ahead of the twin's newest data is ordered at that data's time instead —
        it was made on another clock (a person's, the CLI's) while the twin's data run behind (a
        backlog, a plant clock that is late), and it answers the data seen so far: waiting for the
        data to reach its ``ts`` would leave an acknowledged alert escalating, a twin in maintenance
        alerting, for as long as the data run behind. The record itself keeps its ``ts``."""
        from_data = not isinstance(rec, TwinStatus | AlertAction | ParentAlarm)
        rules = self.alerts.rules
        at = rec.ts
        if live and not from_data and self.newest is not None and at - self.newest > timedelta(
            seconds=rules.reorder_window_s
        ):
            at = self.newest
        if self.applied_until is not None and at < self.applied_until:
            self.late_applied += 1
            return self.alerts.apply(rec, _wall(wall_ms))
        self.arrivals += 1
        heapq.heappush(self.held, (at, _RANK[type(rec)], self.arrivals, rec))
        if wall_ms is not None:
            self.walls[self.arrivals] = wall_ms
        if from_data and (self.newest is None or rec.ts > self.newest):
            self.newest = rec.ts  # the twin's data drive the clock, not people's or the CLI's clocks
        until = self.newest - timedelta(seconds=rules.reorder_window_s) if self.newest else None
        out: list[Alert] = []
        while self.held and (
            (until is not None and self.held[0][0] <= until) or len(self.held) > rules.reorder_max_held
        ):
            out += self._release()
        return out

    def advance(self, ts: datetime, wall: datetime | None = None) -> list[Alert]:
        """A clock tick without data: apply what is held, then move the twin's clocks to ``ts`` (data)
        and ``wall``."""
        return self.flush() + self.alerts.advance(ts, wall)

    def flush(self) -> list[Alert]:
        """Apply every held record in event-time order."""
        out: list[Alert] = []
        while self.held:
            out += self._release()
        return out

    def _release(self) -> list[Alert]:
        ts, _, arrival, rec = heapq.heappop(self.held)
        self.applied_until = ts
        if self.packed:
            self.packed.pop(arrival, None)
        return self.alerts.apply(rec, _wall(self.walls.pop(arrival, None)) if self.walls else None)


def _wall(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(OrderedTwinAlerts) if f.name != "packed")


def step(
    state: OrderedTwinAlerts | None,
    rec: InputRecord,
    rules: AlertRules,
    *,
    live: bool = False,
    wall_ms: int | None = None,
) -> tuple[OrderedTwinAlerts, list[Alert]]:
    """Per-twin flow step: create the twin's state on first use, push one record (``live``,
    ``wall_ms``: see :meth:`OrderedTwinAlerts.push`)."""
    if state is None:
        state = OrderedTwinAlerts.new(rec.twin_id, rules)
    return state, state.push(rec, live=live, wall_ms=wall_ms)
