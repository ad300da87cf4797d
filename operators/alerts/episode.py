"""What the lifecycle remembers of one (twin, kind): the condition's current run and its live alert."""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from operators.records.alerts import Severity


def alert_id_for(twin_id: str, kind: str, opened_at: datetime) -> str:
    """Deterministic id: a replay opens the same alert under the same id."""
    digest = hashlib.blake2b(f"{twin_id}|{kind}|{opened_at.isoformat()}".encode(), digest_size=6)
    return f"al-{digest.hexdigest()}"


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

    @property
    def annunciated(self) -> bool:
        return self.shelved_until is None and self.suppressed_by is None and not self.out_of_service


@dataclass(slots=True)
class KindState:
    """Condition tracking and the live alert of one (twin, kind)."""

    onset: datetime | None = None  # first sample of the current run above
    clear_since: datetime | None = None  # first sample of the current run below (while open)
    last_ts: datetime | None = None
    samples: int = 0
    facts: dict[str, Any] = field(default_factory=dict)  # kind-specific evidence
    severity: Severity = "minor"
    live: LiveAlert | None = None
    openings: deque = field(default_factory=lambda: deque(maxlen=32))

    def reset_run(self) -> None:
        self.onset = None
        self.samples = 0
        self.facts = {}
        self.severity = "minor"
