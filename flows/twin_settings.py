"""Settings of twin reconciliation: the ``[twin]`` section (topics, windows, policy)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, ClassVar

from pydantic import Field

from operators.strict import StrictModel
from operators.twin.event_windows import WindowSpec
from operators.twin.sync_strategy import CONNECTIVITY_DEFAULTS, TwinPolicy


class TwinSettings(StrictModel):
    """Twin reconciliation (docs/reconciliation.md)."""

    RETIRED: ClassVar[dict[str, str]] = {
        "alerts_topic": "the twin flow writes its desync events to `desync_topic` (default twin.desync) and"
        " alert versions are `[alerts] topic`; remove it (docs/operations.md, Upgrading)"
    }

    desired_topic: str = "twin.desired"  # signed desired-state requests (CLI, API), key = twin_id
    commands_topic: str = "twin.commands"  # setpoints for the bridges to write to devices
    acks_topic: str = "twin.acks"  # the bridges' answers to commands (applied, failed)
    state_topic: str = "twin.state"  # compacted, key twin_id
    # Desync escalations and failed commands (DesyncEvent); the alerts flow turns escalations into alerts.
    desync_topic: str = "twin.desync"
    # The desired-state gate's verdict on every request (the CLI waits for it; docs/security.md).
    outcomes_topic: str = "twin.desired.outcomes"
    late_topic: str = "telemetry.late"  # readings behind the event-time watermark, kept for audit
    # Partitions of twin.desired, twin.commands, twin.acks, twin.state and twin.desired.outcomes (docs/scale-out.md).
    partitions: int = Field(4, ge=1)
    # Tumbling event-time windows per twin and sensor (seconds).
    windows_s: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [1.0, 60.0], min_length=1)
    # How late a reading may arrive and still correct its window (seconds behind the watermark).
    allowed_lateness_s: float = Field(5.0, ge=0)
    # Who wins per property (reported or desired), deadbands, hysteresis (docs/reconciliation.md).
    policy: TwinPolicy = Field(default_factory=TwinPolicy)
    # Also write telemetry rows and dead letters (then the telemetry flow need not run).
    ingest: bool = False
    # A twin without a reading for this long is offline (connectivity, docs/reconciliation.md); 0 (default): never
    # by silence, since OPC-UA subscriptions and Sparkplug send nothing while a value is steady. Fleet-wide:
    # a type or twin of [twin.policy] may set its own.
    offline_after_s: float = Field(CONNECTIVITY_DEFAULTS["offline_after_s"], ge=0)
    # A twin offline this long sends `offline` on twin.desync: the alerts flow opens a device_offline alert.
    # Fleet-wide: a type or twin of [twin.policy] may set its own.
    offline_alert_after_s: float = Field(CONNECTIVITY_DEFAULTS["offline_alert_after_s"], ge=0)

    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            tuple(timedelta(seconds=s) for s in self.windows_s), timedelta(seconds=self.allowed_lateness_s)
        )
