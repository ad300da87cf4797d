"""Alerts flow: model outputs, desync escalations (``twin.desync``), maintenance status and people's
actions in; alert versions out to ``twin.alerts``, the database and (optionally) a signed webhook,
queued in the database and delivered by background threads (:mod:`connectors.webhook.delivery`).
It never reads ``twin.alerts``: every topic carries one record type, and no flow reads its own output.

Wiring only; the lifecycle is in :mod:`operators.alerts` (the per-twin step: :mod:`operators.alerts.ordering`),
the I/O is in :mod:`connectors`. The wiring takes its source and sinks as arguments (:func:`dataflow`,
:class:`AlertSinks`); :func:`build_flow` gives it Kafka, PostgreSQL and the webhook, a unit test
``TestingSource``/``TestingSink``.

Run it::

    python -m bytewax.run "twinflow.dataflows:alerts()" -w 1
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSinkMessage, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.inputs import Source
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink

from connectors.kafka.messages import alert_message, dead_letter_message, stored
from connectors.kafka.sink import MessageSink
from connectors.kafka.source import StoppableKafkaSource, kafka_source, source_messages
from connectors.postgres.alert_sinks import AlertSink, ModelOutput, ModelOutputSink
from connectors.stopping import STOP
from connectors.webhook.delivery import OutboxDelivery
from flows.outputs import Sink, output, overlapped, settled
from flows.settings import DataflowSettings as Settings
from flows.snapshots import from_snapshot, to_snapshot
from operators.alerts.ordering import OrderedTwinAlerts, step
from operators.alerts.rules import AlertRules
from operators.records.alerts import (
    Alert,
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
        settings.twin.desync_topic: "desync",
    }


class TwinLifecycle(StatefulLogic[InputRecord, Alert, bytes]):
    """Bytewax shell around :class:`OrderedTwinAlerts`: flush held records at end of input and
    when the twin has received nothing for ``reorder_window_s`` of wall-clock time.

    Each item is a record and its wall time (:func:`received`). Live (``ticks``), a twin that went
    quiet still needs its timers (a shelf's expiry, due on the twin's wall clock): the twin's clocks
    are advanced by the wall time elapsed since its last record when a timer is due.

    Snapshots are pickled bytes (immutable, and far cheaper than a deep copy of the reorder
    buffer); a snapshot written as an object by an older version resumes too."""

    def __init__(self, resume: bytes | OrderedTwinAlerts | None, rules: AlertRules, ticks: bool = True) -> None:
        state = from_snapshot(resume)
        self.state, self.rules, self.ticks = state, rules, ticks
        self.quiet_at: datetime | None = None
        self.wall = datetime.now(UTC)  # wall time of the last record, paired with the twin's clocks
        if state is not None and state.held:  # resumed with held records: flush them if nothing comes
            self.quiet_at = datetime.now(UTC) + timedelta(seconds=rules.reorder_window_s)

    def on_item(self, value: tuple[InputRecord, int | None]) -> tuple[Iterable[Alert], bool]:
        rec, wall_ms = value
        self.state, out = step(self.state, rec, self.rules, live=self.ticks, wall_ms=wall_ms)
        self.wall = datetime.now(UTC)
        self.quiet_at = self.wall + timedelta(seconds=self.rules.reorder_window_s)
        return out, StatefulLogic.RETAIN

    def _timer_at(self) -> datetime | None:
        clock = None if self.state is None else self.state.alerts.wall_clock()
        if not self.ticks or self.state is None or clock is None:
            return None
        due = self.state.alerts.next_due()
        return None if due is None else self.wall + (due - clock)

    def on_notify(self) -> tuple[Iterable[Alert], bool]:
        self.quiet_at = None
        if self.state is None:
            return [], StatefulLogic.RETAIN
        timer = self._timer_at()
        now = datetime.now(UTC)
        alerts = self.state.alerts
        if timer is not None and timer <= now and alerts.now is not None:
            elapsed = now - self.wall
            self.wall = now
            wall = alerts.wall + elapsed if alerts.wall is not None else None
            return self.state.advance(alerts.now + elapsed, wall), StatefulLogic.RETAIN
        return self.state.flush(), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[Alert], bool]:
        if STOP.requested.is_set():  # a stop, not the end of the data: the held records wait for a restart
            return [], StatefulLogic.RETAIN
        self.quiet_at = None
        return (self.state.flush() if self.state else []), StatefulLogic.RETAIN

    def notify_at(self) -> datetime | None:
        quiet = self.quiet_at if self.state is not None and self.state.held else None
        times = [t for t in (quiet, self._timer_at()) if t is not None]
        return min(times, default=None)

    def snapshot(self) -> bytes:
        return to_snapshot(self.state)


@dataclass(frozen=True, slots=True)
class Stored:
    """A model output whose row the flow that made it has written (its message carries
    :data:`~connectors.kafka.messages.STORED`): the lifecycle takes it, the rows' sink does not."""

    record: ModelOutput


def decode_input(
    kind: str, message: KafkaSourceMessage, max_future: timedelta | None = None
) -> InputRecord | Stored | DeadLetter | None:
    """:func:`~operators.records.alerts.decode_message` (data more than ``max_future`` ahead of the
    wall clock are dead letters, ``ts_future``), a stored model output wrapped in :class:`Stored`."""
    rec = decode_message(kind, message, max_future=max_future)
    if isinstance(rec, ModelOutput) and stored(message):
        return Stored(rec)
    return rec


Received = tuple[InputRecord | Stored, int | None]
"""A valid input and its wall time: its Kafka message's timestamp (Unix ms; None when it has none)."""


