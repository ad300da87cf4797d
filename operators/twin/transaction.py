"""One event's changes to a twin, collected and then published as one new version.

The reconciler records every field it changes (``change``) and every record to publish while it
applies an event; ``finish`` bumps the version (and the desired version when the desired document
changed) once, and returns the :class:`~operators.twin.state.StateChange` first, then the rest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from operators.records.twin import Command, DesyncEvent, DesyncKind
from operators.twin.state import StateChange, TwinState
from operators.twin.sync_strategy import TwinRules

Output = StateChange | Command | DesyncEvent
"""What the reconciler publishes: the new version, commands for ``twin.commands``, ``twin.desync`` records."""


class Transaction:
    """The changes of one event: collected, then published as one version."""

    __slots__ = ("author", "cause", "desired_changed", "fields", "out", "reason", "request_id", "rules", "state")

    def __init__(self, state: TwinState, rules: TwinRules, cause: str) -> None:
        self.state = state
        self.rules = rules
        self.cause = cause
        self.author: str | None = None
        self.reason: str | None = None
        self.request_id: str | None = None
        self.desired_changed = False  # the desired document (values or mode) changed
        self.fields: dict[str, list[Any]] = {}
        self.out: list[Output] = []

    @property
    def now(self) -> datetime:
        assert self.state.clock is not None
        return self.state.clock

    def advance(self, at: datetime) -> None:
        clock = self.state.clock
        if clock is None or at > clock:
            self.state.clock = at

    def change(self, path: str, old: Any, new: Any) -> None:
        if path in self.fields:
            self.fields[path][1] = new
        else:
            self.fields[path] = [old, new]

    @property
    def next_version(self) -> int:
        return self.state.version + 1

    def desync(self, kind: DesyncKind, version: int, **detail: Any) -> None:
        self.out.append(DesyncEvent(self.state.twin_id, kind, self.now, version, detail))

    def finish(self) -> list[Output]:
        if not self.fields:
            return self.out
        st = self.state
        st.version += 1
        if self.desired_changed:
            st.desired_version += 1
        change: dict[str, Any] = {"cause": self.cause, "fields": self.fields}
        if self.author is not None:
            change["author"] = self.author
        if self.reason:
            change["reason"] = self.reason
        if self.request_id:
            change["request_id"] = self.request_id
        return [StateChange.of(st, change), *self.out]
