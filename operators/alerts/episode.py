"""What the lifecycle remembers of one (twin, kind): each source's condition, the current run and
its live alert.

A kind's condition is judged per source (the model whose records they are,
:func:`operators.records.alerts.source_of`): one source's records never reset another's pending
onset. The kind's alert opens when one source's condition has held for ``min_duration_s`` and clears
when every source's is below (:mod:`operators.alerts.lifecycle`).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from operators.alerts.conditions import BELOW
from operators.pickled import loads_shorter_layouts, pickled_by_fields
from operators.records.alerts import BUILTIN_SOURCE, Severity


def alert_id_for(twin_id: str, kind: str, opened_at: datetime) -> str:
    """Deterministic id: a replay opens the same alert under the same id."""
    digest = hashlib.blake2b(f"{twin_id}|{kind}|{opened_at.isoformat()}".encode(), digest_size=6)
    return f"al-{digest.hexdigest()}"


@pickled_by_fields
@dataclass(slots=True)
class SourceRun:
    """One source's condition of a kind: its latest level, the start of its current run above (the
    pending onset) and its latest ``ts`` (an older record of the source is late)."""

    level: int = BELOW
    onset: datetime | None = None
    last_ts: datetime | None = None


@loads_shorter_layouts
@dataclass(slots=True)
class LiveAlert:
    """The live (not resolved) alert of one kind."""

    alert_id: str
    opened_at: datetime
    severity: Severity
    version: int = 1
    state: str = "open"
    acked_at: datetime | None = None
    acked_by: str | None = None
    escalation_level: int = 0
    flapping: bool = False
    # ISA-18.2
    condition: str = "active"
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str = ""
    suppressed_by: str | None = None
    out_of_service: bool = False
    standing: bool = False
    reopened: int = 0
    annunciated_at: datetime | None = None  # escalation counts from here (opened_at, or the reopening)
    base_level: int = 0  # escalation level at annunciated_at
    raised_by: list[str] = field(default_factory=list)  # sources whose condition held (the opener first)

    def raise_by(self, source: str) -> None:
        if source not in self.raised_by:
            self.raised_by.append(source)

    @property
    def named_sources(self) -> list[str] | None:
        """The sources named in the alert's evidence: ``None`` when only the built-in models raised it."""
        return None if self.raised_by in ([], [BUILTIN_SOURCE]) else self.raised_by

    @property
    def annunciated(self) -> bool:
        return self.shelved_until is None and self.suppressed_by is None and not self.out_of_service


@loads_shorter_layouts
@dataclass(slots=True)
class KindState:
    """Condition tracking and the live alert of one (twin, kind); the run and its evidence span the
    sources (from the first sample above of any source while none was in a run)."""

    onset: datetime | None = None  # first sample of the current run above
    clear_since: datetime | None = None  # first sample of the current run below (while open)
    last_ts: datetime | None = None  # the newest sample of any source
    samples: int = 0
    facts: dict[str, Any] = field(default_factory=dict)  # kind-specific evidence
    severity: Severity = "minor"
    live: LiveAlert | None = None
    openings: deque = field(default_factory=lambda: deque(maxlen=32))
    sources: dict[str, SourceRun] = field(default_factory=dict)

    def source(self, name: str) -> SourceRun:
        """The run of source ``name``; the first source of a state written before sources were
        judged apart (no runs) takes the kind's run over."""
        run = self.sources.get(name)
        if run is None:
            run = self.sources[name] = SourceRun() if self.sources else SourceRun(BELOW, self.onset, self.last_ts)
        return run

    def level(self) -> int:
        """The kind's condition: the highest level of its sources (above when any is above)."""
        return max(run.level for run in self.sources.values())

    def in_run(self) -> bool:
        """Whether some source has a run above in progress."""
        return any(run.onset is not None for run in self.sources.values())

    def reset_run(self) -> None:
        """End the run of every source (their levels count as below until they report again)."""
        self.onset = None
        self.samples = 0
        self.facts = {}
        self.severity = "minor"
        for run in self.sources.values():
            run.level, run.onset = BELOW, None
