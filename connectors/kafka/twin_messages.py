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


Item = StateChange | Command | DesyncEvent | LateReading | WindowRow | DesiredOutcome | TwinStatus


def to_messages(items: list[Item], t: TwinTopics) -> list[Message]:
    """The Kafka messages for one twin's outputs of the twin step, in order (window rows go to the
    database only). Every record is keyed by twin_id; twin.state is compacted, so the newest version
    of a twin survives (its document, with the audit entry, as encoded once)."""
    out: list[Message] = []
    twin, key = None, b""  # a step's output list is one twin's: its key is encoded once
    for item in items:
        if isinstance(item, WindowRow):
            continue
        if item.twin_id != twin:
            twin, key = item.twin_id, item.twin_id.encode()
        if isinstance(item, StateChange):
            out.append(OutMessage(key, item.document, t.state))
        elif isinstance(item, Command):
            out.append(OutMessage(key, encode(item), t.commands))
        elif isinstance(item, DesyncEvent):
            out.append(OutMessage(key, encode(item), t.desync))
        elif isinstance(item, LateReading):
            out.append(OutMessage(key, encode(item), t.late))
        elif isinstance(item, DesiredOutcome):
            value = encode(item)
            out.append(OutMessage(key, value, t.outcomes))
            if item.decision == "denied":
                out.append(OutMessage(key, value, t.rejected))
        elif isinstance(item, TwinStatus):
            out.append(OutMessage(key, encode_status(item), t.status))
    return out
