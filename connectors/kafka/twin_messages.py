"""Kafka messages of twin reconciliation: every record keyed by twin_id, JSON values."""

from __future__ import annotations

from connectors.kafka.sink import OutMessage
from operators.event_windows import WindowRow
from operators.twin_records import Alert, Command, LateReading, encode
from operators.twin_state import StateChange
from twinflow.twin_settings import TwinSettings

Message = OutMessage


def state_message(c: StateChange, topic: str) -> Message:
    """The twin document with its audit entry; twin.state is compacted, so the newest survives."""
    return OutMessage(c.twin_id.encode(), encode({**c.snapshot, "change": c.change}), topic)


def to_messages(item: StateChange | Command | Alert | LateReading | WindowRow, tw: TwinSettings) -> list[Message]:
    """The Kafka messages for one output of the twin step (window rows go to the database only)."""
    if isinstance(item, StateChange):
        return [state_message(item, tw.state_topic)]
    if isinstance(item, Command):
        return [OutMessage(item.twin_id.encode(), encode(item), tw.commands_topic)]
    if isinstance(item, Alert):
        return [OutMessage(item.twin_id.encode(), encode(item), tw.alerts_topic)]
    if isinstance(item, LateReading):
        return [OutMessage(item.twin_id.encode(), encode(item), tw.late_topic)]
    return []
