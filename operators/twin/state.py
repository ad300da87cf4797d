"""The state of one twin as the reconciler keeps it, and its published snapshot.

Plain data (picklable for Bytewax recovery snapshots). The logic that changes it is in
:mod:`operators.twin.reconcile`.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from operators.records.twin import encode
from operators.twin.connectivity import NEVER_SEEN, NEVER_SEEN_JSON, Connectivity
from operators.twin.hysteresis import Hysteresis


class Status(StrEnum):
    SYNCHRONIZED = "synchronized"
    DESYNCED = "desynced"
    SIMULATING = "simulating"
    MAINTENANCE = "maintenance"
    OFFLINE = "offline"  # mode normal and the device cannot be reached (connectivity offline)


class CommandStatus(StrEnum):
    PENDING = "pending"  # sent, waiting for the ack until the deadline
    APPLIED = "applied"  # the device acknowledged it
    RETRY_WAIT = "retry_wait"  # failed or timed out; resent at retry_at
    GIVEN_UP = "given_up"  # rejected by the device or attempts exhausted
    REACHED = "reached"  # no ack by the deadline, but the value is in the band (non-critical only)


@dataclass(slots=True)
class CommandState:
    command_id: str
    value: float
    attempt: int
    issued_at: datetime
    deadline: datetime
    status: CommandStatus = CommandStatus.PENDING
    retry_at: datetime | None = None
    acked_at: datetime | None = None
    error: str | None = None

    def label(self) -> str:
        return f"{self.command_id}:{self.status.value}"


@dataclass(slots=True)
class ParamSync:
    """Reconciliation bookkeeping of one parameter that has a desired value."""

    hyst: Hysteresis = field(default_factory=Hysteresis)
    command: CommandState | None = None
    # The digital side is driving the device towards desired (a drive episode is open).
    driving: bool = False
    synced: bool = True
    # When the value last reached the band (and, if critical, was acknowledged).
    reached_at: datetime | None = None


_MISSING = object()

# (value, source timestamp) and (value, source timestamp, author): tuples keep 10k twins small.
Reading = tuple[float, datetime]
Desire = tuple[float, datetime, str]


@dataclass(slots=True)
class TwinState:
    twin_id: str
    version: int = 0
    clock: datetime | None = None  # event time: the latest time this twin has seen
    mode: str = "normal"  # set by an operator: normal | maintenance | simulating
    status: Status = Status.SYNCHRONIZED
    reported: dict[str, Reading] = field(default_factory=dict)
    desired: dict[str, Desire] = field(default_factory=dict)
    simulated: dict[str, Reading] = field(default_factory=dict)
    params: dict[str, ParamSync] = field(default_factory=dict)
    desync_since: datetime | None = None
    escalated: bool = False
    last_sync_time: datetime | None = None
    sync_latency_ms: float | None = None
    consistency_score: float = 1.0
    # The desired document's version: moves only when desired values or the mode change
    # (``expected_version`` of a request is checked against it; reported noise never moves it).
    desired_version: int = 0
    # Position (topic, partition, offset) of the last twin.desired record this state has processed.
    desired_pos: tuple[str, int, int] | None = None
    # Whether the device can be reached (operators.twin.connectivity; set with set_connectivity), and
    # that as the document's JSON, encoded once per change instead of once per version.
    connectivity: Connectivity = NEVER_SEEN
    connectivity_json: msgspec.Raw = field(default_factory=lambda: NEVER_SEEN_JSON)
    # (clock, newest reading time) as of the last event that was not a reading: the silence timer's start.
    heard: tuple[datetime, datetime] | None = None
    offline_escalated: bool = False  # the ``offline`` event was sent for this outage

    def __setstate__(self, state: Any) -> None:
        """Snapshots of an older layout lack the newest fields: they take their defaults."""
        values = state[1] if isinstance(state, tuple) else state  # (None, slots) from old pickles
        if isinstance(values, dict):
            values = [values.get(f.name, _MISSING) for f in fields(self)]
        for f, value in zip(fields(self), [*values, *[_MISSING] * len(fields(self))], strict=False):
            if value is _MISSING:
                value = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            object.__setattr__(self, f.name, value)

    def set_connectivity(self, conn: Connectivity) -> None:
        self.connectivity = conn
        self.connectivity_json = msgspec.Raw(encode(conn))

    @property
    def learn(self) -> bool:
        """Whether downstream models may learn from this twin now (not in maintenance/simulating)."""
        return self.mode == "normal"

    def delta(self) -> dict[str, float]:
        """desired − reported for every parameter that has both."""
        out = {}
        for name, (want, _ts, _author) in self.desired.items():
            have = self.reported.get(name)
            if have is not None:
                out[name] = want - have[0]
        return out

    def document(self, change: dict[str, Any]) -> dict[str, Any]:
        """The published document (``twin.state`` value and history row): the state with the audit
        entry of its newest version under ``change``.

        Built for every version: a twin without desired values, commands or what-if values (most
        readings of most twins) skips the comprehensions over them (the same document)."""
        params, desired, simulated = self.params, self.desired, self.simulated
        return {
            "twin_id": self.twin_id,
            "version": self.version,
            "desired_version": self.desired_version,
            "event_time": self.clock,
            "status": self.status._value_,  # .value without Enum's property call (a version per reading)
            "mode": self.mode,
            "learn": self.learn,
            "reported": {k: {"value": v, "ts": ts} for k, (v, ts) in self.reported.items()},
            "desired": {k: {"value": v, "ts": ts, "author": a} for k, (v, ts, a) in desired.items()} if desired else {},
            "delta": self.delta() if desired else {},
            "conflicts": sorted(k for k, p in params.items() if not p.synced) if params else [],
            "commands": {
                k: {"command_id": c.command_id, "value": c.value, "attempt": c.attempt, "status": c.status}
                for k, p in params.items()
                if (c := p.command) is not None
            }
            if params
            else {},
            "last_sync_time": self.last_sync_time,
            "sync_latency_ms": self.sync_latency_ms,
            "consistency_score": self.consistency_score,
            "desync_since": self.desync_since,
            "simulated": {k: {"value": v, "ts": ts} for k, (v, ts) in simulated.items()} if simulated else {},
            "connectivity": self.connectivity_json,
            "change": change,
        }


class StateChange(msgspec.Struct, frozen=True):
    """One new version of a twin: its published document (:meth:`TwinState.document`: the state and
    the audit entry saying what changed and why) and that document as JSON (``twin.state`` value,
    history row), encoded once, for Kafka and the database alike."""

    twin_id: str
    version: int
    at: datetime
    published: dict[str, Any]
    document: bytes

    @classmethod
    def of(cls, state: TwinState, change: dict[str, Any]) -> StateChange:
        """The state's newest version (``state.version``, at ``state.clock``) with its audit entry."""
        doc = state.document(change)
        return cls(state.twin_id, state.version, state.clock, doc, encode(doc))  # type: ignore[arg-type]

    @property
    def snapshot(self) -> dict[str, Any]:
        """The document without its audit entry."""
        return {k: v for k, v in self.published.items() if k != "change"}

    @property
    def change(self) -> dict[str, Any]:
        """The audit entry: ``cause``, the changed ``fields`` ([old, new]) and who asked, if anyone."""
        return self.published["change"]
