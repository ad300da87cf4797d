"""Settings of twin reconciliation: the ``[twin]`` section (topics, windows, policy)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import Field

from operators.strict import StrictModel
from operators.twin.event_windows import WindowSpec
from operators.twin.sync_strategy import TwinPolicy


class TwinSettings(StrictModel):
    """Twin reconciliation (docs/reconciliation.md)."""

    desired_topic: str = "twin.desired"
    commands_topic: str = "twin.commands"
    acks_topic: str = "twin.acks"
    state_topic: str = "twin.state"  # compacted, key twin_id
    alerts_topic: str = "twin.alerts"
    # The desired-state gate's verdict on every request (the CLI waits for it; docs/security.md).
    outcomes_topic: str = "twin.desired.outcomes"
    late_topic: str = "telemetry.late"
    partitions: int = Field(4, ge=1)
    # Tumbling event-time windows per twin and sensor (seconds) and how late a reading may be.
    windows_s: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0, 60.0], min_length=1)
    allowed_lateness_s: float = Field(5.0, ge=0)
    policy: TwinPolicy = Field(default_factory=TwinPolicy)
    # Also write telemetry rows and dead letters (then the telemetry flow need not run).
    ingest: bool = False

    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            tuple(timedelta(seconds=s) for s in self.windows_s), timedelta(seconds=self.allowed_lateness_s)
        )
