"""Builders shared by the twin reconciliation tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from operators.records.twin import Ack, AckEvent, Command, DesiredEvent, DesiredUpdate, DesyncEvent, Reported
from operators.twin.reconcile import Reconciler
from operators.twin.state import StateChange, TwinState
from operators.twin.sync_strategy import TwinPolicy

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reconciler(**speed_rules: Any) -> Reconciler:
    """A reconciler whose ``speed`` parameter has the given rules (defaults: hold 1 s, no relative deadband)."""
    rules = {"hold_time_s": 1.0, "deadband_pct": 0.0, **speed_rules}
    return Reconciler(TwinPolicy.model_validate({"defaults": {"deadband_pct": 0.0, "parameters": {"speed": rules}}}))


def reading(s: float, speed: float, seq: int = 0, source: str = "mqtt", **more: float) -> Reported:
    return Reported(at(s), seq, source, {"speed": speed, **more})


def desired(s: float, speed: float | None = None, *, twin: str = "t1", **kw: Any) -> DesiredEvent:
    values = {} if speed is None else {"speed": speed}
    return DesiredEvent(DesiredUpdate(twin, values, **kw), at(s))


def ack(s: float, command_id: str, status: str = "applied", **kw: Any) -> AckEvent:
    return AckEvent(Ack(command_id, status, **kw), at(s))


def of(out: list, kind: type) -> list:
    return [o for o in out if isinstance(o, kind)]


def commands(out: list) -> list[Command]:
    return of(out, Command)


def alerts(out: list, kind: str | None = None) -> list[DesyncEvent]:
    return [a for a in of(out, DesyncEvent) if kind is None or a.kind == kind]


def changes(out: list) -> list[StateChange]:
    return of(out, StateChange)


class Run:
    """Apply events to one twin and keep every output."""

    def __init__(self, r: Reconciler, twin_id: str = "t1") -> None:
        self.r = r
        self.state = TwinState(twin_id)
        self.out: list = []

    def __call__(self, *events: Any) -> list:
        new: list = []
        for ev in events:
            new.extend(self.r.apply(self.state, ev))
        self.out.extend(new)
        return new
