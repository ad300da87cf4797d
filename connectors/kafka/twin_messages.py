"""Kafka messages of twin reconciliation: every record keyed by twin_id, JSON values."""

from __future__ import annotations

from dataclasses import dataclass

from connectors.config.contract import ConnectorSettings
from connectors.kafka.sink import OutMessage
from operators.records.alerts import TwinStatus
from operators.records.alerts import encode as encode_status
from operators.records.twin import Command, DesiredOutcome, DesyncEvent, LateReading, encode
from operators.twin.event_windows import WindowRow
from operators.twin.state import StateChange

Message = OutMessage


@dataclass(frozen=True)
class TwinTopics:
    """Where the twin flow's outputs go."""

    state: str
    commands: str
    desync: str  # desync escalations and failed commands (the alerts flow reads it)
    late: str
    outcomes: str  # every verdict of the desired-state gate
    rejected: str  # denied requests (also on outcomes)
    status: str  # the twin's mode, followed by the models and alerts flows

    @classmethod
    def of(cls, s: ConnectorSettings) -> TwinTopics:
        tw = s.twin
        return cls(
            tw.state_topic,
            tw.commands_topic,
            tw.desync_topic,
            tw.late_topic,
            tw.outcomes_topic,
            s.security.desired_rejected_topic,
            s.alerts.status_topic,
        )


def state_message(c: StateChange, topic: str) -> Message:
    """The twin document with its audit entry; twin.state is compacted, so the newest survives."""
    return OutMessage(c.twin_id.encode(), c.document, topic)


def to_messages(
    item: StateChange | Command | DesyncEvent | LateReading | WindowRow | DesiredOutcome | TwinStatus, t: TwinTopics
) -> list[Message]:
    """The Kafka messages for one output of the twin step (window rows go to the database only)."""
    if isinstance(item, StateChange):
        return [state_message(item, t.state)]
    key = item.twin_id.encode() if not isinstance(item, WindowRow) else b""
    if isinstance(item, Command):
        return [OutMessage(key, encode(item), t.commands)]
    if isinstance(item, DesyncEvent):
        return [OutMessage(key, encode(item), t.desync)]
    if isinstance(item, LateReading):
        return [OutMessage(key, encode(item), t.late)]
    if isinstance(item, DesiredOutcome):
        value = encode(item)
        out = [OutMessage(key, value, t.outcomes)]
        return [*out, OutMessage(key, value, t.rejected)] if item.decision == "denied" else out
    if isinstance(item, TwinStatus):
        return [OutMessage(key, encode_status(item), t.status)]
    return []
