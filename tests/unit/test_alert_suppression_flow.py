"""The alerts flow's parent → children messages (ISA-18.2 suppression by design) and the registry's
parent relation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from flows.alerts import parent_alarm_messages
from operators.records.alerts import Alert, ParentAlarm, decode
from operators.telemetry.registry import TwinRegistry
from twinflow.settings import AlertSettings

T = datetime(2026, 11, 25, 8, tzinfo=UTC)


def alert(state: str = "open", condition: str = "active") -> Alert:
    return Alert("al-1", "line-1", "anomaly", state, "major", 1, "opened", T, T, condition=condition)  # type: ignore[arg-type]


def test_a_parents_alarm_goes_to_each_child_keyed_by_the_child():
    children = TwinRegistry.from_dict(
        {"twin": {"p1": {"parent": "line-1"}, "p2": {"parent": "line-1"}, "p3": {"type": "pump"}}}
    ).children()
    msgs = parent_alarm_messages(alert(), children, AlertSettings())
    assert [(m.key, m.topic) for m in msgs] == [(b"p1", "twin.alert_suppression"), (b"p2", "twin.alert_suppression")]
    rec = decode(ParentAlarm, msgs[0].value)
    assert (rec.twin_id, rec.parent_id, rec.alert_id, rec.active) == ("p1", "line-1", "al-1", True)
    assert json.loads(parent_alarm_messages(alert("resolved"), children, AlertSettings())[0].value)["active"] is False
    assert parent_alarm_messages(alert(), {}, AlertSettings()) == []