def received(
    kind: str, message: KafkaSourceMessage, max_future: timedelta | None = None
) -> Received | DeadLetter | None:
    """:func:`decode_input` of ``message``, a valid record paired with the message's timestamp (the
    wall clock of the twin's shelf expiries: docs/alerts.md, "Shelving")."""
    rec = decode_input(kind, message, max_future)
    if rec is None or rec.__class__ is DeadLetter:
        return rec
    stamp = message.timestamp  # (type, Unix ms); type 0: none
    wall_ms = stamp[1] if stamp and stamp[0] and stamp[1] >= 0 else None
    return rec, wall_ms  # type: ignore[return-value]


def keyed_record(item: Received) -> tuple[str, tuple[InputRecord, int | None]]:
    """``(twin_id, (record, wall time))`` for the per-twin lifecycle."""
    rec, wall_ms = item
    if rec.__class__ is Stored:
        rec = rec.record  # type: ignore[union-attr]
    return rec.twin_id, (rec, wall_ms)  # type: ignore[union-attr,return-value]


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


@dataclass(frozen=True)
class AlertSinks:
    """Where the alerts flow writes: Kafka messages (alert versions, parent alarms, dead letters),
    alert versions to the database (and, with a webhook, to its outbox: the sink runs the delivery
    threads, :mod:`connectors.webhook.delivery`), model outputs to the database."""

    messages: Sink
    alerts: DynamicSink[Alert]
    model_outputs: Sink

    @classmethod
    def of(cls, settings: Settings) -> AlertSinks:
        """Kafka, PostgreSQL and (with ``alerts.webhook_url``) the signed webhook's outbox."""
        conninfo = settings.postgres.conninfo()
        messages = settled(settings, MessageSink.of(settings))
        alerts = AlertSink(conninfo, webhook=webhook_delivery(settings))
        return cls(messages, alerts, overlapped(settings, ModelOutputSink(conninfo)))


def webhook_delivery(settings: Settings) -> OutboxDelivery | None:
    """The webhook outbox's delivery from ``alerts.webhook_*`` (None: no ``webhook_url``)."""
    a = settings.alerts
    if not a.webhook_url:
        return None
    return OutboxDelivery(
        settings.postgres.conninfo(),
        a.webhook_url,
        a.webhook_key(),
        timeout_s=a.webhook_timeout_s,
        backoff_s=a.webhook_backoff_s,
        backoff_max_s=a.webhook_backoff_max_s,
        retention_s=a.webhook_retention_s,
        concurrency=a.webhook_concurrency,
        poll_s=a.webhook_poll_s,
    )


def build_flow(settings: Settings, *, tail: bool = True, flow_id: str = "twinflow-alerts") -> Dataflow:
    """The alerts dataflow on Kafka, PostgreSQL and the webhook; ``tail=False`` stops at the end of
    the topics (tests, backfills) and keeps to the records' time (no wall-clock timers)."""
    return dataflow(settings, alerts_source(settings, tail=tail), AlertSinks.of(settings), ticks=tail, flow_id=flow_id)


def alerts_source(settings: Settings, *, tail: bool) -> StoppableKafkaSource:
    """The alerts flow's Kafka source: its input topics, polled every ``alerts.poll_interval_ms``
    when caught up (by default 1 % of the reorder window: its alerts wait that window anyway)."""
    interval_ms = settings.alerts.poll_interval(settings.flow.poll_interval_ms)
    return kafka_source(settings, list(input_topics(settings)), tail=tail, poll_interval_ms=interval_ms)


def dataflow(
    settings: Settings,
    source: Source[KafkaSourceMessage],
    sinks: AlertSinks,
    *,
    ticks: bool = True,
    flow_id: str = "twinflow-alerts",
) -> Dataflow:
    """The alerts dataflow reading :func:`input_topics` from ``source``."""
    a = settings.alerts
    rules = a.rules
    topics = input_topics(settings)

    flow = Dataflow(flow_id)
    messages = source_messages(flow, source)

    skew = timedelta(seconds=settings.flow.max_future_skew_s)  # as for readings (docs/security.md)
    decoded = op.filter_map("decode", messages, lambda m: received(topics[m.topic], m, skew))
    valid = op.branch("valid", decoded, lambda r: r.__class__ is tuple)
    dead = op.map("dead_letter", valid.falses, lambda d: dead_letter_message(d, settings.topics.dlq))
    output("dlq", dead, sinks.messages)

    records = valid.trues
    # Rows of model outputs whose producer did not write them (the models flow; a model of your own).
    outputs = op.filter_map("model_outputs", records, lambda r: r[0] if isinstance(r[0], ModelOutput) else None)
    output("model_outputs_db", outputs, sinks.model_outputs)

    keyed = op.map("by_twin", records, keyed_record)
    versions = op.stateful("lifecycle", keyed, lambda resume: TwinLifecycle(resume, rules, ticks=ticks))
    alerts = op.map("unkey", versions, lambda kv: kv[1])
    output("alerts_kafka", op.map("to_kafka", alerts, lambda x: alert_message(x, a.topic)), sinks.messages)
    children = _children(settings)
    if children:  # a parent asset's alarms suppress its children's by design (ISA-18.2)
        to_children = op.flat_map("to_children", alerts, lambda x: parent_alarm_messages(x, children, a))
        output("suppression_kafka", to_children, sinks.messages)
    op.output("alerts_db", alerts, sinks.alerts)  # and the webhook's outbox (AlertSinks.of)
    return flow
