"""Conflict detection with hysteresis for one parameter.

A parameter enters conflict when |reported − desired| stays above ``tolerance`` for at least
``hold`` seconds; it leaves conflict when the deviation stays within the tighter
``clear_tolerance`` for at least ``hold`` seconds. Both switches need the condition to hold
for ``hold``, and the condition that starts one switch is false at the moment of the other,
so two switches are always at least ``hold`` apart: a noisy signal near the limit cannot
oscillate faster than that.

>>> from datetime import datetime, timedelta
>>> t0 = datetime(2026, 1, 1)
>>> h = Hysteresis()
>>> [h.update(d, t0 + timedelta(seconds=s), 1.0, 0.5, 2.0) for s, d in
...  [(0, 1.5), (1, 1.5), (2, 1.5), (3, 0.8), (4, 0.4), (5, 0.4), (6, 0.4)]]
[False, False, True, False, False, False, True]
>>> h.in_conflict
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class Hysteresis:
    in_conflict: bool = False
    # Start of the current run of samples that argue for switching (None: no such run).
    since: datetime | None = None
    # When the run that caused the last switch began (e.g. when the value re-entered the band).
    switch_started: datetime | None = None

    def update(
        self, deviation: float | None, now: datetime, tolerance: float, clear_tolerance: float, hold_s: float
    ) -> bool:
        """Feed the deviation at ``now`` (None: no reported value); return True when the state switched."""
        if self.in_conflict:
            arguing = deviation is not None and deviation <= clear_tolerance
        else:
            arguing = deviation is None or deviation > tolerance
        if not arguing:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        if (now - self.since).total_seconds() >= hold_s:
            self.in_conflict = not self.in_conflict
            self.switch_started = self.since
            self.since = None
            return True
        return False

    def force(self, in_conflict: bool) -> bool:
        """Set the state directly (a new desired value is a step, not noise); True if it changed."""
        changed = self.in_conflict != in_conflict
        self.in_conflict = in_conflict
        self.since = None
        self.switch_started = None
        return changed
