"""Alerts flow: model outputs, desync escalations, maintenance status and people's actions in;
alert versions out to ``twin.alerts``, the database and (optionally) a signed webhook.

Wiring only; the lifecycle is :mod:`operators.alerts.lifecycle`, the I/O is in :mod:`connectors`.

Run it::

    python -m bytewax.run "twinflow.dataflows:alerts()" -w 1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulLogic

from connectors.kafka.clients import producer_config
from connectors.kafka.messages import alert_message, dead_letter_message
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import kafka_messages
from connectors.postgres.alert_sinks import AlertSink, ModelOutputSink
from connectors.webhook.sink import WebhookSink
from flows.settings import DataflowSettings as Settings
from flows.snapshots import from_snapshot, to_snapshot
from operators.alerts.lifecycle import AlertRules, OrderedTwinAlerts, step
from operators.records.alerts import (
    Alert,
    AnomalyScore,
    FailurePrediction,
    ForecastPoint,
    InputRecord,
    ParentAlarm,
    decode_message,
    encode,
)
from operators.telemetry.ingest import DeadLetter

log = logging.getLogger("twinflow.alerts")


def input_topics(settings: Settings) -> dict[str, str]:
    """Topic name → input kind (see operators.records.alerts.decode_message)."""
    a = settings.alerts
    return {
        a.anomalies_topic: "anomaly",
        a.failures_topic: "failure",
        a.forecasts_topic: "forecast",
        a.status_topic: "status",
        a.actions_topic: "action",
        a.suppression_topic: "suppression",
        a.topic: "alerts",
    }


class TwinLifecycle(StatefulLogic[InputRecord, Alert, bytes]):
    """Bytewax shell around :class:`OrderedTwinAlerts`: flush held records at end of input and
    when the twin has received nothing for ``reorder_window_s`` of wall-clock time.

    Live (``ticks``), a twin that went quiet still needs its timers (a shelf's expiry): the twin's
    clock is advanced by the wall time elapsed since its last record when a timer is due.

    Snapshots are pickled bytes (immutable, and far cheaper than a deep copy of the reorder
    buffer); a snapshot written as an object by an older version resumes too."""

    def __init__(self, resume: bytes | OrderedTwinAlerts | None, rules: AlertRules, ticks: bool = True) -> None:
        state = from_snapshot(resume)
        self.state, self.rules, self.ticks = state, rules, ticks
        self.quiet_at: datetime | None = None
        self.wall = datetime.now(UTC)  # wall time of the last record, paired with the twin's clock
        if state is not None and state.held:  # resumed with held records: flush them if nothing comes
            self.quiet_at = datetime.now(UTC) + timedelta(seconds=rules.reorder_window_s)

    def on_item(self, value: InputRecord) -> tuple[Iterable[Alert], bool]:
        self.state, out = step(self.state, value, self.rules)
        self.wall = datetime.now(UTC)
        self.quiet_at = self.wall + timedelta(seconds=self.rules.reorder_window_s)
        return out, StatefulLogic.RETAIN

    def _timer_at(self) -> datetime | None:
        if not self.ticks or self.state is None or self.state.alerts.now is None:
            return None
        due = self.state.alerts.next_due()
        return None if due is None else self.wall + (due - self.state.alerts.now)

    def on_notify(self) -> tuple[Iterable[Alert], bool]:
        self.quiet_at = None
        if self.state is None:
            return [], StatefulLogic.RETAIN
        timer = self._timer_at()
        now = datetime.now(UTC)
        if timer is not None and timer <= now and self.state.alerts.now is not None:
            tick = self.state.alerts.now + (now - self.wall)
            self.wall = now
            return self.state.advance(tick), StatefulLogic.RETAIN
        return self.state.flush(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Alert], bool]:
        self.quiet_at = None
        return (self.state.flush() if self.state else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        quiet = self.quiet_at if self.state is not None and self.state.held else None
        times = [t for t in (quiet, self._timer_at()) if t is not None]
        return min(times, default=None)

    def snapshot(self) -> bytes:
        return to_snapshot(self.state)


def _children(settings: Settings) -> dict[str, list[str]]:
    """Parent asset → its twins, from the twin registry (alarm suppression)."""
    from connectors.config.security_files import load_twin_registry

    path = settings.security.twin_registry
    return load_twin_registry(path).children() if path else {}


def parent_alarm_messages(alert: Alert, children: dict[str, list[str]], a) -> list[KafkaSinkMessage]:
    """One :class:`ParentAlarm` per child of the alert's twin (key = the child)."""
    active = alert.state != "resolved" and alert.condition == "active"
    return [
        KafkaSinkMessage(
            key=child.encode(),
            value=encode(ParentAlarm(child, alert.updated_at, alert.twin_id, alert.alert_id, active)),
            topic=a.suppression_topic,
        )
        for child in children.get(alert.twin_id, ())
    ]


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-alerts") -> Dataflow:
    """Build the alerts dataflow; ``tail=False`` stops at the end of the topics (tests, backfills)."""
    a = settings.alerts
    rules = a.rules
    topics = input_topics(settings)
    conninfo = settings.postgres.conninfo()

    flow = Dataflow(flow_id)
    messages = kafka_messages(flow, settings, list(topics), tail=tail)

    decoded = op.filter_map("decode", messages, lambda m: decode_message(topics[m.topic], m, datetime.now(UTC)))
    valid = op.branch("valid", decoded, lambda r: not isinstance(r, DeadLetter))
    dead = op.map("dead_letter", valid.falses, lambda d: dead_letter_message(d, settings.topics.dlq))
    kafka_out = MessageSink(producer_config(settings))
    op.output("dlq", dead, kafka_out)

    records = valid.trues
    outputs = op.filter(
        "model_outputs", records, lambda r: isinstance(r, AnomalyScore | FailurePrediction | ForecastPoint)
    )
    op.output("model_outputs_db", outputs, ModelOutputSink(conninfo))

    keyed = op.key_on("by_twin", records, lambda r: r.twin_id)
    versions = op.stateful("lifecycle", keyed, lambda resume: TwinLifecycle(resume, rules, ticks=tail))
    alerts = op.map("unkey", versions, lambda kv: kv[1])
    op.output("alerts_kafka", op.map("to_kafka", alerts, lambda x: alert_message(x, a.topic)), kafka_out)
    children = _children(settings)
    if children:  # a parent asset's alarms suppress its children's by design (ISA-18.2)
        to_children = op.flat_map("to_children", alerts, lambda x: parent_alarm_messages(x, children, a))
        op.output("suppression_kafka", to_children, kafka_out)
    op.output("alerts_db", alerts, AlertSink(conninfo))
    if a.webhook_url:
        op.output(
            "webhook",
            alerts,
            WebhookSink(a.webhook_url, a.webhook_key(), timeout_s=a.webhook_timeout_s, attempts=a.webhook_attempts),
        )
    return flow
