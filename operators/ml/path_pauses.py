"""Pauses of a flow process's input path: is a twin's silence its own, or the path's?

The live models flow flags a twin's sensors ``silent`` when the twin has not reported for its
silence time (docs/ml.md, "Sensor faults"). A pause of the *path* — the broker unreachable, the flow
held up by a slow sink, stopped or restarted — silences every twin at once and is not their sensors'
fault. The path's health is told by the input itself, not by the data: each of the process's input
partitions reports a heartbeat whenever it polled its broker successfully (a poll that finds
nothing because nothing was produced is healthy: that is real silence). The path is paused while
any of its partitions goes without one.

Pure bookkeeping: the caller passes the times (wall clock, epoch seconds).
"""

from __future__ import annotations

import threading
from collections import deque

GAP_S = 1.0  # heartbeats further apart than this are a pause (a flow polls many times a second)
# A pause of the path longer than this many of a twin's reporting intervals (at least STALL_MIN_S)
# within its silence time suspends its silence timer.
STALL_INTERVALS, STALL_MIN_S = 3.0, 2.0


class PathPauses:
    """Heartbeats of one process's input partitions and the pauses of the path they make.

    The path is healthy at a moment when every partition had a heartbeat within :data:`GAP_S`; a
    partition that has not had one yet counts from ``started`` (the process started: it has just
    begun to poll). Worker threads of one process share it.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self._last: dict[str, float] = {}  # partition -> time of its last heartbeat
        self._waiting: set[str] = set()  # partitions known, not healthy yet
        self.pauses: deque[tuple[float, float]] = deque(maxlen=256)  # (ended at, seconds)
        self._lock = threading.Lock()

    def joined(self, partition: str) -> None:
        """``partition`` started polling (not healthy until its first heartbeat)."""
        with self._lock:
            if partition not in self._last:
                self._waiting.add(partition)

    def heartbeat(self, partition: str, at: float) -> None:
        """``partition`` polled its broker successfully at ``at``."""
        with self._lock:
            before = self._healthy_until()
            self._waiting.discard(partition)
            self._last[partition] = at
            after = self._healthy_until()
            if after > before and at - before > GAP_S:
                self.pauses.append((at, at - before))

    def left(self, partition: str) -> None:
        """``partition`` is closed: the path no longer waits for it."""
        with self._lock:
            self._waiting.discard(partition)
            self._last.pop(partition, None)

    def _healthy_until(self) -> float:
        """Until when every partition was healthy: the oldest last heartbeat, or the start while a
        partition has had none (or none polls here: this process cannot see its path)."""
        if self._waiting or not self._last:
            return self.started
        return min(self._last.values())

    def longest_pause(self, since: float, now: float) -> float:
        """The longest pause of the path that lasted into ``since``…``now`` (the current one included)."""
        with self._lock:
            current = now - self._healthy_until()
            return max([current, *(length for ended, length in self.pauses if ended >= since)])


def silence_suspended(pauses: PathPauses | None, silent_for: float, period_s: float, now: float) -> bool:
    """Whether a twin silent for ``silent_for`` seconds (its usual reporting interval ``period_s``)
    may owe it to its path: a pause of the path that the twin's own data cannot explain lasted into
    that time, or its backlog is still coming. ``None``: a path that never pauses (tests)."""
    if pauses is None:
        return False
    stalled = max(STALL_INTERVALS * period_s, STALL_MIN_S)
    return pauses.longest_pause(now - silent_for, now) >= stalled
